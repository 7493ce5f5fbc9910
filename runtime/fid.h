#pragma once
// Fréchet distance between Gaussians fitted to feature vectors: the FID of
// DESIGN.md section 4.4 without the network that makes the features (that is
// models/fid_features.h). Everything here is float64, whatever the features'
// dtype, because the distance is a small difference of large traces.
//
//   FID = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})
//
// S1 S2 is not symmetric, but with A = S1^{1/2} and B = S1^{1/2} S2 it is
// A B, and M = B A = S1^{1/2} S2 S1^{1/2} is symmetric positive
// semi-definite; A B and B A have the same eigenvalues, so
// Tr((S1 S2)^{1/2}) = Tr(M^{1/2}) = sum_k sqrt(lambda_k(M)).
// Both square roots are therefore of symmetric matrices, by eigendecomposition
// (torch::linalg::eigh, in LibTorch 1.13 and 2.x alike), with the small
// negative eigenvalues that rounding leaves on a singular covariance clamped
// at 0. This avoids the general (Schur) square root and its complex parts
// that scipy.linalg.sqrtm returns on nearly singular products.
#include <torch/torch.h>

#include <cstdint>

namespace clx {

// Mean [d] and covariance [d, d] (divisor n - 1) of n feature vectors, float64 on the CPU.
struct GaussianStatistics {
  torch::Tensor mean;
  torch::Tensor covariance;
  int64_t count = 0;
  int64_t dimension() const { return mean.defined() ? mean.size(0) : 0; }
};

// Feature statistics accumulated batch by batch, so that 10,000 images need
// not be held as features at once. Each batch's mean and centred scatter
// matrix are merged with the running ones by Chan, Golub and LeVeque's
// pairwise formula,
//   M2 = M2_a + M2_b + (mean_b - mean_a)(mean_b - mean_a)^T n_a n_b / (n_a + n_b),
// which, unlike summing x x^T and subtracting n mean mean^T at the end, loses
// no precision when the mean is large next to the spread (ReLU features are
// all positive). The sums run in float64 on the features' device.
class StatisticsAccumulator {
 public:
  // `features`: [n, d], any floating dtype and device; d must match earlier batches.
  void add(const torch::Tensor& features);
  int64_t count() const { return count_; }
  // Needs at least 2 vectors (the n - 1 divisor); throws clx::Error otherwise.
  GaussianStatistics statistics() const;

 private:
  int64_t count_ = 0;
  torch::Tensor mean_;     // [d] float64
  torch::Tensor scatter_;  // [d, d] float64: sum of (x - mean)(x - mean)^T
};

// The statistics of one [n, d] feature matrix (n >= 2).
GaussianStatistics feature_statistics(const torch::Tensor& features);

// The symmetric positive semi-definite square root of a symmetric matrix
// [d, d] (computed in float64 and returned as float64 on the matrix's
// device): V diag(sqrt(max(lambda, 0))) V^T from its eigendecomposition.
// Only the lower triangle is read. Throws clx::Error for a non-square matrix.
torch::Tensor symmetric_sqrt(const torch::Tensor& matrix);

// Tr((S1 S2)^{1/2}) for symmetric positive semi-definite S1, S2, by the
// symmetric form above.
double trace_sqrt_product(const torch::Tensor& covariance1, const torch::Tensor& covariance2);

// The Fréchet distance between N(mean1, covariance1) and N(mean2,
// covariance2) (means [d], covariances [d, d]). Throws clx::Error naming
// the shapes when they do not agree. Never negative: a result that rounding
// takes below zero (two identical sets) is returned as 0.
double frechet_distance(const torch::Tensor& mean1, const torch::Tensor& covariance1, const torch::Tensor& mean2,
                        const torch::Tensor& covariance2);
double frechet_distance(const GaussianStatistics& first, const GaussianStatistics& second);

}  // namespace clx
