#include "runtime/data/format_writers.h"

#include <matio.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "runtime/data/sampler.h"
#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/text.h"

#ifdef CLX_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

namespace clx {

namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// `bytes` as one gzip member (zlib's deflate with the gzip wrapper, level 9).
std::string gzip_bytes(const std::string& path, const std::string& bytes) {
  z_stream stream{};
  if (deflateInit2(&stream, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error(path + ": cannot start gzip compression");
  std::string out(deflateBound(&stream, static_cast<uLong>(bytes.size())), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  if (status != Z_STREAM_END) throw Error(path + ": gzip compression failed");
  return out;
}

// uint8 [N, C, H, W] with the format's channel count and size, and labels [N] in 0..9.
void check_images_and_labels(const std::string& path, const std::string& format, const torch::Tensor& images,
                             const torch::Tensor& labels, const std::vector<int64_t>& image_shape) {
  const bool shaped = images.defined() && images.dim() == 4 && images.scalar_type() == torch::kUInt8 &&
                      images.sizes().slice(1).vec() == image_shape;
  if (!shaped)
    throw Error(path + ": " + format + " holds uint8 images n x " + sizes_text(image_shape) + ", got " +
                (images.defined() ? std::string(c10::toString(images.scalar_type())) + " " + sizes_text(images.sizes().vec())
                                  : std::string("none")));
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != images.size(0))
    throw Error(path + ": " + format + " needs one label per image (" + std::to_string(images.size(0)) + ")");
  if (labels.numel() > 0 && (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() > 9))
    throw Error(path + ": " + format + " labels must be 0..9");
}

void make_folder(const std::filesystem::path& folder) {
  if (folder.empty()) return;
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) throw FileError("cannot create " + folder.string() + ": " + error.message());
}

void make_parent_folder(const std::string& path) { make_folder(std::filesystem::path(path).parent_path()); }

// The bytes of a contiguous uint8 tensor.
std::string tensor_bytes(const torch::Tensor& values) {
  const torch::Tensor flat = values.to(torch::kCPU).contiguous();
  return std::string(reinterpret_cast<const char*>(flat.data_ptr<uint8_t>()), static_cast<size_t>(flat.numel()));
}

}  // namespace

void write_idx_file(const std::string& path, const torch::Tensor& values) {
  if (!values.defined() || values.scalar_type() != torch::kUInt8 || values.dim() < 1 || values.dim() > 255)
    throw Error(path + ": the IDX writer takes a uint8 tensor of 1 to 255 dimensions");
  std::string bytes = {'\0', '\0', '\x08', static_cast<char>(values.dim())};  // magic: unsigned byte data
  for (int64_t size : values.sizes())
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((size >> shift) & 0xff));  // big-endian
  bytes += tensor_bytes(values);
  make_parent_folder(path);
  write_file_atomically(path, ends_with(path, ".gz") ? gzip_bytes(path, bytes) : bytes);
}

void write_svhn_mat(const std::string& path, const torch::Tensor& images, const torch::Tensor& labels) {
  check_images_and_labels(path, "SVHN", images, labels, {3, 32, 32});
  const int64_t n = images.size(0);
  // MATLAB's X(row, column, channel, image) with the row fastest: [N, C, W, H] in C order.
  std::string x = tensor_bytes(images.permute({0, 1, 3, 2}));
  std::vector<double> y(static_cast<size_t>(n));
  const torch::Tensor cpu_labels = labels.to(torch::kCPU);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t digit = cpu_labels[i].item<int64_t>();
    y[static_cast<size_t>(i)] = digit == 0 ? 10.0 : static_cast<double>(digit);
  }
  make_parent_folder(path);
  // matio writes to a path of its own: a temporary, renamed over `path` once complete.
  const std::string temporary = temporary_path(path);
  mat_t* mat = Mat_CreateVer(temporary.c_str(), nullptr, MAT_FT_MAT5);
  if (mat == nullptr) throw FileError("cannot write " + path + ": matio cannot create the file");
  size_t x_dims[4] = {32, 32, 3, static_cast<size_t>(n)};
  size_t y_dims[2] = {static_cast<size_t>(n), 1};
  matvar_t* x_variable = Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, 4, x_dims, x.data(), 0);
  matvar_t* y_variable = Mat_VarCreate("y", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, y_dims, y.data(), 0);
  bool written = x_variable != nullptr && y_variable != nullptr &&
            Mat_VarWrite(mat, x_variable, MAT_COMPRESSION_ZLIB) == 0 &&  // as the real files are
            Mat_VarWrite(mat, y_variable, MAT_COMPRESSION_ZLIB) == 0;
  if (x_variable != nullptr) Mat_VarFree(x_variable);
  if (y_variable != nullptr) Mat_VarFree(y_variable);
  written = Mat_Close(mat) == 0 && written;
  std::error_code error;
  if (written) std::filesystem::rename(temporary, path, error);
  if (!written || error) {
    std::filesystem::remove(temporary, error);
    throw FileError("cannot write " + path + ": matio failed to write X and y");
  }
}

void write_stl10_split(const std::string& folder, const std::string& part, const torch::Tensor& images,
                       const torch::Tensor& labels) {
  const std::string x_path = (std::filesystem::path(folder) / (part + "_X.bin")).string();
  const std::string y_path = (std::filesystem::path(folder) / (part + "_y.bin")).string();
  check_images_and_labels(x_path, "STL-10", images, labels, {3, 96, 96});
  make_parent_folder(x_path);
  // Each channel column-major: [N, C, W, H] in C order.
  write_file_atomically(x_path, tensor_bytes(images.permute({0, 1, 3, 2})));
  write_file_atomically(y_path, tensor_bytes((labels.to(torch::kCPU) + 1).to(torch::kUInt8)));
}

void write_cifar10_batch(const std::string& path, const torch::Tensor& images, const torch::Tensor& labels) {
  check_images_and_labels(path, "CIFAR-10", images, labels, {3, 32, 32});
  const int64_t n = images.size(0);
  const torch::Tensor records =
      torch::cat({labels.to(torch::kCPU).to(torch::kUInt8).view({n, 1}), images.to(torch::kCPU).reshape({n, 3 * 32 * 32})}, 1);
  make_parent_folder(path);
  write_file_atomically(path, tensor_bytes(records));
}

#ifdef CLX_HAVE_OPENCV

int64_t write_png_class_folders(const std::string& root, const std::vector<std::string>& class_names,
                                const torch::Tensor& images, const torch::Tensor& labels, const std::string& prefix) {
  const bool shaped = images.defined() && images.dim() == 4 && images.scalar_type() == torch::kUInt8 &&
                      (images.size(1) == 1 || images.size(1) == 3);
  if (!shaped) throw Error(root + ": PNG class folders take uint8 images n x 1|3 x H x W");
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != images.size(0))
    throw Error(root + ": PNG class folders need one label per image");
  // H x W x C in C order, channels reversed to OpenCV's BGR.
  torch::Tensor pixels = images.to(torch::kCPU).permute({0, 2, 3, 1});
  if (images.size(1) == 3) pixels = pixels.flip(3);
  pixels = pixels.contiguous();
  const torch::Tensor cpu_labels = labels.to(torch::kCPU);
  const int height = static_cast<int>(images.size(2)), width = static_cast<int>(images.size(3));
  const int type = images.size(1) == 1 ? CV_8UC1 : CV_8UC3;
  // The class folders once, not once a file.
  for (const std::string& name : class_names) make_folder(std::filesystem::path(root) / name);
  for (int64_t i = 0; i < images.size(0); ++i) {
    const int64_t label = cpu_labels[i].item<int64_t>();
    if (label < 0 || label >= static_cast<int64_t>(class_names.size()))
      throw Error(root + ": label " + std::to_string(label) + " has no class folder name");
    char name[64];
    std::snprintf(name, sizeof(name), "%s%05lld.png", prefix.c_str(), static_cast<long long>(i));
    const std::string path = (std::filesystem::path(root) / class_names[static_cast<size_t>(label)] / name).string();
    const cv::Mat image(height, width, type, pixels[i].data_ptr<uint8_t>());
    std::vector<uchar> encoded;
    if (!cv::imencode(".png", image, encoded)) throw Error(path + ": cannot be encoded as PNG");
    write_file_atomically(path, std::string_view(reinterpret_cast<const char*>(encoded.data()), encoded.size()));
  }
  return images.size(0);
}

#else

int64_t write_png_class_folders(const std::string& root, const std::vector<std::string>&, const torch::Tensor&,
                                const torch::Tensor&, const std::string&) {
  throw Error(root + ": writing PNG files needs OpenCV, which this build has not (install libopencv-dev and rebuild)");
}

#endif

SyntheticClassImages synthetic_class_images(int64_t per_class, int64_t classes, int64_t channels, int64_t side,
                                            int64_t style, uint64_t seed) {
  if (per_class < 1 || classes < 1 || classes > 10 || (channels != 1 && channels != 3) || side < 10)
    throw Error("synthetic class images: per_class >= 1, classes 1..10, channels 1 or 3 and side >= 10 are needed");
  const int64_t n = per_class * classes;
  torch::Tensor images = torch::empty({n, channels, side, side}, torch::kUInt8);
  torch::Tensor labels = torch::empty({n}, torch::kInt64);
  uint8_t* pixels = images.data_ptr<uint8_t>();
  auto label_of = labels.accessor<int64_t, 1>();
  // The block covers a fifth of the width and half the height at most; its
  // shape (full, hollow, horizontal bar, vertical bar, cross) and colour follow the style.
  const int64_t cell_w = side / 5, cell_h = side / 2;
  const int64_t shape = style % 5;
  for (int64_t k = 0; k < classes; ++k)
    for (int64_t j = 0; j < per_class; ++j) {
      const int64_t i = k * per_class + j;
      label_of[i] = k;
      SplitMix64 random(mix_seed({seed, static_cast<uint64_t>(style), static_cast<uint64_t>(k), static_cast<uint64_t>(j)}));
      const int64_t jitter = std::max<int64_t>(1, side / 16);
      const int64_t left = (k % 5) * cell_w + static_cast<int64_t>(random.below(static_cast<uint64_t>(jitter + 1)));
      const int64_t top = (k / 5) * cell_h + static_cast<int64_t>(random.below(static_cast<uint64_t>(jitter + 1)));
      const int64_t w = std::max<int64_t>(2, cell_w - jitter), h = std::max<int64_t>(2, cell_h - jitter);
      for (int64_t c = 0; c < channels; ++c) {
        // Colour: channel c of style s is bright unless (s + c) % 3 == 2 (grey images are always bright).
        const int64_t level = channels == 1 || (style + c) % 3 != 2 ? 200 : 90;
        for (int64_t y = 0; y < side; ++y)
          for (int64_t x = 0; x < side; ++x) {
            const int64_t dx = x - left, dy = y - top;
            bool inside = dx >= 0 && dx < w && dy >= 0 && dy < h;
            if (inside && shape == 1) inside = dx == 0 || dy == 0 || dx == w - 1 || dy == h - 1;
            if (inside && shape == 2) inside = std::abs(2 * dy - h) <= h / 3;
            if (inside && shape == 3) inside = std::abs(2 * dx - w) <= w / 3;
            if (inside && shape == 4) inside = std::abs(2 * dy - h) <= h / 4 || std::abs(2 * dx - w) <= w / 4;
            const int64_t noise = static_cast<int64_t>(random.below(50));
            pixels[((i * channels + c) * side + y) * side + x] = static_cast<uint8_t>(inside ? level + noise : noise);
          }
      }
    }
  return {images, labels};
}

}  // namespace clx
