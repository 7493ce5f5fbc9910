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

// Flatten, then fc layers of `widths` (scaled by `width`), each followed by
// ReLU and, when `dropout` > 0, dropout. Returns the number of features out.
int64_t append_fully_connected(nn::Sequential& trunk, int64_t features, std::initializer_list<int64_t> widths,
                               double width, double dropout) {
  trunk->push_back(nn::Flatten());
  for (int64_t layer_width : widths) {
    const int64_t out = scaled(layer_width, width);
    trunk->push_back(linear(features, out));
    trunk->push_back(nn::ReLU());
    if (dropout > 0) trunk->push_back(nn::Dropout(dropout));
    features = out;
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
  int64_t channels = input_shape[0];
  for (int64_t block_channels : {32, 64}) {
    const int64_t out = scaled(block_channels, config.width);
    trunk->push_back(conv(channels, out, 5, 1, 2, /*bias=*/true));
    trunk->push_back(nn::ReLU());
    trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    channels = out;
    height /= 2;
    width /= 2;
  }
  const int64_t features = append_fully_connected(trunk, channels * height * width, {512, 256}, config.width,
                                                  config.dropout);
  return MultiHeadModel(trunk, features, head_sizes);
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
  int64_t channels = input_shape[0];
  for (int64_t block_channels : {32, 64, 128}) {
    const int64_t out = scaled(block_channels, config.width);
    for (int layer = 0; layer < 2; ++layer) {
      trunk->push_back(conv(channels, out, 3, 1, 1, /*bias=*/true));
      trunk->push_back(nn::ReLU());
      channels = out;
    }
    trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    height /= 2;
    width /= 2;
  }
  const int64_t features = append_fully_connected(trunk, channels * height * width, {256, 256}, config.width,
                                                  config.dropout);
  return MultiHeadModel(trunk, features, head_sizes);
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
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& input) {
  torch::Tensor out = torch::relu(bn1_->forward(conv1_->forward(input)));
  out = bn2_->forward(conv2_->forward(out));
  const torch::Tensor shortcut = downsample_conv_ ? downsample_bn_->forward(downsample_conv_->forward(input)) : input;
  return torch::relu(out + shortcut);
}

torch::Tensor BasicBlockImpl::forward_recorded(const torch::Tensor& input, LayerTape& tape) {
  torch::Tensor out = torch::relu(tape.batch_norm2d(bn1_.ptr(), tape.conv2d(conv1_.ptr(), input)));
  out = tape.batch_norm2d(bn2_.ptr(), tape.conv2d(conv2_.ptr(), out));
  const torch::Tensor shortcut =
      downsample_conv_ ? tape.batch_norm2d(downsample_bn_.ptr(), tape.conv2d(downsample_conv_.ptr(), input)) : input;
  return torch::relu(out + shortcut);
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
  int64_t channels = scaled(64, config.width);
  if (stem == "imagenet") {
    trunk->push_back(conv(input_shape[0], channels, 7, 2, 3, false));
    trunk->push_back(nn::BatchNorm2d(channels));
    trunk->push_back(nn::ReLU());
    trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  } else {
    trunk->push_back(conv(input_shape[0], channels, 3, 1, 1, false));
    trunk->push_back(nn::BatchNorm2d(channels));
    trunk->push_back(nn::ReLU());
  }
  const int64_t stage_channels[] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t out = scaled(stage_channels[stage], config.width);
    trunk->push_back(BasicBlock(channels, out, stage == 0 ? 1 : 2));
    trunk->push_back(BasicBlock(out, out, 1));
    channels = out;
  }
  trunk->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  trunk->push_back(nn::Flatten());
  return MultiHeadModel(trunk, channels, head_sizes);
}

}  // namespace clx
