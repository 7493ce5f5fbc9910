#include "runtime/nccl_communicator.h"

#include <cstring>

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

}  // namespace

NcclCommunicator::NcclCommunicator() {
  int device_count = 0;
  check_cuda(cudaGetDeviceCount(&device_count), "GetDeviceCount");
  if (device_count == 0)
    throw Error("run.backend=nccl: rank " + std::to_string(mpi_.rank()) + " sees no CUDA device");
  device_index_ = mpi_.local_rank() % device_count;
  check_cuda(cudaSetDevice(device_index_), "SetDevice");

  ncclUniqueId id;
  if (mpi_.rank() == 0) check_nccl(ncclGetUniqueId(&id), "GetUniqueId");
  torch::Tensor id_bytes = torch::empty({static_cast<int64_t>(sizeof(id))}, torch::kUInt8);
  std::memcpy(id_bytes.data_ptr(), &id, sizeof(id));
  mpi_.broadcast(id_bytes, 0);
  std::memcpy(&id, id_bytes.data_ptr(), sizeof(id));
  check_nccl(ncclCommInitRank(&comm_, mpi_.size(), id, mpi_.rank()), "CommInitRank");
  check_cuda(cudaStreamCreateWithFlags(&overlap_stream_, cudaStreamNonBlocking), "StreamCreateWithFlags");
}

NcclCommunicator::~NcclCommunicator() {
  if (overlap_stream_ != nullptr) cudaStreamSynchronize(overlap_stream_);
  if (comm_ != nullptr) ncclCommDestroy(comm_);
  if (overlap_stream_ != nullptr) cudaStreamDestroy(overlap_stream_);
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
  check_cuda(cudaEventRecord(ready, stream_), "EventRecord");
  check_cuda(cudaStreamWaitEvent(overlap_stream_, ready, 0), "StreamWaitEvent");
  cudaEventDestroy(ready);
  check_nccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                           nccl_type(tensor), nccl_op(op), comm_, overlap_stream_),
             "AllReduce");
  check_cuda(cudaEventRecord(done, overlap_stream_), "EventRecord");
  return std::make_unique<PendingAllreduce>(done, stream_);
}

void NcclCommunicator::require_device_tensor(const torch::Tensor& tensor, const char* operation) const {
  if (!tensor.is_cuda())
    throw Error(std::string("NCCL ") + operation + ": tensor is on " + tensor.device().str() +
                ", the NCCL backend takes CUDA tensors");
  if (!tensor.is_contiguous()) throw Error(std::string("NCCL ") + operation + ": tensor must be contiguous");
}

void NcclCommunicator::synchronize(const char* operation) {
  check_cuda(cudaStreamSynchronize(stream_), operation);
}

void NcclCommunicator::allreduce(torch::Tensor& tensor, ReduceOp op) {
  require_device_tensor(tensor, "allreduce");
  check_nccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                           nccl_type(tensor), nccl_op(op), comm_, stream_),
             "AllReduce");
  synchronize("StreamSynchronize after AllReduce");
}

void NcclCommunicator::broadcast(torch::Tensor& tensor, int root) {
  require_device_tensor(tensor, "broadcast");
  check_nccl(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                           nccl_type(tensor), root, comm_, stream_),
             "Broadcast");
  synchronize("StreamSynchronize after Broadcast");
}

torch::Tensor NcclCommunicator::allgather(const torch::Tensor& tensor) {
  torch::Tensor input = tensor.contiguous();
  require_device_tensor(input, "allgather");
  std::vector<int64_t> shape{size()};
  for (int64_t dim : input.sizes()) shape.push_back(dim);
  torch::Tensor output = torch::empty(shape, input.options());
  check_nccl(ncclAllGather(input.data_ptr(), output.data_ptr(), static_cast<size_t>(input.numel()),
                           nccl_type(input), comm_, stream_),
             "AllGather");
  synchronize("StreamSynchronize after AllGather");
  return output;
}

void NcclCommunicator::abort(int exit_code) {
  if (comm_ != nullptr) ncclCommAbort(comm_);
  comm_ = nullptr;
  mpi_.abort(exit_code);
}

}  // namespace clx
