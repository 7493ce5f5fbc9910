#pragma once
// The networks of continual image generation (DESIGN.md 4.4): a
// class-conditional GAN whose class representation grows by one slot per
// task, and a VAE with a shared encoder and decoder and task-specific latent
// layers. Their training (the generation Objective), the strategies on them
// and FID live elsewhere; these are the modules alone.
//
// ConditionalGenerator (DCGAN-style), for S x S images with S = 28 (s = 7) or
// 32 (s = 8), C = 1 or 3 channels, w = width multiplier (channel counts
// rounded, at least 1):
//   [z (noise_dim) | one-hot class (slots)] -> input: fc to 128w*s*s, as 128w x s x s
//   -> bn0, ReLU -> deconv1: 4x4/2 transposed conv to 64w x 2s x 2s -> bn1, ReLU
//   (bn0 and bn1 only with GanConfig::batch_norm)
//   -> deconv2: 4x4/2 transposed conv to C x S x S -> tanh (images in [-1, 1]).
// ConditionalCritic (no BatchNorm, so a WGAN-GP gradient penalty per sample is valid):
//   image -> conv1: 4x4/2 conv to 64w x 2s x 2s, LeakyReLU 0.2 -> conv2: 4x4/2
//   to 128w x s x s, LeakyReLU 0.2 -> flatten (features, 128w*s*s) ->
//   score: fc of [features | one-hot class] to 1 (real/fake score, unbounded);
//   aux:   fc of features to the class slots (the auxiliary classifier whose
//          softmax entropy on generated samples is ANPyC's generator importance).
// TaskVae (encoder and decoder shared, latent layers per task t):
//   image -> encoder.conv1: 4x4/2 conv to 32 x 2s x 2s, ReLU -> encoder.conv2:
//   4x4/2 conv to 64 x s x s, ReLU -> flatten -> encoder.fc: fc to hidden, ReLU
//   -> tasks.t.mu, tasks.t.logvar: fc hidden -> latent; z = mu + exp(logvar / 2) eps
//   -> tasks.t.latent_to_hidden: fc latent -> hidden, ReLU -> decoder.fc: fc to
//   64*s*s, ReLU, as 64 x s x s -> decoder.deconv1: 4x4/2 transposed conv to
//   32 x 2s x 2s, ReLU -> decoder.deconv2: 4x4/2 transposed conv to C x S x S
//   -> sigmoid (pixels in [0, 1]).
// Every convolution pads 1, so each 4x4/2 layer halves or doubles the side.
// The VAE's 32-64 channels and fc hidden layer follow the Conv-Conv-FC /
// FC-Deconv-Deconv networks of continual-generation papers; hidden = 256 and
// latent = 32 are this project's defaults.
//
// Growth. add_class_slot() appends one class slot to the generator's input
// layer (one more weight column) and to the critic's score layer (one more
// column) and auxiliary classifier (one more output row and bias). A column is
// multiplied only by its own one-hot entry, so for every old class the
// generator's images, the critic's score and the old auxiliary logits are
// unchanged (up to the rounding of a matrix product with one more, zero,
// term). TaskVae::add_task() appends task t's three layers, leaving every
// other task's computation unchanged, bit for bit. Growth keeps the names of
// existing parameters: a grown layer keeps its tensor, whose data is replaced
// by the larger one, so autograd hooks on it survive, its gradient (of the old
// shape) is dropped, and optimizer state and strategy tensors of that shape
// must be grown by their owner (the new entries zero).
// New entries are drawn as LibTorch's default Linear initialisation (uniform
// in +-1/sqrt(fan_in), fan_in after growth) from a CPU generator seeded by
// (seed, what grows, slot or task index), then converted to the module's
// device and dtype: the same values on every rank and device without
// communication, whatever the state of LibTorch's default generator, which
// growth does not advance. The VAE's task layers, those of construction
// included, are always drawn so. The rest of construction (the GAN with its
// initial `classes` slots, the VAE's shared layers) draws from LibTorch's
// default generator like every model here: seed it first; the trainer
// broadcasts rank 0's parameters at start. A checkpoint is loaded into a
// module grown to the saved number of slots or tasks (classes(), tasks()).
//
// Parameter names (stable, as checkpoints store them), in named_parameters()
// order: generator "input", "bn0", "deconv1", "bn1", "deconv2" (.weight and
// .bias; BatchNorm's buffers running_mean, running_var, num_batches_tracked);
// critic "conv1", "conv2", "score", "aux"; VAE "encoder.conv1", "encoder.conv2",
// "encoder.fc", "decoder.fc", "decoder.deconv1", "decoder.deconv2", then per
// task "tasks.t.mu", "tasks.t.logvar", "tasks.t.latent_to_hidden". The GAN's
// growth changes shapes, not names; the VAE's adds names after all others.
//
// Layer tape (models/layer_tape.h): forward_recorded() computes exactly what
// forward() computes through a LayerTape, every parameterised layer recorded
// (Linear, Conv2d, ConvTranspose2d, BatchNorm2d), so that per-sample
// gradients (EWC's Fisher, MAS) have closed forms through the generator.
// BatchNorm in training mode marks the tape incomplete (batch statistics mix
// samples): record in eval mode.
#include <torch/torch.h>

#include <cstdint>

#include "models/layer_tape.h"

namespace clx {

struct GanConfig {
  int64_t channels = 1;     // image channels C: 1 or 3
  int64_t image_size = 28;  // side S: 28 or 32 (any multiple of 4 works)
  int64_t noise_dim = 100;  // generator only
  double width = 1.0;       // multiplies the 64 and 128 channel counts
  int64_t classes = 0;      // class slots at construction (add_class_slot() adds more)
  uint64_t seed = 0;        // seeds the entries growth adds
  // The generator's bn0 and bn1. Off, each sample's image depends on its own
  // noise and class only, so data-parallel training is the same on any rank
  // count (batch statistics would be per rank); WGAN-GP trains without them
  // (Gulrajani et al. 2017, section 5). The GAN objective turns them off.
  bool batch_norm = true;
};

struct VaeConfig {
  int64_t channels = 1;     // 1 or 3
  int64_t image_size = 28;  // 28 or 32 (any multiple of 4 works)
  int64_t hidden = 256;     // the encoder's and decoder's fc width
  int64_t latent = 32;
  int64_t tasks = 0;        // task layers at construction (add_task() adds more)
  uint64_t seed = 0;        // seeds the task layers add_task() creates
};

// Throw clx::Error saying which field is at fault and why.
void validate_gan_config(const GanConfig& config);
void validate_vae_config(const VaeConfig& config);

// [N] int64 classes -> [N, slots] one-hot of `dtype` on the classes' device.
// Throws clx::Error when there are no slots, and, for classes on the CPU (no
// device synchronisation), when a class is outside [0, slots); on a GPU an
// out-of-range class fails as a device-side assertion.
torch::Tensor class_one_hot(const torch::Tensor& classes, int64_t slots, torch::ScalarType dtype);

class ConditionalGeneratorImpl : public torch::nn::Module {
 public:
  explicit ConditionalGeneratorImpl(const GanConfig& config);

  // z: [N, noise_dim]; classes: [N] int64 in [0, classes()) -> images [N, C, S, S] in [-1, 1].
  torch::Tensor forward(const torch::Tensor& z, const torch::Tensor& classes);
  torch::Tensor forward_recorded(const torch::Tensor& z, const torch::Tensor& classes, LayerTape& tape);
  // [n, noise_dim] standard normal noise from `generator` (a CPU one gives
  // the same noise on every device), on the module's device and dtype.
  torch::Tensor noise(int64_t n, at::Generator generator) const;

  void add_class_slot();
  int64_t classes() const { return classes_; }
  const GanConfig& config() const { return config_; }

 private:
  torch::Tensor input_features(const torch::Tensor& z, const torch::Tensor& classes) const;

  GanConfig config_;
  int64_t classes_ = 0;
  int64_t base_channels_ = 0, side_ = 0;  // 128w and s: the input layer's output as base_channels_ x side_ x side_
  torch::nn::Linear input_{nullptr};       // weight [128w*s*s, noise_dim + classes]
  torch::nn::BatchNorm2d bn0_{nullptr}, bn1_{nullptr};
  torch::nn::ConvTranspose2d deconv1_{nullptr};  // weight [128w, 64w, 4, 4]
  torch::nn::ConvTranspose2d deconv2_{nullptr};  // weight [64w, C, 4, 4]
};
TORCH_MODULE(ConditionalGenerator);

// Turns a module's parameters' requires_grad off for the scope: a
// generator's loss goes through the critic without filling its gradients.
class FrozenParameters {
 public:
  explicit FrozenParameters(torch::nn::Module& module) : parameters_(module.parameters()) {
    for (auto& parameter : parameters_) parameter.requires_grad_(false);
  }
  ~FrozenParameters() {
    for (auto& parameter : parameters_) parameter.requires_grad_(true);
  }
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;

 private:
  std::vector<torch::Tensor> parameters_;
};

// Replaces `parameter`'s data by `grown` (the same tensor object, so its name,
// autograd hooks and every reference to it stay valid); its gradient, of the
// old shape, is dropped. How the growing networks here grow.
void regrow_parameter(torch::Tensor& parameter, const torch::Tensor& grown);

// Every parameter of `module` redrawn as LibTorch initialises Linear and
// Conv layers by default (weights and biases uniform in +-1/sqrt(fan_in),
// fan_in the weight's entries per output), from `generator` in named order:
// the same values on every rank without communication.
void reinitialise_default(torch::nn::Module& module, at::Generator generator);

struct CriticOutput {
  torch::Tensor score;       // [N]: higher is more real
  torch::Tensor aux_logits;  // [N, classes]
};

class ConditionalCriticImpl : public torch::nn::Module {
 public:
  explicit ConditionalCriticImpl(const GanConfig& config);

  // images: [N, C, S, S]; classes: [N] int64 in [0, classes()).
  CriticOutput forward(const torch::Tensor& images, const torch::Tensor& classes);
  CriticOutput forward_recorded(const torch::Tensor& images, const torch::Tensor& classes, LayerTape& tape);
  // The auxiliary classifier alone (no class needed): [N, classes].
  torch::Tensor classify(const torch::Tensor& images);

  void add_class_slot();
  int64_t classes() const { return classes_; }
  const GanConfig& config() const { return config_; }

 private:
  GanConfig config_;
  int64_t classes_ = 0;
  torch::nn::Conv2d conv1_{nullptr};  // weight [64w, C, 4, 4]
  torch::nn::Conv2d conv2_{nullptr};  // weight [128w, 64w, 4, 4]
  torch::nn::Linear score_{nullptr};  // weight [1, 128w*s*s + classes]
  torch::nn::Linear aux_{nullptr};    // weight [classes, 128w*s*s]
};
TORCH_MODULE(ConditionalCritic);

struct VaeLoss {
  torch::Tensor loss;            // reconstruction + kl: the negative ELBO, a scalar
  torch::Tensor reconstruction;  // binary cross-entropy summed over pixels, mean over the batch
  torch::Tensor kl;              // KL(q(z|x) || N(0, I)) summed over latents, mean over the batch
};

// KL(N(mu, exp(logvar)) || N(0, I)) per sample: -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)), [N].
torch::Tensor gaussian_kl(const torch::Tensor& mu, const torch::Tensor& logvar);

// One task's latent layers.
class TaskLatentImpl : public torch::nn::Module {
 public:
  TaskLatentImpl(torch::nn::Linear mu, torch::nn::Linear logvar, torch::nn::Linear latent_to_hidden);
  torch::nn::Linear mu{nullptr}, logvar{nullptr};  // weight [latent, hidden]
  torch::nn::Linear latent_to_hidden{nullptr};     // weight [hidden, latent]
};
TORCH_MODULE(TaskLatent);

class TaskVaeImpl : public torch::nn::Module {
 public:
  explicit TaskVaeImpl(const VaeConfig& config);

  struct Encoding {
    torch::Tensor mu, logvar;  // [N, latent]
  };
  // images: [N, C, S, S] in [0, 1].
  Encoding encode(const torch::Tensor& images, int64_t task);
  // z: [N, latent] -> images [N, C, S, S] in [0, 1]; decode_logits before the sigmoid.
  torch::Tensor decode(const torch::Tensor& z, int64_t task);
  torch::Tensor decode_logits(const torch::Tensor& z, int64_t task);
  // decode_logits() through `tape` (the decoder is the VAE's generator).
  torch::Tensor decode_logits_recorded(const torch::Tensor& z, int64_t task, LayerTape& tape);
  // The negative ELBO of `images` under task `task`'s latent layers, one
  // reparameterised draw per sample: eps from `generator` (on the images'
  // device) or, without one, from the device's default generator.
  VaeLoss elbo_loss(const torch::Tensor& images, int64_t task, c10::optional<at::Generator> generator = c10::nullopt);
  // The same with the draw given: eps [N, latent].
  VaeLoss elbo_loss_with_noise(const torch::Tensor& images, int64_t task, const torch::Tensor& eps);
  // n images [n, C, S, S] of task `task`, no gradient, from z ~ N(0, I) drawn
  // by a CPU generator seeded with `seed` (the same z on every device) ...
  torch::Tensor sample(int64_t n, int64_t task, uint64_t seed);
  // ... or by `generator` (a CPU one, or one of the module's device).
  torch::Tensor sample(int64_t n, int64_t task, at::Generator generator);

  // Appends task tasks()'s latent layers.
  void add_task();
  int64_t tasks() const { return static_cast<int64_t>(tasks_.size()); }
  const VaeConfig& config() const { return config_; }

 private:
  TaskLatentImpl& task_layers(int64_t task) const;

  VaeConfig config_;
  int64_t side_ = 0;  // s
  torch::nn::Conv2d encoder_conv1_{nullptr}, encoder_conv2_{nullptr};  // [32, C, 4, 4], [64, 32, 4, 4]
  torch::nn::Linear encoder_fc_{nullptr};                               // [hidden, 64*s*s]
  torch::nn::Linear decoder_fc_{nullptr};                               // [64*s*s, hidden]
  torch::nn::ConvTranspose2d decoder_deconv1_{nullptr}, decoder_deconv2_{nullptr};  // [64, 32, 4, 4], [32, C, 4, 4]
  torch::nn::ModuleList task_list_;
  std::vector<TaskLatent> tasks_;
};
TORCH_MODULE(TaskVae);

}  // namespace clx
