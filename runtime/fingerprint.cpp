#include "runtime/fingerprint.h"

#include <cstdio>
#include <cstring>

namespace clx {

// Words are read and integers fed in host byte order; the fingerprints are
// defined on little-endian bytes (tensor data in checkpoints is little-endian).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fingerprints assume a little-endian host");

namespace {

// XXH64 as specified in https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md
constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;
constexpr uint64_t kSeed = 0;

inline uint64_t rotate_left(uint64_t value, int bits) { return (value << bits) | (value >> (64 - bits)); }

inline uint64_t load64(const unsigned char* bytes) {
  uint64_t value;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

inline uint32_t load32(const unsigned char* bytes) {
  uint32_t value;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

inline uint64_t xxh64_round(uint64_t accumulator, uint64_t input) {
  accumulator += input * kPrime2;
  accumulator = rotate_left(accumulator, 31);
  return accumulator * kPrime1;
}

inline uint64_t merge_round(uint64_t hash, uint64_t lane) {
  hash ^= xxh64_round(0, lane);
  return hash * kPrime1 + kPrime4;
}

// Folds whole 32-byte stripes into the four lanes; returns the bytes consumed.
size_t consume_stripes(uint64_t lanes[4], const unsigned char* bytes, size_t length) {
  uint64_t l0 = lanes[0], l1 = lanes[1], l2 = lanes[2], l3 = lanes[3];
  const unsigned char* const end = bytes + (length & ~size_t{31});
  const unsigned char* p = bytes;
  for (; p < end; p += 32) {
    l0 = xxh64_round(l0, load64(p));
    l1 = xxh64_round(l1, load64(p + 8));
    l2 = xxh64_round(l2, load64(p + 16));
    l3 = xxh64_round(l3, load64(p + 24));
  }
  lanes[0] = l0, lanes[1] = l1, lanes[2] = l2, lanes[3] = l3;
  return static_cast<size_t>(p - bytes);
}

}  // namespace

Fingerprint::Fingerprint() : lanes_{kSeed + kPrime1 + kPrime2, kSeed + kPrime2, kSeed, kSeed - kPrime1}, pending_{} {}

Fingerprint& Fingerprint::add_bytes(const void* data, size_t length) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  total_length_ += length;
  if (pending_size_ + length < 32) {
    if (length > 0) std::memcpy(pending_ + pending_size_, bytes, length);
    pending_size_ += length;
    return *this;
  }
  if (pending_size_ > 0) {
    const size_t fill = 32 - pending_size_;
    std::memcpy(pending_ + pending_size_, bytes, fill);
    consume_stripes(lanes_, pending_, 32);
    bytes += fill;
    length -= fill;
    pending_size_ = 0;
  }
  const size_t consumed = consume_stripes(lanes_, bytes, length);
  pending_size_ = length - consumed;
  if (pending_size_ > 0) std::memcpy(pending_, bytes + consumed, pending_size_);
  return *this;
}

uint64_t Fingerprint::value() const {
  uint64_t hash;
  if (total_length_ >= 32) {
    hash = rotate_left(lanes_[0], 1) + rotate_left(lanes_[1], 7) + rotate_left(lanes_[2], 12) +
           rotate_left(lanes_[3], 18);
    for (uint64_t lane : lanes_) hash = merge_round(hash, lane);
  } else {
    hash = kSeed + kPrime5;
  }
  hash += total_length_;
  const unsigned char* p = pending_;
  size_t left = pending_size_;
  for (; left >= 8; p += 8, left -= 8) hash = rotate_left(hash ^ xxh64_round(0, load64(p)), 27) * kPrime1 + kPrime4;
  if (left >= 4) {
    hash = rotate_left(hash ^ (static_cast<uint64_t>(load32(p)) * kPrime1), 23) * kPrime2 + kPrime3;
    p += 4;
    left -= 4;
  }
  for (; left > 0; ++p, --left) hash = rotate_left(hash ^ (*p * kPrime5), 11) * kPrime1;
  hash ^= hash >> 33;
  hash *= kPrime2;
  hash ^= hash >> 29;
  hash *= kPrime3;
  hash ^= hash >> 32;
  return hash;
}

Fingerprint& Fingerprint::add(std::string_view text) {
  add(static_cast<int64_t>(text.size()));
  return add_bytes(text.data(), text.size());
}

Fingerprint& Fingerprint::add(int64_t value) { return add_bytes(&value, sizeof(value)); }

Fingerprint& Fingerprint::add(const torch::Tensor& tensor) {
  if (!tensor.defined()) return add(std::string_view("undefined"));
  add(std::string_view(c10::toString(tensor.scalar_type())));
  add(static_cast<int64_t>(tensor.dim()));
  for (int64_t dim : tensor.sizes()) add(dim);
  // A CPU tensor that is already contiguous is hashed in place, not copied.
  torch::Tensor host = tensor.detach().to(torch::kCPU).contiguous();
  return add_bytes(host.data_ptr(), static_cast<size_t>(host.numel()) * host.element_size());
}

std::string Fingerprint::hex() const { return to_hex(value()); }

std::string to_hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace clx
