#pragma once
// What the generation tests share: a tiny class-incremental stream of 28x28
// images (2 tasks of one class), a small VAE for it, and an FID feature file
// (an untrained, seeded LeNet: FID needs fixed features, not good ones).
#include <torch/torch.h>

#include <string>

#include "models/fid_features.h"
#include "models/gan_net.h"
#include "models/vae_net.h"
#include "runtime/data/task_stream.h"
#include "tests/trainer_test_support.h"

namespace clx::testing_support {

// n images of 1x28x28: class 0 bright in the top half, class 1 in the bottom
// half, plus noise; labels alternate 0, 1.
inline std::shared_ptr<LabelledImages> two_class_images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto data = std::make_shared<LabelledImages>();
  data->labels = torch::arange(n, torch::kInt64).remainder(2);
  data->images = torch::rand({n, 1, 28, 28}) * 0.3;
  for (int64_t k = 0; k < n; ++k) data->images[k].narrow(1, data->labels[k].item<int64_t>() * 14, 14).add_(0.6);
  data->num_classes = 2;
  return data;
}

// Two tasks of one class each.
inline TaskStream two_class_task_stream(int64_t train_size, int64_t test_size) {
  return split_stream(two_class_images(train_size, 21), two_class_images(test_size, 22), 2, 1);
}

inline VaeNet small_vae(int64_t tasks, uint64_t seed = 7) {
  torch::manual_seed(seed);
  VaeConfig config;
  config.hidden = 16;
  config.latent = 4;
  config.tasks = tasks;
  config.seed = seed;
  return VaeNet(config);
}

// A narrow GAN generator for 1x28x28 images with `classes` class slots, as
// the model factory builds it (no BatchNorm).
inline GanNet small_gan(int64_t classes, uint64_t seed = 7) {
  torch::manual_seed(seed);
  GanConfig config;
  config.noise_dim = 8;
  config.width = 0.125;
  config.classes = classes;
  config.seed = seed;
  config.batch_norm = false;
  return GanNet(config);
}

// Writes a seeded, untrained feature classifier for 1x28x28 images to `path`.
inline FidFeatureNet write_feature_file(const std::string& path) {
  torch::manual_seed(3);
  FidFeatureNet net({1, 28, 28}, 2);
  net.info.dataset = "two-class test images";
  save_fid_features(path, net);
  return net;
}

}  // namespace clx::testing_support
