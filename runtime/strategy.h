#pragma once
// Strategy: the hooks the trainer calls. Algorithms (algorithms/) implement
// it; the runtime knows the interface only, never a particular algorithm.
//
// Call order per training stage (a stage is one task, or all tasks for joint):
//   before_task
//   per step: before_forward -> forward -> penalty_loss -> backward
//             -> gradient all-reduce -> after_backward -> optimizer step -> after_step
//   after_task (importance, pruning, snapshots)
// and around the evaluation of each task: before_evaluate -> after_evaluate.
// Everything a strategy keeps lives in named tensors (state()), so
// checkpoints and cross-rank fingerprints need no per-algorithm code.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "runtime/data/task_stream.h"
#include "runtime/named_tensors.h"

namespace clx {

class Communicator;
class ContinualNet;
class Logger;

// What the trainer exposes to a strategy during a stage.
struct StageContext {
  ContinualNet& model;
  Communicator& comm;
  const TaskStream& stream;
  Logger& log;
  HeadLayout heads;
  int stage = 0;           // 0-based stage index
  std::vector<int> tasks;  // tasks trained in this stage
  int64_t epoch = 0;       // within the current call of train_epochs
  int64_t epochs_in_call = 0;  // the epochs that call trains (train.epochs for the main training)
  int64_t step = 0;        // optimizer steps within the stage
  int64_t batch = 0;       // the current step's batch within its epoch (0-based)
  int64_t batches_per_epoch = 0;
  std::vector<torch::Tensor> trainable;  // parameters the optimizer updates in this stage
  int64_t batch_size = 0;  // global training batch (also used by importance passes)
  uint64_t seed = 0;       // train.seed
  double lr = 0.0;         // the optimizer's current learning rate (train.lr after the staircase decay)
  // The rank's compute device: where the model lives and where every strategy
  // tensor that meets its parameters must live (DESIGN.md §5).
  torch::Device device = torch::kCPU;
  // Mean training loss of the last finished epoch of this stage (main training
  // or a train_epochs call); 0 before the first.
  double last_epoch_loss = 0.0;

  // Valid from before_forward to penalty_loss: this rank's share of the
  // current global batch (positions into the stage's training data, the
  // concatenation of its tasks' training splits) and loss_scale; during
  // penalty_loss only, the trunk features computed for it (with graph). A
  // data-dependent penalty sums over local samples and multiplies by
  // loss_scale, so that averaging over ranks gives the global-batch mean.
  torch::Tensor batch_positions;
  torch::Tensor batch_features;
  double loss_scale = 1.0;

  // Valid during after_task: trains the stage's data for more epochs with
  // every hook (pruning's retraining). `label` names the epochs in logs.
  std::function<void(int64_t epochs, const std::string& label)> train_epochs;
  // True when after_task is re-entered from a checkpoint taken inside it (during
  // a train_epochs call): the strategy continues from its saved progress, and the
  // first train_epochs call continues from the saved epoch and batch.
  bool resuming_after_task = false;
  // Valid during after_task: the accuracy (fraction) of every task on the
  // evaluation split with the current weights, evaluated as after a stage
  // (through before_evaluate/after_evaluate). A collective: every rank calls it.
  std::function<std::vector<double>()> evaluate;

  // Set by a generation objective (DESIGN.md §4.4), empty for classifiers:
  // importance passes then differentiate, for `task` and positions p of its
  // training data, what the generator makes from noise draw p instead of the
  // model's logits on sample p: generated_logits gives a classifier's logits
  // on the generated images (ANPyC's entropy, EWC's log-likelihood),
  // generated_output the images themselves, flattened (MAS's output).
  std::function<torch::Tensor(int task, const torch::Tensor& positions)> generated_logits, generated_output;

  // The head that answers for `task` in this layout.
  int64_t head_for(int task) const { return heads == HeadLayout::Multi ? task : 0; }
  // Inputs of `data` at `positions`, on the compute device (data decoded on
  // the host is copied there; in-memory data already lives there).
  torch::Tensor inputs(const TaskData& data, const torch::Tensor& positions) const {
    return data.inputs(positions).to(device, /*non_blocking=*/true);
  }
};

// A table a strategy reports beside the accuracy matrix (ANPyC's compression
// rounds). The run folder gets it as <name>.csv and under "tables" in
// results.json; an empty cell (std::monostate) is an empty CSV field and a JSON null.
struct ResultTable {
  using Cell = std::variant<std::monostate, int64_t, double, std::string>;
  std::string name;
  std::vector<std::string> columns;
  std::vector<std::vector<Cell>> rows;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  // Head layout used when model.heads = auto.
  virtual HeadLayout default_heads() const { return HeadLayout::Multi; }
  // Tasks trained together in each stage. Default: one stage per task.
  virtual std::vector<std::vector<int>> stages(int num_tasks) const {
    std::vector<std::vector<int>> one_per_task;
    for (int task = 0; task < num_tasks; ++task) one_per_task.push_back({task});
    return one_per_task;
  }
  // Throws clx::Error naming the option when the strategy, as configured,
  // cannot train `stream`. The launcher calls it on every rank before
  // training starts, so a refusal is one message, not a failed rank.
  virtual void check_stream(const TaskStream& stream) const {}
  // Whether the shared trunk is trained in `stage` (SGD-F freezes it after task 1).
  virtual bool trains_shared_parameters(int stage) const { return true; }

  virtual void before_task(StageContext& context) {}
  // Before each training step's forward pass (HAT sets its gates for the batch).
  virtual void before_forward(StageContext& context) {}
  // The weight of the objective's own loss in this step (DGR's r in
  // r L_new + (1 - r) L_replay, the replay term coming from penalty_loss); 1 for every other strategy.
  virtual double task_loss_weight(const StageContext& context) const { return 1.0; }
  // An extra loss term for this step (undefined tensor: none). It must be the
  // same on every rank: the trainer adds it once per rank before averaging.
  virtual torch::Tensor penalty_loss(StageContext& context) { return {}; }
  // After gradients were averaged across ranks: corrections and masks.
  virtual void after_backward(StageContext& context) {}
  virtual void after_step(StageContext& context) {}
  virtual void after_task(StageContext& context) {}
  // Around the evaluation of `task` (after every stage, and once before any):
  // a strategy may change the weights the evaluation sees (ANPyC's per-task
  // inference masks) and must restore them in after_evaluate.
  virtual void before_evaluate(ContinualNet& model, int task) {}
  virtual void after_evaluate(ContinualNet& model, int task) {}

  // Named tensors the strategy keeps (checkpointed and fingerprinted); scalars
  // that a resume needs are 0-dim tensors.
  virtual NamedTensors state() const { return {}; }
  // Restores what state() returned (from a checkpoint), replacing the current state.
  virtual void load_state(const NamedTensors& state) {}
  // The strategy's own result tables (none by default), derived from its
  // state, so that a resumed run writes the same tables; the trainer collects
  // them into RunResult::tables when the run ends, after tasks 0..tasks_trained-1.
  virtual std::vector<ResultTable> result_tables(int tasks_trained) const { return {}; }
};

}  // namespace clx
