#pragma once
// CLNP, continual learning with node-importance based pruning (Golkar et al.
// 2019). No authors' code exists: DESIGN.md §4.3 is the specification.
//
// Every hidden unit (the model's GatedReLU hooks) is free or owned by the
// task that claimed it. While task t trains, an L1 penalty
// alpha * sum |h| on the free units' activations (per unit: the mean over a
// convolution's positions; summed over units, averaged over samples) makes
// the task use few of them. After the task, a free unit stays active when its
// mean absolute activation over the task's training data reaches the
// threshold; the threshold is the largest whose validation accuracy stays
// within clnp.margin points of the network before pruning ("graceful
// forgetting"). Active units become owned by t; the others return to the free
// pool with their outgoing weights into owned units (and into task t's head)
// zeroed. Later tasks train only the weights into free units: the weights
// into owned units keep their values (active -> active) or stay zero
// (free -> active), so the units of earlier tasks compute exactly what they
// did. Task i is evaluated through the units owned by tasks up to i: its
// accuracy never changes after it was trained (BWT exactly 0).
#include <boost/program_options.hpp>

#include <functional>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

struct ClnpOptions {
  double alpha = 1e-4;   // L1 strength on the free units' activations
  double margin = 1.0;   // m: accuracy points the pruned network may lose on validation data
  int64_t chunk = 256;   // samples per chunk of the activation and accuracy passes
};

// The threshold search's answer: units whose mean absolute activation is at
// most `pruned_up_to` are inactive (none when it is negative).
struct ClnpThreshold {
  double pruned_up_to = -1.0;
  double accuracy = 0.0;  // validation accuracy (fraction) with those units off
};

// The largest prefix of `sorted_values` (ascending, distinct) that may be
// pruned: accuracy_without(j) is the accuracy with every unit of value <=
// sorted_values[j] off (j = -1: none off); the answer is the largest j whose
// accuracy is at least `floor`, by bisection (accuracy falls as more units go).
ClnpThreshold clnp_search_threshold(const std::vector<double>& sorted_values, double floor,
                                    const std::function<double(int64_t j)>& accuracy_without);

class ClnpStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static ClnpOptions read_options(const boost::program_options::variables_map& values);
  explicit ClnpStrategy(ClnpOptions options);
  std::string name() const override { return "clnp"; }

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
  // clnp_units: per task and layer, the units that task claimed, those owned
  // by earlier tasks (reused, frozen) and those left free after it, from the owners.
  std::vector<ResultTable> result_tables(int tasks_trained) const override;

  // One int64 [units] tensor per hidden layer: the task that owns each unit, -1 when free.
  const NamedTensors& owners() const { return owners_; }

 private:
  void check_model(const StageContext& ctx) const;
  std::vector<torch::Tensor> free_units() const;  // float 0/1 per layer
  // Float 0/1 per layer: the units owned by tasks 0..task (task i's inference network).
  std::vector<torch::Tensor> gates_for_task(int task) const;
  // Mean absolute activation of every unit over `data` (per layer), identical on every rank.
  std::vector<torch::Tensor> mean_activations(StageContext& ctx, const TaskData& data);
  // Accuracy on `data` through `head` with every unit's gate set from `gates`.
  double gated_accuracy(StageContext& ctx, const TaskData& data, int64_t head, const std::vector<torch::Tensor>& gates);
  void set_gates(const ContinualNet& model, const std::vector<torch::Tensor>& gates) const;

  ClnpOptions options_;
  NamedTensors owners_;
  NamedTensors task_start_;  // the shared parameters when the task started: owned units' weights return to these
};

}  // namespace clx
