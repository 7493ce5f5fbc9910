#include "algorithms/importance.h"

#include <algorithm>

#include <unordered_map>
#include <unordered_set>

#include "models/multi_head_model.h"
#include "runtime/collectives.h"
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
// one fused all-reduce through `flat` (allocated once per pass, reused for
// every batch). An undefined objective (no local samples) counts as zero.
std::vector<torch::Tensor> global_gradient(Communicator& comm, const torch::Tensor& local_objective,
                                           const std::vector<torch::Tensor>& parameters, torch::Tensor& flat) {
  std::vector<torch::Tensor> grads(parameters.size());
  if (local_objective.defined())
    grads = torch::autograd::grad({local_objective}, parameters, {}, false, false, /*allow_unused=*/true);
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < parameters.size(); ++k)
    if (!grads[k].defined()) grads[k] = torch::zeros_like(parameters[k]);
  if (comm.size() == 1) return grads;
  const std::vector<torch::Tensor> averaged = sum_across_ranks_fused(comm, grads, flat);
  flat.div_(comm.size());
  return averaged;
}

// True when `accumulate_elementwise` may run its plain loop: contiguous
// float32 tensors in host memory.
bool host_float_contiguous(const std::vector<const torch::Tensor*>& tensors) {
  for (const torch::Tensor* tensor : tensors)
    if (!tensor->device().is_cpu() || tensor->scalar_type() != torch::kFloat32 || !tensor->is_contiguous()) return false;
  return true;
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
                               const AccumulateImportance& accumulate) {
  EvalModeScope eval(ctx.model);
  const auto named = ctx.model.named_shared_parameters();
  std::vector<torch::Tensor> parameters;
  for (const auto& item : named) parameters.push_back(item.second);
  NamedTensors mean = zeros_like_shared(ctx.model);
  const TaskData& data = ctx.stream.tasks.at(task).train;
  int64_t batches = 0;
  torch::Tensor flat;
  for_each_global_batch(data.size(), ctx.batch_size, ctx.comm.rank(), ctx.comm.size(),
                        [&](const torch::Tensor& positions, int64_t global_count) {
                          torch::Tensor objective;
                          if (positions.numel() > 0) {
                            const torch::Tensor logits = ctx.model.logits(data.inputs(positions), ctx.head_for(task));
                            // Scaled so that averaging over ranks gives the global-batch mean.
                            objective = per_sample(logits).sum() *
                                        (static_cast<double>(ctx.comm.size()) / static_cast<double>(global_count));
                          }
                          const auto grads = global_gradient(ctx.comm, objective, parameters, flat);
                          torch::NoGradGuard no_grad;
                          for (size_t k = 0; k < parameters.size(); ++k)
                            accumulate(grads[k], parameters[k].detach(), mean[k].second);
                          ++batches;
                        });
  torch::NoGradGuard no_grad;
  for (auto& item : mean) item.second.div_(static_cast<double>(std::max<int64_t>(batches, 1)));
  return mean;
}

NamedTensors entropy_taylor_importance(StageContext& ctx, int task, double sign) {
  return mean_over_batches(
      ctx, task, softmax_entropy,
      [sign](const torch::Tensor& g, const torch::Tensor& theta, torch::Tensor& sum) {
        // One pass, no temporaries: on an MLP the six tensor operations of
        // the formula cost more than the backward pass that produced g.
        if (host_float_contiguous({&g, &theta, &sum})) {
          const float* g_data = g.data_ptr<float>();
          const float* theta_data = theta.data_ptr<float>();
          float* sum_data = sum.data_ptr<float>();
          const float s = static_cast<float>(sign);
          const int64_t n = sum.numel();
          for (int64_t i = 0; i < n; ++i) {
            const float g_theta = g_data[i] * theta_data[i];
            sum_data[i] += std::max(s * g_theta + 0.5f * g_theta * g_theta, 0.0f);
          }
          return;
        }
        const torch::Tensor g_theta = g * theta;
        sum.add_((sign * g_theta + 0.5 * g_theta * g_theta).clamp_min(0.0));
      });
}

NamedTensors mas_importance(StageContext& ctx, int task) {
  return mean_over_batches(
      ctx, task, [](const torch::Tensor& logits) { return logits.pow(2).sum(1); },
      [](const torch::Tensor& g, const torch::Tensor&, torch::Tensor& sum) { sum.add_(g.abs()); });
}

namespace {

// Samples per batched Fisher pass: the activations of one training batch.
constexpr int64_t kFisherChunk = 128;
// The unfolded input of a convolution holds Cin*k*k values per output
// position and sample. Taking a few samples at a time (at most this many
// bytes of it, at least one sample) keeps it and the per-sample gradients in
// cache: measured on VGG-9, twice as fast as unfolding 128 samples at once.
constexpr int64_t kUnfoldBytes = int64_t{1} << 20;

// Where each shared parameter's running sum of squared per-sample gradients lives.
using SquareSums = std::unordered_map<const c10::TensorImpl*, torch::Tensor>;

void add_to(SquareSums& sums, const torch::Tensor& parameter, const torch::Tensor& squares) {
  if (!parameter.defined()) return;
  auto found = sums.find(parameter.unsafeGetTensorImpl());
  if (found != sums.end()) found->second.add_(squares.reshape({-1}));
}

// Adds sum_i (dL_i/dW)^2 for the parameters of one taped layer, where row i of
// `delta` (the gradient of sum_i L_i with respect to the layer's output) is
// sample i's own gradient because no layer mixes samples.
void add_squared_sample_gradients(const TapedLayer& layer, const torch::Tensor& delta, SquareSums& sums) {
  const torch::Tensor& a = layer.input;
  switch (layer.kind) {
    case TapedLayerKind::Linear: {
      // dL_i/dW = delta_i a_i^T, so sum_i (dL_i/dW)^2 = (delta^2)^T (a^2).
      const auto& linear = dynamic_cast<const torch::nn::LinearImpl&>(*layer.module);
      add_to(sums, linear.weight, delta.pow(2).t().mm(a.pow(2)));
      add_to(sums, linear.bias, delta.pow(2).sum(0));
      break;
    }
    case TapedLayerKind::Conv2d: {
      // dL_i/dW = delta_i (Cout x L) times unfold(a_i)^T (L x Cin*kh*kw): the
      // convolution is a matrix product over the L output positions.
      const auto& conv = dynamic_cast<const torch::nn::Conv2dImpl&>(*layer.module);
      const auto& options = conv.options;
      torch::ExpandingArray<2> padding(0);
      if (const auto* explicit_padding = c10::get_if<torch::ExpandingArray<2>>(&options.padding()))
        padding = *explicit_padding;
      const auto unfold = torch::nn::functional::UnfoldFuncOptions(options.kernel_size())
                              .dilation(options.dilation())
                              .padding(padding)
                              .stride(options.stride());
      const int64_t n = a.size(0), out_channels = delta.size(1);
      const int64_t positions = delta.size(2) * delta.size(3);
      const int64_t patch = a.size(1) * (*options.kernel_size())[0] * (*options.kernel_size())[1];
      const int64_t per_sample_bytes = patch * positions * static_cast<int64_t>(sizeof(float));
      const int64_t step = std::max<int64_t>(1, kUnfoldBytes / std::max<int64_t>(per_sample_bytes, 1));
      torch::Tensor weight_squares = torch::zeros({out_channels, patch}, delta.options());
      for (int64_t first = 0; first < n; first += step) {
        const int64_t m = std::min(step, n - first);
        const torch::Tensor columns = torch::nn::functional::unfold(a.narrow(0, first, m), unfold);  // m x patch x L
        const torch::Tensor d = delta.narrow(0, first, m).reshape({m, out_channels, positions});
        torch::Tensor sample_gradients = torch::bmm(d, columns.transpose(1, 2));  // m x Cout x patch
        weight_squares.add_(sample_gradients.mul_(sample_gradients).sum(0));
      }
      add_to(sums, conv.weight, weight_squares);
      if (conv.bias.defined()) add_to(sums, conv.bias, delta.sum({2, 3}).pow(2).sum(0));
      break;
    }
    case TapedLayerKind::BatchNorm2d: {
      // Eval mode: y = gamma * xhat + beta with xhat from the running statistics,
      // so dL_i/dgamma = sum over positions of delta_i * xhat_i, dL_i/dbeta = sum of delta_i.
      const auto& norm = dynamic_cast<const torch::nn::BatchNorm2dImpl&>(*layer.module);
      const torch::Tensor mean = norm.running_mean.view({1, -1, 1, 1});
      const torch::Tensor inverse_std = (norm.running_var + norm.options.eps()).rsqrt().view({1, -1, 1, 1});
      const torch::Tensor normalised = (a - mean) * inverse_std;
      add_to(sums, norm.weight, (delta * normalised).sum({2, 3}).pow(2).sum(0));
      add_to(sums, norm.bias, delta.sum({2, 3}).pow(2).sum(0));
      break;
    }
  }
}

// The model as a MultiHeadModel whose trunk the tape records completely, every
// shared parameter in a recorded layer; otherwise null and `why` says what is
// missing. Probed on the task's first sample, so every rank decides alike.
MultiHeadModelImpl* batched_fisher_model(ContinualNet& model, const TaskData& data, std::string* why) {
  auto* multi_head = dynamic_cast<MultiHeadModelImpl*>(&model);
  if (multi_head == nullptr) {
    *why = "the network is not a MultiHeadModel";
    return nullptr;
  }
  torch::NoGradGuard no_grad;
  LayerTape tape;
  multi_head->features_recorded(data.inputs(torch::zeros({1}, torch::kInt64)), tape);
  if (!tape.complete()) {
    *why = "its trunk has " + tape.reason();
    return nullptr;
  }
  std::unordered_set<const c10::TensorImpl*> recorded;
  for (const TapedLayer& layer : tape.layers())
    for (const auto& parameter : layer.module->parameters(/*recurse=*/false))
      recorded.insert(parameter.unsafeGetTensorImpl());
  for (const auto& [name, parameter] : model.named_shared_parameters())
    if (!recorded.count(parameter.unsafeGetTensorImpl())) {
      *why = "the shared parameter " + name + " is in no Linear, Conv2d or BatchNorm2d layer of the trunk";
      return nullptr;
    }
  return multi_head;
}

}  // namespace

NamedTensors fisher_diagonal(StageContext& ctx, int task, int64_t samples, bool sample_labels, FisherPath path) {
  EvalModeScope eval(ctx.model);
  const auto named = ctx.model.named_shared_parameters();
  std::vector<torch::Tensor> parameters;
  for (const auto& item : named) parameters.push_back(item.second);
  const TaskData& data = ctx.stream.tasks.at(task).train;
  const int64_t count = samples > 0 ? std::min(samples, data.size()) : data.size();
  const auto [offset, length] = shard_range(count, ctx.comm.rank(), ctx.comm.size());
  const int64_t head = ctx.head_for(task);

  // Labels of the samples at `positions` (rows of `log_probabilities`): drawn
  // from the model's prediction with a generator seeded by the sample's index,
  // or the true labels.
  auto labels_for = [&](const torch::Tensor& positions, const torch::Tensor& log_probabilities) {
    if (!sample_labels) return data.labels(positions, ctx.heads);
    const torch::Tensor probabilities = log_probabilities.detach().exp();
    torch::Tensor labels = torch::empty({positions.size(0)}, torch::kInt64);
    for (int64_t r = 0; r < positions.size(0); ++r)
      labels[r] = draw_category(probabilities[r], mix_seed({ctx.seed, 0xf15e, static_cast<uint64_t>(task),
                                                            static_cast<uint64_t>(positions[r].item<int64_t>())}));
    return labels;
  };

  std::vector<torch::Tensor> sums;
  for (const auto& parameter : parameters) sums.push_back(torch::zeros({parameter.numel()}));
  MultiHeadModelImpl* taped_model = nullptr;
  if (path != FisherPath::PerSampleLoop && count > 0) {
    std::string why;
    taped_model = batched_fisher_model(ctx.model, data, &why);
    if (taped_model == nullptr && path == FisherPath::Batched)
      throw Error("fisher_diagonal: batched per-sample gradients are not possible: " + why);
  }
  if (taped_model != nullptr) {
    SquareSums by_parameter;
    for (size_t k = 0; k < parameters.size(); ++k) by_parameter[parameters[k].unsafeGetTensorImpl()] = sums[k];
    for (int64_t start = offset; start < offset + length; start += kFisherChunk) {
      const torch::Tensor positions = torch::arange(start, std::min(start + kFisherChunk, offset + length), torch::kInt64);
      LayerTape tape;
      const torch::Tensor features = taped_model->features_recorded(data.inputs(positions), tape);
      const torch::Tensor log_probabilities = torch::log_softmax(ctx.model.head_forward(features, head), 1);
      const torch::Tensor labels = labels_for(positions, log_probabilities);
      // Sample i's log-likelihood depends on sample i's outputs only, so the
      // gradient of the sum has each sample's own gradient in its row.
      const torch::Tensor objective = log_probabilities.gather(1, labels.view({-1, 1})).sum();
      std::vector<torch::Tensor> outputs;
      for (const TapedLayer& layer : tape.layers()) outputs.push_back(layer.output);
      const auto deltas = torch::autograd::grad({objective}, outputs, {}, false, false, /*allow_unused=*/true);
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < outputs.size(); ++k)
        if (deltas[k].defined()) add_squared_sample_gradients(tape.layers()[k], deltas[k], by_parameter);
    }
  } else {
    for (int64_t i = offset; i < offset + length; ++i) {
      const torch::Tensor position = torch::tensor({i}, torch::kInt64);
      const torch::Tensor log_probabilities = torch::log_softmax(ctx.model.logits(data.inputs(position), head), 1);
      const int64_t label = labels_for(position, log_probabilities).item<int64_t>();
      const auto grads = torch::autograd::grad({log_probabilities[0][label]}, parameters, {}, false, false, true);
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < parameters.size(); ++k)
        if (grads[k].defined()) sums[k].add_(grads[k].reshape({-1}).pow(2));
    }
  }
  torch::Tensor flat;
  const std::vector<torch::Tensor> totals = sum_across_ranks_fused(ctx.comm, sums, flat);
  flat.div_(static_cast<double>(std::max<int64_t>(count, 1)));
  NamedTensors fisher;
  for (size_t k = 0; k < parameters.size(); ++k)
    fisher.emplace_back(named[k].first, totals[k].view(parameters[k].sizes()).clone());
  return fisher;
}

}  // namespace clx
