// The trainer in one process: the order of the strategy hooks, the learning
// rate schedule across tasks and retraining, resume in the middle of a decayed
// schedule, device placement, random generator states and autocast.
// Runs on CLX_TEST_DEVICE (default cpu; scripts/gpu_check.sh sets cuda).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "models/multi_head_model.h"
#include "runtime/checkpoint.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/folder_lock.h"
#include "runtime/trainer.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"
#include "tests/trainer_test_support.h"

using clx::testing_support::two_task_stream;
using clx::testing_support::checkpoint_every_step;
using clx::testing_support::expect_same_parameters;
using clx::testing_support::find_checkpoint;
using clx::testing_support::expect_error;
using clx::testing_support::small_trainer_config;
using clx::testing_support::test_device;

namespace {

clx::MultiHeadModel model_on(const clx::TaskStream& stream, torch::Device device, double dropout = 0.0) {
  torch::manual_seed(5);
  clx::MlpConfig mlp;
  mlp.hidden = {16, 8};
  mlp.dropout = dropout;
  auto model = clx::make_mlp(stream.input_shape, mlp, clx::head_sizes_for(stream, clx::HeadLayout::Multi));
  model->to(device);
  return model;
}

// Records every hook with the learning rate it saw; after each task but the
// last it retrains for `retrain_epochs`, as a pruning strategy does.
class RecordingStrategy final : public clx::Strategy {
 public:
  explicit RecordingStrategy(int64_t retrain_epochs) : retrain_epochs_(retrain_epochs) {}
  std::string name() const override { return "recording"; }
  void before_task(clx::StageContext& ctx) override { record("before_task", ctx); }
  void before_forward(clx::StageContext& ctx) override { record("before_forward", ctx); }
  torch::Tensor penalty_loss(clx::StageContext& ctx) override {
    record("penalty_loss", ctx);
    return {};
  }
  void after_backward(clx::StageContext& ctx) override {
    record("after_backward", ctx);
    // After the all-reduce every trained parameter has a gradient on the model's device.
    for (const auto& parameter : ctx.trainable) {
      EXPECT_TRUE(parameter.grad().defined());
      EXPECT_EQ(parameter.grad().device(), ctx.device);
    }
  }
  void after_step(clx::StageContext& ctx) override { record("after_step", ctx); }
  void after_task(clx::StageContext& ctx) override {
    record("after_task", ctx);
    if (ctx.tasks.front() + 1 < ctx.stream.size()) ctx.train_epochs(retrain_epochs_, "retrain");
    record("after_task end", ctx);
  }
  void before_evaluate(clx::ContinualNet&, int task) override {
    events.push_back("before_evaluate " + std::to_string(task + 1));
  }
  void after_evaluate(clx::ContinualNet&, int task) override {
    events.push_back("after_evaluate " + std::to_string(task + 1));
  }

  std::vector<std::string> events;
  std::vector<double> step_lrs;  // learning rate of every optimizer step

 private:
  void record(const std::string& hook, const clx::StageContext& ctx) {
    events.push_back(hook + " " + std::to_string(ctx.tasks.front() + 1));
    if (hook == "after_step") step_lrs.push_back(ctx.lr);
  }
  int64_t retrain_epochs_;
};

// The hooks of `count` training steps of `task` (1-based), in runtime/strategy.h's order.
void append_steps(std::vector<std::string>& events, int task, int64_t count) {
  for (int64_t k = 0; k < count; ++k)
    for (const char* hook : {"before_forward", "penalty_loss", "after_backward", "after_step"})
      events.push_back(std::string(hook) + " " + std::to_string(task));
}

// The hooks around one evaluation of both tasks.
void append_evaluations(std::vector<std::string>& events) {
  for (int task = 1; task <= 2; ++task) {
    events.push_back("before_evaluate " + std::to_string(task));
    events.push_back("after_evaluate " + std::to_string(task));
  }
}

// The rest of a run from the end of task 1's after_task: evaluations, then
// task 2 (3 epochs of `task_2_batches`, no retraining after the last task).
void append_from_task_1_end(std::vector<std::string>& events, int64_t task_2_batches) {
  events.push_back("after_task end 1");
  append_evaluations(events);
  events.push_back("before_task 2");
  append_steps(events, 2, 3 * task_2_batches);
  events.push_back("after_task 2");
  events.push_back("after_task end 2");
  append_evaluations(events);
}

// Batch 8, 3 epochs per task, lr 0.1 halved every 2 epochs (2 retraining
// epochs after task 1 in the tests below).
clx::TrainerConfig schedule_config() {
  clx::TrainerConfig config = small_trainer_config(8, test_device());
  config.epochs = 3;
  config.lr_decay = 0.5;
  config.lr_decay_epochs = 2;
  return config;
}

}  // namespace

TEST(LearningRateSchedule, StaircaseByStageEpoch) {
  clx::TrainerConfig config;
  config.lr = 0.02;
  config.lr_decay = 0.9;
  config.lr_decay_epochs = 5;
  EXPECT_DOUBLE_EQ(clx::stage_learning_rate(config, 0), 0.02);
  EXPECT_DOUBLE_EQ(clx::stage_learning_rate(config, 4), 0.02);
  EXPECT_DOUBLE_EQ(clx::stage_learning_rate(config, 5), 0.02 * 0.9);
  EXPECT_DOUBLE_EQ(clx::stage_learning_rate(config, 9), 0.02 * 0.9);
  EXPECT_DOUBLE_EQ(clx::stage_learning_rate(config, 10), 0.02 * 0.81);
  EXPECT_DOUBLE_EQ(clx::stage_learning_rate(config, 34), 0.02 * std::pow(0.9, 6));
  config.lr_decay = 1.0;
  EXPECT_DOUBLE_EQ(clx::stage_learning_rate(config, 100), 0.02);
}

TEST(LearningRateSchedule, RefusesImpossibleValues) {
  clx::TrainerConfig config;
  config.lr_decay = 0.0;
  expect_error([&] { clx::validate_trainer_config(config, 1); }, {"train.lr_decay", "(0, 1]"});
  config.lr_decay = 1.5;
  expect_error([&] { clx::validate_trainer_config(config, 1); }, {"train.lr_decay", "(0, 1]"});
  config.lr_decay = 0.5;
  config.lr_decay_epochs = 0;
  expect_error([&] { clx::validate_trainer_config(config, 1); }, {"train.lr_decay_epochs", "at least 1"});
}

TEST(TrainerConfig, RefusesAdamBetasOutsideTheUnitInterval) {
  clx::TrainerConfig config;
  config.adam_beta1 = 0.5;
  config.adam_beta2 = 0.999;
  clx::validate_trainer_config(config, 1);
  config.adam_beta2 = 1.0;
  expect_error([&] { clx::validate_trainer_config(config, 1); }, {"train.adam_betas", "[0, 1)"});
  config.adam_beta2 = 0.9;
  config.adam_beta1 = -0.1;
  expect_error([&] { clx::validate_trainer_config(config, 1); }, {"train.adam_betas", "[0, 1)"});
}

// The hook order of runtime/strategy.h, and the learning rate each step used:
// the staircase continues through retraining and starts again at each task.
TEST(TrainerHooks, OrderAndLearningRateAcrossTasksAndRetraining) {
  const clx::TaskStream stream = two_task_stream(64, 60);
  auto model = model_on(stream, test_device());
  RecordingStrategy strategy(/*retrain_epochs=*/2);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::Trainer trainer(schedule_config(), single, stream, model.ptr(), strategy, quiet);
  trainer.run();

  const int64_t batches[2] = {(stream.tasks[0].train.size() + 7) / 8, (stream.tasks[1].train.size() + 7) / 8};
  std::vector<std::string> expected;
  append_evaluations(expected);  // before any training
  expected.push_back("before_task 1");
  append_steps(expected, 1, 3 * batches[0]);
  expected.push_back("after_task 1");
  append_steps(expected, 1, 2 * batches[0]);
  append_from_task_1_end(expected, batches[1]);
  EXPECT_EQ(strategy.events, expected);

  // Stage epochs 0,1 | 2 | retraining 3 | 4, then task 2 from the start: 0,1 | 2.
  std::vector<double> lrs;
  const double epoch_lrs[8] = {0.1, 0.1, 0.05, 0.05, 0.025, 0.1, 0.1, 0.05};
  for (int e = 0; e < 8; ++e)
    for (int64_t k = 0; k < batches[e < 5 ? 0 : 1]; ++k) lrs.push_back(epoch_lrs[e]);
  ASSERT_EQ(strategy.step_lrs.size(), lrs.size());
  for (size_t k = 0; k < lrs.size(); ++k) EXPECT_DOUBLE_EQ(strategy.step_lrs[k], lrs[k]) << "step " << k;
}

class TrainerResume : public clx::testing_support::TempDirTest {
 protected:
  TrainerResume() : TempDirTest("clx_trainer_") {}
};

// Stopped in the second retraining epoch of task 1 (lr decayed twice, with
// momentum and dropout) and resumed from that checkpoint: the same weights and
// accuracy matrix as the uninterrupted run, bit for bit.
TEST_F(TrainerResume, MidRetrainingWithDecayedLearningRateEqualsUninterrupted) {
  const clx::TaskStream stream = two_task_stream(64, 60);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = schedule_config();
  checkpoint_every_step(config, path("checkpoints").string());

  auto model = model_on(stream, test_device(), /*dropout=*/0.25);
  RecordingStrategy strategy(2);
  clx::Trainer trainer(config, single, stream, model.ptr(), strategy, quiet);
  torch::manual_seed(99);
  const clx::RunResult uninterrupted = trainer.run();

  // The checkpoint after batch 2 of sampler epoch 4 of stage 1 (lr 0.025).
  const auto middle = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 0 && state.phase == "after_task" && state.epoch == 4 && state.step == 2;
  });
  ASSERT_TRUE(middle.has_value());

  auto resumed_model = model_on(stream, test_device(), 0.25);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : resumed_model->parameters()) parameter.uniform_(-1, 1);  // must come from the checkpoint
  }
  RecordingStrategy resumed_strategy(2);
  config.checkpoint_dir = path("resumed").string();
  clx::Trainer resumed_trainer(config, single, stream, resumed_model.ptr(), resumed_strategy, quiet);
  torch::manual_seed(12345);  // the checkpoint's generator state must win
  const clx::RunResult resumed = resumed_trainer.run(&*middle, "middle");

  EXPECT_EQ(resumed.matrix.initial, uninterrupted.matrix.initial);
  EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
  expect_same_parameters(*model, *resumed_model);
  // The resumed part used the same learning rates: the rest of the epoch at
  // 0.025, then task 2's three epochs.
  const int64_t batches[2] = {(stream.tasks[0].train.size() + 7) / 8, (stream.tasks[1].train.size() + 7) / 8};
  ASSERT_EQ(static_cast<int64_t>(resumed_strategy.step_lrs.size()), batches[0] - 2 + 3 * batches[1]);
  const std::vector<double> tail(strategy.step_lrs.end() - static_cast<long>(resumed_strategy.step_lrs.size()),
                                 strategy.step_lrs.end());
  EXPECT_EQ(resumed_strategy.step_lrs, tail);
  EXPECT_DOUBLE_EQ(resumed_strategy.step_lrs.front(), 0.025);

  // The resumed run re-enters task 1's after_task (its before_task and the
  // initial evaluation are in the checkpoint), finishes the retraining epoch
  // and goes on as the uninterrupted run did.
  std::vector<std::string> expected;
  expected.push_back("after_task 1");
  append_steps(expected, 1, batches[0] - 2);
  append_from_task_1_end(expected, batches[1]);
  EXPECT_EQ(resumed_strategy.events, expected);
}

// A checkpoint whose phase is none of the trainer's (damaged, or written by
// another kind of run) is refused with its name, not resumed as a mid-stage
// position; the phases the trainer writes read back to themselves.
TEST_F(TrainerResume, RefusesACheckpointWithAnUnknownPhase) {
  for (clx::StagePhase phase : {clx::StagePhase::Training, clx::StagePhase::AfterTask, clx::StagePhase::BetweenTasks})
    EXPECT_EQ(clx::parse_stage_phase(clx::to_string(phase), "x.h5"), phase);
  const clx::TaskStream stream = two_task_stream(64, 60);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = schedule_config();
  checkpoint_every_step(config, path("checkpoints").string());
  auto model = model_on(stream, test_device(), 0.25);
  RecordingStrategy strategy(2);
  clx::Trainer trainer(config, single, stream, model.ptr(), strategy, quiet);
  trainer.run();
  auto checkpoint = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 0 && state.phase == "training" && state.step == 2;
  });
  ASSERT_TRUE(checkpoint.has_value());
  checkpoint->phase = "pruning";
  auto resumed_model = model_on(stream, test_device(), 0.25);
  RecordingStrategy resumed_strategy(2);
  config.checkpoint_dir = path("resumed").string();
  clx::Trainer resumed_trainer(config, single, stream, resumed_model.ptr(), resumed_strategy, quiet);
  expect_error([&] { resumed_trainer.run(&*checkpoint, "ckpt-00000002.h5"); },
               {"checkpoint ckpt-00000002.h5: phase 'pruning' is not one of training, after_task, between_tasks"});
  EXPECT_TRUE(resumed_strategy.events.empty()) << "nothing trained from it";
}

// A run whose folder lock file disappears (its folder deleted under it)
// stops at its next checkpoint, before writing anything there, with the
// lock's message: what launch/train.cpp wires into before_checkpoint.
TEST_F(TrainerResume, StopsBeforeACheckpointWhenTheFolderLockIsGone) {
  const clx::TaskStream stream = two_task_stream(64, 60);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = schedule_config();
  checkpoint_every_step(config, path("checkpoints").string());
  const std::string lock_path = path(".lock").string();
  clx::FolderLock lock(lock_path, "train");
  int checkpoints_asked = 0;
  config.before_checkpoint = [&] {
    if (++checkpoints_asked == 3) std::filesystem::remove(lock_path);
    lock.check_in_place();
  };
  auto model = model_on(stream, test_device());
  RecordingStrategy strategy(0);
  clx::Trainer trainer(config, single, stream, model.ptr(), strategy, quiet);
  expect_error<clx::Error>([&] { trainer.run(); }, {"the lock file " + lock_path + " was removed"});
  EXPECT_EQ(checkpoints_asked, 3);
  int written = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path("checkpoints")))
    written += entry.path().extension() == ".h5";
  EXPECT_EQ(written, 2) << "a checkpoint was written after the lock file was gone";
}

// Training on the test device gives what training on the CPU gives (within
// float tolerance on a GPU; the same bits on the CPU).
TEST(TrainerDevice, MatchesTheCpuTrainer) {
  const clx::TaskStream stream = two_task_stream(40, 60);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  auto train_on = [&](torch::Device device) {
    auto model = model_on(stream, device);
    RecordingStrategy strategy(1);
    clx::Trainer trainer(small_trainer_config(8, device), single, stream, model.ptr(), strategy, quiet);
    const clx::RunResult result = trainer.run();
    return std::make_pair(model, result);
  };
  auto [cpu_model, cpu_result] = train_on(torch::kCPU);
  auto [device_model, device_result] = train_on(test_device());
  const auto a = cpu_model->named_parameters(), b = device_model->named_parameters();
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(b[k].value().device(), test_device());
    EXPECT_TRUE(a[k].value().allclose(b[k].value().to(torch::kCPU), 1e-4, 1e-5)) << a[k].key();
  }
  for (size_t j = 0; j < cpu_result.matrix.stages.size(); ++j)
    for (size_t i = 0; i < cpu_result.matrix.stages[j].size(); ++i)
      EXPECT_NEAR(device_result.matrix.stages[j][i], cpu_result.matrix.stages[j][i], 1.0 / 30);
}

TEST(DeviceOptions, ParsesPrecisionAndDevice) {
  EXPECT_EQ(clx::parse_precision("fp32"), clx::Precision::Fp32);
  EXPECT_EQ(clx::parse_precision("bf16"), clx::Precision::Bf16);
  expect_error([] { clx::parse_precision("fp16"); }, {"train.precision", "'fp16'", "fp32, bf16"});
  EXPECT_EQ(clx::resolve_device_type("cpu"), torch::kCPU);
  expect_error([] { clx::resolve_device_type("tpu"); }, {"run.device", "'tpu'", "auto, cpu, cuda"});
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(clx::resolve_device_type("auto"), torch::kCPU);
    expect_error([] { clx::resolve_device_type("cuda"); }, {"run.device=cuda", "no CUDA device is visible"});
  } else {
    EXPECT_EQ(clx::resolve_device_type("auto"), torch::kCUDA);
  }
}

// bf16 autocast holds for the forward pass inside the scope only.
TEST(DeviceOptions, AutocastScopeCoversTheForwardPassOnly) {
  const torch::Device device = test_device();
  torch::manual_seed(3);
  torch::nn::Linear linear(8, 4);
  linear->to(device);
  const torch::Tensor x = torch::randn({5, 8}).to(device);
  const torch::Tensor exact = linear(x);
  torch::Tensor low;
  {
    clx::AutocastScope autocast(device, clx::Precision::Bf16);
    low = linear(x);
  }
  EXPECT_EQ(low.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(linear(x).scalar_type(), torch::kFloat32);
  EXPECT_TRUE(low.to(torch::kFloat32).allclose(exact, 0.05, 0.05));
  {
    clx::AutocastScope fp32(device, clx::Precision::Fp32);
    EXPECT_EQ(linear(x).scalar_type(), torch::kFloat32);
  }
}

// The generators' states survive a save and restore; a state written before
// the framing (the CPU generator's bytes alone) is still read.
TEST(DeviceOptions, GeneratorStatesRoundTrip) {
  const torch::Device device = test_device();
  torch::manual_seed(7);
  const std::string saved = clx::save_generator_states(device);
  const torch::Tensor first = torch::rand({4}), first_device = torch::rand({4}, torch::TensorOptions().device(device));
  torch::manual_seed(8);
  EXPECT_TRUE(clx::restore_generator_states(saved, device));
  EXPECT_TRUE(torch::equal(torch::rand({4}), first));
  EXPECT_TRUE(torch::equal(torch::rand({4}, torch::TensorOptions().device(device)), first_device));

  torch::manual_seed(9);
  const torch::Tensor legacy = at::detail::getDefaultCPUGenerator().get_state();
  const std::string legacy_bytes(static_cast<const char*>(legacy.data_ptr()), legacy.numel());
  const torch::Tensor expected = torch::rand({3});
  EXPECT_EQ(clx::restore_generator_states(legacy_bytes, torch::kCPU), true);
  EXPECT_TRUE(torch::equal(torch::rand({3}), expected));
  expect_error([&] { clx::restore_generator_states(saved.substr(0, 20), device); }, {"truncated"});
}
