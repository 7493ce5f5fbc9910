#include "models/model_factory.h"

#include "models/dgm_net.h"
#include "models/gan_net.h"
#include "models/vae_net.h"

#include <cmath>

#include "runtime/choice.h"
#include "runtime/error.h"

namespace clx {

ModelArch parse_model_arch(const std::string& text) {
  return parse_choice<ModelArch>("model.arch", text,
                                 {{"mlp", ModelArch::Mlp},
                                  {"lenet", ModelArch::LeNet},
                                  {"vgg9", ModelArch::Vgg9},
                                  {"resnet18", ModelArch::ResNet18},
                                  {"vae", ModelArch::Vae},
                                  {"gan", ModelArch::Gan},
                                  {"dgm", ModelArch::Dgm}});
}

std::string to_string(ModelArch arch) {
  switch (arch) {
    case ModelArch::Mlp: return "mlp";
    case ModelArch::LeNet: return "lenet";
    case ModelArch::Vgg9: return "vgg9";
    case ModelArch::ResNet18: return "resnet18";
    case ModelArch::Vae: return "vae";
    case ModelArch::Gan: return "gan";
    case ModelArch::Dgm: return "dgm";
  }
  throw Error("internal: unknown ModelArch");
}

bool is_generator(ModelArch arch) { return arch == ModelArch::Vae || arch == ModelArch::Gan || arch == ModelArch::Dgm; }

ModelInit parse_model_init(const std::string& text) {
  return parse_choice<ModelInit>("model.init", text,
                                 {{"default", ModelInit::Default}, {"truncated_normal", ModelInit::TruncatedNormal}});
}

void validate_model_config(const ModelConfig& config) {
  const std::string arch = to_string(config.arch);
  if (is_generator(config.arch) && config.dropout != 0.0)
    throw Error("model.dropout: the " + arch + " has no dropout layers; leave it at 0");
  if (is_generator(config.arch) && config.init != ModelInit::Default)
    throw Error("model.init: the " + arch + " takes LibTorch's default initialisation only; leave it at default");
  if (config.arch == ModelArch::Dgm) {
    parse_dgm_masks(config.dgm_masks);
    if (config.dgm_width < 0) throw Error("dgm.width: must be >= 0 (0: the reference's), got " + std::to_string(config.dgm_width));
  }
  if (config.gan_noise < 1) throw Error("model.gan_noise: must be at least 1, got " + std::to_string(config.gan_noise));
  if (config.vae_hidden < 1) throw Error("model.vae_hidden: must be at least 1, got " + std::to_string(config.vae_hidden));
  if (config.vae_latent < 1) throw Error("model.vae_latent: must be at least 1, got " + std::to_string(config.vae_latent));
  if (!(config.dropout >= 0.0 && config.dropout < 1.0))
    throw Error("model.dropout: must be in [0, 1), got " + std::to_string(config.dropout));
  if (config.arch == ModelArch::ResNet18 && config.dropout != 0.0)
    throw Error("model.dropout: resnet18 has no dropout layers; leave it at 0");
  if (!(config.width > 0.0) || !std::isfinite(config.width))
    throw Error("model.width: must be a positive channel multiplier, got " + std::to_string(config.width));
  if (config.stem != "auto" && config.stem != "small" && config.stem != "imagenet")
    throw Error("model.stem: '" + config.stem + "' is not one of auto, small, imagenet");
}

void initialise_truncated_normal(torch::nn::Module& module, double std, double bias) {
  torch::NoGradGuard no_grad;
  // Uniform in (Phi(-2) .. Phi(2)) mapped through the inverse normal CDF.
  const double lower = 0.5 * std::erfc(2.0 / std::sqrt(2.0)), upper = 1.0 - lower;
  auto fill = [&](torch::Tensor& weight) {
    weight.uniform_(2.0 * lower - 1.0, 2.0 * upper - 1.0).erfinv_().mul_(std * std::sqrt(2.0)).clamp_(-2.0 * std, 2.0 * std);
  };
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (auto* linear = child->as<torch::nn::Linear>()) {
      fill(linear->weight);
      if (linear->bias.defined()) linear->bias.fill_(bias);
    } else if (auto* conv = child->as<torch::nn::Conv2d>()) {
      fill(conv->weight);
      if (conv->bias.defined()) conv->bias.fill_(bias);
    }
  }
}

namespace {

MultiHeadModel make_architecture(const ModelConfig& config, const std::vector<int64_t>& input_shape,
                                 const std::vector<int64_t>& head_sizes) {
  if (is_generator(config.arch))
    throw Error("internal: make_model builds classifiers; model.arch=" + to_string(config.arch) +
                " is built by make_continual_net");
  if (config.arch == ModelArch::LeNet) {
    LeNetConfig lenet;
    lenet.width = config.width;
    lenet.dropout = config.dropout;
    return make_lenet(input_shape, lenet, head_sizes);
  }
  if (config.arch == ModelArch::Vgg9) {
    Vgg9Config vgg;
    vgg.width = config.width;
    vgg.dropout = config.dropout;
    return make_vgg9(input_shape, vgg, head_sizes);
  }
  if (config.arch == ModelArch::ResNet18) {
    ResNet18Config resnet;
    resnet.width = config.width;
    resnet.stem = config.stem;
    return make_resnet18(input_shape, resnet, head_sizes);
  }
  MlpConfig mlp;
  mlp.hidden = config.hidden;
  mlp.dropout = config.dropout;
  return make_mlp(input_shape, mlp, head_sizes);
}

}  // namespace

MultiHeadModel make_model(const ModelConfig& config, const std::vector<int64_t>& input_shape,
                          const std::vector<int64_t>& head_sizes) {
  validate_model_config(config);
  MultiHeadModel model = make_architecture(config, input_shape, head_sizes);
  if (config.init == ModelInit::TruncatedNormal) initialise_truncated_normal(*model);
  return model;
}

}  // namespace clx

namespace clx {

std::shared_ptr<ContinualNet> make_continual_net(const ModelConfig& config, const std::vector<int64_t>& input_shape,
                                                 const std::vector<int64_t>& head_sizes) {
  if (!is_generator(config.arch)) return make_model(config, input_shape, head_sizes).ptr();
  validate_model_config(config);
  if (input_shape.size() != 3 || input_shape[1] != input_shape[2] || (input_shape[1] != 28 && input_shape[1] != 32))
    throw Error("model.arch=" + to_string(config.arch) + ": takes C x 28 x 28 or C x 32 x 32 images, the data's are " +
                c10::str(c10::IntArrayRef(input_shape)) + "");
  if (config.arch == ModelArch::Dgm) {
    DgmNetConfig dgm;
    dgm.masks = parse_dgm_masks(config.dgm_masks);
    dgm.channels = input_shape[0];
    dgm.image_size = input_shape[1];
    dgm.noise_dim = config.gan_noise;
    dgm.base_channels = config.dgm_width > 0 ? config.dgm_width : dgm.masks == DgmMasks::Weights ? 6 : 20;
    dgm.classes = 0;
    for (int64_t size : head_sizes) dgm.classes += size;
    dgm.tasks = config.tasks;
    dgm.seed = config.seed;
    return DgmNet(dgm).ptr();
  }
  if (config.arch == ModelArch::Gan) {
    GanConfig gan;
    gan.channels = input_shape[0];
    gan.image_size = input_shape[1];
    gan.noise_dim = config.gan_noise;
    gan.width = config.width;
    for (int64_t size : head_sizes) gan.classes += size;
    gan.seed = config.seed;
    gan.batch_norm = false;  // each image a function of its own noise and class: the same on any rank count
    return GanNet(gan).ptr();
  }
  VaeConfig vae;
  vae.channels = input_shape[0];
  vae.image_size = input_shape[1];
  vae.hidden = config.vae_hidden;
  vae.latent = config.vae_latent;
  vae.tasks = static_cast<int64_t>(head_sizes.size());
  vae.seed = config.seed;
  return VaeNet(vae).ptr();
}

}  // namespace clx
