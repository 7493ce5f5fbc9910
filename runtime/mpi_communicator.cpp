#include "runtime/mpi_communicator.h"

#include <chrono>
#include <climits>
#include <cstdio>

#include "runtime/error.h"

namespace clx {
namespace {

void check_mpi(int code, const char* operation) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(std::string("MPI ") + operation + " failed: " + std::string(text, length));
}

MPI_Datatype mpi_type(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kUInt8: return MPI_UINT8_T;
    case torch::kInt8: return MPI_INT8_T;
    default:
      throw Error(std::string("MPI communicator: unsupported tensor type ") +
                  std::string(c10::toString(tensor.scalar_type())));
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
  }
  return MPI_SUM;
}

void require_cpu_contiguous(const torch::Tensor& tensor, const char* operation) {
  if (!tensor.device().is_cpu())
    throw Error(std::string("MPI ") + operation + ": tensor is on " + tensor.device().str() +
                ", the MPI backend takes CPU tensors (use run.backend=nccl for CUDA)");
  if (!tensor.is_contiguous())
    throw Error(std::string("MPI ") + operation + ": tensor must be contiguous");
}

// MPI counts are int: split very large tensors into chunks below INT_MAX elements.
template <typename Fn>
void for_each_chunk(const torch::Tensor& tensor, Fn&& fn) {
  const int64_t total = tensor.numel();
  const int64_t chunk = INT_MAX / 2;
  auto* base = static_cast<char*>(tensor.data_ptr());
  for (int64_t start = 0; start < total; start += chunk) {
    const int64_t count = std::min(chunk, total - start);
    fn(base + start * tensor.element_size(), static_cast<int>(count));
  }
}

}  // namespace

MpiCommunicator::MpiCommunicator() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    // SERIALIZED: collectives may be issued from autograd hooks, never concurrently.
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "Init_thread");
    initialised_here_ = true;
  }
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_comm_),
            "Comm_split_type");
  MPI_Comm_rank(node_comm_, &local_rank_);
  MPI_Comm_size(node_comm_, &local_size_);
}

MpiCommunicator::~MpiCommunicator() {
  stop_watchdog();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (node_comm_ != MPI_COMM_NULL) MPI_Comm_free(&node_comm_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  if (initialised_here_) MPI_Finalize();
}

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

MpiCommunicator::Watch::Watch(MpiCommunicator& owner, const char* operation) : owner_(owner) {
  owner_.collective_name_.store(operation);
  owner_.collective_started_ns_.store(now_ns());
}

MpiCommunicator::Watch::~Watch() { owner_.collective_started_ns_.store(0); }

void MpiCommunicator::set_collective_timeout(double seconds) {
  stop_watchdog();
  timeout_seconds_ = seconds;
  if (seconds <= 0 || size_ == 1) return;
  watchdog_stop_ = false;
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

void MpiCommunicator::stop_watchdog() {
  if (!watchdog_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(watchdog_mutex_);
    watchdog_stop_ = true;
  }
  watchdog_wake_.notify_all();
  watchdog_.join();
}

void MpiCommunicator::watchdog_loop() {
  const auto period = std::chrono::milliseconds(std::max<int64_t>(100, static_cast<int64_t>(timeout_seconds_ * 250)));
  std::unique_lock<std::mutex> lock(watchdog_mutex_);
  while (!watchdog_wake_.wait_for(lock, period, [this] { return watchdog_stop_; })) {
    const int64_t started = collective_started_ns_.load();
    if (started == 0 || static_cast<double>(now_ns() - started) < timeout_seconds_ * 1e9) continue;
    std::fprintf(stderr,
                 "train: error on rank %d of %d: MPI %s did not complete within %.0f s: another rank has died or "
                 "hangs (run.collective_timeout); ending the job\n",
                 rank_, size_, collective_name_.load(), timeout_seconds_);
    std::fflush(stderr);
    // Exiting (rather than MPI_Abort from this thread) is safe at MPI_THREAD_SERIALIZED;
    // the launcher then ends the other ranks.
    std::_Exit(1);
  }
}

void MpiCommunicator::allreduce(torch::Tensor& tensor, ReduceOp op) {
  require_cpu_contiguous(tensor, "allreduce");
  if (size_ == 1) return;
  Watch watch(*this, "Allreduce");
  const MPI_Datatype type = mpi_type(tensor);
  for_each_chunk(tensor, [&](void* data, int count) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, count, type, mpi_op(op), comm_), "Allreduce");
  });
}

void MpiCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_cpu_contiguous(tensor, "broadcast");
  if (size_ == 1) return;
  Watch watch(*this, "Bcast");
  const MPI_Datatype type = mpi_type(tensor);
  for_each_chunk(tensor, [&](void* data, int count) {
    check_mpi(MPI_Bcast(data, count, type, root, comm_), "Bcast");
  });
}

torch::Tensor MpiCommunicator::allgather(const torch::Tensor& tensor) {
  torch::Tensor input = tensor.contiguous();
  require_cpu_contiguous(input, "allgather");
  std::vector<int64_t> shape{size_};
  for (int64_t dim : input.sizes()) shape.push_back(dim);
  torch::Tensor output = torch::empty(shape, input.options());
  if (input.numel() > INT_MAX) throw Error("MPI allgather: tensor too large");
  Watch watch(*this, "Allgather");
  check_mpi(MPI_Allgather(input.data_ptr(), static_cast<int>(input.numel()), mpi_type(input),
                          output.data_ptr(), static_cast<int>(input.numel()), mpi_type(input), comm_),
            "Allgather");
  return output;
}

std::vector<std::string> MpiCommunicator::allgather_strings(const std::string& value) {
  Watch watch(*this, "Allgatherv");
  int length = static_cast<int>(value.size());
  std::vector<int> lengths(size_);
  check_mpi(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm_), "Allgather");
  std::vector<int> offsets(size_, 0);
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[r] = total;
    total += lengths[r];
  }
  std::string joined(static_cast<size_t>(total), '\0');
  check_mpi(MPI_Allgatherv(value.data(), length, MPI_CHAR, joined.data(), lengths.data(), offsets.data(),
                           MPI_CHAR, comm_),
            "Allgatherv");
  std::vector<std::string> values(size_);
  for (int r = 0; r < size_; ++r) values[r] = joined.substr(offsets[r], lengths[r]);
  return values;
}

void MpiCommunicator::barrier() {
  Watch watch(*this, "Barrier");
  check_mpi(MPI_Barrier(comm_), "Barrier");
}

void MpiCommunicator::abort(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace clx
