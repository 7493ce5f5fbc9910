#include "runtime/logging.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <ctime>
#include <iostream>
#include <sstream>

namespace clx {
namespace {

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

}  // namespace

std::string format_duration(double seconds) {
  if (seconds < 0) seconds = 0;
  const long total = static_cast<long>(seconds + 0.5);
  char text[32];
  if (total >= 3600) std::snprintf(text, sizeof(text), "%ldh%02ldm", total / 3600, (total / 60) % 60);
  else if (total >= 60) std::snprintf(text, sizeof(text), "%ldm%02lds", total / 60, total % 60);
  else std::snprintf(text, sizeof(text), "%.1fs", seconds);
  return text;
}

Logger::Logger(int rank, const std::string& log_path, const std::string& progress) : rank_(rank) {
  if (progress == "auto") {
    // mpirun hands ranks a pseudo-terminal even when its own output goes to a
    // file, and Slurm output is a file: under a launcher, plain lines are the safe choice.
    const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") ||
                          std::getenv("PMI_RANK") || std::getenv("SLURM_JOB_ID");
    interactive_ = isatty(STDOUT_FILENO) == 1 && !launched;
  } else if (progress == "redraw" || progress == "lines" || progress == "off") {
    interactive_ = progress == "redraw";
    progress_enabled_ = progress != "off";
  } else {
    throw std::invalid_argument("run.progress: '" + progress + "' is not one of auto, redraw, lines, off");
  }
  if (!log_path.empty()) write_to_file(log_path);
}

void Logger::write_to_file(const std::string& log_path) {
  if (rank_ != 0) return;
  file_.open(log_path);
  for (const std::string& line : kept_lines_) file_.append(line);
  kept_lines_.clear();
  keep_lines_ = false;
}

void Logger::clear_status() {
  if (!status_shown_) return;
  std::cout << "\r\033[K";
  status_shown_ = false;
}

void Logger::info(const std::string& line) {
  if (rank_ != 0) return;
  clear_status();
  const std::string stamped = "[" + timestamp() + "] " + line;
  std::cout << stamped << std::endl;
  if (file_.is_open())
    file_.append(stamped + "\n");
  else if (keep_lines_)
    kept_lines_.push_back(stamped + "\n");
}

void Logger::status(const std::string& line) {
  if (rank_ != 0 || !interactive_) return;
  std::cout << "\r\033[K" << line << std::flush;
  status_shown_ = true;
}

Progress::Progress(Logger& logger, std::string label, int64_t total, double interval_seconds)
    : logger_(logger), label_(std::move(label)), total_(total), interval_(interval_seconds),
      start_(std::chrono::steady_clock::now()), last_print_(start_) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& detail) {
  if (!logger_.enabled() || !logger_.progress_enabled()) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  const double interval = logger_.interactive() ? 0.2 : interval_;
  if (since_print < interval && done < total_) return;
  if (!logger_.interactive() && done >= total_) return;  // the caller logs its own summary line
  last_print_ = now;
  const double elapsed = elapsed_seconds();
  const double left = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  std::ostringstream line;
  line << label_ << " " << done << "/" << total_ << " (" << (100 * done / std::max<int64_t>(total_, 1)) << "%)";
  if (!detail.empty()) line << " " << detail;
  line << " elapsed " << format_duration(elapsed) << " left " << format_duration(left);
  if (logger_.interactive()) logger_.status(line.str());
  else logger_.info(line.str());
}

void SequenceClock::start_stage(int stage, int64_t epochs, int64_t epochs_done, double now) {
  stage_ = stage;
  epochs_ = epochs;
  epochs_done_ = epochs_done;
  stage_start_ = last_epoch_end_ = now;
  main_done_ = false;
  stage_epoch_seconds_ = 0.0;
  stage_epochs_timed_ = 0;
}

void SequenceClock::epoch_done(int64_t epochs_done, double now) {
  const double seconds = now - last_epoch_end_;
  last_epoch_end_ = now;
  epochs_done_ = epochs_done;
  stage_epoch_seconds_ += seconds;
  ++stage_epochs_timed_;
  all_epoch_seconds_ += seconds;
  ++all_epochs_timed_;
}

void SequenceClock::main_training_done(double now) {
  main_done_ = true;
  main_end_ = now;
}

void SequenceClock::stage_done(bool complete, double now) {
  if (complete) {
    stage_seconds_.push_back(now - stage_start_);
    rest_seconds_.push_back(main_done_ ? now - main_end_ : 0.0);
  }
}

std::optional<double> SequenceClock::epoch_mean() const {
  // This stage's epochs first: tasks can differ in size.
  if (stage_epochs_timed_ > 0) return stage_epoch_seconds_ / static_cast<double>(stage_epochs_timed_);
  if (all_epochs_timed_ > 0) return all_epoch_seconds_ / static_cast<double>(all_epochs_timed_);
  return std::nullopt;
}

std::optional<double> SequenceClock::rest_mean() const {
  if (rest_seconds_.empty()) return std::nullopt;
  double sum = 0.0;
  for (double seconds : rest_seconds_) sum += seconds;
  return sum / static_cast<double>(rest_seconds_.size());
}

std::optional<double> SequenceClock::stage_mean() const {
  if (!stage_seconds_.empty()) {
    double sum = 0.0;
    for (double seconds : stage_seconds_) sum += seconds;
    return sum / static_cast<double>(stage_seconds_.size());
  }
  const auto epoch = epoch_mean();
  if (!epoch) return std::nullopt;
  return static_cast<double>(epochs_) * *epoch + rest_mean().value_or(0.0);
}

std::optional<double> SequenceClock::stage_left(double now) const {
  if (main_done_) {
    // Importance, pruning and evaluation: as long as in the stages before, if any were timed.
    const auto rest = rest_mean();
    if (!rest) return std::nullopt;
    return std::max(0.0, *rest - (now - main_end_));
  }
  const auto epoch = epoch_mean();
  if (!epoch) return std::nullopt;
  return static_cast<double>(std::max<int64_t>(0, epochs_ - epochs_done_)) * *epoch + rest_mean().value_or(0.0);
}

std::optional<double> SequenceClock::sequence_left(double now) const {
  const auto stage = stage_left(now);
  const auto per_stage = stage_mean();
  if (!stage || !per_stage) return std::nullopt;
  return *stage + static_cast<double>(std::max(0, stages_ - stage_ - 1)) * *per_stage;
}

std::string SequenceClock::describe(double now, const std::string& stage_name) const {
  const auto stage = stage_left(now);
  const auto sequence = sequence_left(now);
  std::string text;
  if (stage) text = stage_name + " ~" + format_duration(*stage) + " left";
  if (sequence && stages_ > 1) text += (text.empty() ? "" : ", ") + std::string("sequence ~") + format_duration(*sequence) + " left";
  return text;
}

}  // namespace clx
