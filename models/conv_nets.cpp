#include "models/conv_nets.h"

#include <cmath>

#include "runtime/error.h"
#include "runtime/text.h"

namespace clx {
namespace {

namespace nn = torch::nn;

int64_t scaled(int64_t channels, double width) {
  return std::max<int64_t>(1, std::llround(static_cast<double>(channels) * width));
}

void check_width(double width) {
  if (!(width > 0.0) || !std::isfinite(width))
    throw Error("model.width: must be a positive channel multiplier, got " + std::to_string(width));
}

void check_dropout(double dropout) {
  if (!(dropout >= 0.0 && dropout < 1.0)) throw Error("model.dropout: must be in [0, 1), got " + std::to_string(dropout));
}

void check_image_shape(const std::vector<int64_t>& input_shape, const std::string& arch) {
  if (input_shape.size() != 3)
    throw Error("model.arch=" + arch + " needs image inputs CxHxW, the data has " +
                std::to_string(input_shape.size()) + " dimensions");
}

// He initialisation (as torchvision's VGG and ResNet): weights normal with
// variance 2 / fan_out for convolutions, 2 / fan_in for fully connected
// layers, biases zero. LibTorch's default (variance 1 / (3 fan_in)) shrinks
// the signal sixfold in variance per ReLU layer: after VGG-9's eight layers
// every input gives nearly the same output, and SGD does not move off chance
// accuracy within a few epochs.
nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool bias) {
  nn::Conv2d layer(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(bias));
  torch::NoGradGuard no_grad;
  nn::init::kaiming_normal_(layer->weight, 0.0, torch::kFanOut, torch::kReLU);
  if (bias) layer->bias.zero_();
  return layer;
}

nn::Linear linear(int64_t in, int64_t out) {
  nn::Linear layer(in, out);
  torch::NoGradGuard no_grad;
  nn::init::kaiming_normal_(layer->weight, 0.0, torch::kFanIn, torch::kReLU);
  layer->bias.zero_();
  return layer;
}

std::string next_name(const nn::Sequential& trunk) { return "trunk." + std::to_string(trunk->size()); }

// Appends `layer` (a convolution or fully connected layer) and its GatedReLU
// of `units` outputs, and records them in `units_seen`: the layer's
// parameters connect hidden layer `previous` (times `in_repeat` inputs per
// unit) to the new one, which becomes `previous`.
template <typename Layer>
void append_gated(nn::Sequential& trunk, const Layer& layer, int64_t units, HiddenUnits& units_seen, int& previous,
                  int64_t in_repeat = 1) {
  const std::string layer_name = next_name(trunk);
  trunk->push_back(layer);
  const std::string relu_name = next_name(trunk);
  const GatedReLU relu(units);
  trunk->push_back(relu);
  const int index = units_seen.add_layer(relu_name, relu);
  units_seen.connect(layer_name, *layer, index, previous, in_repeat);
  previous = index;
}

// Flatten `channels` maps of `spatial` pixels, then fc layers of `widths`
// (scaled by `width`), each followed by a GatedReLU and, when `dropout` > 0,
// dropout. Returns the number of features out.
int64_t append_fully_connected(nn::Sequential& trunk, int64_t channels, int64_t spatial,
                               std::initializer_list<int64_t> widths, double width, double dropout,
                               HiddenUnits& units, int& previous) {
  trunk->push_back(nn::Flatten());
  int64_t features = channels * spatial, in_repeat = spatial;
  for (int64_t layer_width : widths) {
    const int64_t out = scaled(layer_width, width);
    append_gated(trunk, linear(features, out), out, units, previous, in_repeat);
    if (dropout > 0) trunk->push_back(nn::Dropout(dropout));
    features = out;
    in_repeat = 1;
  }
  return features;
}

}  // namespace

MultiHeadModel make_lenet(const std::vector<int64_t>& input_shape, const LeNetConfig& config,
                          const std::vector<int64_t>& head_sizes) {
  check_image_shape(input_shape, "lenet");
  check_width(config.width);
  check_dropout(config.dropout);
  int64_t height = input_shape[1], width = input_shape[2];
  if (height < 4 || width < 4)
    throw Error("model.arch=lenet needs images of at least 4x4 pixels (two 2x2 poolings), the data has " +
                sizes_text(input_shape));
  nn::Sequential trunk;
  HiddenUnits units;
  int previous = -1;
  int64_t channels = input_shape[0];
  for (int64_t block_channels : {32, 64}) {
    const int64_t out = scaled(block_channels, config.width);
    append_gated(trunk, conv(channels, out, 5, 1, 2, /*bias=*/true), out, units, previous);
    trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    channels = out;
    height /= 2;
    width /= 2;
  }
  const int64_t features = append_fully_connected(trunk, channels, height * width, {512, 256}, config.width,
                                                  config.dropout, units, previous);
  MultiHeadModel model(trunk, features, head_sizes);
  model->set_hidden_units(std::move(units));
  return model;
}

MultiHeadModel make_vgg9(const std::vector<int64_t>& input_shape, const Vgg9Config& config,
                         const std::vector<int64_t>& head_sizes) {
  check_image_shape(input_shape, "vgg9");
  check_width(config.width);
  check_dropout(config.dropout);
  int64_t height = input_shape[1], width = input_shape[2];
  if (height < 8 || width < 8)
    throw Error("model.arch=vgg9 needs images of at least 8x8 pixels (three 2x2 poolings), the data has " +
                sizes_text(input_shape));
  nn::Sequential trunk;
  HiddenUnits units;
  int previous = -1;
  int64_t channels = input_shape[0];
  for (int64_t block_channels : {32, 64, 128}) {
    const int64_t out = scaled(block_channels, config.width);
    for (int layer = 0; layer < 2; ++layer) {
      append_gated(trunk, conv(channels, out, 3, 1, 1, /*bias=*/true), out, units, previous);
      channels = out;
    }
    trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    height /= 2;
    width /= 2;
  }
  const int64_t features = append_fully_connected(trunk, channels, height * width, {256, 256}, config.width,
                                                  config.dropout, units, previous);
  MultiHeadModel model(trunk, features, head_sizes);
  model->set_hidden_units(std::move(units));
  return model;
}

BasicBlockImpl::BasicBlockImpl(int64_t in_channels, int64_t out_channels, int64_t stride) {
  conv1_ = register_module("conv1", conv(in_channels, out_channels, 3, stride, 1, false));
  bn1_ = register_module("bn1", nn::BatchNorm2d(out_channels));
  conv2_ = register_module("conv2", conv(out_channels, out_channels, 3, 1, 1, false));
  bn2_ = register_module("bn2", nn::BatchNorm2d(out_channels));
  if (stride != 1 || in_channels != out_channels) {
    downsample_conv_ = conv(in_channels, out_channels, 1, stride, 0, false);
    downsample_bn_ = nn::BatchNorm2d(out_channels);
    register_module("downsample", nn::Sequential(downsample_conv_, downsample_bn_));
  }
  // Parameterless: registering them leaves the parameter names as torchvision's.
  relu1_ = register_module("relu1", GatedReLU(out_channels));
  relu_out_ = register_module("relu_out", GatedReLU(out_channels));
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& input) {
  torch::Tensor out = relu1_->forward(bn1_->forward(conv1_->forward(input)));
  out = bn2_->forward(conv2_->forward(out));
  const torch::Tensor shortcut = downsample_conv_ ? downsample_bn_->forward(downsample_conv_->forward(input)) : input;
  return relu_out_->forward(out + shortcut);
}

torch::Tensor BasicBlockImpl::forward_recorded(const torch::Tensor& input, LayerTape& tape) {
  torch::Tensor out = relu1_->forward(tape.batch_norm2d(bn1_.ptr(), tape.conv2d(conv1_.ptr(), input)));
  out = tape.batch_norm2d(bn2_.ptr(), tape.conv2d(conv2_.ptr(), out));
  const torch::Tensor shortcut =
      downsample_conv_ ? tape.batch_norm2d(downsample_bn_.ptr(), tape.conv2d(downsample_conv_.ptr(), input)) : input;
  return relu_out_->forward(out + shortcut);
}

int BasicBlockImpl::expose_units(HiddenUnits& units, const std::string& prefix, int input_layer) const {
  const int inner = units.add_layer(prefix + ".relu1", relu1_);
  units.connect(prefix + ".conv1", *conv1_, inner, input_layer);
  units.connect(prefix + ".bn1", *bn1_, inner, -1);
  // The block's output channels: conv2's and the shortcut's, summed before the gate.
  const int output = units.add_layer(prefix + ".relu_out", relu_out_);
  units.connect(prefix + ".conv2", *conv2_, output, inner);
  units.connect(prefix + ".bn2", *bn2_, output, -1);
  if (downsample_conv_) {
    units.connect(prefix + ".downsample.0", *downsample_conv_, output, input_layer);
    units.connect(prefix + ".downsample.1", *downsample_bn_, output, -1);
  }
  return output;
}

MultiHeadModel make_resnet18(const std::vector<int64_t>& input_shape, const ResNet18Config& config,
                             const std::vector<int64_t>& head_sizes) {
  check_image_shape(input_shape, "resnet18");
  check_width(config.width);
  std::string stem = config.stem;
  if (stem == "auto") stem = input_shape[1] >= 128 && input_shape[2] >= 128 ? "imagenet" : "small";
  if (stem != "small" && stem != "imagenet")
    throw Error("model.stem: '" + config.stem + "' is not one of auto, small, imagenet");
  nn::Sequential trunk;
  HiddenUnits units;
  int64_t channels = scaled(64, config.width);
  const bool imagenet = stem == "imagenet";
  const nn::Conv2d stem_conv = imagenet ? conv(input_shape[0], channels, 7, 2, 3, false)
                                        : conv(input_shape[0], channels, 3, 1, 1, false);
  const nn::BatchNorm2d stem_norm(channels);
  const GatedReLU stem_relu(channels);
  trunk->push_back(stem_conv);
  trunk->push_back(stem_norm);
  int previous = units.add_layer(next_name(trunk), stem_relu);
  units.connect("trunk.0", *stem_conv, previous, -1);
  units.connect("trunk.1", *stem_norm, previous, -1);
  trunk->push_back(stem_relu);
  if (imagenet) trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  const int64_t stage_channels[] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t out = scaled(stage_channels[stage], config.width);
    for (const BasicBlock& block : {BasicBlock(channels, out, stage == 0 ? 1 : 2), BasicBlock(out, out, 1)}) {
      const std::string name = next_name(trunk);
      trunk->push_back(block);
      previous = block->expose_units(units, name, previous);
    }
    channels = out;
  }
  trunk->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  trunk->push_back(nn::Flatten());
  units.isolation_broken_by = "BatchNorm's batch statistics and the residual blocks' identity shortcuts";
  MultiHeadModel model(trunk, channels, head_sizes);
  model->set_hidden_units(std::move(units));
  return model;
}

}  // namespace clx
