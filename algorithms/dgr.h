#pragma once
// Deep generative replay (Shin et al. 2017), generation form (DESIGN.md
// §4.3-4.4): while task t (0-based) trains, a frozen copy of the generator as
// it was after task t-1 replays the earlier tasks, and the loss is
//   r L_new + (1 - r) L_replay,   r = 1/(t+1) by default (dgr.ratio),
// L_replay the negative ELBO of the replayed images under their own task's
// latent layers of the current VAE. One replayed image per training sample of
// the batch: for the sample at stage position p in optimizer step s, its task
// k is uniform over the earlier tasks and its latent draw z (and the ELBO's
// noise) come from a generator seeded by (train.seed, stage, s, p), so the
// replay does not depend on the number of ranks. The replayed image is the
// frozen copy's decode(z, k).
//
// On the conditional GAN (model.arch=gan) the GAN objective replays, since
// the critic must see the replayed images too (GanObjectiveConfig::replay);
// this strategy then only names the run.
//
// The classifier form (Shin et al.'s "scholar", DESIGN.md §4.3): the model is
// the solver, and the strategy trains a generator beside it, an unconditional
// VAE (models/generative.h TaskVae with one set of latent layers: hidden 256,
// latent 32, Adam dgr.generator_lr, its gradient all-reduced over the job's
// ranks). In every step, before the solver's forward pass (before_forward),
// with n this rank's samples of the batch at stage positions p:
//   - the generator steps on r ELBO(real images) + (1 - r) ELBO(the previous
//     generator's replayed images) (task 1: the real images alone), averaged
//     over the global batch;
//   - from task 2 on, the frozen previous generator replays one image per
//     sample, x'_p = decode(z_p), and the previous solver (the classifier's
//     parameters after the previous task, swapped in without gradients, in
//     eval mode) labels it: y'_p = its argmax over the classes of the earlier
//     tasks;
// and the solver's loss is r L_new + (1 - r) CE(solver(x'), y') (penalty_loss).
// z_p and both ELBO noises come from a generator seeded by (train.seed,
// stage, step, p), so the replay is the same on any number of ranks and after
// a resume. The replayed images carry no task, so the classifier form needs
// the single-head layout (model.heads=single; dgr's default).
#include <memory>

#include <boost/program_options.hpp>

#include "models/vae_net.h"
#include "runtime/gradient_reducer.h"
#include "runtime/strategy.h"

namespace clx {

struct DgrOptions {
  double ratio = 0.0;  // r in (0, 1]; 0: 1/t (t = 1-based task index)
  double generator_lr = 1e-3;  // the classifier form's generator: Adam's learning rate
};

class DgrStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static DgrOptions read_options(const boost::program_options::variables_map& values);
  explicit DgrStrategy(DgrOptions options);
  std::string name() const override { return "dgr"; }
  HeadLayout default_heads() const override { return HeadLayout::Single; }
  void before_task(StageContext& ctx) override;
  void before_forward(StageContext& ctx) override;
  double task_loss_weight(const StageContext& ctx) const override;
  torch::Tensor penalty_loss(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  // The VAE form: every parameter of the VAE after the previous task. The
  // classifier form: "generator.*" (the generator), "previous_generator.*",
  // "previous_solver.*" (the model's parameters after the previous task) and,
  // within a task, "generator_optimizer" (its Adam state, serialised).
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  // r for a stage whose first task is `task` (0-based).
  double new_data_weight(int task) const;
  // The replayed tasks and latent draws of the samples at `positions` in step `step` of `stage`.
  struct ReplayDraw {
    torch::Tensor tasks;  // [n] int64 in [0, earlier_tasks)
    torch::Tensor z;      // [n, latent] float32
    torch::Tensor eps;    // [n, latent] float32: the ELBO's reparameterisation noise
    torch::Tensor real_eps;  // [n, latent] float32: the classifier form's noise for the real image's ELBO
  };
  static ReplayDraw replay_draw(uint64_t seed, int stage, int64_t step, const torch::Tensor& positions,
                                int64_t earlier_tasks, int64_t latent);
  // The frozen generator (valid from task 2 on).
  VaeNetImpl& previous_generator(const StageContext& ctx);
  // The classifier form: this step's replayed images and the previous solver's labels (from task 2 on).
  const torch::Tensor& replay_images() const { return replay_images_; }
  const torch::Tensor& replay_labels() const { return replay_labels_; }
  // The classifier form's generator (built at its first task).
  VaeNet& generator() { return generator_; }

 private:
  bool classifier_form(const StageContext& ctx) const;
  // On the GAN the objective replays (models/gan_objective.h); the strategy only names the run.
  bool gan_form(const StageContext& ctx) const;
  void ensure_generator(const StageContext& ctx);
  void generator_step(StageContext& ctx, const ReplayDraw& draw);
  void label_replay(StageContext& ctx);

  DgrOptions options_;
  NamedTensors previous_;  // every parameter of the VAE (VAE form) or of the generator (classifier form) after the previous task
  VaeNet replica_{nullptr};
  bool replica_current_ = false;
  // The classifier form.
  VaeNet generator_{nullptr};
  std::unique_ptr<torch::optim::Adam> generator_optimizer_;
  std::unique_ptr<GradientReducer> generator_reducer_;
  NamedTensors previous_solver_;
  NamedTensors pending_;  // loaded state, applied when the generator is built
  torch::Tensor replay_images_, replay_labels_;
};

}  // namespace clx
