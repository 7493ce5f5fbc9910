#pragma once
// The critic's side of the GAN-based objectives (GanObjective, DgmObjective):
// the optimizer, the all-reduce of its gradients, the divergence check and
// WGAN-GP's gradient penalty, in one place. The objective owns the critic
// itself (it forwards, resets and checkpoints it) and its loss; this steps it.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "models/generative.h"
#include "runtime/gradient_reducer.h"
#include "runtime/objective.h"

namespace clx {

// WGAN-GP's penalty per sample: (||dD(x^, c)/dx^||_2 - 1)^2 at
// x^ = e real + (1 - e) fake, e = mixing [N]; with graph, so the critic's
// step differentiates through it.
torch::Tensor gradient_penalty_per_sample(ConditionalCriticImpl& critic, const torch::Tensor& real,
                                          const torch::Tensor& fake, const torch::Tensor& mixing,
                                          const torch::Tensor& classes);

class CriticOptimizer {
 public:
  // `divergence_advice` ends the non-finite-loss message (which options to lower).
  CriticOptimizer(double lr, std::pair<double, double> betas, std::string divergence_advice);

  // At the start of every stage: every rank takes rank 0's critic weights, a
  // fresh Adam (holding the resumed archive's state, when one was given) and
  // a reducer for the critic's gradients.
  void begin_stage(ConditionalCriticImpl& critic, const ObjectiveStage& stage);
  // One step on `loss_sum`, summed over this rank's rows (undefined or
  // without graph when the rank has none) of `global_rows` rows over every
  // rank: the gradient all-reduced to the mean over those rows, and one Adam
  // step. A collective: every rank calls it, with rows or not. A non-finite
  // mean loss stops every rank (CollectiveError: every rank sees the same value).
  void step(const torch::Tensor& loss_sum, int64_t global_rows);

  torch::Tensor archive() const;                           // the Adam state, for a checkpoint
  void resume(const torch::Tensor& archive) { resume_archive_ = archive; }  // used by the next begin_stage

 private:
  double lr_;
  std::pair<double, double> betas_;
  std::string divergence_advice_;
  std::vector<torch::Tensor> parameters_;
  Communicator* comm_ = nullptr;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<torch::optim::Adam> optimizer_;
  std::unique_ptr<GradientReducer> reducer_;
  torch::Tensor resume_archive_;
};

}  // namespace clx
