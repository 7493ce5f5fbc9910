#pragma once
// GradientReducer: averages parameter gradients across ranks.
//
// Gradients are copied into flat buckets whose order and size are fixed at
// construction and therefore identical on every rank; each bucket is reduced
// with one fused all-reduce and scaled by 1/world_size. Buckets are filled in
// reverse parameter order, the order backward produces gradients in.
#include <torch/torch.h>

#include <vector>

#include "runtime/communicator.h"

namespace clx {

class GradientReducer {
 public:
  static constexpr int64_t kDefaultBucketBytes = 25LL << 20;

  GradientReducer(Communicator& comm, std::vector<torch::Tensor> parameters,
                  int64_t bucket_bytes = kDefaultBucketBytes);

  // Replaces every parameter's gradient by its average over ranks. A gradient
  // that backward did not produce on this rank (a head no local sample used)
  // counts as zeros and is created, so every rank leaves with the same set.
  // `side_sums`, if given (a small 1-D float32 tensor such as the batch loss
  // and counts), is summed across ranks in the same collective, in place.
  void reduce(torch::Tensor side_sums = {});

  size_t bucket_count() const { return buckets_.size(); }
  // Parameter indices of each bucket, in reduction order.
  std::vector<std::vector<size_t>> bucket_layout() const;

 private:
  struct Bucket {
    std::vector<size_t> parameter_indices;
    int64_t gradient_elements = 0;
    torch::Tensor flat;  // gradient_elements (+ side sums for the last bucket)
  };

  Communicator& comm_;
  std::vector<torch::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  int64_t side_capacity_ = 0;
};

}  // namespace clx
