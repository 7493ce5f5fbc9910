#pragma once
// Human-readable logs. Only rank 0 writes: to stdout and to the run's log file.
// Progress is redrawn in place on a terminal and printed as plain periodic
// lines otherwise (batch jobs, Slurm output files, pipes).
#include <chrono>
#include <fstream>
#include <string>

namespace clx {

class Logger {
 public:
  // `log_path` empty: no log file. Non-root ranks print nothing.
  // `progress`: auto (redraw on a terminal, plain lines otherwise), redraw,
  // lines, or off (no progress lines; per-epoch lines still appear).
  Logger(int rank, const std::string& log_path, const std::string& progress = "auto");
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
  std::ofstream file_;
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

}  // namespace clx
