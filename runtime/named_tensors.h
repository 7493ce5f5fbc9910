#pragma once
// Named tensors: how strategies expose their state and how checkpoints store
// groups of tensors.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace clx {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The entries of `all` named "<prefix>.<rest>", renamed "<rest>", in order.
NamedTensors with_prefix(const NamedTensors& all, const std::string& prefix);
// A module's parameters, then its buffers, by their full names: what a
// checkpoint's /model group holds.
NamedTensors parameters_and_buffers(const torch::nn::Module& module);
// The tensor named `name`; throws clx::Error naming it when absent.
const torch::Tensor& named(const NamedTensors& all, const std::string& name);

// An optimizer's state as LibTorch serialises it (its archive's bytes), in a
// uint8 CPU tensor a checkpoint stores; and loaded back into an optimizer over
// the same parameters, its state onto `device` whichever device wrote it.
torch::Tensor optimizer_state_bytes(torch::optim::Optimizer& optimizer);
void load_optimizer_state_bytes(torch::optim::Optimizer& optimizer, const torch::Tensor& bytes, torch::Device device);

}  // namespace clx
