#pragma once
// NCCL backend: CUDA tensors, bootstrapped by broadcasting the ncclUniqueId
// over MPI. Host-side control operations (strings, barrier) go through MPI.
//
// Compiled whenever the CUDA toolkit and NCCL are found, so that the GPU path
// keeps building on machines without a GPU; it needs a GPU per rank to run.
#include <cuda_runtime.h>
#include <nccl.h>

#include "runtime/communicator.h"
#include "runtime/mpi_communicator.h"

namespace clx {

class NcclCommunicator final : public Communicator {
 public:
  // Selects GPU local_rank % device_count and creates the NCCL communicator.
  NcclCommunicator();
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return mpi_.rank(); }
  int size() const override { return mpi_.size(); }
  int local_rank() const override { return mpi_.local_rank(); }
  int local_size() const override { return mpi_.local_size(); }
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
    return mpi_.allgather_strings(value);
  }
  void barrier() override { mpi_.barrier(); }
  // Watches the MPI control plane; NCCL kernels themselves are not watched.
  void set_collective_timeout(double seconds) override { mpi_.set_collective_timeout(seconds); }
  [[noreturn]] void abort(int exit_code) override;

 private:
  class PendingAllreduce;
  void require_device_tensor(const torch::Tensor& tensor, const char* operation) const;
  void synchronize(const char* operation);

  MpiCommunicator mpi_;
  ncclComm_t comm_ = nullptr;
  // NCCL work is queued on the legacy default stream, the stream LibTorch
  // uses unless told otherwise, so it is ordered after the kernels that
  // produced the gradients without extra events.
  cudaStream_t stream_ = cudaStreamLegacy;
  // Stream for overlapped all-reduces. Non-blocking: a stream created the
  // ordinary way would synchronise with the legacy stream and overlap nothing.
  cudaStream_t overlap_stream_ = nullptr;
  int device_index_ = 0;
};

}  // namespace clx
