// ANPyC's compression schedule end to end (the paper's Table IV on a tiny
// stream of one task): the trainer runs the rounds, the run folder gets
// compression.csv and the table in results.json, and a run resumed inside a
// round's retraining equals the uninterrupted one. The rules of each round are
// checked against hand computations in test_algorithms.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "algorithms/anpyc.h"
#include "runtime/checkpoint.h"
#include "runtime/file_io.h"
#include "runtime/results.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/temp_dir_test.h"

using namespace clx;
using namespace clx::testing_support;

namespace {

class Compression : public TempDirTest {
 protected:
  Compression() : TempDirTest("clx_compression_") {}
};

// Three rounds with a global threshold, each retrained 2 epochs.
AnpycOptions compression_options() {
  AnpycOptions options;
  options.prune_schedule = PruneSchedule::Compression;
  options.compression_schedule = {30, 60, 90};
  options.threshold = PruningThreshold::Global;
  options.retrain_epochs = 2;
  options.importance.batch = 8;
  return options;
}

// One task of 4 classes, 24 training samples.
TaskStream one_task_stream() { return tiny_stream(1, 4, 24); }

MultiHeadModel compression_model(const TaskStream& stream) { return tiny_mlp(stream, {16, 8}, 21, 0.0, test_device()); }

std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(read_text_file(path.string()));
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> cells;
    std::istringstream fields(line);
    for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.emplace_back();
    rows.push_back(cells);
  }
  return rows;
}

}  // namespace

TEST_F(Compression, TheRunFolderGetsOneRowPerTensorAndRoundWithTheRatioOfTotalToRemaining) {
  const TaskStream stream = one_task_stream();
  MultiHeadModel model = compression_model(stream);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycStrategy anpyc(compression_options());
  Trainer trainer(small_trainer_config(8, test_device()), comm, stream, model.ptr(), anpyc, log);
  const RunResult result = trainer.run();
  write_results(dir_.string(), RunDescription{"anpyc", "tiny", 1, "single", ""}, result, summarise(result.matrix));

  const auto rows = read_csv(path("compression.csv"));
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows[0], (std::vector<std::string>{"round", "schedule_percent", "tensor", "total", "remaining",
                                               "remaining_percent", "compression", "accuracy_after_pruning",
                                               "accuracy"}));
  const auto shared = model->named_shared_parameters();
  const size_t rounds = 4;  // before pruning, then 3
  ASSERT_EQ(rows.size(), 1 + rounds * (shared.size() + 1));

  std::map<std::string, int64_t> previous;  // remaining per tensor in the round before
  const std::vector<double> percents{0, 30, 60, 90};
  for (size_t r = 0; r < rounds; ++r) {
    SCOPED_TRACE("round " + std::to_string(r));
    int64_t network_total = 0, network_remaining = 0;
    for (size_t k = 0; k <= shared.size(); ++k) {
      const auto& row = rows[1 + r * (shared.size() + 1) + k];
      ASSERT_EQ(row.size(), 9u);
      const std::string tensor = k < shared.size() ? shared[k].first : "network";
      EXPECT_EQ(row[0], std::to_string(r));
      EXPECT_DOUBLE_EQ(std::stod(row[1]), percents[r]);
      EXPECT_EQ(row[2], tensor);
      const int64_t total = std::stoll(row[3]), remaining = std::stoll(row[4]);
      if (k < shared.size()) {
        EXPECT_EQ(total, shared[k].second.numel());
        network_total += total;
        network_remaining += remaining;
      } else {
        EXPECT_EQ(total, network_total);
        EXPECT_EQ(remaining, network_remaining);
        // One pooled percentile frees at least its rank q (n - 1) of the n weights.
        EXPECT_LE(static_cast<double>(remaining), (1.0 - percents[r] / 100.0) * static_cast<double>(total) + 1.0);
      }
      if (r == 0) EXPECT_EQ(remaining, total);
      if (r > 0) EXPECT_LE(remaining, previous.at(tensor)) << tensor << ": the kept part grew";
      previous[tensor] = remaining;
      EXPECT_NEAR(std::stod(row[5]), 100.0 * static_cast<double>(remaining) / static_cast<double>(total), 1e-7);
      if (remaining > 0) EXPECT_NEAR(std::stod(row[6]), static_cast<double>(total) / static_cast<double>(remaining), 1e-7);
      EXPECT_EQ(row[7].empty(), r == 0) << "accuracy after pruning: none before the first round";
    }
  }
  // The last round's accuracy is the network the trainer evaluates at the end of the stage.
  const std::vector<ResultTable::Cell>& last = result.tables.at(0).rows.back();
  EXPECT_EQ(std::get<double>(last[8]), result.matrix.stages.back()[0]);
  EXPECT_NEAR(std::stod(rows.back()[8]), result.matrix.stages.back()[0], 1e-9);
  // The freed weights are zero in the final network.
  for (size_t k = 0; k < shared.size(); ++k)
    EXPECT_TRUE(shared[k].second.detach().masked_select(anpyc.masks()[k].second.eq(0)).eq(0).all().item<bool>());

  const auto json = nlohmann::json::parse(read_text_file(path("results.json").string()));
  ASSERT_TRUE(json.contains("tables"));
  EXPECT_EQ(json["tables"]["compression"]["columns"].size(), 9u);
  ASSERT_EQ(json["tables"]["compression"]["rows"].size(), rounds * (shared.size() + 1));
  EXPECT_TRUE(json["tables"]["compression"]["rows"][0][7].is_null());
  EXPECT_EQ(json["tables"]["compression"]["rows"].back()[2], "network");
}

// Stopped inside the second round's retraining (a checkpoint after every
// step) and resumed from there: the same rounds, weights and accuracies.
TEST_F(Compression, ResumedInsideARoundsRetrainingEqualsUninterrupted) {
  const TaskStream stream = one_task_stream();
  SingleCommunicator comm;
  Logger log(1, "");
  TrainerConfig config = small_trainer_config(8, test_device());
  checkpoint_every_step(config, path("checkpoints").string());

  MultiHeadModel model = compression_model(stream);
  AnpycStrategy anpyc(compression_options());
  Trainer trainer(config, comm, stream, model.ptr(), anpyc, log);
  torch::manual_seed(5);
  const RunResult uninterrupted = trainer.run();

  const auto middle = find_checkpoint(config.checkpoint_dir, [](const CheckpointState& state) {
    return state.phase == "after_task" && named(state.strategy, "progress.steps_done").item<int64_t>() == 1 &&
           named(state.strategy, "progress.retraining").item<int64_t>() == 1 && state.step == 1;
  });
  ASSERT_TRUE(middle.has_value()) << "no checkpoint inside round 2's retraining";
  EXPECT_EQ(named(middle->strategy, "compression.rounds").size(0), 2) << "before pruning and round 1 recorded";

  MultiHeadModel resumed_model = compression_model(stream);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : resumed_model->parameters()) parameter.uniform_(-1, 1);  // must come from the checkpoint
  }
  AnpycStrategy resumed_anpyc(compression_options());
  config.checkpoint_dir = path("resumed").string();
  Trainer resumed_trainer(config, comm, stream, resumed_model.ptr(), resumed_anpyc, log);
  torch::manual_seed(6);
  const RunResult resumed = resumed_trainer.run(&*middle, "middle");

  ASSERT_EQ(resumed.tables.size(), 1u);
  EXPECT_EQ(resumed.tables[0].rows, uninterrupted.tables.at(0).rows);
  EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
  expect_same_parameters(*model, *resumed_model);
}
