#include "runtime/device.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "runtime/error.h"

namespace clx {

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::Fp32;
  if (text == "bf16") return Precision::Bf16;
  throw Error("train.precision: '" + text + "' is not one of fp32, bf16");
}

std::string to_string(Precision precision) { return precision == Precision::Bf16 ? "bf16" : "fp32"; }

torch::DeviceType resolve_device_type(const std::string& requested) {
  if (requested == "cpu") return torch::kCPU;
  if (requested != "cuda" && requested != "auto")
    throw Error("run.device: '" + requested + "' is not one of auto, cpu, cuda");
  const bool visible = torch::cuda::is_available();
  if (requested == "auto") return visible ? torch::kCUDA : torch::kCPU;
  if (!visible)
    throw Error(std::string("run.device=cuda: no CUDA device is visible to this process (") +
                (torch::hasCUDA() ? "this LibTorch supports CUDA; check the driver and CUDA_VISIBLE_DEVICES"
                                  : "this LibTorch was built without CUDA, e.g. Debian's libtorch-dev; build against a "
                                    "CUDA LibTorch, see docs/gpu.md") +
                ")");
  return torch::kCUDA;
}

void set_deterministic(bool on) {
  if (on) {
    // cuBLAS is deterministic only with a fixed workspace configuration,
    // read when its first handle is created; an explicit setting is kept.
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  }
  at::globalContext().setDeterministicAlgorithms(on, /*warn_only=*/false);
  at::globalContext().setDeterministicCuDNN(on);
  // cuDNN's autotuner picks algorithms by timing, which may differ between runs.
  if (on) at::globalContext().setBenchmarkCuDNN(false);
}

// Autocast's switches changed in LibTorch 2.4 (one function per device type
// instead of separate CPU and GPU functions).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CLX_AUTOCAST_BY_DEVICE_TYPE 1
#endif

AutocastScope::AutocastScope(torch::Device device, Precision precision) {
  if (precision != Precision::Bf16) return;
  cuda_ = device.is_cuda();
#ifdef CLX_AUTOCAST_BY_DEVICE_TYPE
  const at::DeviceType type = cuda_ ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(type, at::kBFloat16);
  at::autocast::set_autocast_enabled(type, true);
#else
  if (cuda_) {
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
#endif
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
#ifdef CLX_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(cuda_ ? at::kCUDA : at::kCPU, false);
#else
  if (cuda_) at::autocast::set_enabled(false);
  else at::autocast::set_cpu_enabled(false);
#endif
  // The cache holds bf16 copies of the weights for this forward pass only:
  // the optimizer changes the weights before the next one.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

namespace {

// "CLXRNG2" + per generator: a one-byte kind (0 CPU, 1 CUDA), an 8-byte length,
// the state bytes. Rank states written before this framing hold the CPU
// generator's bytes alone.
constexpr char kFramingMagic[8] = {'C', 'L', 'X', 'R', 'N', 'G', '2', '\0'};

at::Generator default_generator(torch::Device device) {
  return at::globalContext().defaultGenerator(device);
}

std::string state_of(torch::Device device) {
  at::Generator generator = default_generator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  const torch::Tensor state = generator.get_state().contiguous();
  return std::string(static_cast<const char*>(state.data_ptr()), static_cast<size_t>(state.numel()));
}

void set_state_of(torch::Device device, const std::string& bytes) {
  at::Generator generator = default_generator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  torch::Tensor state = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(state.data_ptr(), bytes.data(), bytes.size());
  generator.set_state(state);
}

void append_state(std::string& out, uint8_t kind, const std::string& state) {
  out.push_back(static_cast<char>(kind));
  const uint64_t length = state.size();
  out.append(reinterpret_cast<const char*>(&length), sizeof(length));
  out += state;
}

}  // namespace

std::string save_generator_states(torch::Device device) {
  std::string bytes(kFramingMagic, sizeof(kFramingMagic));
  append_state(bytes, 0, state_of(torch::kCPU));
  if (device.is_cuda()) append_state(bytes, 1, state_of(device));
  return bytes;
}

bool restore_generator_states(const std::string& bytes, torch::Device device) {
  if (bytes.size() < sizeof(kFramingMagic) || std::memcmp(bytes.data(), kFramingMagic, sizeof(kFramingMagic)) != 0) {
    set_state_of(torch::kCPU, bytes);  // the CPU generator alone, as written before the framing
    return !device.is_cuda();
  }
  bool have_cpu = false, saved_cuda = false;
  size_t at = sizeof(kFramingMagic);
  while (at < bytes.size()) {
    uint64_t length = 0;
    if (bytes.size() - at < 1 + sizeof(length)) throw Error("random generator states: truncated record");
    const uint8_t kind = static_cast<uint8_t>(bytes[at]);
    std::memcpy(&length, bytes.data() + at + 1, sizeof(length));
    at += 1 + sizeof(length);
    if (bytes.size() - at < length) throw Error("random generator states: truncated record");
    const std::string state = bytes.substr(at, length);
    at += length;
    if (kind == 0) {
      set_state_of(torch::kCPU, state);
      have_cpu = true;
    } else if (kind == 1) {
      saved_cuda = true;
      if (device.is_cuda()) set_state_of(device, state);
    }
  }
  return have_cpu && saved_cuda == device.is_cuda();
}

}  // namespace clx
