// Unit tests of the continual-learning metrics (runtime/metrics.h, DESIGN.md
// section 4.1) and of the fingerprints (runtime/fingerprint.h).
#include <gtest/gtest.h>

#include "tests/expect_error.h"
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/fingerprint.h"
#include "runtime/metrics.h"
#include "runtime/results.h"

using clx::testing_support::expect_error;

namespace {

namespace fs = std::filesystem;

constexpr double kTol = 1e-12;

// Rows are stages (after training task j), columns tasks i; 0-based below,
// the formulas of DESIGN.md 4.1 are 1-based.
//
//            task 0  task 1  task 2
//   stage 0   0.90    0.10    0.20
//   stage 1   0.80    0.95    0.30
//   stage 2   0.70    0.85    0.99
//   initial   0.10    0.05    0.20   (b_i, random initialisation)
//   joint     0.92    0.97    0.94   (m_i, joint run)
clx::AccuracyMatrix three_tasks() {
  clx::AccuracyMatrix matrix;
  matrix.stages = {{0.9, 0.1, 0.2}, {0.8, 0.95, 0.3}, {0.7, 0.85, 0.99}};
  matrix.initial = {0.1, 0.05, 0.2};
  return matrix;
}
const std::vector<double> kJoint = {0.92, 0.97, 0.94};

TEST(Metrics, AverageAccuracy) {
  // ACC = (0.70 + 0.85 + 0.99) / 3 = 2.54 / 3 = 0.846666...
  EXPECT_NEAR(clx::average_accuracy(three_tasks()), 2.54 / 3.0, kTol);
}

TEST(Metrics, BackwardTransfer) {
  // BWT = ((P[2][0] - P[0][0]) + (P[2][1] - P[1][1])) / 2
  //     = ((0.70 - 0.90) + (0.85 - 0.95)) / 2 = (-0.20 - 0.10) / 2 = -0.15
  const auto bwt = clx::backward_transfer(three_tasks());
  ASSERT_TRUE(bwt.has_value());
  EXPECT_NEAR(*bwt, -0.15, kTol);
}

TEST(Metrics, ForwardTransferPaper) {
  // FWT (paper) = ((P[1][1] - m_1) + (P[2][2] - m_2)) / 2
  //             = ((0.95 - 0.97) + (0.99 - 0.94)) / 2 = (-0.02 + 0.05) / 2 = 0.015
  const auto fwt = clx::forward_transfer_paper(three_tasks(), kJoint);
  ASSERT_TRUE(fwt.has_value());
  EXPECT_NEAR(*fwt, 0.015, kTol);
}

TEST(Metrics, ForwardTransferGem) {
  // FWT (GEM) = ((P[0][1] - b_1) + (P[1][2] - b_2)) / 2
  //           = ((0.10 - 0.05) + (0.30 - 0.20)) / 2 = (0.05 + 0.10) / 2 = 0.075
  const auto fwt = clx::forward_transfer_gem(three_tasks());
  ASSERT_TRUE(fwt.has_value());
  EXPECT_NEAR(*fwt, 0.075, kTol);
}

TEST(Metrics, Stability) {
  // SMT = mean over tasks i < T-1 of the population variance of P[j][i], j = i..T-1.
  // task 0: 0.90, 0.80, 0.70; mean 0.80; variance (0.01 + 0 + 0.01) / 3 = 0.02 / 3
  // task 1: 0.95, 0.85;       mean 0.90; variance (0.0025 + 0.0025) / 2 = 0.0025
  // SMT = (0.02 / 3 + 0.0025) / 2 = 0.0275 / 6 = 0.0045833...
  const auto smt = clx::stability(three_tasks());
  ASSERT_TRUE(smt.has_value());
  EXPECT_NEAR(*smt, 0.0275 / 6.0, kTol);
}

TEST(Metrics, TwoTasks) {
  // P = {{0.8, 0.3}, {0.6, 0.9}}, b = {0.1, 0.2}, m = {0.85, 0.95}
  // ACC = (0.6 + 0.9) / 2 = 0.75; BWT = 0.6 - 0.8 = -0.2; FWT paper = 0.9 - 0.95 = -0.05;
  // FWT GEM = 0.3 - 0.2 = 0.1; SMT = variance(0.8, 0.6) = 0.01.
  clx::AccuracyMatrix matrix;
  matrix.stages = {{0.8, 0.3}, {0.6, 0.9}};
  matrix.initial = {0.1, 0.2};
  const clx::MetricSummary summary = clx::summarise(matrix, {0.85, 0.95});
  EXPECT_NEAR(summary.acc, 0.75, kTol);
  ASSERT_TRUE(summary.bwt && summary.fwt_paper && summary.fwt_gem && summary.smt);
  EXPECT_NEAR(*summary.bwt, -0.2, kTol);
  EXPECT_NEAR(*summary.fwt_paper, -0.05, kTol);
  EXPECT_NEAR(*summary.fwt_gem, 0.1, kTol);
  EXPECT_NEAR(*summary.smt, 0.01, kTol);
}

TEST(Metrics, SummariseMatchesTheSingleFunctions) {
  const clx::MetricSummary summary = clx::summarise(three_tasks(), kJoint);
  EXPECT_NEAR(summary.acc, 2.54 / 3.0, kTol);
  ASSERT_TRUE(summary.bwt && summary.fwt_paper && summary.fwt_gem && summary.smt);
  EXPECT_NEAR(*summary.bwt, -0.15, kTol);
  EXPECT_NEAR(*summary.fwt_paper, 0.015, kTol);
  EXPECT_NEAR(*summary.fwt_gem, 0.075, kTol);
  EXPECT_NEAR(*summary.smt, 0.0275 / 6.0, kTol);
  // Without joint accuracies there is no paper FWT, the rest is unchanged.
  const clx::MetricSummary no_joint = clx::summarise(three_tasks());
  EXPECT_FALSE(no_joint.fwt_paper.has_value());
  EXPECT_TRUE(no_joint.fwt_gem.has_value());
}

TEST(Metrics, SingleTaskHasOnlyAccuracy) {
  clx::AccuracyMatrix matrix;
  matrix.stages = {{0.8}};
  matrix.initial = {0.1};
  EXPECT_TRUE(matrix.sequential());
  EXPECT_NEAR(clx::average_accuracy(matrix), 0.8, kTol);
  EXPECT_FALSE(clx::backward_transfer(matrix).has_value());
  EXPECT_FALSE(clx::forward_transfer_paper(matrix, {0.9}).has_value());
  EXPECT_FALSE(clx::forward_transfer_gem(matrix).has_value());
  EXPECT_FALSE(clx::stability(matrix).has_value());
}

TEST(Metrics, JointShapedMatrixHasOnlyAccuracy) {
  // A joint run: one stage covering all three tasks.
  clx::AccuracyMatrix matrix;
  matrix.stages = {{0.9, 0.8, 0.7}};
  matrix.initial = {0.1, 0.1, 0.1};
  EXPECT_FALSE(matrix.sequential());
  EXPECT_EQ(matrix.num_tasks(), 3);
  EXPECT_NEAR(clx::average_accuracy(matrix), 0.8, kTol);  // (0.9 + 0.8 + 0.7) / 3
  EXPECT_FALSE(clx::backward_transfer(matrix).has_value());
  EXPECT_FALSE(clx::forward_transfer_paper(matrix, {0.9, 0.9, 0.9}).has_value());
  EXPECT_FALSE(clx::forward_transfer_gem(matrix).has_value());
  EXPECT_FALSE(clx::stability(matrix).has_value());
  const clx::MetricSummary summary = clx::summarise(matrix, {0.9, 0.9, 0.9});
  EXPECT_FALSE(summary.bwt || summary.fwt_paper || summary.fwt_gem || summary.smt);
}

TEST(Metrics, WrongLengthJointGivesNoPaperFwt) {
  EXPECT_FALSE(clx::forward_transfer_paper(three_tasks(), {0.9, 0.9}).has_value());
  EXPECT_FALSE(clx::forward_transfer_paper(three_tasks(), {0.9, 0.9, 0.9, 0.9}).has_value());
  EXPECT_FALSE(clx::forward_transfer_paper(three_tasks(), {}).has_value());
}

TEST(Metrics, ConstantAccuraciesGiveZeroTransferAndStability) {
  clx::AccuracyMatrix matrix;
  matrix.stages = {{0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}};
  matrix.initial = {0.5, 0.5, 0.5};
  const clx::MetricSummary summary = clx::summarise(matrix, {0.5, 0.5, 0.5});
  EXPECT_NEAR(summary.acc, 0.5, kTol);
  EXPECT_NEAR(summary.bwt.value(), 0.0, kTol);
  EXPECT_NEAR(summary.fwt_paper.value(), 0.0, kTol);
  EXPECT_NEAR(summary.fwt_gem.value(), 0.0, kTol);
  EXPECT_NEAR(summary.smt.value(), 0.0, kTol);
}

// ---- read_final_accuracies

class ResultsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The re-executing death-test style (safe with LibTorch's threads); set
    // before InDeathTestChild() below, which depends on it.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    // A death-test child (re-executed binary) works in its parent's directory,
    // which the parent removes even when the child crashes.
    const pid_t owner = ::testing::internal::InDeathTestChild() ? ::getppid() : ::getpid();
    dir_ = fs::temp_directory_path() / ("clx_test_metrics_" + std::to_string(owner) + "_" + info->name());
    if (::testing::internal::InDeathTestChild()) return;
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (::testing::internal::InDeathTestChild()) return;
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  std::string write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  fs::path dir_;
};

TEST_F(ResultsFileTest, ReadsTheLastStage) {
  const std::string path = write("results.json", R"({
    "algorithm": "joint",
    "accuracy_matrix": {"stages": [[0.1, 0.2, 0.3], [0.91, 0.875, 0.5]], "initial": [0.1, 0.1, 0.1]}
  })");
  const std::vector<double> final_row = clx::read_final_accuracies(path);
  ASSERT_EQ(final_row.size(), 3u);
  EXPECT_DOUBLE_EQ(final_row[0], 0.91);
  EXPECT_DOUBLE_EQ(final_row[1], 0.875);
  EXPECT_DOUBLE_EQ(final_row[2], 0.5);

  const std::string single = write("single.json", R"({"accuracy_matrix": {"stages": [[0.25, 0.75]]}})");
  EXPECT_EQ(clx::read_final_accuracies(single), (std::vector<double>{0.25, 0.75}));
}

// A strategy's table: <name>.csv (text with a comma or quote quoted, an empty
// cell empty) and the same cells under "tables" in results.json (empty: null).
TEST_F(ResultsFileTest, StrategyTablesBecomeCsvFilesAndJsonTables) {
  clx::RunResult result;
  result.task_names = {"t1"};
  result.matrix.initial = {0.1};
  result.matrix.stages = {{0.5}};
  result.stages.push_back(clx::StageRecord{{0}});
  result.tables.push_back({"demo",
                           {"name", "count", "value", "none"},
                           {{std::string("plain"), int64_t{3}, 0.125, std::monostate()},
                            {std::string("a,b \"q\""), int64_t{-1}, 1e-12, std::monostate()}}});
  clx::write_results(dir_.string(), clx::RunDescription{"anpyc", "tiny", 1, "single", ""}, result,
                     clx::summarise(result.matrix));
  std::ifstream csv(dir_ / "demo.csv");
  const std::string text((std::istreambuf_iterator<char>(csv)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "name,count,value,none\nplain,3,0.125,\n\"a,b \"\"q\"\"\",-1,1e-12,\n");
  std::ifstream json_file(dir_ / "results.json");
  const auto json = nlohmann::json::parse(json_file);
  EXPECT_EQ(json["tables"]["demo"]["columns"], nlohmann::json({"name", "count", "value", "none"}));
  EXPECT_EQ(json["tables"]["demo"]["rows"][0], nlohmann::json::parse(R"(["plain", 3, 0.125, null])"));
  EXPECT_EQ(json["tables"]["demo"]["rows"][1][0], "a,b \"q\"");
}

TEST_F(ResultsFileTest, MissingFileThrows) {
  const std::string path = (dir_ / "no_such_results.json").string();
  expect_error([&] { clx::read_final_accuracies(path); }, {"metrics.joint_results", path});
}

TEST_F(ResultsFileTest, MalformedFileThrows) {
  const std::string broken = write("broken.json", R"({"accuracy_matrix": {"stages": [[0.1, 0.2)");
  expect_error([&] { clx::read_final_accuracies(broken); }, {"metrics.joint_results", broken});

  const std::string no_matrix = write("no_matrix.json", R"({"metrics": {"acc": 0.5}})");
  expect_error([&] { clx::read_final_accuracies(no_matrix); }, {"metrics.joint_results", no_matrix});

  const std::string not_numbers = write("not_numbers.json", R"({"accuracy_matrix": {"stages": [["a", "b"]]}})");
  expect_error([&] { clx::read_final_accuracies(not_numbers); }, {"metrics.joint_results", not_numbers});

  const std::string empty = write("empty.json", "");
  expect_error([&] { clx::read_final_accuracies(empty); }, {"metrics.joint_results", empty});
}

// Exit code of a child process that reads `path`: 0 when read_final_accuracies
// throws a clx::Error naming metrics.joint_results, 2 for another message,
// 3 when it returns. A crash (the bug below) shows as a signal, not an exit.
int read_in_child(const std::string& path) {
  int code = 3;
  try {
    clx::read_final_accuracies(path);
  } catch (const clx::Error& error) {
    code = std::string(error.what()).find("metrics.joint_results") != std::string::npos ? 0 : 2;
  } catch (...) {
    code = 4;
  }
  return code;
}

// A results.json whose accuracy_matrix.stages is empty (or an empty object) is
// malformed and should be reported like any other malformed file. Known
// library bug: runtime/metrics.cpp line 71 calls nlohmann::json::back() on the
// empty container, which is undefined behaviour (SIGSEGV in a Release build).
// The reads run in a child process so that the crash fails only this test.
TEST_F(ResultsFileTest, EmptyStagesThrowsInsteadOfCrashing) {
  const std::string empty_array = write("empty_array.json", R"({"accuracy_matrix": {"stages": []}})");
  EXPECT_EXIT(std::exit(read_in_child(empty_array)), ::testing::ExitedWithCode(0), "")
      << "read_final_accuracies on {\"stages\": []} must throw clx::Error (metrics.joint_results)";
  const std::string empty_object = write("empty_object.json", R"({"accuracy_matrix": {"stages": {}}})");
  EXPECT_EXIT(std::exit(read_in_child(empty_object)), ::testing::ExitedWithCode(0), "")
      << "read_final_accuracies on {\"stages\": {}} must throw clx::Error (metrics.joint_results)";
}

// ---- Fingerprint

TEST(Fingerprint, ToHex) {
  EXPECT_EQ(clx::to_hex(255), "00000000000000ff");
  EXPECT_EQ(clx::to_hex(0), "0000000000000000");
  EXPECT_EQ(clx::to_hex(0xcbf29ce484222325ULL), "cbf29ce484222325");
  EXPECT_EQ(clx::to_hex(~0ULL), "ffffffffffffffff");
}

TEST(Fingerprint, IsXxh64) {
  // XXH64 with seed 0: the published values for "", "a" and "abc"; the
  // values of python3-xxhash for bytes 0..99 (all tail paths) and for 5
  // rounds of bytes 0..255 (whole 32-byte stripes).
  EXPECT_EQ(clx::Fingerprint().value(), 0xef46db3751d8e999ULL);
  EXPECT_EQ(clx::Fingerprint().add_bytes("a", 1).value(), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(clx::Fingerprint().add_bytes("abc", 3).hex(), "44bc2cf5ad770999");
  std::string counting, rounds;
  for (int i = 0; i < 100; ++i) counting.push_back(static_cast<char>(i));
  for (int i = 0; i < 5 * 256; ++i) rounds.push_back(static_cast<char>(i % 256));
  EXPECT_EQ(clx::Fingerprint().add_bytes(counting.data(), counting.size()).hex(), "6ac1e58032166597");
  EXPECT_EQ(clx::Fingerprint().add_bytes(rounds.data(), rounds.size()).hex(), "afc184ad7938a354");
  // The worked example of docs/checkpoint_format.md: the bytes fed for a tensor.
  EXPECT_EQ(clx::Fingerprint().add(torch::tensor({{1.0f, 2.0f}})).hex(), "c8f5a86f0d987b60");
}

TEST(Fingerprint, PiecesGiveTheSameValueAsOneCall) {
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(static_cast<char>(i * 7));
  const uint64_t whole = clx::Fingerprint().add_bytes(bytes.data(), bytes.size()).value();
  for (size_t piece : {1, 3, 8, 31, 32, 33, 100, 999}) {
    clx::Fingerprint pieces;
    for (size_t offset = 0; offset < bytes.size(); offset += piece)
      pieces.add_bytes(bytes.data() + offset, std::min(piece, bytes.size() - offset));
    EXPECT_EQ(pieces.value(), whole) << "pieces of " << piece;
  }
  // value() does not end the stream.
  clx::Fingerprint running;
  running.add_bytes(bytes.data(), 500);
  (void)running.value();
  running.add_bytes(bytes.data() + 500, 500);
  EXPECT_EQ(running.value(), whole);
}

TEST(Fingerprint, SameTensorSameHex) {
  const torch::Tensor t = torch::arange(12, torch::kFloat32).reshape({3, 4}) / 7.0;
  const std::string a = clx::Fingerprint().add(t).hex();
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(a, clx::Fingerprint().add(t).hex());
  EXPECT_EQ(a, clx::Fingerprint().add(t.clone()).hex());
  // A non-contiguous view with the same values fingerprints the same.
  const torch::Tensor transposed_back = t.t().contiguous().t();
  ASSERT_FALSE(transposed_back.is_contiguous());
  EXPECT_EQ(a, clx::Fingerprint().add(transposed_back).hex());
}

TEST(Fingerprint, ChangedElementChangesHex) {
  const torch::Tensor t = torch::arange(12, torch::kFloat32).reshape({3, 4}) / 7.0;
  torch::Tensor changed = t.clone();
  changed[2][3] = changed[2][3].item<float>() + 1e-6f;
  EXPECT_NE(clx::Fingerprint().add(t).hex(), clx::Fingerprint().add(changed).hex());
}

TEST(Fingerprint, DtypeAndShapeChangeHex) {
  // Float 0.0 and int32 0 have identical bytes: only the dtype tells them apart.
  const torch::Tensor f = torch::zeros({2, 3}, torch::kFloat32);
  const torch::Tensor i = torch::zeros({2, 3}, torch::kInt32);
  EXPECT_NE(clx::Fingerprint().add(f).hex(), clx::Fingerprint().add(i).hex());
  EXPECT_NE(clx::Fingerprint().add(f).hex(), clx::Fingerprint().add(f.to(torch::kFloat64)).hex());
  EXPECT_NE(clx::Fingerprint().add(f).hex(), clx::Fingerprint().add(f.reshape({3, 2})).hex());
  EXPECT_NE(clx::Fingerprint().add(f).hex(), clx::Fingerprint().add(f.reshape({6})).hex());
  // Undefined tensors are accepted and differ from an empty one.
  EXPECT_NE(clx::Fingerprint().add(torch::Tensor()).hex(), clx::Fingerprint().add(torch::zeros({0})).hex());
}

TEST(Fingerprint, StringsAndIntegers) {
  EXPECT_EQ(clx::Fingerprint().add(std::string_view("abc")).hex(), clx::Fingerprint().add(std::string_view("abc")).hex());
  EXPECT_NE(clx::Fingerprint().add(std::string_view("abc")).hex(), clx::Fingerprint().add(std::string_view("abd")).hex());
  // Length-prefixed: "ab"+"c" differs from "a"+"bc".
  EXPECT_NE(clx::Fingerprint().add(std::string_view("ab")).add(std::string_view("c")).value(),
            clx::Fingerprint().add(std::string_view("a")).add(std::string_view("bc")).value());
  EXPECT_NE(clx::Fingerprint().add(int64_t{1}).value(), clx::Fingerprint().add(int64_t{2}).value());
  // Order matters.
  EXPECT_NE(clx::Fingerprint().add(int64_t{1}).add(int64_t{2}).value(),
            clx::Fingerprint().add(int64_t{2}).add(int64_t{1}).value());
}

}  // namespace
