#pragma once
// Image folders: one sub-folder per class (Caltech-101's 101_ObjectCategories,
// notMNIST, face sets), decoded with OpenCV on demand.
//
//   root/accordion/image_0001.jpg     class names = sorted sub-folder names
//   root/airplanes/image_0001.jpg     (minus data.exclude_classes); files =
//   ...                               the regular files directly in each class folder
//
// Hidden entries (names starting with '.') and plain files directly under the
// root are ignored. Every file is checked when the folder is scanned (its
// header must name an image format OpenCV reads, and a reduced-size decode
// must succeed), so a bad file stops the run before training, not at step
// 5000; under data.bad_images=skip it is left out with a warning instead.
//
// Images are decoded (colour converted to data.channels), resized to a square
// of data.image_size pixels (INTER_AREA when no side grows, else
// INTER_LINEAR), optionally cached as uint8, and augmented per sample
// (augment.h) on a pool of data.workers threads. Batches stay in host memory:
// pinned when the stream is placed for a CUDA device, so the trainer's copy to
// the device can be asynchronous.
//
// The declarations below need no OpenCV; the implementation is compiled only
// when CMake finds it (CLX_HAVE_OPENCV), and load_image_folder then throws.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/data/image_source.h"

namespace clx {

class WorkerPool;

struct ImageFolderOptions {
  int64_t image_size = 64;               // data.image_size: side of the square images
  int64_t channels = 3;                  // data.channels: 1 (grey) or 3 (RGB)
  std::string augment = "none";          // data.augment: none | flip_crop
  int64_t crop_padding = 4;              // data.crop_padding: zero padding of flip_crop's random crop
  int64_t workers = 0;                   // data.workers: decoding threads (0: the calling thread)
  bool cache = false;                    // data.cache: keep decoded uint8 images in memory
  std::string bad_images = "error";      // data.bad_images: error | skip
  double test_fraction = 0.3;            // data.test_fraction: per class, the rest is training data
  std::vector<std::string> exclude_classes;  // data.exclude_classes: folder names left out
};

// Throws clx::Error naming the option when a value is impossible (reads no files).
void validate_image_folder_options(const ImageFolderOptions& options);
// Whether this build can read image folders (OpenCV was found).
bool image_folders_supported();

struct ImageFolderScan {
  std::string root;
  std::vector<std::string> class_names;  // sorted
  std::vector<std::string> files;        // grouped by class in class order, sorted by name within a class
  std::vector<int64_t> labels;           // class index of each file
  std::vector<std::string> skipped;      // "path: reason" of each file left out (data.bad_images=skip)
};

// Lists and checks the tree (checks run on `pool`). Throws clx::Error naming
// the folder or file: a root that does not exist or has no class folders, an
// excluded name that is no class folder, a class folder without files, and
// (data.bad_images=error) a file that is not a readable image.
ImageFolderScan scan_image_folder(const std::string& root, const ImageFolderOptions& options, WorkerPool& pool);

// Indices into scan.files. Each class is split on its own: its files in a
// seeded order (seed and class name), the first round(test_fraction * n)
// (at least 1, at most n - 1) to test, the rest to training; both lists
// keep the scan's order (by class, then file name).
struct ImageFolderSplit {
  std::vector<int64_t> train, test;
};
ImageFolderSplit split_per_class(const ImageFolderScan& scan, double test_fraction, uint64_t seed);

class ImageFolderSource : public ImageSource {
 public:
  // `files`[i] has label labels[i]. The pool is shared by the train and test sources of one tree.
  ImageFolderSource(std::vector<std::string> files, const std::vector<int64_t>& file_labels, int64_t classes,
                    std::vector<std::string> names, std::string description_text, const ImageFolderOptions& options,
                    std::shared_ptr<WorkerPool> pool);

  std::vector<int64_t> image_shape() const override;
  // Decodes (or reads from the cache) and augments the images of `rows` on
  // the worker pool. Throws clx::Error naming the file when one cannot be decoded.
  torch::Tensor gather(const torch::Tensor& rows, uint64_t augment_seed) const override;
  torch::Device storage_device() const override { return torch::kCPU; }
  // The same images (sharing cache and workers); batches pinned when `compute_device` is CUDA.
  std::shared_ptr<const ImageSource> placed_for(torch::Device compute_device) const override;

  const std::string& file(int64_t row) const;
  bool pins_memory() const { return pin_memory_; }

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
  bool pin_memory_ = false;
};

// Scans `root`, splits it per class and returns the train and test sources.
// Under data.bad_images=skip, `warnings` says how many files were left out of
// how many, then names the first 10 with the reason. `dataset` names the data
// in descriptions.
struct ImageFolderData {
  std::shared_ptr<const ImageSource> train, test;
  std::vector<std::string> warnings;
};
ImageFolderData load_image_folder(const std::string& root, const std::string& dataset,
                                  const ImageFolderOptions& options, uint64_t seed);

}  // namespace clx
