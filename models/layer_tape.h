#pragma once
// A record of one forward pass through a trunk: for every layer with
// parameters (Linear, Conv2d, ConvTranspose2d, BatchNorm2d), its input and its
// output. The
// output stays in the autograd graph, so the gradient of a sum of per-sample
// losses with respect to it has sample i's own gradient in row i, provided no
// layer mixes samples (eval mode: BatchNorm uses its running statistics,
// dropout is the identity). From a layer's input and that output gradient the
// per-sample parameter gradients follow in closed form (EWC's exact Fisher,
// algorithms/importance.cpp), with one batched pass instead of one backward
// pass per sample.
//
// Layers the tape cannot account for make it incomplete (complete() false,
// reason() says which); its user then falls back to per-sample passes.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace clx {

enum class TapedLayerKind { Linear, Conv2d, ConvTranspose2d, BatchNorm2d };

struct TapedLayer {
  TapedLayerKind kind;
  std::shared_ptr<torch::nn::Module> module;  // LinearImpl, Conv2dImpl, ConvTranspose2dImpl or BatchNorm2dImpl
  torch::Tensor input;                        // detached: no gradient flows into it from here
  torch::Tensor output;                       // part of the graph from the trunk's input to the loss
};

class LayerTape {
 public:
  // Each runs the layer on `input`, records it and returns the output. A layer
  // whose per-sample gradients the tape cannot form (grouped or 'same'-padded
  // convolutions, BatchNorm with batch statistics, Linear on more than 2-D
  // input) is run all the same and marks the tape incomplete.
  torch::Tensor linear(const std::shared_ptr<torch::nn::LinearImpl>& layer, const torch::Tensor& input);
  torch::Tensor conv2d(const std::shared_ptr<torch::nn::Conv2dImpl>& layer, const torch::Tensor& input);
  // The generators' upsampling layers (models/generative.h); grouped ones mark the tape incomplete.
  torch::Tensor conv_transpose2d(const std::shared_ptr<torch::nn::ConvTranspose2dImpl>& layer,
                                 const torch::Tensor& input);
  torch::Tensor batch_norm2d(const std::shared_ptr<torch::nn::BatchNorm2dImpl>& layer, const torch::Tensor& input);
  // Runs every child of `sequential` in order: parameterised layers above are
  // recorded, per-sample layers without parameters (ReLU, pooling, Flatten,
  // Dropout in eval mode, Identity, GatedReLU) just run, RecordingModule children record
  // themselves, nested Sequentials recurse; anything else runs and marks the
  // tape incomplete.
  torch::Tensor sequential(const torch::nn::Sequential& sequential, const torch::Tensor& input);

  void mark_incomplete(const std::string& why);
  bool complete() const { return reason_.empty(); }
  // Why the tape is incomplete (the first reason met); empty when complete.
  const std::string& reason() const { return reason_; }
  const std::vector<TapedLayer>& layers() const { return layers_; }

 private:
  std::vector<TapedLayer> layers_;
  std::string reason_;
};

// A module made of other layers (a residual block) that can run its forward
// pass through a tape; it must compute exactly what its forward() computes.
class RecordingModule {
 public:
  virtual ~RecordingModule() = default;
  virtual torch::Tensor forward_recorded(const torch::Tensor& input, LayerTape& tape) = 0;
};

}  // namespace clx
