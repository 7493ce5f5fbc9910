#include "algorithms/importance.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "models/multi_head_model.h"
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

// The shared parameters laid out in one flat tensor, in the model's order:
// how the per-chunk contributions of a pass are stored and exchanged.
struct SharedLayout {
  NamedTensors parameters;
  std::vector<int64_t> offsets;
  int64_t numel = 0;

  explicit SharedLayout(const ContinualNet& model) : parameters(model.named_shared_parameters()) {
    if (parameters.empty()) throw Error("importance pass: the model has no shared parameters");
    for (const auto& item : parameters) {
      offsets.push_back(numel);
      numel += item.second.numel();
    }
  }
  torch::TensorOptions options() const { return parameters[0].second.options().requires_grad(false); }
  std::vector<torch::Tensor> tensors() const {
    std::vector<torch::Tensor> out;
    for (const auto& item : parameters) out.push_back(item.second);
    return out;
  }
  // Flat views of `flat`, one per parameter.
  std::vector<torch::Tensor> slots(const torch::Tensor& flat) const {
    std::vector<torch::Tensor> out;
    for (size_t k = 0; k < parameters.size(); ++k) out.push_back(flat.narrow(0, offsets[k], parameters[k].second.numel()));
    return out;
  }
  // `flat` as named tensors shaped like the parameters (copies).
  NamedTensors named(const torch::Tensor& flat) const {
    NamedTensors out;
    const auto views = slots(flat);
    for (size_t k = 0; k < parameters.size(); ++k)
      out.emplace_back(parameters[k].first, views[k].view(parameters[k].second.sizes()).clone());
    return out;
  }
};

torch::Tensor position_range(int64_t begin, int64_t end) { return torch::arange(begin, end, torch::kInt64); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// True when the plain loops below may run: contiguous float32 tensors in host memory.
bool host_float_contiguous(const std::vector<const torch::Tensor*>& tensors) {
  for (const torch::Tensor* tensor : tensors)
    if (!tensor->device().is_cpu() || tensor->scalar_type() != torch::kFloat32 || !tensor->is_contiguous()) return false;
  return true;
}

// The category whose cumulative probability first exceeds a uniform draw seeded by `seed`.
int64_t draw_category(const double* probabilities, int64_t categories, uint64_t seed) {
  SplitMix64 generator(seed);
  const double u = generator.uniform();
  double cumulative = 0.0;
  for (int64_t k = 0; k < categories; ++k) {
    cumulative += probabilities[k];
    if (u < cumulative) return k;
  }
  return categories - 1;
}

}  // namespace

torch::Tensor sum_chunks_in_order(Communicator& comm, int64_t chunks, int64_t numel, const torch::TensorOptions& options,
                                  const std::function<void(int64_t chunk, torch::Tensor& out)>& contribute) {
  torch::Tensor total = torch::zeros({numel}, options);
  torch::Tensor mine = torch::empty({numel}, options);
  const int64_t world = comm.size(), rank = comm.rank();
  for (int64_t first = 0; first < chunks; first += world) {
    const int64_t in_round = std::min(world, chunks - first);
    mine.zero_();
    if (rank < in_round) contribute(first + rank, mine);
    torch::NoGradGuard no_grad;
    if (world == 1) {
      total.add_(mine);
      continue;
    }
    const torch::Tensor gathered = comm.allgather(mine);  // [world, numel]
    for (int64_t r = 0; r < in_round; ++r) total.add_(gathered[r]);
  }
  return total;
}

torch::Tensor softmax_entropy(const torch::Tensor& logits) {
  const torch::Tensor q = torch::softmax(logits, 1);
  return -(q * q.clamp_min(1e-12).log()).sum(1);
}

namespace {

// ---------------------------------------------------------------- per-sample gradients

// Samples per chunk of the per-sample passes (EWC's Fisher, MAS): the
// activations of one training batch.
constexpr int64_t kPerSampleChunk = 128;
// The unfolded input of a convolution holds Cin*k*k values per output
// position and sample. Taking a few samples at a time (at most this many
// bytes of it, at least one sample) keeps it and the per-sample gradients in
// cache: measured on VGG-9, twice as fast as unfolding 128 samples at once.
constexpr int64_t kUnfoldBytes = int64_t{1} << 20;

// |x|^power element-wise, for power 1 (MAS) or 2 (Fisher).
torch::Tensor powered(const torch::Tensor& x, int power) { return power == 2 ? x.pow(2) : x.abs(); }

// Where each shared parameter's running sum of per-sample gradient powers lives.
using SampleSums = std::unordered_map<const c10::TensorImpl*, torch::Tensor>;

void add_to(SampleSums& sums, const torch::Tensor& parameter, const torch::Tensor& values) {
  if (!parameter.defined()) return;
  auto found = sums.find(parameter.unsafeGetTensorImpl());
  if (found != sums.end()) found->second.add_(values.reshape({-1}));
}

// The windows a convolution (or a transposed one) slides: its kernel, stride,
// padding and dilation, as an unfolding.
template <typename ConvOptions>
torch::nn::functional::UnfoldFuncOptions unfold_options_of(const ConvOptions& options) {
  torch::ExpandingArray<2> padding(0);  // a transposed convolution's padding is always explicit
  if (const auto* explicit_padding = c10::get_if<torch::ExpandingArray<2>>(&options.padding()))
    padding = *explicit_padding;
  return torch::nn::functional::UnfoldFuncOptions(options.kernel_size())
      .dilation(options.dilation())
      .padding(padding)
      .stride(options.stride());
}

// sum_i |rows_i (R x L) times unfold(windows_i)^T (L x patch)|^power, the
// R x patch sum of a per-sample weight gradient's powers: rows [n, R, h, w]
// with h*w = L, the number of windows that `unfold` takes from windows
// [n, C, ...] (patch = C*kh*kw). A few samples at a time (kUnfoldBytes).
torch::Tensor sum_unfolded_product_powers(const torch::Tensor& rows, const torch::Tensor& windows,
                                          const torch::nn::functional::UnfoldFuncOptions& unfold, int power) {
  const int64_t n = rows.size(0), row_count = rows.size(1), positions = rows.size(2) * rows.size(3);
  const int64_t patch = windows.size(1) * (*unfold.kernel_size())[0] * (*unfold.kernel_size())[1];
  const int64_t per_sample_bytes = patch * positions * static_cast<int64_t>(sizeof(float));
  const int64_t step = std::max<int64_t>(1, kUnfoldBytes / std::max<int64_t>(per_sample_bytes, 1));
  torch::Tensor sums = torch::zeros({row_count, patch}, rows.options());
  for (int64_t first = 0; first < n; first += step) {
    const int64_t m = std::min(step, n - first);
    const torch::Tensor columns = torch::nn::functional::unfold(windows.narrow(0, first, m), unfold);  // m x patch x L
    const torch::Tensor r = rows.narrow(0, first, m).reshape({m, row_count, positions});
    sums.add_(powered(torch::bmm(r, columns.transpose(1, 2)), power).sum(0));  // m x R x patch
  }
  return sums;
}

// Adds sum_i |dL_i/dW|^power for the parameters of one taped layer, where row
// i of `delta` (the gradient of sum_i L_i with respect to the layer's output)
// is sample i's own gradient because no layer mixes samples.
void add_sample_gradient_powers(const TapedLayer& layer, const torch::Tensor& delta, int power, SampleSums& sums) {
  const torch::Tensor& a = layer.input;
  switch (layer.kind) {
    case TapedLayerKind::Linear: {
      // dL_i/dW = delta_i a_i^T, whose |.|^p factorises: sum_i |dL_i/dW|^p = (|delta|^p)^T (|a|^p).
      const auto& linear = dynamic_cast<const torch::nn::LinearImpl&>(*layer.module);
      const torch::Tensor delta_p = powered(delta, power);
      add_to(sums, linear.weight, delta_p.t().mm(powered(a, power)));
      add_to(sums, linear.bias, delta_p.sum(0));
      break;
    }
    case TapedLayerKind::Conv2d: {
      // dL_i/dW = delta_i (Cout x L) times unfold(a_i)^T (L x Cin*kh*kw): the
      // convolution is a matrix product over the L output positions.
      const auto& conv = dynamic_cast<const torch::nn::Conv2dImpl&>(*layer.module);
      add_to(sums, conv.weight, sum_unfolded_product_powers(delta, a, unfold_options_of(conv.options), power));
      if (conv.bias.defined()) add_to(sums, conv.bias, powered(delta.sum({2, 3}), power).sum(0));
      break;
    }
    case TapedLayerKind::ConvTranspose2d: {
      // y_i[co, p*s - pad + k*d] += a_i[ci, p] W[ci, co, k]: the weight gradient of
      // a transposed convolution is a convolution's with input and output
      // swapped, dL_i/dW = a_i (Cin x L) times unfold(delta_i)^T (L x Cout*kh*kw),
      // the unfolding taken with the layer's kernel, stride, padding and
      // dilation: one window per input position, L = Hin*Win (output_padding,
      // less than the stride, adds output rows but no window).
      const auto& conv = dynamic_cast<const torch::nn::ConvTranspose2dImpl&>(*layer.module);
      add_to(sums, conv.weight, sum_unfolded_product_powers(a, delta, unfold_options_of(conv.options), power));
      if (conv.bias.defined()) add_to(sums, conv.bias, powered(delta.sum({2, 3}), power).sum(0));
      break;
    }
    case TapedLayerKind::BatchNorm2d: {
      // Eval mode: y = gamma * xhat + beta with xhat from the running statistics,
      // so dL_i/dgamma = sum over positions of delta_i * xhat_i, dL_i/dbeta = sum of delta_i.
      const auto& norm = dynamic_cast<const torch::nn::BatchNorm2dImpl&>(*layer.module);
      const torch::Tensor mean = norm.running_mean.view({1, -1, 1, 1});
      const torch::Tensor inverse_std = (norm.running_var + norm.options.eps()).rsqrt().view({1, -1, 1, 1});
      const torch::Tensor normalised = (a - mean) * inverse_std;
      add_to(sums, norm.weight, powered((delta * normalised).sum({2, 3}), power).sum(0));
      add_to(sums, norm.bias, powered(delta.sum({2, 3}), power).sum(0));
      break;
    }
  }
}

// The model as a MultiHeadModel whose trunk the tape records completely, every
// shared parameter in a recorded layer; otherwise null and `why` says what is
// missing. Probed on the task's first sample, so every rank decides alike.
MultiHeadModelImpl* tape_capable_model(const StageContext& ctx, const TaskData& data, std::string* why) {
  auto* multi_head = dynamic_cast<MultiHeadModelImpl*>(&ctx.model);
  if (multi_head == nullptr) {
    *why = "the network is not a MultiHeadModel";
    return nullptr;
  }
  torch::NoGradGuard no_grad;
  LayerTape tape;
  multi_head->features_recorded(ctx.inputs(data, torch::zeros({1}, torch::kInt64)), tape);
  if (!tape.complete()) {
    *why = "its trunk has " + tape.reason();
    return nullptr;
  }
  std::unordered_set<const c10::TensorImpl*> recorded;
  for (const TapedLayer& layer : tape.layers())
    for (const auto& parameter : layer.module->parameters(/*recurse=*/false))
      recorded.insert(parameter.unsafeGetTensorImpl());
  for (const auto& [name, parameter] : ctx.model.named_shared_parameters())
    if (!recorded.count(parameter.unsafeGetTensorImpl())) {
      *why = "the shared parameter " + name + " is in no Linear, Conv2d, ConvTranspose2d or BatchNorm2d layer of the trunk";
      return nullptr;
    }
  return multi_head;
}

// What an importance pass differentiates for `task` at `positions`: the
// model's logits on those samples, or, on a generator, the logits of (or the
// images) generated from those noise draws (StageContext::generated_logits).
enum class ImportanceOutput { Logits, Output };
torch::Tensor importance_forward(const StageContext& ctx, const TaskData& data, const torch::Tensor& positions, int task,
                                 ImportanceOutput what) {
  const auto& generated = what == ImportanceOutput::Logits ? ctx.generated_logits : ctx.generated_output;
  if (generated) return generated(task, positions);
  return ctx.model.logits(ctx.inputs(data, positions), ctx.head_for(task));
}

// The model for the batched per-sample path, or null for the per-sample loop.
MultiHeadModelImpl* per_sample_model(const StageContext& ctx, const TaskData& data, FisherPath path,
                                     const std::string& what) {
  if (path == FisherPath::PerSampleLoop || data.size() == 0) return nullptr;
  if (ctx.generated_logits) {
    // The tape records a classifier's trunk on real inputs; a generator's passes go sample by sample.
    if (path == FisherPath::Batched) throw Error(what + ": batched per-sample gradients are not possible on a generator");
    return nullptr;
  }
  std::string why;
  MultiHeadModelImpl* taped = tape_capable_model(ctx, data, &why);
  if (taped == nullptr && path == FisherPath::Batched)
    throw Error(what + ": batched per-sample gradients are not possible: " + why);
  return taped;
}

// One value per sample from the logits of the samples at `positions`; value i
// depends on sample i alone.
using PerSampleObjective = std::function<torch::Tensor(const torch::Tensor& logits, const torch::Tensor& positions)>;

// Adds sum_i |d f_i / d theta|^power over the samples at `positions` to
// `slots` (flat, one per shared parameter), f = objective. `taped`: the
// batched path; null: one backward pass per sample.
void add_per_sample_gradient_powers(const StageContext& ctx, MultiHeadModelImpl* taped, const TaskData& data,
                                    int task, ImportanceOutput what, const torch::Tensor& positions,
                                    const PerSampleObjective& objective, int power, const SharedLayout& layout,
                                    const std::vector<torch::Tensor>& slots) {
  const int64_t head = ctx.head_for(task);
  if (taped != nullptr) {
    SampleSums sums;
    for (size_t k = 0; k < slots.size(); ++k) sums[layout.parameters[k].second.unsafeGetTensorImpl()] = slots[k];
    LayerTape tape;
    const torch::Tensor features = taped->features_recorded(ctx.inputs(data, positions), tape);
    // Sample i's value depends on sample i's outputs only, so the gradient of
    // the sum has each sample's own gradient in its row.
    const torch::Tensor total = objective(ctx.model.head_forward(features, head), positions).sum();
    std::vector<torch::Tensor> outputs;
    for (const TapedLayer& layer : tape.layers()) outputs.push_back(layer.output);
    const auto deltas = torch::autograd::grad({total}, outputs, {}, false, false, /*allow_unused=*/true);
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < outputs.size(); ++k)
      if (deltas[k].defined()) add_sample_gradient_powers(tape.layers()[k], deltas[k], power, sums);
    return;
  }
  const std::vector<torch::Tensor> parameters = layout.tensors();
  for (int64_t i = 0; i < positions.size(0); ++i) {
    const torch::Tensor position = positions.narrow(0, i, 1);
    const torch::Tensor value = objective(importance_forward(ctx, data, position, task, what), position);
    const auto grads = torch::autograd::grad({value.sum()}, parameters, {}, false, false, /*allow_unused=*/true);
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < parameters.size(); ++k)
      if (grads[k].defined()) slots[k].add_(powered(grads[k].reshape({-1}), power));
  }
}

// ---------------------------------------------------------------- ANPyC

// out += max(0, s g theta + h theta^2 / 2), with h = g^2 when `h` is undefined.
void add_entropy_taylor_term(const torch::Tensor& g, const torch::Tensor& theta, const torch::Tensor& h, double sign,
                             torch::Tensor& out) {
  // One pass, no temporaries: on an MLP the tensor operations of the formula
  // cost more than the backward pass that produced g.
  if (host_float_contiguous({&g, &theta, &out}) && (!h.defined() || host_float_contiguous({&h}))) {
    const float* g_data = g.data_ptr<float>();
    const float* theta_data = theta.data_ptr<float>();
    const float* h_data = h.defined() ? h.data_ptr<float>() : nullptr;
    float* out_data = out.data_ptr<float>();
    const float s = static_cast<float>(sign);
    const int64_t n = out.numel();
    for (int64_t i = 0; i < n; ++i) {
      const float g_theta = g_data[i] * theta_data[i];
      const float curvature = h_data != nullptr ? h_data[i] * theta_data[i] * theta_data[i] : g_theta * g_theta;
      out_data[i] += std::max(s * g_theta + 0.5f * curvature, 0.0f);
    }
    return;
  }
  const torch::Tensor g_theta = g * theta;
  const torch::Tensor curvature = h.defined() ? h * theta * theta : g_theta * g_theta;
  out.add_((sign * g_theta + 0.5 * curvature).clamp_min(0.0));
}

}  // namespace

NamedTensors entropy_taylor_importance(StageContext& ctx, int task, const EntropyTaylorSettings& settings) {
  if (settings.batch <= 0) throw Error("anpyc.importance_batch: must be positive");
  EvalModeScope eval(ctx.model);
  const SharedLayout layout(ctx.model);
  const std::vector<torch::Tensor> parameters = layout.tensors();
  const TaskData& data = ctx.stream.tasks.at(task).train;
  const int64_t batches = ceil_div(data.size(), settings.batch);
  MultiHeadModelImpl* taped = settings.hessian == HessianEstimate::Fisher
                                  ? per_sample_model(ctx, data, FisherPath::Auto, "anpyc.hessian=fisher")
                                  : nullptr;
  torch::Tensor fisher;  // per-sample Fisher of the current batch (hessian = fisher)
  torch::Tensor total = sum_chunks_in_order(ctx.comm, batches, layout.numel, layout.options(), [&](int64_t b, torch::Tensor& out) {
    const torch::Tensor positions = position_range(b * settings.batch, std::min((b + 1) * settings.batch, data.size()));
    const torch::Tensor entropies = softmax_entropy(importance_forward(ctx, data, positions, task, ImportanceOutput::Logits));
    const torch::Tensor objective = settings.entropy == EntropyReduction::Sum ? entropies.sum() : entropies.mean();
    const auto grads = torch::autograd::grad({objective}, parameters, {}, false, false, /*allow_unused=*/true);
    std::vector<torch::Tensor> h_slots(parameters.size());
    if (settings.hessian == HessianEstimate::Fisher) {
      if (!fisher.defined()) fisher = torch::empty({layout.numel}, layout.options());
      fisher.zero_();
      h_slots = layout.slots(fisher);
      add_per_sample_gradient_powers(
          ctx, taped, data, task, ImportanceOutput::Logits, positions,
          [](const torch::Tensor& logits, const torch::Tensor&) { return softmax_entropy(logits); }, 2, layout, h_slots);
      fisher.div_(static_cast<double>(positions.size(0)));
    }
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> out_slots = layout.slots(out);
    for (size_t k = 0; k < parameters.size(); ++k) {
      const torch::Tensor g = grads[k].defined() ? grads[k].reshape({-1}) : torch::zeros_like(out_slots[k]);
      add_entropy_taylor_term(g, parameters[k].detach().reshape({-1}), h_slots[k], settings.sign, out_slots[k]);
    }
  });
  total.div_(static_cast<double>(std::max<int64_t>(batches, 1)));
  return layout.named(total);
}

NamedTensors mas_importance(StageContext& ctx, int task, MasForm form) {
  EvalModeScope eval(ctx.model);
  const SharedLayout layout(ctx.model);
  const TaskData& data = ctx.stream.tasks.at(task).train;
  const auto squared_norm = [](const torch::Tensor& logits, const torch::Tensor&) { return logits.pow(2).sum(1); };
  if (form == MasForm::PerSample) {
    MultiHeadModelImpl* taped = per_sample_model(ctx, data, FisherPath::Auto, "mas");
    torch::Tensor total = sum_chunks_in_order(
        ctx.comm, ceil_div(data.size(), kPerSampleChunk), layout.numel, layout.options(), [&](int64_t c, torch::Tensor& out) {
          const torch::Tensor positions = position_range(c * kPerSampleChunk, std::min((c + 1) * kPerSampleChunk, data.size()));
          add_per_sample_gradient_powers(ctx, taped, data, task, ImportanceOutput::Output, positions, squared_norm, 1,
                                         layout, layout.slots(out));
        });
    total.div_(static_cast<double>(std::max<int64_t>(data.size(), 1)));
    return layout.named(total);
  }
  if (ctx.batch_size <= 0) throw Error("mas_importance: the training batch size must be positive");
  const std::vector<torch::Tensor> parameters = layout.tensors();
  const int64_t batches = ceil_div(data.size(), ctx.batch_size);
  torch::Tensor total = sum_chunks_in_order(ctx.comm, batches, layout.numel, layout.options(), [&](int64_t b, torch::Tensor& out) {
    const torch::Tensor positions = position_range(b * ctx.batch_size, std::min((b + 1) * ctx.batch_size, data.size()));
    const torch::Tensor output = importance_forward(ctx, data, positions, task, ImportanceOutput::Output);
    const auto grads = torch::autograd::grad({squared_norm(output, positions).mean()}, parameters, {}, false, false, true);
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> slots = layout.slots(out);
    for (size_t k = 0; k < parameters.size(); ++k)
      if (grads[k].defined()) slots[k].add_(grads[k].reshape({-1}).abs());
  });
  total.div_(static_cast<double>(std::max<int64_t>(batches, 1)));
  return layout.named(total);
}

NamedTensors fisher_diagonal(StageContext& ctx, int task, int64_t samples, bool sample_labels, FisherPath path) {
  EvalModeScope eval(ctx.model);
  const SharedLayout layout(ctx.model);
  const TaskData& data = ctx.stream.tasks.at(task).train;
  const int64_t count = samples > 0 ? std::min(samples, data.size()) : data.size();
  MultiHeadModelImpl* taped = count > 0 ? per_sample_model(ctx, data, path, "fisher_diagonal") : nullptr;

  // log p(y_i | x_i) per sample, y_i drawn from the model's prediction with a
  // generator seeded by the sample's index (probabilities copied to the host
  // once per chunk), or the true label.
  const PerSampleObjective log_likelihood = [&](const torch::Tensor& logits, const torch::Tensor& positions) {
    const torch::Tensor log_probabilities = torch::log_softmax(logits, 1);
    torch::Tensor labels;
    if (!sample_labels) {
      labels = data.labels(positions, ctx.heads).to(logits.device());
    } else {
      const torch::Tensor probabilities = log_probabilities.detach().exp().to(torch::kCPU, torch::kFloat64).contiguous();
      const torch::Tensor rows = positions.to(torch::kCPU).contiguous();
      const int64_t n = rows.size(0), categories = probabilities.size(1);
      std::vector<int64_t> drawn(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r)
        drawn[r] = draw_category(probabilities.data_ptr<double>() + r * categories, categories,
                                 mix_seed({ctx.seed, 0xf15e, static_cast<uint64_t>(task),
                                           static_cast<uint64_t>(rows.data_ptr<int64_t>()[r])}));
      labels = torch::tensor(drawn, torch::kInt64).to(logits.device());
    }
    return log_probabilities.gather(1, labels.view({-1, 1})).view({-1});
  };
  torch::Tensor total = sum_chunks_in_order(
      ctx.comm, ceil_div(count, kPerSampleChunk), layout.numel, layout.options(), [&](int64_t c, torch::Tensor& out) {
        const torch::Tensor positions = position_range(c * kPerSampleChunk, std::min((c + 1) * kPerSampleChunk, count));
        add_per_sample_gradient_powers(ctx, taped, data, task, ImportanceOutput::Logits, positions, log_likelihood, 2,
                                       layout, layout.slots(out));
      });
  total.div_(static_cast<double>(std::max<int64_t>(count, 1)));
  return layout.named(total);
}

}  // namespace clx
