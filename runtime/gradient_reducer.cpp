#include "runtime/gradient_reducer.h"

#include "runtime/error.h"

namespace clx {

GradientReducer::GradientReducer(Communicator& comm, std::vector<torch::Tensor> parameters, int64_t bucket_bytes)
    : comm_(comm), parameters_(std::move(parameters)) {
  if (bucket_bytes <= 0) throw Error("train.bucket_mb must be positive");
  Bucket current;
  int64_t current_bytes = 0;
  for (size_t k = parameters_.size(); k-- > 0;) {
    const torch::Tensor& parameter = parameters_[k];
    if (parameter.scalar_type() != torch::kFloat32)
      throw Error("GradientReducer: only float32 parameters are supported");
    const int64_t bytes = parameter.numel() * parameter.element_size();
    if (!current.parameter_indices.empty() && current_bytes + bytes > bucket_bytes) {
      buckets_.push_back(std::move(current));
      current = Bucket{};
      current_bytes = 0;
    }
    current.parameter_indices.push_back(k);
    current.gradient_elements += parameter.numel();
    current_bytes += bytes;
  }
  if (!current.parameter_indices.empty()) buckets_.push_back(std::move(current));
  // Side sums ride in the last bucket: a few scalars never justify a collective of their own.
  side_capacity_ = 16;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const int64_t extra = b + 1 == buckets_.size() ? side_capacity_ : 0;
    buckets_[b].flat = torch::zeros({buckets_[b].gradient_elements + extra},
                                    parameters_.empty() ? torch::TensorOptions() : parameters_[0].options());
  }
}

std::vector<std::vector<size_t>> GradientReducer::bucket_layout() const {
  std::vector<std::vector<size_t>> layout;
  for (const Bucket& bucket : buckets_) layout.push_back(bucket.parameter_indices);
  return layout;
}

void GradientReducer::reduce(torch::Tensor side_sums) {
  torch::NoGradGuard no_grad;
  if (side_sums.defined() && side_sums.numel() > side_capacity_)
    throw Error("GradientReducer: at most 16 side sums");
  if (comm_.size() == 1) {
    // Nothing to exchange; only make the set of gradients the same as a multi-rank run's.
    for (torch::Tensor& parameter : parameters_)
      if (!parameter.grad().defined()) parameter.mutable_grad() = torch::zeros_like(parameter);
    return;
  }
  if (buckets_.empty()) {
    if (side_sums.defined()) comm_.allreduce(side_sums, ReduceOp::Sum);
    return;
  }
  const double scale = 1.0 / comm_.size();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    const bool last = b + 1 == buckets_.size();
    int64_t offset = 0;
    for (size_t index : bucket.parameter_indices) {
      const torch::Tensor& parameter = parameters_[index];
      torch::Tensor slot = bucket.flat.narrow(0, offset, parameter.numel());
      const torch::Tensor& grad = parameter.grad();
      if (grad.defined()) slot.copy_(grad.reshape({-1}));
      else slot.zero_();
      offset += parameter.numel();
    }
    if (last && side_sums.defined())
      bucket.flat.narrow(0, offset, side_sums.numel()).copy_(side_sums.reshape({-1}));
    comm_.allreduce(bucket.flat, ReduceOp::Sum);
    bucket.flat.narrow(0, 0, bucket.gradient_elements).mul_(scale);
    offset = 0;
    for (size_t index : bucket.parameter_indices) {
      torch::Tensor& parameter = parameters_[index];
      torch::Tensor slot = bucket.flat.narrow(0, offset, parameter.numel()).view(parameter.sizes());
      if (parameter.grad().defined()) parameter.mutable_grad().copy_(slot);
      else parameter.mutable_grad() = slot.clone();
      offset += parameter.numel();
    }
    if (last && side_sums.defined())
      side_sums.copy_(bucket.flat.narrow(0, offset, side_sums.numel()).view(side_sums.sizes()));
  }
}

}  // namespace clx
