#include "runtime/data/byte_images.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "runtime/data/idx.h"
#include "runtime/error.h"

namespace clx {

std::string dataset_file(const std::string& folder, const std::string& name, const std::string& layout) {
  const std::filesystem::path path = std::filesystem::path(folder) / name;
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw Error(path.string() + " does not exist (" + layout + ")");
  return path.string();
}

torch::Tensor read_byte_file(const std::string& path, int64_t max_bytes) {
  const std::string content = read_plain_or_gzip_file(path, max_bytes);
  torch::Tensor bytes = torch::empty({static_cast<int64_t>(content.size())}, torch::kUInt8);
  if (!content.empty()) std::memcpy(bytes.data_ptr<uint8_t>(), content.data(), content.size());
  return bytes;
}

void check_label_range(const torch::Tensor& labels, int64_t low, int64_t high, const std::string& where) {
  // float64 holds every label value exactly (uint8, whole doubles, int64 below 2^53).
  const torch::Tensor values = labels.to(torch::kFloat64).reshape({-1});
  torch::Tensor bad = values.lt(static_cast<double>(low)).logical_or_(values.gt(static_cast<double>(high)));
  if (labels.is_floating_point()) bad.logical_or_(values.ne(values.floor()));  // NaN too: it equals nothing
  if (!bad.any().item<bool>()) return;
  const int64_t index = bad.nonzero()[0][0].item<int64_t>();
  const double value = values[index].item<double>();
  std::ostringstream text;
  text << where << ": label " << value << " of image " << index + 1 << " (of " << values.numel() << ") "
       << (value == std::floor(value) ? "is outside " : "is not a whole number in ") << low << ".." << high;
  throw Error(text.str());
}

LabelledImages labelled_images_from_bytes(const torch::Tensor& pixels, const torch::Tensor& labels,
                                          int64_t num_classes, std::string description) {
  if (pixels.scalar_type() != torch::kUInt8 || pixels.dim() != 4 || labels.dim() != 1 ||
      labels.size(0) != pixels.size(0))
    throw Error(description + ": internal error: expected uint8 pixels [N, C, H, W] and N labels");
  LabelledImages data;
  // One pass from any strides (a reader's transposed view) to contiguous floats.
  data.images = pixels.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true, torch::MemoryFormat::Contiguous)
                    .div_(255.0f);
  data.labels = labels.to(torch::kInt64, /*non_blocking=*/false, /*copy=*/true);
  data.num_classes = num_classes;
  data.description = std::move(description);
  return data;
}

}  // namespace clx
