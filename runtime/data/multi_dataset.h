#pragma once
// Multi-dataset streams (DESIGN section 7): one whole dataset per task, every
// dataset resized to one common shape and channel count (data.image_size,
// data.channels), one head per task over that dataset's classes (or, with a
// single head, the datasets' classes one after the other).
//
//   data.stream   = multi_dataset
//   data.datasets = idx:/usr/share/datasets/fashion-mnist, digits:/usr/lib/.../digits.csv.gz
//
// Each entry is FORMAT:PATH; the task is named after the path (its last
// component without .csv/.gz). Formats (docs/usage.md, Multi-dataset streams):
//   idx           a folder of MNIST-format train/t10k files (idx.h)
//   digits        scikit-learn's digits.csv.gz, split per class by data.test_fraction (digits.h)
//   image_folder  one sub-folder per class, as data.format=image_folder reads it (image_folder.h)
//   svhn          a folder holding train_32x32.mat and test_32x32.mat (svhn.h)
//   stl10         a folder holding train_X.bin, train_y.bin, test_X.bin, test_y.bin (stl10.h)
//   cifar10       a folder holding data_batch_1.bin .. data_batch_5.bin, test_batch.bin (cifar10.h)
// The in-memory formats (all but image_folder) are conformed to the common
// shape as they are read, each split on its own, so a large dataset is held
// at its own size only one split at a time.
#include <string>
#include <vector>

#include "runtime/data/image_source.h"
#include "runtime/data/task_stream.h"

namespace clx {

enum class DatasetFormat { Idx, Digits, ImageFolder, Svhn, Stl10, Cifar10 };

struct DatasetEntry {
  DatasetFormat format = DatasetFormat::Idx;
  std::string path;
  std::string name;  // for task names and logs
};

// The name data.datasets writes the format with ("idx", "svhn", ...).
std::string to_string(DatasetFormat format);

// Parses data.datasets; throws clx::Error naming the option and the entry.
std::vector<DatasetEntry> parse_dataset_list(const std::string& text);

// `data` with every image resized to side x side (area averaging when
// shrinking, bilinear when growing) and converted to `channels` (grey to RGB
// by repetition, RGB to grey by ITU-R 601 luma). The same object when nothing changes.
std::shared_ptr<const LabelledImages> conform_images(std::shared_ptr<const LabelledImages> data, int64_t channels,
                                                     int64_t side);

// The checks of a multi-dataset configuration that need no data.
void validate_multi_dataset_options(const StreamConfig& config);
// Loads every dataset of config.datasets, conformed to the common shape, and builds the stream.
TaskStream load_multi_dataset_stream(const StreamConfig& config);

}  // namespace clx
