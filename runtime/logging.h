#pragma once
// Human-readable logs. Only rank 0 writes: to stdout and to the run's log file.
// Progress is redrawn in place on a terminal and printed as plain periodic
// lines otherwise (batch jobs, Slurm output files, pipes).
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "runtime/file_io.h"

namespace clx {

class Logger {
 public:
  // `log_path` empty: no log file (yet: see write_to_file). Non-root ranks
  // print nothing. `progress`: auto (redraw on a terminal, plain lines
  // otherwise), redraw, lines, or off (no progress lines; per-epoch lines
  // still appear).
  Logger(int rank, const std::string& log_path, const std::string& progress = "auto");
  // Keeps the lines logged from now on for write_to_file: a run opens its
  // train.log only once its start is accepted (a refused start leaves the
  // run folder as it was), and the log still begins with the first line.
  void keep_lines_for_file() { keep_lines_ = true; }
  // From now on also appends every line to `log_path`, starting with the
  // lines kept so far. Every write is checked: a failure throws FileError
  // naming the file.
  void write_to_file(const std::string& log_path);
  void info(const std::string& line);
  void warn(const std::string& line) { info("warning: " + line); }
  // Redraws one status line on a terminal; ignored when stdout is not a terminal.
  void status(const std::string& line);
  bool interactive() const { return interactive_; }
  bool progress_enabled() const { return progress_enabled_; }
  bool enabled() const { return rank_ == 0; }

 private:
  void clear_status();
  int rank_;
  bool interactive_;
  bool progress_enabled_ = true;
  bool status_shown_ = false;
  AppendFile file_;
  bool keep_lines_ = false;
  std::vector<std::string> kept_lines_;  // rank 0's lines until write_to_file
};

// Progress of a long loop (an epoch, an evaluation): a line at most every
// `interval_seconds` when not interactive, a redrawn line when interactive.
class Progress {
 public:
  Progress(Logger& logger, std::string label, int64_t total, double interval_seconds);
  void update(int64_t done, const std::string& detail = "");
  double elapsed_seconds() const;

 private:
  Logger& logger_;
  std::string label_;
  int64_t total_;
  double interval_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

std::string format_duration(double seconds);

// Estimates of the time left in the current stage (task) and in the whole
// sequence, from what this process has timed so far: the main-training epochs
// of the current stage, and the stages already completed (which include what
// follows the epochs: importance, pruning and retraining, evaluation). Times
// are seconds on one monotonic clock, passed in so the arithmetic is testable.
class SequenceClock {
 public:
  explicit SequenceClock(int stages = 0) : stages_(stages) {}
  // `epochs` main-training epochs, of which `epochs_done` were done before a resume.
  void start_stage(int stage, int64_t epochs, int64_t epochs_done, double now);
  void epoch_done(int64_t epochs_done, double now);
  void main_training_done(double now);
  // `complete` false: the stage was resumed midway, so its time is no sample.
  void stage_done(bool complete, double now);
  // Nothing until there is a basis for an estimate.
  std::optional<double> stage_left(double now) const;
  std::optional<double> sequence_left(double now) const;
  // "task ~1m10s left, sequence ~5m02s left" (or the parts that are known; "" when none).
  std::string describe(double now, const std::string& stage_name = "task") const;

 private:
  std::optional<double> epoch_mean() const;
  std::optional<double> rest_mean() const;
  std::optional<double> stage_mean() const;

  int stages_;
  int stage_ = 0;
  int64_t epochs_ = 0, epochs_done_ = 0;
  double stage_start_ = 0.0, last_epoch_end_ = 0.0, main_end_ = 0.0;
  bool main_done_ = false;
  double stage_epoch_seconds_ = 0.0;
  int64_t stage_epochs_timed_ = 0;
  double all_epoch_seconds_ = 0.0;
  int64_t all_epochs_timed_ = 0;
  std::vector<double> stage_seconds_, rest_seconds_;  // completed stages: in all, and after the main epochs
};

}  // namespace clx
