#include "runtime/logging.h"

#include <unistd.h>

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
  if (rank_ == 0 && !log_path.empty()) file_.open(log_path, std::ios::app);
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
  if (file_.is_open()) file_ << stamped << std::endl;
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

}  // namespace clx
