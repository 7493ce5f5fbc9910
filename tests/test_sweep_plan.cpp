// Unit tests of the sweep's file parsing and planning (launch/sweep_plan.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "launch/sweep_plan.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"

using clx::testing_support::expect_error;

namespace {

std::vector<std::string> options_of(const clx::OptionList& list) {
  std::vector<std::string> text;
  for (const auto& setting : list) text.push_back(setting.option + "=" + setting.value);
  return text;
}

TEST(SweepGrid, ParsesAxesAndValues) {
  const auto axes = clx::parse_grid(" ewc.lambda: 1, 10,100 ; ewc.mode: separate,online", "grid.ewc");
  ASSERT_EQ(axes.size(), 2u);
  EXPECT_EQ(axes[0].option, "ewc.lambda");
  EXPECT_EQ(axes[0].values, (std::vector<std::string>{"1", "10", "100"}));
  EXPECT_EQ(axes[1].option, "ewc.mode");
  EXPECT_EQ(axes[1].values, (std::vector<std::string>{"separate", "online"}));
}

TEST(SweepGrid, PointsAreTheCartesianProductFirstAxisSlowest) {
  const auto points = clx::grid_points(clx::parse_grid("a.x: 1, 2; b.y: p, q, r", "test"));
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(options_of(points[0]), (std::vector<std::string>{"a.x=1", "b.y=p"}));
  EXPECT_EQ(options_of(points[2]), (std::vector<std::string>{"a.x=1", "b.y=r"}));
  EXPECT_EQ(options_of(points[3]), (std::vector<std::string>{"a.x=2", "b.y=p"}));
  EXPECT_EQ(clx::grid_point_name(points[5]), "a.x=2,b.y=r");
}

TEST(SweepPlan, TestRunFoldersAreNamedAndReadBackInOnePlace) {
  EXPECT_EQ(clx::test_run_folder("anpyc-noprune", 3), "runs/anpyc-noprune/seed3");
  EXPECT_EQ(clx::test_run_seed("seed3"), std::optional<uint64_t>(3));
  EXPECT_EQ(clx::test_run_seed("seed012"), std::optional<uint64_t>(12));
  for (const char* other : {"seed", "seeds", "seed-1", "seed1a", "Seed1", "1", "seed99999999999999999999"})
    EXPECT_EQ(clx::test_run_seed(other), std::nullopt) << other;
}

TEST(SweepGrid, RejectsMalformedGridsNamingTheSource) {
  expect_error([] { clx::parse_grid("ewc.lambda 1, 10", "sweep.ini:7: grid.ewc"); },
               {"sweep.ini:7: grid.ewc", "'ewc.lambda 1, 10' is not 'section.option: value, value, ...'"});
  expect_error([] { clx::parse_grid("lambda: 1", "g"); }, {"'lambda' is not an option name"});
  expect_error([] { clx::parse_grid("ewc.lambda: 1,,2", "g"); }, {"ewc.lambda: an empty value"});
  expect_error([] { clx::parse_grid("ewc.lambda: 1, 1", "g"); }, {"value 1 is listed twice"});
  expect_error([] { clx::parse_grid("ewc.lambda: a/b", "g"); }, {"value 'a/b' contains"});
  expect_error([] { clx::parse_grid("ewc.lambda: 1; ewc.lambda: 2", "g"); }, {"ewc.lambda has two lists"});
  expect_error([] { clx::parse_grid("  ", "g"); }, {"g: an empty grid"});
}

TEST(SweepOptions, ParsesSettingsWithOrWithoutDashes) {
  const auto options = clx::parse_option_list("train.algorithm=anpyc --anpyc.prune=false", "methods.x");
  EXPECT_EQ(options_of(options), (std::vector<std::string>{"train.algorithm=anpyc", "anpyc.prune=false"}));
  EXPECT_EQ(clx::to_arguments(options), (std::vector<std::string>{"--train.algorithm=anpyc", "--anpyc.prune=false"}));
  expect_error([] { clx::parse_option_list("train.epochs", "sweep.options"); },
               {"sweep.options: 'train.epochs' is not section.option=value"});
  expect_error([] { clx::parse_option_list("a.b=1 a.b=2", "o"); }, {"a.b is set twice"});
}

TEST(SweepOptions, SeedLists) {
  EXPECT_EQ(clx::parse_seed_list("1, 2 3", "s"), (std::vector<uint64_t>{1, 2, 3}));
  expect_error([] { clx::parse_seed_list("1, x", "sweep.seeds"); }, {"sweep.seeds: 'x' is not a non-negative integer"});
  expect_error([] { clx::parse_seed_list("-1", "s"); }, {"'-1' is not a non-negative integer"});
  expect_error([] { clx::parse_seed_list("2,2", "s"); }, {"seed 2 is listed twice"});
  expect_error([] { clx::parse_seed_list("", "s"); }, {"no seeds given"});
}

TEST(SweepChoice, HighestValidationAccFirstOnTiesFailedPointsNeverChosen) {
  const auto acc = [](double value) { return clx::RunScore{value, "accuracy", true}; };
  std::vector<clx::GridOutcome> outcomes = {{{{"a.b", "1"}}, acc(0.90)}, {{{"a.b", "2"}}, std::nullopt},
                                            {{{"a.b", "3"}}, acc(0.95)}, {{{"a.b", "4"}}, acc(0.95)}};
  EXPECT_EQ(clx::choose_best(outcomes), std::optional<size_t>(2));
  outcomes = {{{{"a.b", "1"}}, std::nullopt}};
  EXPECT_EQ(clx::choose_best(outcomes), std::nullopt);
}

// Generation runs are scored by FID: the lowest wins.
TEST(SweepChoice, LowestValidationFidFirstOnTies) {
  const auto fid = [](double value) { return clx::RunScore{value, "fid", false}; };
  const std::vector<clx::GridOutcome> outcomes = {{{{"si.c", "1"}}, fid(120.0)}, {{{"si.c", "10"}}, fid(95.5)},
                                                  {{{"si.c", "100"}}, std::nullopt}, {{{"si.c", "1000"}}, fid(95.5)}};
  EXPECT_EQ(clx::choose_best(outcomes), std::optional<size_t>(1));
  EXPECT_EQ(clx::score_text(fid(95.5), true), "validation mean FID 95.50");
  EXPECT_EQ(clx::score_text(clx::RunScore{0.7821, "accuracy", true}), "ACC 78.21%");
}

class SweepFile : public clx::testing_support::TempDirTest {
 protected:
  SweepFile() : TempDirTest("clx_sweep_") {}
  std::string write(const std::string& text) {
    std::ofstream(path("base.ini")) << "[train]\nepochs = 1\n";
    std::ofstream(path("sweep.ini")) << text;
    return path("sweep.ini").string();
  }
};

TEST_F(SweepFile, LoadsAndPlansGridThenJointAndMethodsPerSeed) {
  const std::string file = write(
      "# a comment\n[sweep]\ntrain_config = base.ini\nmethods = finetune, ewc, anpyc-noprune\nseeds = 1, 2\n"
      "ranks = 2  # two ranks\nthreads = 1\noptions = data.tasks=3 train.epochs=2\n"
      "[methods]\nanpyc-noprune = train.algorithm=anpyc anpyc.prune=false\n"
      "[grid]\nseed = 7\nvalidation_fraction = 0.2\newc = ewc.lambda: 10, 100\nsi = si.c: 1\n");
  const clx::SweepConfig config = clx::load_sweep_config(file);
  EXPECT_EQ(config.train_config, path("base.ini").lexically_normal().string());
  EXPECT_EQ(config.output, "runs/sweep");
  EXPECT_EQ(config.ranks, 2);
  EXPECT_EQ(config.threads, 1);
  EXPECT_TRUE(config.joint);
  ASSERT_EQ(config.methods.size(), 3u);
  EXPECT_EQ(options_of(config.methods[2].options), (std::vector<std::string>{"train.algorithm=anpyc", "anpyc.prune=false"}));
  EXPECT_EQ(config.methods[1].grid.size(), 1u);

  const auto runs = clx::plan_runs(config);
  std::vector<std::string> folders;
  for (const auto& run : runs) folders.push_back(run.folder);
  EXPECT_EQ(folders, (std::vector<std::string>{"grid/ewc/ewc.lambda=10", "grid/ewc/ewc.lambda=100", "runs/joint/seed1",
                                               "runs/finetune/seed1", "runs/ewc/seed1", "runs/anpyc-noprune/seed1",
                                               "runs/joint/seed2", "runs/finetune/seed2", "runs/ewc/seed2",
                                               "runs/anpyc-noprune/seed2"}));
  EXPECT_EQ(runs[0].label, "grid ewc ewc.lambda=10");
  EXPECT_EQ(runs[9].label, "anpyc-noprune seed 2");

  // Grid runs: validation split, grid seed; test runs: chosen point, joint reference.
  EXPECT_EQ(options_of(clx::run_settings(config, runs[1], {}, "")),
            (std::vector<std::string>{"data.tasks=3", "train.epochs=2", "train.algorithm=ewc", "ewc.lambda=100",
                                      "train.seed=7", "data.seed=7", "data.validation_fraction=0.2",
                                      "eval.split=validation"}));
  EXPECT_EQ(options_of(clx::run_settings(config, runs[8], {{"ewc.lambda", "10"}}, "out/runs/joint/seed2/results.json")),
            (std::vector<std::string>{"data.tasks=3", "train.epochs=2", "train.algorithm=ewc", "ewc.lambda=10",
                                      "train.seed=2", "data.seed=2", "eval.split=test",
                                      "metrics.joint_results=out/runs/joint/seed2/results.json"}));
  EXPECT_EQ(options_of(clx::run_settings(config, runs[2], {}, "")),
            (std::vector<std::string>{"data.tasks=3", "train.epochs=2", "train.algorithm=joint", "train.seed=1",
                                      "data.seed=1", "eval.split=test"}));
}

TEST_F(SweepFile, CommandLineOverridesReplaceTheFile) {
  const std::string file = write("[sweep]\ntrain_config = base.ini\nmethods = ewc\nseeds = 1\nranks = 2\n"
                                 "options = train.epochs=2\n[grid]\newc = ewc.lambda: 1, 2\n");
  clx::SweepOverrides overrides;
  overrides.output = "elsewhere";
  overrides.methods = "finetune joint";
  overrides.seeds = "3,4";
  overrides.ranks = 1;
  overrides.options = {{"train.epochs", "1"}, {"data.tasks", "2"}};
  const clx::SweepConfig config = clx::load_sweep_config(file, overrides);
  EXPECT_EQ(config.output, "elsewhere");
  ASSERT_EQ(config.methods.size(), 1u);  // joint is the per-seed reference, not a method
  EXPECT_EQ(config.methods[0].name, "finetune");
  EXPECT_TRUE(config.joint);
  EXPECT_EQ(config.seeds, (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(config.ranks, 1);
  EXPECT_EQ(options_of(config.options), (std::vector<std::string>{"train.epochs=1", "data.tasks=2"}));
}

TEST_F(SweepFile, ErrorsNameTheFileLineAndKey) {
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethod = ewc\n")); },
               {"sweep.ini:3: unknown key sweep.method"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = missing.ini\nmethods = ewc\n")); },
               {"sweep.ini:2: sweep.train_config", "missing.ini not found"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\n")); },
               {"sweep.methods: no methods given"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = ewc\nranks = 0\n")); },
               {"sweep.ini:4: sweep.ranks: '0' is not an integer >= 1"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = ewc\n"
                                                  "options = train.seed=3\n")); },
               {"train.seed is set by sweep.seeds and grid.seed"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = ewc\n"
                                                  "[grid]\newc = train.algorithm: si\n")); },
               {"sweep.ini:5: grid.ewc: train.algorithm is set by the method"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = x\n"
                                                  "[methods]\nx = anpyc.prune=false\n")); },
               {"sweep.ini:5: methods.x: a method definition needs train.algorithm"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = ewc\n[other]\na = 1\n")); },
               {"sweep.ini:5: unknown section [other]"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = ewc\nthis line\n")); },
               {"sweep.ini:4: expected 'key = value'"});
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = ewc, ../x\n")); },
               {"'../x' is not a usable method name"});
}

TEST_F(SweepFile, AnOptionSetTwiceForOneRunIsAnError) {
  const clx::SweepConfig config = clx::load_sweep_config(
      write("[sweep]\ntrain_config = base.ini\nmethods = ewc\noptions = ewc.lambda=5\n[grid]\newc = ewc.lambda: 1, 2\n"));
  const auto runs = clx::plan_runs(config);
  expect_error([&] { clx::run_settings(config, runs[0], {}, ""); },
               {"grid ewc ewc.lambda=1: ewc.lambda is set both by sweep.options and by grid.ewc"});
}

// A method that needs validation data in its test runs (CLNP) sets
// data.validation_fraction itself; its grid runs hold out the grid's fraction,
// which must be the same value.
TEST_F(SweepFile, MethodMaySetItsValidationFractionForTestRuns) {
  const clx::SweepConfig config = clx::load_sweep_config(
      write("[sweep]\ntrain_config = base.ini\nmethods = clnp\nseeds = 1\njoint = false\n"
            "[methods]\nclnp = train.algorithm=clnp data.validation_fraction=0.1\n"
            "[grid]\nvalidation_fraction = 0.1\nclnp = clnp.alpha: 0.001\n"));
  const auto runs = clx::plan_runs(config);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(options_of(clx::run_settings(config, runs[0], {}, "")),
            (std::vector<std::string>{"train.algorithm=clnp", "clnp.alpha=0.001", "train.seed=100", "data.seed=100",
                                      "data.validation_fraction=0.1", "eval.split=validation"}));
  EXPECT_EQ(options_of(clx::run_settings(config, runs[1], {{"clnp.alpha", "0.001"}}, "")),
            (std::vector<std::string>{"train.algorithm=clnp", "data.validation_fraction=0.1", "clnp.alpha=0.001",
                                      "train.seed=1", "data.seed=1", "eval.split=test"}));
  const clx::SweepConfig differing = clx::load_sweep_config(
      write("[sweep]\ntrain_config = base.ini\nmethods = clnp\nseeds = 1\njoint = false\n"
            "[methods]\nclnp = train.algorithm=clnp data.validation_fraction=0.2\n"
            "[grid]\nvalidation_fraction = 0.1\nclnp = clnp.alpha: 0.001\n"));
  expect_error([&] { clx::run_settings(differing, clx::plan_runs(differing)[0], {}, ""); },
               {"methods.clnp sets data.validation_fraction=0.2", "use one value"});
  // Elsewhere it stays the sweep's.
  expect_error([&] { clx::load_sweep_config(write("[sweep]\ntrain_config = base.ini\nmethods = ewc\n"
                                                  "options = data.validation_fraction=0.1\n")); },
               {"data.validation_fraction is set by grid.validation_fraction"});
}

TEST_F(SweepFile, FinishedRunNeedsACompleteResultsFile) {
  EXPECT_EQ(clx::finished_run_score(dir_.string()), std::nullopt);
  std::ofstream(path("results.json")) << "{\"metrics\": {\"acc\": null}, \"accuracy_matrix\": {\"stages\": [[1]]}}";
  EXPECT_EQ(clx::finished_run_score(dir_.string()), std::nullopt);
  std::ofstream(path("results.json")) << "{\"metrics\": {\"acc\": 0.75}, \"accuracy_mat";
  EXPECT_EQ(clx::finished_run_score(dir_.string()), std::nullopt);
  std::ofstream(path("results.json")) << "{\"metrics\": {\"acc\": 0.75}, \"accuracy_matrix\": {\"stages\": [[0.75]]}}";
  ASSERT_TRUE(clx::finished_run_score(dir_.string()).has_value());
  EXPECT_EQ(clx::finished_run_score(dir_.string())->value, 0.75);
  EXPECT_TRUE(clx::finished_run_score(dir_.string())->higher_is_better);
  // A generation run: its score and matrix are FID's.
  std::ofstream(path("results.json")) << "{\"score\": {\"name\": \"fid\", \"higher_is_better\": false}, "
                                         "\"metrics\": {\"acc\": 88.5}, \"accuracy_matrix\": {\"stages\": [[1]]}}";
  EXPECT_EQ(clx::finished_run_score(dir_.string()), std::nullopt);  // no fid_matrix: not finished
  std::ofstream(path("results.json")) << "{\"score\": {\"name\": \"fid\", \"higher_is_better\": false}, "
                                         "\"metrics\": {\"acc\": 88.5}, \"fid_matrix\": {\"stages\": [[88.5]]}}";
  ASSERT_TRUE(clx::finished_run_score(dir_.string()).has_value());
  EXPECT_EQ(clx::finished_run_score(dir_.string())->name, "fid");
  EXPECT_FALSE(clx::finished_run_score(dir_.string())->higher_is_better);
  EXPECT_EQ(clx::finished_run_score(dir_.string())->value, 88.5);
  EXPECT_EQ(clx::finished_run_seconds(dir_.string()), std::nullopt);
  std::ofstream(path("results.json")) << "{\"metrics\": {\"acc\": 0.75}, \"accuracy_matrix\": {\"stages\": [[0.75]]}, "
                                         "\"total_seconds\": 12.5}";
  EXPECT_EQ(clx::finished_run_seconds(dir_.string()), std::optional<double>(12.5));
}

}  // namespace
