#pragma once
// NCCL backend: CUDA tensors on this rank's GPU; host-side control operations
// (strings, barrier, the ncclUniqueId bootstrap) go through a control
// communicator: MPI under mpirun/srun, or the single-process communicator for a
// job of one process, which therefore needs neither mpirun nor an MPI build.
//
// Compiled whenever the CUDA toolkit and NCCL are found, so that the GPU path
// keeps building on machines without a GPU; it needs a GPU per rank to run.
//
// Cross-rank protocol (every rank, in this order):
//   1. control: agree that every rank sees enough GPUs (one per rank on a node);
//   2. rank 0 creates the ncclUniqueId, the control communicator broadcasts it;
//   3. ncclCommInitRank on GPU local_rank.
// Watchdog: every NCCL operation records an event on its stream; a thread
// polls the events and, when one has not completed after run.collective_timeout
// seconds (a peer died or hangs) or NCCL reports an asynchronous error, prints
// the operation, aborts the NCCL communicator (ncclCommAbort, which releases
// the kernels waiting on the peer) and ends the process, which ends the job.
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "runtime/communicator.h"

namespace clx {

class NcclCommunicator final : public Communicator {
 public:
  // `control` must outlive this communicator.
  explicit NcclCommunicator(Communicator& control);
  // Owns its control communicator (make_communicator("nccl")).
  explicit NcclCommunicator(std::unique_ptr<Communicator> control);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return control_.rank(); }
  int size() const override { return control_.size(); }
  int local_rank() const override { return control_.local_rank(); }
  int local_size() const override { return control_.local_size(); }
  std::string backend() const override { return "nccl"; }
  torch::Device device() const override { return torch::Device(torch::kCUDA, device_index_); }

  void allreduce(torch::Tensor& tensor, ReduceOp op) override;
  // Queued on a separate non-blocking stream after the work already queued on
  // the compute stream; wait() makes the compute stream wait for it without
  // blocking the host, so backward keeps running while buckets reduce.
  std::unique_ptr<PendingCollective> allreduce_async(torch::Tensor& tensor, ReduceOp op) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  torch::Tensor allgather(const torch::Tensor& tensor) override;
  std::vector<std::string> allgather_strings(const std::string& value) override {
    return control_.allgather_strings(value);
  }
  void barrier() override { control_.barrier(); }
  // Watches NCCL operations (above) and the control plane.
  void set_collective_timeout(double seconds) override;
  [[noreturn]] void abort(int exit_code) override;

 private:
  class PendingAllreduce;
  struct InFlight {
    cudaEvent_t done;
    const char* operation;
    int64_t started_ns;
  };
  void initialise();
  void require_device_tensor(const torch::Tensor& tensor, const char* operation) const;
  // The stream LibTorch queues this rank's kernels on (its current stream).
  cudaStream_t compute_stream() const;
  // After an operation was queued on `stream`: hands an event to the watchdog.
  void watch(cudaStream_t stream, const char* operation);
  // Blocks until the work queued on `stream` so far is done.
  void synchronize(cudaStream_t stream, const char* operation);
  void watchdog_loop();
  void stop_watchdog();

  std::unique_ptr<Communicator> owned_control_;
  Communicator& control_;
  ncclComm_t comm_ = nullptr;
  // Stream for overlapped all-reduces. Non-blocking: a stream created the
  // ordinary way would synchronise with the legacy stream and overlap nothing.
  cudaStream_t overlap_stream_ = nullptr;
  int device_index_ = 0;

  double timeout_seconds_ = 0.0;
  std::mutex in_flight_mutex_;
  std::deque<InFlight> in_flight_;
  std::thread watchdog_;
  std::condition_variable watchdog_wake_;
  bool watchdog_stop_ = false;
};

}  // namespace clx
