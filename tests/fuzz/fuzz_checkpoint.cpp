// libFuzzer target: arbitrary bytes as a checkpoint file. read_checkpoint must
// either succeed or throw clx::Error; any other exception, crash, sanitizer
// report or runaway allocation is a bug.
//
// Seeds: run with CLX_FUZZ_WRITE_SEEDS=<dir> to write a few valid checkpoints
// (written by this very build of write_checkpoint) into <dir> and exit.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "tests/fuzz/fuzz_file_target.h"

namespace {

void write_seeds(const std::string& dir) {
  clx::CheckpointState empty;
  clx::write_checkpoint(dir + "/empty.h5", empty);

  clx::CheckpointState small;
  small.config_text = "algorithm = anpyc\nlr = 0.01\n";
  small.world_size = 2;
  small.stage = 1;
  small.phase = "training";
  small.epoch = 2;
  small.step = 3;
  small.global_step = 40;
  small.model = {{"trunk.0.weight", torch::arange(12, torch::kFloat32).reshape({3, 4})},
                 {"trunk.0.bias", torch::zeros({3}, torch::kFloat64)},
                 {"count", torch::tensor(5, torch::kInt64)}};
  small.optimizer = {{"momentum.trunk.0.weight", torch::ones({3, 4})}};
  small.strategy = {{"mask.trunk.0.weight", torch::ones({3, 4}, torch::kBool)},
                    {"ids", torch::arange(4, torch::kInt32)},
                    {"a/b", torch::empty({0}, torch::kUInt8)}};
  small.strategy_text = {{"mode", "x"}};
  small.accuracy_stages = {{0.5, 0.25}};
  small.accuracy_initial = {0.1, 0.1};
  small.rank_states = {"rank0", "rank1"};
  clx::write_checkpoint(dir + "/small.h5", small);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) { return clx::fuzz::initialize(write_seeds); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return clx::fuzz::test_file_input(data, size, "clx_fuzz_checkpoint_", [](const std::string& path) { clx::read_checkpoint(path); });
}
