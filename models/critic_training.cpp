#include "models/critic_training.h"

#include <cmath>
#include <sstream>

#include "runtime/communicator.h"
#include "runtime/error.h"
#include "runtime/named_tensors.h"

namespace clx {

torch::Tensor gradient_penalty_per_sample(ConditionalCriticImpl& critic, const torch::Tensor& real,
                                          const torch::Tensor& fake, const torch::Tensor& mixing,
                                          const torch::Tensor& classes) {
  const torch::Tensor e = mixing.view({-1, 1, 1, 1});
  const torch::Tensor mixed = (e * real + (1 - e) * fake).detach().requires_grad_(true);
  const torch::Tensor mixed_score = critic.forward(mixed, classes).score;
  const torch::Tensor slope = torch::autograd::grad({mixed_score.sum()}, {mixed}, {}, /*retain_graph=*/true,
                                                    /*create_graph=*/true)[0];
  return (slope.flatten(1).norm(2, 1) - 1).pow(2);
}

CriticOptimizer::CriticOptimizer(double lr, std::pair<double, double> betas, std::string divergence_advice)
    : lr_(lr), betas_(betas), divergence_advice_(std::move(divergence_advice)) {}

void CriticOptimizer::begin_stage(ConditionalCriticImpl& critic, const ObjectiveStage& stage) {
  parameters_ = critic.parameters();
  comm_ = stage.comm;
  device_ = stage.device;
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : parameters_) comm_->broadcast(parameter, 0);
  }
  optimizer_ = std::make_unique<torch::optim::Adam>(
      parameters_, torch::optim::AdamOptions(lr_).betas({betas_.first, betas_.second}));
  if (resume_archive_.defined()) {
    load_optimizer_state_bytes(*optimizer_, resume_archive_, device_);
    resume_archive_ = torch::Tensor();
  }
  reducer_ = std::make_unique<GradientReducer>(*comm_, parameters_, stage.bucket_bytes);
}

void CriticOptimizer::step(const torch::Tensor& loss_sum, int64_t global_rows) {
  if (!optimizer_) throw Error("internal: the critic stepped before its stage began");
  for (auto& parameter : parameters_) parameter.mutable_grad() = torch::Tensor();
  const bool has_rows = loss_sum.defined() && loss_sum.requires_grad();
  // Scaled so that the reducer's average over ranks is the mean over the global rows.
  if (has_rows) (loss_sum * (static_cast<double>(comm_->size()) / static_cast<double>(global_rows))).backward();
  torch::Tensor side =
      (loss_sum.defined() ? loss_sum.detach().to(torch::kFloat32) : torch::zeros({})).view({1}).to(device_).clone();
  reducer_->reduce(side);
  const double loss = side.item<double>() / static_cast<double>(global_rows);
  if (!std::isfinite(loss)) {
    std::ostringstream message;
    message << "non-finite critic loss (" << loss << "): " << divergence_advice_;
    throw CollectiveError(message.str());
  }
  optimizer_->step();
}

torch::Tensor CriticOptimizer::archive() const {
  return optimizer_ ? optimizer_state_bytes(*optimizer_) : torch::Tensor();
}

}  // namespace clx
