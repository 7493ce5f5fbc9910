#pragma once
// The conditional GAN objective of continual generation (DESIGN.md §3, §4.4):
// the model is the generator (GanNet, models/gan_net.h); the objective owns the
// critic (ConditionalCritic: a WGAN-GP critic with an auxiliary classifier
// head, AC-GAN style), its Adam optimizer and its gradient reducer, and steps
// it once per training step before it returns the generator's loss, which
// the trainer then reduces and steps like any model's.
//
// Per training step, for this rank's samples x with classes c (the stream's
// global class indices: the generator's class slots), sample p drawing its
// noise from row p of the epoch's draws (so 1 and 2 ranks follow the same
// trajectory and a resume is bit-identical):
//   critic:    x' = G(z1_p, c) (no gradient into G), real in [-1, 1] (2x - 1),
//              x^ = e_p x + (1 - e_p) x', e_p in U(0, 1),
//              L_D = D(x', c) - D(x, c) + gp (||dD(x^, c)/dx^||_2 - 1)^2
//                    + aux CE(A(x), c)
//              summed over the rank's samples, its gradient all-reduced to the
//              global-batch mean (the critic's reducer), one Adam step
//              (generation.critic_lr, betas 0.5 and 0.9: WGAN-GP's);
//   generator: L_G = -D(G(z2_p, c), c) + aux CE(A(G(z2_p, c)), c) with the
//              critic just stepped (the critic's parameters take no gradient).
// The epoch line's statistic is the critic's Wasserstein estimate D(x) - D(x').
// A non-finite critic loss stops every rank with one message.
//
// Scoring (GenerationObjective): task i's images are fid_samples draws, image
// k of class slots[k mod m] over the task's m classes, from noise seeded by
// (train.seed, i), mapped to [0, 1]. Importance passes (§4.4): position p of
// task t is class slots[p mod m] with noise seeded by (seed, t, p);
// generated_logits are the critic's auxiliary classifier's logits on the
// generated image (every class slot), generated_output the image flattened.
#include <cstdint>
#include <memory>
#include <string>

#include "models/critic_training.h"
#include "models/gan_net.h"
#include "models/generation_objective.h"

namespace clx {

struct GanObjectiveConfig {
  GenerationConfig generation;
  double gradient_penalty = 10.0;  // generation.gradient_penalty: WGAN-GP's lambda
  double aux_weight = 1.0;         // generation.aux_weight: the class loss's weight in L_D and L_G
  double critic_lr = 2e-4;         // generation.critic_lr: the critic's Adam learning rate
  // Deep generative replay (train.algorithm=dgr on the GAN): from task 2 on,
  // the generator as it was after the previous task replays the earlier
  // classes, one image per training sample, as real data for the critic and
  // as classes for the generator, weighted 1 - r against the new data's r.
  bool replay = false;
  double replay_ratio = 0.0;  // r in (0, 1]; 0: 1/t at task t (dgr.ratio)
};

// Throws clx::Error naming the option when a value is impossible.
void validate_gan_objective_config(const GanObjectiveConfig& config);

class GanObjective : public GenerationObjective {
 public:
  explicit GanObjective(GanObjectiveConfig config);

  std::string name() const override { return "gan"; }
  ScoreKind score_kind() const override { return fid_score_kind("wasserstein estimate"); }
  // The model must be a GanNet with a class slot per class of the stream, in
  // the single-head layout, and the stream's images the feature classifier's shape.
  void check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const override;
  void prepare(const ContinualNet& model, const TaskStream& stream) override;
  void begin_stage(const ObjectiveStage& stage) override;
  void begin_epoch(uint64_t epoch_seed, int64_t stage_samples) override;
  LocalLoss local_loss(ContinualNet& model, const TrainingBatch& batch,
                       const std::function<int64_t(int)>& head_for) override;
  NamedTensors trained_state() override;
  torch::Tensor optimizer_archive() const override { return critic_optimizer_.archive(); }
  void resume_optimizer(const torch::Tensor& archive) override { critic_optimizer_.resume(archive); }

  torch::Tensor scoring_images(ContinualNet& model, const TaskStream& stream, int task, uint64_t seed) override;
  GeneratedForward generated_logits(ContinualNet& model, uint64_t seed) override;
  GeneratedForward generated_output(ContinualNet& model, uint64_t seed) override;

  ConditionalCritic& critic() { return critic_; }
  // The generator's class slot of each of task `task`'s classes, ascending.
  const std::vector<int64_t>& task_slots(int task) const { return task_slots_.at(task); }
  // The epoch's draws, row p for stage sample p: [samples, noise] (critic's fakes,
  // generator's fakes) and [samples] (the gradient penalty's mixing weights).
  // With replay, the same again for each sample's replayed partner, plus the
  // noise that the previous generator replays from and a uniform number that
  // picks its class among the earlier tasks' slots.
  struct EpochDraws {
    torch::Tensor critic_noise, generator_noise, mixing;
    torch::Tensor replay_noise, replay_pick, replay_critic_noise, replay_generator_noise, replay_mixing;
  };
  static EpochDraws epoch_draws(uint64_t epoch_seed, int64_t samples, int64_t noise_dim, bool replay = false);
  // Replay: the replayed images (in [-1, 1]) and classes of the samples at
  // stage `positions` of stage `stage` (>= 1), from the generator as it was
  // after the previous task and this epoch's draws.
  struct Replay {
    torch::Tensor images, classes;
  };
  Replay replay_for(int stage, const torch::Tensor& positions);
  // The weight r of the new data in a stage (the replay has 1 - r).
  double new_data_weight(int stage) const;

 private:
  // The critic's step on this rank's samples (a collective); returns this
  // rank's summed Wasserstein estimate.
  // real, classes, weights (per sample), critic_noise [n, noise] and mixing [n]: this rank's rows.
  torch::Tensor critic_step(ConditionalGeneratorImpl& generator, const torch::Tensor& real,
                            const torch::Tensor& classes, const torch::Tensor& weights,
                            const torch::Tensor& critic_noise, const torch::Tensor& mixing, const TrainingBatch& batch);
  // Task `task`'s class slots for positions p: slots[p mod m].
  torch::Tensor position_classes(int task, const torch::Tensor& positions) const;

  GanObjectiveConfig gan_config_;
  ConditionalCritic critic_{nullptr};
  const GanNetImpl* model_ = nullptr;                  // the generator trained (set by prepare)
  ConditionalGenerator previous_generator_{nullptr};   // replay: the generator after the previous task
  std::vector<std::vector<int64_t>> task_slots_;
  ObjectiveStage stage_;
  CriticOptimizer critic_optimizer_;
  uint64_t epoch_seed_ = 0;
  int64_t stage_samples_ = 0;
  EpochDraws draws_;  // drawn on the first step of the epoch
};

}  // namespace clx
