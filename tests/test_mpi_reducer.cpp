// Collectives and the gradient reducer on the job's real world size.
#include <gtest/gtest.h>

#include "runtime/collectives.h"
#include "runtime/error.h"
#include "runtime/gradient_reducer.h"
#include "tests/mpi_test_support.h"

using clx::testing_support::world;

TEST(MpiCommunicator, AllreduceSumMaxMinAndBroadcast) {
  const int r = world->rank(), n = world->size();
  torch::Tensor sum = torch::tensor({1.0f + r, 10.0f * r});
  world->allreduce(sum, clx::ReduceOp::Sum);
  EXPECT_FLOAT_EQ(sum[0].item<float>(), n + n * (n - 1) / 2.0f);
  EXPECT_FLOAT_EQ(sum[1].item<float>(), 10.0f * n * (n - 1) / 2.0f);
  torch::Tensor max = torch::tensor({static_cast<int64_t>(r)});
  world->allreduce(max, clx::ReduceOp::Max);
  EXPECT_EQ(max.item<int64_t>(), n - 1);
  torch::Tensor min = torch::tensor({static_cast<double>(r) + 0.5});
  world->allreduce(min, clx::ReduceOp::Min);
  EXPECT_DOUBLE_EQ(min.item<double>(), 0.5);
  torch::Tensor value = torch::full({3}, static_cast<float>(r + 7));
  world->broadcast(value, 0);
  EXPECT_TRUE(value.equal(torch::full({3}, 7.0f)));
  torch::Tensor gathered = world->allgather(torch::tensor({static_cast<int32_t>(r)}, torch::kInt32));
  ASSERT_EQ(gathered.size(0), n);
  for (int k = 0; k < n; ++k) EXPECT_EQ(gathered[k][0].item<int32_t>(), k);
  const auto strings = world->allgather_strings(std::string(r + 1, 'x'));
  for (int k = 0; k < n; ++k) EXPECT_EQ(strings[k], std::string(k + 1, 'x'));
}

TEST(MpiCommunicator, RejectsNonCpuOrNonContiguousTensors) {
  torch::Tensor strided = torch::zeros({4, 4}).t();
  EXPECT_THROW(world->allreduce(strided, clx::ReduceOp::Sum), clx::Error);
}

TEST(GradientReducer, AveragesEveryBucketAndSumsSideValues) {
  const int r = world->rank(), n = world->size();
  // Three parameters, small buckets: forces several buckets.
  std::vector<torch::Tensor> parameters{torch::zeros({10}), torch::zeros({3, 4}), torch::zeros({5})};
  for (auto& p : parameters) p.set_requires_grad(true);
  clx::GradientReducer reducer(*world, parameters, /*bucket_bytes=*/48);
  EXPECT_GE(reducer.bucket_count(), 2u);
  for (size_t k = 0; k < parameters.size(); ++k)
    parameters[k].mutable_grad() = torch::full_like(parameters[k], static_cast<float>((k + 1) * (r + 1)));
  // Parameter 2's gradient missing on rank 0 only (a head no local sample used).
  if (r == 0) parameters[2].mutable_grad() = torch::Tensor();
  torch::Tensor side = torch::tensor({1.0f, static_cast<float>(r)});
  reducer.reduce(side);
  const float mean_rank_factor = (n + 1) / 2.0f;  // mean of (r+1) over ranks
  EXPECT_TRUE(parameters[0].grad().allclose(torch::full({10}, 1 * mean_rank_factor)));
  EXPECT_TRUE(parameters[1].grad().allclose(torch::full({3, 4}, 2 * mean_rank_factor)));
  // Rank 0 contributed zeros for parameter 2: mean of 3*(r+1) over ranks r>=1.
  float expected = 0;
  for (int k = 1; k < n; ++k) expected += 3.0f * (k + 1);
  expected /= n;
  ASSERT_TRUE(parameters[2].grad().defined());
  EXPECT_TRUE(parameters[2].grad().allclose(torch::full({5}, expected)));
  EXPECT_FLOAT_EQ(side[0].item<float>(), static_cast<float>(n));
  EXPECT_FLOAT_EQ(side[1].item<float>(), n * (n - 1) / 2.0f);
}

// Gradients of a small two-head network on this rank's own data. Head 1 is
// used only on ranks other than 0, as when rank 0's local batch has no sample
// of that task.
std::vector<torch::Tensor> two_head_network_gradients(clx::GradientReducer& reducer, bool overlapped,
                                                      std::vector<torch::Tensor>& parameters, torch::Tensor& side,
                                                      size_t* started_during_backward = nullptr) {
  torch::manual_seed(7);
  const int r = world->rank();
  torch::Tensor inputs = torch::randn({6, 5}) + r;
  for (auto& p : parameters) p.mutable_grad() = torch::Tensor();
  torch::Tensor hidden = torch::relu(inputs.mm(parameters[0]) + parameters[1]);
  torch::Tensor loss = hidden.mm(parameters[2]).pow(2).sum();
  if (r != 0) loss = loss + hidden.mm(parameters[3]).sum();
  side = torch::tensor({loss.item<float>(), 1.0f});
  if (overlapped) {
    reducer.begin_backward(side);
    loss.backward();
    if (started_during_backward != nullptr) *started_during_backward = reducer.buckets_started();
    reducer.finish_backward();
  } else {
    loss.backward();
    reducer.reduce(side);
  }
  std::vector<torch::Tensor> grads;
  for (auto& p : parameters) grads.push_back(p.grad().clone());
  return grads;
}

TEST(GradientReducer, OverlappedWithBackwardEqualsReducingAfterIt) {
  const int n = world->size();
  torch::manual_seed(3);
  std::vector<torch::Tensor> parameters{torch::randn({5, 8}), torch::randn({8}), torch::randn({8, 3}),
                                        torch::randn({8, 2})};
  for (auto& p : parameters) p.set_requires_grad(true);
  // One parameter per bucket, so buckets start one by one while backward runs
  // and the unused head (parameter 3, the first bucket) holds back the rest on rank 0.
  for (int64_t bucket_bytes : {int64_t{16}, int64_t{1} << 20}) {
    clx::GradientReducer after(*world, parameters, bucket_bytes, /*overlap=*/false);
    torch::Tensor side_after, side_overlapped;
    const auto expected = two_head_network_gradients(after, false, parameters, side_after);
    clx::GradientReducer overlapped(*world, parameters, bucket_bytes, /*overlap=*/true);
    EXPECT_EQ(overlapped.overlapping(), n > 1);
    // Twice: the reducer must re-arm for every step.
    for (int step = 0; step < 2; ++step) {
      size_t started = 0;
      const auto got = two_head_network_gradients(overlapped, true, parameters, side_overlapped, &started);
      if (n > 1 && bucket_bytes == 16) {
        // Other ranks start all four buckets inside backward; on rank 0 the
        // unused head's bucket comes first, so nothing may start before finish.
        EXPECT_EQ(started, world->rank() == 0 ? 0u : 4u);
      }
      for (size_t k = 0; k < parameters.size(); ++k)
        EXPECT_TRUE(got[k].equal(expected[k])) << "parameter " << k << ", bucket bytes " << bucket_bytes;
      EXPECT_TRUE(side_overlapped.equal(side_after));
    }
    EXPECT_FLOAT_EQ(side_after[1].item<float>(), static_cast<float>(n));
  }
  // Outside begin/finish the hooks do nothing: a plain backward leaves local gradients.
  clx::GradientReducer overlapped(*world, parameters, 1 << 20, /*overlap=*/true);
  for (auto& p : parameters) p.mutable_grad() = torch::Tensor();
  (parameters[0].sum() * (world->rank() + 1)).backward();
  EXPECT_TRUE(parameters[0].grad().equal(torch::full({5, 8}, static_cast<float>(world->rank() + 1))));
}

TEST(GradientReducer, BucketLayoutIsReverseParameterOrder) {
  std::vector<torch::Tensor> parameters{torch::zeros({4}), torch::zeros({4}), torch::zeros({4})};
  clx::GradientReducer one_bucket(*world, parameters, 1 << 20);
  ASSERT_EQ(one_bucket.bucket_count(), 1u);
  EXPECT_EQ(one_bucket.bucket_layout()[0], (std::vector<size_t>{2, 1, 0}));
  clx::GradientReducer per_parameter(*world, parameters, 16);
  EXPECT_EQ(per_parameter.bucket_count(), 3u);
}

TEST(Agreement, OneFailingRankStopsEveryRankWithItsMessage) {
  const int r = world->rank(), n = world->size();
  try {
    clx::run_on_all_ranks(*world, [&] {
      if (r == n - 1) throw clx::Error("cannot open /data/x");
    });
    FAIL() << "expected a CollectiveError on every rank";
  } catch (const clx::CollectiveError& error) {
    const std::string expected = n == 1 ? "cannot open /data/x" : "rank " + std::to_string(n - 1) + ": cannot open /data/x";
    EXPECT_EQ(std::string(error.what()), expected);
  }
  EXPECT_NO_THROW(clx::run_on_all_ranks(*world, [] {}));
}

TEST(Agreement, DifferingConfigurationNamesRankAndLine) {
  const int r = world->rank(), n = world->size();
  EXPECT_NO_THROW(clx::require_identical_across_ranks(*world, "a = 1\nb = 2\n", "the configuration"));
  const std::string text = "a = 1\nb = " + std::to_string(r == 1 ? 3 : 2) + "\n";
  if (n == 1) {
    EXPECT_NO_THROW(clx::require_identical_across_ranks(*world, text, "the configuration"));
    return;
  }
  try {
    clx::require_identical_across_ranks(*world, text, "the configuration");
    FAIL() << "expected a CollectiveError";
  } catch (const clx::CollectiveError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("the configuration differs between ranks: rank(s) 1 differ from rank 0"), std::string::npos)
        << message;
    EXPECT_NE(message.find("'b = 2' vs 'b = 3'"), std::string::npos) << message;
  }
}
