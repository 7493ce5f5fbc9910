#pragma once
// ANPyC (Peng et al., IEEE TNNLS 2021): synaptic consolidation with a
// label-free entropy-Taylor importance, optionally with adversarial neural
// pruning that frees part of each task's weights for later tasks.
// Definitions: DESIGN.md 4.2; where the paper is silent the defaults
// reproduce the authors' released code.
#include <boost/program_options.hpp>

#include "algorithms/importance.h"
#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

// Pruning thresholds: a percentile per tensor, or over every tensor pooled.
enum class PruningThreshold { PerTensor, Global };
// Evaluation of task i sees the whole network (None, both sources), or only
// the weights first used by tasks 1..i (PerTask, as PackNet).
enum class InferenceMasks { None, PerTask };

struct AnpycOptions {
  double lambda = 3.0;  // consolidation strength (released code, with the summed entropy)
  EntropyTaylorSettings importance;  // batch 100, s = +1, summed entropy, h = g^2
  Accumulation accumulate = Accumulation::Sum;  // Eq. 8 (max: released no-pruning script)
  PenaltyStep penalty_step = PenaltyStep::Explicit;
  bool prune = true;
  double first_budget = 0.5;  // P_1 as a fraction (a whole percent)
  double decay = 0.8;         // P_t = floor(decay * P_{t-1}) in whole percent
  double step = 0.1;          // pruning step as a fraction (a whole percent)
  int64_t retrain_epochs = 30;  // after each pruning step (released code: 30)
  bool retrain_until_recovered = false;  // stop retraining once the training loss is back
  PruningThreshold threshold = PruningThreshold::PerTensor;
  InferenceMasks inference_masks = InferenceMasks::None;
};

class AnpycStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  // Throws clx::Error naming the option of any impossible value.
  static AnpycOptions read_options(const boost::program_options::variables_map& values);

  explicit AnpycStrategy(AnpycOptions options);
  std::string name() const override { return "anpyc"; }

  void before_task(StageContext& ctx) override;
  void after_backward(StageContext& ctx) override;
  void after_step(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  void before_evaluate(ContinualNet& model, int task) override;
  void after_evaluate(ContinualNet& model, int task) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  const NamedTensors& omega() const { return omega_; }
  const NamedTensors& masks() const { return masks_; }
  // uint8 per weight: the task (1-based) that first used it, 0 = never used
  // (inference_masks = per_task only; empty otherwise).
  const NamedTensors& first_used() const { return first_used_; }

 private:
  void ensure_initialised(const ContinualNet& model);
  void prune_after_task(StageContext& ctx, int task);
  void prune_step(StageContext& ctx, int task, int percent);
  void retrain(StageContext& ctx, int percent);
  std::vector<QuadraticTerm> penalty_terms() const;

  AnpycOptions options_;
  int first_budget_percent_ = 50, step_percent_ = 10;  // the options in whole percent
  NamedTensors omega_;       // Omega(1:t): accumulated importance
  NamedTensors theta_old_;   // theta when the current task started
  NamedTensors masks_;       // float: 1 = used, 0 = free
  NamedTensors first_used_;  // see first_used()
  NamedTensors evaluated_weights_;  // the weights put aside while a task is evaluated with its masks
  // Progress of the pruning round after a task, kept so that a run resumed
  // from a checkpoint taken during retraining continues where it stopped.
  NamedTensors candidates_;  // bool: free before this task
  NamedTensors freed_;       // bool: freed so far in this round
  int64_t steps_done_ = 0;   // pruning steps fully done (pruned and retrained)
  int64_t retrain_epochs_done_ = 0;  // of the current step (retrain_until_recovered)
  double loss_before_step_ = 0.0;    // training loss before the current step
  bool retraining_ = false;
};

}  // namespace clx
