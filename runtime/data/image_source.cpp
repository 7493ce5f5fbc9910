#include "runtime/data/image_source.h"

namespace clx {

torch::Tensor LabelledImages::gather(const torch::Tensor& rows, uint64_t /*augment_seed*/) const {
  return images.index_select(0, rows);
}

std::shared_ptr<const ImageSource> LabelledImages::placed_for(torch::Device compute_device) const {
  auto placed = std::make_shared<LabelledImages>(*this);
  placed->images = images.to(compute_device);
  placed->labels = labels.to(compute_device);
  return placed;
}

}  // namespace clx
