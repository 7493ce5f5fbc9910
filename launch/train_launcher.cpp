// train: the command users run. It starts the training program, train-main
// (launch/train.cpp, built beside this file), in its own process (exec: same
// pid, arguments and environment) with SIGUSR1 and SIGTERM blocked.
//
// Why: loading LibTorch's libraries takes seconds on a busy node (measured
// 1.2-2.2 s from exec to train-main's first instruction on a 2-core machine
// running builds), and a preemption signal in that time would kill the
// process with 128 + signal, so that a batch script would not requeue it.
// A blocked signal stays pending across exec until train-main has installed
// its handlers and unblocks it; then the run stops before training with the
// requeue code 3. This program itself needs only the C library and is
// loaded in about a millisecond.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  (void)argc;
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGUSR1);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

  char self[PATH_MAX] = {0};
  const ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::string program = "train-main";
  if (length > 0) {
    const std::string path(self, static_cast<size_t>(length));
    program = path.substr(0, path.find_last_of('/') + 1) + program;
  }
  execv(program.c_str(), argv);
  std::fprintf(stderr, "train: error: cannot run %s: %s (train starts train-main, built beside it)\n",
               program.c_str(), std::strerror(errno));
  return 1;
}
