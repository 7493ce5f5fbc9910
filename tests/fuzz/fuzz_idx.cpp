// libFuzzer target: arbitrary bytes as an IDX file (plain or gzipped).
// read_idx must either succeed or throw clx::Error.
//
// Seeds: run with CLX_FUZZ_WRITE_SEEDS=<dir> to write a few valid IDX files
// (plain and gzipped, several element types) into <dir> and exit.
//
// read_idx grows its buffer with the data the file really holds, so a header
// that claims gigabytes in a file of a few bytes is an error, not an
// out-of-memory (this target found that case).
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "runtime/data/idx.h"
#include "runtime/error.h"
#include "tests/fuzz/fuzz_file_target.h"

namespace {

using Bytes = std::vector<unsigned char>;


Bytes idx(unsigned char type, const std::vector<uint32_t>& shape, size_t element_size) {
  Bytes out = {0, 0, type, static_cast<unsigned char>(shape.size())};
  size_t count = 1;
  for (uint32_t dim : shape) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(dim >> shift));
    count *= dim;
  }
  for (size_t i = 0; i < count * element_size; ++i) out.push_back(static_cast<unsigned char>(i * 37 + 11));
  return out;
}

void write_plain(const std::string& path, const Bytes& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb9");
  if (file == nullptr) std::abort();
  gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(file);
}

void write_seeds(const std::string& dir) {
  write_plain(dir + "/images-u8", idx(0x08, {3, 4, 4}, 1));
  write_plain(dir + "/labels-u8", idx(0x08, {5}, 1));
  write_plain(dir + "/i16", idx(0x0B, {2, 3}, 2));
  write_plain(dir + "/i32", idx(0x0C, {4}, 4));
  write_plain(dir + "/f32", idx(0x0D, {2, 2}, 4));
  write_plain(dir + "/f64", idx(0x0E, {3}, 8));
  write_gzip(dir + "/images-u8.gz", idx(0x08, {2, 5, 5}, 1));
  write_gzip(dir + "/i8.gz", idx(0x09, {1, 2, 3, 2}, 1));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) { return clx::fuzz::initialize(write_seeds); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return clx::fuzz::test_file_input(data, size, "clx_fuzz_idx_", [](const std::string& path) { clx::read_idx(path); });
}
