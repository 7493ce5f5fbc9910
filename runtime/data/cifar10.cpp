#include "runtime/data/cifar10.h"

#include <vector>

#include "runtime/error.h"

namespace clx {
namespace {

constexpr int64_t kClasses = 10;
constexpr int64_t kTrainingBatches = 5;
// A real batch is 30,730,000 bytes; a file far larger is not one.
constexpr int64_t kMaxBatchBytes = int64_t{256} << 20;
constexpr const char* kLayout =
    "a CIFAR-10 folder holds data_batch_1.bin .. data_batch_5.bin and test_batch.bin, the binary version "
    "cifar-10-binary.tar.gz";

struct ByteBatch {
  torch::Tensor pixels;  // uint8 [N, 3, 32, 32]
  torch::Tensor labels;  // uint8 [N]
};

ByteBatch read_byte_batch(const std::string& path) {
  const torch::Tensor bytes = read_byte_file(path, kMaxBatchBytes);
  const int64_t length = bytes.numel();
  if (length == 0 || length % kCifarRecordBytes != 0)
    throw Error(path + ": " + std::to_string(length) + " bytes, not a whole number of " +
                std::to_string(kCifarRecordBytes) + "-byte records (1 label byte + " +
                std::to_string(kCifarRecordBytes - 1) + " pixel bytes): a CIFAR batch of the wrong length");
  const torch::Tensor records = bytes.view({length / kCifarRecordBytes, kCifarRecordBytes});
  ByteBatch batch;
  // Copies, not views: a view would keep the whole file's bytes alive until the batches are joined.
  batch.labels = records.select(1, 0).clone();
  check_label_range(batch.labels, 0, kClasses - 1, path);
  // The planes are already channel-major and row-major: [N, 3, 32, 32] is a reshape (a copy, as the
  // records' label bytes sit between the images).
  batch.pixels = records.slice(1, 1).reshape({-1, 3, kCifarSide, kCifarSide});
  return batch;
}

}  // namespace

LabelledImages read_cifar10_batch(const std::string& path) {
  const ByteBatch batch = read_byte_batch(path);
  return labelled_images_from_bytes(batch.pixels, batch.labels, kClasses, "cifar10 (" + path + ")");
}

LabelledImages load_cifar10_split(const std::string& folder, OfficialSplit split) {
  std::vector<std::string> names;
  if (split == OfficialSplit::Train) {
    for (int64_t k = 1; k <= kTrainingBatches; ++k) names.push_back("data_batch_" + std::to_string(k) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  // Every file is looked for before any is read, so a missing one is reported at once.
  std::vector<std::string> paths;
  for (const std::string& name : names) paths.push_back(dataset_file(folder, name, kLayout));
  std::vector<torch::Tensor> pixels, labels;
  for (const std::string& path : paths) {
    ByteBatch batch = read_byte_batch(path);
    pixels.push_back(std::move(batch.pixels));
    labels.push_back(std::move(batch.labels));
  }
  const std::string part = split == OfficialSplit::Train ? "train" : "test";
  return labelled_images_from_bytes(torch::cat(pixels), torch::cat(labels), kClasses,
                                    "cifar10 " + part + " (" + folder + ")");
}

}  // namespace clx
