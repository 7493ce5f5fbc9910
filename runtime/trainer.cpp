#include "runtime/trainer.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "runtime/choice.h"
#include "runtime/collectives.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"
#include "runtime/fingerprint.h"
#include "runtime/text.h"

namespace clx {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainerConfig& config,
                                                        const std::vector<torch::Tensor>& parameters) {
  switch (config.optimizer) {
    case OptimizerKind::Sgd:
      return std::make_unique<torch::optim::SGD>(
          parameters, torch::optim::SGDOptions(config.lr).momentum(config.momentum).weight_decay(config.weight_decay));
    case OptimizerKind::Adam:
      return std::make_unique<torch::optim::Adam>(parameters,
                                                  torch::optim::AdamOptions(config.lr)
                                                      .betas({config.adam_beta1, config.adam_beta2})
                                                      .weight_decay(config.weight_decay));
  }
  throw Error("internal: unknown optimizer kind");
}

std::string task_list(const std::vector<int>& tasks) {
  if (tasks.size() == 1) return "task " + std::to_string(tasks[0] + 1);
  return "tasks " + std::to_string(tasks.front() + 1) + "-" + std::to_string(tasks.back() + 1);
}

std::string percent(double fraction) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(2) << 100.0 * fraction << "%";
  return text.str();
}

// The epoch line's second figure: "train accuracy 97.25%" or "kl 6.8892".
std::string statistic_text(const ScoreKind& kind, double value) {
  if (kind.statistic_is_fraction) return kind.statistic + " " + percent(value);
  std::ostringstream text;
  text << kind.statistic << " " << std::fixed << std::setprecision(4) << value;
  return text.str();
}

}  // namespace

OptimizerKind parse_optimizer_kind(const std::string& text) {
  return parse_choice<OptimizerKind>("train.optimizer", text, {{"sgd", OptimizerKind::Sgd}, {"adam", OptimizerKind::Adam}});
}

std::string to_string(OptimizerKind kind) { return kind == OptimizerKind::Adam ? "adam" : "sgd"; }

EvalSplit parse_eval_split(const std::string& text) {
  return parse_choice<EvalSplit>("eval.split", text, {{"test", EvalSplit::Test}, {"validation", EvalSplit::Validation}});
}

std::string to_string(EvalSplit split) { return split == EvalSplit::Validation ? "validation" : "test"; }

std::string to_string(StagePhase phase) {
  switch (phase) {
    case StagePhase::Training: return "training";
    case StagePhase::AfterTask: return "after_task";
    case StagePhase::BetweenTasks: return "between_tasks";
  }
  throw Error("internal: unknown StagePhase");
}

StagePhase parse_stage_phase(const std::string& text, const std::string& checkpoint) {
  for (StagePhase phase : {StagePhase::Training, StagePhase::AfterTask, StagePhase::BetweenTasks})
    if (text == to_string(phase)) return phase;
  throw Error("checkpoint " + checkpoint + ": phase '" + text +
              "' is not one of training, after_task, between_tasks (not a training checkpoint, or a damaged one)");
}

std::vector<int64_t> head_sizes_for(const TaskStream& stream, HeadLayout layout) {
  if (layout == HeadLayout::Single) return {stream.num_classes};
  std::vector<int64_t> sizes;
  for (const Task& task : stream.tasks) sizes.push_back(task.head_size);
  return sizes;
}

void validate_trainer_config(const TrainerConfig& config, int world_size) {
  if (config.epochs < 1) throw Error("train.epochs: must be at least 1, got " + std::to_string(config.epochs));
  if (config.batch_size < 1) throw Error("train.batch_size: must be at least 1, got " + std::to_string(config.batch_size));
  if (config.batch_size % world_size != 0)
    throw Error("train.batch_size: the global batch of " + std::to_string(config.batch_size) +
                " is not divisible by the " + std::to_string(world_size) + " ranks of this job");
  if (config.eval_batch_size < 1) throw Error("eval.batch_size: must be at least 1");
  if (!(config.lr > 0.0) || !std::isfinite(config.lr)) throw Error("train.lr: must be a positive number");
  if (config.momentum < 0.0 || config.momentum >= 1.0) throw Error("train.momentum: must be in [0, 1)");
  if (config.weight_decay < 0.0) throw Error("train.weight_decay: must be >= 0");
  if (!(config.adam_beta1 >= 0.0 && config.adam_beta1 < 1.0) || !(config.adam_beta2 >= 0.0 && config.adam_beta2 < 1.0))
    throw Error("train.adam_betas: both betas must be in [0, 1), got " + std::to_string(config.adam_beta1) + "," +
                std::to_string(config.adam_beta2));
  if (config.bucket_bytes <= 0) throw Error("train.bucket_mb: must be positive");
  if (!(config.lr_decay > 0.0 && config.lr_decay <= 1.0))
    throw Error("train.lr_decay: must be in (0, 1] (1: constant learning rate), got " + std::to_string(config.lr_decay));
  if (config.lr_decay_epochs < 1)
    throw Error("train.lr_decay_epochs: must be at least 1, got " + std::to_string(config.lr_decay_epochs));
}

double stage_learning_rate(const TrainerConfig& config, int64_t stage_epoch) {
  return config.lr * std::pow(config.lr_decay, static_cast<double>(stage_epoch / config.lr_decay_epochs));
}

Trainer::Trainer(TrainerConfig config, Communicator& comm, const TaskStream& stream,
                 std::shared_ptr<ContinualNet> model, Strategy& strategy, Logger& log, Objective* objective)
    : config_(std::move(config)), comm_(comm), stream_(stream), model_(std::move(model)), strategy_(strategy),
      log_(log), objective_(objective != nullptr ? *objective : classification_) {
  validate_trainer_config(config_, comm_.size());
  objective_.check(*model_, stream_, config_.heads);
  objective_.prepare(*model_, stream_);  // once: a launcher that prepared it already keeps its networks
  if (model_->num_heads() != static_cast<int64_t>(head_sizes_for(stream_, config_.heads).size()))
    throw Error("model has " + std::to_string(model_->num_heads()) + " heads, the " + to_string(config_.heads) +
                "-head layout of this stream needs " + std::to_string(head_sizes_for(stream_, config_.heads).size()));
}

const TaskData& Trainer::eval_data(int task) const {
  const Task& t = stream_.tasks.at(task);
  if (config_.eval_split == EvalSplit::Validation) {
    if (t.validation.size() == 0)
      throw Error("eval.split=validation needs data.validation_fraction > 0 (" + t.name + " has no validation data)");
    return t.validation;
  }
  return t.test;
}

void Trainer::broadcast_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model_->parameters()) {
    torch::Tensor data = parameter.data();
    comm_.broadcast(data, 0);
  }
  for (auto& buffer : model_->buffers()) comm_.broadcast(buffer, 0);
}

void Trainer::average_buffers() {
  const std::vector<torch::Tensor> buffers = model_->buffers();
  if (comm_.size() == 1 || buffers.empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> as_double;
  for (const auto& buffer : buffers) as_double.push_back(buffer.detach().to(torch::kFloat64));
  torch::Tensor flat;
  const std::vector<torch::Tensor> sums = sum_across_ranks_fused(comm_, as_double, flat);
  flat.div_(static_cast<double>(comm_.size()));
  for (size_t k = 0; k < buffers.size(); ++k) {
    torch::Tensor buffer = buffers[k];
    // Integer buffers (BatchNorm's batch counter) take the rounded mean.
    buffer.copy_(buffer.is_floating_point() ? sums[k] : sums[k].round());
  }
}

std::vector<double> Trainer::evaluate_all(int trained_up_to) {
  EvaluationContext context{*model_, comm_, stream_, strategy_, [this](int task) -> const TaskData& { return eval_data(task); }};
  context.heads = config_.heads;
  context.device = config_.device;
  context.precision = config_.precision;
  context.batch_size = config_.eval_batch_size;
  context.seed = config_.seed;
  context.trained_up_to = trained_up_to;
  return objective_.evaluate(context);
}

// Everything one stage's training needs, built by train_stage.
struct Trainer::StageRun {
  StageRun(Trainer& trainer, int stage_index, const std::vector<int>& stage_tasks)
      : stage(stage_index),
        tasks(stage_tasks),
        context{*trainer.model_, trainer.comm_, trainer.stream_, trainer.log_, trainer.config_.heads, stage_index,
                stage_tasks} {}
  int stage;
  std::vector<int> tasks;
  StageContext context;
  std::vector<int64_t> offsets{0};  // the stage's data: its tasks' training splits, concatenated
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<GradientReducer> reducer;
  std::unique_ptr<ShardedSampler> sampler;
  // Sampler epochs are numbered across the whole stage (main training, then any
  // retraining a strategy asks for), so every pass sees a fresh order.
  int64_t next_sampler_epoch = 0;
  // Seeds the current epoch's augmentation: a function of (train.seed, stage,
  // sampler epoch) only, so every rank count and a resumed run see the same images.
  uint64_t augment_seed = 0;
  StagePhase phase = StagePhase::Training;
  StageRecord record;
  // The batch read ahead on a helper thread (config.prefetch, data decoded on
  // demand). Declared last: destroyed first, waiting for the read to end while
  // the sampler and the data it reads are still there.
  bool prefetch = false;
  int64_t prefetched_index = -1;
  std::future<LocalBatch> prefetched;
};

StageRecord Trainer::train_stage(int stage, const std::vector<int>& tasks) {
  const auto start = std::chrono::steady_clock::now();
  StageRun run(*this, stage, tasks);
  run.record.tasks = tasks;

  std::vector<torch::Tensor> trainable;
  if (strategy_.trains_shared_parameters(stage))
    for (auto& parameter : model_->shared_parameters()) trainable.push_back(parameter);
  for (int head : config_.heads == HeadLayout::Multi ? tasks : std::vector<int>{0})
    for (auto& parameter : model_->head_parameters_trained_by(head, tasks)) trainable.push_back(parameter);
  StageContext& context = run.context;
  context.trainable = trainable;
  context.batch_size = config_.batch_size;
  context.seed = config_.seed;
  context.device = config_.device;
  context.lr = config_.lr;
  context.generated_logits = objective_.generated_logits(*model_, config_.seed);
  context.generated_output = objective_.generated_output(*model_, config_.seed);

  // A resumed stage continues where its checkpoint was taken: the strategy's
  // before_task already ran (its results are in the restored state).
  const std::optional<StagePhase> resumed_phase =
      resume_position_ ? std::optional<StagePhase>(resume_position_->phase) : std::nullopt;
  if (!resumed_phase) strategy_.before_task(context);
  run.optimizer = make_optimizer(config_, trainable);
  if (resume_optimizer_.defined()) {
    load_optimizer_state_bytes(*run.optimizer, resume_optimizer_, config_.device);
    resume_optimizer_ = torch::Tensor();
  }
  run.reducer = std::make_unique<GradientReducer>(comm_, trainable, config_.bucket_bytes, config_.overlap_allreduce);
  objective_.begin_stage(ObjectiveStage{&comm_, config_.device, config_.bucket_bytes, stage, resumed_phase.has_value()});
  for (int task : tasks) run.offsets.push_back(run.offsets.back() + stream_.tasks[task].train.size());
  run.sampler =
      std::make_unique<ShardedSampler>(run.offsets.back(), config_.batch_size, comm_.rank(), comm_.size(), config_.seed);

  // In-memory data is one index_select away; data decoded on demand is read ahead.
  for (int task : tasks)
    run.prefetch = run.prefetch || (config_.prefetch && !dynamic_cast<const LabelledImages*>(
                                                            stream_.tasks[task].train.source.get()));
  context.train_epochs = [this, &run](int64_t count, const std::string& label) { train_epochs(run, count, label); };
  context.evaluate = [this, &run] { return evaluate_all(run.tasks.back()); };
  if (!resumed_phase || *resumed_phase == StagePhase::Training) train_epochs(run, config_.epochs, "epoch");
  clock_.main_training_done(seconds_running());
  run.phase = StagePhase::AfterTask;
  context.resuming_after_task = resumed_phase == StagePhase::AfterTask;
  strategy_.after_task(context);
  context.train_epochs = nullptr;
  context.evaluate = nullptr;
  run.record.train_seconds = seconds_since(start);
  return run.record;
}

void Trainer::train_epochs(StageRun& run, int64_t count, const std::string& label) {
  model_->train();
  Position position;
  position.phase = run.phase;
  int64_t first_epoch = 0;
  if (resume_position_) {
    // The checkpoint was taken inside this call: continue its epoch at its batch.
    position = *resume_position_;
    resume_position_.reset();
    first_epoch = position.epoch_in_call;
    run.next_sampler_epoch = position.sampler_epoch;
    run.context.step = position.step;
  }
  for (int64_t epoch = first_epoch; epoch < count; ++epoch) {
    if (epoch > first_epoch || position.batch == 0) {
      position.batch = 0;
      position.loss = position.correct = position.seen = 0.0;
    }
    position.epoch_in_call = epoch;
    position.sampler_epoch = run.next_sampler_epoch++;
    train_epoch(run, position, count, label);
  }
}

void Trainer::train_epoch(StageRun& run, Position& position, int64_t count, const std::string& label) {
  StageContext& context = run.context;
  context.epoch = position.epoch_in_call;
  context.epochs_in_call = count;
  context.lr = stage_learning_rate(config_, position.sampler_epoch);
  for (auto& group : run.optimizer->param_groups()) group.options().set_lr(context.lr);
  run.sampler->set_epoch(run.stage, position.sampler_epoch);
  run.augment_seed = mix_seed({config_.seed, static_cast<uint64_t>(run.stage), static_cast<uint64_t>(position.sampler_epoch)});
  objective_.begin_epoch(run.augment_seed, run.offsets.back());
  const int64_t batches = run.sampler->batches_per_epoch();
  context.batches_per_epoch = batches;
  const std::string name = task_list(run.tasks) + " " + label + " " + std::to_string(position.epoch_in_call + 1) + "/" +
                           std::to_string(count);
  Progress progress(log_, name, batches, config_.progress_seconds);
  for (int64_t batch = position.batch; batch < batches; ++batch) {
    const StepSums sums = train_step(run, batch, name);
    position.loss += sums.loss;
    position.correct += sums.correct;
    position.seen += static_cast<double>(run.sampler->global_batch_size(batch));
    position.batch = batch + 1;
    position.step = context.step;
    if (sums.stop || (config_.checkpoint_every_steps > 0 && context.step % config_.checkpoint_every_steps == 0))
      save_checkpoint(run.stage, &position, run.optimizer.get());
    if (sums.stop)
      throw PreemptedError("stopped by a signal at " + name + ", step " + std::to_string(batch + 1) +
                           (checkpoints_ ? "; checkpoint written to " + config_.checkpoint_dir
                                         : "; no checkpoint (run.checkpoints=false)"));
    std::ostringstream detail;
    detail << "loss " << std::fixed << std::setprecision(4) << position.loss / position.seen;
    progress.update(batch + 1, detail.str());
  }
  average_buffers();
  run.record.final_loss = position.loss / position.seen;
  run.context.last_epoch_loss = run.record.final_loss;
  run.record.final_train_accuracy = position.correct / position.seen;
  std::ostringstream line;
  line << name << ": loss " << std::fixed << std::setprecision(4) << run.record.final_loss << ", "
       << statistic_text(objective_.score_kind(), run.record.final_train_accuracy) << ", "
       << format_duration(progress.elapsed_seconds());
  if (config_.lr_decay != 1.0) line << ", lr " << std::defaultfloat << std::setprecision(4) << context.lr;
  if (run.phase == StagePhase::Training) clock_.epoch_done(position.epoch_in_call + 1, seconds_running());
  const std::string left = clock_.describe(seconds_running(), run.tasks.size() > 1 ? "stage" : "task");
  if (!left.empty()) line << " | " << left;
  log_.info(line.str());
}

Trainer::LocalBatch Trainer::load_batch(const StageRun& run, const torch::Tensor& positions) const {
  LocalBatch batch;
  batch.positions = positions;
  batch.device = config_.device;
  std::vector<torch::Tensor> inputs, input_positions;
  for (size_t k = 0; k < run.tasks.size(); ++k) {
    torch::Tensor local = positions;
    if (run.tasks.size() > 1)
      local = positions.masked_select(positions.ge(run.offsets[k]).logical_and(positions.lt(run.offsets[k + 1]))) -
              run.offsets[k];
    if (local.numel() == 0) continue;
    input_positions.push_back(run.tasks.size() > 1 ? local + run.offsets[k] : local);
    const TaskData& data = stream_.tasks[run.tasks[k]].train;
    inputs.push_back(data.inputs(local, run.augment_seed).to(config_.device, /*non_blocking=*/true));
    batch.labels.push_back(data.labels(local, config_.heads).to(config_.device, /*non_blocking=*/true));
    batch.group_tasks.push_back(run.tasks[k]);
    batch.group_counts.push_back(local.numel());
  }
  if (!inputs.empty()) {
    batch.inputs = inputs.size() == 1 ? inputs[0] : torch::cat(inputs);
    batch.input_positions = input_positions.size() == 1 ? input_positions[0] : torch::cat(input_positions);
  }
  return batch;
}

Trainer::LocalBatch Trainer::take_batch(StageRun& run, int64_t batch) {
  LocalBatch local;
  if (run.prefetched.valid()) {
    const int64_t index = run.prefetched_index;
    LocalBatch ahead = run.prefetched.get();  // rethrows a read error (a damaged image) here
    if (index == batch) local = std::move(ahead);
  }
  if (!local.positions.defined()) local = load_batch(run, run.sampler->local_batch(batch));
  if (run.prefetch && batch + 1 < run.sampler->batches_per_epoch()) {
    run.prefetched_index = batch + 1;
    run.prefetched = std::async(std::launch::async, [this, &run, batch] {
      return load_batch(run, run.sampler->local_batch(batch + 1));
    });
  }
  return local;
}

Trainer::StepSums Trainer::train_step(StageRun& run, int64_t batch, const std::string& epoch_name) {
  StageContext& context = run.context;
  for (auto& parameter : context.trainable) parameter.mutable_grad() = torch::Tensor();
  LocalBatch local = take_batch(run, batch);
  local.global_count = run.sampler->global_batch_size(batch);
  const double world = static_cast<double>(comm_.size());
  const double global_count = static_cast<double>(local.global_count);
  const auto on_device = torch::TensorOptions().dtype(torch::kFloat32).device(config_.device);

  torch::Tensor loss, penalty;
  context.batch = batch;
  // Scaled so that averaging over ranks yields the mean over the global batch.
  context.loss_scale = world / global_count;
  context.batch_positions = local.positions;
  strategy_.before_forward(context);
  LocalLoss local_loss;
  {
    // The forward pass (and a data-dependent penalty on its features) in
    // train.precision; the losses themselves come out in fp32.
    AutocastScope autocast(config_.device, config_.precision);
    local_loss = objective_.local_loss(*model_, local, [this](int task) { return head_for(task); });
    const torch::Tensor& loss_sum = local_loss.loss_sum;
    const torch::Tensor& features = local_loss.features;
    context.batch_features = features;
    loss = loss_sum * context.loss_scale;
    if (const double weight = strategy_.task_loss_weight(context); weight != 1.0) loss = loss * weight;
    penalty = strategy_.penalty_loss(context);
    if (penalty.defined()) loss = loss + penalty;
  }

  // Loss, counts and the stop request ride in the gradient all-reduce, which
  // runs while backward does when train.overlap_allreduce is on. Built on the
  // device, read back once after the all-reduce: one host synchronisation per step.
  const float stop = stop_flag_ != nullptr && stop_flag_->load() > 0 ? 1.0f : 0.0f;
  torch::Tensor side = torch::stack({local_loss.loss_sum.detach(), local_loss.statistic_sum.detach(),
                                     penalty.defined() ? penalty.detach().to(torch::kFloat32) / world
                                                       : torch::zeros({}, on_device),
                                     torch::full({}, stop, on_device)});
  run.reducer->begin_backward(side);
  if (loss.requires_grad()) loss.backward();
  context.batch_features = torch::Tensor();
  local_loss = LocalLoss{};
  run.reducer->finish_backward();
  const torch::Tensor sums = side.to(torch::kCPU, torch::kFloat64);
  const double* values = sums.data_ptr<double>();
  const double batch_loss = values[0] / global_count, penalty_value = values[2];
  if (!std::isfinite(batch_loss) || !std::isfinite(penalty_value)) {
    std::ostringstream message;
    message << "non-finite training loss (" << (std::isfinite(batch_loss) ? penalty_value : batch_loss)
            << (std::isfinite(batch_loss) ? " in the " + strategy_.name() + " penalty" : "") << ") at " << epoch_name
            << ", step " << batch + 1 << ": training diverged; lower train.lr or check the data";
    // Every rank sees the same all-reduced value, so every rank stops here together.
    throw CollectiveError(message.str());
  }
  strategy_.after_backward(context);
  run.optimizer->step();
  ++context.step;
  strategy_.after_step(context);
  return StepSums{values[0], values[1], values[3] > 0};
}

double Trainer::seconds_running() const { return seconds_since(run_start_); }

void Trainer::log_what_is_trained(const std::vector<std::vector<int>>& stages) const {
  if (!log_.enabled()) return;
  std::ostringstream what;
  what << "training " << strategy_.name() << ": " << stream_.size() << " task(s) in " << stages.size() << " stage(s), "
       << config_.epochs << " epoch(s) per task, " << comm_.size() << " rank(s), global batch " << config_.batch_size
       << " (" << config_.batch_size / comm_.size() << " per rank), " << to_string(config_.optimizer) << " lr " << config_.lr;
  if (config_.lr_decay != 1.0)
    what << " (x" << config_.lr_decay << " every " << config_.lr_decay_epochs << " epoch(s) of a task)";
  if (config_.optimizer == OptimizerKind::Sgd && config_.momentum > 0) what << " momentum " << config_.momentum;
  if (config_.weight_decay > 0) what << " weight decay " << config_.weight_decay;
  what << ", evaluated on the " << to_string(config_.eval_split) << " split";
  log_.info(what.str());

  int64_t shared = 0, total = 0;
  std::ostringstream layers;
  for (const auto& [name, tensor] : model_->named_shared_parameters()) {
    shared += tensor.numel();
    if (tensor.dim() < 2) continue;
    layers << (layers.tellp() > 0 ? ", " : "") << name << " ";
    for (int64_t d = 0; d < tensor.dim(); ++d) layers << (d ? "x" : "") << tensor.size(d);
  }
  for (const auto& parameter : model_->parameters()) total += parameter.numel();
  log_.info("model: " + std::to_string(total) + " parameters: shared trunk " + std::to_string(shared) + " (" +
            layers.str() + ") and " + std::to_string(model_->num_heads()) + " head(s) " + std::to_string(total - shared) +
            " (" + to_string(config_.heads) + "-head layout)");

  std::ostringstream data;
  data << "data per task (training / " << to_string(config_.eval_split) << " samples):";
  for (size_t t = 0; t < stream_.tasks.size(); ++t) {
    const Task& task = stream_.tasks[t];
    data << (t ? "," : "") << " " << t + 1 << ": " << task.train.size() << " / "
         << (config_.eval_split == EvalSplit::Validation ? task.validation.size() : task.test.size());
  }
  log_.info(data.str());
}

std::string Trainer::state_fingerprints() const {
  std::ostringstream lines;
  for (const auto& [name, tensor] : checkpointed_model_state(*model_, &objective_))
    lines << name << " " << Fingerprint().add(tensor).hex() << "\n";
  for (const auto& item : strategy_.state())
    lines << strategy_.name() << "." << item.first << " " << Fingerprint().add(item.second).hex() << "\n";
  return lines.str();
}

bool Trainer::ranks_agree_to_stop() {
  torch::Tensor flag =
      torch::tensor({stop_flag_ != nullptr && stop_flag_->load() > 0 ? int64_t{1} : int64_t{0}}).to(config_.device);
  comm_.allreduce(flag, ReduceOp::Max);
  return flag.item<int64_t>() > 0;
}

namespace {


std::string text_field(const CheckpointState& state, const std::string& name) {
  for (const auto& [key, value] : state.strategy_text)
    if (key == name) return value;
  throw Error("checkpoint lacks the trainer field '" + name + "'");
}


}  // namespace

void Trainer::save_checkpoint(int stage, const Position* position, torch::optim::Optimizer* optimizer) {
  if (!checkpoints_) return;
  // Only rank 0's buffers are written: averaging first lets a resumed run go on
  // from what every rank had (the running averages are linear in the batch
  // statistics, so averaging early changes the epoch's end result by rounding only).
  if (position != nullptr) average_buffers();
  CheckpointState state;
  state.config_text = config_.config_text;
  state.world_size = comm_.size();
  state.stage = stage;
  state.phase = to_string(position ? position->phase : StagePhase::BetweenTasks);
  if (position) {
    state.epoch = position->sampler_epoch;
    state.step = position->batch;
    state.global_step = position->step;
    state.strategy_text = {{"trainer.epoch_in_call", std::to_string(position->epoch_in_call)},
                           {"trainer.epoch_loss", exact_double_text(position->loss)},
                           {"trainer.epoch_correct", exact_double_text(position->correct)},
                           {"trainer.epoch_seen", exact_double_text(position->seen)}};
  }
  {
    std::ostringstream records;
    for (const StageRecord& record : progress_.stages)
      records << exact_double_text(record.train_seconds) << " " << exact_double_text(record.eval_seconds) << " " << exact_double_text(record.final_loss)
              << " " << exact_double_text(record.final_train_accuracy) << "\n";
    state.strategy_text.emplace_back("trainer.stage_records", records.str());
  }
  state.strategy_text.emplace_back("trainer.objective", objective_.state_text());
  for (const auto& [name, tensor] : checkpointed_model_state(*model_, &objective_))
    state.model.emplace_back(name, tensor.detach());
  if (optimizer != nullptr) {
    if (const torch::Tensor archive = objective_.optimizer_archive(); archive.defined())
      state.optimizer.emplace_back("objective.archive", archive);
    state.optimizer.emplace_back("archive", optimizer_state_bytes(*optimizer));
  }
  state.strategy = strategy_.state();
  state.accuracy_initial = progress_.matrix.initial;
  state.accuracy_stages = progress_.matrix.stages;
  // Every rank sends what only it holds: its random generator (dropout).
  state.rank_states = comm_.allgather_strings(save_generator_states(config_.device));
  std::string path;
  run_on_all_ranks(comm_, [&] {
    if (!comm_.is_root()) return;
    if (config_.before_checkpoint) config_.before_checkpoint();
    path = checkpoints_->save(state);
  });
  if (comm_.is_root())
    log_.info("checkpoint " + path + " (" + state.phase +
              (position ? ", stage " + std::to_string(stage + 1) + ", epoch " + std::to_string(position->sampler_epoch + 1) +
                              ", batch " + std::to_string(position->batch)
                        : ", next stage " + std::to_string(stage + 1)) +
              ")");
}

void Trainer::restore(const CheckpointState& checkpoint, const std::string& path) {
  if (checkpoint.config_text != config_.config_text)
    throw CollectiveError("--resume: " + path + ": /config: the checkpoint was written with a different configuration (" +
                          [&] {
                            std::istringstream a(checkpoint.config_text), b(config_.config_text);
                            std::string left, right;
                            while (true) {
                              const bool more_a = static_cast<bool>(std::getline(a, left));
                              const bool more_b = static_cast<bool>(std::getline(b, right));
                              if (!more_a && !more_b) return std::string("texts differ");
                              if (!more_a) left = "<missing>";
                              if (!more_b) right = "<missing>";
                              if (left != right) return "checkpoint '" + left + "' vs now '" + right + "'";
                            }
                          }() + ")");
  {
    torch::NoGradGuard no_grad;
    model_->prepare_for_saved_state(checkpoint.model);
    const NamedTensors live = checkpointed_model_state(*model_, &objective_);
    check_tensors_match(path, "/model", checkpoint.model, live);
    for (size_t k = 0; k < live.size(); ++k) live[k].second.copy_(checkpoint.model[k].second);
  }
  {
    // Checkpoints hold host copies; strategy state lives on this run's device.
    NamedTensors strategy_state = checkpoint.strategy;
    for (auto& item : strategy_state) item.second = item.second.to(config_.device);
    strategy_.load_state(strategy_state);
  }
  progress_.matrix.initial = checkpoint.accuracy_initial;
  progress_.matrix.stages = checkpoint.accuracy_stages;
  // Checkpoints written before objectives kept state have no such field: nothing to restore.
  for (const auto& [key, value] : checkpoint.strategy_text)
    if (key == "trainer.objective") objective_.load_state_text(value);
  progress_.stages.clear();
  std::istringstream records(text_field(checkpoint, "trainer.stage_records"));
  const auto stages = strategy_.stages(static_cast<int>(stream_.size()));
  for (std::string line; std::getline(records, line);) {
    std::istringstream fields(line);
    std::string train, eval, loss, accuracy;
    fields >> train >> eval >> loss >> accuracy;
    StageRecord record;
    record.tasks = stages.at(progress_.stages.size());
    record.train_seconds = parse_exact_double(train);
    record.eval_seconds = parse_exact_double(eval);
    record.final_loss = parse_exact_double(loss);
    record.final_train_accuracy = parse_exact_double(accuracy);
    progress_.stages.push_back(record);
  }
  if (checkpoint.world_size == comm_.size()) {
    if (!restore_generator_states(checkpoint.rank_states.at(comm_.rank()), config_.device))
      log_.warn("the checkpoint was written by a run on another device type: training continues from it, but the "
                "random streams of this device start afresh, so the run is no longer bit-identical to an "
                "uninterrupted one");
  } else {
    log_.warn("the checkpoint was written by " + std::to_string(checkpoint.world_size) + " ranks, this job has " +
              std::to_string(comm_.size()) + ": training continues on the same global batches, but dropout's random "
              "streams are re-seeded, so the run is no longer bit-identical to an uninterrupted one");
  }
  resume_position_.reset();
  resume_optimizer_ = torch::Tensor();
  const StagePhase phase = parse_stage_phase(checkpoint.phase, path);
  if (phase != StagePhase::BetweenTasks) {
    Position position;
    position.phase = phase;
    position.sampler_epoch = checkpoint.epoch;
    position.batch = checkpoint.step;
    position.step = checkpoint.global_step;
    position.epoch_in_call = std::stoll(text_field(checkpoint, "trainer.epoch_in_call"));
    position.loss = parse_exact_double(text_field(checkpoint, "trainer.epoch_loss"));
    position.correct = parse_exact_double(text_field(checkpoint, "trainer.epoch_correct"));
    position.seen = parse_exact_double(text_field(checkpoint, "trainer.epoch_seen"));
    resume_position_ = position;
    for (const auto& [name, tensor] : checkpoint.optimizer) {
      if (name == "archive") resume_optimizer_ = tensor.contiguous();
      if (name == "objective.archive") objective_.resume_optimizer(tensor.contiguous());
    }
  }
}

RunResult Trainer::run(const CheckpointState* resume, const std::string& resume_path) {
  const auto start = std::chrono::steady_clock::now();
  progress_ = RunResult{};
  progress_.score = objective_.score_kind();
  for (const Task& task : stream_.tasks) progress_.task_names.push_back(task.name);
  if (!config_.checkpoint_dir.empty())
    checkpoints_ = std::make_unique<CheckpointDirectory>(config_.checkpoint_dir, static_cast<int>(config_.keep_checkpoints));

  const auto stages = strategy_.stages(static_cast<int>(stream_.size()));
  run_start_ = start;
  clock_ = SequenceClock(static_cast<int>(stages.size()));
  log_what_is_trained(stages);
  size_t first_stage = 0;
  if (resume != nullptr) {
    // Every rank reads the same file, so a bad checkpoint fails everywhere: one message.
    run_on_all_ranks(comm_, [&] { restore(*resume, resume_path); });
    // Rank 0's copy is the reference all the same.
    broadcast_parameters();
    first_stage = static_cast<size_t>(resume->stage);
    log_.info("resumed from a checkpoint: stage " + std::to_string(first_stage + 1) + "/" +
              std::to_string(stages.size()) + ", " + resume->phase +
              (resume_position_ ? ", epoch " + std::to_string(resume->epoch + 1) + ", batch " +
                                                       std::to_string(resume->step)
                                                 : ""));
  } else {
    broadcast_parameters();
    progress_.matrix.initial = evaluate_all(-1);
  }
  for (size_t s = first_stage; s < stages.size(); ++s) {
    const std::vector<int>& tasks = stages[s];
    log_.info("== stage " + std::to_string(s + 1) + "/" + std::to_string(stages.size()) + ": " +
              (tasks.size() == 1 ? stream_.tasks[tasks[0]].name : task_list(tasks)) + ", strategy " + strategy_.name());
    // A stage resumed midway is timed only from the resume: no sample for the estimates.
    const bool resumed_midway = resume_position_.has_value();
    clock_.start_stage(static_cast<int>(s), config_.epochs,
                       !resumed_midway ? 0 : resume_position_->phase == StagePhase::Training ? resume_position_->epoch_in_call
                                                                                   : config_.epochs,
                       seconds_running());
    StageRecord record = train_stage(static_cast<int>(s), tasks);

    if (config_.check_consistency)
      require_identical_across_ranks(comm_, state_fingerprints(),
                                     "model/strategy state after " + task_list(tasks) + " (tensor fingerprints)");

    const auto eval_start = std::chrono::steady_clock::now();
    progress_.matrix.stages.push_back(evaluate_all(tasks.back()));
    record.eval_seconds = seconds_since(eval_start);
    std::ostringstream line;
    const ScoreKind& kind = progress_.score;
    line << "after " << task_list(tasks) << ": " << kind.name;
    for (double value : progress_.matrix.stages.back())
      line << " " << std::fixed << std::setprecision(2) << kind.display_scale * value;
    double trained_sum = 0;
    for (int t = 0; t <= tasks.back(); ++t) trained_sum += progress_.matrix.stages.back()[t];
    line << " | mean over trained " << std::fixed << std::setprecision(2)
         << kind.display_scale * trained_sum / (tasks.back() + 1) << (kind.display_scale == 100.0 ? "%" : "")
         << " | train " << format_duration(record.train_seconds);
    clock_.stage_done(!resumed_midway, seconds_running());
    if (s + 1 < stages.size())
      if (const auto left = clock_.sequence_left(seconds_running())) line << ", sequence ~" << format_duration(*left) << " left";
    log_.info(line.str());
    progress_.stages.push_back(record);
    save_checkpoint(static_cast<int>(s + 1), nullptr, nullptr);
    if (s + 1 < stages.size() && ranks_agree_to_stop())
      throw PreemptedError("stopped by a signal after " + task_list(tasks) +
                           (checkpoints_ ? "; checkpoint written to " + config_.checkpoint_dir : ""));
  }
  progress_.tables = strategy_.result_tables(stages.empty() ? 0 : stages.back().back() + 1);
  for (ResultTable& table : objective_.result_tables()) progress_.tables.push_back(std::move(table));
  progress_.total_seconds = seconds_since(start);
  return progress_;
}

}  // namespace clx
