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
// component without .csv/.gz). Formats: idx (a folder of MNIST-format
// train/t10k files), digits (scikit-learn's digits.csv.gz, split per class by
// data.test_fraction), image_folder (one sub-folder per class, as
// data.format=image_folder reads it).
#include <string>
#include <vector>

#include "runtime/data/image_source.h"
#include "runtime/data/task_stream.h"

namespace clx {

struct DatasetEntry {
  std::string format;  // idx | digits | image_folder
  std::string path;
  std::string name;  // for task names and logs
};

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
