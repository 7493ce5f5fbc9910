#include "runtime/data/multi_dataset.h"

#include <algorithm>
#include <filesystem>

#include "runtime/data/augment.h"
#include "runtime/data/byte_images.h"
#include "runtime/data/cifar10.h"
#include "runtime/data/digits.h"
#include "runtime/data/idx.h"
#include "runtime/data/image_folder.h"
#include "runtime/data/sampler.h"
#include "runtime/data/stl10.h"
#include "runtime/data/svhn.h"
#include "runtime/error.h"
#include "runtime/text.h"

namespace clx {
namespace {

std::string trimmed(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// "digits.csv.gz" -> "digits"; "/usr/share/datasets/fashion-mnist/" -> "fashion-mnist".
std::string name_from_path(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.has_filename()) p = p.parent_path();
  std::string name = p.filename().string();
  for (const std::string suffix : {".gz", ".csv"})
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      name.erase(name.size() - suffix.size());
  return name;
}

// Every format data.datasets accepts: its name and, for a PATH that does not
// exist, where the data comes from.
struct FormatInfo {
  DatasetFormat format;
  const char* name;
  const char* source;
};
constexpr FormatInfo kFormats[] = {
    {DatasetFormat::Idx, "idx", ""},
    {DatasetFormat::Digits, "digits", " (scikit-learn's digits: apt-get install python3-sklearn)"},
    {DatasetFormat::ImageFolder, "image_folder", ""},
    {DatasetFormat::Svhn, "svhn", " (SVHN: docs/usage.md, The five-dataset sequence, says where to get it)"},
    {DatasetFormat::Stl10, "stl10", " (STL-10: docs/usage.md, The five-dataset sequence, says where to get it)"},
    {DatasetFormat::Cifar10, "cifar10", " (CIFAR-10: docs/usage.md, The five-dataset sequence, says where to get it)"},
};

const FormatInfo& format_info(DatasetFormat format) {
  for (const FormatInfo& info : kFormats)
    if (info.format == format) return info;
  throw Error("internal error: dataset format " + std::to_string(static_cast<int>(format)) + " has no name");
}

std::string format_names() {
  std::string names;
  for (const FormatInfo& info : kFormats) names += std::string(names.empty() ? "" : ", ") + info.name;
  return names;
}

struct LoadedDataset {
  std::shared_ptr<const ImageSource> train, test;
  std::vector<std::string> warnings;
};

// One official split of a format that ships its own train and test files.
LabelledImages read_official_split(const DatasetEntry& entry, OfficialSplit split) {
  switch (entry.format) {
    case DatasetFormat::Idx: return load_mnist_split(entry.path, split == OfficialSplit::Train ? "train" : "t10k");
    case DatasetFormat::Svhn: return load_svhn_split(entry.path, split);
    case DatasetFormat::Stl10: return load_stl10_split(entry.path, split);
    case DatasetFormat::Cifar10: return load_cifar10_split(entry.path, split);
    case DatasetFormat::Digits:
    case DatasetFormat::ImageFolder: break;
  }
  throw Error("internal error: data.datasets format " + to_string(entry.format) + " has no official split");
}

LoadedDataset load_entry(const DatasetEntry& entry, const StreamConfig& config) {
  const int64_t channels = config.folder.channels, side = config.folder.image_size;
  LoadedDataset loaded;
  if (!std::filesystem::exists(entry.path))
    throw Error("data.datasets: " + entry.path + " does not exist" + format_info(entry.format).source);
  if (entry.format == DatasetFormat::ImageFolder) {
    ImageFolderData data = load_image_folder(entry.path, entry.name, config.folder, config.seed);
    loaded.train = data.train;
    loaded.test = data.test;
    loaded.warnings = std::move(data.warnings);
    return loaded;
  }
  if (entry.format == DatasetFormat::Digits) {
    LabelledSplit split = split_labelled_per_class(load_sklearn_digits(entry.path), config.folder.test_fraction,
                                                   mix_seed({config.seed, 0xd1617}));
    loaded.train = conform_images(std::make_shared<LabelledImages>(std::move(split.train)), channels, side);
    loaded.test = conform_images(std::make_shared<LabelledImages>(std::move(split.test)), channels, side);
    return loaded;
  }
  // Training split conformed before the test split is read: STL-10's test
  // images alone are 885 MB as float32 at 96x96, 98 MB at 32x32.
  loaded.train = conform_images(std::make_shared<LabelledImages>(read_official_split(entry, OfficialSplit::Train)),
                                channels, side);
  loaded.test = conform_images(std::make_shared<LabelledImages>(read_official_split(entry, OfficialSplit::Test)),
                               channels, side);
  return loaded;
}

}  // namespace

std::vector<DatasetEntry> parse_dataset_list(const std::string& text) {
  std::vector<DatasetEntry> entries;
  for (const std::string& item : parse_name_list(text)) {
    const size_t colon = item.find(':');
    const std::string format_name = colon == std::string::npos ? "" : trimmed(item.substr(0, colon));
    const auto known = std::find_if(std::begin(kFormats), std::end(kFormats),
                                    [&](const FormatInfo& info) { return format_name == info.name; });
    if (known == std::end(kFormats))
      throw Error("data.datasets: '" + item + "' is not FORMAT:PATH with FORMAT one of " + format_names());
    DatasetEntry entry;
    entry.format = known->format;
    entry.path = trimmed(item.substr(colon + 1));
    if (entry.path.empty()) throw Error("data.datasets: '" + item + "' names no path");
    entry.name = name_from_path(entry.path);
    entries.push_back(entry);
  }
  if (entries.empty())
    throw Error("data.datasets: data.stream=multi_dataset needs a list of FORMAT:PATH entries, one per task");
  return entries;
}

std::string to_string(DatasetFormat format) { return format_info(format).name; }

std::shared_ptr<const LabelledImages> conform_images(std::shared_ptr<const LabelledImages> data, int64_t channels,
                                                     int64_t side) {
  torch::Tensor images = data->images;
  const int64_t have = images.size(1);
  if (have == channels && images.size(2) == side && images.size(3) == side) return data;
  namespace F = torch::nn::functional;
  if (images.size(2) != side || images.size(3) != side) {
    const bool shrinking = images.size(2) >= side && images.size(3) >= side;
    auto options = F::InterpolateFuncOptions().size(std::vector<int64_t>{side, side});
    options = shrinking ? options.mode(torch::kArea) : options.mode(torch::kBilinear).align_corners(false);
    images = F::interpolate(images, options).clamp_(0.0, 1.0);
  }
  if (have != channels) {
    if (have == 1 && channels == 3) {
      images = images.expand({-1, 3, -1, -1}).contiguous();
    } else if (have == 3 && channels == 1) {
      const torch::Tensor luma = torch::tensor({0.299f, 0.587f, 0.114f}).view({1, 3, 1, 1});
      images = (images * luma).sum(1, /*keepdim=*/true);
    } else {
      throw Error(data->description + ": cannot convert " + std::to_string(have) + " channels to " +
                  std::to_string(channels));
    }
  }
  auto conformed = std::make_shared<LabelledImages>(*data);
  conformed->images = images;
  conformed->description = data->description + ", resized to " + std::to_string(channels) + "x" + std::to_string(side) +
                           "x" + std::to_string(side);
  return conformed;
}

void validate_multi_dataset_options(const StreamConfig& config) {
  const std::vector<DatasetEntry> entries = parse_dataset_list(config.datasets);
  if (static_cast<int64_t>(entries.size()) != config.num_tasks)
    throw Error("data.tasks: " + std::to_string(config.num_tasks) + ", but data.datasets lists " +
                std::to_string(entries.size()) + " datasets (one task per dataset)");
  bool has_folder = false;
  for (const DatasetEntry& entry : entries) has_folder = has_folder || entry.format == DatasetFormat::ImageFolder;
  if (has_folder && !image_folders_supported())
    throw Error(
        "data.datasets: image_folder entries need OpenCV, which this build lacks (install libopencv-dev, "
        "e.g. with scripts/setup.sh, and rebuild)");
  validate_image_folder_options(config.folder);  // image size, channels, test fraction: the common shape
  if (parse_augment(config.folder.augment) != Augment::None && !has_folder)
    throw Error("data.augment: " + config.folder.augment +
                " applies to image_folder datasets only, and data.datasets "
                "lists none");
}

TaskStream load_multi_dataset_stream(const StreamConfig& config) {
  validate_multi_dataset_options(config);
  const std::vector<DatasetEntry> entries = parse_dataset_list(config.datasets);
  std::vector<NamedSources> datasets;
  std::vector<std::string> warnings;
  for (const DatasetEntry& entry : entries) {
    LoadedDataset loaded = load_entry(entry, config);
    datasets.push_back({entry.name, loaded.train, loaded.test});
    for (std::string& warning : loaded.warnings) warnings.push_back(std::move(warning));
  }
  TaskStream stream = build_multi_dataset_stream(config, datasets);
  stream.warnings = std::move(warnings);
  return stream;
}

}  // namespace clx
