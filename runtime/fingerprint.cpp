#include "runtime/fingerprint.h"

#include <cstdio>

namespace clx {

Fingerprint& Fingerprint::add_bytes(const void* data, size_t length) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < length; ++i) {
    state_ ^= bytes[i];
    state_ *= 0x100000001b3ULL;
  }
  return *this;
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
  torch::Tensor host = tensor.detach().to(torch::kCPU).contiguous();
  return add_bytes(host.data_ptr(), static_cast<size_t>(host.numel()) * host.element_size());
}

std::string Fingerprint::hex() const { return to_hex(state_); }

std::string to_hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace clx
