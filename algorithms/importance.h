#pragma once
// Importance passes over a task's training data, shared by every algorithm
// that needs one (DESIGN.md 4.2-4.3). Every pass is data-parallel: each rank
// takes its share of each global batch, and the gradients are all-reduced
// before anything is derived from them, so the result is the same on every
// rank and does not depend on the number of ranks.
#include <functional>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

// Mean over global batches (ctx.batch_size) of `task`'s training data of
// transform(g, theta) per shared parameter, where g is the gradient of the
// global-batch mean of `per_sample(logits)` (logits of the task's head, model
// in eval mode). `per_sample` returns one value per sample.
// `accumulate(g, theta, sum)` adds transform(g, theta) to `sum` in place.
using AccumulateImportance = std::function<void(const torch::Tensor& g, const torch::Tensor& theta, torch::Tensor& sum)>;
NamedTensors mean_over_batches(StageContext& ctx, int task,
                               const std::function<torch::Tensor(const torch::Tensor& logits)>& per_sample,
                               const AccumulateImportance& accumulate);

// ANPyC, label-free (Eq. 7): H = per-sample entropy of the softmax output,
// omega_B = max(0, sign * g * theta + 0.5 * g^2 * theta^2), averaged over batches.
NamedTensors entropy_taylor_importance(StageContext& ctx, int task, double sign);

// MAS: mean over batches of |d mean_x ||f(x)||_2^2 / d theta|.
NamedTensors mas_importance(StageContext& ctx, int task);

// How fisher_diagonal forms per-sample gradients. Batched: 128 samples per
// forward and backward pass, the per-sample gradients of every Linear, Conv2d
// and BatchNorm2d layer in closed form from the layer's input and its output's
// gradient (models/layer_tape.h); needs a MultiHeadModel whose trunk the tape
// records completely (MLP, VGG-9, ResNet-18). PerSampleLoop: one forward and
// backward pass per sample, for any network. Auto: batched where possible.
// Both compute the same values up to float rounding, and draw the same labels
// (a draw could differ only if its uniform number fell within float rounding
// of a category boundary).
enum class FisherPath { Auto, Batched, PerSampleLoop };

// EWC: mean over samples of (d log p(y|x) / d theta)^2 with per-sample
// gradients, over the first `samples` training samples of `task` (all when
// <= 0). y is drawn from the model's own prediction (`sample_labels`) with a
// generator seeded by (seed, task, sample index), so the draw does not depend
// on the number of ranks; otherwise y is the true label. Sums and counts are
// all-reduced. FisherPath::Batched throws clx::Error when the model does not
// allow it.
NamedTensors fisher_diagonal(StageContext& ctx, int task, int64_t samples, bool sample_labels,
                             FisherPath path = FisherPath::Auto);

// Per-sample entropy -sum_k q_k log q_k of softmax(logits), with the log's
// argument clamped away from 0.
torch::Tensor softmax_entropy(const torch::Tensor& logits);

}  // namespace clx
