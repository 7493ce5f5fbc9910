#include "runtime/data/image_folder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "runtime/data/augment.h"
#include "runtime/data/sampler.h"
#include "runtime/data/worker_pool.h"
#include "runtime/error.h"
#include "runtime/fingerprint.h"

#ifdef CLX_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace clx {

namespace fs = std::filesystem;

bool image_folders_supported() {
#ifdef CLX_HAVE_OPENCV
  return true;
#else
  return false;
#endif
}

void validate_image_folder_options(const ImageFolderOptions& options) {
  if (options.image_size < 8 || options.image_size > 4096)
    throw Error("data.image_size: must be in [8, 4096] pixels, got " + std::to_string(options.image_size));
  if (options.channels != 1 && options.channels != 3)
    throw Error("data.channels: must be 1 (grey) or 3 (RGB), got " + std::to_string(options.channels));
  parse_augment(options.augment);
  if (options.crop_padding < 0 || options.crop_padding > options.image_size / 2)
    throw Error("data.crop_padding: must be in [0, data.image_size / 2 = " + std::to_string(options.image_size / 2) +
                "], got " + std::to_string(options.crop_padding));
  if (options.workers < 0 || options.workers > 256)
    throw Error("data.workers: must be in [0, 256] (0: decode on the training thread), got " +
                std::to_string(options.workers));
  if (options.bad_images != "error" && options.bad_images != "skip")
    throw Error("data.bad_images: '" + options.bad_images + "' is not one of error, skip");
  if (!(options.test_fraction > 0.0 && options.test_fraction < 1.0))
    throw Error("data.test_fraction: must be in (0, 1), got " + std::to_string(options.test_fraction));
}

ImageFolderSplit split_per_class(const ImageFolderScan& scan, double test_fraction, uint64_t seed) {
  ImageFolderSplit split;
  std::vector<std::vector<int64_t>> members(scan.class_names.size());
  for (size_t i = 0; i < scan.files.size(); ++i) members[scan.labels[i]].push_back(static_cast<int64_t>(i));
  std::vector<bool> in_test(scan.files.size(), false);
  for (size_t c = 0; c < members.size(); ++c) {
    const int64_t n = static_cast<int64_t>(members[c].size());
    if (n < 2)
      throw Error("data.root: class folder " + (fs::path(scan.root) / scan.class_names[c]).string() + " has " +
                  std::to_string(n) + " image, a train/test split needs at least 2");
    const int64_t tests = std::clamp<int64_t>(std::llround(test_fraction * static_cast<double>(n)), 1, n - 1);
    // Seeded by the class's name, so excluding another class leaves this split unchanged.
    const uint64_t class_seed = mix_seed({seed, 0x5b117e57, Fingerprint().add(scan.class_names[c]).value()});
    const torch::Tensor order = seeded_permutation(n, class_seed);
    const int64_t* position = order.data_ptr<int64_t>();
    for (int64_t k = 0; k < tests; ++k) in_test[members[c][position[k]]] = true;
  }
  for (size_t i = 0; i < scan.files.size(); ++i) (in_test[i] ? split.test : split.train).push_back(static_cast<int64_t>(i));
  return split;
}

#ifdef CLX_HAVE_OPENCV

namespace {

bool hidden(const fs::path& path) { return path.filename().string().rfind('.', 0) == 0; }

std::vector<fs::path> sorted_entries(const fs::path& folder, bool want_directories) {
  std::vector<fs::path> entries;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    if (hidden(entry.path())) continue;
    const bool is_directory = entry.is_directory(error);
    if (want_directories ? is_directory : entry.is_regular_file(error)) entries.push_back(entry.path());
  }
  if (error) throw Error("data.root: cannot list " + folder.string() + " (" + error.message() + ")");
  std::sort(entries.begin(), entries.end());
  return entries;
}

// Whether OpenCV decodes `path` with `flags` (an OpenCV exception counts as no).
bool decodes(const std::string& path, int flags) {
  try {
    return !cv::imread(path, flags).empty();
  } catch (const cv::Exception&) {
    return false;
  }
}

// Why `path` is no usable image, or "" when it is. A reduced-size decode
// (1/8 per side, which libjpeg does without decoding full resolution) is
// cheap and still walks the whole compressed stream; images under 8 pixels,
// which it cannot shrink, are decoded in full.
std::string image_problem(const std::string& path) {
  try {
    if (!cv::haveImageReader(path)) return "not an image file (no decoder recognises its header)";
  } catch (const cv::Exception& error) {
    return std::string("not an image file (") + error.what() + ")";
  }
  if (decodes(path, cv::IMREAD_REDUCED_GRAYSCALE_8) || decodes(path, cv::IMREAD_GRAYSCALE)) return "";
  return "corrupt image (cannot be decoded)";
}

std::vector<fs::path> class_folders(const fs::path& root, const std::vector<std::string>& exclude) {
  std::vector<fs::path> folders = sorted_entries(root, true);
  for (const std::string& name : exclude) {
    const auto found = std::find_if(folders.begin(), folders.end(), [&](const fs::path& p) { return p.filename() == name; });
    if (found == folders.end())
      throw Error("data.exclude_classes: " + root.string() + " has no class folder named '" + name + "'");
    folders.erase(found);
  }
  if (folders.empty())
    throw Error("data.root: " + root.string() + " has no class sub-folders (expected one folder of images per class)");
  return folders;
}

// Leaves out (skip) or reports (error) the files that are no readable image.
void check_files(ImageFolderScan& scan, const std::string& bad_images, WorkerPool& pool) {
  std::vector<std::string> problems(scan.files.size());
  pool.run(static_cast<int64_t>(scan.files.size()), [&](int64_t i) { problems[i] = image_problem(scan.files[i]); });
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  for (size_t i = 0; i < scan.files.size(); ++i) {
    if (problems[i].empty()) {
      files.push_back(scan.files[i]);
      labels.push_back(scan.labels[i]);
    } else {
      scan.skipped.push_back(scan.files[i] + ": " + problems[i]);
    }
  }
  if (!scan.skipped.empty() && bad_images == "error")
    throw Error("data.root: " + scan.skipped.front() +
                (scan.skipped.size() > 1 ? " (and " + std::to_string(scan.skipped.size() - 1) + " more bad files)" : "") +
                "; remove it, or set data.bad_images=skip to leave bad files out with a warning");
  scan.files = std::move(files);
  scan.labels = std::move(labels);
}

}  // namespace

ImageFolderScan scan_image_folder(const std::string& root, const ImageFolderOptions& options, WorkerPool& pool) {
  std::error_code error;
  if (!fs::exists(root, error)) throw Error("data.root: " + root + " does not exist");
  if (!fs::is_directory(root, error))
    throw Error("data.root: " + root + " is not a folder (data.format=image_folder expects one sub-folder per class)");
  ImageFolderScan scan;
  scan.root = root;
  for (const fs::path& folder : class_folders(root, options.exclude_classes)) {
    const std::vector<fs::path> files = sorted_entries(folder, false);
    if (files.empty()) throw Error("data.root: class folder " + folder.string() + " is empty (no image files)");
    for (const fs::path& file : files) {
      scan.files.push_back(file.string());
      scan.labels.push_back(static_cast<int64_t>(scan.class_names.size()));
    }
    scan.class_names.push_back(folder.filename().string());
  }
  check_files(scan, options.bad_images, pool);
  std::vector<int64_t> counts(scan.class_names.size(), 0);
  for (int64_t label : scan.labels) ++counts[label];
  for (size_t c = 0; c < counts.size(); ++c)
    if (counts[c] == 0)
      throw Error("data.root: class folder " + (fs::path(root) / scan.class_names[c]).string() +
                  " has no readable image (every file was left out as bad)");
  return scan;
}

struct ImageFolderSource::Shared {
  std::vector<std::string> files;
  int64_t side = 0, channels = 0, padding = 0;
  Augment augment = Augment::None;
  std::shared_ptr<WorkerPool> pool;
  // Decoded, resized images [N][side][side][channels] when data.cache is on;
  // a row's flag is set (release) after its bytes are written.
  std::unique_ptr<uint8_t[]> cache;
  std::unique_ptr<std::atomic<bool>[]> cached;

  int64_t image_bytes() const { return side * side * channels; }

  // The image of `row`, colour-converted and resized, as interleaved uint8 [side][side][channels].
  cv::Mat decode(int64_t row) const {
    const std::string& path = files[row];
    cv::Mat image;
    try {
      image = cv::imread(path, channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
      if (image.empty()) throw Error(path + ": cannot be decoded (was it changed since the folder was scanned?)");
      if (channels == 3) cv::cvtColor(image, image, cv::COLOR_BGR2RGB);
      if (image.cols != side || image.rows != side) {
        const bool grows = image.cols < side || image.rows < side;
        cv::Mat resized;
        cv::resize(image, resized, cv::Size(static_cast<int>(side), static_cast<int>(side)), 0, 0,
                   grows ? cv::INTER_LINEAR : cv::INTER_AREA);
        image = resized;
      }
    } catch (const cv::Exception& error) {
      throw Error(path + ": cannot be decoded (" + error.what() + ")");
    }
    return image.isContinuous() ? image : image.clone();
  }

  // Writes the (augmented) image of `row` to out[channels][side][side].
  void load(int64_t row, uint64_t augment_seed, float* out) const {
    cv::Mat decoded;
    const uint8_t* pixels = nullptr;
    if (cache && cached[row].load(std::memory_order_acquire)) {
      pixels = cache.get() + row * image_bytes();
    } else {
      decoded = decode(row);
      pixels = decoded.data;
      if (cache) {
        std::memcpy(cache.get() + row * image_bytes(), pixels, static_cast<size_t>(image_bytes()));
        cached[row].store(true, std::memory_order_release);
      }
    }
    FlipCrop transform;
    const bool augmented = augment == Augment::FlipCrop && augment_seed != 0;
    if (augmented) transform = draw_flip_crop(augment_seed, row, padding);
    to_planar_float(pixels, side, side, channels, augmented ? &transform : nullptr, padding, out);
  }
};

ImageFolderSource::ImageFolderSource(std::vector<std::string> files, const std::vector<int64_t>& file_labels,
                                     int64_t classes, std::vector<std::string> names, std::string description_text,
                                     const ImageFolderOptions& options, std::shared_ptr<WorkerPool> pool)
    : shared_(std::make_shared<Shared>()) {
  if (files.size() != file_labels.size()) throw Error("image folder: " + std::to_string(files.size()) + " files but " +
                                                      std::to_string(file_labels.size()) + " labels");
  validate_image_folder_options(options);
  labels = torch::tensor(file_labels, torch::kInt64);
  num_classes = classes;
  class_names = std::move(names);
  description = std::move(description_text);
  shared_->files = std::move(files);
  shared_->side = options.image_size;
  shared_->channels = options.channels;
  shared_->padding = options.crop_padding;
  shared_->augment = parse_augment(options.augment);
  shared_->pool = std::move(pool);
  if (options.cache) {
    const size_t count = shared_->files.size();
    // Uninitialised: pages are committed only as images are cached.
    shared_->cache.reset(new uint8_t[count * static_cast<size_t>(shared_->image_bytes())]);
    shared_->cached.reset(new std::atomic<bool>[count]);
    for (size_t i = 0; i < count; ++i) shared_->cached[i].store(false);
  }
}

std::vector<int64_t> ImageFolderSource::image_shape() const {
  return {shared_->channels, shared_->side, shared_->side};
}

const std::string& ImageFolderSource::file(int64_t row) const { return shared_->files.at(static_cast<size_t>(row)); }

torch::Tensor ImageFolderSource::gather(const torch::Tensor& rows, uint64_t augment_seed) const {
  const torch::Tensor wanted = rows.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n = wanted.numel();
  const int64_t count = static_cast<int64_t>(shared_->files.size());
  if (n > 0 && (wanted.min().item<int64_t>() < 0 || wanted.max().item<int64_t>() >= count))
    throw Error(description + ": row index outside 0.." + std::to_string(count - 1));
  auto options = torch::TensorOptions().dtype(torch::kFloat32);
  // Pinned (page-locked) host memory lets the copy to the GPU run asynchronously; it needs CUDA.
  if (pin_memory_) options = options.pinned_memory(true);
  torch::Tensor batch = torch::empty({n, shared_->channels, shared_->side, shared_->side}, options);
  const int64_t* row = wanted.data_ptr<int64_t>();
  float* out = batch.data_ptr<float>();
  const int64_t stride = shared_->image_bytes();
  const Shared& shared = *shared_;
  shared.pool->run(n, [&](int64_t i) { shared.load(row[i], augment_seed, out + i * stride); });
  return batch;
}

std::shared_ptr<const ImageSource> ImageFolderSource::placed_for(torch::Device compute_device) const {
  auto placed = std::make_shared<ImageFolderSource>(*this);
  placed->pin_memory_ = compute_device.is_cuda();
  return placed;
}

namespace {

// Identifies the exact file list and labels, so ranks that read different trees disagree in the stream summary.
std::string file_list_fingerprint(const ImageFolderScan& scan, const std::vector<int64_t>& indices) {
  Fingerprint fingerprint;
  for (int64_t i : indices)
    fingerprint.add(fs::path(scan.files[i]).lexically_relative(scan.root).string()).add(scan.labels[i]);
  return fingerprint.hex();
}

std::shared_ptr<const ImageSource> make_source(const ImageFolderScan& scan, const std::vector<int64_t>& indices,
                                               const std::string& name, const ImageFolderOptions& options,
                                               std::shared_ptr<WorkerPool> pool) {
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  for (int64_t i : indices) {
    files.push_back(scan.files[i]);
    labels.push_back(scan.labels[i]);
  }
  std::ostringstream description;
  description << name << ": " << files.size() << " images of " << scan.class_names.size() << " classes in "
              << scan.root << ", " << options.image_size << " px, " << options.channels << " channel(s) (files "
              << file_list_fingerprint(scan, indices) << ")";
  return std::make_shared<ImageFolderSource>(std::move(files), labels, static_cast<int64_t>(scan.class_names.size()),
                                             scan.class_names, description.str(), options, std::move(pool));
}

}  // namespace

ImageFolderData load_image_folder(const std::string& root, const std::string& dataset,
                                  const ImageFolderOptions& options, uint64_t seed) {
  validate_image_folder_options(options);
  // The pool does the decoding; OpenCV's own threads would only compete with it.
  cv::setNumThreads(0);
  // A file that cannot be read is reported once, by name, as a clx::Error; OpenCV's warnings would repeat it.
  cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_ERROR);
  auto pool = std::make_shared<WorkerPool>(static_cast<int>(options.workers));
  const ImageFolderScan scan = scan_image_folder(root, options, *pool);
  const ImageFolderSplit split = split_per_class(scan, options.test_fraction, seed);
  ImageFolderData data;
  data.train = make_source(scan, split.train, dataset + " train", options, pool);
  data.test = make_source(scan, split.test, dataset + " test", options, pool);
  // The count first: a data set with a few known bad files (notMNIST) is
  // checked at a glance, and a count far above that stands out.
  if (!scan.skipped.empty())
    data.warnings.push_back("data.bad_images=skip: left out " + std::to_string(scan.skipped.size()) + " of " +
                            std::to_string(scan.skipped.size() + scan.files.size()) + " files in " + root +
                            " (no readable image)");
  constexpr size_t kListed = 10;
  for (size_t i = 0; i < scan.skipped.size() && i < kListed; ++i)
    data.warnings.push_back("data.bad_images=skip: left out " + scan.skipped[i]);
  if (scan.skipped.size() > kListed)
    data.warnings.push_back("data.bad_images=skip: left out " + std::to_string(scan.skipped.size() - kListed) +
                            " more bad files");
  return data;
}

#else  // no OpenCV in this build

namespace {
[[noreturn]] void no_opencv() {
  throw Error("data.format=image_folder: this build has no OpenCV (install libopencv-dev, e.g. with "
              "scripts/setup.sh, and rebuild)");
}
}  // namespace

ImageFolderScan scan_image_folder(const std::string&, const ImageFolderOptions&, WorkerPool&) { no_opencv(); }
ImageFolderData load_image_folder(const std::string&, const std::string&, const ImageFolderOptions&, uint64_t) {
  no_opencv();
}

#endif

}  // namespace clx
