#include "runtime/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "runtime/data/byte_images.h"
#include "runtime/error.h"

namespace clx {
namespace {

// gzread reads plain files transparently, so one code path covers both forms.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    if (std::filesystem::is_directory(path)) throw Error(path + ": is a directory, expected a data file");
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
    gzbuffer(file_, 1 << 20);
  }
  ~GzFile() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to `length` bytes; returns how many were read. A corrupt or
  // truncated gzip stream is an error, not a short read.
  size_t read(void* buffer, size_t length) {
    size_t total = 0;
    auto* out = static_cast<char*>(buffer);
    while (total < length) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(length - total, 1u << 30));
      const int got = gzread(file_, out + total, chunk);
      if (got < 0 || (got == 0 && !gzeof(file_))) fail();
      if (got == 0) break;
      total += static_cast<size_t>(got);
    }
    int code = Z_OK;
    gzerror(file_, &code);
    if (code != Z_OK && code != Z_STREAM_END) fail();
    return total;
  }

 private:
  [[noreturn]] void fail() {
    int code = Z_OK;
    const char* message = gzerror(file_, &code);
    throw Error(path_ + ": corrupt or truncated gzip data (" + (message ? message : "unknown zlib error") + ")");
  }

  std::string path_;
  gzFile file_ = nullptr;
};

torch::ScalarType idx_element_type(int code, const std::string& path) {
  switch (code) {
    case 0x08: return torch::kUInt8;
    case 0x09: return torch::kInt8;
    case 0x0B: return torch::kInt16;
    case 0x0C: return torch::kInt32;
    case 0x0D: return torch::kFloat32;
    case 0x0E: return torch::kFloat64;
    default: {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", code);
      throw Error(path + ": not an IDX file (unknown element type " + hex + " in the magic number)");
    }
  }
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  GzFile file(path);
  unsigned char magic[4] = {0, 0, 0, 0};
  if (file.read(magic, 4) != 4) throw Error(path + ": too short for an IDX header (4-byte magic number)");
  if (magic[0] != 0 || magic[1] != 0) {
    char hex[32];
    std::snprintf(hex, sizeof(hex), "%02X %02X %02X %02X", magic[0], magic[1], magic[2], magic[3]);
    throw Error(path + ": not an IDX file (magic number " + hex + ", expected 00 00 <type> <dims>)");
  }
  const torch::ScalarType type = idx_element_type(magic[2], path);
  const int rank = magic[3];
  if (rank < 1 || rank > 4) throw Error(path + ": not an IDX file (" + std::to_string(rank) + " dimensions)");
  std::vector<int64_t> shape(rank);
  int64_t count = 1;
  for (int d = 0; d < rank; ++d) {
    unsigned char be[4];
    if (file.read(be, 4) != 4) throw Error(path + ": truncated IDX header (dimension " + std::to_string(d) + ")");
    shape[d] = (int64_t(be[0]) << 24) | (int64_t(be[1]) << 16) | (int64_t(be[2]) << 8) | int64_t(be[3]);
    if (shape[d] <= 0 || shape[d] > (1 << 28)) throw Error(path + ": implausible IDX dimension " + std::to_string(shape[d]));
    count *= shape[d];
    if (count > (int64_t(1) << 34)) throw Error(path + ": IDX header describes more than 16 GiB");
  }
  const size_t element_size = c10::elementSize(type);
  const size_t expected = static_cast<size_t>(count) * element_size;
  // The header's size is only a claim until the data arrives: the buffer grows
  // with what the file really holds, so a corrupt header cannot make us
  // allocate gigabytes for a file of a few bytes.
  std::vector<char> data;
  size_t got = 0;
  const size_t chunk = size_t{64} << 20;
  while (got < expected) {
    const size_t wanted = std::min(chunk, expected - got);
    data.resize(got + wanted);
    const size_t read = file.read(data.data() + got, wanted);
    got += read;
    if (read < wanted) break;
  }
  if (got != expected)
    throw Error(path + ": truncated: header promises " + std::to_string(expected) + " data bytes, file holds " +
                std::to_string(got));
  torch::Tensor values = torch::empty(shape, type);
  std::memcpy(values.data_ptr(), data.data(), expected);
  data = std::vector<char>();
  char extra;
  if (file.read(&extra, 1) != 0)
    throw Error(path + ": sizes disagree: bytes remain after the " + std::to_string(expected) +
                " data bytes the header describes");
  // IDX stores multi-byte values big-endian.
  if (values.element_size() > 1) {
    auto* bytes = static_cast<unsigned char*>(values.data_ptr());
    const size_t width = values.element_size();
    for (size_t i = 0; i < expected; i += width) std::reverse(bytes + i, bytes + i + width);
  }
  return values;
}

std::string read_plain_or_gzip_file(const std::string& path, int64_t max_bytes) {
  GzFile file(path);
  std::string content;
  char buffer[1 << 16];
  for (;;) {
    const size_t got = file.read(buffer, sizeof(buffer));
    if (got == 0) break;
    content.append(buffer, got);
    if (static_cast<int64_t>(content.size()) > max_bytes)
      throw Error(path + ": larger than " + std::to_string(max_bytes) + " bytes; not a file of the expected kind");
  }
  return content;
}

std::string find_idx_file(const std::string& root, const std::string& stem) {
  const std::filesystem::path plain = std::filesystem::path(root) / stem;
  const std::filesystem::path gz = std::filesystem::path(root) / (stem + ".gz");
  if (std::filesystem::exists(plain)) return plain.string();
  if (std::filesystem::exists(gz)) return gz.string();
  throw Error("data.root: neither " + plain.string() + " nor " + gz.string() + " exists");
}

LabelledImages load_mnist_split(const std::string& root, const std::string& prefix, int64_t num_classes) {
  const std::string image_path = find_idx_file(root, prefix + "-images-idx3-ubyte");
  const std::string label_path = find_idx_file(root, prefix + "-labels-idx1-ubyte");
  torch::Tensor images = read_idx(image_path);
  torch::Tensor labels = read_idx(label_path);
  if (images.dim() != 3 || images.scalar_type() != torch::kUInt8)
    throw Error(image_path + ": expected a 3-dimensional uint8 image array, found " + std::to_string(images.dim()) +
                " dimensions of " + c10::toString(images.scalar_type()));
  if (labels.dim() != 1 || labels.scalar_type() != torch::kUInt8)
    throw Error(label_path + ": expected a 1-dimensional uint8 label array");
  if (images.size(0) != labels.size(0))
    throw Error("sizes disagree: " + image_path + " holds " + std::to_string(images.size(0)) + " images but " +
                label_path + " holds " + std::to_string(labels.size(0)) + " labels");
  check_label_range(labels, 0, num_classes - 1, label_path);
  return labelled_images_from_bytes(images.unsqueeze(1), labels, num_classes, prefix + " (" + image_path + ")");
}

}  // namespace clx
