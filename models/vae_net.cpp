#include "models/vae_net.h"

#include "runtime/error.h"

namespace clx {
namespace {

bool is_task_parameter(const std::string& name) { return name.rfind("tasks.", 0) == 0; }

}  // namespace

VaeNetImpl& as_vae_net(ContinualNet& model, const std::string& refusal) {
  auto* net = dynamic_cast<VaeNetImpl*>(&model);
  if (net == nullptr) throw Error(refusal);
  return *net;
}

VaeNetImpl::VaeNetImpl(const VaeConfig& config) { vae = register_module("vae", TaskVae(config)); }

torch::Tensor VaeNetImpl::features(const torch::Tensor&) {
  throw Error("the VAE (model.arch=vae) has no classifier: it is trained and scored by the VAE objective only");
}

torch::Tensor VaeNetImpl::head_forward(const torch::Tensor&, int64_t) {
  throw Error("the VAE (model.arch=vae) has no classification heads: it is trained and scored by the VAE objective only");
}

std::vector<std::pair<std::string, torch::Tensor>> VaeNetImpl::named_shared_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> shared;
  for (const auto& item : vae->named_parameters())
    if (!is_task_parameter(item.key())) shared.emplace_back("vae." + item.key(), item.value());
  return shared;
}

std::vector<torch::Tensor> VaeNetImpl::head_parameters(int64_t head) const {
  if (head < 0 || head >= vae->tasks())
    throw Error("VAE: no task " + std::to_string(head) + " (" + std::to_string(vae->tasks()) + " task layers)");
  const std::string prefix = "tasks." + std::to_string(head) + ".";
  std::vector<torch::Tensor> parameters;
  for (const auto& item : vae->named_parameters())
    if (item.key().rfind(prefix, 0) == 0) parameters.push_back(item.value());
  return parameters;
}

}  // namespace clx
