#include "runtime/fid.h"

#include <algorithm>
#include <string>

#include "runtime/error.h"
#include "runtime/text.h"

namespace clx {
namespace {

std::string shape_of(const torch::Tensor& tensor) { return sizes_text(tensor.sizes().vec()); }

torch::Tensor host_double(const torch::Tensor& tensor) {
  return tensor.detach().to(torch::TensorOptions().device(torch::kCPU).dtype(torch::kFloat64));
}

void check_square(const torch::Tensor& matrix, const std::string& what) {
  if (matrix.dim() != 2 || matrix.size(0) != matrix.size(1))
    throw Error(what + ": needs a square matrix, got " + shape_of(matrix));
}

}  // namespace

void StatisticsAccumulator::add(const torch::Tensor& features) {
  if (features.dim() != 2) throw Error("feature statistics: features must be [n, d], got " + shape_of(features));
  if (count_ > 0 && features.size(1) != mean_.size(0))
    throw Error("feature statistics: a batch of " + std::to_string(features.size(1)) + " features after batches of " +
                std::to_string(mean_.size(0)));
  const int64_t n = features.size(0);
  if (n == 0) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor x = features.detach().to(torch::kFloat64);
  const torch::Tensor batch_mean = x.mean(0);
  const torch::Tensor centred = x - batch_mean;
  const torch::Tensor batch_scatter = centred.transpose(0, 1).matmul(centred);
  if (count_ == 0) {
    mean_ = batch_mean;
    scatter_ = batch_scatter;
    count_ = n;
    return;
  }
  const double before = static_cast<double>(count_), added = static_cast<double>(n), total = before + added;
  const torch::Tensor delta = batch_mean - mean_;
  scatter_ = scatter_ + batch_scatter + torch::outer(delta, delta) * (before * added / total);
  mean_ = mean_ + delta * (added / total);
  count_ += n;
}

GaussianStatistics StatisticsAccumulator::statistics() const {
  if (count_ < 2)
    throw Error("feature statistics: " + std::to_string(count_) +
                " feature vector(s), a covariance needs at least 2");
  GaussianStatistics result;
  result.mean = host_double(mean_);
  result.covariance = host_double(scatter_) / static_cast<double>(count_ - 1);
  result.count = count_;
  return result;
}

GaussianStatistics feature_statistics(const torch::Tensor& features) {
  StatisticsAccumulator accumulator;
  accumulator.add(features);
  return accumulator.statistics();
}

torch::Tensor symmetric_sqrt(const torch::Tensor& matrix) {
  check_square(matrix, "symmetric_sqrt");
  torch::NoGradGuard no_grad;
  const auto [values, vectors] = torch::linalg::eigh(matrix.detach().to(torch::kFloat64), "L");
  // V diag(sqrt(lambda)) V^T, the diagonal applied as a column scaling of V.
  return (vectors * values.clamp_min(0.0).sqrt().unsqueeze(0)).matmul(vectors.transpose(0, 1));
}

double trace_sqrt_product(const torch::Tensor& covariance1, const torch::Tensor& covariance2) {
  check_square(covariance1, "trace_sqrt_product");
  check_square(covariance2, "trace_sqrt_product");
  torch::NoGradGuard no_grad;
  const torch::Tensor root1 = symmetric_sqrt(host_double(covariance1));
  torch::Tensor product = root1.matmul(host_double(covariance2)).matmul(root1);
  // Symmetric in exact arithmetic; averaged with its transpose so that the
  // rounding of the two products does not favour one triangle.
  product = (product + product.transpose(0, 1)) * 0.5;
  const torch::Tensor values = torch::linalg::eigvalsh(product, "L");
  return values.clamp_min(0.0).sqrt().sum().item<double>();
}

double frechet_distance(const torch::Tensor& mean1, const torch::Tensor& covariance1, const torch::Tensor& mean2,
                        const torch::Tensor& covariance2) {
  const int64_t d = mean1.dim() == 1 ? mean1.size(0) : -1;
  auto is_vector = [d](const torch::Tensor& t) { return t.dim() == 1 && t.size(0) == d; };
  auto is_matrix = [d](const torch::Tensor& t) { return t.dim() == 2 && t.size(0) == d && t.size(1) == d; };
  if (d < 1 || !is_vector(mean2) || !is_matrix(covariance1) || !is_matrix(covariance2))
    throw Error("frechet_distance: needs means [d] and covariances [d, d] of one d, got means " + shape_of(mean1) +
                " and " + shape_of(mean2) + ", covariances " + shape_of(covariance1) + " and " +
                shape_of(covariance2));
  torch::NoGradGuard no_grad;
  const torch::Tensor difference = host_double(mean1) - host_double(mean2);
  const double squared_distance = difference.dot(difference).item<double>();
  const double traces = host_double(covariance1).trace().item<double>() + host_double(covariance2).trace().item<double>();
  const double distance = squared_distance + traces - 2.0 * trace_sqrt_product(covariance1, covariance2);
  return std::max(distance, 0.0);
}

double frechet_distance(const GaussianStatistics& first, const GaussianStatistics& second) {
  return frechet_distance(first.mean, first.covariance, second.mean, second.covariance);
}

}  // namespace clx
