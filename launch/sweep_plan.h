#pragma once
// The sweep's configuration and plan (launch/sweep.cpp runs it): which runs of
// `train` a sweep consists of, in which folders, with which options. Kept
// apart from the process handling so that the parsing and planning can be
// unit-tested without training anything.
//
// A sweep file is an INI file (the same syntax as train's configs):
//
//   [sweep]
//   train_config = split_fmnist.ini      # relative to the sweep file's folder
//   methods = finetune, ewc, anpyc
//   seeds = 1, 2
//   ranks = 2
//   [methods]
//   anpyc-noprune = train.algorithm=anpyc anpyc.prune=false
//   [grid]
//   ewc = ewc.lambda: 10, 100, 1000
//
// Layout of the output folder:
//   grid/<method>/<option>=<value>[,<option>=<value>...]/  validation runs
//   runs/joint/seed<k>/                                    joint reference of seed k
//   runs/<method>/seed<k>/                                 test-split runs
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/error.h"

namespace clx {

// One `train` option ("section.name") and its value.
struct OptionSetting {
  std::string option, value;
  bool operator==(const OptionSetting& other) const { return option == other.option && value == other.value; }
};
using OptionList = std::vector<OptionSetting>;

// "--option=value" for each setting.
std::vector<std::string> to_arguments(const OptionList& options);

// One `key = value` line of an INI file.
struct IniEntry {
  std::string section, key, value;
  int line = 0;
};

// Reads `[section]` headers and `key = value` lines; '#' starts a comment
// (anywhere in a line, as in Boost.Program_options' config files). Throws
// clx::Error naming the file and the line of anything else.
std::vector<IniEntry> read_ini_file(const std::string& path);

// "a.b=1 --c.d=x": settings separated by white space, each "section.name=value"
// (a leading "--" is allowed). `where` names the source in errors.
OptionList parse_option_list(const std::string& text, const std::string& where);

// Names or numbers separated by commas and/or white space.
std::vector<std::string> split_list(const std::string& text);
std::vector<uint64_t> parse_seed_list(const std::string& text, const std::string& where);

// A hyperparameter grid: "ewc.lambda: 10, 100; ewc.mode: separate, online"
// is two axes; the grid is their Cartesian product.
struct GridAxis {
  std::string option;
  std::vector<std::string> values;
};
std::vector<GridAxis> parse_grid(const std::string& text, const std::string& where);
// Every combination, the first axis varying slowest.
std::vector<OptionList> grid_points(const std::vector<GridAxis>& axes);
// Folder name of a grid point: "ewc.lambda=10,ewc.mode=online".
std::string grid_point_name(const OptionList& point);

// A test run's folder inside the sweep's output folder: runs/<method>/seed<k>
// (the joint reference is the method "joint"). The one place that names it.
std::string test_run_folder(const std::string& method, uint64_t seed);
// k of a test run's folder name "seed<k>"; nullopt for any other name.
std::optional<uint64_t> test_run_seed(const std::string& folder_name);

struct SweepMethod {
  std::string name;          // folder and table name
  OptionList options;        // what makes the method (default: train.algorithm=<name>)
  std::vector<GridAxis> grid;  // empty: no tuning
};

struct SweepConfig {
  std::string path;          // the sweep file
  std::string train_config;  // the base train config, as found (relative to the working folder or absolute)
  std::string output;        // the sweep's output root
  std::vector<SweepMethod> methods;  // joint excluded: it is the reference, see `joint`
  std::vector<uint64_t> seeds;
  int ranks = 1;
  int threads = 0;           // run.threads of every run (0: train's automatic choice)
  bool joint = true;         // a joint run per seed, for the paper's FWT and as the ceiling
  OptionList options;        // train options for every run
  std::vector<std::string> mpirun_args;
  uint64_t grid_seed = 100;
  double validation_fraction = 0.1;
};

// Values given on the sweep's command line, which replace the file's.
struct SweepOverrides {
  std::optional<std::string> output, methods, seeds;
  std::optional<int> ranks, threads;
  OptionList options;  // added to sweep.options
};

// Reads and checks a sweep file. Throws clx::Error naming the file, line and
// key of any problem.
SweepConfig load_sweep_config(const std::string& path, const SweepOverrides& overrides = {});

enum class RunKind { Grid, Joint, Method };

struct PlannedRun {
  RunKind kind = RunKind::Method;
  std::string method;     // "joint" for joint runs
  uint64_t seed = 0;      // train.seed and data.seed (grid runs: the grid seed)
  OptionList grid_point;  // grid runs only
  std::string folder;     // relative to the output root
  std::string label;      // "grid ewc ewc.lambda=10", "joint seed 1", "ewc seed 2"
};

// Every run of the sweep in the order they are trained: the grids first (the
// choice must precede the test runs), then per seed the joint run (its
// accuracies are m_i of the paper's FWT) and every method.
std::vector<PlannedRun> plan_runs(const SweepConfig& config);

// The train options of a run, excluding --config, --output and run.threads.
// `chosen` is the grid point chosen on validation data for a method run;
// `joint_results` the joint run's results.json ("" when there is none).
// Throws clx::Error when two sources set the same option.
OptionList run_settings(const SweepConfig& config, const PlannedRun& run, const OptionList& chosen,
                        const std::string& joint_results);

// What a finished run scored: metrics.acc of its score matrix, the accuracy
// ACC (a fraction, higher is better) of a classification run or the mean
// final FID (lower is better) of a generation run.
struct RunScore {
  double value = 0.0;
  std::string name = "accuracy";  // results.json's score: accuracy | fid
  bool higher_is_better = true;
};
// "78.21%" (accuracy) or "123.45" (FID): a score's value as tables show it.
std::string score_value_text(const RunScore& score);
// "ACC 78.21%" or "mean FID 123.45"; with `validation`, "validation ACC ...".
std::string score_text(const RunScore& score, bool validation = false);

// A finished grid point: its validation score, or nothing when it failed.
struct GridOutcome {
  OptionList point;
  std::optional<RunScore> validation;
};
// Index of the best validation score (highest accuracy, lowest FID; the first
// on ties); nothing when every point failed.
std::optional<size_t> choose_best(const std::vector<GridOutcome>& outcomes);

// The score of a finished run folder: results.json parsed, with its score
// matrix and metrics.acc. Nothing when the run has not finished.
std::optional<RunScore> finished_run_score(const std::string& run_dir);
// Seconds a finished run spent training and evaluating (results.json's total_seconds).
std::optional<double> finished_run_seconds(const std::string& run_dir);

}  // namespace clx
