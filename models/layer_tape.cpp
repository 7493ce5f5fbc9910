#include "models/layer_tape.h"

#include "runtime/hidden_units.h"

namespace clx {

void LayerTape::mark_incomplete(const std::string& why) {
  if (reason_.empty()) reason_ = why;
}

torch::Tensor LayerTape::linear(const std::shared_ptr<torch::nn::LinearImpl>& layer, const torch::Tensor& input) {
  torch::Tensor output = layer->forward(input);
  // The closed form (outer product of input and output gradient) is for one input row per sample.
  if (input.dim() != 2) mark_incomplete("a Linear layer on " + std::to_string(input.dim()) + "-D input");
  layers_.push_back({TapedLayerKind::Linear, layer, input.detach(), output});
  return output;
}

torch::Tensor LayerTape::conv2d(const std::shared_ptr<torch::nn::Conv2dImpl>& layer, const torch::Tensor& input) {
  torch::Tensor output = layer->forward(input);
  const auto& options = layer->options;
  if (options.groups() != 1) mark_incomplete("a grouped Conv2d (groups " + std::to_string(options.groups()) + ")");
  if (!c10::get_if<torch::ExpandingArray<2>>(&options.padding()) && !c10::get_if<torch::enumtype::kValid>(&options.padding()))
    mark_incomplete("a Conv2d with padding 'same'");
  if (!c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()))
    mark_incomplete("a Conv2d with a padding mode other than zeros");
  layers_.push_back({TapedLayerKind::Conv2d, layer, input.detach(), output});
  return output;
}

torch::Tensor LayerTape::conv_transpose2d(const std::shared_ptr<torch::nn::ConvTranspose2dImpl>& layer,
                                         const torch::Tensor& input) {
  torch::Tensor output = layer->forward(input);
  const auto& options = layer->options;
  if (options.groups() != 1)
    mark_incomplete("a grouped ConvTranspose2d (groups " + std::to_string(options.groups()) + ")");
  // LibTorch allows only explicit padding and zeros for transposed convolutions; checked all the same.
  if (!c10::get_if<torch::ExpandingArray<2>>(&options.padding()))
    mark_incomplete("a ConvTranspose2d without explicit padding");
  if (!c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()))
    mark_incomplete("a ConvTranspose2d with a padding mode other than zeros");
  layers_.push_back({TapedLayerKind::ConvTranspose2d, layer, input.detach(), output});
  return output;
}

torch::Tensor LayerTape::batch_norm2d(const std::shared_ptr<torch::nn::BatchNorm2dImpl>& layer,
                                      const torch::Tensor& input) {
  torch::Tensor output = layer->forward(input);
  // With batch statistics every sample's output depends on the whole batch.
  if (layer->is_training() || !layer->options.track_running_stats())
    mark_incomplete("a BatchNorm2d that normalises with batch statistics (training mode or no running statistics)");
  if (layer->options.affine()) layers_.push_back({TapedLayerKind::BatchNorm2d, layer, input.detach(), output});
  return output;
}

torch::Tensor LayerTape::sequential(const torch::nn::Sequential& sequential, const torch::Tensor& input) {
  torch::Tensor x = input;
  for (torch::nn::AnyModule& child : *sequential.ptr()) {
    const std::shared_ptr<torch::nn::Module> module = child.ptr();
    if (auto linear_layer = std::dynamic_pointer_cast<torch::nn::LinearImpl>(module)) {
      x = linear(linear_layer, x);
    } else if (auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(module)) {
      x = conv2d(conv, x);
    } else if (auto transposed = std::dynamic_pointer_cast<torch::nn::ConvTranspose2dImpl>(module)) {
      x = conv_transpose2d(transposed, x);
    } else if (auto norm = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(module)) {
      x = batch_norm2d(norm, x);
    } else if (auto nested = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(module)) {
      x = this->sequential(torch::nn::Sequential(nested), x);
    } else if (auto recording = std::dynamic_pointer_cast<RecordingModule>(module)) {
      x = recording->forward_recorded(x, *this);
    } else {
      // An in-place ReLU would overwrite a recorded output that autograd still needs.
      const auto relu = std::dynamic_pointer_cast<torch::nn::ReLUImpl>(module);
      const auto dropout = std::dynamic_pointer_cast<torch::nn::DropoutImpl>(module);
      // Flattening from dimension 0 would merge the samples into one row.
      const auto flatten = std::dynamic_pointer_cast<torch::nn::FlattenImpl>(module);
      const bool per_sample = (relu && !relu->options.inplace()) || (dropout && !dropout->is_training()) ||
                              std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(module) ||
                              std::dynamic_pointer_cast<torch::nn::AvgPool2dImpl>(module) ||
                              std::dynamic_pointer_cast<torch::nn::AdaptiveAvgPool2dImpl>(module) ||
                              (flatten && flatten->options.start_dim() != 0 && flatten->options.start_dim() != -x.dim()) ||
                              std::dynamic_pointer_cast<torch::nn::IdentityImpl>(module) ||
                              std::dynamic_pointer_cast<GatedReLUImpl>(module);  // a per-unit gate, same for every sample
      if (!per_sample) mark_incomplete("a layer of type " + module->name());
      x = child.forward(x);
    }
  }
  return x;
}

}  // namespace clx
