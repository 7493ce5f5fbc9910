#pragma once
// The VAE of continual generation (TaskVae, models/generative.h) as the
// trainer's ContinualNet: its encoder and decoder are the shared trunk (what
// strategies consolidate), task t's latent layers (mu, logvar,
// latent_to_hidden) are head t. It has no classifier: features() and
// head_forward() refuse, and the VAE objective (models/vae_objective.h) trains
// it through vae. Parameter names are TaskVae's with the prefix "vae.".
#include <torch/torch.h>

#include "models/generative.h"
#include "runtime/continual_net.h"

namespace clx {

class VaeNetImpl : public ContinualNet {
 public:
  explicit VaeNetImpl(const VaeConfig& config);

  torch::Tensor features(const torch::Tensor& inputs) override;
  torch::Tensor head_forward(const torch::Tensor& features, int64_t head) override;
  int64_t num_heads() const override { return vae->tasks(); }
  std::vector<std::pair<std::string, torch::Tensor>> named_shared_parameters() const override;
  std::vector<torch::Tensor> head_parameters(int64_t head) const override;

  TaskVae vae{nullptr};
};
TORCH_MODULE(VaeNet);

// `model` as the VAE; otherwise throws clx::Error(`refusal`).
VaeNetImpl& as_vae_net(ContinualNet& model, const std::string& refusal);

}  // namespace clx
