#pragma once
// The data-parallel continual-learning loop. The trainer owns the accuracy
// matrix and evaluates every task after every stage, so every algorithm is
// scored identically.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>

#include "runtime/checkpoint.h"
#include "runtime/communicator.h"
#include "runtime/continual_net.h"
#include "runtime/data/task_stream.h"
#include "runtime/device.h"
#include "runtime/gradient_reducer.h"
#include "runtime/logging.h"
#include "runtime/metrics.h"
#include "runtime/objective.h"
#include "runtime/strategy.h"

namespace clx {

// The trainer's optimizer (train.optimizer), made afresh for every stage.
enum class OptimizerKind { Sgd, Adam };
// "sgd" | "adam"; anything else throws clx::Error naming train.optimizer.
OptimizerKind parse_optimizer_kind(const std::string& text);
std::string to_string(OptimizerKind kind);

// The split every score is computed on (eval.split): test data, or the
// validation data held out of training (for tuning, never test).
enum class EvalSplit { Test, Validation };
// "test" | "validation"; anything else throws clx::Error naming eval.split.
EvalSplit parse_eval_split(const std::string& text);
std::string to_string(EvalSplit split);

// Where a stage stands, as a checkpoint's `phase` attribute records it: in
// the stage's training epochs, after them (what a strategy runs in
// after_task: pruning retraining, importance passes), or between stages.
enum class StagePhase { Training, AfterTask, BetweenTasks };
std::string to_string(StagePhase phase);  // "training" | "after_task" | "between_tasks"
// A checkpoint's phase text; anything else (a damaged file, or one another
// kind of run wrote) throws clx::Error naming `checkpoint`.
StagePhase parse_stage_phase(const std::string& text, const std::string& checkpoint);

struct TrainerConfig {
  int64_t epochs = 1;
  int64_t batch_size = 128;  // global: split evenly across ranks
  int64_t eval_batch_size = 1024;
  OptimizerKind optimizer = OptimizerKind::Sgd;
  double lr = 0.01;
  // Staircase decay within a stage: lr * lr_decay^floor(e / lr_decay_epochs),
  // e = the stage's epochs so far (main training, then any retraining a
  // strategy asks for); every stage starts again from lr.
  double lr_decay = 1.0;
  int64_t lr_decay_epochs = 1;
  double momentum = 0.0;
  // Adam's beta1 and beta2 (train.adam_betas): GAN generators train with beta1 0.5.
  double adam_beta1 = 0.9, adam_beta2 = 0.999;
  double weight_decay = 0.0;
  uint64_t seed = 1;
  HeadLayout heads = HeadLayout::Multi;
  // Called on rank 0 before every checkpoint is written; what it throws stops
  // every rank (train: the run folder's lock file must still be in place).
  std::function<void()> before_checkpoint;
  // Where the model and data live (the caller moves the model there first).
  torch::Device device = torch::kCPU;
  Precision precision = Precision::Fp32;
  EvalSplit eval_split = EvalSplit::Test;
  int64_t bucket_bytes = GradientReducer::kDefaultBucketBytes;
  // All-reduce gradient buckets while backward is still running.
  bool overlap_allreduce = true;
  // Data decoded on demand (image folders): the next batch is read on a helper
  // thread while the current step trains. The batches are the same either way.
  bool prefetch = true;
  double progress_seconds = 10.0;
  bool check_consistency = true;  // compare state fingerprints across ranks after each stage
  // Checkpoints: none when checkpoint_dir is empty. Written after every stage
  // and, when checkpoint_every_steps > 0, every that many optimizer steps.
  std::string checkpoint_dir;
  int64_t checkpoint_every_steps = 0;
  int64_t keep_checkpoints = 3;
  std::string config_text;  // the effective configuration, recorded in checkpoints
};

// Throws clx::Error naming the option when a value is impossible.
void validate_trainer_config(const TrainerConfig& config, int world_size);
// The learning rate of the stage's epoch `stage_epoch` (0-based) under the staircase decay.
double stage_learning_rate(const TrainerConfig& config, int64_t stage_epoch);

struct StageRecord {
  std::vector<int> tasks;
  double train_seconds = 0.0;
  double eval_seconds = 0.0;
  double final_loss = 0.0;            // mean training loss of the stage's last epoch
  double final_train_accuracy = 0.0;  // on the samples seen in the last epoch
};

// The ranks agreed to stop (SIGUSR1/SIGTERM) and a checkpoint was written.
class PreemptedError : public CollectiveError {
 public:
  using CollectiveError::CollectiveError;
};

struct RunResult {
  // The score matrix: accuracy for classification, FID for generation (score.name).
  AccuracyMatrix matrix;
  ScoreKind score;
  std::vector<StageRecord> stages;
  std::vector<std::string> task_names;
  double total_seconds = 0.0;
  std::vector<ResultTable> tables;  // the strategy's own (Strategy::result_tables)
};

class Trainer {
 public:
  // `objective` (kept by reference) says what is trained and how it is
  // scored; without one the trainer classifies (ClassificationObjective).
  Trainer(TrainerConfig config, Communicator& comm, const TaskStream& stream, std::shared_ptr<ContinualNet> model,
          Strategy& strategy, Logger& log, Objective* objective = nullptr);

  // Trains every stage; with `resume`, continues from that checkpoint instead
  // (between tasks, mid-epoch or mid-retraining) and produces the same
  // accuracy matrix as an uninterrupted run.
  // `resume_path` names the checkpoint file in messages.
  RunResult run(const CheckpointState* resume = nullptr, const std::string& resume_path = "checkpoint");
  // A flag raised by a signal handler: at the next step the ranks agree to
  // stop, write a checkpoint and throw PreemptedError.
  void set_stop_flag(const std::atomic<int>* flag) { stop_flag_ = flag; }

  // The objective's score of every task (classification: accuracy, a
  // fraction, on the evaluation split), as evaluated after training up to task
  // `trained_up_to` (-1: before any training); world-size independent.
  std::vector<double> evaluate_all(int trained_up_to);
  // One training stage (exposed for tests): trains `tasks` for config.epochs.
  StageRecord train_stage(int stage, const std::vector<int>& tasks);
  // Fingerprint lines ("name hex") of parameters, buffers and strategy state.
  std::string state_fingerprints() const;
  void broadcast_parameters();
  // Replaces every buffer by its mean over the ranks, in one fused all-reduce
  // (integer buffers: the rounded mean). BatchNorm's running statistics follow
  // each rank's local batches and would drift apart; the trainer calls this
  // after every epoch, so evaluation, importance passes and the cross-rank
  // fingerprints see one model. Nothing to do for models without buffers.
  void average_buffers();

 private:
  // Where a stage stands: enough to continue it exactly.
  struct Position {
    StagePhase phase = StagePhase::Training;  // Training or AfterTask
    int64_t sampler_epoch = 0;       // the current epoch's number in the sampler
    int64_t epoch_in_call = 0;       // epoch within the current train_epochs call
    int64_t batch = 0;               // next batch of that epoch
    int64_t step = 0;                // optimizer steps in the stage
    double loss = 0.0, correct = 0.0, seen = 0.0;  // the epoch's sums so far
  };
  struct StageRun;
  using LocalBatch = TrainingBatch;
  // What one step contributes to the epoch's sums (global values, after the all-reduce).
  struct StepSums {
    double loss = 0.0, correct = 0.0;
    bool stop = false;
  };

  void train_epochs(StageRun& run, int64_t count, const std::string& label);
  // Trains epoch `position.epoch_in_call` of a train_epochs call of `count` epochs, from batch `position.batch` on.
  void train_epoch(StageRun& run, Position& position, int64_t count, const std::string& label);
  StepSums train_step(StageRun& run, int64_t batch, const std::string& epoch_name);
  LocalBatch load_batch(const StageRun& run, const torch::Tensor& positions) const;
  // Batch `batch` of the current epoch (the one read ahead when there is one),
  // and the next one started on the helper thread when the stage prefetches.
  LocalBatch take_batch(StageRun& run, int64_t batch);
  int64_t head_for(int task) const { return config_.heads == HeadLayout::Multi ? task : 0; }
  const TaskData& eval_data(int task) const;
  void restore(const CheckpointState& checkpoint, const std::string& path);
  void save_checkpoint(int stage, const Position* position, torch::optim::Optimizer* optimizer);
  bool ranks_agree_to_stop();
  // Rank 0's log: what is being trained (strategy, model, tasks, ranks, data sizes).
  void log_what_is_trained(const std::vector<std::vector<int>>& stages) const;
  double seconds_running() const;

  TrainerConfig config_;
  Communicator& comm_;
  const TaskStream& stream_;
  std::shared_ptr<ContinualNet> model_;
  Strategy& strategy_;
  Logger& log_;
  ClassificationObjective classification_;  // the objective when the caller gives none
  Objective& objective_;
  RunResult progress_;                         // the accuracy matrix and records so far
  std::optional<Position> resume_position_;    // consumed when the resumed stage reaches it
  torch::Tensor resume_optimizer_;             // serialised optimizer state of the resumed stage
  std::unique_ptr<CheckpointDirectory> checkpoints_;
  const std::atomic<int>* stop_flag_ = nullptr;
  std::chrono::steady_clock::time_point run_start_ = std::chrono::steady_clock::now();
  SequenceClock clock_;  // "task ~X left, sequence ~Y left" in the per-epoch log lines
};

// Heads the model needs for `layout`: one per task, or one over every class.
std::vector<int64_t> head_sizes_for(const TaskStream& stream, HeadLayout layout);

}  // namespace clx
