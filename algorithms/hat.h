#pragma once
// HAT, hard attention to the task (Serra et al. 2018; every constant as in
// the authors' reference joansj/hat; DESIGN.md §4.3). One embedding e_t per
// task and hidden layer; the gate a_t = sigmoid(s e_t) multiplies the layer's
// units (the model's GatedReLU hooks). Within an epoch s rises from 1/s_max
// to s_max; evaluation uses s_max and the task's own gates. After a task the
// cumulative mask a_<t+1 = max(a_<t, a_t) conditions every later weight
// gradient by 1 - min(a_<t(out unit), a_<t(in unit)), so the units earlier
// tasks use stay as they were; a regulariser c * sum a_t (1 - a_<t) /
// sum (1 - a_<t) keeps each task's share of free units small.
//
// Embeddings are trained by plain SGD at the trainer's learning rate (the
// reference trains them with the network's SGD), with their gradients
// averaged over ranks and compensated, then clamped to [-6, 6]: identical on
// every rank. Embeddings and cumulative masks are strategy state
// (checkpointed, fingerprinted).
#include <boost/program_options.hpp>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

struct HatOptions {
  double smax = 400.0;
  double c = 0.75;
};

// s for batch `batch` (0-based) of `batches`: 1/s_max + (s_max - 1/s_max) batch / (batches - 1);
// s_max for a one-batch epoch.
double hat_annealed_scale(double smax, int64_t batch, int64_t batches);
// The reference's embedding-gradient compensation, in place:
// g *= s_max / s * (cosh(clamp(s e, -50, 50)) + 1) / (cosh(e) + 1).
void hat_compensate_gradient(torch::Tensor& gradient, const torch::Tensor& embedding, double s, double smax);
// c * sum a_t (1 - a_<t) / sum (1 - a_<t) over every hidden layer.
torch::Tensor hat_regulariser(const std::vector<torch::Tensor>& gates, const std::vector<torch::Tensor>& cumulative,
                              double c);

class HatStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static HatOptions read_options(const boost::program_options::variables_map& values);
  explicit HatStrategy(HatOptions options);
  std::string name() const override { return "hat"; }

  void before_task(StageContext& ctx) override;
  void before_forward(StageContext& ctx) override;
  torch::Tensor penalty_loss(StageContext& ctx) override;
  void after_backward(StageContext& ctx) override;
  void after_step(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  void before_evaluate(ContinualNet& model, int task) override;
  void after_evaluate(ContinualNet& model, int task) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  // hat_units: per task and layer, the units this task's mask uses and those
  // every task so far uses (gate > 0.5), from the embeddings.
  std::vector<ResultTable> result_tables(int tasks_trained) const override;

  // One [tasks, units] tensor per hidden layer, named by the layer.
  const NamedTensors& embeddings() const { return embeddings_; }
  // One [units] tensor per hidden layer: max over finished tasks of sigmoid(s_max e_t).
  const NamedTensors& cumulative_masks() const { return cumulative_; }

 private:
  void check_model(const ContinualNet& model) const;
  std::vector<torch::Tensor> cumulative_values() const;
  // Per layer: units with gate > 0.5 in task `task`'s mask, and in the
  // cumulative mask of tasks 0..task (the earlier tasks' embeddings no longer
  // change once their task is trained).
  struct LayerUse {
    int64_t this_task = 0, so_far = 0, width = 0;
  };
  std::vector<LayerUse> units_used(int task) const;

  HatOptions options_;
  NamedTensors embeddings_, cumulative_;
  // This step's gates (with graph to the embeddings) and scale.
  std::vector<torch::Tensor> gates_;
  double s_ = 0.0;
};

}  // namespace clx
