// libFuzzer target: arbitrary bytes as an IDX file (plain or gzipped).
// read_idx must either succeed or throw clx::Error.
//
// Seeds: run with CLX_FUZZ_WRITE_SEEDS=<dir> to write a few valid IDX files
// (plain and gzipped, several element types) into <dir> and exit.
//
// KNOWN ISSUE in runtime/data/idx.cpp (found by this target): read_idx
// allocates the tensor its header describes (up to 2^34 elements, 128 GiB of
// float64) before checking that the file holds that many bytes, so a 30-byte
// file makes it allocate gigabytes (libFuzzer: out-of-memory (malloc(4999610368))).
// Until read_idx checks first, inputs whose header claims more than
// kMaxClaimedBytes are skipped; set CLX_FUZZ_IDX_STRICT=1 to fuzz them too
// (and reproduce the issue).
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

namespace {

using Bytes = std::vector<unsigned char>;

constexpr uint64_t kMaxClaimedBytes = uint64_t(256) << 20;

// Bytes of data the IDX header of `path` claims (0 when the header is unreadable).
uint64_t claimed_bytes(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return 0;
  unsigned char header[4 + 4 * 255];
  const int got = gzread(file, header, sizeof(header));
  gzclose(file);
  if (got < 4) return 0;
  const uint64_t sizes[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 4, 4, 8, 0};
  uint64_t bytes = header[2] < 16 ? sizes[header[2]] : 0;
  const int rank = header[3];
  for (int d = 0; d < rank && 4 + 4 * d + 4 <= got; ++d) {
    const unsigned char* be = header + 4 + 4 * d;
    const uint64_t dim = (uint64_t(be[0]) << 24) | (uint64_t(be[1]) << 16) | (uint64_t(be[2]) << 8) | be[3];
    if (dim > (uint64_t(1) << 28)) return 0;  // rejected by read_idx before allocating
    bytes *= dim;
    if (bytes > (uint64_t(8) << 34)) return 0;  // likewise
  }
  return bytes;
}

std::string input_path() {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/clx_fuzz_idx_" + std::to_string(::getpid());
}

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

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (const char* dir = std::getenv("CLX_FUZZ_WRITE_SEEDS")) {
    write_seeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    std::atexit([] { std::remove(input_path().c_str()); });
    return input_path();
  }();
  {
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!file) {
      std::cerr << "cannot write " << path << "\n";
      std::abort();
    }
  }
  static const bool strict = std::getenv("CLX_FUZZ_IDX_STRICT") != nullptr;
  if (!strict && claimed_bytes(path) > kMaxClaimedBytes) return 0;
  try {
    const torch::Tensor values = clx::read_idx(path);
    (void)values;
  } catch (const clx::Error&) {
    // Expected for damaged input.
  }
  return 0;
}
