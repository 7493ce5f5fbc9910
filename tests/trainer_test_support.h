#pragma once
// What the trainer tests share: the device they run on and a small training setup.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "runtime/checkpoint.h"
#include "runtime/data/task_stream.h"
#include "runtime/trainer.h"

namespace clx::testing_support {

// The device tests put models and data on: CLX_TEST_DEVICE (cpu, cuda or
// cuda:N; default cpu), so the same tests run on a GPU machine
// (scripts/gpu_check.sh sets CLX_TEST_DEVICE=cuda).
inline torch::Device test_device() {
  const char* value = std::getenv("CLX_TEST_DEVICE");
  return torch::Device(value != nullptr && *value != '\0' ? std::string(value) : std::string("cpu"));
}

// The small training setup the trainer tests share: 2 epochs, lr 0.1,
// momentum 0.9 (so optimizer state matters), no progress lines. The MPI tests
// stay on the CPU (the MPI communicator carries CPU tensors).
inline TrainerConfig small_trainer_config(int64_t global_batch, torch::Device device = torch::kCPU) {
  TrainerConfig config;
  config.batch_size = global_batch;
  config.epochs = 2;
  config.lr = 0.1;
  config.momentum = 0.9;
  config.progress_seconds = 1e9;
  config.device = device;
  return config;
}

// A small, learnable synthetic dataset of n 4x4 images: class k lights up pixel k.
inline std::shared_ptr<LabelledImages> pixel_class_images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto data = std::make_shared<LabelledImages>();
  data->labels = torch::randint(0, 10, {n}, torch::kInt64);
  data->images = torch::rand({n, 1, 4, 4}) * 0.5;
  data->images.view({n, 16}).scatter_add_(1, data->labels.view({n, 1}), torch::ones({n, 1}));
  data->num_classes = 10;
  return data;
}

// A split stream of `tasks` tasks of `classes_per_task` classes over in-memory images.
inline TaskStream split_stream(std::shared_ptr<LabelledImages> train, std::shared_ptr<LabelledImages> test,
                               int64_t tasks, int64_t classes_per_task) {
  StreamConfig config;
  config.kind = clx::StreamKind::Split;
  config.num_tasks = tasks;
  config.classes_per_task = classes_per_task;
  return build_task_stream(config, std::move(train), std::move(test));
}

// Those images split into two tasks of 5 classes.
inline TaskStream two_task_stream(int64_t train_size, int64_t test_size) {
  return split_stream(pixel_class_images(train_size, 11), pixel_class_images(test_size, 12), 2, 5);
}

// What a resume test's uninterrupted run needs: a checkpoint after every
// step, all kept, in `dir`.
inline void checkpoint_every_step(TrainerConfig& config, const std::string& dir) {
  config.checkpoint_dir = dir;
  config.checkpoint_every_steps = 1;
  config.keep_checkpoints = 1000;
  config.config_text = "test = 1\n";
}

// The first checkpoint in `dir` (in the order they were written) whose state
// `wanted` accepts: where a resume test restarts from.
template <typename Predicate>
std::optional<CheckpointState> find_checkpoint(const std::string& dir, Predicate wanted) {
  for (const auto& file : CheckpointDirectory(dir, 1000).files()) {
    CheckpointState state = read_checkpoint(file);
    if (wanted(state)) return state;
  }
  return std::nullopt;
}

// Every parameter of `got` equal to the same parameter of `expected`, bit for bit.
inline void expect_same_parameters(const torch::nn::Module& expected, const torch::nn::Module& got) {
  const auto want = expected.named_parameters(), have = got.named_parameters();
  ASSERT_EQ(have.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) EXPECT_TRUE(torch::equal(have[k].value(), want[k].value())) << have[k].key();
}

}  // namespace clx::testing_support
