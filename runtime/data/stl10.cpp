#include "runtime/data/stl10.h"

#include "runtime/error.h"

namespace clx {
namespace {

constexpr int64_t kClasses = 10;
// test_X.bin, the largest file read, is 221,184,000 bytes.
constexpr int64_t kMaxImageFileBytes = int64_t{1} << 30;
constexpr const char* kLayout =
    "an STL-10 folder holds train_X.bin, train_y.bin, test_X.bin and test_y.bin, the binary version "
    "stl10_binary.tar.gz";

}  // namespace

LabelledImages load_stl10_split(const std::string& folder, OfficialSplit split) {
  const std::string part = split == OfficialSplit::Train ? "train" : "test";
  const std::string image_path = dataset_file(folder, part + "_X.bin", kLayout);
  const std::string label_path = dataset_file(folder, part + "_y.bin", kLayout);
  const torch::Tensor image_bytes = read_byte_file(image_path, kMaxImageFileBytes);
  if (image_bytes.numel() == 0 || image_bytes.numel() % kStl10ImageBytes != 0)
    throw Error(image_path + ": " + std::to_string(image_bytes.numel()) + " bytes, not a whole number of " +
                std::to_string(kStl10ImageBytes) + "-byte images (3x96x96): an STL-10 image file of the wrong length");
  const int64_t count = image_bytes.numel() / kStl10ImageBytes;
  // A label file is one byte per image: anything much longer than the images' count is not one.
  const torch::Tensor labels = read_byte_file(label_path, count + (int64_t{1} << 20));
  if (labels.numel() != count)
    throw Error("sizes disagree: " + image_path + " holds " + std::to_string(count) + " images but " + label_path +
                " holds " + std::to_string(labels.numel()) + " labels");
  check_label_range(labels, 1, kClasses, label_path);
  // Bytes in (n, k, c, r) order: viewed so, then rows and columns swapped.
  const torch::Tensor pixels = image_bytes.view({count, 3, kStl10Side, kStl10Side}).transpose(2, 3);
  return labelled_images_from_bytes(pixels, labels.to(torch::kInt64) - 1, kClasses,
                                    "stl10 " + part + " (" + folder + ")");
}

}  // namespace clx
