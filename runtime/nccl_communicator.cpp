#include "runtime/nccl_communicator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "runtime/collectives.h"
#include "runtime/error.h"

namespace clx {
namespace {

void check_cuda(cudaError_t code, const char* operation) {
  if (code != cudaSuccess)
    throw Error(std::string("CUDA ") + operation + " failed: " + cudaGetErrorString(code));
}

void check_nccl(ncclResult_t code, const char* operation) {
  if (code != ncclSuccess)
    throw Error(std::string("NCCL ") + operation + " failed: " + ncclGetErrorString(code));
}

ncclDataType_t nccl_type(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kUInt8: return ncclUint8;
    case torch::kInt8: return ncclInt8;
    case torch::kBool: return ncclUint8;
    default:
      throw Error(std::string("NCCL communicator: unsupported tensor type ") +
                  std::string(c10::toString(tensor.scalar_type())));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& control) : control_(control) { initialise(); }

NcclCommunicator::NcclCommunicator(std::unique_ptr<Communicator> control)
    : owned_control_(std::move(control)), control_(*owned_control_) {
  initialise();
}

void NcclCommunicator::initialise() {
  // Step 1: every rank must be able to take a GPU of its own, decided together
  // so that no rank is left waiting in ncclCommInitRank.
  run_on_all_ranks(control_, [&] {
    int device_count = 0;
    const cudaError_t found = cudaGetDeviceCount(&device_count);
    if (found != cudaSuccess || device_count == 0)
      throw Error("run.backend=nccl: rank " + std::to_string(rank()) + " sees no CUDA device" +
                  (found != cudaSuccess ? std::string(" (") + cudaGetErrorString(found) + ")" : std::string()));
    // NCCL refuses two ranks of one communicator on one GPU ("duplicate GPU"),
    // so sharing is not an option: one GPU per rank or a clear stop.
    if (local_size() > device_count)
      throw Error("run.backend=nccl: " + std::to_string(local_size()) + " ranks on this node but " +
                  std::to_string(device_count) +
                  " visible GPU(s); NCCL needs one GPU per rank (start at most that many ranks per node, or check "
                  "CUDA_VISIBLE_DEVICES)");
    device_index_ = local_rank();
    check_cuda(cudaSetDevice(device_index_), "SetDevice");
  });
  // Step 2: the unique id, through the control plane.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  run_on_all_ranks(control_, [&] {
    if (rank() == 0) check_nccl(ncclGetUniqueId(&id), "GetUniqueId");
  });
  std::vector<std::string> ids = control_.allgather_strings(std::string(reinterpret_cast<const char*>(&id), sizeof(id)));
  std::memcpy(&id, ids.at(0).data(), sizeof(id));
  // Step 3.
  run_on_all_ranks(control_, [&] {
    check_nccl(ncclCommInitRank(&comm_, size(), id, rank()), "CommInitRank");
    check_cuda(cudaStreamCreateWithFlags(&overlap_stream_, cudaStreamNonBlocking), "StreamCreateWithFlags");
  });
}

NcclCommunicator::~NcclCommunicator() {
  stop_watchdog();
  if (overlap_stream_ != nullptr) cudaStreamSynchronize(overlap_stream_);
  for (const InFlight& item : in_flight_) cudaEventDestroy(item.done);
  if (comm_ != nullptr) ncclCommDestroy(comm_);
  if (overlap_stream_ != nullptr) cudaStreamDestroy(overlap_stream_);
}

cudaStream_t NcclCommunicator::compute_stream() const {
  // LibTorch queues kernels on the legacy default stream unless a caller sets
  // another current stream, which this project never does; ordering NCCL work
  // on it needs no extra events.
  return cudaStreamLegacy;
}

void NcclCommunicator::watch(cudaStream_t stream, const char* operation) {
  if (timeout_seconds_ <= 0) return;
  cudaEvent_t done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "EventCreate");
  check_cuda(cudaEventRecord(done, stream), "EventRecord");
  std::lock_guard<std::mutex> lock(in_flight_mutex_);
  in_flight_.push_back({done, operation, now_ns()});
}

void NcclCommunicator::synchronize(cudaStream_t stream, const char* operation) {
  // Blocks without a deadline: a peer that never arrives is the watchdog's to report.
  check_cuda(cudaStreamSynchronize(stream), operation);
}

void NcclCommunicator::set_collective_timeout(double seconds) {
  control_.set_collective_timeout(seconds);
  stop_watchdog();
  timeout_seconds_ = seconds;
  if (seconds <= 0) return;
  watchdog_stop_ = false;
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

void NcclCommunicator::stop_watchdog() {
  if (!watchdog_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(in_flight_mutex_);
    watchdog_stop_ = true;
  }
  watchdog_wake_.notify_all();
  watchdog_.join();
}

void NcclCommunicator::watchdog_loop() {
  // The watchdog runs on another thread: CUDA needs the device set there too.
  cudaSetDevice(device_index_);
  // Polled at least every second: completed events are released as they come,
  // so the queue stays short however long the timeout.
  const auto period = std::chrono::milliseconds(
      std::clamp<int64_t>(static_cast<int64_t>(timeout_seconds_ * 250), 100, 1000));
  std::unique_lock<std::mutex> lock(in_flight_mutex_);
  while (!watchdog_wake_.wait_for(lock, period, [this] { return watchdog_stop_; })) {
    std::string failure;
    while (!in_flight_.empty()) {
      const InFlight& oldest = in_flight_.front();
      const cudaError_t state = cudaEventQuery(oldest.done);
      if (state == cudaSuccess) {
        cudaEventDestroy(oldest.done);
        in_flight_.pop_front();
        continue;
      }
      if (state != cudaErrorNotReady) {
        failure = std::string("NCCL ") + oldest.operation + " failed on the GPU: " + cudaGetErrorString(state);
      } else if (static_cast<double>(now_ns() - oldest.started_ns) >= timeout_seconds_ * 1e9) {
        char text[256];
        std::snprintf(text, sizeof(text),
                      "NCCL %s did not complete within %.0f s: another rank has died or hangs (run.collective_timeout)",
                      oldest.operation, timeout_seconds_);
        failure = text;
      }
      break;
    }
    ncclResult_t async_error = ncclSuccess;
    if (failure.empty() && comm_ != nullptr && ncclCommGetAsyncError(comm_, &async_error) == ncclSuccess &&
        async_error != ncclSuccess)
      failure = std::string("NCCL reported an asynchronous error: ") + ncclGetErrorString(async_error);
    if (failure.empty()) continue;
    std::fprintf(stderr, "train: error on rank %d of %d: %s; aborting the NCCL communicator and ending the job\n",
                 rank(), size(), failure.c_str());
    std::fflush(stderr);
    // Releases the kernels that wait for the missing peer; then the launcher
    // ends the other ranks when this one exits.
    ncclCommAbort(comm_);
    std::_Exit(1);
  }
}

class NcclCommunicator::PendingAllreduce final : public PendingCollective {
 public:
  PendingAllreduce(cudaEvent_t done, cudaStream_t compute_stream) : done_(done), compute_stream_(compute_stream) {}
  ~PendingAllreduce() override {
    if (done_ != nullptr) {
      cudaStreamWaitEvent(compute_stream_, done_, 0);
      cudaEventDestroy(done_);
    }
  }
  bool test() override { return done_ == nullptr || cudaEventQuery(done_) == cudaSuccess; }
  void wait() override {
    if (done_ == nullptr) return;
    check_cuda(cudaStreamWaitEvent(compute_stream_, done_, 0), "StreamWaitEvent after AllReduce");
    // Destroying a recorded event is allowed: CUDA releases it once it completes.
    cudaEventDestroy(done_);
    done_ = nullptr;
  }

 private:
  cudaEvent_t done_;
  cudaStream_t compute_stream_;
};

std::unique_ptr<PendingCollective> NcclCommunicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  require_device_tensor(tensor, "allreduce");
  cudaEvent_t ready = nullptr, done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "EventCreate");
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "EventCreate");
  // The bucket was filled by kernels on the compute stream: start after them.
  check_cuda(cudaEventRecord(ready, compute_stream()), "EventRecord");
  check_cuda(cudaStreamWaitEvent(overlap_stream_, ready, 0), "StreamWaitEvent");
  cudaEventDestroy(ready);
  check_nccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                           nccl_type(tensor), nccl_op(op), comm_, overlap_stream_),
             "AllReduce");
  watch(overlap_stream_, "AllReduce (overlapped)");
  check_cuda(cudaEventRecord(done, overlap_stream_), "EventRecord");
  return std::make_unique<PendingAllreduce>(done, compute_stream());
}

void NcclCommunicator::require_device_tensor(const torch::Tensor& tensor, const char* operation) const {
  if (!tensor.is_cuda())
    throw Error(std::string("NCCL ") + operation + ": tensor is on " + tensor.device().str() +
                ", the NCCL backend takes CUDA tensors");
  if (tensor.get_device() != device_index_)
    throw Error(std::string("NCCL ") + operation + ": tensor is on " + tensor.device().str() + ", this rank's GPU is cuda:" +
                std::to_string(device_index_));
  if (!tensor.is_contiguous()) throw Error(std::string("NCCL ") + operation + ": tensor must be contiguous");
}

void NcclCommunicator::allreduce(torch::Tensor& tensor, ReduceOp op) {
  require_device_tensor(tensor, "allreduce");
  check_nccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                           nccl_type(tensor), nccl_op(op), comm_, compute_stream()),
             "AllReduce");
  watch(compute_stream(), "AllReduce");
  synchronize(compute_stream(), "StreamSynchronize after AllReduce");
}

void NcclCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_device_tensor(tensor, "broadcast");
  check_nccl(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                           nccl_type(tensor), root, comm_, compute_stream()),
             "Broadcast");
  watch(compute_stream(), "Broadcast");
  synchronize(compute_stream(), "StreamSynchronize after Broadcast");
}

torch::Tensor NcclCommunicator::allgather(const torch::Tensor& tensor) {
  torch::Tensor input = tensor.contiguous();
  require_device_tensor(input, "allgather");
  std::vector<int64_t> shape{size()};
  for (int64_t dim : input.sizes()) shape.push_back(dim);
  torch::Tensor output = torch::empty(shape, input.options());
  check_nccl(ncclAllGather(input.data_ptr(), output.data_ptr(), static_cast<size_t>(input.numel()),
                           nccl_type(input), comm_, compute_stream()),
             "AllGather");
  watch(compute_stream(), "AllGather");
  synchronize(compute_stream(), "StreamSynchronize after AllGather");
  return output;
}

void NcclCommunicator::abort(int exit_code) {
  if (comm_ != nullptr) ncclCommAbort(comm_);
  comm_ = nullptr;
  control_.abort(exit_code);
}

}  // namespace clx
