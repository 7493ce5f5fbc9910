#include "runtime/data/sampler.h"

#include "runtime/error.h"

namespace clx {

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t bound) {
  // Lemire's nearly-divisionless method with rejection.
  __uint128_t product = static_cast<__uint128_t>(next()) * bound;
  uint64_t low = static_cast<uint64_t>(product);
  if (low < bound) {
    const uint64_t threshold = -bound % bound;
    while (low < threshold) {
      product = static_cast<__uint128_t>(next()) * bound;
      low = static_cast<uint64_t>(product);
    }
  }
  return static_cast<uint64_t>(product >> 64);
}

uint64_t mix_seed(std::initializer_list<uint64_t> values) {
  uint64_t seed = 0x5eed5eed5eed5eedULL;
  for (uint64_t value : values) {
    SplitMix64 generator(seed ^ (value * 0x9e3779b97f4a7c15ULL));
    seed = generator.next();
  }
  return seed;
}

torch::Tensor seeded_permutation(int64_t n, uint64_t seed) {
  torch::Tensor order = torch::arange(n, torch::kInt64);
  int64_t* values = order.data_ptr<int64_t>();
  SplitMix64 generator(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(generator.below(static_cast<uint64_t>(i) + 1));
    std::swap(values[i], values[j]);
  }
  return order;
}

std::pair<int64_t, int64_t> shard_range(int64_t count, int rank, int world_size) {
  const int64_t base = count / world_size, extra = count % world_size;
  const int64_t length = base + (rank < extra ? 1 : 0);
  const int64_t offset = rank * base + std::min<int64_t>(rank, extra);
  return {offset, length};
}

ShardedSampler::ShardedSampler(int64_t dataset_size, int64_t global_batch, int rank, int world_size, uint64_t seed,
                               torch::Device device)
    : dataset_size_(dataset_size),
      global_batch_(global_batch),
      rank_(rank),
      world_size_(world_size),
      seed_(seed),
      device_(device) {
  if (global_batch <= 0) throw Error("sampler: batch size must be positive");
  if (world_size <= 0 || rank < 0 || rank >= world_size) throw Error("sampler: invalid rank/world size");
  set_epoch(0, 0);
}

void ShardedSampler::set_epoch(int64_t task, int64_t epoch) {
  order_ = seeded_permutation(dataset_size_, mix_seed({seed_, static_cast<uint64_t>(task), static_cast<uint64_t>(epoch)}))
               .to(device_);
}

void ShardedSampler::set_device(torch::Device device) {
  device_ = device;
  order_ = order_.to(device_);
}

int64_t ShardedSampler::batches_per_epoch() const { return (dataset_size_ + global_batch_ - 1) / global_batch_; }

int64_t ShardedSampler::global_batch_size(int64_t batch) const {
  return std::min(global_batch_, dataset_size_ - batch * global_batch_);
}

torch::Tensor ShardedSampler::local_batch(int64_t batch) const {
  const int64_t start = batch * global_batch_;
  const auto [offset, length] = shard_range(global_batch_size(batch), rank_, world_size_);
  return order_.narrow(0, start + offset, length);
}

}  // namespace clx

namespace clx {

void for_each_global_batch(int64_t count, int64_t global_batch, int rank, int world_size,
                           const std::function<void(const torch::Tensor&, int64_t)>& fn, torch::Device device) {
  if (global_batch <= 0) throw Error("importance pass: batch size must be positive");
  const auto options = torch::TensorOptions().dtype(torch::kInt64).device(device);
  for (int64_t start = 0; start < count; start += global_batch) {
    const int64_t size = std::min(global_batch, count - start);
    const auto [offset, length] = shard_range(size, rank, world_size);
    fn(torch::arange(start + offset, start + offset + length, options), size);
  }
}

}  // namespace clx
