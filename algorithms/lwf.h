#pragma once
// LwF (Li & Hoiem 2016): before a new task, the network's responses on the
// new task's training data are recorded for every earlier head; while
// training, lambda * cross-entropy between those softened responses and the
// current ones (temperature T = 2) is added to the loss. DESIGN.md 4.3.
#include <boost/program_options.hpp>

#include "runtime/named_tensors.h"
#include "runtime/strategy.h"

namespace clx {

class LwfStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  LwfStrategy(double lambda, double temperature);
  std::string name() const override { return "lwf"; }
  void before_task(StageContext& ctx) override;
  torch::Tensor penalty_loss(StageContext& ctx) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  // Distillation loss summed over samples: sum_i sum_k -p_ik log softmax(logits_i / T)_k,
  // p = recorded softened responses.
  static torch::Tensor distillation(const torch::Tensor& logits, const torch::Tensor& targets, double temperature);

 private:
  double lambda_, temperature_;
  std::vector<torch::Tensor> targets_;  // per earlier head: [task train size, head size] soft targets
};

}  // namespace clx
