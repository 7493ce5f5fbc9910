#pragma once
// Command-line and config-file options of the `train` executable.
//
// Options live in sections ([data], [model], [train], [eval], [metrics],
// [run]) of an INI file read by Boost.Program_options; every option can be
// overridden on the command line as --section.name=value, and the command
// line wins.
#include <boost/program_options.hpp>
#include <string>

#include "runtime/data/task_stream.h"
#include "runtime/trainer.h"

namespace clx {

// A malformed command line or config file (exit code 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TrainOptions {
  bool help = false;
  std::string help_text;
  std::string config_path;
  std::string output_dir;
  std::string resume_dir;  // --resume: continue the run in this folder
  bool checkpoints = true;
  bool lock_output = true;  // run.lock: hold <output>/.lock for the whole run
  int64_t checkpoint_every_steps = 0;
  int64_t keep_checkpoints = 3;
  double collective_timeout = 300.0;
  std::string algorithm;
  std::string heads;  // auto | multi | single
  std::string backend;
  std::string device;        // run.device: auto | cpu | cuda
  bool deterministic = false;  // run.deterministic
  int64_t threads = 0;  // 0: cores / ranks on this node
  std::string progress;  // auto | redraw | lines | off
  std::string joint_results;
  StreamConfig stream;
  std::string hidden_layers;
  double dropout = 0.0;
  TrainerConfig trainer;
  boost::program_options::variables_map values;
  // "section.name = value" for every option, in declaration order; what ranks compare.
  std::string effective_config;
  // The lines of effective_config that decide results (every section but [run]):
  // what a checkpoint must match to be resumed.
  std::string experiment_config;
};

// Throws UsageError for unknown options, malformed values or an unreadable
// config file, naming the option and the file.
TrainOptions parse_train_options(int argc, const char* const* argv);

}  // namespace clx
