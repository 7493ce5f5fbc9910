#include "runtime/png.h"

#include <zlib.h>

#include <cstdint>

#include "runtime/error.h"
#include "runtime/file_io.h"

namespace clx {
namespace {

void append_u32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xff));
}

// length, type, data, CRC-32 of type and data
void append_chunk(std::string& out, const char* type, const std::string& data) {
  append_u32(out, static_cast<uint32_t>(data.size()));
  const std::string typed = std::string(type, 4) + data;
  out += typed;
  append_u32(out, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(typed.data()),
                                              static_cast<uInt>(typed.size()))));
}

}  // namespace

std::string encode_png(const torch::Tensor& image) {
  if (image.scalar_type() != torch::kUInt8 || !(image.dim() == 2 || (image.dim() == 3 && image.size(2) == 3)))
    throw Error("encode_png: needs uint8 [H, W] or [H, W, 3], got " + std::string(c10::toString(image.scalar_type())) +
                " " + c10::str(image.sizes()));
  const torch::Tensor pixels = image.to(torch::kCPU).contiguous();
  const int64_t height = pixels.size(0), width = pixels.size(1), channels = image.dim() == 3 ? 3 : 1;
  std::string raw;
  raw.reserve(static_cast<size_t>(height * (1 + width * channels)));
  const char* data = reinterpret_cast<const char*>(pixels.data_ptr<uint8_t>());
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back('\0');  // filter type 0: the row as is
    raw.append(data + y * width * channels, static_cast<size_t>(width * channels));
  }
  uLongf compressed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string compressed(compressed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(&compressed[0]), &compressed_size, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), Z_DEFAULT_COMPRESSION) != Z_OK)
    throw Error("encode_png: zlib could not compress the image");
  compressed.resize(compressed_size);

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string header;
  append_u32(header, static_cast<uint32_t>(width));
  append_u32(header, static_cast<uint32_t>(height));
  header.push_back(8);                            // bit depth
  header.push_back(channels == 3 ? 2 : 0);        // colour type: truecolour or greyscale
  header.append(std::string("\0\0\0", 3));        // deflate, adaptive filtering, no interlace
  append_chunk(png, "IHDR", header);
  append_chunk(png, "IDAT", compressed);
  append_chunk(png, "IEND", "");
  return png;
}

void write_png(const std::string& path, const torch::Tensor& image) { write_file_atomically(path, encode_png(image)); }

std::string encode_npy(const torch::Tensor& array) {
  static_assert(sizeof(float) == 4, "float32 expected");
  const torch::Tensor values = array.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  // Python's tuple syntax: "(n, 1, 28, 28)", "(n,)", "()".
  std::string shape;
  for (int64_t d = 0; d < values.dim(); ++d) shape += (d ? ", " : "") + std::to_string(values.size(d));
  if (values.dim() == 1) shape += ",";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Magic, version, header length, header: a multiple of 64 bytes, padded with spaces, ending in a newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>((header.size() >> 8) & 0xff));
  out += header;
  // Element bytes as the CPU holds them: little-endian on every machine this project builds for.
  out.append(static_cast<const char*>(values.data_ptr()), static_cast<size_t>(values.numel()) * sizeof(float));
  return out;
}

void write_npy(const std::string& path, const torch::Tensor& array) { write_file_atomically(path, encode_npy(array)); }

torch::Tensor image_grid(const torch::Tensor& images, int64_t rows, int64_t columns, int64_t gap) {
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3))
    throw Error("image_grid: needs images [n, C, H, W] with C = 1 or 3, got " + c10::str(images.sizes()));
  if (rows < 1 || columns < 1 || gap < 0 || images.size(0) > rows * columns)
    throw Error("image_grid: " + std::to_string(images.size(0)) + " images do not fit " + std::to_string(rows) + " x " +
                std::to_string(columns) + " cells");
  const int64_t channels = images.size(1), height = images.size(2), width = images.size(3);
  const torch::Tensor pixels =
      (images.detach().to(torch::kCPU, torch::kFloat32).clamp(0, 1) * 255).round().to(torch::kUInt8).permute({0, 2, 3, 1});
  torch::Tensor grid =
      torch::full({rows * (height + gap) + gap, columns * (width + gap) + gap, channels}, 255, torch::kUInt8);
  for (int64_t k = 0; k < images.size(0); ++k) {
    const int64_t top = gap + (k / columns) * (height + gap), left = gap + (k % columns) * (width + gap);
    grid.narrow(0, top, height).narrow(1, left, width).copy_(pixels[k]);
  }
  return channels == 1 ? grid.squeeze(2) : grid;
}

}  // namespace clx
