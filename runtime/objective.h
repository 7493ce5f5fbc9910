#pragma once
// Objective: what a task trains and how it is scored (DESIGN.md §3). The
// trainer owns the loop (sampling, the gradient all-reduce, strategy hooks,
// checkpoints, preemption, fingerprints); the objective owns the two things
// that differ between classification and generation:
//   local_loss  the loss of this rank's share of a global batch, summed over
//               its samples (the trainer scales it so that the all-reduced
//               gradient is the global-batch mean), plus one summed statistic
//               the epoch line reports;
//   evaluate    the score of every task after a stage: the row the trainer
//               appends to its score matrix (accuracy for classification,
//               FID for generation), a collective every rank calls.
// ClassificationObjective is the cross-entropy / accuracy objective every
// classification run uses; generation objectives live in models/ (they need
// the generative networks and the FID feature classifier).
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/data/task_stream.h"
#include "runtime/device.h"
#include "runtime/named_tensors.h"
#include "runtime/strategy.h"

namespace clx {

class Communicator;
class ContinualNet;
class Strategy;

// This rank's share of one global batch, on the compute device, grouped by
// task (a joint stage mixes tasks; each group goes through its task's head).
struct TrainingBatch {
  torch::Tensor positions;  // [n] int64: into the stage's data (its tasks' training splits, concatenated)
  torch::Tensor inputs;     // [n, ...]: every group's inputs, concatenated in group order
  torch::Tensor input_positions;  // [n] int64: the stage position of each row of inputs (group order)
  std::vector<torch::Tensor> labels;  // per group [n_g] int64, in the head's label space
  std::vector<int64_t> group_tasks, group_counts;
  torch::Device device = torch::kCPU;  // the compute device (also when this rank has no samples)
  int64_t global_count = 0;  // samples in the global batch, every rank's together
};

// What a stage gives an objective that trains networks of its own (a GAN's
// critic): the communicator to all-reduce their gradients over, the device
// and the gradient bucket size.
struct ObjectiveStage {
  Communicator* comm = nullptr;
  torch::Device device = torch::kCPU;
  int64_t bucket_bytes = 0;
  int stage = 0;
  bool resumed = false;  // the stage continues from a checkpoint taken inside it
};

struct LocalLoss {
  torch::Tensor loss_sum;       // fp32 scalar with graph: summed over this rank's samples
  torch::Tensor statistic_sum;  // fp32 scalar, no graph: summed over this rank's samples
  // What a data-dependent strategy penalty reads (StageContext::batch_features):
  // the trunk features of the batch, with graph; undefined when the objective has none.
  torch::Tensor features;
};

// How a score matrix reads: classification's accuracy (fractions, shown as
// percent, higher is better) or generation's FID (shown as is, lower is better).
struct ScoreKind {
  std::string name = "accuracy";      // names the matrix in logs and results ("accuracy", "fid")
  bool higher_is_better = true;
  double display_scale = 100.0;       // logs and tables show value * display_scale
  std::string statistic = "train accuracy";  // the epoch line's second figure
  bool statistic_is_fraction = true;  // shown as a percentage
};

// What an evaluation may read. eval_data(task) is the split scores are
// computed on (test, or validation when eval.split = validation).
struct EvaluationContext {
  ContinualNet& model;
  Communicator& comm;
  const TaskStream& stream;
  Strategy& strategy;
  std::function<const TaskData&(int task)> eval_data;
  HeadLayout heads = HeadLayout::Multi;
  torch::Device device = torch::kCPU;
  Precision precision = Precision::Fp32;
  int64_t batch_size = 1024;
  uint64_t seed = 1;       // train.seed
  int trained_up_to = -1;  // the last task trained so far (-1: before any training)
  int64_t head_for(int task) const { return heads == HeadLayout::Multi ? task : 0; }
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;
  virtual ScoreKind score_kind() const = 0;
  // Throws clx::Error naming the option when the objective cannot train this
  // model on this stream in this head layout (the launcher calls it on every rank).
  virtual void check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const {}
  // Builds what the objective trains itself (a GAN's critic) for this model
  // and stream: after check, on every rank, before a checkpoint is read (the
  // launcher calls it then; the trainer calls it again, which must change nothing).
  virtual void prepare(const ContinualNet& model, const TaskStream& stream) {}
  // At the start of every epoch: `epoch_seed` is a function of (train.seed,
  // stage, epoch) only, `stage_samples` the size of the stage's training data,
  // so per-sample randomness indexed by position is the same on any rank count.
  virtual void begin_epoch(uint64_t epoch_seed, int64_t stage_samples) {}
  // Under the trainer's autocast scope; `head_for(task)` names the task's head.
  virtual LocalLoss local_loss(ContinualNet& model, const TrainingBatch& batch,
                               const std::function<int64_t(int)>& head_for) = 0;
  // The score of every task (future ones included). A collective: every rank
  // calls it and gets the same row, whatever the number of ranks.
  virtual std::vector<double> evaluate(const EvaluationContext& context) = 0;

  // What importance passes differentiate on a generator (DESIGN.md §4.4),
  // given to strategies as StageContext::generated_logits / generated_output:
  // for `task` and positions p, a classifier's logits on the images generated
  // from noise draw p, and those images flattened. The draws are a function
  // of (train.seed, task, p) only. Empty for classification: passes use the
  // model's logits on the task's training samples.
  // What the objective records beside the score matrix (a generator's
  // generated accuracy), as text the trainer keeps in every checkpoint, so a
  // resumed run reports what an uninterrupted one does; and the tables it
  // makes of it, added to the run's results (RunResult::tables).
  virtual std::string state_text() const { return ""; }
  virtual void load_state_text(const std::string& text) {}
  virtual std::vector<ResultTable> result_tables() const { return {}; }

  // Networks the objective trains besides the model (a GAN's critic), each
  // with its own optimizer; local_loss steps them. begin_stage starts a
  // stage (a fresh optimizer, as the trainer's); trained_state gives their
  // parameters and buffers as live tensors, which checkpoints store beside
  // the model's (checkpointed_model_state), restores copy into and the
  // cross-rank fingerprints cover; optimizer_archive is their optimizer state
  // within a stage (serialised bytes, uint8), which a mid-stage checkpoint
  // stores and resume_optimizer hands back before the resumed stage begins.
  virtual void begin_stage(const ObjectiveStage& stage) {}
  virtual NamedTensors trained_state() { return {}; }
  virtual torch::Tensor optimizer_archive() const { return {}; }
  virtual void resume_optimizer(const torch::Tensor& archive) {}

  using GeneratedForward = std::function<torch::Tensor(int task, const torch::Tensor& positions)>;
  virtual GeneratedForward generated_logits(ContinualNet& model, uint64_t seed) { return {}; }
  virtual GeneratedForward generated_output(ContinualNet& model, uint64_t seed) { return {}; }
};

// The tensors a checkpoint stores under /model: the model's parameters and
// buffers, then the objective's trained networks' (names prefixed "objective.").
// Live tensors: a restore copies into them.
NamedTensors checkpointed_model_state(const ContinualNet& model, Objective* objective);

// The accuracy (fraction) of every task on its evaluation split, each rank
// scoring its shard and the counts summed (a collective): `logits(task,
// inputs)` answers a batch of task `task`'s inputs, between the strategy's
// before_evaluate and after_evaluate for that task. In the single-head
// layout only classes seen so far (tasks up to max(task, trained_up_to)) may
// be answered.
using TaskLogits = std::function<torch::Tensor(int task, const torch::Tensor& inputs)>;
std::vector<double> sharded_accuracy(const EvaluationContext& context, const TaskLogits& logits);

// Cross-entropy on each group's head; the statistic is the number of correct
// answers; the score is accuracy (fraction) on each task's evaluation split,
// every rank evaluating its shard and the counts summed. In the single-head
// layout only classes seen so far may be answered.
class ClassificationObjective : public Objective {
 public:
  std::string name() const override { return "classification"; }
  ScoreKind score_kind() const override { return ScoreKind{}; }
  LocalLoss local_loss(ContinualNet& model, const TrainingBatch& batch,
                       const std::function<int64_t(int)>& head_for) override;
  std::vector<double> evaluate(const EvaluationContext& context) override;
};

}  // namespace clx
