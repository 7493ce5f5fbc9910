#pragma once
// ANPyC (Peng et al., IEEE TNNLS 2021): synaptic consolidation with a
// label-free entropy-Taylor importance, optionally with adversarial neural
// pruning that frees part of each task's weights for later tasks.
// Definitions: DESIGN.md 4.2; where the paper is silent the defaults
// reproduce the authors' released code.
#include <boost/program_options.hpp>

#include "algorithms/importance.h"
#include "algorithms/parameter_tensors.h"
#include "algorithms/pruning.h"
#include "runtime/strategy.h"

namespace clx {

// Pruning thresholds: a percentile per tensor, or over every tensor pooled.
enum class PruningThreshold { PerTensor, Global };
// When pruning happens. Released: after every task but the last, steps up to
// the decaying budget (DESIGN.md 4.2). Compression (the paper's Table IV): a
// network trained on one task is pruned in rounds of compression_schedule,
// each round computing Omega on the current weights, freeing what lies below
// the round's percentile (the task-1 rule), zeroing it and retraining with the
// mask; the accuracy after each round is recorded (result table "compression").
enum class PruneSchedule { Released, Compression };
// Evaluation of task i sees the whole network (None, both sources), or only
// the weights first used by tasks 1..i (PerTask, as PackNet).
enum class InferenceMasks { None, PerTask };

struct AnpycOptions {
  double lambda = 3.0;  // consolidation strength (released code, with the summed entropy)
  EntropyTaylorSettings importance;  // batch 100, s = +1, summed entropy, h = g^2
  Accumulation accumulate = Accumulation::Sum;  // Eq. 8 (max: released no-pruning script)
  PenaltyStep penalty_step = PenaltyStep::Explicit;
  bool prune = true;
  PruneSchedule prune_schedule = PruneSchedule::Released;
  // Compression: percent of the weights freed after each round, cumulative.
  // Five rounds that each keep about 45% of what is left, ending at the
  // paper's 57x (98.25% freed); the paper gives its final ratio, not its rounds.
  std::vector<double> compression_schedule{55, 80, 91, 96, 98.25};
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

  void check_stream(const TaskStream& stream) const override;
  void before_task(StageContext& ctx) override;
  void after_backward(StageContext& ctx) override;
  void after_step(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  void before_evaluate(ContinualNet& model, int task) override;
  void after_evaluate(ContinualNet& model, int task) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  // prune_schedule = compression: the table "compression" of the rounds so far.
  std::vector<ResultTable> result_tables(int tasks_trained) const override;

  const NamedTensors& omega() const { return omega_; }
  const NamedTensors& masks() const { return masks_; }
  // uint8 per weight: the task (1-based) that first used it, 0 = never used
  // (inference_masks = per_task only; empty otherwise).
  const NamedTensors& first_used() const { return first_used_; }
  // prune_schedule = compression: round 0 (before pruning), then one per round done.
  const std::vector<CompressionRound>& compression_rounds() const { return compression_rounds_; }

 private:
  void ensure_initialised(const ContinualNet& model);
  bool compressing() const { return options_.prune && options_.prune_schedule == PruneSchedule::Compression; }
  void prune_after_task(StageContext& ctx, int task);
  void prune_step(StageContext& ctx, int task, double percent);
  void retrain(StageContext& ctx, double percent);
  // Records and logs a compression round: what freed_ leaves and the accuracy now.
  void record_compression_round(StageContext& ctx, int task, double percent, std::optional<double> accuracy_after_pruning);
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
  // Compression: the rounds recorded so far, and the accuracy right after the
  // current round's pruning (kept for a resume inside its retraining).
  std::vector<CompressionRound> compression_rounds_;
  double accuracy_after_pruning_ = 0.0;
};

}  // namespace clx
