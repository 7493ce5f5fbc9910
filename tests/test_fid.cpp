// Unit tests of FID (DESIGN.md 4.4): the Fréchet distance against closed
// forms (runtime/fid.h), the symmetric square root on known matrices, the
// batched feature statistics.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/fid.h"
#include "tests/expect_error.h"

using clx::testing_support::expect_error;

namespace {

torch::Tensor doubles(std::initializer_list<double> values) {
  return torch::tensor(std::vector<double>(values), torch::kFloat64);
}

torch::Tensor matrix2(double a, double b, double c, double d) { return doubles({a, b, c, d}).reshape({2, 2}); }

// ---------------------------------------------------------------- square root

TEST(SymmetricSqrt, OfAKnownMatrix) {
  // [[5, 4], [4, 5]] = [[2, 1], [1, 2]]^2 (eigenvalues 9 and 1, square roots 3 and 1).
  const torch::Tensor root = clx::symmetric_sqrt(matrix2(5, 4, 4, 5));
  EXPECT_EQ(root.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::allclose(root, matrix2(2, 1, 1, 2), 0.0, 1e-12)) << root;
}

TEST(SymmetricSqrt, OfASingularMatrixAndOfRoundingBelowZero) {
  // [[1, 1], [1, 1]]: eigenvalues 2 and 0, root [[1, 1], [1, 1]] / sqrt(2).
  const torch::Tensor root = clx::symmetric_sqrt(matrix2(1, 1, 1, 1));
  EXPECT_TRUE(torch::allclose(root, matrix2(1, 1, 1, 1) / std::sqrt(2.0), 0.0, 1e-12)) << root;
  // An eigenvalue of -1e-14 (what rounding leaves on a singular covariance) is taken as 0, not NaN.
  const torch::Tensor almost = matrix2(1, 1, 1, 1) - 1e-14 * torch::eye(2, torch::kFloat64);
  EXPECT_FALSE(clx::symmetric_sqrt(almost).isnan().any().item<bool>());
}

TEST(SymmetricSqrt, SquaresBackToARandomPositiveDefiniteMatrix) {
  torch::manual_seed(3);
  const torch::Tensor a = torch::randn({6, 6}, torch::kFloat64);
  const torch::Tensor spd = a.matmul(a.t()) + 0.1 * torch::eye(6, torch::kFloat64);
  const torch::Tensor root = clx::symmetric_sqrt(spd);
  EXPECT_TRUE(torch::allclose(root, root.t(), 0.0, 1e-12));
  EXPECT_TRUE(torch::allclose(root.matmul(root), spd, 0.0, 1e-10));
  EXPECT_GT(torch::linalg::eigvalsh(root, "L").min().item<double>(), 0.0);
}

TEST(SymmetricSqrt, RefusesANonSquareMatrix) {
  expect_error([] { clx::symmetric_sqrt(torch::zeros({2, 3})); }, {"symmetric_sqrt", "square", "2x3"});
}

// ---------------------------------------------------------------- distance

TEST(FrechetDistance, OfDiagonalGaussiansInClosedForm) {
  // Diagonal covariances commute: FID = ||mu1 - mu2||^2 + sum_k (sqrt(a_k) - sqrt(b_k))^2.
  const torch::Tensor mu1 = doubles({0.5, -1.0, 2.0, 0.0});
  const torch::Tensor mu2 = doubles({1.5, 1.0, 2.0, -3.0});
  const std::vector<double> a = {1.0, 4.0, 0.25, 9.0}, b = {4.0, 1.0, 0.25, 0.0};
  double expected = 1.0 + 4.0 + 0.0 + 9.0;
  for (size_t k = 0; k < a.size(); ++k) expected += std::pow(std::sqrt(a[k]) - std::sqrt(b[k]), 2);  // 1 + 1 + 0 + 9
  const torch::Tensor s1 = torch::diag(torch::tensor(a, torch::kFloat64));
  const torch::Tensor s2 = torch::diag(torch::tensor(b, torch::kFloat64));
  EXPECT_NEAR(clx::frechet_distance(mu1, s1, mu2, s2), expected, 1e-12);
  EXPECT_NEAR(expected, 25.0, 1e-12);
}

TEST(FrechetDistance, OfNonCommutingCovariancesByHand) {
  // S1 = diag(4, 1), S2 = [[5, 4], [4, 5]]. M = S1^1/2 S2 S1^1/2 = [[20, 8], [8, 5]]:
  // trace 25, determinant 36, so Tr(M^1/2) = sqrt(25 + 2 sqrt(36)) = sqrt(37)
  // (for a 2x2 matrix, (sqrt(l1) + sqrt(l2))^2 = tr + 2 sqrt(det)).
  // FID = |mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 sqrt(37) = 9 + 5 + 10 - 2 sqrt(37).
  const torch::Tensor s1 = matrix2(4, 0, 0, 1), s2 = matrix2(5, 4, 4, 5);
  const torch::Tensor mu1 = doubles({1, 2}), mu2 = doubles({1, -1});
  const double expected = 24.0 - 2.0 * std::sqrt(37.0);
  EXPECT_NEAR(clx::trace_sqrt_product(s1, s2), std::sqrt(37.0), 1e-12);
  EXPECT_NEAR(clx::frechet_distance(mu1, s1, mu2, s2), expected, 1e-12);
  EXPECT_NEAR(clx::frechet_distance(mu2, s2, mu1, s1), expected, 1e-12);  // symmetric
  // A covariance against the identity: Tr(S^1/2) of [[5, 4], [4, 5]] is 2 + 2.
  EXPECT_NEAR(clx::frechet_distance(mu1, s2, mu1, torch::eye(2, torch::kFloat64)), 10.0 + 2.0 - 2.0 * 4.0, 1e-12);
}

TEST(FrechetDistance, OfADistributionWithItselfIsZero) {
  torch::manual_seed(5);
  const torch::Tensor features = torch::randn({500, 16}, torch::kFloat64) * 3.0 + 7.0;
  const clx::GaussianStatistics statistics = clx::feature_statistics(features);
  EXPECT_NEAR(clx::frechet_distance(statistics, statistics), 0.0, 1e-9);
  // Rank-deficient covariance (8 samples in 16 dimensions): still 0, never NaN or negative.
  const clx::GaussianStatistics few = clx::feature_statistics(features.slice(0, 0, 8));
  const double self = clx::frechet_distance(few, few);
  EXPECT_GE(self, 0.0);
  EXPECT_LT(self, 1e-6);
}

TEST(FrechetDistance, OfSamplesConvergesToTheClosedForm) {
  // Two 3-d Gaussians, non-commuting covariances; 200,000 samples of each.
  const torch::Tensor l1 = doubles({1.0, 0, 0, 0.5, 1.0, 0, -0.3, 0.2, 0.7}).reshape({3, 3});
  const torch::Tensor l2 = doubles({0.8, 0, 0, -0.4, 1.2, 0, 0.6, 0.1, 0.5}).reshape({3, 3});
  const torch::Tensor mu1 = doubles({0, 0, 0}), mu2 = doubles({1.0, -0.5, 0.25});
  const torch::Tensor s1 = l1.matmul(l1.t()), s2 = l2.matmul(l2.t());
  const double exact = clx::frechet_distance(mu1, s1, mu2, s2);
  torch::manual_seed(11);
  const int64_t n = 200000;
  const torch::Tensor x1 = torch::randn({n, 3}, torch::kFloat64).matmul(l1.t()) + mu1;
  const torch::Tensor x2 = torch::randn({n, 3}, torch::kFloat64).matmul(l2.t()) + mu2;
  const double sampled = clx::frechet_distance(clx::feature_statistics(x1), clx::feature_statistics(x2));
  EXPECT_GT(exact, 1.0);
  EXPECT_NEAR(sampled, exact, 0.02 * exact) << "exact " << exact;
}

TEST(FrechetDistance, RefusesShapesThatDoNotAgree) {
  expect_error([] { clx::frechet_distance(doubles({0, 0}), torch::eye(2), doubles({0, 0, 0}), torch::eye(3)); },
               {"frechet_distance", "means 2 and 3", "covariances 2x2 and 3x3"});
}

// ---------------------------------------------------------------- statistics

TEST(FeatureStatistics, OfATinyMatrixByHand) {
  // Rows (1, 2), (3, 0), (5, 4): mean (3, 2); centred rows (-2, 0), (0, -2), (2, 2);
  // scatter [[8, 4], [4, 8]]; covariance with divisor n - 1 = 2: [[4, 2], [2, 4]].
  const torch::Tensor x = doubles({1, 2, 3, 0, 5, 4}).reshape({3, 2});
  const clx::GaussianStatistics whole = clx::feature_statistics(x);
  EXPECT_EQ(whole.count, 3);
  EXPECT_TRUE(torch::allclose(whole.mean, doubles({3, 2}), 0.0, 1e-15));
  EXPECT_TRUE(torch::allclose(whole.covariance, matrix2(4, 2, 2, 4), 0.0, 1e-15)) << whole.covariance;
  // Row by row, and float32 input, give the same.
  clx::StatisticsAccumulator rows;
  for (int64_t r = 0; r < 3; ++r) rows.add(x.slice(0, r, r + 1).to(torch::kFloat32));
  const clx::GaussianStatistics merged = rows.statistics();
  EXPECT_TRUE(torch::allclose(merged.mean, whole.mean, 0.0, 1e-15));
  EXPECT_TRUE(torch::allclose(merged.covariance, whole.covariance, 0.0, 1e-15));
}

TEST(FeatureStatistics, BatchesGiveTheWholeMatrixsStatisticsEvenFarFromZero) {
  // A mean of 1e6 next to a spread of 1: summing x x^T would lose the
  // covariance to cancellation; the pairwise merge does not.
  torch::manual_seed(9);
  const torch::Tensor x = torch::randn({1000, 5}, torch::kFloat64) + 1e6;
  const clx::GaussianStatistics whole = clx::feature_statistics(x);
  clx::StatisticsAccumulator batches;
  for (int64_t start = 0; start < 1000; start += 137) batches.add(x.slice(0, start, std::min<int64_t>(1000, start + 137)));
  const clx::GaussianStatistics merged = batches.statistics();
  EXPECT_EQ(merged.count, 1000);
  EXPECT_TRUE(torch::allclose(merged.mean, whole.mean, 0.0, 1e-9));
  EXPECT_TRUE(torch::allclose(merged.covariance, whole.covariance, 0.0, 1e-9));
  const torch::Tensor centred = x - x.mean(0);
  EXPECT_TRUE(torch::allclose(whole.covariance, centred.t().matmul(centred) / 999.0, 0.0, 1e-9));
}

TEST(FeatureStatistics, NeedsTwoVectorsAndOneWidth) {
  expect_error([] { clx::feature_statistics(torch::zeros({1, 4})); }, {"1 feature vector", "at least 2"});
  expect_error(
      [] {
        clx::StatisticsAccumulator accumulator;
        accumulator.add(torch::zeros({3, 4}));
        accumulator.add(torch::zeros({3, 5}));
      },
      {"5 features after batches of 4"});
}

}  // namespace
