#pragma once
// Where a rank computes and in which precision (DESIGN.md §5, Devices and
// Mixed precision).
//
// run.device = auto | cpu | cuda: auto is cuda when this LibTorch sees a GPU.
// With cuda every rank takes GPU local_rank (NCCL needs one GPU per rank);
// everything the hot path touches lives there: parameters, buffers, optimizer
// state, gradient buckets, strategy tensors, index tensors and in-memory data.
// train.precision = fp32 | bf16: bf16 runs the forward pass under autocast;
// gradients, optimizer state, importance, masks and penalties stay fp32.
#include <torch/torch.h>

#include <string>

namespace clx {

enum class Precision { Fp32, Bf16 };

// "fp32" | "bf16"; throws clx::Error naming train.precision otherwise.
Precision parse_precision(const std::string& text);
std::string to_string(Precision precision);

// The device type run.device asks for: "cpu", "cuda", or "auto" (cuda when a
// GPU is visible). Throws clx::Error naming run.device for an unknown value or
// for cuda without a visible GPU (saying whether this LibTorch was built with
// CUDA at all).
torch::DeviceType resolve_device_type(const std::string& requested);

// run.deterministic: deterministic algorithms everywhere (cuDNN and cuBLAS
// included), so that a resumed GPU run equals an uninterrupted one bit for
// bit. Must be called before the first CUDA kernel (cuBLAS reads its
// workspace setting when it starts).
void set_deterministic(bool on);

// Autocast of the forward pass in bf16 on `device`'s type while alive (no-op
// for fp32). Not nestable: the trainer opens one around each forward pass.
class AutocastScope {
 public:
  AutocastScope(torch::Device device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
};

// The default random generators this rank draws from (dropout, random
// initialisation): the CPU one, and the CUDA one of `device` when it is a GPU,
// as one byte string. restore_generator_states restores what `bytes` holds
// for this run's generators and returns false when the saved set differs from
// the set this run uses (a checkpoint of a run on another device type): the
// caller warns that the run is then no longer bit-identical.
std::string save_generator_states(torch::Device device);
bool restore_generator_states(const std::string& bytes, torch::Device device);

}  // namespace clx
