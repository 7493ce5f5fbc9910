#pragma once
// ANPyC (Peng et al., IEEE TNNLS 2021): synaptic consolidation with a
// label-free entropy-Taylor importance, optionally with adversarial neural
// pruning that frees part of each task's weights for later tasks.
// Definitions: DESIGN.md 4.2.
#include <boost/program_options.hpp>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

struct AnpycOptions {
  double lambda = 3.0;              // consolidation strength
  double sign = -1.0;               // s in omega = max(0, s*g*theta + 0.5*g^2*theta^2); +1 = released code
  std::string accumulate = "sum";  // sum (paper) | max (released no-pruning script)
  bool prune = true;
  double first_budget = 0.5;  // P_1
  double decay = 0.8;         // P_t = P_1 * decay^(t-1)
  double step = 0.1;          // pruning step
  int64_t retrain_epochs = 1; // epochs of retraining after each pruning step
  std::string threshold = "per_tensor";  // per_tensor | global
  bool prune_biases = false;  // masks on weight matrices only by default
};

class AnpycStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static AnpycOptions read_options(const boost::program_options::variables_map& values);

  explicit AnpycStrategy(AnpycOptions options);
  std::string name() const override { return "anpyc"; }

  void before_task(StageContext& ctx) override;
  void after_backward(StageContext& ctx) override;
  void after_step(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  const NamedTensors& omega() const { return omega_; }
  const NamedTensors& masks() const { return masks_; }

 private:
  void ensure_initialised(const ContinualNet& model);
  void prune_after_task(StageContext& ctx, int task);

  AnpycOptions options_;
  NamedTensors omega_;      // Omega(1:t): accumulated importance
  NamedTensors theta_old_;  // theta when the current task started
  NamedTensors masks_;      // 1 = used, 0 = free
  NamedTensors prunable_;   // bool: tensors (elements) that pruning may free
  // Progress of the pruning round after a task, kept so that a run resumed
  // from a checkpoint taken during retraining continues where it stopped.
  NamedTensors candidates_;  // bool: free before this task
  NamedTensors freed_;       // bool: freed so far in this round
  int64_t steps_done_ = 0;   // pruning fractions fully done (pruned and retrained)
  bool retraining_ = false;
};

}  // namespace clx
