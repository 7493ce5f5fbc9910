#include "algorithms/importance.h"

#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {
namespace {

// Restores the model's training mode when an importance pass ends.
class EvalModeScope {
 public:
  explicit EvalModeScope(ContinualNet& model) : model_(model), was_training_(model.is_training()) { model_.eval(); }
  ~EvalModeScope() {
    if (was_training_) model_.train();
  }

 private:
  ContinualNet& model_;
  bool was_training_;
};

// Gradient of `local_objective` w.r.t. `parameters`, averaged over ranks in
// one fused all-reduce. An undefined objective (no local samples) counts as zero.
std::vector<torch::Tensor> global_gradient(Communicator& comm, const torch::Tensor& local_objective,
                                           const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> grads(parameters.size());
  if (local_objective.defined())
    grads = torch::autograd::grad({local_objective}, parameters, {}, false, false, /*allow_unused=*/true);
  std::vector<torch::Tensor> flat;
  for (size_t k = 0; k < parameters.size(); ++k)
    flat.push_back(grads[k].defined() ? grads[k].reshape({-1}) : torch::zeros({parameters[k].numel()}));
  torch::Tensor buffer = torch::cat(flat);
  if (comm.size() > 1) {
    comm.allreduce(buffer, ReduceOp::Sum);
    buffer.div_(comm.size());
  }
  std::vector<torch::Tensor> averaged;
  int64_t offset = 0;
  for (const auto& parameter : parameters) {
    averaged.push_back(buffer.narrow(0, offset, parameter.numel()).view(parameter.sizes()));
    offset += parameter.numel();
  }
  return averaged;
}

int64_t draw_category(const torch::Tensor& probabilities, uint64_t seed) {
  SplitMix64 generator(seed);
  const double u = generator.uniform();
  const torch::Tensor p = probabilities.to(torch::kFloat64).contiguous();
  const double* values = p.data_ptr<double>();
  double cumulative = 0.0;
  for (int64_t k = 0; k < p.numel(); ++k) {
    cumulative += values[k];
    if (u < cumulative) return k;
  }
  return p.numel() - 1;
}

}  // namespace

torch::Tensor softmax_entropy(const torch::Tensor& logits) {
  const torch::Tensor q = torch::softmax(logits, 1);
  return -(q * q.clamp_min(1e-12).log()).sum(1);
}

NamedTensors mean_over_batches(StageContext& ctx, int task,
                               const std::function<torch::Tensor(const torch::Tensor& logits)>& per_sample,
                               const std::function<torch::Tensor(const torch::Tensor& g, const torch::Tensor& theta)>& transform) {
  EvalModeScope eval(ctx.model);
  const auto named = ctx.model.named_shared_parameters();
  std::vector<torch::Tensor> parameters;
  for (const auto& item : named) parameters.push_back(item.second);
  NamedTensors mean = zeros_like_shared(ctx.model);
  const TaskData& data = ctx.stream.tasks.at(task).train;
  int64_t batches = 0;
  for_each_global_batch(data.size(), ctx.batch_size, ctx.comm.rank(), ctx.comm.size(),
                        [&](const torch::Tensor& positions, int64_t global_count) {
                          torch::Tensor objective;
                          if (positions.numel() > 0) {
                            const torch::Tensor logits = ctx.model.logits(data.inputs(positions), ctx.head_for(task));
                            // Scaled so that averaging over ranks gives the global-batch mean.
                            objective = per_sample(logits).sum() *
                                        (static_cast<double>(ctx.comm.size()) / static_cast<double>(global_count));
                          }
                          const auto grads = global_gradient(ctx.comm, objective, parameters);
                          torch::NoGradGuard no_grad;
                          for (size_t k = 0; k < parameters.size(); ++k)
                            mean[k].second.add_(transform(grads[k], parameters[k].detach()));
                          ++batches;
                        });
  torch::NoGradGuard no_grad;
  for (auto& item : mean) item.second.div_(static_cast<double>(std::max<int64_t>(batches, 1)));
  return mean;
}

NamedTensors entropy_taylor_importance(StageContext& ctx, int task, double sign) {
  return mean_over_batches(
      ctx, task, softmax_entropy,
      [sign](const torch::Tensor& g, const torch::Tensor& theta) {
        const torch::Tensor g_theta = g * theta;
        return (sign * g_theta + 0.5 * g_theta * g_theta).clamp_min(0.0);
      });
}

NamedTensors mas_importance(StageContext& ctx, int task) {
  return mean_over_batches(
      ctx, task, [](const torch::Tensor& logits) { return logits.pow(2).sum(1); },
      [](const torch::Tensor& g, const torch::Tensor&) { return g.abs(); });
}

NamedTensors fisher_diagonal(StageContext& ctx, int task, int64_t samples, bool sample_labels) {
  EvalModeScope eval(ctx.model);
  const auto named = ctx.model.named_shared_parameters();
  std::vector<torch::Tensor> parameters;
  for (const auto& item : named) parameters.push_back(item.second);
  const TaskData& data = ctx.stream.tasks.at(task).train;
  const int64_t count = samples > 0 ? std::min(samples, data.size()) : data.size();
  const auto [offset, length] = shard_range(count, ctx.comm.rank(), ctx.comm.size());

  std::vector<torch::Tensor> sums;
  for (const auto& parameter : parameters) sums.push_back(torch::zeros({parameter.numel()}));
  for (int64_t i = offset; i < offset + length; ++i) {
    const torch::Tensor position = torch::tensor({i}, torch::kInt64);
    const torch::Tensor log_probabilities = torch::log_softmax(ctx.model.logits(data.inputs(position), ctx.head_for(task)), 1);
    int64_t label;
    if (sample_labels)
      label = draw_category(log_probabilities.detach().exp()[0],
                            mix_seed({ctx.seed, 0xf15e, static_cast<uint64_t>(task), static_cast<uint64_t>(i)}));
    else
      label = data.labels(position, ctx.heads).item<int64_t>();
    const auto grads = torch::autograd::grad({log_probabilities[0][label]}, parameters, {}, false, false, true);
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < parameters.size(); ++k)
      if (grads[k].defined()) sums[k].add_(grads[k].reshape({-1}).pow(2));
  }
  torch::Tensor buffer = torch::cat(sums);
  ctx.comm.allreduce(buffer, ReduceOp::Sum);
  buffer.div_(static_cast<double>(std::max<int64_t>(count, 1)));
  NamedTensors fisher;
  int64_t at = 0;
  for (size_t k = 0; k < parameters.size(); ++k) {
    fisher.emplace_back(named[k].first, buffer.narrow(0, at, parameters[k].numel()).view(parameters[k].sizes()).clone());
    at += parameters[k].numel();
  }
  return fisher;
}

}  // namespace clx
