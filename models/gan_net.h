#pragma once
// The conditional GAN's generator (ConditionalGenerator, models/generative.h)
// as the trainer's ContinualNet: every generator parameter is the shared trunk
// (what strategies consolidate; the class columns of its input layer included),
// and it has one head slot in the single-head layout, with no parameters of its
// own: a batch's labels are the stream's global class indices, which are the
// generator's class slots. The critic is not part of it: the GAN objective
// (models/gan_objective.h) owns and trains it. Parameter names are the
// generator's with the prefix "generator.".
//
// The generator is built with one class slot per class of the stream, all at
// the start. A slot's input column is multiplied by its own one-hot entry
// only, so until its class is trained its gradient is zero and Adam and SGD
// leave it where it was drawn: the same as growing the slot when its task
// begins, without growing optimizer and strategy state in the middle of a run.
#include <torch/torch.h>

#include "models/generative.h"
#include "runtime/continual_net.h"

namespace clx {

class GanNetImpl : public ContinualNet {
 public:
  explicit GanNetImpl(const GanConfig& config);

  torch::Tensor features(const torch::Tensor& inputs) override;
  torch::Tensor head_forward(const torch::Tensor& features, int64_t head) override;
  int64_t num_heads() const override { return 1; }
  std::vector<std::pair<std::string, torch::Tensor>> named_shared_parameters() const override;
  std::vector<torch::Tensor> head_parameters(int64_t head) const override;
  const GanConfig& config() const { return config_; }

  ConditionalGenerator generator{nullptr};

 private:
  GanConfig config_;
};
TORCH_MODULE(GanNet);

// `model` as the GAN; otherwise throws clx::Error(`refusal`).
GanNetImpl& as_gan_net(ContinualNet& model, const std::string& refusal);

}  // namespace clx
