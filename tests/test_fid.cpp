// Unit tests of FID (DESIGN.md 4.4): the Fréchet distance against closed
// forms (runtime/fid.h), the symmetric square root on known matrices, the
// batched feature statistics, and the feature classifier's file: checksum
// round trip, refusal of altered files, pinned checksums, missing files
// (models/fid_features.h).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <torch/torch.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "models/fid_features.h"
#include "runtime/checkpoint.h"
#include "runtime/fid.h"
#include "runtime/file_io.h"
#include "runtime/fingerprint.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"

using clx::testing_support::expect_error;

namespace {

namespace fs = std::filesystem;

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

// ---------------------------------------------------------------- feature file

class FidFeatureFileTest : public clx::testing_support::TempDirTest {
 protected:
  FidFeatureFileTest() : TempDirTest("clx_test_fid_") {}

  // A small untrained classifier for 1x28x28 images, saved to `name`.
  static clx::FidFeatureNet make_net() {
    torch::manual_seed(21);
    clx::FidFeatureNet net({1, 28, 28}, 10);
    net.info.dataset = "fashion-mnist";
    net.info.train_accuracy = 0.91;
    net.info.test_accuracy = 0.89;
    net.info.train_samples = 60000;
    net.info.test_samples = 10000;
    net.info.epochs = 3;
    net.info.seed = 1;
    net.info.options = "epochs = 3\nseed = 1\n";
    return net;
  }
  std::string saved(clx::FidFeatureNet& net, const std::string& name = "features.h5") const {
    const std::string file = path(name).string();
    clx::save_fid_features(file, net);
    return file;
  }
};

// Adds `delta` to element 0 of /model/<name> with HDF5 itself; with
// `refingerprint`, also rewrites the dataset's fingerprint attribute so that
// only the whole network's checksum can notice. Returns the new tensor.
torch::Tensor alter_parameter(const std::string& path, const std::string& name, float delta, bool refingerprint) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  EXPECT_GE(file, 0) << path;
  const hid_t set = H5Dopen2(file, ("/model/" + name).c_str(), H5P_DEFAULT);
  EXPECT_GE(set, 0) << name;
  const hid_t space = H5Dget_space(set);
  std::vector<hsize_t> dims(static_cast<size_t>(H5Sget_simple_extent_ndims(space)));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  H5Sclose(space);
  torch::Tensor values = torch::empty(std::vector<int64_t>(dims.begin(), dims.end()), torch::kFloat32);
  EXPECT_GE(H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data_ptr()), 0);
  values.view(-1)[0] += delta;
  EXPECT_GE(H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data_ptr()), 0);
  if (refingerprint) {
    const std::string fingerprint = clx::Fingerprint().add(values).hex();
    const hid_t attribute = H5Aopen(set, "fingerprint", H5P_DEFAULT);
    const hid_t type = H5Aget_type(attribute);
    EXPECT_EQ(H5Tget_size(type), fingerprint.size());
    EXPECT_GE(H5Awrite(attribute, type, fingerprint.data()), 0);
    H5Tclose(type);
    H5Aclose(attribute);
  }
  H5Dclose(set);
  EXPECT_GE(H5Fclose(file), 0);
  return values;
}

TEST_F(FidFeatureFileTest, RoundTripsParametersMetadataAndChecksum) {
  clx::FidFeatureNet net = make_net();
  const std::string file = saved(net);
  EXPECT_EQ(net.info.checksum, net.checksum());
  EXPECT_EQ(net.info.checksum.size(), 16u);
  EXPECT_EQ(net.info.path, file);

  clx::FidFeatureNet loaded = clx::load_fid_features(file);
  EXPECT_EQ(loaded.checksum(), net.info.checksum);
  EXPECT_EQ(loaded.info.checksum, net.info.checksum);
  EXPECT_EQ(loaded.info.dataset, "fashion-mnist");
  EXPECT_EQ(loaded.info.image_shape, (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(loaded.info.num_classes, 10);
  EXPECT_DOUBLE_EQ(loaded.info.train_accuracy, 0.91);
  EXPECT_DOUBLE_EQ(loaded.info.test_accuracy, 0.89);
  EXPECT_EQ(loaded.info.train_samples, 60000);
  EXPECT_EQ(loaded.info.epochs, 3);
  EXPECT_EQ(loaded.info.options, "epochs = 3\nseed = 1\n");
  torch::manual_seed(4);
  const torch::Tensor images = torch::rand({7, 1, 28, 28});
  const torch::Tensor features = loaded.features(images);
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{7, clx::FidFeatureNet::kFeatureSize}));
  EXPECT_TRUE(torch::equal(features, net.features(images)));
  // Pinned: the file's own checksum (any case) is accepted.
  EXPECT_NO_THROW(clx::load_fid_features(file, net.info.checksum));
}

TEST_F(FidFeatureFileTest, RefusesAnAlteredParameterNamingTheFile) {
  clx::FidFeatureNet net = make_net();
  const std::string file = saved(net);
  // One changed value: the tensor's own fingerprint no longer matches.
  alter_parameter(file, "trunk.0.bias", 0.5f, /*refingerprint=*/false);
  expect_error<clx::FidFeatureError>([&] { clx::load_fid_features(file); },
                                     {"FID feature file " + file, "/model/trunk.0.bias", "fingerprint mismatch"});
}

TEST_F(FidFeatureFileTest, RefusesParametersThatDoNotGiveTheStoredChecksum) {
  clx::FidFeatureNet net = make_net();
  const std::string file = saved(net);
  // Changed with its dataset fingerprint rewritten to match: only the
  // network's checksum tells. The message gives both checksums.
  const torch::Tensor altered = alter_parameter(file, "heads.0.weight", 0.25f, /*refingerprint=*/true);
  {
    torch::NoGradGuard no_grad;
    net.model()->named_parameters()["heads.0.weight"].copy_(altered);
  }
  const std::string altered_checksum = net.checksum();
  ASSERT_NE(altered_checksum, net.info.checksum);
  expect_error<clx::FidFeatureError>([&] { clx::load_fid_features(file); },
                                     {"FID feature file " + file, "checksum mismatch",
                                      "the file records " + net.info.checksum, "its parameters give " + altered_checksum});
}

TEST_F(FidFeatureFileTest, RefusesAnotherChecksumThanThePinnedOne) {
  clx::FidFeatureNet net = make_net();
  const std::string file = saved(net);
  std::string upper = net.info.checksum;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_NO_THROW(clx::load_fid_features(file, upper));
  expect_error<clx::FidFeatureError>([&] { clx::load_fid_features(file, "0123456789abcdef"); },
                                     {"FID feature file " + file, "checksum " + net.info.checksum,
                                      "the run expects 0123456789abcdef", "not comparable"});
}

TEST_F(FidFeatureFileTest, AMissingFileNamesTheFileAndHowToMakeOne) {
  const std::string file = path("nowhere.h5").string();
  expect_error<clx::FidFeatureError>([&] { clx::load_fid_features(file); },
                                     {"FID feature file " + file + " does not exist", "fid-features", "--output " + file});
}

TEST_F(FidFeatureFileTest, RefusesATrainingCheckpointAndANonHdf5File) {
  clx::CheckpointState state;
  state.phase = "training";
  const std::string checkpoint = path("ckpt.h5").string();
  clx::write_checkpoint(checkpoint, state);
  expect_error<clx::FidFeatureError>([&] { clx::load_fid_features(checkpoint); },
                                     {"FID feature file " + checkpoint, "not an FID feature file", "phase 'training'"});
  const std::string text = path("notes.h5").string();
  clx::write_file_atomically(text, "not hdf5\n");
  expect_error<clx::FidFeatureError>([&] { clx::load_fid_features(text); },
                                     {"FID feature file " + text, "not an HDF5 file"});
}

TEST_F(FidFeatureFileTest, FidOfASetWithItselfIsZeroAndGeneratedAccuracyCountsMatches) {
  clx::FidFeatureNet net = make_net();
  torch::manual_seed(8);
  const std::vector<torch::Tensor> real = {torch::rand({40, 1, 28, 28}), torch::rand({30, 1, 28, 28}) * 0.5};
  const std::vector<double> same = clx::fid_per_class(net, real, real);
  ASSERT_EQ(same.size(), 2u);
  for (double fid : same) EXPECT_NEAR(fid, 0.0, 1e-6);
  // Other images give a positive distance, the same with precomputed real statistics.
  const std::vector<torch::Tensor> generated = {torch::rand({40, 1, 28, 28}) * 0.2, torch::rand({30, 1, 28, 28})};
  const std::vector<double> apart = clx::fid_per_class(net, generated, real);
  const std::vector<double> again = clx::fid_per_class(net, generated, clx::class_statistics(net, real));
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_GT(apart[c], 1e-6);
    EXPECT_DOUBLE_EQ(apart[c], again[c]);
  }

  const torch::Tensor predicted = net.predict(real[0]);
  EXPECT_DOUBLE_EQ(clx::generated_accuracy(net, real[0], predicted), 1.0);
  EXPECT_DOUBLE_EQ(clx::generated_accuracy(net, real[0], (predicted + 1) % 10), 0.0);
  torch::Tensor half = predicted.clone();
  half.slice(0, 0, 20).add_(1).remainder_(10);
  EXPECT_DOUBLE_EQ(clx::generated_accuracy(net, real[0], half), 0.5);
}

TEST_F(FidFeatureFileTest, BatchedFeaturesPredictionsAndStatisticsEqualOnePass) {
  // 10 images in batches of 3 (the last batch holds one): the same features,
  // classes and statistics as one pass over all 10 through the model itself.
  clx::FidFeatureNet net = make_net();
  torch::manual_seed(9);
  const torch::Tensor images = torch::rand({10, 1, 28, 28});
  torch::Tensor whole_features, whole_classes;
  {
    torch::NoGradGuard no_grad;
    net.model()->eval();
    whole_features = net.model()->features(images);
    whole_classes = net.model()->logits(images, 0).argmax(1);
  }
  EXPECT_TRUE(torch::allclose(net.features(images, 3), whole_features, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(net.predict(images, 3), whole_classes));
  const clx::GaussianStatistics batched = net.statistics(images, 3), whole = clx::feature_statistics(whole_features);
  EXPECT_TRUE(torch::allclose(batched.mean, whole.mean, 1e-9, 1e-6));
  EXPECT_TRUE(torch::allclose(batched.covariance, whole.covariance, 1e-9, 1e-6));
  EXPECT_EQ(net.features(images.slice(0, 0, 0)).sizes().vec(), (std::vector<int64_t>{0, 256}));
  EXPECT_EQ(net.predict(images.slice(0, 0, 0)).numel(), 0);
}

TEST_F(FidFeatureFileTest, RefusesImagesOfAnotherShapeOrTooFewPerClass) {
  clx::FidFeatureNet net = make_net();
  expect_error<clx::FidFeatureError>([&] { net.features(torch::zeros({2, 3, 32, 32})); },
                                     {"images of shape 2x3x32x32", "takes n x 1x28x28", "fashion-mnist"});
  const std::vector<torch::Tensor> one = {torch::zeros({1, 1, 28, 28})}, five = {torch::zeros({5, 1, 28, 28})};
  expect_error([&] { clx::fid_per_class(net, one, five); }, {"class 0", "1 image(s)", "at least 2"});
  expect_error([&] { clx::fid_per_class(net, five, std::vector<torch::Tensor>{}); },
               {"1 classes of generated images, 0 of real ones"});
}

TEST(FidFeatureNet, TakesRgbImagesAndGivesTheFeaturesBeforeTheHead) {
  torch::manual_seed(2);
  clx::FidFeatureNet net({3, 32, 32}, 10);
  const torch::Tensor images = torch::rand({5, 3, 32, 32});
  const torch::Tensor features = net.features(images, /*batch_size=*/2);
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{5, 256}));
  EXPECT_GE(features.min().item<float>(), 0.0f);  // after the last ReLU
  torch::NoGradGuard no_grad;
  net.model()->eval();
  EXPECT_TRUE(torch::allclose(net.model()->head_forward(features, 0), net.model()->logits(images, 0), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(features, net.model()->features(images), 1e-5, 1e-6));
}

}  // namespace
