#include "runtime/named_tensors.h"

#include <cstring>
#include <sstream>

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

torch::Tensor optimizer_state_bytes(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  const std::string data = bytes.str();
  torch::Tensor blob = torch::empty({static_cast<int64_t>(data.size())}, torch::kUInt8);
  std::memcpy(blob.data_ptr(), data.data(), data.size());
  return blob;
}

void load_optimizer_state_bytes(torch::optim::Optimizer& optimizer, const torch::Tensor& bytes, torch::Device device) {
  const torch::Tensor blob = bytes.to(torch::kCPU).contiguous();
  torch::serialize::InputArchive archive;
  std::istringstream stream(std::string(static_cast<const char*>(blob.data_ptr()), blob.numel()));
  archive.load_from(stream, device);
  optimizer.load(archive);
}

}  // namespace clx
