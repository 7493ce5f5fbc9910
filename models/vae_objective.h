#pragma once
// The VAE objective of continual generation (DESIGN.md §4.4): each task's
// data trains the VAE's shared encoder and decoder through that task's latent
// layers (VaeNet: head t = task t's latent layers), the loss being the
// negative ELBO (binary cross-entropy of the pixels summed over pixels, plus
// the KL divergence of q(z|x) from N(0, I)); the score of task i is the FID
// between images generated through task i's latent layers and the task's real
// images of the evaluation split, with the project's LeNet feature
// classifier (models/fid_features.h): FID[j][i] after stage j, lower is better.
//
// Randomness is a function of positions, never of the rank count:
//  - each epoch draws one reparameterisation noise vector per training sample
//    of the stage (a CPU generator seeded with the trainer's epoch seed), and
//    sample p uses row p wherever it is trained;
//  - task i's FID images come from the same latent draws after every stage
//    (seeded by train.seed and i), so a row of the matrix follows one set of z.
// Scoring (FID, generated accuracy, sample grids) is GenerationObjective's.
#include <cstdint>
#include <string>

#include "models/generation_objective.h"

namespace clx {

class VaeObjective : public GenerationObjective {
 public:
  // Loads and verifies the feature file (FidFeatureError naming it).
  explicit VaeObjective(GenerationConfig config) : GenerationObjective(std::move(config)) {}

  std::string name() const override { return "vae"; }
  ScoreKind score_kind() const override { return fid_score_kind("kl"); }
  // The model must be a VaeNet with one task layer set per task (multi-head
  // layout) and the stream's images the feature classifier's shape.
  void check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const override;
  void begin_epoch(uint64_t epoch_seed, int64_t stage_samples) override;
  LocalLoss local_loss(ContinualNet& model, const TrainingBatch& batch,
                       const std::function<int64_t(int)>& head_for) override;
  // Importance passes (DESIGN.md §4.4): position p of task t is the latent
  // draw importance_noise(seed, t, p) decoded by task t's latent layers;
  // generated_logits gives the feature classifier's logits (all its classes)
  // on those images, generated_output the images flattened [n, C*S*S].
  GeneratedForward generated_logits(ContinualNet& model, uint64_t seed) override;
  GeneratedForward generated_output(ContinualNet& model, uint64_t seed) override;
  // [n, latent] float32 on the CPU: row k from a generator seeded by (seed, task, positions[k]).
  static torch::Tensor importance_noise(uint64_t seed, int task, const torch::Tensor& positions, int64_t latent);

  // The epoch's reparameterisation noise: row p for stage sample p, [samples, latent] float32 on the CPU.
  static torch::Tensor epoch_noise(uint64_t epoch_seed, int64_t samples, int64_t latent);
  // The images task `task`'s FID is computed on after each stage (the same
  // latent draws every time), in [0, 1].
  torch::Tensor fid_images(ContinualNet& model, int task, uint64_t seed);
  torch::Tensor scoring_images(ContinualNet& model, const TaskStream&, int task, uint64_t seed) override {
    return fid_images(model, task, seed);
  }

 private:
  uint64_t epoch_seed_ = 0;
  int64_t stage_samples_ = 0;
  torch::Tensor epoch_noise_;  // [stage_samples, latent], drawn on the first step of the epoch
};

}  // namespace clx
