#pragma once
// The FID feature classifier of continual image generation (DESIGN.md 4.4).
//
// No Inception weights exist offline, so FID here is computed on the 256
// features of a LeNet classifier that the project trains on the same
// dataset's training data (`fid-features`, launch/fid_features.cpp), the
// practice of Lesort et al., "Generative models from the perspective of
// continual learning" (IJCNN 2019). Such an FID compares runs that use the
// same feature file only; it is not comparable with Inception-FID numbers.
//
// The network is the paper's appendix-B LeNet (models/conv_nets.h, make_lenet)
// with one 10-way head:
//   conv5x5 32, maxpool 2 | conv5x5 64, maxpool 2 | fc 512, fc 256 | head
// and the features are the 256 activations after the last fc layer's ReLU
// (the input of the head). 1x28x28 (MNIST family) and 3x32x32 (CIFAR-10,
// SVHN) images, and any other CxHxW of at least 4x4 pixels.
//
// The feature file is an HDF5 file in the checkpoint layout
// (runtime/checkpoint.h, docs/checkpoint_format.md: "FID feature files"),
// written and read by the checkpoint functions, so it is published
// atomically and each tensor carries its fingerprint. On top of those it
// stores a checksum of the whole network: XXH64 (runtime/fingerprint.h) of
// every parameter and buffer, name then tensor, in the module's order. A run
// refuses a file whose parameters do not give the stored checksum, and, when
// it pins one (`expected_checksum`), a file of another checksum: two FID
// values are comparable only when this checksum is the same.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/multi_head_model.h"
#include "runtime/error.h"
#include "runtime/fid.h"

namespace clx {

// A feature file that is missing, damaged, altered, or not the one expected.
// The message names the file (and, for a checksum, both checksums).
class FidFeatureError : public Error {
 public:
  using Error::Error;
};

// What a feature file records besides the parameters.
struct FidFeatureInfo {
  std::string dataset;               // e.g. "fashion-mnist"
  std::vector<int64_t> image_shape;  // {C, H, W}
  int64_t num_classes = 10;
  double train_accuracy = 0.0;  // of the trained classifier on its training data
  double test_accuracy = 0.0;   // on the dataset's test split
  int64_t train_samples = 0, test_samples = 0, epochs = 0, seed = 0;
  std::string checksum;  // 16 hex digits; set by save_fid_features and load_fid_features
  std::string options;   // the fid-features options that made the file ("key = value" lines)
  std::string path;      // the file it was loaded from or saved to (for messages); empty if neither
};

class FidFeatureNet {
 public:
  static constexpr int64_t kFeatureSize = 256;
  // Feature extraction batch. Measured (fid-features --bench, 2000 Fashion-
  // MNIST images, 1 thread, medians of 3, two rounds): 1.7 s at 128 images a
  // batch, 2.2-2.6 s at 256, 6.1-6.7 s at 500 (conv1's output, 32x28x28
  // floats an image, then far exceeds the caches), 4.0-5.1 s at 64.
  static constexpr int64_t kDefaultBatch = 128;

  // A fresh network (initial weights from LibTorch's default generator: seed it first).
  FidFeatureNet(const std::vector<int64_t>& image_shape, int64_t num_classes);

  MultiHeadModel& model() { return model_; }
  const MultiHeadModel& model() const { return model_; }
  torch::Device device() const;
  void to(torch::Device device);

  // The 256 features [n, 256] (float32, on the network's device) of images
  // [n, C, H, W] in [0, 1] (any device: each batch is moved to the network's),
  // in eval mode without gradients, `batch_size` images at a time. Throws
  // FidFeatureError naming the file when the images are not [n, C, H, W] of
  // the network's shape.
  torch::Tensor features(const torch::Tensor& images, int64_t batch_size = kDefaultBatch);
  // Predicted classes int64 [n] on the network's device.
  torch::Tensor predict(const torch::Tensor& images, int64_t batch_size = kDefaultBatch);
  // Mean and covariance of the features of `images` (at least 2), accumulated
  // batch by batch: only one batch's features exist at a time.
  GaussianStatistics statistics(const torch::Tensor& images, int64_t batch_size = kDefaultBatch);

  // XXH64 of the parameters and buffers, as the file stores it.
  std::string checksum() const;

  FidFeatureInfo info;

 private:
  void check_images(const torch::Tensor& images) const;
  // Calls `visit` with each batch of at most `batch_size` images, in order,
  // moved to the network's device as float32, with the network in eval mode
  // and no gradients (the one evaluation loop features, predict and statistics share).
  void for_each_batch(const torch::Tensor& images, int64_t batch_size,
                      const std::function<void(const torch::Tensor& batch)>& visit);
  MultiHeadModel model_{nullptr};
};

// Writes `net` to `path` (atomically, as a checkpoint is written) and sets
// net.info.checksum and net.info.path. Throws FidFeatureError naming the file.
void save_fid_features(const std::string& path, FidFeatureNet& net);

// Reads a feature file onto the CPU and verifies it: the checkpoint layer's
// checks (each tensor's fingerprint, the layout), then the network's checksum
// against the stored one, then, when `expected_checksum` is not empty,
// against that. Throws FidFeatureError naming the file: a missing file (with
// the fid-features command that makes one), a damaged or altered one (with
// both checksums), another network than expected (with both checksums).
FidFeatureNet load_fid_features(const std::string& path, const std::string& expected_checksum = "");

// The statistics of each class's images (element c: images of class c, at least 2 each).
std::vector<GaussianStatistics> class_statistics(FidFeatureNet& net, const std::vector<torch::Tensor>& images_by_class);

// FID between generated and real images of each class: element c is the
// Fréchet distance between the features of generated_by_class[c] and of
// real_by_class[c] (the same number of classes; at least 2 images each).
std::vector<double> fid_per_class(FidFeatureNet& net, const std::vector<torch::Tensor>& generated_by_class,
                                  const std::vector<torch::Tensor>& real_by_class);
// The same against real statistics computed once (class_statistics), as a
// run computing FID after every task does.
std::vector<double> fid_per_class(FidFeatureNet& net, const std::vector<torch::Tensor>& generated_by_class,
                                  const std::vector<GaussianStatistics>& real_statistics);

// "Generated accuracy": the fraction of `images` that the feature classifier
// assigns to the class they were generated for (`labels`: int64 [n], in the
// classifier's classes). 0 for no images.
double generated_accuracy(FidFeatureNet& net, const torch::Tensor& images, const torch::Tensor& labels);

}  // namespace clx
