#pragma once
#include "runtime/mpi_communicator.h"
#include "runtime/trainer.h"

namespace clx::testing_support {
// The job's world communicator, set up by test_mpi_main.cpp.
extern MpiCommunicator* world;

// The small training setup the MPI tests share: 2 epochs, lr 0.1, momentum
// 0.9 (so optimizer state matters), no progress lines.
inline TrainerConfig small_trainer_config(int64_t global_batch) {
  TrainerConfig config;
  config.batch_size = global_batch;
  config.epochs = 2;
  config.lr = 0.1;
  config.momentum = 0.9;
  config.progress_seconds = 1e9;
  return config;
}
}  // namespace clx::testing_support
