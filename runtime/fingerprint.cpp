#include "runtime/fingerprint.h"

#include <cstdio>

// Header-only: the functions are compiled into this file, so no xxhash
// library is needed at run time (a GPU machine's prefix carries the header).
// GCC 12 warns, wrongly, that xxhash 0.8.1's update computes `end - 32` for an
// 8-byte input (it does, but only uses it for inputs of 32 bytes or more).
#pragma GCC diagnostic ignored "-Warray-bounds"
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace clx {

// Integers are fed in host byte order; the fingerprints are defined on
// little-endian bytes (tensor data in checkpoints is little-endian).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fingerprints assume a little-endian host");

namespace {

static_assert(sizeof(XXH64_state_t) <= 88, "Fingerprint::state_ is too small for this xxhash.h");
static_assert(alignof(XXH64_state_t) <= 8, "Fingerprint::state_ is not aligned enough for this xxhash.h");

XXH64_state_t* state_of(unsigned char* storage) { return reinterpret_cast<XXH64_state_t*>(storage); }
const XXH64_state_t* state_of(const unsigned char* storage) { return reinterpret_cast<const XXH64_state_t*>(storage); }

}  // namespace

Fingerprint::Fingerprint() : state_{} { XXH64_reset(state_of(state_), /*seed=*/0); }

Fingerprint& Fingerprint::add_bytes(const void* data, size_t length) {
  if (length > 0) XXH64_update(state_of(state_), data, length);
  return *this;
}

uint64_t Fingerprint::value() const { return XXH64_digest(state_of(state_)); }

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
  // A CPU tensor that is already contiguous is hashed in place, not copied;
  // a device tensor is copied to the host.
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
