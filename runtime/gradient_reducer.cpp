#include "runtime/gradient_reducer.h"

#include "runtime/error.h"

namespace clx {

GradientReducer::GradientReducer(Communicator& comm, std::vector<torch::Tensor> parameters, int64_t bucket_bytes,
                                 bool overlap)
    : comm_(comm), parameters_(std::move(parameters)) {
  if (bucket_bytes <= 0) throw Error("train.bucket_mb must be positive");
  // Gradients are divided by the world size as they are copied in, so the
  // sum the all-reduce returns is already the mean: no pass over the buckets
  // after it. Exact for power-of-two world sizes (the same bits as dividing after).
  scale_ = torch::scalar_tensor(1.0 / comm_.size(), torch::kFloat32);
  bucket_of_.assign(parameters_.size(), 0);
  offset_of_.assign(parameters_.size(), 0);
  slot_filled_.assign(parameters_.size(), false);
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
    offset_of_[k] = current.gradient_elements;
    current.gradient_elements += parameter.numel();
    current_bytes += bytes;
  }
  if (!current.parameter_indices.empty()) buckets_.push_back(std::move(current));
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    // Side sums ride in the last bucket: a few scalars never justify a collective of their own.
    const int64_t extra = b + 1 == buckets_.size() ? kMaxSideSums : 0;
    bucket.flat = torch::zeros({bucket.gradient_elements + extra},
                               parameters_[bucket.parameter_indices[0]].options().requires_grad(false));
    for (size_t index : bucket.parameter_indices) bucket_of_[index] = b;
  }
  if (overlap && comm_.size() > 1) {
    for (size_t k = 0; k < parameters_.size(); ++k)
      hook_handles_.push_back(parameters_[k].register_hook([this, k](const torch::Tensor& grad) { on_gradient(k, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < hook_handles_.size(); ++k) parameters_[k].remove_hook(hook_handles_[k]);
  // A step abandoned by an exception may still have collectives in flight;
  // their destructors complete them before the buckets are freed.
  for (Bucket& bucket : buckets_) bucket.pending.reset();
}

std::vector<std::vector<size_t>> GradientReducer::bucket_layout() const {
  std::vector<std::vector<size_t>> layout;
  for (const Bucket& bucket : buckets_) layout.push_back(bucket.parameter_indices);
  return layout;
}

torch::Tensor GradientReducer::slot(size_t index) const {
  return buckets_[bucket_of_[index]].flat.narrow(0, offset_of_[index], parameters_[index].numel());
}

void GradientReducer::fill_slot(size_t index, const torch::Tensor& grad) {
  torch::Tensor destination = slot(index);
  if (grad.defined()) torch::mul_out(destination, grad.reshape({-1}), scale_);
  else destination.zero_();
}

void GradientReducer::start_bucket(size_t b, bool blocking) {
  Bucket& bucket = buckets_[b];
  const bool last = b + 1 == buckets_.size();
  if (last && side_sums_.defined())
    bucket.flat.narrow(0, bucket.gradient_elements, side_sums_.numel()).copy_(side_sums_.reshape({-1}));
  // Blocking where nothing is left to overlap with: a backend's blocking
  // all-reduce can be much faster than its non-blocking one (Open MPI's
  // tuned shared-memory algorithms against libnbc's).
  if (blocking) comm_.allreduce(bucket.flat, ReduceOp::Sum);
  else bucket.pending = comm_.allreduce_async(bucket.flat, ReduceOp::Sum);
}

void GradientReducer::write_back(torch::Tensor side_sums) {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    if (bucket.pending) bucket.pending->wait();
    bucket.pending.reset();
    // Each gradient becomes a view of its bucket (as DDP's gradient_as_bucket_view):
    // no copy back. It stays valid until the next step writes the bucket, and
    // the trainer drops every gradient before that step's backward.
    for (size_t index : bucket.parameter_indices)
      parameters_[index].mutable_grad() = slot(index).view(parameters_[index].sizes());
    if (b + 1 == buckets_.size() && side_sums.defined())
      side_sums.copy_(bucket.flat.narrow(0, bucket.gradient_elements, side_sums.numel()).view(side_sums.sizes()));
  }
}

void GradientReducer::reduce(torch::Tensor side_sums) {
  torch::NoGradGuard no_grad;
  if (side_sums.defined() && side_sums.numel() > kMaxSideSums)
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
  side_sums_ = side_sums;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t index : buckets_[b].parameter_indices) fill_slot(index, parameters_[index].grad());
    start_bucket(b, /*blocking=*/true);
  }
  side_sums_ = torch::Tensor();
  write_back(side_sums);
}

void GradientReducer::begin_backward(torch::Tensor side_sums) {
  if (side_sums.defined() && side_sums.numel() > kMaxSideSums)
    throw Error("GradientReducer: at most 16 side sums");
  if (!overlapping()) {
    side_sums_ = side_sums;  // reduced by finish_backward
    return;
  }
  if (armed_) throw Error("GradientReducer: begin_backward called twice without finish_backward");
  side_sums_ = side_sums;
  std::fill(slot_filled_.begin(), slot_filled_.end(), false);
  for (Bucket& bucket : buckets_) bucket.waiting = static_cast<int64_t>(bucket.parameter_indices.size());
  next_to_start_ = 0;
  armed_ = true;
}

void GradientReducer::on_gradient(size_t index, const torch::Tensor& grad) {
  if (!armed_) return;  // an importance pass or evaluation, not a training step
  torch::NoGradGuard no_grad;
  if (slot_filled_[index])
    throw Error("GradientReducer: parameter " + std::to_string(index) +
                " received a second gradient in one step; overlapped all-reduce needs exactly one backward per step "
                "(set train.overlap_allreduce=false)");
  fill_slot(index, grad);
  slot_filled_[index] = true;
  --buckets_[bucket_of_[index]].waiting;
  start_ready_buckets();
}

void GradientReducer::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].waiting == 0)
    start_bucket(next_to_start_++, /*blocking=*/false);
  // Backends whose collectives progress only when called (non-blocking MPI) get a poke.
  for (size_t b = 0; b < next_to_start_; ++b)
    if (buckets_[b].pending && !buckets_[b].pending->test()) break;
}

void GradientReducer::finish_backward() {
  torch::NoGradGuard no_grad;
  torch::Tensor side_sums = side_sums_;
  if (!overlapping()) {
    side_sums_ = torch::Tensor();
    reduce(side_sums);
    return;
  }
  if (!armed_) throw Error("GradientReducer: finish_backward without begin_backward");
  armed_ = false;
  // Parameters backward did not reach on this rank contribute zeros (or a
  // gradient set by hand); then every remaining bucket starts, in order.
  for (size_t b = next_to_start_; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    for (size_t index : bucket.parameter_indices)
      if (!slot_filled_[index]) fill_slot(index, parameters_[index].grad());
    bucket.waiting = 0;
  }
  start_ready_buckets();
  side_sums_ = torch::Tensor();
  write_back(side_sums);
}

}  // namespace clx
