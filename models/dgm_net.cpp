#include "models/dgm_net.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "models/generative.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {
namespace {

namespace F = torch::nn::functional;

const char* const kLayerNames[kDgmLayers] = {"conv1", "conv2", "conv3"};
constexpr uint64_t kGrowthTag = 0x64676d;  // "dgm"
// What the entries growth adds hold in a finished task's embedding: far below
// 0, so the task's binary mask is 0 there (the reference's -90).
constexpr double kFinishedTaskNewEntry = -90.0;
constexpr double kGrowthStd = 0.02;  // N(0, 0.02): the reference's DCGAN initialisation of what grows

// An empty module that only holds parameters (LibTorch names them "<module>.<parameter>").
std::shared_ptr<torch::nn::Module> holder() { return std::make_shared<torch::nn::Module>(); }

// `old` copied into the leading block of `grown` (same number of dimensions).
torch::Tensor with_old_block(torch::Tensor grown, const torch::Tensor& old) {
  torch::NoGradGuard no_grad;
  torch::Tensor block = grown;
  for (int64_t d = 0; d < old.dim(); ++d) block = block.narrow(d, 0, old.size(d));
  block.copy_(old);
  return grown;
}

int64_t ceil_div(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

}  // namespace

DgmMasks parse_dgm_masks(const std::string& text) {
  if (text == "weights") return DgmMasks::Weights;
  if (text == "units") return DgmMasks::Units;
  throw Error("dgm.masks: '" + text + "' is not one of weights (DGMw), units (DGMa)");
}

std::string to_string(DgmMasks masks) { return masks == DgmMasks::Weights ? "weights" : "units"; }

void validate_dgm_net_config(const DgmNetConfig& config) {
  if (config.channels < 1) throw Error("DGM generator: channels must be positive, got " + std::to_string(config.channels));
  if (config.image_size != 32 && config.image_size != 28)
    throw Error("DGM generator: images must be 32 x 32 (the reference's) or 28 x 28, got side " +
                std::to_string(config.image_size));
  if (config.base_channels < 1)
    throw Error("dgm.width: the base width must be positive, got " + std::to_string(config.base_channels));
  if (config.tasks < 1) throw Error("DGM generator: needs at least one task, got " + std::to_string(config.tasks));
  if (config.classes < 1 || config.classes > config.noise_dim)
    throw Error("model.gan_noise: DGM writes the one-hot class over the first entries of the noise, so the noise (" +
                std::to_string(config.noise_dim) + ") needs at least as many entries as the stream has classes (" +
                std::to_string(config.classes) + ")");
}

DgmWidths dgm_growth(DgmMasks masks, const DgmWidths& reserved, const DgmWidths& widths, int64_t noise_dim,
                     const std::array<int64_t, kDgmLayers>& kernels) {
  DgmWidths added{};
  if (masks == DgmMasks::Units) return reserved;
  int64_t inputs = noise_dim, gained_inputs = 0;
  for (int l = 0; l < kDgmLayers; ++l) {
    const int64_t area = kernels[l] * kernels[l];
    const int64_t new_inputs = inputs + gained_inputs;
    const int64_t credited = gained_inputs * widths[l] * area;
    added[l] = ceil_div(reserved[l] - credited, new_inputs * area);
    inputs = widths[l];
    gained_inputs = added[l];
  }
  return added;
}

DgmNetImpl::DgmNetImpl(const DgmNetConfig& config) : config_(config) {
  validate_dgm_net_config(config_);
  const int64_t n = config_.base_channels;
  initial_ = {4 * n, 2 * n, n};
  const bool small = config_.image_size == 28;
  kernels_ = {small ? 7 : 4, 4, small ? 3 : 4};
  strides_ = {1, 2, small ? 1 : 2};
  paddings_ = {0, 1, 1};
  for (int l = 0; l < kDgmLayers; ++l) {
    auto layer = register_module(kLayerNames[l], holder());
    weights_[l] = layer->register_parameter("weight", torch::empty({1}));
  }
  auto heads = register_module("heads", holder());
  auto masks = register_module("masks", holder());
  for (int64_t t = 0; t < config_.tasks; ++t) {
    heads_.push_back(heads->register_module(std::to_string(t), holder())->register_parameter("weight", torch::empty({1})));
    auto task_masks = masks->register_module(std::to_string(t), holder());
    std::array<torch::Tensor, kDgmLayers> embedding;
    for (int l = 0; l < kDgmLayers; ++l) embedding[l] = task_masks->register_parameter(kLayerNames[l], torch::empty({1}));
    embeddings_.push_back(embedding);
  }
  set_widths(initial_);
  // Weights as the reference's DGMw generator (Xavier uniform with the ReLU
  // gain), from LibTorch's default generator as every model here; embeddings 0.
  torch::NoGradGuard no_grad;
  for (auto& weight : weights_) torch::nn::init::xavier_uniform_(weight, std::sqrt(2.0));
  for (auto& head : heads_) torch::nn::init::xavier_uniform_(head, 1.0);
}

void DgmNetImpl::set_widths(const DgmWidths& widths) {
  widths_ = widths;
  const auto options = weights_[0].options();
  int64_t inputs = config_.noise_dim;
  for (int l = 0; l < kDgmLayers; ++l) {
    const std::vector<int64_t> shape{inputs, widths_[l], kernels_[l], kernels_[l]};
    regrow_parameter(weights_[l], torch::zeros(shape, options));
    for (auto& embedding : embeddings_)
      regrow_parameter(embedding[l], torch::zeros(config_.masks == DgmMasks::Weights ? shape : std::vector<int64_t>{widths_[l]},
                                        options));
    inputs = widths_[l];
  }
  for (auto& head : heads_) regrow_parameter(head, torch::zeros({widths_[2], config_.channels, 4, 4}, options));
}

torch::Tensor DgmNetImpl::gate(int64_t task, int layer) const {
  const torch::Tensor& embedding = embeddings_.at(task)[layer];
  if (task == training_task_) return torch::sigmoid(training_scale_ * embedding);
  return embedding.detach().ge(0).to(embedding.scalar_type());
}

torch::Tensor DgmNetImpl::generate(const torch::Tensor& z, const torch::Tensor& classes, int64_t task) {
  if (task < 0 || task >= config_.tasks)
    throw Error("DGM generator: no task " + std::to_string(task + 1) + " (it has " + std::to_string(config_.tasks) + ")");
  if (z.dim() != 2 || z.size(1) != config_.noise_dim)
    throw Error("DGM generator: expected noise N x " + std::to_string(config_.noise_dim) + ", got shape " +
                c10::str(z.sizes()));
  const torch::Tensor one_hot = F::one_hot(classes, config_.classes).to(z.dtype());
  torch::Tensor x = torch::cat({one_hot, z.narrow(1, config_.classes, config_.noise_dim - config_.classes)}, 1)
                        .view({z.size(0), config_.noise_dim, 1, 1});
  for (int l = 0; l < kDgmLayers; ++l) {
    const torch::Tensor g = gate(task, l);
    const bool on_weights = config_.masks == DgmMasks::Weights;
    const torch::Tensor weight = on_weights ? weights_[l] * g : weights_[l];
    torch::Tensor y = F::conv_transpose2d(x, weight, F::ConvTranspose2dFuncOptions().stride(strides_[l]).padding(paddings_[l]));
    if (!on_weights) y = y * g.view({1, -1, 1, 1});
    x = torch::relu(y);
  }
  return torch::tanh(F::conv_transpose2d(x, heads_[task], F::ConvTranspose2dFuncOptions().stride(2).padding(1)));
}

torch::Tensor DgmNetImpl::features(const torch::Tensor&) {
  throw Error("DGM's generator has no classifier: the DGM objective trains and scores it (its critic classifies)");
}

torch::Tensor DgmNetImpl::head_forward(const torch::Tensor&, int64_t) {
  throw Error("DGM's generator has no classification heads: the DGM objective trains and scores it");
}

std::vector<std::pair<std::string, torch::Tensor>> DgmNetImpl::named_shared_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> shared;
  for (int l = 0; l < kDgmLayers; ++l) shared.emplace_back(std::string(kLayerNames[l]) + ".weight", weights_[l]);
  return shared;
}

std::vector<torch::Tensor> DgmNetImpl::head_parameters(int64_t head) const {
  if (head != 0) throw Error("DGM generator: no head " + std::to_string(head) + " (one head slot, the single-head layout)");
  std::vector<torch::Tensor> parameters(heads_.begin(), heads_.end());
  for (const auto& task : embeddings_) parameters.insert(parameters.end(), task.begin(), task.end());
  return parameters;
}

std::vector<torch::Tensor> DgmNetImpl::head_parameters_trained_by(int64_t head, const std::vector<int>& tasks) const {
  if (head != 0) throw Error("DGM generator: no head " + std::to_string(head) + " (one head slot, the single-head layout)");
  std::vector<torch::Tensor> parameters;
  for (int task : tasks) parameters.push_back(heads_.at(task));
  for (int task : tasks) parameters.insert(parameters.end(), embeddings_.at(task).begin(), embeddings_.at(task).end());
  return parameters;
}

void DgmNetImpl::set_training_scale(int64_t task, double s) {
  training_task_ = task;
  training_scale_ = s;
}

void DgmNetImpl::clear_training_scale() { training_task_ = -1; }

std::vector<torch::Tensor> DgmNetImpl::embeddings(int64_t task) const {
  return {embeddings_.at(task).begin(), embeddings_.at(task).end()};
}

std::vector<torch::Tensor> DgmNetImpl::binary_masks(int64_t task) const {
  std::vector<torch::Tensor> masks;
  for (const auto& embedding : embeddings_.at(task)) masks.push_back(embedding.detach().ge(0).to(torch::kFloat32));
  return masks;
}

std::vector<torch::Tensor> DgmNetImpl::reserved_masks(int64_t last) const {
  std::vector<torch::Tensor> reserved;
  for (const auto& embedding : embeddings_.at(0)) reserved.push_back(torch::zeros(embedding.sizes(), embedding.options().dtype(torch::kFloat32)));
  for (int64_t task = 0; task <= last; ++task) {
    const std::vector<torch::Tensor> masks = binary_masks(task);
    for (int l = 0; l < kDgmLayers; ++l) reserved[l] = torch::max(reserved[l], masks[l]);
  }
  return reserved;
}

std::vector<torch::Tensor> DgmNetImpl::reserved_weights(const std::vector<torch::Tensor>& reserved) const {
  if (config_.masks == DgmMasks::Weights) return reserved;
  std::vector<torch::Tensor> per_weight;
  for (int l = 0; l < kDgmLayers; ++l) {
    // weight [in, out, k, k]: the output unit along dimension 1, the input unit along dimension 0.
    torch::Tensor out = reserved[l].view({1, -1, 1, 1}).expand(weights_[l].sizes());
    if (l > 0) out = torch::min(out, reserved[l - 1].view({-1, 1, 1, 1}).expand(weights_[l].sizes()));
    per_weight.push_back(out.contiguous());
  }
  return per_weight;
}

std::vector<torch::Tensor> DgmNetImpl::weights() const { return {weights_.begin(), weights_.end()}; }

void DgmNetImpl::expand(const DgmWidths& added, int64_t finished, int64_t growth) {
  torch::NoGradGuard no_grad;
  DgmWidths widths = widths_;
  for (int l = 0; l < kDgmLayers; ++l) widths[l] += added[l];
  const auto options = weights_[0].options();
  auto draw = [&](torch::IntArrayRef shape, int64_t what) {
    at::Generator generator = at::detail::createCPUGenerator(
        mix_seed({config_.seed, kGrowthTag, static_cast<uint64_t>(growth), static_cast<uint64_t>(what)}));
    return torch::empty(shape, torch::kFloat32).normal_(0.0, kGrowthStd, generator).to(options);
  };
  int64_t inputs = config_.noise_dim;
  for (int l = 0; l < kDgmLayers; ++l) {
    const std::vector<int64_t> shape{inputs, widths[l], kernels_[l], kernels_[l]};
    regrow_parameter(weights_[l], with_old_block(draw(shape, l), weights_[l].detach()));
    for (int64_t t = 0; t < config_.tasks; ++t) {
      torch::Tensor& embedding = embeddings_[t][l];
      const std::vector<int64_t> mask_shape =
          config_.masks == DgmMasks::Weights ? shape : std::vector<int64_t>{widths[l]};
      const double fill = t <= finished ? kFinishedTaskNewEntry : 0.0;
      regrow_parameter(embedding, with_old_block(torch::full(mask_shape, fill, options), embedding.detach()));
    }
    inputs = widths[l];
  }
  for (int64_t t = 0; t < config_.tasks; ++t) {
    const std::vector<int64_t> shape{widths[2], config_.channels, 4, 4};
    // A finished task's head never trains again and its new inputs are 0: zeros keep it as it was.
    torch::Tensor grown = t <= finished ? torch::zeros(shape, options) : draw(shape, kDgmLayers + t);
    regrow_parameter(heads_[t], with_old_block(grown, heads_[t].detach()));
  }
  widths_ = widths;
}

void DgmNetImpl::resize_to_saved(const NamedTensors& saved) {
  DgmWidths widths{};
  for (int l = 0; l < kDgmLayers; ++l) {
    const std::string name = std::string(kLayerNames[l]) + ".weight";
    const torch::Tensor& weight = named(saved, name);
    if (weight.dim() != 4)
      throw Error("DGM generator: the saved " + name + " has shape " + c10::str(weight.sizes()) + ", not 4-D");
    widths[l] = weight.size(1);
    if (widths[l] < initial_[l])
      throw Error("DGM generator: the saved " + name + " has " + std::to_string(widths[l]) +
                  " output channels, fewer than the " + std::to_string(initial_[l]) +
                  " this configuration starts with (dgm.width " + std::to_string(config_.base_channels) +
                  "): the checkpoint was written by a network of another initial size");
  }
  if (widths != widths_) set_widths(widths);
}

DgmNetImpl& as_dgm_net(ContinualNet& model, const std::string& refusal) {
  auto* net = dynamic_cast<DgmNetImpl*>(&model);
  if (net == nullptr) throw Error(refusal);
  return *net;
}

}  // namespace clx
