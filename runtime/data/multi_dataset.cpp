#include "runtime/data/multi_dataset.h"

#include <filesystem>

#include "runtime/data/augment.h"
#include "runtime/data/digits.h"
#include "runtime/data/idx.h"
#include "runtime/data/image_folder.h"
#include "runtime/data/sampler.h"
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

struct LoadedDataset {
  std::shared_ptr<const ImageSource> train, test;
  std::vector<std::string> warnings;
};

LoadedDataset load_entry(const DatasetEntry& entry, const StreamConfig& config) {
  const int64_t channels = config.folder.channels, side = config.folder.image_size;
  LoadedDataset loaded;
  if (!std::filesystem::exists(entry.path))
    throw Error("data.datasets: " + entry.path + " does not exist" +
                (entry.format == "digits" ? std::string(" (scikit-learn's digits: apt-get install python3-sklearn)") : ""));
  if (entry.format == "image_folder") {
    ImageFolderData data = load_image_folder(entry.path, entry.name, config.folder, config.seed);
    loaded.train = data.train;
    loaded.test = data.test;
    loaded.warnings = std::move(data.warnings);
    return loaded;
  }
  std::shared_ptr<const LabelledImages> train, test;
  if (entry.format == "idx") {
    train = std::make_shared<LabelledImages>(load_mnist_split(entry.path, "train"));
    test = std::make_shared<LabelledImages>(load_mnist_split(entry.path, "t10k"));
  } else {
    LabelledSplit split = split_labelled_per_class(load_sklearn_digits(entry.path), config.folder.test_fraction,
                                                   mix_seed({config.seed, 0xd1617}));
    train = std::make_shared<LabelledImages>(std::move(split.train));
    test = std::make_shared<LabelledImages>(std::move(split.test));
  }
  loaded.train = conform_images(train, channels, side);
  loaded.test = conform_images(test, channels, side);
  return loaded;
}

}  // namespace

std::vector<DatasetEntry> parse_dataset_list(const std::string& text) {
  std::vector<DatasetEntry> entries;
  for (const std::string& item : parse_name_list(text)) {
    const size_t colon = item.find(':');
    DatasetEntry entry;
    if (colon != std::string::npos) {
      entry.format = trimmed(item.substr(0, colon));
      entry.path = trimmed(item.substr(colon + 1));
    }
    if (entry.format != "idx" && entry.format != "digits" && entry.format != "image_folder")
      throw Error("data.datasets: '" + item + "' is not FORMAT:PATH with FORMAT one of idx, digits, image_folder");
    if (entry.path.empty()) throw Error("data.datasets: '" + item + "' names no path");
    entry.name = name_from_path(entry.path);
    entries.push_back(entry);
  }
  if (entries.empty())
    throw Error("data.datasets: data.stream=multi_dataset needs a list of FORMAT:PATH entries, one per task");
  return entries;
}

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
  for (const DatasetEntry& entry : entries) has_folder = has_folder || entry.format == "image_folder";
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
