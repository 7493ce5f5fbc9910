#pragma once
// Communicator: the one way the rest of the framework talks to other ranks.
//
// Data-plane operations (allreduce, broadcast, allgather) act on tensors that
// live on the backend's device (CPU for MPI and single, CUDA for NCCL).
// Control-plane operations (strings, barrier) always go through the host and
// are used for fingerprints, error agreement and configuration checks.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace clx {

enum class ReduceOp { Sum, Max, Min };

// A collective started by an *_async call. Its tensor must stay alive and
// untouched until wait() returns. Collectives complete in the order they were
// started, and every rank must start them in the same order.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Gives the backend a chance to progress without blocking; true once complete.
  virtual bool test() = 0;
  // Blocks until complete; afterwards the tensor holds the result (for CUDA:
  // work queued later on the current stream sees the result).
  virtual void wait() = 0;
};

// What a blocking backend returns from allreduce_async: the work is already done.
class CompletedCollective final : public PendingCollective {
 public:
  bool test() override { return true; }
  void wait() override {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Rank and number of ranks on this node: used to pick devices and threads.
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;
  virtual std::string backend() const = 0;
  // The device data-plane tensors must be on.
  virtual torch::Device device() const { return torch::kCPU; }

  // In-place reduction of a contiguous tensor across all ranks.
  virtual void allreduce(torch::Tensor& tensor, ReduceOp op) = 0;
  // Starts an in-place reduction and returns at once where the backend can
  // overlap it with computation (MPI non-blocking collectives, an NCCL stream);
  // the default reduces before returning.
  virtual std::unique_ptr<PendingCollective> allreduce_async(torch::Tensor& tensor, ReduceOp op) {
    allreduce(tensor, op);
    return std::make_unique<CompletedCollective>();
  }
  // In-place broadcast of a contiguous tensor from `root`.
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // Returns a tensor of shape [size(), *tensor.shape] with every rank's input.
  virtual torch::Tensor allgather(const torch::Tensor& tensor) = 0;

  // Host strings from every rank, indexed by rank.
  virtual std::vector<std::string> allgather_strings(const std::string& value) = 0;
  virtual void barrier() = 0;
  // Terminates every rank of the job. Used when this rank cannot reach the
  // others through a clean collective (it may be the only rank that failed).
  [[noreturn]] virtual void abort(int exit_code) = 0;

  // A collective that has not completed after `seconds` (a rank died or
  // hangs) makes this rank print which operation timed out and exit, which
  // ends the job. 0 disables the watchdog. Backends without one ignore it.
  virtual void set_collective_timeout(double seconds) {}

  bool is_root() const { return rank() == 0; }
};

// A communicator for a run of one process: every collective is the identity.
class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  std::string backend() const override { return "single"; }
  void allreduce(torch::Tensor&, ReduceOp) override {}
  void broadcast(torch::Tensor&, int) override {}
  torch::Tensor allgather(const torch::Tensor& tensor) override { return tensor.unsqueeze(0).clone(); }
  std::vector<std::string> allgather_strings(const std::string& value) override { return {value}; }
  void barrier() override {}
  [[noreturn]] void abort(int exit_code) override;
};

// True when this process was started by mpirun/srun with more than one rank
// or with a process-management interface that expects MPI_Init.
bool launched_by_mpi_launcher();

// The host-side communicator of this process: MPI when launched by
// mpirun/srun, otherwise the single-process one (no MPI needed). The NCCL
// backend runs its bootstrap and control operations over it.
std::unique_ptr<Communicator> make_control_communicator();

// backend: "auto" (MPI when launched by mpirun/srun, otherwise single),
// "mpi", "nccl" (CUDA tensors; needs a GPU per rank) or "single".
// Throws clx::Error naming the backend when it is not compiled in.
std::unique_ptr<Communicator> make_communicator(const std::string& backend);

// The NCCL communicator over `control` (which must outlive it); throws
// clx::Error when this build has no NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& control);
bool nccl_compiled();

// Names of the backends this build contains, e.g. {"single", "mpi", "nccl"}.
std::vector<std::string> compiled_backends();

}  // namespace clx
