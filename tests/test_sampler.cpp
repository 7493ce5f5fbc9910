// Unit tests of the deterministic generator and the sharded sampler
// (runtime/data/sampler.h).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <set>
#include <tuple>
#include <vector>

#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace {

std::vector<int64_t> to_vector(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

bool is_permutation_of_range(const torch::Tensor& order, int64_t n) {
  if (order.dim() != 1 || order.size(0) != n || order.scalar_type() != torch::kInt64) return false;
  return torch::equal(std::get<0>(order.sort()), torch::arange(n, torch::kInt64));
}

// ---- SplitMix64

TEST(SplitMix64, KnownOutputsForSeedZero) {
  // Reference sequence of Vigna's splitmix64.c with x = 0.
  clx::SplitMix64 generator(0);
  EXPECT_EQ(generator.next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(generator.next(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(generator.next(), 0x06c45d188009454fULL);
}

TEST(SplitMix64, SameSeedSameSequence) {
  clx::SplitMix64 a(12345), b(12345), c(12346);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
  }
  EXPECT_TRUE(differs);
}

TEST(SplitMix64, BelowStaysInRangeAndCoversIt) {
  clx::SplitMix64 generator(42);
  for (uint64_t bound : {1ULL, 2ULL, 3ULL, 7ULL, 10ULL, 1000ULL}) {
    std::set<uint64_t> seen;
    for (int i = 0; i < 2000; ++i) {
      const uint64_t value = generator.below(bound);
      ASSERT_LT(value, bound);
      seen.insert(value);
    }
    if (bound <= 10) EXPECT_EQ(seen.size(), bound) << "bound " << bound;
  }
}

TEST(SplitMix64, UniformInUnitInterval) {
  clx::SplitMix64 generator(7);
  double sum = 0.0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double u = generator.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.02);
}

TEST(MixSeed, DeterministicAndOrderSensitive) {
  EXPECT_EQ(clx::mix_seed({1, 2, 3}), clx::mix_seed({1, 2, 3}));
  EXPECT_NE(clx::mix_seed({1, 2, 3}), clx::mix_seed({1, 3, 2}));
  EXPECT_NE(clx::mix_seed({1, 0, 1}), clx::mix_seed({1, 1, 0}));
  EXPECT_NE(clx::mix_seed({1}), clx::mix_seed({2}));
}

// ---- seeded_permutation

TEST(SeededPermutation, IsAPermutation) {
  for (int64_t n : {0, 1, 2, 5, 10, 13, 128, 1000}) {
    const torch::Tensor order = clx::seeded_permutation(n, 99);
    EXPECT_TRUE(is_permutation_of_range(order, n)) << "n = " << n;
  }
}

TEST(SeededPermutation, DeterministicPerSeedAndDifferentAcrossSeeds) {
  const torch::Tensor a = clx::seeded_permutation(128, 1);
  const torch::Tensor b = clx::seeded_permutation(128, 1);
  const torch::Tensor c = clx::seeded_permutation(128, 2);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_FALSE(torch::equal(a, torch::arange(128, torch::kInt64)));  // actually shuffles
}

// ---- shard_range

TEST(ShardRange, HandComputedExamples) {
  using Range = std::pair<int64_t, int64_t>;
  EXPECT_EQ(clx::shard_range(10, 0, 3), (Range{0, 4}));
  EXPECT_EQ(clx::shard_range(10, 1, 3), (Range{4, 3}));
  EXPECT_EQ(clx::shard_range(10, 2, 3), (Range{7, 3}));
  EXPECT_EQ(clx::shard_range(10, 0, 1), (Range{0, 10}));
  EXPECT_EQ(clx::shard_range(5, 0, 2), (Range{0, 3}));
  EXPECT_EQ(clx::shard_range(5, 1, 2), (Range{3, 2}));
  // Fewer items than ranks: the last ranks get nothing.
  EXPECT_EQ(clx::shard_range(2, 0, 3), (Range{0, 1}));
  EXPECT_EQ(clx::shard_range(2, 1, 3), (Range{1, 1}));
  EXPECT_EQ(clx::shard_range(2, 2, 3), (Range{2, 0}));
  EXPECT_EQ(clx::shard_range(0, 1, 2), (Range{0, 0}));
  EXPECT_EQ(clx::shard_range(12, 3, 4), (Range{9, 3}));
}

TEST(ShardRange, CoversCountContiguously) {
  for (int64_t count = 0; count <= 20; ++count) {
    for (int world = 1; world <= 5; ++world) {
      int64_t next = 0, smallest = count, largest = 0;
      for (int rank = 0; rank < world; ++rank) {
        const auto [offset, length] = clx::shard_range(count, rank, world);
        EXPECT_EQ(offset, next) << count << " " << rank << "/" << world;
        next = offset + length;
        smallest = std::min(smallest, length);
        largest = std::max(largest, length);
      }
      EXPECT_EQ(next, count);
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

// ---- ShardedSampler

TEST(ShardedSampler, RejectsInvalidArguments) {
  EXPECT_THROW(clx::ShardedSampler(10, 0, 0, 1, 1), clx::Error);
  EXPECT_THROW(clx::ShardedSampler(10, 4, 0, 0, 1), clx::Error);
  EXPECT_THROW(clx::ShardedSampler(10, 4, 2, 2, 1), clx::Error);
  EXPECT_THROW(clx::ShardedSampler(10, 4, -1, 2, 1), clx::Error);
}

TEST(ShardedSampler, BatchCounting) {
  clx::ShardedSampler sampler(13, 4, 0, 1, 5);
  EXPECT_EQ(sampler.batches_per_epoch(), 4);
  EXPECT_EQ(sampler.global_batch_size(0), 4);
  EXPECT_EQ(sampler.global_batch_size(2), 4);
  EXPECT_EQ(sampler.global_batch_size(3), 1);
  clx::ShardedSampler even(128, 4, 0, 1, 5);
  EXPECT_EQ(even.batches_per_epoch(), 32);
  EXPECT_EQ(even.global_batch_size(31), 4);
}

// The global batches are the same for every world size: concatenating the
// ranks' local batches in rank order gives exactly the 1-rank batch.
TEST(ShardedSampler, RanksReassembleTheSingleRankBatches) {
  const uint64_t seed = 2024;
  for (int64_t dataset : {10, 13, 128}) {
    for (int64_t global_batch : {4, 5}) {
      for (int world : {1, 2, 3}) {
        for (auto [task, epoch] : std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {0, 1}, {2, 3}}) {
          SCOPED_TRACE("dataset " + std::to_string(dataset) + ", batch " + std::to_string(global_batch) +
                       ", world " + std::to_string(world) + ", task " + std::to_string(task) + ", epoch " +
                       std::to_string(epoch));
          clx::ShardedSampler single(dataset, global_batch, 0, 1, seed);
          single.set_epoch(task, epoch);
          std::vector<clx::ShardedSampler> ranks;
          for (int r = 0; r < world; ++r) {
            ranks.emplace_back(dataset, global_batch, r, world, seed);
            ranks.back().set_epoch(task, epoch);
          }
          ASSERT_EQ(single.batches_per_epoch(), (dataset + global_batch - 1) / global_batch);
          std::vector<int> seen(dataset, 0);
          for (int64_t b = 0; b < single.batches_per_epoch(); ++b) {
            const torch::Tensor reference = single.local_batch(b);
            ASSERT_EQ(reference.size(0), single.global_batch_size(b));
            std::vector<torch::Tensor> parts;
            int64_t smallest = reference.size(0), largest = 0, offset = 0;
            for (int r = 0; r < world; ++r) {
              ASSERT_EQ(ranks[r].batches_per_epoch(), single.batches_per_epoch());
              ASSERT_EQ(ranks[r].global_batch_size(b), single.global_batch_size(b));
              const torch::Tensor local = ranks[r].local_batch(b);
              ASSERT_EQ(local.dim(), 1);
              ASSERT_EQ(local.scalar_type(), torch::kInt64);
              // Contiguous share of the global batch, in rank order.
              EXPECT_TRUE(torch::equal(local, reference.narrow(0, offset, local.size(0)))) << "rank " << r;
              const auto [expected_offset, expected_length] = clx::shard_range(reference.size(0), r, world);
              EXPECT_EQ(offset, expected_offset);
              EXPECT_EQ(local.size(0), expected_length);
              offset += local.size(0);
              smallest = std::min(smallest, local.size(0));
              largest = std::max(largest, local.size(0));
              parts.push_back(local);
              for (int64_t position : to_vector(local)) {
                ASSERT_GE(position, 0);
                ASSERT_LT(position, dataset);
                ++seen[position];
              }
            }
            EXPECT_EQ(offset, reference.size(0));
            EXPECT_LE(largest - smallest, 1);
            EXPECT_TRUE(torch::equal(torch::cat(parts), reference)) << "batch " << b;
          }
          for (int64_t i = 0; i < dataset; ++i) EXPECT_EQ(seen[i], 1) << "sample " << i;
        }
      }
    }
  }
}

TEST(ShardedSampler, EpochOrderDependsOnTaskAndEpoch) {
  const int64_t dataset = 128;
  auto epoch_order = [&](uint64_t seed, int64_t task, int64_t epoch) {
    clx::ShardedSampler sampler(dataset, 5, 0, 1, seed);
    sampler.set_epoch(task, epoch);
    std::vector<torch::Tensor> parts;
    for (int64_t b = 0; b < sampler.batches_per_epoch(); ++b) parts.push_back(sampler.local_batch(b));
    return torch::cat(parts);
  };
  const std::vector<std::pair<int64_t, int64_t>> keys = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {0, 2}};
  std::vector<torch::Tensor> orders;
  for (auto [task, epoch] : keys) {
    orders.push_back(epoch_order(3, task, epoch));
    EXPECT_TRUE(is_permutation_of_range(orders.back(), dataset));
  }
  for (size_t a = 0; a < orders.size(); ++a)
    for (size_t b = a + 1; b < orders.size(); ++b)
      EXPECT_FALSE(torch::equal(orders[a], orders[b]))
          << "(" << keys[a].first << "," << keys[a].second << ") vs (" << keys[b].first << "," << keys[b].second << ")";
  // Same (task, epoch) gives the same order, also after visiting other epochs.
  clx::ShardedSampler sampler(dataset, 5, 0, 1, 3);
  sampler.set_epoch(1, 1);
  sampler.set_epoch(4, 7);
  sampler.set_epoch(1, 1);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < sampler.batches_per_epoch(); ++b) parts.push_back(sampler.local_batch(b));
  EXPECT_TRUE(torch::equal(torch::cat(parts), epoch_order(3, 1, 1)));
  EXPECT_TRUE(torch::equal(epoch_order(3, 2, 0), epoch_order(3, 2, 0)));
  // The seed matters too.
  EXPECT_FALSE(torch::equal(epoch_order(3, 0, 0), epoch_order(4, 0, 0)));
  // The constructor starts at (task 0, epoch 0).
  clx::ShardedSampler fresh(dataset, 5, 0, 1, 3);
  std::vector<torch::Tensor> fresh_parts;
  for (int64_t b = 0; b < fresh.batches_per_epoch(); ++b) fresh_parts.push_back(fresh.local_batch(b));
  EXPECT_TRUE(torch::equal(torch::cat(fresh_parts), orders[0]));
}

TEST(ShardedSampler, LastBatchSmallerThanWorldLeavesSomeRanksEmpty) {
  // 13 samples, batch 4: the last global batch has 1 sample; with 3 ranks
  // rank 0 gets it and ranks 1 and 2 get nothing.
  std::vector<int64_t> sizes;
  for (int r = 0; r < 3; ++r) {
    clx::ShardedSampler sampler(13, 4, r, 3, 9);
    sizes.push_back(sampler.local_batch(3).size(0));
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{1, 0, 0}));
}

TEST(ShardedSampler, PositionsLiveOnTheRequestedDevice) {
  // The meta device (shapes, no data) stands in for a GPU: the same code path.
  const torch::Device meta(torch::kMeta);
  clx::ShardedSampler cpu(50, 8, 1, 2, 7);
  clx::ShardedSampler on_meta(50, 8, 1, 2, 7, meta);
  EXPECT_EQ(on_meta.device(), meta);
  for (int64_t epoch : {0, 3}) {
    cpu.set_epoch(2, epoch);
    on_meta.set_epoch(2, epoch);
    for (int64_t b = 0; b < cpu.batches_per_epoch(); ++b) {
      EXPECT_EQ(on_meta.local_batch(b).device(), meta);
      EXPECT_EQ(on_meta.local_batch(b).sizes(), cpu.local_batch(b).sizes());
    }
  }
  // set_device moves the current order and every later epoch.
  clx::ShardedSampler moved(50, 8, 1, 2, 7);
  moved.set_epoch(2, 3);
  const torch::Tensor before = moved.local_batch(1).clone();
  moved.set_device(torch::kCPU);
  EXPECT_TRUE(torch::equal(moved.local_batch(1), before));
  moved.set_device(meta);
  EXPECT_EQ(moved.local_batch(1).device(), meta);
  moved.set_epoch(0, 0);
  EXPECT_EQ(moved.local_batch(0).device(), meta);
}

TEST(ForEachGlobalBatch, PositionsLiveOnTheRequestedDevice) {
  std::vector<int64_t> sizes;
  clx::for_each_global_batch(
      10, 4, 1, 2,
      [&](const torch::Tensor& positions, int64_t global) {
        EXPECT_EQ(positions.device(), torch::Device(torch::kMeta));
        EXPECT_EQ(positions.scalar_type(), torch::kInt64);
        sizes.push_back(positions.numel());
        sizes.push_back(global);
      },
      torch::Device(torch::kMeta));
  // Batches of 4, 4, 2; rank 1 of 2 takes 2, 2, 1.
  EXPECT_EQ(sizes, (std::vector<int64_t>{2, 4, 2, 4, 1, 2}));
}

}  // namespace
