#pragma once
// Builds the network named by model.arch (the classifiers mlp | lenet | vgg9 |
// resnet18, the generators vae | gan | dgm) for a stream's input shape and heads.
#include <string>
#include <vector>

#include "models/conv_nets.h"
#include "models/multi_head_model.h"

namespace clx {

enum class ModelArch { Mlp, LeNet, Vgg9, ResNet18, Vae, Gan, Dgm };
// model.arch's names; anything else throws clx::Error naming model.arch.
ModelArch parse_model_arch(const std::string& text);
std::string to_string(ModelArch arch);
bool is_generator(ModelArch arch);  // vae, gan, dgm: trained and scored by a generation objective

// default: LibTorch's | truncated_normal: every Linear and Conv2d weight
// (trunk and heads) from N(0, 0.1^2) truncated at 2 standard deviations,
// biases 0.1 (the released ANPyC code's weight_variable / bias_variable).
enum class ModelInit { Default, TruncatedNormal };
ModelInit parse_model_init(const std::string& text);  // throws naming model.init

struct ModelConfig {
  ModelArch arch = ModelArch::Mlp;
  std::vector<int64_t> hidden{512, 256};  // mlp: hidden layer sizes
  double dropout = 0.0;                   // mlp: after each hidden layer; vgg9: after each fc layer
  double width = 1.0;                     // vgg9, resnet18: channel multiplier
  std::string stem = "auto";              // resnet18: auto | small | imagenet
  ModelInit init = ModelInit::Default;
  // vae (continual generation, models/vae_net.h): the fc width and latent size;
  // the seed draws each task's latent layers (train.seed).
  int64_t vae_hidden = 256, vae_latent = 32;
  // gan (models/gan_net.h): the generator's noise dimensions (width: model.width).
  int64_t gan_noise = 100;
  // dgm (models/dgm_net.h): the mask kind (dgm.masks), the base width
  // (dgm.width; 0: the reference's for the kind) and the stream's number of
  // tasks (one head and mask set per task; set once the stream is read).
  std::string dgm_masks = "weights";
  int64_t dgm_width = 0;
  int64_t tasks = 0;
  uint64_t seed = 1;
};

// The checks that need no data: throws clx::Error naming the option
// (model.dropout, model.width, model.stem, model.gan_noise, ...).
void validate_model_config(const ModelConfig& config);

// Also throws clx::Error when the network does not fit `input_shape` ({C, H, W}).
// The initial weights come from LibTorch's default generator (seed it first).
MultiHeadModel make_model(const ModelConfig& config, const std::vector<int64_t>& input_shape,
                          const std::vector<int64_t>& head_sizes);

// Any architecture, the generators included, as the trainer's network: the
// classifiers as make_model builds them; vae: a VaeNet for C x S x S images
// (S = 28 or 32) with one set of latent layers per head (task); gan: a GanNet
// (its generator, without BatchNorm) with one class slot per output of the
// single head.
std::shared_ptr<ContinualNet> make_continual_net(const ModelConfig& config, const std::vector<int64_t>& input_shape,
                                                 const std::vector<int64_t>& head_sizes);

// Re-initialises every Linear and Conv2d of `module`: weights truncated normal
// (mean 0, `std`, cut at 2 std by inverse-CDF sampling, as PyTorch's
// trunc_normal_ and TensorFlow's truncated_normal), biases `bias`.
void initialise_truncated_normal(torch::nn::Module& module, double std = 0.1, double bias = 0.1);

}  // namespace clx
