#pragma once
// 64-bit fingerprints (FNV-1a) of bytes, strings and tensors, used to prove
// that every rank holds the same configuration, parameters, masks and
// importance accumulators.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace clx {

class Fingerprint {
 public:
  Fingerprint& add_bytes(const void* data, size_t length);
  Fingerprint& add(std::string_view text);
  Fingerprint& add(int64_t value);
  // Covers dtype, shape and the exact bytes of the values (copied to CPU).
  Fingerprint& add(const torch::Tensor& tensor);
  uint64_t value() const { return state_; }
  std::string hex() const;

 private:
  uint64_t state_ = 0xcbf29ce484222325ULL;
};

std::string to_hex(uint64_t value);

}  // namespace clx
