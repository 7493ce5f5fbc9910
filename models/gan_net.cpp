#include "models/gan_net.h"

#include "runtime/error.h"

namespace clx {

GanNetImpl& as_gan_net(ContinualNet& model, const std::string& refusal) {
  auto* net = dynamic_cast<GanNetImpl*>(&model);
  if (net == nullptr) throw Error(refusal);
  return *net;
}

GanNetImpl::GanNetImpl(const GanConfig& config) : config_(config) {
  generator = register_module("generator", ConditionalGenerator(config));
}

torch::Tensor GanNetImpl::features(const torch::Tensor&) {
  throw Error("the GAN (model.arch=gan) has no classifier: it is trained and scored by the GAN objective only");
}

torch::Tensor GanNetImpl::head_forward(const torch::Tensor&, int64_t) {
  throw Error("the GAN (model.arch=gan) has no classification heads: it is trained and scored by the GAN objective only");
}

std::vector<std::pair<std::string, torch::Tensor>> GanNetImpl::named_shared_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> shared;
  for (const auto& item : generator->named_parameters()) shared.emplace_back("generator." + item.key(), item.value());
  return shared;
}

std::vector<torch::Tensor> GanNetImpl::head_parameters(int64_t head) const {
  if (head != 0) throw Error("GAN: no head " + std::to_string(head) + " (one head slot, the single-head layout)");
  return {};
}

}  // namespace clx
