#include "models/generative.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <mutex>
#include <string>

#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {
namespace {

namespace nn = torch::nn;

// What each kind of growth mixes into its seed, so that no two draw the same numbers.
constexpr uint64_t kGeneratorSlotTag = 0x67656e;  // "gen"
constexpr uint64_t kCriticScoreTag = 0x736372;    // "scr"
constexpr uint64_t kCriticAuxTag = 0x617578;      // "aux"
constexpr uint64_t kVaeTaskTag = 0x766165;        // "vae"

int64_t scaled(int64_t channels, double width) {
  return std::max<int64_t>(1, std::llround(static_cast<double>(channels) * width));
}

void check_image(const std::string& what, int64_t channels, int64_t image_size) {
  if (channels < 1) throw Error(what + ": channels must be positive, got " + std::to_string(channels));
  if (image_size < 4 || image_size % 4 != 0)
    throw Error(what + ": the image side must be a positive multiple of 4 (28 or 32: two stride-2 layers), got " +
                std::to_string(image_size));
}

// 4x4 kernels, stride 2, padding 1: each layer halves (conv) or doubles (transposed) the side.
nn::Conv2d down(int64_t in, int64_t out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 4).stride(2).padding(1)); }
nn::ConvTranspose2d up(int64_t in, int64_t out) {
  return nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, out, 4).stride(2).padding(1));
}

// Uniform in +-1/sqrt(fan_in) (LibTorch's default Linear initialisation, for
// weights and biases), drawn on the CPU from (seed, tag, index) and converted
// to `options`: the same values on every rank and device.
torch::Tensor seeded_default_init(torch::IntArrayRef sizes, int64_t fan_in, uint64_t seed, uint64_t tag,
                                  int64_t index, const torch::TensorOptions& options) {
  at::Generator generator = at::detail::createCPUGenerator(mix_seed({seed, tag, static_cast<uint64_t>(index)}));
  const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fan_in, 1)));
  return torch::empty(sizes, torch::kFloat32).uniform_(-bound, bound, generator).to(options);
}

// Appends input columns to `layer`'s weight [out, in] -> [out, in + columns].
void append_input_columns(nn::Linear& layer, const torch::Tensor& columns) {
  torch::NoGradGuard no_grad;
  regrow_parameter(layer->weight, torch::cat({layer->weight.detach(), columns}, 1));
  layer->options.in_features(layer->weight.size(1));
}

// Appends output rows to `layer`'s weight [out, in] and bias [out].
void append_output_rows(nn::Linear& layer, const torch::Tensor& rows, const torch::Tensor& bias) {
  torch::NoGradGuard no_grad;
  regrow_parameter(layer->weight, torch::cat({layer->weight.detach(), rows}, 0));
  regrow_parameter(layer->bias, torch::cat({layer->bias.detach(), bias}, 0));
  layer->options.out_features(layer->weight.size(0));
}

// A Linear(in, out) with seeded default initialisation on `options`, built
// without advancing LibTorch's default CPU generator (which the layer's own
// initialisation draws from and which is then overwritten).
nn::Linear seeded_linear(int64_t in, int64_t out, uint64_t seed, uint64_t tag, int64_t index,
                         const torch::TensorOptions& options) {
  at::Generator global = at::detail::getDefaultCPUGenerator();
  torch::Tensor state;
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    state = global.get_state();
  }
  nn::Linear layer(in, out);
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    global.set_state(state);
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor values = seeded_default_init({out * (in + 1)}, in, seed, tag, index, torch::kFloat32);
  layer->weight.copy_(values.narrow(0, 0, out * in).view({out, in}));
  layer->bias.copy_(values.narrow(0, out * in, out));
  layer->to(options.device(), options.dtype().toScalarType());
  return layer;
}

torch::Tensor leaky(const torch::Tensor& x) { return torch::leaky_relu(x, 0.2); }

void check_batch(const std::string& what, const torch::Tensor& tensor, int64_t dims, int64_t size1 = -1) {
  if (tensor.dim() != dims || (size1 >= 0 && tensor.size(1) != size1))
    throw Error(what + ": expected " + std::to_string(dims) + "-D input" +
                (size1 >= 0 ? " with " + std::to_string(size1) + " entries in dimension 1" : std::string()) +
                ", got shape " + c10::str(tensor.sizes()));
}

void check_images(const std::string& what, const torch::Tensor& images, int64_t channels, int64_t side) {
  if (images.dim() != 4 || images.size(1) != channels || images.size(2) != side || images.size(3) != side)
    throw Error(what + ": expected images N x " + std::to_string(channels) + " x " + std::to_string(side) + " x " +
                std::to_string(side) + ", got shape " + c10::str(images.sizes()));
}

}  // namespace

void regrow_parameter(torch::Tensor& parameter, const torch::Tensor& grown) {
  torch::NoGradGuard no_grad;
  parameter.set_data(grown);
  parameter.mutable_grad() = torch::Tensor();
}

void reinitialise_default(torch::nn::Module& module, at::Generator generator) {
  torch::NoGradGuard no_grad;
  int64_t fan_in = 1;
  for (auto& item : module.named_parameters()) {
    torch::Tensor& parameter = item.value();
    // A bias follows its weight in named order and takes the weight's fan_in.
    if (parameter.dim() > 1) fan_in = parameter.numel() / parameter.size(0);
    const double bound = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fan_in, 1)));
    parameter.copy_(torch::empty(parameter.sizes(), torch::kFloat32).uniform_(-bound, bound, generator));
  }
}

void validate_gan_config(const GanConfig& config) {
  check_image("conditional GAN", config.channels, config.image_size);
  if (config.noise_dim < 1)
    throw Error("conditional GAN: the noise dimension must be positive, got " + std::to_string(config.noise_dim));
  if (!(config.width > 0.0) || !std::isfinite(config.width))
    throw Error("conditional GAN: the width must be a positive channel multiplier, got " + std::to_string(config.width));
  if (config.classes < 0)
    throw Error("conditional GAN: the number of class slots must not be negative, got " + std::to_string(config.classes));
}

void validate_vae_config(const VaeConfig& config) {
  check_image("task VAE", config.channels, config.image_size);
  if (config.hidden < 1 || config.latent < 1)
    throw Error("task VAE: hidden and latent sizes must be positive, got " + std::to_string(config.hidden) + " and " +
                std::to_string(config.latent));
  if (config.tasks < 0) throw Error("task VAE: the number of tasks must not be negative, got " + std::to_string(config.tasks));
}

torch::Tensor class_one_hot(const torch::Tensor& classes, int64_t slots, torch::ScalarType dtype) {
  if (classes.dim() != 1 || classes.scalar_type() != torch::kInt64)
    throw Error("class_one_hot: expected a 1-D int64 tensor of classes, got " + c10::str(classes.sizes()) + " " +
                c10::toString(classes.scalar_type()));
  if (slots < 1) throw Error("class_one_hot: the model has no class slot yet (add_class_slot() adds one per task)");
  if (classes.device().is_cpu() && classes.numel() > 0) {
    const int64_t low = classes.min().item<int64_t>(), high = classes.max().item<int64_t>();
    if (low < 0 || high >= slots)
      throw Error("class_one_hot: class " + std::to_string(low < 0 ? low : high) + " is outside the " +
                  std::to_string(slots) + " class slots");
  }
  return torch::one_hot(classes, slots).to(dtype);
}

// ---------------------------------------------------------------- generator

ConditionalGeneratorImpl::ConditionalGeneratorImpl(const GanConfig& config) : config_(config), classes_(config.classes) {
  validate_gan_config(config);
  base_channels_ = scaled(128, config.width);
  side_ = config.image_size / 4;
  const int64_t middle = scaled(64, config.width);
  input_ = register_module("input", nn::Linear(config.noise_dim + classes_, base_channels_ * side_ * side_));
  if (config.batch_norm) bn0_ = register_module("bn0", nn::BatchNorm2d(base_channels_));
  deconv1_ = register_module("deconv1", up(base_channels_, middle));
  if (config.batch_norm) bn1_ = register_module("bn1", nn::BatchNorm2d(middle));
  deconv2_ = register_module("deconv2", up(middle, config.channels));
}

torch::Tensor ConditionalGeneratorImpl::input_features(const torch::Tensor& z, const torch::Tensor& classes) const {
  check_batch("ConditionalGenerator: noise", z, 2, config_.noise_dim);
  if (classes.dim() != 1 || classes.size(0) != z.size(0))
    throw Error("ConditionalGenerator: expected one class per noise row (" + std::to_string(z.size(0)) +
                "), got shape " + c10::str(classes.sizes()));
  return torch::cat({z, class_one_hot(classes, classes_, z.scalar_type()).to(z.device())}, 1);
}

torch::Tensor ConditionalGeneratorImpl::forward(const torch::Tensor& z, const torch::Tensor& classes) {
  torch::Tensor x = input_->forward(input_features(z, classes)).view({-1, base_channels_, side_, side_});
  x = torch::relu(bn0_ ? bn0_->forward(x) : x);
  x = deconv1_->forward(x);
  x = torch::relu(bn1_ ? bn1_->forward(x) : x);
  return torch::tanh(deconv2_->forward(x));
}

torch::Tensor ConditionalGeneratorImpl::forward_recorded(const torch::Tensor& z, const torch::Tensor& classes,
                                                         LayerTape& tape) {
  torch::Tensor x = tape.linear(input_.ptr(), input_features(z, classes)).view({-1, base_channels_, side_, side_});
  x = torch::relu(bn0_ ? tape.batch_norm2d(bn0_.ptr(), x) : x);
  x = tape.conv_transpose2d(deconv1_.ptr(), x);
  x = torch::relu(bn1_ ? tape.batch_norm2d(bn1_.ptr(), x) : x);
  return torch::tanh(tape.conv_transpose2d(deconv2_.ptr(), x));
}

torch::Tensor ConditionalGeneratorImpl::noise(int64_t n, at::Generator generator) const {
  const torch::Tensor& weight = input_->weight;
  return torch::randn({n, config_.noise_dim}, generator, torch::TensorOptions().device(generator.device()))
      .to(weight.options());
}

void ConditionalGeneratorImpl::add_class_slot() {
  const int64_t out = input_->weight.size(0), fan_in = input_->weight.size(1) + 1;
  append_input_columns(input_, seeded_default_init({out, 1}, fan_in, config_.seed, kGeneratorSlotTag, classes_,
                                                   input_->weight.options()));
  ++classes_;
}

// ---------------------------------------------------------------- critic

ConditionalCriticImpl::ConditionalCriticImpl(const GanConfig& config) : config_(config), classes_(config.classes) {
  validate_gan_config(config);
  const int64_t first = scaled(64, config.width), second = scaled(128, config.width);
  const int64_t side = config.image_size / 4, features = second * side * side;
  conv1_ = register_module("conv1", down(config.channels, first));
  conv2_ = register_module("conv2", down(first, second));
  score_ = register_module("score", nn::Linear(features + classes_, 1));
  aux_ = register_module("aux", nn::Linear(features, classes_));
}

CriticOutput ConditionalCriticImpl::forward(const torch::Tensor& images, const torch::Tensor& classes) {
  check_images("ConditionalCritic", images, config_.channels, config_.image_size);
  const torch::Tensor features = leaky(conv2_->forward(leaky(conv1_->forward(images)))).flatten(1);
  const torch::Tensor one_hot = class_one_hot(classes, classes_, features.scalar_type()).to(features.device());
  return {score_->forward(torch::cat({features, one_hot}, 1)).squeeze(1), aux_->forward(features)};
}

CriticOutput ConditionalCriticImpl::forward_recorded(const torch::Tensor& images, const torch::Tensor& classes,
                                                     LayerTape& tape) {
  check_images("ConditionalCritic", images, config_.channels, config_.image_size);
  const torch::Tensor features =
      leaky(tape.conv2d(conv2_.ptr(), leaky(tape.conv2d(conv1_.ptr(), images)))).flatten(1);
  const torch::Tensor one_hot = class_one_hot(classes, classes_, features.scalar_type()).to(features.device());
  return {tape.linear(score_.ptr(), torch::cat({features, one_hot}, 1)).squeeze(1), tape.linear(aux_.ptr(), features)};
}

torch::Tensor ConditionalCriticImpl::classify(const torch::Tensor& images) {
  check_images("ConditionalCritic", images, config_.channels, config_.image_size);
  return aux_->forward(leaky(conv2_->forward(leaky(conv1_->forward(images)))).flatten(1));
}

void ConditionalCriticImpl::add_class_slot() {
  const torch::TensorOptions options = score_->weight.options();
  const int64_t features = aux_->weight.size(1);
  append_input_columns(score_, seeded_default_init({1, 1}, score_->weight.size(1) + 1, config_.seed, kCriticScoreTag,
                                                   classes_, options));
  // The aux row and its bias from one draw (LibTorch's Linear draws both within +-1/sqrt(fan_in)).
  const torch::Tensor row = seeded_default_init({features + 1}, features, config_.seed, kCriticAuxTag, classes_, options);
  append_output_rows(aux_, row.narrow(0, 0, features).view({1, features}), row.narrow(0, features, 1));
  ++classes_;
}

// ---------------------------------------------------------------- VAE

torch::Tensor gaussian_kl(const torch::Tensor& mu, const torch::Tensor& logvar) {
  return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1);
}

TaskLatentImpl::TaskLatentImpl(nn::Linear mu_layer, nn::Linear logvar_layer, nn::Linear latent_to_hidden_layer) {
  mu = register_module("mu", std::move(mu_layer));
  logvar = register_module("logvar", std::move(logvar_layer));
  latent_to_hidden = register_module("latent_to_hidden", std::move(latent_to_hidden_layer));
}

TaskVaeImpl::TaskVaeImpl(const VaeConfig& config) : config_(config) {
  validate_vae_config(config);
  side_ = config.image_size / 4;
  const int64_t flat = 64 * side_ * side_;
  auto encoder = register_module("encoder", std::make_shared<nn::Module>());
  encoder_conv1_ = encoder->register_module("conv1", down(config.channels, 32));
  encoder_conv2_ = encoder->register_module("conv2", down(32, 64));
  encoder_fc_ = encoder->register_module("fc", nn::Linear(flat, config.hidden));
  auto decoder = register_module("decoder", std::make_shared<nn::Module>());
  decoder_fc_ = decoder->register_module("fc", nn::Linear(config.hidden, flat));
  decoder_deconv1_ = decoder->register_module("deconv1", up(64, 32));
  decoder_deconv2_ = decoder->register_module("deconv2", up(32, config.channels));
  task_list_ = register_module("tasks", nn::ModuleList());
  for (int64_t t = 0; t < config.tasks; ++t) add_task();
}

TaskLatentImpl& TaskVaeImpl::task_layers(int64_t task) const {
  if (task < 0 || task >= tasks())
    throw Error("TaskVae: task " + std::to_string(task) + " has no latent layers (the model has " +
                std::to_string(tasks()) + " tasks; add_task() adds one)");
  return *tasks_[static_cast<size_t>(task)].ptr();
}

void TaskVaeImpl::add_task() {
  const int64_t t = tasks(), hidden = config_.hidden, latent = config_.latent;
  const torch::TensorOptions options = encoder_fc_->weight.options();
  const TaskLatent layers(seeded_linear(hidden, latent, config_.seed, kVaeTaskTag, 3 * t, options),
                          seeded_linear(hidden, latent, config_.seed, kVaeTaskTag, 3 * t + 1, options),
                          seeded_linear(latent, hidden, config_.seed, kVaeTaskTag, 3 * t + 2, options));
  task_list_->push_back(layers);
  tasks_.push_back(layers);
}

TaskVaeImpl::Encoding TaskVaeImpl::encode(const torch::Tensor& images, int64_t task) {
  check_images("TaskVae", images, config_.channels, config_.image_size);
  TaskLatentImpl& layers = task_layers(task);
  torch::Tensor h = torch::relu(encoder_conv2_->forward(torch::relu(encoder_conv1_->forward(images))));
  h = torch::relu(encoder_fc_->forward(h.flatten(1)));
  return {layers.mu->forward(h), layers.logvar->forward(h)};
}

torch::Tensor TaskVaeImpl::decode_logits(const torch::Tensor& z, int64_t task) {
  check_batch("TaskVae: latent", z, 2, config_.latent);
  TaskLatentImpl& layers = task_layers(task);
  torch::Tensor h = torch::relu(layers.latent_to_hidden->forward(z));
  h = torch::relu(decoder_fc_->forward(h)).view({-1, 64, side_, side_});
  return decoder_deconv2_->forward(torch::relu(decoder_deconv1_->forward(h)));
}

torch::Tensor TaskVaeImpl::decode_logits_recorded(const torch::Tensor& z, int64_t task, LayerTape& tape) {
  check_batch("TaskVae: latent", z, 2, config_.latent);
  TaskLatentImpl& layers = task_layers(task);
  torch::Tensor h = torch::relu(tape.linear(layers.latent_to_hidden.ptr(), z));
  h = torch::relu(tape.linear(decoder_fc_.ptr(), h)).view({-1, 64, side_, side_});
  return tape.conv_transpose2d(decoder_deconv2_.ptr(), torch::relu(tape.conv_transpose2d(decoder_deconv1_.ptr(), h)));
}

torch::Tensor TaskVaeImpl::decode(const torch::Tensor& z, int64_t task) { return torch::sigmoid(decode_logits(z, task)); }

VaeLoss TaskVaeImpl::elbo_loss_with_noise(const torch::Tensor& images, int64_t task, const torch::Tensor& eps) {
  const Encoding encoding = encode(images, task);
  if (eps.sizes() != encoding.mu.sizes())
    throw Error("TaskVae: the noise has shape " + c10::str(eps.sizes()) + ", the latent code " +
                c10::str(encoding.mu.sizes()));
  const torch::Tensor z = encoding.mu + (0.5 * encoding.logvar).exp() * eps;
  // With logits: the same value as binary cross-entropy of the sigmoid, without its log(0).
  const torch::Tensor reconstruction =
      torch::binary_cross_entropy_with_logits(decode_logits(z, task), images, {}, {}, at::Reduction::None)
          .flatten(1)
          .sum(1)
          .mean();
  const torch::Tensor kl = gaussian_kl(encoding.mu, encoding.logvar).mean();
  return {reconstruction + kl, reconstruction, kl};
}

VaeLoss TaskVaeImpl::elbo_loss(const torch::Tensor& images, int64_t task, c10::optional<at::Generator> generator) {
  check_images("TaskVae", images, config_.channels, config_.image_size);
  const torch::Tensor eps = torch::randn({images.size(0), config_.latent}, generator,
                                         encoder_fc_->weight.options().device(images.device()));
  return elbo_loss_with_noise(images, task, eps);
}

torch::Tensor TaskVaeImpl::sample(int64_t n, int64_t task, uint64_t seed) {
  return sample(n, task, at::detail::createCPUGenerator(seed));
}

torch::Tensor TaskVaeImpl::sample(int64_t n, int64_t task, at::Generator generator) {
  task_layers(task);
  torch::NoGradGuard no_grad;
  const torch::Tensor z = torch::randn({n, config_.latent}, generator, torch::TensorOptions().device(generator.device()))
                              .to(encoder_fc_->weight.options());
  return decode(z, task);
}

}  // namespace clx
