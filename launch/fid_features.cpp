// fid-features: makes, checks and times the feature classifier of FID
// (models/fid_features.h, DESIGN.md 4.4; docs/generation.md).
//
//   build/fid-features --output fid/fashion-mnist.h5          train on Fashion-MNIST (the default data)
//   build/fid-features --data.format cifar10 --data.root DIR --data.dataset cifar10 --output fid/cifar10.h5
//   build/fid-features --check fid/fashion-mnist.h5 [--expected-checksum HEX]
//   build/fid-features --bench fid/fashion-mnist.h5           time the FID of 10,000 images
//
// One process (no MPI); the same seed, data and thread count give the same
// file, checksum included.
#include <boost/program_options.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "models/fid_features.h"
#include "runtime/data/cifar10.h"
#include "runtime/data/idx.h"
#include "runtime/data/sampler.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/fid.h"
#include "runtime/text.h"

namespace po = boost::program_options;

namespace {

using clx::FidFeatureNet;
using clx::LabelledImages;

// A malformed command line (exit code 2, as train's).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string check_path, bench_path, expected_checksum;
  std::string format = "idx";  // idx | cifar10
  std::string root = "/usr/share/datasets/fashion-mnist";
  std::string dataset = "fashion-mnist";
  std::string output;
  std::string device = "auto";
  int64_t epochs = 3, batch_size = 64, train_samples = 0, test_samples = 0, threads = 0;
  int64_t bench_images = 10000, bench_epoch_images = 6000, bench_batch = FidFeatureNet::kDefaultBatch;
  uint64_t seed = 1;
  double lr = 1e-3;
  std::string effective;  // "name = value" lines of the options that made the network, recorded in the file
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string fixed(double value, int digits) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(digits) << value;
  return text.str();
}

po::options_description describe_options(Options& options) {
  po::options_description all("fid-features: the LeNet feature classifier of FID (docs/generation.md)");
  all.add_options()
      ("help", "print this help")
      ("check", po::value<std::string>(&options.check_path), "verify FILE's checksum and print what it records")
      ("expected-checksum", po::value<std::string>(&options.expected_checksum),
       "with --check or --bench: refuse a file whose checksum is not this one (16 hex digits)")
      ("bench", po::value<std::string>(&options.bench_path),
       "time the FID of --bench-images images with the classifier of FILE")
      ("bench-images", po::value<int64_t>(&options.bench_images)->default_value(options.bench_images),
       "--bench: images per FID")
      ("bench-batch", po::value<int64_t>(&options.bench_batch)->default_value(options.bench_batch),
       "--bench: images per feature-extraction batch")
      ("bench-epoch-images", po::value<int64_t>(&options.bench_epoch_images)->default_value(options.bench_epoch_images),
       "--bench: images of the reference training epoch (6000: one Fashion-MNIST class)")
      ("data.format", po::value<std::string>(&options.format)->default_value(options.format),
       "idx (MNIST-format train/t10k files) | cifar10 (CIFAR-10's binary batches)")
      ("data.root", po::value<std::string>(&options.root)->default_value(options.root), "folder of the dataset's files")
      ("data.dataset", po::value<std::string>(&options.dataset)->default_value(options.dataset),
       "the dataset's name, recorded in the file")
      ("output", po::value<std::string>(&options.output), "the feature file to write (default fid_<data.dataset>.h5)")
      ("epochs", po::value<int64_t>(&options.epochs)->default_value(options.epochs), "training epochs")
      ("batch-size", po::value<int64_t>(&options.batch_size)->default_value(options.batch_size), "training batch")
      ("lr", po::value<double>(&options.lr)->default_value(options.lr), "Adam's learning rate")
      ("train-samples", po::value<int64_t>(&options.train_samples)->default_value(0),
       "train on a seeded random subset of this many training images (0: all)")
      ("test-samples", po::value<int64_t>(&options.test_samples)->default_value(0),
       "measure test accuracy on the first this many test images (0: all)")
      ("seed", po::value<uint64_t>(&options.seed)->default_value(options.seed), "initial weights, subset and batch order")
      ("device", po::value<std::string>(&options.device)->default_value(options.device), "auto | cpu | cuda")
      ("threads", po::value<int64_t>(&options.threads)->default_value(0), "CPU threads (0: LibTorch's default)");
  return all;
}

void validate(Options& options) {
  if (!options.check_path.empty() && !options.bench_path.empty())
    throw UsageError("--check and --bench: give one of them");
  if (!options.expected_checksum.empty() && options.check_path.empty() && options.bench_path.empty())
    throw UsageError("--expected-checksum: only with --check or --bench (a new file gets a new checksum)");
  if (options.format != "idx" && options.format != "cifar10")
    throw UsageError("--data.format: '" + options.format + "' is not one of idx, cifar10");
  for (auto [name, value, low] : {std::tuple<const char*, int64_t, int64_t>{"epochs", options.epochs, 1},
                                  {"batch-size", options.batch_size, 1}, {"train-samples", options.train_samples, 0},
                                  {"test-samples", options.test_samples, 0}, {"threads", options.threads, 0},
                                  {"bench-images", options.bench_images, 2}, {"bench-batch", options.bench_batch, 1},
                                  {"bench-epoch-images", options.bench_epoch_images, 1}})
    if (value < low)
      throw UsageError(std::string("--") + name + ": must be at least " + std::to_string(low) + ", got " +
                       std::to_string(value));
  if (!(options.lr > 0)) throw UsageError("--lr: must be positive, got " + std::to_string(options.lr));
  if (options.output.empty()) options.output = "fid_" + options.dataset + ".h5";
  std::ostringstream effective;
  effective << "data.format = " << options.format << "\ndata.root = " << options.root
            << "\ndata.dataset = " << options.dataset << "\nepochs = " << options.epochs
            << "\nbatch-size = " << options.batch_size << "\nlr = " << options.lr
            << "\ntrain-samples = " << options.train_samples << "\ntest-samples = " << options.test_samples
            << "\nseed = " << options.seed << "\n";
  options.effective = effective.str();
}

// Returns false after printing the help.
bool parse_options(int argc, char** argv, Options& options) {
  const po::options_description all = describe_options(options);
  po::variables_map values;
  try {
    po::store(po::parse_command_line(argc, argv, all), values);
    po::notify(values);
  } catch (const po::error& error) {
    throw UsageError(error.what());
  }
  if (values.count("help")) {
    std::cout << all << "\n";
    return false;
  }
  validate(options);
  return true;
}

LabelledImages load_split(const Options& options, clx::OfficialSplit split) {
  const bool train = split == clx::OfficialSplit::Train;
  if (options.format == "cifar10") return clx::load_cifar10_split(options.root, split);
  return clx::load_mnist_split(options.root, train ? "train" : "t10k");
}

LabelledImages take_rows(const LabelledImages& data, const torch::Tensor& rows) {
  LabelledImages subset;
  subset.images = data.images.index_select(0, rows);
  subset.labels = data.labels.index_select(0, rows);
  subset.num_classes = data.num_classes;
  subset.description = data.description;
  return subset;
}

// The first `count` images of a seeded permutation (all of them when count is 0 or too large).
LabelledImages random_subset(const LabelledImages& data, int64_t count, uint64_t seed) {
  if (count <= 0 || count >= data.size()) return data;
  return take_rows(data, clx::seeded_permutation(data.size(), clx::mix_seed({seed, 0x5b5e7})).slice(0, 0, count));
}

double accuracy(FidFeatureNet& net, const LabelledImages& data) {
  return clx::generated_accuracy(net, data.images, data.labels);
}

// One epoch of Adam over `data` (on the network's device) in a seeded order;
// returns the mean loss and the accuracy of the batches as they were trained.
std::pair<double, double> train_epoch(FidFeatureNet& net, torch::optim::Adam& optimizer, const LabelledImages& data,
                                      int64_t batch_size, uint64_t order_seed) {
  net.model()->train();
  const torch::Tensor order = clx::seeded_permutation(data.size(), order_seed).to(data.images.device());
  // Summed on the device and read once at the end: no synchronisation per step.
  const auto on_device = torch::TensorOptions().device(data.images.device());
  torch::Tensor loss_sum = torch::zeros({}, on_device.dtype(torch::kFloat64));
  torch::Tensor correct = torch::zeros({}, on_device.dtype(torch::kInt64));
  for (int64_t start = 0; start < data.size(); start += batch_size) {
    const torch::Tensor rows = order.slice(0, start, std::min(data.size(), start + batch_size));
    const torch::Tensor labels = data.labels.index_select(0, rows);
    optimizer.zero_grad();
    const torch::Tensor logits = net.model()->forward(data.images.index_select(0, rows), 0);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
    loss.backward();
    optimizer.step();
    loss_sum += loss.detach().to(torch::kFloat64) * static_cast<double>(rows.size(0));
    correct += logits.argmax(1).eq(labels).sum();
  }
  const double n = static_cast<double>(std::max<int64_t>(1, data.size()));
  return {loss_sum.item<double>() / n, static_cast<double>(correct.item<int64_t>()) / n};
}

std::string threads_text() {
  const int threads = torch::get_num_threads();
  return std::to_string(threads) + (threads == 1 ? " thread" : " threads");
}

torch::Device choose_device(const Options& options) {
  const torch::Device device(clx::resolve_device_type(options.device));
  if (options.threads > 0) torch::set_num_threads(static_cast<int>(options.threads));
  return device;
}

int train_command(const Options& options) {
  // A feature file is what runs pin: a new one under the same name would
  // change their FID silently, so it is never overwritten.
  std::error_code ignored;
  if (std::filesystem::exists(std::filesystem::symlink_status(options.output, ignored)))
    throw clx::Error(options.output + " exists; fid-features does not overwrite a feature file (runs pin its "
                     "checksum): remove it first or choose another --output");
  // The folder first, before minutes of training: one that cannot be made is an error now, naming it.
  const std::filesystem::path folder = std::filesystem::path(options.output).parent_path();
  if (!folder.empty()) {
    std::error_code error;
    std::filesystem::create_directories(folder, error);
    if (error) throw clx::Error("--output: cannot create the folder " + folder.string() + ": " + error.message());
  }
  const torch::Device device = choose_device(options);
  const LabelledImages all_train = load_split(options, clx::OfficialSplit::Train);
  LabelledImages test = load_split(options, clx::OfficialSplit::Test);
  if (test.images.sizes().slice(1) != all_train.images.sizes().slice(1))
    throw clx::Error("data.root: the training and test images of " + options.root + " have different shapes");
  LabelledImages train = random_subset(all_train, options.train_samples, options.seed);
  if (options.test_samples > 0 && options.test_samples < test.size())
    test = take_rows(test, torch::arange(options.test_samples));
  const std::vector<int64_t> shape = train.image_shape();
  std::cout << "fid-features: " << options.dataset << " (" << options.root << "): " << train.size() << " training, "
            << test.size() << " test images of " << clx::sizes_text(shape) << ", " << train.num_classes
            << " classes; " << device.str() << ", " << threads_text() << std::endl;

  torch::manual_seed(options.seed);
  FidFeatureNet net(shape, train.num_classes);
  net.to(device);
  train.images = train.images.to(device);
  train.labels = train.labels.to(device);
  torch::optim::Adam optimizer(net.model()->parameters(), torch::optim::AdamOptions(options.lr));
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    const Clock::time_point start = Clock::now();
    const auto [loss, running_accuracy] =
        train_epoch(net, optimizer, train, options.batch_size, clx::mix_seed({options.seed, 0xe90c, static_cast<uint64_t>(epoch)}));
    std::cout << "epoch " << epoch + 1 << "/" << options.epochs << ": loss " << fixed(loss, 4)
              << ", training accuracy " << fixed(running_accuracy, 4) << " (during the epoch), "
              << fixed(seconds_since(start), 1) << " s" << std::endl;
  }

  net.info.dataset = options.dataset;
  net.info.train_accuracy = accuracy(net, train);
  net.info.test_accuracy = accuracy(net, test);
  net.info.train_samples = train.size();
  net.info.test_samples = test.size();
  net.info.epochs = options.epochs;
  net.info.seed = static_cast<int64_t>(options.seed);
  // What was used, not what was asked ("auto", 0): results depend on both.
  net.info.options = options.effective + "device = " + device.str() + "\nthreads = " +
                     std::to_string(torch::get_num_threads()) + "\n";
  std::cout << "training accuracy " << fixed(net.info.train_accuracy, 4) << " (" << train.size()
            << " images), test accuracy " << fixed(net.info.test_accuracy, 4) << " (" << test.size() << " images)"
            << std::endl;
  net.to(torch::kCPU);
  clx::save_fid_features(options.output, net);
  std::cout << "wrote " << options.output << "\nchecksum " << net.info.checksum << std::endl;
  return 0;
}

int check_command(const Options& options) {
  const FidFeatureNet net = clx::load_fid_features(options.check_path, options.expected_checksum);
  const clx::FidFeatureInfo& info = net.info;
  std::cout << options.check_path << ": checksum " << info.checksum << " verified"
            << (options.expected_checksum.empty() ? "" : " (the one expected)") << "\n"
            << "  dataset " << info.dataset << ", images " << clx::sizes_text(info.image_shape) << ", "
            << info.num_classes << " classes, " << FidFeatureNet::kFeatureSize << " features\n"
            << "  training accuracy " << fixed(info.train_accuracy, 4) << " (" << info.train_samples << " images, "
            << info.epochs << (info.epochs == 1 ? " epoch" : " epochs") << ", seed " << info.seed << "), test accuracy " << fixed(info.test_accuracy, 4)
            << " (" << info.test_samples << " images)\n"
            << "  made with:\n";
  std::istringstream lines(info.options);
  for (std::string line; std::getline(lines, line);) std::cout << "    " << line << "\n";
  std::cout << std::flush;
  return 0;
}

// `count` images of `data`, cycling through it when it holds fewer.
torch::Tensor cycled_images(const LabelledImages& data, int64_t count) {
  return data.images.index_select(0, torch::arange(count) % data.size());
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int bench_command(const Options& options) {
  const torch::Device device = choose_device(options);
  FidFeatureNet net = clx::load_fid_features(options.bench_path, options.expected_checksum);
  net.to(device);
  const LabelledImages train = load_split(options, clx::OfficialSplit::Train);
  const LabelledImages test = load_split(options, clx::OfficialSplit::Test);
  // The training images stand in for generated ones: the same kind of
  // images, so the FID is small but the work is a generated set's.
  const torch::Tensor real = cycled_images(test, options.bench_images).to(device);
  const torch::Tensor generated = cycled_images(train, options.bench_images).to(device);
  auto synchronize = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  const clx::GaussianStatistics real_statistics = net.statistics(real, options.bench_batch);
  std::vector<double> feature_seconds, distance_seconds, totals;
  double fid = 0.0;
  for (int repeat = 0; repeat < 3; ++repeat) {
    synchronize();
    const Clock::time_point start = Clock::now();
    const clx::GaussianStatistics statistics = net.statistics(generated, options.bench_batch);
    synchronize();
    const double features = seconds_since(start);
    const Clock::time_point distance_start = Clock::now();
    fid = clx::frechet_distance(statistics, real_statistics);
    const double distance = seconds_since(distance_start);
    feature_seconds.push_back(features);
    distance_seconds.push_back(distance);
    totals.push_back(features + distance);
  }
  // Reference: one training epoch of a fresh copy of the classifier on
  // --bench-epoch-images images (forward, backward, Adam step, batch 64).
  torch::manual_seed(options.seed);
  FidFeatureNet trainee(net.info.image_shape, net.info.num_classes);
  trainee.to(device);
  LabelledImages epoch_data = take_rows(train, torch::arange(options.bench_epoch_images) % train.size());
  epoch_data.images = epoch_data.images.to(device);
  epoch_data.labels = epoch_data.labels.to(device);
  torch::optim::Adam optimizer(trainee.model()->parameters(), torch::optim::AdamOptions(options.lr));
  synchronize();
  const Clock::time_point epoch_start = Clock::now();
  train_epoch(trainee, optimizer, epoch_data, 64, options.seed);
  synchronize();
  const double epoch_seconds = seconds_since(epoch_start);
  const double total = median(totals);
  std::cout << "fid-features --bench: " << device.str() << ", " << threads_text() << ", "
            << clx::sizes_text(net.info.image_shape) << " images\n"
            << "FID of " << options.bench_images << " images against precomputed real statistics: " << fixed(total, 3)
            << " s (features and statistics " << fixed(median(feature_seconds), 3) << " s, distance "
            << fixed(median(distance_seconds), 3) << " s; median of 3), FID " << fixed(fid, 3) << "\n"
            << "reference: one training epoch of the same LeNet on " << options.bench_epoch_images
            << " images (batch 64, Adam): " << fixed(epoch_seconds, 3) << " s; FID / epoch = "
            << fixed(total / epoch_seconds, 3) << std::endl;
  return 0;
}

int run(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options)) return 0;
  if (!options.check_path.empty()) return check_command(options);
  if (!options.bench_path.empty()) return bench_command(options);
  return train_command(options);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& error) {
    std::cerr << "fid-features: error: " << error.what() << " (fid-features --help lists the options)" << std::endl;
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "fid-features: error: " << error.what() << std::endl;
    return 1;
  }
}
