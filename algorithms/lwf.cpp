#include "algorithms/lwf.h"

#include "runtime/continual_net.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

void LwfStrategy::add_options(po::options_description& options) {
  options.add_options()
      ("lwf.lambda", po::value<double>()->default_value(1.0), "LwF weight of the distillation loss")
      ("lwf.temperature", po::value<double>()->default_value(2.0), "LwF distillation temperature T");
}

LwfStrategy::LwfStrategy(double lambda, double temperature) : lambda_(lambda), temperature_(temperature) {
  if (lambda_ < 0) throw Error("lwf.lambda: must be >= 0");
  if (!(temperature_ > 0)) throw Error("lwf.temperature: must be positive");
}

torch::Tensor LwfStrategy::distillation(const torch::Tensor& logits, const torch::Tensor& targets, double temperature) {
  return -(targets * torch::log_softmax(logits / temperature, 1)).sum();
}

void LwfStrategy::before_task(StageContext& ctx) {
  if (ctx.heads != HeadLayout::Multi) throw Error("lwf needs model.heads=multi (one head per task)");
  if (ctx.tasks.size() != 1) throw Error("lwf trains one task per stage");
  targets_.clear();
  const int task = ctx.tasks.front();
  if (task == 0) return;
  // Record the responses of the network as it is now: the "old model".
  torch::NoGradGuard no_grad;
  const bool was_training = ctx.model.is_training();
  ctx.model.eval();
  const TaskData& data = ctx.stream.tasks[task].train;
  // The targets live on the compute device, as the features they meet.
  std::vector<std::vector<torch::Tensor>> chunks(task);
  for (int64_t start = 0; start < data.size(); start += 1024) {
    const torch::Tensor positions = torch::arange(start, std::min(start + 1024, data.size()), torch::kInt64);
    const torch::Tensor features = ctx.model.features(ctx.inputs(data, positions));
    for (int head = 0; head < task; ++head)
      chunks[head].push_back(torch::softmax(ctx.model.head_forward(features, head) / temperature_, 1));
  }
  for (int head = 0; head < task; ++head) targets_.push_back(torch::cat(chunks[head]));
  if (was_training) ctx.model.train();
}

torch::Tensor LwfStrategy::penalty_loss(StageContext& ctx) {
  if (targets_.empty() || !ctx.batch_features.defined()) return {};
  const torch::Tensor rows = ctx.batch_positions.to(targets_[0].device());
  torch::Tensor loss;
  for (size_t head = 0; head < targets_.size(); ++head) {
    const torch::Tensor term = distillation(ctx.model.head_forward(ctx.batch_features, static_cast<int64_t>(head)),
                                            targets_[head].index_select(0, rows), temperature_);
    loss = loss.defined() ? loss + term : term;
  }
  return loss * (lambda_ * ctx.loss_scale);
}

NamedTensors LwfStrategy::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> all;
  for (size_t head = 0; head < targets_.size(); ++head)
    all.emplace_back("targets.head" + std::to_string(head + 1), targets_[head]);
  return all;
}

void LwfStrategy::load_state(const NamedTensors& state) {
  targets_.clear();
  const NamedTensors saved = with_prefix(state, "targets");
  for (size_t head = 1; head <= saved.size(); ++head) targets_.push_back(named(saved, "head" + std::to_string(head)));
}

}  // namespace clx
