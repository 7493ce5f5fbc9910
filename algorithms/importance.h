#pragma once
// Importance passes over a task's training data, shared by every algorithm
// that needs one (DESIGN.md 4.2-4.3).
//
// Every pass is a sum of per-chunk contributions (a chunk: one importance
// batch, or a fixed number of samples) taken in chunk order. Chunk c is
// computed whole by rank c mod world size, with the same shapes as on one
// rank; each round of world-size chunks is all-gathered and every rank adds
// the contributions in chunk order. So the result is the same on every rank
// and, bit for bit, the same for any number of ranks (given the same threads
// per rank): nothing is summed in an order that depends on the world size.
#include <functional>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

// sum over c < chunks of contribute(c), where contribute(c, out) writes chunk
// c's contribution into `out` (zeros of `numel` elements with `options`):
// computed as the header describes, so bit-identical on any number of ranks.
// Every rank must call it with the same arguments (it runs collectives).
torch::Tensor sum_chunks_in_order(Communicator& comm, int64_t chunks, int64_t numel, const torch::TensorOptions& options,
                                  const std::function<void(int64_t chunk, torch::Tensor& out)>& contribute);

// H_B of an importance batch: summed over its samples (released code) or their mean.
enum class EntropyReduction { Sum, Mean };
// h in omega_B: the square of the batch gradient g (released code), or the
// per-sample diagonal Fisher mean_i (dH_i/dtheta)^2 over the batch (the paper's text).
enum class HessianEstimate { GradientSquared, Fisher };

struct EntropyTaylorSettings {
  int64_t batch = 100;  // samples per importance batch, in the stored order
  double sign = 1.0;    // s: +1 released code, -1 the weight removed (delta W = -W)
  EntropyReduction entropy = EntropyReduction::Sum;
  HessianEstimate hessian = HessianEstimate::GradientSquared;
};

// ANPyC, label-free (Eq. 7): for each importance batch B of `task`'s training
// data, H_B = sum (or mean) over its samples of the entropy of the task head's
// softmax (eval mode), g = dH_B/dtheta, omega_B = max(0, s g theta + h theta^2 / 2);
// Omega_t = the mean of omega_B over the batches.
NamedTensors entropy_taylor_importance(StageContext& ctx, int task, const EntropyTaylorSettings& settings);

// MAS importance. PerSample (default): mean over the training samples of
// |d ||f(x)||_2^2 / dtheta| with a gradient per sample (the MAS paper). Batch:
// mean over global training batches (ctx.batch_size) of |d mean_x ||f(x)||_2^2 / dtheta|.
enum class MasForm { PerSample, Batch };
NamedTensors mas_importance(StageContext& ctx, int task, MasForm form);

// How per-sample gradients are formed. Batched: 128 samples per forward and
// backward pass, the per-sample gradients of every Linear, Conv2d,
// ConvTranspose2d and BatchNorm2d layer in closed form from the layer's input and its output's
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
// on the number of ranks; otherwise y is the true label. FisherPath::Batched
// throws clx::Error when the model does not allow it.
NamedTensors fisher_diagonal(StageContext& ctx, int task, int64_t samples, bool sample_labels,
                             FisherPath path = FisherPath::Auto);

// Per-sample entropy -sum_k q_k log q_k of softmax(logits), with the log's
// argument clamped away from 0.
torch::Tensor softmax_entropy(const torch::Tensor& logits);

}  // namespace clx
