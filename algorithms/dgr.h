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
// Only the generator form exists: DGR for classifiers (a solver labelling the
// replayed inputs) is not implemented, and dgr refuses any model but the VAE.
#include <boost/program_options.hpp>

#include "models/vae_net.h"
#include "runtime/strategy.h"

namespace clx {

struct DgrOptions {
  double ratio = 0.0;  // r in (0, 1]; 0: 1/t (t = 1-based task index)
};

class DgrStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static DgrOptions read_options(const boost::program_options::variables_map& values);
  explicit DgrStrategy(DgrOptions options);
  std::string name() const override { return "dgr"; }
  void before_task(StageContext& ctx) override;
  double task_loss_weight(const StageContext& ctx) const override;
  torch::Tensor penalty_loss(StageContext& ctx) override;
  NamedTensors state() const override { return previous_; }
  void load_state(const NamedTensors& state) override;

  // r for a stage whose first task is `task` (0-based).
  double new_data_weight(int task) const;
  // The replayed tasks and latent draws of the samples at `positions` in step `step` of `stage`.
  struct ReplayDraw {
    torch::Tensor tasks;  // [n] int64 in [0, earlier_tasks)
    torch::Tensor z;      // [n, latent] float32
    torch::Tensor eps;    // [n, latent] float32: the ELBO's reparameterisation noise
  };
  static ReplayDraw replay_draw(uint64_t seed, int stage, int64_t step, const torch::Tensor& positions,
                                int64_t earlier_tasks, int64_t latent);
  // The frozen generator (valid from task 2 on).
  VaeNetImpl& previous_generator(const StageContext& ctx);

 private:
  DgrOptions options_;
  NamedTensors previous_;  // every parameter of the VAE after the previous task
  VaeNet replica_{nullptr};
  bool replica_current_ = false;
};

}  // namespace clx
