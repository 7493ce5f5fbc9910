#pragma once
// What the trainer tests share: the device they run on and a small training setup.
#include <cstdlib>
#include <string>

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

}  // namespace clx::testing_support
