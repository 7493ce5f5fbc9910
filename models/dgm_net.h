#pragma once
// DGM's generator (Ostapenko et al. CVPR 2019, dynamic generative memory;
// every constant as in the authors' reference SAP/machine-learning-dgm, MNIST
// settings; DESIGN.md §4.3): a DCGAN-style generator whose three hidden
// layers carry one learnable mask per task, on their weights (DGMw) or on
// their output units (DGMa), and which grows after every task by what that
// task reserved, so the free capacity stays constant.
//
// Layers (transposed convolutions without bias, as the reference's), for
// S x S images, S = 32 or 28, C channels, n = base_channels (ngf):
//   z (noise_dim; its first `classes` entries overwritten by the one-hot class,
//      as the reference conditions) as noise_dim x 1 x 1
//   -> conv1: k x k / 1, pad 0 -> 4n x k x k   (k = 4 for S = 32, 7 for S = 28)  -> ReLU
//   -> conv2: 4x4 / 2, pad 1   -> 2n x 2k x 2k                                     -> ReLU
//   -> conv3: 4x4 / 2, pad 1 (S = 32) or 3x3 / 1, pad 1 (S = 28) -> n x S/2 x S/2  -> ReLU
//   -> heads.t: 4x4 / 2, pad 1 -> C x S x S -> tanh   (one unmasked head per task)
// "4n, 2n, n" are the initial widths; growth appends output channels to the
// hidden layers (and input channels to the layer after).
//
// Masks. Task t has an embedding e_t per hidden layer: the weight's shape
// (DGMw) or one entry per output channel (DGMa), initialised at 0 (the
// reference's). While task t trains at scale s its gate is sigmoid(s e_t),
// with graph (set_training_scale); every other forward of task t, and every
// forward of any other task, uses the binary mask e_t >= 0 (sigmoid(s_max e)
// >= 0.5, the reference's binarisation at task end). DGMw multiplies the
// weight by the gate, DGMa the layer's output channels (before the ReLU).
// Binary masks of finished tasks never change: a task trains only its own
// embeddings and head (head_parameters_trained_by), and the strategy (algorithms/dgm.h)
// blocks the weight gradients that earlier tasks' masks reserve.
//
// Growth (expand). After task t, with the number of output channels each
// hidden layer gains: weights grow by new input and output channels at the
// end, drawn N(0, 0.02) (the reference's DCGAN initialisation) from a CPU
// generator seeded by (seed, layer, growth), the same on every rank; the
// heads of tasks > t grow by such input channels, those of tasks <= t by
// zeros; embeddings of tasks <= t get -90 on every new entry (their binary
// masks stay 0 there, so what they generate is unchanged), those of later
// tasks 0. Every tensor keeps its object (set_data), so its name and the
// trainer's references stay valid; gradients of the old shape are dropped.
//
// Parameter names: "conv1.weight", "conv2.weight", "conv3.weight" (the shared
// trunk), "heads.<t>.weight", "masks.<t>.conv1" ... (task t's own).
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/continual_net.h"
#include "runtime/named_tensors.h"

namespace clx {

enum class DgmMasks { Weights, Units };  // DGMw, DGMa
DgmMasks parse_dgm_masks(const std::string& text);  // "weights" | "units"; throws naming dgm.masks
std::string to_string(DgmMasks masks);

struct DgmNetConfig {
  DgmMasks masks = DgmMasks::Weights;
  int64_t channels = 1;
  int64_t image_size = 32;    // 32 or 28
  int64_t noise_dim = 128;
  int64_t base_channels = 6;  // n: hidden widths 4n, 2n, n (the reference: 6 for DGMw, 20 for DGMa)
  int64_t classes = 10;       // one-hot entries written over the noise (<= noise_dim)
  int64_t tasks = 10;         // heads and mask embeddings
  uint64_t seed = 0;          // seeds what growth adds
};

// Throws clx::Error naming the field and why.
void validate_dgm_net_config(const DgmNetConfig& config);

constexpr int kDgmLayers = 3;
using DgmWidths = std::array<int64_t, kDgmLayers>;  // output channels of conv1..conv3

// The reference's growth rule (DESIGN.md §4.3): how many output channels each
// hidden layer gains so that the free capacity stays what it was, given the
// entries this task newly reserved per layer (weights for DGMw, units for DGMa)
// and the layer sizes before growth. DGMa: as many units as were reserved.
// DGMw: conv1 gains ceil(r1 / (noise_dim k1^2)); each later layer first
// credits the weights its larger input brings (gained inputs x old outputs x
// k^2) and covers the rest with output channels of (new inputs) x k^2 weights
// each: max(0, ceil((r - gained_in * out * k^2) / (new_in * k^2))).
DgmWidths dgm_growth(DgmMasks masks, const DgmWidths& reserved, const DgmWidths& widths, int64_t noise_dim,
                     const std::array<int64_t, kDgmLayers>& kernels);

class DgmNetImpl : public ContinualNet {
 public:
  explicit DgmNetImpl(const DgmNetConfig& config);

  // z: [N, noise_dim]; classes: [N] int64 in [0, classes); task: whose masks and head.
  torch::Tensor generate(const torch::Tensor& z, const torch::Tensor& classes, int64_t task);

  // ContinualNet: the generator has no classifier (features/head_forward
  // throw); the shared trunk is conv1..conv3's weights. DGM is
  // class-incremental (the single-head layout, one head slot), so that slot's
  // parameters are every task's output layer and mask embeddings: a stage
  // trains them all, and those of other tasks get no gradient, which a fresh
  // Adam (the trainer's, every task) turns into no change at all.
  torch::Tensor features(const torch::Tensor& inputs) override;
  torch::Tensor head_forward(const torch::Tensor& features, int64_t head) override;
  int64_t num_heads() const override { return 1; }
  std::vector<std::pair<std::string, torch::Tensor>> named_shared_parameters() const override;
  std::vector<torch::Tensor> head_parameters(int64_t head) const override;
  // Task t's output layer and embeddings: a stage trains its own task's only.
  std::vector<torch::Tensor> head_parameters_trained_by(int64_t head, const std::vector<int>& tasks) const override;

  // Task `task`'s gates are sigmoid(s e) with graph until cleared.
  void set_training_scale(int64_t task, double s);
  void clear_training_scale();
  // Task `task`'s embeddings, one per hidden layer (live parameters).
  std::vector<torch::Tensor> embeddings(int64_t task) const;
  // Task `task`'s binary masks (e >= 0), one per layer, no graph.
  std::vector<torch::Tensor> binary_masks(int64_t task) const;
  // The union of tasks 0..last's binary masks (zeros when last < 0).
  std::vector<torch::Tensor> reserved_masks(int64_t last) const;
  // Per hidden layer, the weight entries that masks reserved (1) or leave
  // free (0), laid out as the weight: DGMw the masks themselves, DGMa
  // min(reserved output unit, reserved input unit) (conv1: its output unit).
  std::vector<torch::Tensor> reserved_weights(const std::vector<torch::Tensor>& reserved) const;
  // The hidden layers' weights [in, out, k, k].
  std::vector<torch::Tensor> weights() const;

  // Grows the hidden layers by `added` output channels after task `finished`
  // (see the header comment); `growth` numbers the expansion (seeds its draws).
  void expand(const DgmWidths& added, int64_t finished, int64_t growth);
  // Resizes every grown tensor to the shape `saved` holds (a checkpoint's
  // model state, names as parameters_and_buffers), contents zero until the
  // checkpoint is copied in. Throws clx::Error naming both sizes when a saved
  // layer is narrower than this configuration's initial width.
  void resize_to_saved(const NamedTensors& saved);
  void prepare_for_saved_state(const NamedTensors& saved) override { resize_to_saved(saved); }

  const DgmWidths& widths() const { return widths_; }
  const DgmWidths& initial_widths() const { return initial_; }
  const std::array<int64_t, kDgmLayers>& kernels() const { return kernels_; }
  const DgmNetConfig& config() const { return config_; }

 private:
  torch::Tensor gate(int64_t task, int layer) const;
  void set_widths(const DgmWidths& widths);  // every tensor's shape from widths_ (zeros)

  DgmNetConfig config_;
  DgmWidths initial_{}, widths_{};
  std::array<int64_t, kDgmLayers> kernels_{}, strides_{}, paddings_{};
  std::array<torch::Tensor, kDgmLayers> weights_;
  std::vector<torch::Tensor> heads_;                                  // [n3, C, 4, 4] per task
  std::vector<std::array<torch::Tensor, kDgmLayers>> embeddings_;    // per task
  int64_t training_task_ = -1;
  double training_scale_ = 0.0;
};
TORCH_MODULE(DgmNet);

// `model` as DGM's generator; otherwise throws clx::Error(`refusal`).
DgmNetImpl& as_dgm_net(ContinualNet& model, const std::string& refusal);

}  // namespace clx
