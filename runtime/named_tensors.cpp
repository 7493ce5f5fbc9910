#include "runtime/named_tensors.h"

#include "runtime/error.h"

namespace clx {

NamedTensors with_prefix(const NamedTensors& all, const std::string& prefix) {
  NamedTensors selected;
  const std::string head = prefix + ".";
  for (const auto& [name, tensor] : all)
    if (name.compare(0, head.size(), head) == 0) selected.emplace_back(name.substr(head.size()), tensor);
  return selected;
}

NamedTensors parameters_and_buffers(const torch::nn::Module& module) {
  NamedTensors state;
  for (const auto& item : module.named_parameters()) state.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) state.emplace_back(item.key(), item.value());
  return state;
}

const torch::Tensor& named(const NamedTensors& all, const std::string& name) {
  for (const auto& item : all)
    if (item.first == name) return item.second;
  throw Error("state tensor '" + name + "' is missing");
}

}  // namespace clx
