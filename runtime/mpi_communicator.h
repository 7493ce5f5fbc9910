#pragma once
// MPI backend: CPU tensors, one MPI call per collective.
#include <mpi.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "runtime/communicator.h"

namespace clx {

class MpiCommunicator final : public Communicator {
 public:
  // Initialises MPI (thread level SERIALIZED) unless it already is, and
  // finalises it on destruction when this object initialised it.
  MpiCommunicator();
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string backend() const override { return "mpi"; }

  // allreduce_async stays blocking on purpose: Open MPI's non-blocking
  // MPI_Iallreduce (libnbc) reached 0.45-0.64x the bus bandwidth of the
  // blocking one on this machine (build/bench --suite allreduce) and only
  // progresses inside MPI calls, and CPU ranks have no idle core to overlap
  // with. The reducer therefore reduces each bucket the moment it is full,
  // from inside backward; the NCCL backend overlaps for real.
  void allreduce(torch::Tensor& tensor, ReduceOp op) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  torch::Tensor allgather(const torch::Tensor& tensor) override;
  std::vector<std::string> allgather_strings(const std::string& value) override;
  void barrier() override;
  [[noreturn]] void abort(int exit_code) override;

  void set_collective_timeout(double seconds) override;

  MPI_Comm comm() const { return comm_; }

 private:
  // Marks a collective as running for the watchdog.
  class Watch {
   public:
    Watch(MpiCommunicator& owner, const char* operation);
    ~Watch();

   private:
    MpiCommunicator& owner_;
  };
  void watchdog_loop();
  void stop_watchdog();

  std::atomic<int64_t> collective_started_ns_{0};  // 0: no collective running
  std::atomic<const char*> collective_name_{""};
  double timeout_seconds_ = 0.0;
  std::thread watchdog_;
  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_wake_;
  bool watchdog_stop_ = false;

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm node_comm_ = MPI_COMM_NULL;
  bool initialised_here_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace clx
