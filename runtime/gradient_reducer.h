#pragma once
// GradientReducer: averages parameter gradients across ranks.
//
// Gradients are copied into flat buckets whose order and size are fixed at
// construction and therefore identical on every rank; each bucket is reduced
// with one fused all-reduce and scaled by 1/world_size. Buckets are filled in
// reverse parameter order, the order backward produces gradients in.
//
// Two ways to use it, with the same result bit for bit:
//  - after backward: reduce(side) copies every gradient and reduces bucket by
//    bucket;
//  - overlapped with backward (as PyTorch DDP and Horovod do):
//    begin_backward(side) before backward arms hooks on the parameters; each
//    gradient is copied into its bucket the moment autograd produces it, and a
//    full bucket starts its all-reduce at once while backward goes on with
//    earlier layers (Communicator::allreduce_async: on a separate stream for
//    NCCL; on the spot, blocking, for MPI, see mpi_communicator.h);
//    finish_backward() after backward starts what is left, waits, and writes
//    the averages back.
// Buckets always start in bucket order, on every rank: a bucket that is full
// waits for the ones before it, so ranks whose local batches leave different
// parameters unused (a head with no local sample) still issue the same
// sequence of collectives.
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "runtime/communicator.h"

namespace clx {

class GradientReducer {
 public:
  static constexpr int64_t kDefaultBucketBytes = 25LL << 20;
  static constexpr int64_t kMaxSideSums = 16;

  // `overlap`: register the hooks begin_backward() needs (a 1-rank job never
  // needs them). Hooks are removed when the reducer is destroyed.
  GradientReducer(Communicator& comm, std::vector<torch::Tensor> parameters,
                  int64_t bucket_bytes = kDefaultBucketBytes, bool overlap = false);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Replaces every parameter's gradient by its average over ranks, as a view
  // into the reducer's bucket that the next reduce() overwrites. A gradient
  // that backward did not produce on this rank (a head no local sample used)
  // counts as zeros and is created, so every rank leaves with the same set.
  // `side_sums`, if given (a small 1-D float32 tensor such as the batch loss
  // and counts), is summed across ranks in the same collective, in place.
  void reduce(torch::Tensor side_sums = {});

  // Overlapped form of reduce(): call begin_backward before the one backward
  // of a step, finish_backward after it. Needs overlap=true at construction.
  // `side_sums` is read when its bucket starts and written by finish_backward.
  void begin_backward(torch::Tensor side_sums = {});
  void finish_backward();

  bool overlapping() const { return !hook_handles_.empty(); }
  // Buckets whose all-reduce has started in the current step (overlap only).
  size_t buckets_started() const { return next_to_start_; }
  size_t bucket_count() const { return buckets_.size(); }
  // Parameter indices of each bucket, in reduction order.
  std::vector<std::vector<size_t>> bucket_layout() const;

 private:
  struct Bucket {
    std::vector<size_t> parameter_indices;
    int64_t gradient_elements = 0;
    torch::Tensor flat;  // gradient_elements (+ side sums for the last bucket)
    int64_t waiting = 0;  // gradients not yet copied in this step
    std::unique_ptr<PendingCollective> pending;
  };

  void on_gradient(size_t parameter_index, const torch::Tensor& grad);
  void start_ready_buckets();
  void start_bucket(size_t b, bool blocking);
  // A parameter's place in its bucket (flat), and filling it with a gradient
  // divided by the world size (zeros for an undefined gradient).
  torch::Tensor slot(size_t parameter_index) const;
  void fill_slot(size_t parameter_index, const torch::Tensor& grad);
  void write_back(torch::Tensor side_sums);

  Communicator& comm_;
  std::vector<torch::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;       // parameter index -> bucket
  std::vector<int64_t> offset_of_;      // parameter index -> offset in its bucket
  std::vector<bool> slot_filled_;       // parameter index -> gradient copied this step
  std::vector<unsigned> hook_handles_;  // parameter index -> hook handle (overlap only)
  bool armed_ = false;
  size_t next_to_start_ = 0;
  torch::Tensor side_sums_;
  torch::Tensor scale_;  // 1 / world size, applied while copying gradients in
};

}  // namespace clx
