#include "runtime/trainer.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "runtime/collectives.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"
#include "runtime/fingerprint.h"

namespace clx {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainerConfig& config,
                                                        const std::vector<torch::Tensor>& parameters) {
  if (config.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
        parameters, torch::optim::SGDOptions(config.lr).momentum(config.momentum).weight_decay(config.weight_decay));
  if (config.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(parameters,
                                                torch::optim::AdamOptions(config.lr).weight_decay(config.weight_decay));
  throw Error("train.optimizer: '" + config.optimizer + "' is not one of sgd, adam");
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

}  // namespace

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
  if (config.optimizer != "sgd" && config.optimizer != "adam")
    throw Error("train.optimizer: '" + config.optimizer + "' is not one of sgd, adam");
  if (config.eval_split != "test" && config.eval_split != "validation")
    throw Error("eval.split: '" + config.eval_split + "' is not one of test, validation");
  if (config.bucket_bytes <= 0) throw Error("train.bucket_mb: must be positive");
}

Trainer::Trainer(TrainerConfig config, Communicator& comm, const TaskStream& stream,
                 std::shared_ptr<ContinualNet> model, Strategy& strategy, Logger& log)
    : config_(std::move(config)), comm_(comm), stream_(stream), model_(std::move(model)), strategy_(strategy),
      log_(log) {
  validate_trainer_config(config_, comm_.size());
  if (model_->num_heads() != static_cast<int64_t>(head_sizes_for(stream_, config_.heads).size()))
    throw Error("model has " + std::to_string(model_->num_heads()) + " heads, the " + to_string(config_.heads) +
                "-head layout of this stream needs " + std::to_string(head_sizes_for(stream_, config_.heads).size()));
}

const TaskData& Trainer::eval_data(int task) const {
  const Task& t = stream_.tasks.at(task);
  if (config_.eval_split == "validation") {
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
  torch::NoGradGuard no_grad;
  const bool was_training = model_->is_training();
  model_->eval();
  const int T = static_cast<int>(stream_.size());
  torch::Tensor counts = torch::zeros({T, 2}, torch::kInt64);  // correct, total
  for (int task = 0; task < T; ++task) {
    const TaskData& data = eval_data(task);
    const auto [offset, length] = shard_range(data.size(), comm_.rank(), comm_.size());
    torch::Tensor allowed;  // single head: only classes seen so far may be answered
    if (config_.heads == HeadLayout::Single) {
      const auto classes = stream_.classes_up_to(std::max(task, trained_up_to));
      allowed = torch::tensor(classes, torch::kInt64);
    }
    int64_t correct = 0;
    for (int64_t start = offset; start < offset + length; start += config_.eval_batch_size) {
      const int64_t n = std::min(config_.eval_batch_size, offset + length - start);
      torch::Tensor positions = torch::arange(start, start + n, torch::kInt64);
      torch::Tensor logits = model_->logits(data.inputs(positions), head_for(task));
      torch::Tensor labels = data.labels(positions, config_.heads);
      torch::Tensor predicted;
      if (allowed.defined()) predicted = allowed.index_select(0, logits.index_select(1, allowed).argmax(1));
      else predicted = logits.argmax(1);
      correct += predicted.eq(labels).sum().item<int64_t>();
    }
    counts[task][0] = correct;
    counts[task][1] = length;
  }
  comm_.allreduce(counts, ReduceOp::Sum);
  std::vector<double> accuracy(T);
  for (int task = 0; task < T; ++task)
    accuracy[task] = static_cast<double>(counts[task][0].item<int64_t>()) /
                     static_cast<double>(std::max<int64_t>(counts[task][1].item<int64_t>(), 1));
  if (was_training) model_->train();
  return accuracy;
}

StageRecord Trainer::train_stage(int stage, const std::vector<int>& tasks) {
  const auto start = std::chrono::steady_clock::now();
  StageRecord record;
  record.tasks = tasks;

  std::vector<torch::Tensor> trainable;
  if (strategy_.trains_shared_parameters(stage))
    for (auto& parameter : model_->shared_parameters()) trainable.push_back(parameter);
  if (config_.heads == HeadLayout::Multi) {
    for (int task : tasks)
      for (auto& parameter : model_->head_parameters(task)) trainable.push_back(parameter);
  } else {
    for (auto& parameter : model_->head_parameters(0)) trainable.push_back(parameter);
  }
  StageContext context{*model_, comm_, stream_, log_, config_.heads, stage, tasks};
  context.trainable = trainable;
  context.batch_size = config_.batch_size;
  context.seed = config_.seed;

  // A resumed stage continues where its checkpoint was taken: the strategy's
  // before_task already ran (its results are in the restored state).
  const std::string resumed_phase = resume_position_ ? resume_position_->phase : "";
  if (resumed_phase.empty()) strategy_.before_task(context);
  auto optimizer = make_optimizer(config_, trainable);
  if (resume_optimizer_.defined()) {
    torch::serialize::InputArchive archive;
    const std::string bytes(static_cast<const char*>(resume_optimizer_.data_ptr()), resume_optimizer_.numel());
    std::istringstream stream(bytes);
    archive.load_from(stream);
    optimizer->load(archive);
    resume_optimizer_ = torch::Tensor();
  }
  GradientReducer reducer(comm_, trainable, config_.bucket_bytes, config_.overlap_allreduce);

  // The stage's training data is the concatenation of its tasks' training splits.
  std::vector<int64_t> offsets{0};
  for (int task : tasks) offsets.push_back(offsets.back() + stream_.tasks[task].train.size());
  ShardedSampler sampler(offsets.back(), config_.batch_size, comm_.rank(), comm_.size(), config_.seed);
  const int64_t batches = sampler.batches_per_epoch();
  const double world = static_cast<double>(comm_.size());
  // Sampler epochs are numbered across the whole stage (main training, then any
  // retraining a strategy asks for), so every pass sees a fresh order.
  int64_t next_sampler_epoch = 0;
  std::string phase = "training";

  // Trains `count` epochs with every strategy hook; `label` names them in logs.
  auto train_epochs = [&](int64_t count, const std::string& label) {
    model_->train();
    Position position;
    position.phase = phase;
    int64_t first_epoch = 0;
    std::optional<Position> resumed;
    if (resume_position_) {
      resumed = resume_position_;
      resume_position_.reset();
      first_epoch = resumed->epoch_in_call;
      next_sampler_epoch = resumed->sampler_epoch;
      context.step = resumed->step;
    }
    for (int64_t epoch = first_epoch; epoch < count; ++epoch) {
      context.epoch = epoch;
      position.epoch_in_call = epoch;
      position.sampler_epoch = next_sampler_epoch++;
      sampler.set_epoch(stage, position.sampler_epoch);
      const uint64_t augment_seed = mix_seed({config_.seed, static_cast<uint64_t>(stage), static_cast<uint64_t>(position.sampler_epoch)});
      const std::string name = task_list(tasks) + " " + label + " " + std::to_string(epoch + 1) + "/" + std::to_string(count);
      Progress progress(log_, name, batches, config_.progress_seconds);
      double epoch_loss = 0.0, epoch_correct = 0.0, epoch_seen = 0.0;
      int64_t first_batch = 0;
      if (resumed) {
        first_batch = resumed->batch;
        epoch_loss = resumed->loss;
        epoch_correct = resumed->correct;
        epoch_seen = resumed->seen;
        resumed.reset();
      }
      for (int64_t batch = first_batch; batch < batches; ++batch) {
        for (auto& parameter : trainable) parameter.mutable_grad() = torch::Tensor();
        const torch::Tensor positions = sampler.local_batch(batch);
        const double global_count = static_cast<double>(sampler.global_batch_size(batch));

        // One trunk pass over the local batch; each sample then goes through its own task's head.
        std::vector<torch::Tensor> inputs, labels;
        std::vector<int64_t> group_tasks, group_counts;
        for (size_t k = 0; k < tasks.size(); ++k) {
          torch::Tensor local = positions;
          if (tasks.size() > 1)
            local = positions.masked_select(positions.ge(offsets[k]).logical_and(positions.lt(offsets[k + 1]))) -
                    offsets[k];
          if (local.numel() == 0) continue;
          const TaskData& data = stream_.tasks[tasks[k]].train;
          inputs.push_back(data.inputs(local, augment_seed));
          labels.push_back(data.labels(local, config_.heads));
          group_tasks.push_back(tasks[k]);
          group_counts.push_back(local.numel());
        }
        torch::Tensor loss_sum = torch::zeros({}, torch::kFloat32);
        torch::Tensor features;
        int64_t correct = 0;
        if (!inputs.empty()) {
          features = model_->features(inputs.size() == 1 ? inputs[0] : torch::cat(inputs));
          int64_t offset = 0;
          for (size_t g = 0; g < group_tasks.size(); ++g) {
            torch::Tensor logits =
                model_->head_forward(features.narrow(0, offset, group_counts[g]), head_for(group_tasks[g]));
            offset += group_counts[g];
            loss_sum = loss_sum + torch::nn::functional::cross_entropy(
                                      logits, labels[g],
                                      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
            correct += logits.argmax(1).eq(labels[g]).sum().item<int64_t>();
          }
        }
        // Scaled so that averaging over ranks yields the mean over the global batch.
        context.loss_scale = world / global_count;
        context.batch_positions = positions;
        context.batch_features = features;
        torch::Tensor loss = loss_sum * context.loss_scale;
        torch::Tensor penalty = strategy_.penalty_loss(context);
        if (penalty.defined()) loss = loss + penalty;

        // Loss, counts and the stop request ride in the gradient all-reduce,
        // which runs while backward does when train.overlap_allreduce is on.
        const float stop = stop_flag_ != nullptr && stop_flag_->load() > 0 ? 1.0f : 0.0f;
        torch::Tensor side =
            torch::tensor({loss_sum.item<float>(), static_cast<float>(correct),
                           penalty.defined() ? penalty.item<float>() / static_cast<float>(world) : 0.0f, stop});
        reducer.begin_backward(side);
        if (loss.requires_grad()) loss.backward();
        context.batch_features = torch::Tensor();
        reducer.finish_backward();
        const double batch_loss = side[0].item<double>() / global_count;
        const double penalty_value = side[2].item<double>();
        if (!std::isfinite(batch_loss) || !std::isfinite(penalty_value)) {
          std::ostringstream message;
          message << "non-finite training loss (" << (std::isfinite(batch_loss) ? penalty_value : batch_loss)
                  << (std::isfinite(batch_loss) ? " in the " + strategy_.name() + " penalty" : "") << ") at " << name
                  << ", step " << batch + 1 << ": training diverged; lower train.lr or check the data";
          // Every rank sees the same all-reduced value, so every rank stops here together.
          throw CollectiveError(message.str());
        }
        strategy_.after_backward(context);
        optimizer->step();
        ++context.step;
        strategy_.after_step(context);

        epoch_loss += side[0].item<double>();
        epoch_correct += side[1].item<double>();
        epoch_seen += global_count;
        position.batch = batch + 1;
        position.step = context.step;
        position.loss = epoch_loss;
        position.correct = epoch_correct;
        position.seen = epoch_seen;
        const bool stop_now = side[3].item<float>() > 0;
        if (stop_now || (config_.checkpoint_every_steps > 0 && context.step % config_.checkpoint_every_steps == 0))
          save_checkpoint(stage, &position, optimizer.get());
        if (stop_now)
          throw PreemptedError("stopped by a signal at " + name + ", step " + std::to_string(batch + 1) +
                               (checkpoints_ ? "; checkpoint written to " + config_.checkpoint_dir : "; no checkpoint (run.checkpoints=false)"));
        std::ostringstream detail;
        detail << "loss " << std::fixed << std::setprecision(4) << epoch_loss / epoch_seen;
        progress.update(batch + 1, detail.str());
      }
      average_buffers();
      record.final_loss = epoch_loss / epoch_seen;
      record.final_train_accuracy = epoch_correct / epoch_seen;
      std::ostringstream line;
      line << name << ": loss " << std::fixed << std::setprecision(4) << record.final_loss << ", train accuracy "
           << percent(record.final_train_accuracy) << ", " << format_duration(progress.elapsed_seconds());
      if (phase == "training") clock_.epoch_done(epoch + 1, seconds_running());
      const std::string left = clock_.describe(seconds_running(), tasks.size() > 1 ? "stage" : "task");
      if (!left.empty()) line << " | " << left;
      log_.info(line.str());
    }
  };

  context.train_epochs = train_epochs;
  if (resumed_phase.empty() || resumed_phase == "training") train_epochs(config_.epochs, "epoch");
  clock_.main_training_done(seconds_running());
  phase = "after_task";
  context.resuming_after_task = resumed_phase == "after_task";
  strategy_.after_task(context);
  context.train_epochs = nullptr;
  record.train_seconds = seconds_since(start);
  return record;
}

double Trainer::seconds_running() const { return seconds_since(run_start_); }

void Trainer::log_what_is_trained(const std::vector<std::vector<int>>& stages) const {
  if (!log_.enabled()) return;
  std::ostringstream what;
  what << "training " << strategy_.name() << ": " << stream_.size() << " task(s) in " << stages.size() << " stage(s), "
       << config_.epochs << " epoch(s) per task, " << comm_.size() << " rank(s), global batch " << config_.batch_size
       << " (" << config_.batch_size / comm_.size() << " per rank), " << config_.optimizer << " lr " << config_.lr;
  if (config_.optimizer == "sgd" && config_.momentum > 0) what << " momentum " << config_.momentum;
  if (config_.weight_decay > 0) what << " weight decay " << config_.weight_decay;
  what << ", evaluated on the " << config_.eval_split << " split";
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
  data << "data per task (training / " << config_.eval_split << " samples):";
  for (size_t t = 0; t < stream_.tasks.size(); ++t) {
    const Task& task = stream_.tasks[t];
    data << (t ? "," : "") << " " << t + 1 << ": " << task.train.size() << " / "
         << (config_.eval_split == "validation" ? task.validation.size() : task.test.size());
  }
  log_.info(data.str());
}

std::string Trainer::state_fingerprints() const {
  std::ostringstream lines;
  for (const auto& item : model_->named_parameters()) lines << item.key() << " " << Fingerprint().add(item.value()).hex() << "\n";
  for (const auto& item : model_->named_buffers()) lines << item.key() << " " << Fingerprint().add(item.value()).hex() << "\n";
  for (const auto& item : strategy_.state())
    lines << strategy_.name() << "." << item.first << " " << Fingerprint().add(item.second).hex() << "\n";
  return lines.str();
}

bool Trainer::ranks_agree_to_stop() {
  torch::Tensor flag = torch::tensor({stop_flag_ != nullptr && stop_flag_->load() > 0 ? int64_t{1} : int64_t{0}});
  comm_.allreduce(flag, ReduceOp::Max);
  return flag.item<int64_t>() > 0;
}

namespace {

// Doubles as exact text (hexadecimal floating point), so a resume restores them bit for bit.
std::string exact(double value) {
  char text[64];
  std::snprintf(text, sizeof(text), "%a", value);
  return text;
}

double from_exact(const std::string& text) { return std::strtod(text.c_str(), nullptr); }

std::string text_field(const CheckpointState& state, const std::string& name) {
  for (const auto& [key, value] : state.strategy_text)
    if (key == name) return value;
  throw Error("checkpoint lacks the trainer field '" + name + "'");
}

NamedTensors named_model_state(const ContinualNet& model) {
  NamedTensors state;
  for (const auto& item : model.named_parameters()) state.emplace_back(item.key(), item.value());
  for (const auto& item : model.named_buffers()) state.emplace_back(item.key(), item.value());
  return state;
}

std::string generator_state() {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  const torch::Tensor state = generator.get_state().contiguous();
  return std::string(static_cast<const char*>(state.data_ptr()), state.numel());
}

void set_generator_state(const std::string& bytes) {
  auto generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  torch::Tensor state = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(state.data_ptr(), bytes.data(), bytes.size());
  generator.set_state(state);
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
  state.phase = position ? position->phase : "between_tasks";
  if (position) {
    state.epoch = position->sampler_epoch;
    state.step = position->batch;
    state.global_step = position->step;
    state.strategy_text = {{"trainer.epoch_in_call", std::to_string(position->epoch_in_call)},
                           {"trainer.epoch_loss", exact(position->loss)},
                           {"trainer.epoch_correct", exact(position->correct)},
                           {"trainer.epoch_seen", exact(position->seen)}};
  }
  {
    std::ostringstream records;
    for (const StageRecord& record : progress_.stages)
      records << exact(record.train_seconds) << " " << exact(record.eval_seconds) << " " << exact(record.final_loss)
              << " " << exact(record.final_train_accuracy) << "\n";
    state.strategy_text.emplace_back("trainer.stage_records", records.str());
  }
  for (const auto& [name, tensor] : named_model_state(*model_)) state.model.emplace_back(name, tensor.detach());
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive archive;
    optimizer->save(archive);
    std::ostringstream bytes;
    archive.save_to(bytes);
    const std::string data = bytes.str();
    torch::Tensor blob = torch::empty({static_cast<int64_t>(data.size())}, torch::kUInt8);
    std::memcpy(blob.data_ptr(), data.data(), data.size());
    state.optimizer.emplace_back("archive", blob);
  }
  state.strategy = strategy_.state();
  state.accuracy_initial = progress_.matrix.initial;
  state.accuracy_stages = progress_.matrix.stages;
  // Every rank sends what only it holds: its random generator (dropout).
  state.rank_states = comm_.allgather_strings(generator_state());
  std::string path;
  run_on_all_ranks(comm_, [&] {
    if (comm_.is_root()) path = checkpoints_->save(state);
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
    const NamedTensors live = named_model_state(*model_);
    check_tensors_match(path, "/model", checkpoint.model, live);
    for (size_t k = 0; k < live.size(); ++k) live[k].second.copy_(checkpoint.model[k].second);
  }
  strategy_.load_state(checkpoint.strategy);
  progress_.matrix.initial = checkpoint.accuracy_initial;
  progress_.matrix.stages = checkpoint.accuracy_stages;
  progress_.stages.clear();
  std::istringstream records(text_field(checkpoint, "trainer.stage_records"));
  const auto stages = strategy_.stages(static_cast<int>(stream_.size()));
  for (std::string line; std::getline(records, line);) {
    std::istringstream fields(line);
    std::string train, eval, loss, accuracy;
    fields >> train >> eval >> loss >> accuracy;
    StageRecord record;
    record.tasks = stages.at(progress_.stages.size());
    record.train_seconds = from_exact(train);
    record.eval_seconds = from_exact(eval);
    record.final_loss = from_exact(loss);
    record.final_train_accuracy = from_exact(accuracy);
    progress_.stages.push_back(record);
  }
  if (checkpoint.world_size == comm_.size()) {
    set_generator_state(checkpoint.rank_states.at(comm_.rank()));
  } else {
    log_.warn("the checkpoint was written by " + std::to_string(checkpoint.world_size) + " ranks, this job has " +
              std::to_string(comm_.size()) + ": training continues on the same global batches, but dropout's random "
              "streams are re-seeded, so the run is no longer bit-identical to an uninterrupted one");
  }
  resume_position_.reset();
  resume_optimizer_ = torch::Tensor();
  if (checkpoint.phase != "between_tasks") {
    Position position;
    position.phase = checkpoint.phase;
    position.sampler_epoch = checkpoint.epoch;
    position.batch = checkpoint.step;
    position.step = checkpoint.global_step;
    position.epoch_in_call = std::stoll(text_field(checkpoint, "trainer.epoch_in_call"));
    position.loss = from_exact(text_field(checkpoint, "trainer.epoch_loss"));
    position.correct = from_exact(text_field(checkpoint, "trainer.epoch_correct"));
    position.seen = from_exact(text_field(checkpoint, "trainer.epoch_seen"));
    resume_position_ = position;
    for (const auto& [name, tensor] : checkpoint.optimizer)
      if (name == "archive") resume_optimizer_ = tensor.contiguous();
  }
}

RunResult Trainer::run(const CheckpointState* resume, const std::string& resume_path) {
  const auto start = std::chrono::steady_clock::now();
  progress_ = RunResult{};
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
              (resume->phase != "between_tasks" ? ", epoch " + std::to_string(resume->epoch + 1) + ", batch " +
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
                       !resumed_midway ? 0 : resume_position_->phase == "training" ? resume_position_->epoch_in_call
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
    line << "after " << task_list(tasks) << ": accuracy";
    for (double value : progress_.matrix.stages.back()) line << " " << std::fixed << std::setprecision(2) << 100 * value;
    line << " | mean over trained " << percent([&] {
      double sum = 0;
      for (int t = 0; t <= tasks.back(); ++t) sum += progress_.matrix.stages.back()[t];
      return sum / (tasks.back() + 1);
    }()) << " | train " << format_duration(record.train_seconds);
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
  progress_.total_seconds = seconds_since(start);
  return progress_;
}

}  // namespace clx
