#pragma once
// Convolutional trunks for image streams (DESIGN.md 2: LeNet, VGG-9, ResNet-18),
// each a MultiHeadModel: a torch::nn::Sequential trunk plus one linear head
// per task, shared parameters named "trunk.<layer>.<parameter>".
//
// LeNet: the paper's appendix B network (the TensorFlow MNIST tutorial's
// LeNet with two fully connected layers):
//   conv5x5 32, maxpool 2 | conv5x5 64, maxpool 2 | flatten, fc 512, fc 256 | head
// (padding 2, as TensorFlow's SAME, so 28x28 flattens 64x7x7; ReLU after every
// conv and fc, biases everywhere, optional dropout after each fc). Any CxHxW
// input of at least 4x4 pixels.
//
// VGG-9: the small VGG of split-CIFAR continual-learning experiments, nine
// weight layers counting the head:
//   conv3x3 32, conv3x3 32, maxpool 2 | conv3x3 64, conv3x3 64, maxpool 2 |
//   conv3x3 128, conv3x3 128, maxpool 2 | flatten, fc 256, fc 256 | head
// (padding 1, ReLU after every conv and fc, biases everywhere, He init, optional
// dropout after each fc; no BatchNorm, so data-parallel runs stay exact).
// The fc widths (256, 256) are this project's choice. Any CxHxW input of at
// least 8x8 pixels: Fashion-MNIST 1x28x28 flattens 128x3x3, CIFAR 3x32x32
// flattens 128x4x4.
//
// ResNet-18: torchvision's BasicBlock layout [2, 2, 2, 2] with widths
// 64-128-256-512, BatchNorm after every convolution, convolutions without
// bias, 1x1 stride-2 projection shortcuts where the shape changes, global
// average pooling; 512 features. Stems: "imagenet" (7x7/2 conv + 3x3/2
// max-pool, for 224-pixel images such as Caltech-101) or "small" (3x3/1
// conv, no max-pool, for 28/32-pixel images); "auto" picks imagenet when both
// sides are at least 128 pixels. 11,176,512 trunk parameters with the
// ImageNet stem on RGB input (torchvision's 11,689,512 less its 1000-way fc).
//
// `width` scales every channel count (rounded, at least 1): 0.25 gives a
// quarter-width network for quick tests.
#include <string>
#include <vector>

#include "models/layer_tape.h"
#include "models/multi_head_model.h"

namespace clx {

struct LeNetConfig {
  double width = 1.0;
  double dropout = 0.0;  // after each fully connected layer
};

MultiHeadModel make_lenet(const std::vector<int64_t>& input_shape, const LeNetConfig& config,
                          const std::vector<int64_t>& head_sizes);

struct Vgg9Config {
  double width = 1.0;
  double dropout = 0.0;  // after each fully connected layer
};

MultiHeadModel make_vgg9(const std::vector<int64_t>& input_shape, const Vgg9Config& config,
                         const std::vector<int64_t>& head_sizes);

struct ResNet18Config {
  double width = 1.0;
  std::string stem = "auto";  // auto | small | imagenet
};

MultiHeadModel make_resnet18(const std::vector<int64_t>& input_shape, const ResNet18Config& config,
                             const std::vector<int64_t>& head_sizes);

// conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the identity (or a 1x1
// conv -> BN projection when stride or width change), then ReLU. Submodules
// are named as in torchvision (conv1, bn1, conv2, bn2, downsample.0/1).
// Both ReLUs are GatedReLUs (hidden units of HAT and CLNP, DESIGN.md 4.3).
class BasicBlockImpl : public torch::nn::Module, public RecordingModule {
 public:
  BasicBlockImpl(int64_t in_channels, int64_t out_channels, int64_t stride);
  torch::Tensor forward(const torch::Tensor& input);
  torch::Tensor forward_recorded(const torch::Tensor& input, LayerTape& tape) override;
  // Adds the block's two hidden layers (after conv1, and the output after the
  // residual sum) to `units`, the block being trunk module `prefix` whose
  // input comes from hidden layer `input_layer`; returns the output layer.
  int expose_units(HiddenUnits& units, const std::string& prefix, int input_layer) const;

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, downsample_conv_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, downsample_bn_{nullptr};
  GatedReLU relu1_{nullptr}, relu_out_{nullptr};
};
TORCH_MODULE(BasicBlock);

}  // namespace clx
