#pragma once
// Shared by the algorithm tests (single process and MPI): a tiny synthetic
// task stream, a tiny MLP, and reference computations written independently
// of the library (double precision, a hand-written forward pass, autograd).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "models/multi_head_model.h"
#include "runtime/communicator.h"
#include "runtime/continual_net.h"
#include "runtime/logging.h"
#include "runtime/data/task_stream.h"
#include "runtime/strategy.h"
#include "tests/trainer_test_support.h"

namespace clx::testing_support {

// n images of 1x2x2 pixels over `classes` balanced classes; class c brightens pixel c % 4.
inline std::shared_ptr<LabelledImages> tiny_images(int64_t n, int64_t classes, uint64_t seed) {
  torch::manual_seed(seed);
  auto data = std::make_shared<LabelledImages>();
  data->labels = torch::arange(n, torch::kInt64).remainder(classes);
  data->images = torch::rand({n, 1, 2, 2}) * 0.6;
  data->images.view({n, 4}).scatter_add_(1, data->labels.remainder(4).view({n, 1}), 0.4 * torch::ones({n, 1}));
  data->num_classes = classes;
  return data;
}

// A split stream of `tasks` tasks of `classes_per_task` classes,
// `train_per_task` training samples each, 6 test samples per task, on images
// from make_images(n, classes, seed).
template <typename MakeImages>
TaskStream tiny_split_stream(const std::string& dataset, int64_t tasks, int64_t classes_per_task, int64_t train_per_task,
                             uint64_t seed, MakeImages&& make_images) {
  StreamConfig config;
  config.kind = clx::StreamKind::Split;
  config.dataset = dataset;
  config.num_tasks = tasks;
  config.classes_per_task = classes_per_task;
  config.train_samples_per_task = train_per_task;
  config.test_samples_per_task = 6;
  config.seed = seed;
  const int64_t classes = tasks * classes_per_task;
  return build_task_stream(config, make_images(classes * 12, classes, seed + 100),
                           make_images(classes * 6, classes, seed + 200));
}

// On 1x2x2 images (tiny_images).
inline TaskStream tiny_stream(int64_t tasks, int64_t classes_per_task, int64_t train_per_task, uint64_t seed = 3) {
  return tiny_split_stream("tiny", tasks, classes_per_task, train_per_task, seed, tiny_images);
}

// n images of channels x side x side over `classes` balanced classes; class c
// brightens a c-dependent 2x2 patch, so convolutional nets can learn them.
inline std::shared_ptr<LabelledImages> tiny_square_images(int64_t n, int64_t classes, int64_t channels, int64_t side,
                                                          uint64_t seed) {
  torch::manual_seed(seed);
  auto data = std::make_shared<LabelledImages>();
  data->labels = torch::arange(n, torch::kInt64).remainder(classes);
  data->images = torch::rand({n, channels, side, side}) * 0.6;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = data->labels[i].item<int64_t>(), row = 2 * (c % (side / 2)), column = 2 * ((c / 2) % (side / 2));
    data->images[i].narrow(1, row, 2).narrow(2, column, 2).add_(0.4);
  }
  data->num_classes = classes;
  return data;
}

// Like tiny_stream, on channels x side x side images (tiny_square_images).
inline TaskStream tiny_image_stream(int64_t tasks, int64_t classes_per_task, int64_t train_per_task, int64_t channels,
                                    int64_t side, uint64_t seed = 3) {
  return tiny_split_stream("tiny images", tasks, classes_per_task, train_per_task, seed,
                           [&](int64_t n, int64_t classes, uint64_t images_seed) {
                             return tiny_square_images(n, classes, channels, side, images_seed);
                           });
}

// Initialised on the CPU (the same weights on every device), then moved to `device`.
inline MultiHeadModel tiny_mlp(const TaskStream& stream, std::vector<int64_t> hidden, uint64_t seed,
                               double dropout = 0.0, torch::Device device = torch::kCPU) {
  torch::manual_seed(seed);
  MlpConfig mlp;
  mlp.hidden = std::move(hidden);
  mlp.dropout = dropout;
  std::vector<int64_t> heads;
  for (const Task& task : stream.tasks) heads.push_back(task.head_size);
  MultiHeadModel model = make_mlp(stream.input_shape, mlp, heads);
  model->to(device);
  return model;
}

// A stage context built by hand, as the trainer would build it (on the
// model's device); train_epochs does nothing.
inline StageContext hand_context(MultiHeadModel& model, Communicator& comm, const TaskStream& stream, Logger& log,
                                 int stage, std::vector<int> tasks, int64_t batch_size, uint64_t seed = 7) {
  StageContext ctx{*model, comm, stream, log, HeadLayout::Multi, stage, std::move(tasks)};
  ctx.batch_size = batch_size;
  ctx.seed = seed;
  ctx.device = model->shared_parameters().at(0).device();
  for (auto& p : model->shared_parameters()) ctx.trainable.push_back(p);
  ctx.train_epochs = [](int64_t, const std::string&) {};
  return ctx;
}

// A double-precision CPU copy of an MLP's trunk (weight, bias per layer, ReLU
// after each) and of one head, as fresh autograd leaves; the forward pass is
// written here, not borrowed from the model.
struct ReferenceNet {
  std::vector<torch::Tensor> trunk;  // W1, b1, W2, b2, ... (model's shared-parameter order)
  torch::Tensor head_weight, head_bias;

  ReferenceNet(const ContinualNet& model, int64_t head) {
    for (const auto& item : model.named_shared_parameters())
      trunk.push_back(item.second.detach().to(torch::kCPU, torch::kFloat64).clone().requires_grad_(true));
    const auto head_parameters = model.head_parameters(head);
    head_weight = head_parameters.at(0).detach().to(torch::kCPU, torch::kFloat64).clone();
    head_bias = head_parameters.at(1).detach().to(torch::kCPU, torch::kFloat64).clone();
  }

  torch::Tensor logits(const torch::Tensor& images) const {
    torch::Tensor h = images.to(torch::kFloat64).reshape({images.size(0), -1});
    for (size_t k = 0; k + 1 < trunk.size(); k += 2) h = torch::relu(h.matmul(trunk[k].t()) + trunk[k + 1]);
    return h.matmul(head_weight.t()) + head_bias;
  }

  std::vector<torch::Tensor> grad(const torch::Tensor& objective) const {
    return torch::autograd::grad({objective}, trunk, {}, false, false, /*allow_unused=*/true);
  }
};

inline std::vector<torch::Tensor> zeros_like_all(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> zeros;
  for (const auto& t : tensors) zeros.push_back(torch::zeros_like(t).detach());
  return zeros;
}

// How reference_entropy_taylor forms omega_B (DESIGN.md 4.2).
struct EntropyTaylorReference {
  int64_t batch = 100;
  double sign = 1.0;
  bool summed = true;   // H_B = sum over the batch (false: mean)
  bool fisher = false;  // h = mean_i (dH_i/dtheta)^2 over the batch (false: h = g^2)
  bool clamp = true;    // false: without max(0, .), to see which elements the clamp hits
};

// Eq. 7 by hand: for each batch B (stored order), H_B = sum or mean over its
// samples of -sum_k q log q, g = dH_B/dtheta, omega_B = max(0, s g theta + h theta^2 / 2);
// the mean over batches.
inline std::vector<torch::Tensor> reference_entropy_taylor(const ContinualNet& model, const TaskData& data,
                                                          int64_t head, const EntropyTaylorReference& how) {
  ReferenceNet net(model, head);
  auto entropies = [&](const torch::Tensor& positions) {
    const torch::Tensor log_q = torch::log_softmax(net.logits(data.inputs(positions)), 1);
    return -(log_q.exp() * log_q).sum(1);
  };
  std::vector<torch::Tensor> total = zeros_like_all(net.trunk);
  int64_t batches = 0;
  for (int64_t start = 0; start < data.size(); start += how.batch) {
    const int64_t n = std::min(how.batch, data.size() - start);
    const torch::Tensor h_b = entropies(torch::arange(start, start + n, torch::kInt64));
    const auto g = net.grad(how.summed ? h_b.sum() : h_b.mean());
    std::vector<torch::Tensor> h = zeros_like_all(net.trunk);
    for (int64_t i = start; i < start + n; ++i) {
      if (!how.fisher) break;
      const auto g_i = net.grad(entropies(torch::tensor({i}, torch::kInt64)).sum());
      for (size_t k = 0; k < g_i.size(); ++k) h[k] += g_i[k].pow(2) / static_cast<double>(n);
    }
    for (size_t k = 0; k < g.size(); ++k) {
      const torch::Tensor theta = net.trunk[k].detach();
      const torch::Tensor curvature = how.fisher ? h[k] * theta * theta : (g[k] * theta).pow(2);
      const torch::Tensor raw = how.sign * g[k] * theta + 0.5 * curvature;
      total[k] += how.clamp ? raw.clamp_min(0.0) : raw;
    }
    ++batches;
  }
  for (auto& t : total) t /= static_cast<double>(batches);
  return total;
}

// MAS by hand, batch form: mean over batches of |d mean_i ||f(x_i)||^2 / dtheta|.
inline std::vector<torch::Tensor> reference_mas(const ContinualNet& model, const TaskData& data, int64_t head,
                                               int64_t batch) {
  ReferenceNet net(model, head);
  std::vector<torch::Tensor> total = zeros_like_all(net.trunk);
  int64_t batches = 0;
  for (int64_t start = 0; start < data.size(); start += batch) {
    const int64_t n = std::min(batch, data.size() - start);
    const torch::Tensor logits = net.logits(data.inputs(torch::arange(start, start + n, torch::kInt64)));
    const auto g = net.grad(logits.pow(2).sum(1).mean());
    for (size_t k = 0; k < g.size(); ++k) total[k] += g[k].abs();
    ++batches;
  }
  for (auto& t : total) t /= static_cast<double>(batches);
  return total;
}

// MAS by hand, per sample: mean over samples of |d ||f(x_i)||^2 / dtheta|, one
// autograd call per sample.
inline std::vector<torch::Tensor> reference_mas_per_sample(const ContinualNet& model, const TaskData& data,
                                                          int64_t head) {
  ReferenceNet net(model, head);
  std::vector<torch::Tensor> total = zeros_like_all(net.trunk);
  for (int64_t i = 0; i < data.size(); ++i) {
    const auto g = net.grad(net.logits(data.inputs(torch::tensor({i}, torch::kInt64))).pow(2).sum());
    for (size_t k = 0; k < g.size(); ++k) total[k] += g[k].abs();
  }
  for (auto& t : total) t /= static_cast<double>(data.size());
  return total;
}

// Per-sample gradient of log p(label | x_i) for every sample i < count, one sample at a time.
inline std::vector<std::vector<torch::Tensor>> per_sample_log_likelihood_grads(const ContinualNet& model,
                                                                              const TaskData& data, int64_t head,
                                                                              int64_t count, int64_t label) {
  ReferenceNet net(model, head);
  std::vector<std::vector<torch::Tensor>> grads;
  for (int64_t i = 0; i < count; ++i) {
    const torch::Tensor position = torch::tensor({i}, torch::kInt64);
    const int64_t y = label >= 0 ? label : data.labels(position, HeadLayout::Multi).item<int64_t>();
    const torch::Tensor log_p = torch::log_softmax(net.logits(data.inputs(position)), 1);
    grads.push_back(net.grad(log_p[0][y]));
  }
  return grads;
}

// Empirical Fisher by hand: mean over the first `count` samples of the squared
// per-sample gradient of log p(y_true | x).
inline std::vector<torch::Tensor> reference_fisher_true_labels(const ContinualNet& model, const TaskData& data,
                                                              int64_t head, int64_t count) {
  const auto grads = per_sample_log_likelihood_grads(model, data, head, count, -1);
  std::vector<torch::Tensor> total = zeros_like_all(grads.at(0));
  for (const auto& sample : grads)
    for (size_t k = 0; k < sample.size(); ++k) total[k] += sample[k].pow(2);
  for (auto& t : total) t /= static_cast<double>(count);
  return total;
}

// Element-wise comparison (in double, on the CPU, whatever devices the two
// live on) with a message naming the worst element.
inline ::testing::AssertionResult all_close(const torch::Tensor& actual, const torch::Tensor& expected, double rtol,
                                            double atol) {
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " vs expected " << expected.sizes();
  const torch::Tensor a = actual.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor e = expected.detach().to(torch::kCPU, torch::kFloat64);
  const torch::Tensor excess = (a - e).abs() - (atol + rtol * e.abs());
  if (excess.numel() == 0 || excess.max().item<double>() <= 0) return ::testing::AssertionSuccess();
  const int64_t worst = excess.reshape({-1}).argmax().item<int64_t>();
  return ::testing::AssertionFailure() << "element " << worst << ": got " << a.reshape({-1})[worst].item<double>()
                                       << ", expected " << e.reshape({-1})[worst].item<double>() << "\n  actual   "
                                       << a.reshape({-1}) << "\n  expected " << e.reshape({-1});
}

// Named tensors equal in names and order, and in values up to `rtol` plus an
// absolute tolerance relative to the largest element, so that values near zero
// do not demand more than float32 summation order can give. `where` names the
// setting in failure messages (e.g. "on 2 rank(s)").
inline void expect_close_to_largest(const NamedTensors& got, const NamedTensors& expected, double rtol,
                                    const std::string& where) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].first, expected[k].first);
    const double scale = expected[k].second.abs().max().item<double>();
    EXPECT_TRUE(all_close(got[k].second, expected[k].second, rtol, 1e-6 * scale + 1e-12)) << got[k].first << " " << where;
  }
}

}  // namespace clx::testing_support
