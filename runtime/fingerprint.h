#pragma once
// 64-bit fingerprints of bytes, strings and tensors: XXH64 (seed 0) of a
// byte stream, computed by the xxHash library (Debian's libxxhash-dev, used
// header-only). Used to prove that every rank holds the same configuration,
// parameters, masks and importance accumulators, and as the checksum of every
// dataset in a checkpoint (docs/checkpoint_format.md). XXH64 reads 8-byte
// words (about 10 GB/s on one core), so fingerprinting a model costs little
// next to writing it; the byte stream itself is defined below and in the
// format document, so h5py (python3-xxhash) computes the same values.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace clx {

class Fingerprint {
 public:
  Fingerprint();
  Fingerprint& add_bytes(const void* data, size_t length);
  // The length as int64, then the bytes.
  Fingerprint& add(std::string_view text);
  // 8 little-endian bytes.
  Fingerprint& add(int64_t value);
  // The dtype's LibTorch name (as a string), the number of dimensions and
  // each dimension (int64 each), then the exact bytes of the values in
  // row-major order (copied to a contiguous CPU tensor first if needed).
  Fingerprint& add(const torch::Tensor& tensor);
  // XXH64 of everything added so far; more may be added afterwards.
  uint64_t value() const;
  std::string hex() const;  // value() as 16 lower-case hex digits

 private:
  // XXH64's streaming state (xxhash.h's XXH64_state_t, 88 bytes), kept here
  // as raw storage so that this header does not pull in xxhash.h.
  alignas(8) unsigned char state_[88];
};

std::string to_hex(uint64_t value);

}  // namespace clx
