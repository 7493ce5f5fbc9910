// sweep: runs a grid of continual-learning methods x seeds (and a small
// hyperparameter grid chosen on validation data) from one sweep file, each run
// in its own folder, resumable, and ends with `report` over the runs.
// See docs/sweep.md and launch/sweep_plan.h.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "launch/sweep_plan.h"
#include "runtime/file_io.h"
#include "runtime/folder_lock.h"
#include "runtime/text.h"

namespace {

using namespace clx;
namespace fs = std::filesystem;
namespace po = boost::program_options;

// Exit codes, as train's: 0 every run finished, 1 some run failed (or a file
// could not be written), 2 bad command line or sweep file, 3 stopped by a
// signal (rerun to continue).
constexpr int kExitFailedRuns = 1, kExitUsage = 2, kExitStopped = 3;
constexpr int kTrainExitPreempted = 3;

// Written by the signal handler: how many SIGINT/SIGTERM arrived, and the
// running child (mpirun or train) they are forwarded to.
volatile sig_atomic_t g_stop_signals = 0;
volatile sig_atomic_t g_last_signal = 0;
volatile pid_t g_child = 0;

extern "C" void on_stop_signal(int signal_number) {
  g_stop_signals = g_stop_signals + 1;
  g_last_signal = signal_number;
  // SIGUSR1 is train's "checkpoint and exit 3" (mpirun forwards it to every
  // rank); a second one makes train exit at once. Only the child itself gets
  // it: signalling the ranks as well would make mpirun's copy the second.
  if (g_child > 0) kill(g_child, SIGUSR1);
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

std::string duration_text(double seconds) {
  std::ostringstream text;
  if (seconds < 90) text << static_cast<long>(std::lround(seconds)) << " s";
  else if (seconds < 90 * 60) text << static_cast<long>(std::lround(seconds / 60)) << " min";
  else text << std::fixed << std::setprecision(1) << seconds / 3600 << " h";
  return text.str();
}



std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.,/=:+@%") ==
                           std::string::npos)
    return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string command_text(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& word : words) text += (text.empty() ? "" : " ") + shell_quote(word);
  return text;
}

std::string read_text(const fs::path& path) {
  std::ifstream file(path);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) { write_file_atomically(path.string(), text); }

// The sweep's own lines: to stdout and to <output>/sweep.log (every write
// checked: a full disk stops the sweep with the file's name).
class SweepLog {
 public:
  void open(const fs::path& path) { file_.open(path.string()); }
  // A line in two parts ("[3/12] ewc seed 2 ... " and "done ..."), so that
  // the run being trained is visible while it trains.
  void begin(const std::string& text) {
    std::cout << text << std::flush;
    pending_ = text;
  }
  void end(const std::string& text) { line(pending_ + text, true); }
  void line(const std::string& text, bool continues = false) {
    if (!pending_.empty() && !continues) std::cout << "\n";
    std::cout << (continues ? text.substr(pending_.size()) : text) << std::endl;
    pending_.clear();
    if (file_.is_open()) file_.append(text + "\n");
  }

 private:
  AppendFile file_;
  std::string pending_;
};

// Runs `command` in its own process group (so that a terminal's Ctrl-C
// reaches only the sweep, which forwards it as SIGUSR1), output appended to
// `log_path` (or inherited when empty). Returns the exit code, 128 + signal
// for a child killed by a signal.
int run_command(const std::vector<std::string>& command, const std::string& log_path) {
  sigset_t stop_signals, previous;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  // Blocked until the child's pid is recorded, so a signal in between is forwarded, not lost.
  sigprocmask(SIG_BLOCK, &stop_signals, &previous);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    throw Error(std::string("cannot start a process: ") + std::strerror(errno));
  }
  if (pid == 0) {
    setpgid(0, 0);
    // If the sweep itself is killed, the run still checkpoints and stops.
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    if (getppid() != parent) _exit(kTrainExitPreempted);
    const int null_input = open("/dev/null", O_RDONLY);
    if (null_input >= 0) dup2(null_input, STDIN_FILENO);
    if (!log_path.empty()) {
      const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log < 0) {
        std::fprintf(stderr, "sweep: error: cannot open %s: %s\n", log_path.c_str(), std::strerror(errno));
        _exit(127);
      }
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    std::vector<char*> argv;
    for (const auto& word : command) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "sweep: error: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  g_child = pid;
  if (g_stop_signals > 0) kill(pid, SIGUSR1);  // stopped while starting: the run checkpoints at once
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw Error(std::string("waitpid: ") + std::strerror(errno));
  g_child = 0;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

fs::path executable_folder() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? fs::path(".") : self.parent_path();
}

enum class Outcome { Finished, Failed, Blocked, Stopped };

struct RunRecord {
  Outcome outcome = Outcome::Blocked;
  std::optional<RunScore> score;
  std::string reason;  // failed or blocked: why, and where the log is
  bool resumed = false;
  double seconds = 0.0;
};

// What the sweep started a run with: its settings (except paths that follow
// from the output folder) and the base config's settings (its lines without
// comments, so that editing a comment changes nothing). A rerun compares them,
// so that a run is never reused or resumed for settings that changed since.
std::string settings_record(const OptionList& settings, const std::string& base_config_path) {
  std::ostringstream text;
  text << "# The train settings this run was started with by sweep; a rerun of the sweep checks them.\n";
  for (const auto& setting : settings)
    if (setting.option != "metrics.joint_results") text << "--" << setting.option << "=" << setting.value << "\n";
  text << "# base config " << base_config_path << ", without comments:\n";
  std::istringstream base(read_text(base_config_path));
  for (std::string line; std::getline(base, line);) {
    line = line.substr(0, line.find('#'));
    const auto first = line.find_first_not_of(" \t\r"), last = line.find_last_not_of(" \t\r");
    if (first != std::string::npos) text << line.substr(first, last - first + 1) << "\n";
  }
  return text.str();
}

// Whether `program` can be run: a path, or a name found in PATH.
bool runnable(const std::string& program) {
  if (program.find('/') != std::string::npos) return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::istringstream folders(path ? path : "");
  for (std::string folder; std::getline(folders, folder, ':');)
    if (!folder.empty() && access((fs::path(folder) / program).c_str(), X_OK) == 0) return true;
  return false;
}

std::string first_difference(const std::string& then, const std::string& now) {
  const auto difference = first_differing_line(then, now);
  return difference ? "'" + difference->first + "' then, '" + difference->second + "' now" : "";
}

class Sweep {
 public:
  Sweep(SweepConfig config, std::vector<std::string> original_command, fs::path train, std::string mpirun,
        bool retry_failed)
      : config_(std::move(config)), command_(std::move(original_command)), train_(std::move(train)),
        mpirun_(std::move(mpirun)), retry_failed_(retry_failed), root_(config_.output), runs_(plan_runs(config_)) {
    // Every run's settings are checked before anything is trained, so that a
    // conflict in the sweep file is found now, not after an hour of grid runs.
    for (const PlannedRun& run : runs_) {
      OptionList representative;
      if (run.kind == RunKind::Method)
        for (const SweepMethod& method : config_.methods)
          if (method.name == run.method && !method.grid.empty()) representative = grid_points(method.grid).front();
      run_settings(config_, run, representative, "");
    }
  }

  void print_plan() const {
    std::cout << describe() << "\n";
    for (size_t k = 0; k < runs_.size(); ++k) {
      const PlannedRun& run = runs_[k];
      const fs::path dir = root_ / run.folder;
      std::string state = "to train";
      if (finished_run_score(dir.string())) state = "finished";
      else if (fs::exists(dir / "sweep_failed.txt")) state = "failed earlier";
      else if (fs::exists(dir / "config.ini")) state = "interrupted: to resume";
      std::cout << "[" << k + 1 << "/" << runs_.size() << "] " << run.label << ": " << state << ", " << dir.string()
                << "\n";
    }
  }

  int run() {
    fs::create_directories(root_);
    // Two sweeps on one output folder would train the same runs at once.
    const std::string lock_path = (root_ / ".sweep.lock").string();
    try {
      lock_ = FolderLock(lock_path, "sweep");
    } catch (const FolderLockedError& locked) {
      throw Error(root_.string() + ": another sweep is running on this output folder: " + locked.holder() +
                  " (lock " + lock_path + ")");
    }
    log_.open(root_ / "sweep.log");
    log_.line("sweep: " + describe());
    log_.line("sweep: each run logs to train.log (and console.log: every rank's output) in its folder");
    const auto start = std::chrono::steady_clock::now();
    for (size_t k = 0; k < runs_.size(); ++k) {
      if (g_stop_signals > 0) return stopped(k, false);
      records_[k] = execute(k);
      if (records_[k].outcome == Outcome::Stopped) return stopped(k, true);
    }
    write_chosen();
    const int failures = report_failures();
    size_t grid_failures = 0;
    for (size_t k = 0; k < runs_.size(); ++k)
      grid_failures += runs_[k].kind == RunKind::Grid && records_[k].outcome != Outcome::Finished;
    std::string summary = "sweep: " + std::to_string(runs_.size() - failures) + " of " + std::to_string(runs_.size()) +
                          " runs finished";
    if (failures > 0)
      summary += "; " + std::to_string(failures) + " did not (" + std::to_string(grid_failures) +
                 " grid point(s), which are no candidates for the choice, and " +
                 std::to_string(failures - grid_failures) + " test run(s))";
    log_.line(summary + "; " +
              duration_text(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()) +
              " in this invocation");
    return failures > 0 ? kExitFailedRuns : 0;
  }

  // Calls report over the finished test runs: report.md, report.csv, plots/.
  int report(const fs::path& report_binary) {
    std::vector<std::string> command{report_binary.string(), "--group-by", "folder",
                                     "--markdown", (root_ / "report.md").string(),
                                     "--csv", (root_ / "report.csv").string(),
                                     "--plots", (root_ / "plots").string(),
                                     "--notes", (root_ / "sweep_notes.md").string(),
                                     "--title", "Sweep " + fs::path(config_.path).filename().string()};
    size_t finished = 0;
    std::vector<std::string> names;
    for (const SweepMethod& method : config_.methods) names.push_back(method.name);
    auto add_finished = [&](const std::string& name) {
      for (size_t k = 0; k < runs_.size(); ++k)
        if (runs_[k].kind != RunKind::Grid && runs_[k].method == name && records_.count(k) &&
            records_[k].outcome == Outcome::Finished) {
          command.push_back((root_ / runs_[k].folder).string());
          ++finished;
        }
    };
    for (const std::string& name : names) add_finished(name);
    // The finished test runs of methods an earlier invocation trained into this
    // folder (`sweep --methods` on a subset): the report covers the whole folder.
    if (config_.joint) names.push_back("joint");
    size_t earlier = 0;
    for (const fs::path& run : earlier_test_runs(names)) {
      command.push_back(run.string());
      ++earlier;
    }
    if (config_.joint) add_finished("joint");
    finished += earlier;
    if (finished == 0) {
      log_.line("sweep: no finished test run: no report");
      return 1;
    }
    write_notes();
    log_.line("sweep: report over " + std::to_string(finished) + " runs (" + std::to_string(earlier) +
              " of them from earlier invocations): " + command_text(command));
    const int code = run_command(command, "");
    if (code != 0) {
      log_.line("sweep: error: report exited with " + std::to_string(code));
      return 1;
    }
    log_.line("sweep: wrote " + (root_ / "report.md").string() + ", " + (root_ / "report.csv").string() + " and " +
              (root_ / "plots").string() + "/");
    return 0;
  }

 private:
  // runs/<method>/seed<N> folders with a results.json, of methods not in `names`,
  // in order of method and seed.
  std::vector<fs::path> earlier_test_runs(const std::vector<std::string>& names) const {
    std::vector<fs::path> runs;
    const fs::path folder = root_ / "runs";
    if (!fs::is_directory(folder)) return runs;
    std::vector<fs::path> methods;
    for (const auto& entry : fs::directory_iterator(folder))
      if (entry.is_directory() && std::find(names.begin(), names.end(), entry.path().filename().string()) == names.end())
        methods.push_back(entry.path());
    std::sort(methods.begin(), methods.end());
    for (const fs::path& method : methods) {
      std::vector<std::pair<uint64_t, fs::path>> seeds;
      for (const auto& entry : fs::directory_iterator(method)) {
        const std::optional<uint64_t> seed = test_run_seed(entry.path().filename().string());
        if (entry.is_directory() && seed && finished_run_score(entry.path().string()))
          seeds.emplace_back(*seed, entry.path());
      }
      std::sort(seeds.begin(), seeds.end());
      for (const auto& seed : seeds) runs.push_back(seed.second);
    }
    return runs;
  }

  std::string describe() const {
    std::ostringstream text;
    size_t grid = 0;
    for (const PlannedRun& run : runs_) grid += run.kind == RunKind::Grid;
    text << runs_.size() << " runs (" << grid << " on the validation grid, " << runs_.size() - grid
         << " on test data) of " << config_.train_config << " in " << root_.string() << ", " << config_.ranks
         << " rank(s) per run" << (config_.threads > 0 ? " x " + std::to_string(config_.threads) + " thread(s)" : "");
    return text.str();
  }

  std::vector<std::string> launcher() const {
    if (config_.ranks == 1) return {};
    std::vector<std::string> words{mpirun_, "-np", std::to_string(config_.ranks)};
    if (geteuid() == 0) words.push_back("--allow-run-as-root");
    if (config_.ranks > static_cast<int>(std::max(1u, std::thread::hardware_concurrency())))
      words.push_back("--oversubscribe");
    words.insert(words.end(), config_.mpirun_args.begin(), config_.mpirun_args.end());
    return words;
  }

  // The grid point chosen for `method` on validation data; blocked when every point failed.
  std::optional<OptionList> choice_for(const std::string& method, std::string* reason) {
    std::vector<GridOutcome> outcomes;
    for (size_t k = 0; k < runs_.size(); ++k)
      if (runs_[k].kind == RunKind::Grid && runs_[k].method == method)
        outcomes.push_back({runs_[k].grid_point, records_[k].outcome == Outcome::Finished ? records_[k].score : std::nullopt});
    if (outcomes.empty()) return OptionList{};
    const auto best = choose_best(outcomes);
    std::ostringstream summary;
    for (const GridOutcome& outcome : outcomes)
      summary << (&outcome == &outcomes.front() ? "" : ", ") << grid_point_name(outcome.point) << " "
              << (outcome.validation ? score_value_text(*outcome.validation) : std::string("failed"));
    if (!best) {
      *reason = "every grid point of " + method + " failed (" + summary.str() + ")";
      return std::nullopt;
    }
    if (!announced_.count(method)) {
      log_.line("sweep: " + method + ": " + grid_point_name(outcomes[*best].point) +
                " chosen on validation data (" + summary.str() + ")");
      announced_.insert(method);
      chosen_[method] = {outcomes[*best].point, *outcomes[*best].validation, summary.str()};
    }
    return outcomes[*best].point;
  }

  RunRecord execute(size_t index) {
    const PlannedRun& run = runs_[index];
    const fs::path dir = root_ / run.folder;
    const std::string head = "[" + std::to_string(index + 1) + "/" + std::to_string(runs_.size()) + "] " + run.label;
    RunRecord record;

    // What the run depends on: the grid choice and the joint run of its seed.
    OptionList chosen;
    std::string joint_results;
    if (run.kind == RunKind::Method) {
      std::string reason;
      const auto choice = choice_for(run.method, &reason);
      if (!choice) {
        record.reason = reason;
        log_.line(head + ": not run: " + reason);
        return record;
      }
      chosen = *choice;
      if (config_.joint) {
        for (size_t k = 0; k < index; ++k)
          if (runs_[k].kind == RunKind::Joint && runs_[k].seed == run.seed && records_[k].outcome != Outcome::Finished) {
            record.reason = "its FWT reference " + (root_ / runs_[k].folder).string() + " did not finish";
            log_.line(head + ": not run: " + record.reason);
            return record;
          }
        joint_results = (root_ / test_run_folder("joint", run.seed) / "results.json").string();
      }
    }
    const OptionList settings = run_settings(config_, run, chosen, joint_results);
    const std::string wanted = settings_record(settings, config_.train_config);
    const fs::path record_path = dir / "sweep_settings.txt";
    if (fs::exists(record_path)) {
      const std::string difference = first_difference(read_text(record_path), wanted);
      if (!difference.empty())
        throw Error(dir.string() + " was started with other settings (" + difference +
                    "); delete that folder to redo the run with the new settings, or give the sweep another output folder");
    } else if (fs::exists(dir) && !fs::is_empty(dir)) {
      throw Error(dir.string() + " exists but was not started by this sweep (no sweep_settings.txt): move it away");
    }

    if (const auto score = finished_run_score(dir.string())) {
      record.outcome = Outcome::Finished;
      record.score = score;
      // Its training time (without the few seconds of start-up) informs the time-left estimates.
      if (const auto seconds = finished_run_seconds(dir.string())) durations_[duration_key(run)].push_back(*seconds);
      log_.line(head + ": finished earlier, skipped (" + score_text(*score, run.kind == RunKind::Grid) + ")");
      return record;
    }
    const fs::path failed_marker = dir / "sweep_failed.txt";
    if (fs::exists(failed_marker)) {
      if (!retry_failed_) {
        record.outcome = Outcome::Failed;
        record.reason = read_text(failed_marker);
        while (!record.reason.empty() && record.reason.back() == '\n') record.reason.pop_back();
        log_.line(head + ": failed earlier (" + record.reason + "), not retried (sweep --retry-failed retries it)");
        return record;
      }
      fs::remove(failed_marker);
    }

    fs::create_directories(dir);
    write_text(record_path, wanted);
    std::vector<std::string> command = launcher();
    command.push_back(train_.string());
    std::string how = "";
    if (fs::exists(dir / "config.ini")) {
      // Started before and interrupted: train continues from its newest checkpoint.
      record.resumed = true;
      command.insert(command.end(), {"--resume", dir.string()});
      const std::string latest = read_text(dir / "checkpoints" / "latest");
      how = latest.empty() ? "restarting (no checkpoint yet) " : "resuming from " + latest.substr(0, latest.find('\n')) + " ";
    } else {
      command.insert(command.end(), {"--config", config_.train_config});
      for (const std::string& argument : to_arguments(settings)) command.push_back(argument);
      command.insert(command.end(), {"--output", dir.string()});
    }
    if (config_.threads > 0) command.push_back("--run.threads=" + std::to_string(config_.threads));
    const fs::path console = dir / "console.log";
    {
      AppendFile console_log;
      console_log.open(console.string());
      console_log.append("# sweep: " + command_text(command) + "\n");
      console_log.close();
    }
    log_.begin(head + " ... " + how);
    const auto start = std::chrono::steady_clock::now();
    const int code = run_command(command, console.string());
    record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    if (code == 0) {
      if (const auto score = finished_run_score(dir.string())) {
        record.outcome = Outcome::Finished;
        record.score = score;
        if (!record.resumed) durations_[duration_key(run)].push_back(record.seconds);
        records_[index] = record;
        log_.end("done in " + duration_text(record.seconds) + ", " + score_text(*score, run.kind == RunKind::Grid) +
                 time_left(index));
        return record;
      }
    }
    if (g_stop_signals > 0) {
      record.outcome = Outcome::Stopped;
      record.reason = code == kTrainExitPreempted ? "checkpoint written" : "exit " + std::to_string(code);
      log_.end("stopped (" + record.reason + ")");
      return record;
    }
    record.outcome = Outcome::Failed;
    std::string error_line;
    {
      std::istringstream lines(read_text(console));
      for (std::string line; std::getline(lines, line);)
        if (line.find("error") != std::string::npos && error_line.empty()) error_line = line;
    }
    record.reason = "exit " + std::to_string(code) + (error_line.empty() ? "" : ": " + error_line) + "; log " +
                    console.string();
    write_text(failed_marker, record.reason + "\n");
    log_.end("FAILED after " + duration_text(record.seconds) + " (" + record.reason + ")");
    return record;
  }

  // Runs that take alike: a method's grid runs (on 90% of the data), its test runs.
  static std::string duration_key(const PlannedRun& run) {
    return run.kind == RunKind::Grid ? "grid " + run.method : run.method;
  }


  // Seconds the runs after `index` still need, from the runs timed so far
  // (trained now or earlier): the mean of the same method (grid runs apart),
  // else of every run.
  std::string time_left(size_t index) const {
    std::vector<double> all;
    for (const auto& [key, values] : durations_) all.insert(all.end(), values.begin(), values.end());
    if (all.empty()) return "";
    auto mean = [](const std::vector<double>& values) {
      double sum = 0;
      for (double v : values) sum += v;
      return sum / static_cast<double>(values.size());
    };
    double left = 0;
    size_t remaining = 0;
    for (size_t k = index + 1; k < runs_.size(); ++k) {
      const fs::path dir = root_ / runs_[k].folder;
      if (finished_run_score(dir.string()) || fs::exists(dir / "sweep_failed.txt")) continue;
      const auto same = durations_.find(duration_key(runs_[k]));
      left += same != durations_.end() ? mean(same->second) : mean(all);
      ++remaining;
    }
    if (remaining == 0) return ", sweep done";
    return ", sweep ~" + duration_text(left) + " left";
  }

  int stopped(size_t index, bool during_run) {
    const std::string signal = g_last_signal == SIGINT ? "SIGINT" : "SIGTERM";
    log_.line("sweep: stopped by " + signal + (during_run ? " during " + runs_[index].label +
                                                                 " (checkpointed in " + (root_ / runs_[index].folder).string() + ")"
                                                           : "") +
              "; finished runs are kept. To continue, rerun the same command:\n  " + command_text(command_));
    return kExitStopped;
  }

  bool in_this_invocation(const std::string& method) const {
    for (const SweepMethod& m : config_.methods)
      if (m.name == method) return true;
    return false;
  }

  // The rows of the output folder's chosen.csv, as it was before this
  // invocation, for methods it does not run (`sweep --methods` on a subset
  // writes into the same folder): kept, in their order, so a subset never
  // erases another method's choice. Read once, before this invocation
  // rewrites the file.
  struct EarlierChoice {
    std::string method, chosen, score;
  };
  std::vector<EarlierChoice> read_earlier_choices() const {
    std::vector<EarlierChoice> rows;
    const fs::path path = root_ / "chosen.csv";
    if (!fs::exists(path)) return rows;
    std::istringstream lines(read_text_file(path.string()));
    std::string line;
    std::getline(lines, line);  // header
    while (std::getline(lines, line)) {
      // method,chosen,validation_acc where `chosen` (a grid point of several
      // axes: "a=1,b=2") may itself hold commas: split at the first and last.
      const size_t first = line.find(','), last = line.rfind(',');
      if (first == std::string::npos || first == last) continue;
      EarlierChoice row{line.substr(0, first), line.substr(first + 1, last - first - 1), line.substr(last + 1)};
      if (!in_this_invocation(row.method)) rows.push_back(row);
    }
    return rows;
  }

  void write_chosen() {
    if (chosen_.empty()) return;
    std::ostringstream csv;
    // validation_acc: ACC (a fraction) of classification runs, the mean final FID of generation runs.
    csv << "method,chosen,validation_acc\n";
    for (const EarlierChoice& row : earlier_choices_) csv << row.method << "," << row.chosen << "," << row.score << "\n";
    for (const SweepMethod& method : config_.methods)
      if (const auto choice = chosen_.find(method.name); choice != chosen_.end())
        csv << method.name << "," << grid_point_name(choice->second.point) << "," << std::setprecision(10)
            << choice->second.score.value << "\n";
    write_text(root_ / "chosen.csv", csv.str());
  }

  int report_failures() {
    int failures = 0;
    std::ostringstream list;
    for (size_t k = 0; k < runs_.size(); ++k) {
      const RunRecord& record = records_[k];
      if (record.outcome == Outcome::Finished) continue;
      ++failures;
      list << "  " << runs_[k].label << " (" << (root_ / runs_[k].folder).string() << "): "
           << (record.outcome == Outcome::Blocked ? "not run: " : "failed: ") << record.reason << "\n";
    }
    if (failures > 0) log_.line("sweep: " + std::to_string(failures) + " run(s) did not finish:\n" + list.str().substr(0, list.str().size() - 1));
    return failures;
  }

  void write_notes() {
    std::ostringstream notes;
    notes << "Sweep file `" << config_.path << "`, base config `" << config_.train_config << "`: methods ";
    for (const SweepMethod& method : config_.methods)
      notes << (&method == &config_.methods.front() ? "" : ", ") << method.name;
    notes << "; seeds";
    for (uint64_t seed : config_.seeds) notes << " " << seed;
    notes << " (`train.seed` and `data.seed`); " << config_.ranks << " rank(s) per run";
    if (config_.joint) notes << "; a joint run per seed gives the m_i of FWT (paper)";
    notes << ".";
    if (!config_.options.empty()) {
      notes << " Every run also has";
      for (const std::string& argument : to_arguments(config_.options)) notes << " `" << argument << "`";
      notes << ".";
    }
    notes << "\n";
    if (!chosen_.empty()) {
      notes << "\nHyperparameters chosen on validation data only (" << config_.validation_fraction * 100
            << "% of each task's training data held out, seed " << config_.grid_seed
            << "; test data is never used to choose):\n\n| method | chosen | validation score | grid (validation score) |\n"
            << "|---|---|---|---|\n";
      for (const SweepMethod& method : config_.methods)
        if (const auto choice = chosen_.find(method.name); choice != chosen_.end())
          notes << "| " << method.name << " | " << grid_point_name(choice->second.point) << " | "
                << score_text(choice->second.score) << " | " << choice->second.summary << " |\n";
      for (const EarlierChoice& row : earlier_choices_)
        notes << "| " << row.method << " | " << row.chosen << " | " << row.score
              << " (chosen.csv) | chosen in an earlier invocation: sweep.log has its grid |\n";
    }
    std::ostringstream failed;
    for (size_t k = 0; k < runs_.size(); ++k)
      if (records_[k].outcome != Outcome::Finished)
        failed << "- " << runs_[k].label << ": " << records_[k].reason << "\n";
    if (!failed.str().empty())
      notes << "\nRuns that did not finish (not in the table; a failed grid point is no candidate):\n\n" << failed.str();
    write_text(root_ / "sweep_notes.md", notes.str());
  }

  struct Choice {
    OptionList point;
    RunScore score;
    std::string summary;
  };

  SweepConfig config_;
  std::vector<std::string> command_;
  fs::path train_;
  std::string mpirun_;
  bool retry_failed_;
  fs::path root_;
  std::vector<PlannedRun> runs_;
  std::map<size_t, RunRecord> records_;
  std::map<std::string, std::vector<double>> durations_;
  std::map<std::string, Choice> chosen_;
  std::vector<EarlierChoice> earlier_choices_ = read_earlier_choices();
  std::set<std::string> announced_;
  SweepLog log_;
  FolderLock lock_;  // held while the sweep runs; released when the process ends
};

}  // namespace

// The command line, parsed.
struct SweepCommand {
  std::string config_path, mpirun;
  SweepOverrides overrides;
  bool dry_run = false, retry_failed = false, report = true;
  std::vector<std::string> argv;  // as typed: the sweep log records it
};

// Parses the command line into `command`; returns an exit code when the
// process should stop here (--help: 0, a usage error: kExitUsage).
std::optional<int> parse_sweep_command(int argc, char** argv, SweepCommand& command) {
  std::vector<std::string> settings;
  po::options_description options(
      "Usage: sweep SWEEP_FILE [--output DIR] [--methods LIST] [--seeds LIST] [--ranks N] [--set option=value ...]\n\n"
      "Trains every method of a sweep file over seeds with `train` (under mpirun when ranks > 1), first\n"
      "choosing each method's hyperparameters on a grid scored on validation data (never on test data),\n"
      "each run in its own folder under the output folder. A finished run is skipped and an interrupted\n"
      "one resumed from its checkpoint, so rerunning the same command continues a stopped sweep.\n"
      "SIGINT/SIGTERM: the running train checkpoints and the sweep exits with 3. Ends with `report`:\n"
      "OUTPUT/report.md, report.csv and plots/. Exit: 0 all runs finished, 1 some failed (or a file\n"
      "could not be written), 2 bad input, 3 stopped. See docs/sweep.md for the sweep file.\n\nOptions");
  options.add_options()("help,h", "print this help and exit")(
      "config,c", po::value<std::string>(&command.config_path), "the sweep file (INI: [sweep], [methods], [grid])")(
      "output,o", po::value<std::string>(), "output folder (replaces sweep.output)")(
      "methods", po::value<std::string>(), "methods to run, comma-separated (replaces sweep.methods)")(
      "seeds", po::value<std::string>(), "seeds, comma-separated (replaces sweep.seeds)")(
      "ranks", po::value<int>(), "ranks per run (replaces sweep.ranks; 1: train without mpirun)")(
      "threads", po::value<int>(), "threads per rank (replaces sweep.threads; 0: train's automatic choice)")(
      "set", po::value<std::vector<std::string>>(&settings)->composing(),
      "a train option for every run, section.option=value (repeatable; added to sweep.options)")(
      "dry-run", "print the runs, their folders and states, and exit")(
      "retry-failed", "retry runs that failed in an earlier invocation (by default they are listed, not rerun)")(
      "no-report", "do not call report at the end")(
      "mpirun", po::value<std::string>(&command.mpirun)->default_value("mpirun"), "the MPI launcher used when ranks > 1");
  po::positional_options_description positional;
  positional.add("config", 1);
  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).positional(positional).run(), values);
    po::notify(values);
  } catch (const po::error& error) {
    std::cerr << "sweep: error: " << error.what() << "\n(sweep --help)" << std::endl;
    return kExitUsage;
  }
  if (values.count("help")) {
    std::cout << options << std::endl;
    return 0;
  }
  if (command.config_path.empty()) {
    std::cerr << "sweep: error: no sweep file given (e.g. sweep configs/sweep_split_fmnist.ini; sweep --help)" << std::endl;
    return kExitUsage;
  }
  SweepOverrides& overrides = command.overrides;
  if (values.count("output")) overrides.output = values["output"].as<std::string>();
  if (values.count("methods")) overrides.methods = values["methods"].as<std::string>();
  if (values.count("seeds")) overrides.seeds = values["seeds"].as<std::string>();
  if (values.count("ranks")) overrides.ranks = values["ranks"].as<int>();
  if (values.count("threads")) overrides.threads = values["threads"].as<int>();
  try {
    for (const std::string& setting : settings)
      for (const OptionSetting& parsed : parse_option_list(setting, "--set")) overrides.options.push_back(parsed);
  } catch (const Error& error) {
    std::cerr << "sweep: error: " << error.what() << std::endl;
    return kExitUsage;
  }
  command.dry_run = values.count("dry-run") > 0;
  command.retry_failed = values.count("retry-failed") > 0;
  command.report = values.count("no-report") == 0;
  command.argv.assign(argv, argv + argc);
  return std::nullopt;
}

// Loads the sweep file, checks the executables, and runs (or lists) the sweep.
int run_sweep(const SweepCommand& command) {
  const fs::path here = executable_folder();
  const fs::path train = here / "train", report = here / "report";
  for (const fs::path& binary : {train, report})
    if (access(binary.c_str(), X_OK) != 0)
      throw Error(binary.string() + " not found: sweep runs the train and report executables built beside it");
  const SweepConfig config = load_sweep_config(command.config_path, command.overrides);
  if (config.ranks > 1 && !runnable(command.mpirun))
    throw Error("--mpirun: " + command.mpirun + " not found (ranks = " + std::to_string(config.ranks) +
                " needs an MPI launcher: Debian's openmpi-bin, or --ranks 1)");
  Sweep sweep(config, command.argv, train, command.mpirun, command.retry_failed);
  if (command.dry_run) {
    sweep.print_plan();
    return 0;
  }
  install_stop_handlers();
  const int code = sweep.run();
  if (code == kExitStopped) return code;
  if (command.report && sweep.report(report) != 0) return kExitFailedRuns;
  return code;
}

int main(int argc, char** argv) {
  SweepCommand command;
  if (const std::optional<int> exit_code = parse_sweep_command(argc, argv, command)) return *exit_code;
  try {
    return run_sweep(command);
  } catch (const FileError& error) {
    // A file that cannot be written (full disk, read-only folder): not bad input.
    std::cerr << "sweep: error: " << error.what() << std::endl;
    return kExitFailedRuns;
  } catch (const fs::filesystem_error& error) {
    std::cerr << "sweep: error: " << error.what() << std::endl;
    return kExitFailedRuns;
  } catch (const Error& error) {
    std::cerr << "sweep: error: " << error.what() << std::endl;
    return kExitUsage;
  }
}
