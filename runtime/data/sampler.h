#pragma once
// Deterministic, sharded sampling of training data.
//
// Each epoch's order is a permutation generated from (seed, task, epoch) with
// the project's own generator (SplitMix64 + Fisher-Yates), so it is the same
// on every rank, every build and every LibTorch version. The permutation is
// cut into global batches of `global_batch` samples; rank r takes its
// contiguous share of each global batch. The global batches are therefore
// the same for any world size: a 2-rank run sees exactly the samples a
// 1-rank run sees in each step.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace clx {

// SplitMix64: small, fast and fully specified, so sequences never depend on
// the standard library or LibTorch implementation.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform integer in [0, bound), without modulo bias (Lemire's method).
  uint64_t below(uint64_t bound);
  // Uniform double in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// Combines several values into one seed (order matters).
uint64_t mix_seed(std::initializer_list<uint64_t> values);

// A uniformly random permutation of 0..n-1 as an int64 tensor.
torch::Tensor seeded_permutation(int64_t n, uint64_t seed);

class ShardedSampler {
 public:
  // Positions are returned on `device` (e.g. the GPU holding the dataset: TaskStream::data_device()).
  ShardedSampler(int64_t dataset_size, int64_t global_batch, int rank, int world_size, uint64_t seed,
                 torch::Device device = torch::kCPU);

  // Regenerates the order for (task, epoch) on the host and uploads it to the device once.
  void set_epoch(int64_t task, int64_t epoch);
  // Moves the current order to `device`; later epochs are uploaded there.
  void set_device(torch::Device device);
  torch::Device device() const { return device_; }
  // Number of global batches in an epoch (the last may be smaller).
  int64_t batches_per_epoch() const;
  // Number of samples in global batch `batch` over all ranks.
  int64_t global_batch_size(int64_t batch) const;
  // Dataset positions this rank uses in global batch `batch` (may be empty
  // when the last batch has fewer samples than ranks), on device(): a view
  // of the epoch's order, no copy.
  torch::Tensor local_batch(int64_t batch) const;

 private:
  int64_t dataset_size_, global_batch_;
  int rank_, world_size_;
  uint64_t seed_;
  torch::Device device_;
  torch::Tensor order_;
};

// Calls fn(local_positions, global_batch_count) for each global batch of
// items 0..count-1 in order (no shuffling), this rank taking its contiguous
// share of each batch; positions are int64 on `device`. Every rank makes the
// same number of calls, so fn may run collectives. Used by importance passes
// over a task's data.
void for_each_global_batch(int64_t count, int64_t global_batch, int rank, int world_size,
                           const std::function<void(const torch::Tensor&, int64_t)>& fn,
                           torch::Device device = torch::kCPU);

// Contiguous share of `count` items for `rank` out of `world_size`: the first
// count % world_size ranks get one extra. Returns {offset, length}.
std::pair<int64_t, int64_t> shard_range(int64_t count, int rank, int world_size);

}  // namespace clx
