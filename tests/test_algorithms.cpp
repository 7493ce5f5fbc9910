// Continual-learning algorithms (DESIGN.md 4.2-4.3) against reference values
// computed independently here: a hand-written double-precision forward pass
// with its own autograd calls (tests/algorithm_test_support.h), or hand
// arithmetic. One process (SingleCommunicator); the multi-rank counterparts
// are in test_mpi_anpyc.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "algorithms/anpyc.h"
#include "algorithms/ewc.h"
#include "algorithms/importance.h"
#include "algorithms/lwf.h"
#include "algorithms/mas.h"
#include "algorithms/parameter_tensors.h"
#include "algorithms/pruning.h"
#include "algorithms/sgdf.h"
#include "algorithms/si.h"
#include "models/conv_nets.h"
#include "models/multi_head_model.h"
#include "runtime/error.h"
#include "runtime/logging.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/expect_error.h"

using namespace clx;
using namespace clx::testing_support;

namespace {

constexpr double kRtol = 1e-5;
constexpr double kAtol = 1e-7;

TrainerConfig tiny_trainer_config(int64_t batch, int64_t epochs = 1) {
  TrainerConfig config;
  config.batch_size = batch;
  config.epochs = epochs;
  config.lr = 0.1;
  config.progress_seconds = 1e9;
  return config;
}

std::vector<torch::Tensor> values(const NamedTensors& named) {
  std::vector<torch::Tensor> out;
  for (const auto& item : named) out.push_back(item.second);
  return out;
}

std::vector<torch::Tensor> detached_clones(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.detach().clone());
  return out;
}

// theta += delta for every shared parameter, outside autograd (a simulated optimizer step).
void shift_shared(MultiHeadModel& model, const std::vector<torch::Tensor>& delta) {
  torch::NoGradGuard no_grad;
  auto parameters = model->shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) parameters[k].add_(delta[k]);
}

void set_shared_grads(MultiHeadModel& model, const std::vector<torch::Tensor>& grads) {
  auto parameters = model->shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) parameters[k].mutable_grad() = grads[k].clone();
}

std::vector<torch::Tensor> random_like_shared(MultiHeadModel& model, double scale, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> out;
  for (auto& p : model->shared_parameters()) out.push_back(torch::randn(p.sizes()) * scale);
  return out;
}

std::vector<torch::Tensor> float_of(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.to(torch::kFloat32));
  return out;
}

void expect_all_close(const NamedTensors& got, const std::vector<torch::Tensor>& expected, double rtol = kRtol,
                      double atol = kAtol) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t k = 0; k < got.size(); ++k) EXPECT_TRUE(all_close(got[k].second, expected[k], rtol, atol)) << got[k].first;
}

}  // namespace

// ---------------------------------------------------------------- 1. importance

TEST(EntropyTaylorImportance, MatchesPerBatchEntropyGradientComputedByHand) {
  // 6 training samples per task, batch 4: two batches of 4 and 2 samples. Heads of size 3.
  TaskStream stream = tiny_stream(2, 3, 6);
  ASSERT_EQ(stream.tasks[1].train.size(), 6);
  // Dropout in the trunk: the pass must run in eval mode (the reference has no dropout).
  MultiHeadModel model = tiny_mlp(stream, {3}, 21, /*dropout=*/0.5);
  model->train();
  SingleCommunicator comm;
  Logger log(1, "");
  StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, 4);

  NamedTensors by_sign[2];
  for (int s = 0; s < 2; ++s) {
    const double sign = s == 0 ? -1.0 : 1.0;
    SCOPED_TRACE("sign " + std::to_string(sign));
    by_sign[s] = entropy_taylor_importance(ctx, 1, sign);
    EXPECT_TRUE(model->is_training()) << "the importance pass must restore training mode";
    ASSERT_EQ(by_sign[s].size(), 2u);
    EXPECT_EQ(by_sign[s][0].first, "trunk.1.weight");
    EXPECT_EQ(by_sign[s][1].first, "trunk.1.bias");
    expect_all_close(by_sign[s], reference_entropy_taylor(*model, stream.tasks[1].train, 1, 4, sign));
    for (const auto& item : by_sign[s]) EXPECT_GE(item.second.min().item<double>(), 0.0) << item.first;
  }
  // s = -1: some element is clamped to exactly 0 although its unclamped Taylor term is negative.
  const auto raw = reference_entropy_taylor(*model, stream.tasks[1].train, 1, 4, -1.0, /*clamp=*/false);
  int64_t clamped = 0;
  for (size_t k = 0; k < raw.size(); ++k)
    clamped += by_sign[0][k].second.eq(0).logical_and(raw[k].lt(-1e-9)).sum().item<int64_t>();
  EXPECT_GT(clamped, 0) << "no element exercised the max(0, .) clamp";
  // The sign changes the result.
  bool differs = false;
  for (size_t k = 0; k < raw.size(); ++k) differs |= !torch::allclose(by_sign[0][k].second, by_sign[1][k].second);
  EXPECT_TRUE(differs);
}

TEST(EntropyTaylorImportance, BatchOfOneAndWholeTaskBatchesAlsoMatch) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = tiny_mlp(stream, {3}, 22);
  SingleCommunicator comm;
  Logger log(1, "");
  for (int64_t batch : {1, 6, 100}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, batch);
    expect_all_close(entropy_taylor_importance(ctx, 0, -1.0),
                     reference_entropy_taylor(*model, stream.tasks[0].train, 0, batch, -1.0));
  }
}

TEST(SoftmaxEntropy, HandValues) {
  // Uniform over 4 classes: log 4. A one-hot-like softmax: ~0 (the log argument is clamped, no NaN).
  torch::Tensor logits = torch::tensor({{0.0f, 0.0f, 0.0f, 0.0f}, {1000.0f, 0.0f, 0.0f, 0.0f}});
  torch::Tensor h = softmax_entropy(logits);
  EXPECT_NEAR(h[0].item<double>(), std::log(4.0), 1e-6);
  EXPECT_NEAR(h[1].item<double>(), 0.0, 1e-6);
  EXPECT_FALSE(h.isnan().any().item<bool>());
}

// ---------------------------------------------------------------- 2. accumulation

TEST(Accumulation, SumAndMaxElementWise) {
  auto make = [](std::vector<float> a, std::vector<float> b) {
    return NamedTensors{{"w", torch::tensor(a).view({2, 2})}, {"b", torch::tensor(b)}};
  };
  NamedTensors add = make({1, -2, 3, 0.5}, {4, 0});
  {
    NamedTensors total = make({0.5, 1, 1, 1}, {-1, 2});
    accumulate_into(total, add, "sum");
    EXPECT_TRUE(torch::equal(total[0].second, torch::tensor({1.5f, -1.0f, 4.0f, 1.5f}).view({2, 2})));
    EXPECT_TRUE(torch::equal(total[1].second, torch::tensor({3.0f, 2.0f})));
    EXPECT_EQ(total[0].first, "w");
  }
  {
    NamedTensors total = make({0.5, 1, 1, 1}, {-1, 2});
    accumulate_into(total, add, "max");
    EXPECT_TRUE(torch::equal(total[0].second, torch::tensor({1.0f, 1.0f, 3.0f, 1.0f}).view({2, 2})));
    EXPECT_TRUE(torch::equal(total[1].second, torch::tensor({4.0f, 2.0f})));
  }
  NamedTensors total = make({0, 0, 0, 0}, {0, 0});
  EXPECT_THROW(accumulate_into(total, add, "mean"), Error);
  NamedTensors shorter{{"w", torch::zeros({2, 2})}};
  EXPECT_THROW(accumulate_into(shorter, add, "sum"), Error);
}

// ---------------------------------------------------------------- 3. consolidation

TEST(Consolidation, QuadraticPullIsTheGradientOfTheQuadraticPenalty) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = tiny_mlp(stream, {3}, 23);
  const double lambda = 0.7;
  torch::manual_seed(99);
  NamedTensors omega, old;
  for (const auto& [name, p] : model->named_shared_parameters()) {
    omega.emplace_back(name, torch::rand(p.sizes()));
    old.emplace_back(name, p.detach() + 0.3 * torch::randn(p.sizes()));
  }
  const auto known = random_like_shared(model, 1.0, 5);
  set_shared_grads(model, known);
  add_quadratic_pull(*model, omega, old, 2.0 * lambda);

  // Reference: autograd of lambda * sum Omega (theta - theta_old)^2 in double.
  std::vector<torch::Tensor> theta;
  torch::Tensor energy = torch::zeros({}, torch::kFloat64);
  for (size_t k = 0; k < omega.size(); ++k) {
    theta.push_back(model->shared_parameters()[k].detach().to(torch::kFloat64).requires_grad_(true));
    energy = energy + (omega[k].second.to(torch::kFloat64) * (theta[k] - old[k].second.to(torch::kFloat64)).pow(2)).sum();
  }
  const auto pull = torch::autograd::grad({lambda * energy}, theta);
  const auto parameters = model->shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k)
    EXPECT_TRUE(all_close(parameters[k].grad(), known[k].to(torch::kFloat64) + pull[k], kRtol, 1e-6)) << k;
  EXPECT_NEAR(quadratic_energy(*model, omega, old), energy.item<double>(), 1e-6 * std::abs(energy.item<double>()));

  // A hand example on one element: grad 0.5, Omega 2, theta - theta_old = 0.25, lambda 0.7:
  // 0.5 + 2 * 0.7 * 2 * 0.25 = 1.2. Energy 2 * 0.0625 = 0.125.
  {
    torch::NoGradGuard no_grad;
    NamedTensors one_omega = zeros_like_shared(*model), one_old = snapshot_shared(*model);
    one_omega[0].second.view(-1)[0] = 2.0f;
    one_old[0].second.view(-1)[0] -= 0.25f;
    for (auto& p : parameters) p.mutable_grad() = torch::full(p.sizes(), 0.5f);
    add_quadratic_pull(*model, one_omega, one_old, 2.0 * lambda);
    EXPECT_NEAR(parameters[0].grad().view(-1)[0].item<double>(), 1.2, 1e-6);
    EXPECT_NEAR(parameters[0].grad().view(-1)[1].item<double>(), 0.5, 1e-7);
    EXPECT_NEAR(quadratic_energy(*model, one_omega, one_old), 0.125, 1e-6);
  }
  // A parameter without a gradient (not trained in this stage) is left alone.
  parameters[1].mutable_grad() = torch::Tensor();
  add_quadratic_pull(*model, omega, old, 2.0 * lambda);
  EXPECT_FALSE(parameters[1].grad().defined());
}

TEST(AnpycStrategy, ConsolidatesWithTwiceLambdaOmegaTimesDriftFromTask2On) {
  for (const std::string mode : {"sum", "max"}) {
    SCOPED_TRACE("accumulate " + mode);
    TaskStream stream = tiny_stream(2, 2, 6);
    MultiHeadModel model = tiny_mlp(stream, {3}, 24);
    SingleCommunicator comm;
    Logger log(1, "");
    AnpycOptions options;
    options.prune = false;
    options.lambda = 1.5;
    options.accumulate = mode;
    AnpycStrategy anpyc(options);

    StageContext ctx0 = hand_context(model, comm, stream, log, 0, {0}, 4);
    anpyc.before_task(ctx0);
    // Stage 0: nothing to consolidate.
    const auto g = random_like_shared(model, 1.0, 31);
    set_shared_grads(model, g);
    anpyc.after_backward(ctx0);
    for (size_t k = 0; k < g.size(); ++k) EXPECT_TRUE(torch::equal(model->shared_parameters()[k].grad(), g[k]));
    shift_shared(model, random_like_shared(model, 0.1, 32));  // "training" of task 1
    anpyc.after_task(ctx0);
    const auto omega1 = reference_entropy_taylor(*model, stream.tasks[0].train, 0, 4, -1.0);
    expect_all_close(anpyc.omega(), omega1);
    for (const auto& mask : anpyc.masks()) EXPECT_TRUE(mask.second.eq(1).all().item<bool>()) << mask.first;

    StageContext ctx1 = hand_context(model, comm, stream, log, 1, {1}, 4);
    anpyc.before_task(ctx1);
    const auto drift = random_like_shared(model, 0.2, 33);
    shift_shared(model, drift);
    set_shared_grads(model, g);
    anpyc.after_backward(ctx1);
    const auto parameters = model->shared_parameters();
    for (size_t k = 0; k < g.size(); ++k)
      EXPECT_TRUE(all_close(parameters[k].grad(), g[k].to(torch::kFloat64) + 2.0 * 1.5 * omega1[k] * drift[k].to(torch::kFloat64),
                            kRtol, 1e-6))
          << k;
    anpyc.after_task(ctx1);
    const auto omega2 = reference_entropy_taylor(*model, stream.tasks[1].train, 1, 4, -1.0);
    std::vector<torch::Tensor> expected;
    for (size_t k = 0; k < omega1.size(); ++k)
      expected.push_back(mode == "sum" ? omega1[k] + omega2[k] : torch::maximum(omega1[k], omega2[k]));
    expect_all_close(anpyc.omega(), expected);

    std::set<std::string> names;
    for (const auto& item : anpyc.state()) names.insert(item.first);
    for (const char* name : {"omega.trunk.1.weight", "theta_old.trunk.1.bias", "mask.trunk.1.weight"})
      EXPECT_TRUE(names.count(name)) << name;
  }
}

// ---------------------------------------------------------------- 4. EWC

TEST(EwcFisher, TrueLabelsArePerSampleSquaredGradientsNotTheSquaredMean) {
  TaskStream stream = tiny_stream(2, 3, 6);
  MultiHeadModel model = tiny_mlp(stream, {3}, 25);
  SingleCommunicator comm;
  Logger log(1, "");
  StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, 4);
  const TaskData& data = stream.tasks[1].train;

  const NamedTensors fisher = fisher_diagonal(ctx, 1, 0, /*sample_labels=*/false);
  const auto expected = reference_fisher_true_labels(*model, data, 1, data.size());
  expect_all_close(fisher, expected);

  // The classic bug: the square of the mean gradient is much smaller.
  const auto grads = per_sample_log_likelihood_grads(*model, data, 1, data.size(), -1);
  for (size_t k = 0; k < expected.size(); ++k) {
    torch::Tensor mean = torch::zeros_like(expected[k]);
    for (const auto& sample : grads) mean += sample[k] / static_cast<double>(grads.size());
    EXPECT_FALSE(all_close(fisher[k].second, mean.pow(2), 1e-3, 1e-6)) << fisher[k].first;
  }
  // fisher_samples limits the pass to the first samples of the task.
  expect_all_close(fisher_diagonal(ctx, 1, 4, false), reference_fisher_true_labels(*model, data, 1, 4));
  expect_all_close(fisher_diagonal(ctx, 1, 1000, false), expected);
}

TEST(EwcFisher, SampledLabelsAreDeterministicNonNegativeAndOneLabelPerSample) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = tiny_mlp(stream, {3}, 26);
  SingleCommunicator comm;
  Logger log(1, "");
  const TaskData& data = stream.tasks[0].train;
  // Squared per-sample gradient for each possible label.
  std::vector<std::vector<std::vector<torch::Tensor>>> by_label;  // [label][sample][tensor]
  for (int64_t y = 0; y < 2; ++y) by_label.push_back(per_sample_log_likelihood_grads(*model, data, 0, data.size(), y));

  std::set<std::string> distinct;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 4, seed);
    const NamedTensors a = fisher_diagonal(ctx, 0, 0, true);
    const NamedTensors b = fisher_diagonal(ctx, 0, 0, true);
    for (size_t k = 0; k < a.size(); ++k) {
      EXPECT_TRUE(torch::equal(a[k].second, b[k].second)) << "not deterministic for seed " << seed;
      EXPECT_GE(a[k].second.min().item<double>(), 0.0);
    }
    // Some choice of one label per sample (2^6 choices) reproduces the result exactly.
    int found = -1;
    for (int choice = 0; choice < (1 << data.size()) && found < 0; ++choice) {
      bool match = true;
      for (size_t k = 0; k < a.size() && match; ++k) {
        torch::Tensor sum = torch::zeros_like(by_label[0][0][k]);
        for (int64_t i = 0; i < data.size(); ++i) sum += by_label[(choice >> i) & 1][i][k].pow(2);
        match = all_close(a[k].second, sum / static_cast<double>(data.size()), kRtol, kAtol);
      }
      if (match) found = choice;
    }
    EXPECT_GE(found, 0) << "seed " << seed << ": not a mean of per-sample squared gradients with one label each";
    distinct.insert(std::to_string(found));
  }
  EXPECT_GT(distinct.size(), 1u) << "the drawn labels do not depend on the seed";
}

namespace {

// A stream of `train` samples of channels x side x side in one task of 2 classes.
TaskStream one_task_stream(int64_t train, int64_t channels, int64_t side) {
  StreamConfig config;
  config.kind = "split";
  config.dataset = "tiny";
  config.num_tasks = 1;
  config.classes_per_task = 2;
  return build_task_stream(config, tiny_square_images(train, 2, channels, side, 41),
                           tiny_square_images(4, 2, channels, side, 42));
}

// BatchNorm with running statistics and affine parameters far from their
// initial values (mean 0, variance 1, weight 1, bias 0), so eval mode is not
// close to the identity.
void randomise_batch_norms(torch::nn::Module& model, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (const auto& module : model.modules()) {
    auto* norm = dynamic_cast<torch::nn::BatchNorm2dImpl*>(module.get());
    if (norm == nullptr) continue;
    norm->running_mean.copy_(torch::randn_like(norm->running_mean) * 0.3);
    norm->running_var.copy_(torch::rand_like(norm->running_var) + 0.5);
    norm->weight.copy_(torch::randn_like(norm->weight));
    norm->bias.copy_(torch::randn_like(norm->bias) * 0.1);
  }
}

// The batched path (which must be taken: FisherPath::Batched throws otherwise)
// against one backward pass per sample, true and sampled labels, all samples
// and the first 5. Tolerance relative to each tensor's largest element.
void expect_batched_fisher_equals_per_sample_loop(MultiHeadModel& model, const TaskStream& stream) {
  SingleCommunicator comm;
  Logger log(1, "");
  StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 4, /*seed=*/11);
  for (bool sampled : {false, true})
    for (int64_t samples : {int64_t{0}, int64_t{5}}) {
      SCOPED_TRACE(std::string(sampled ? "sampled" : "true") + " labels, samples " + std::to_string(samples));
      const NamedTensors batched = fisher_diagonal(ctx, 0, samples, sampled, FisherPath::Batched);
      const NamedTensors loop = fisher_diagonal(ctx, 0, samples, sampled, FisherPath::PerSampleLoop);
      ASSERT_EQ(batched.size(), loop.size());
      for (size_t k = 0; k < loop.size(); ++k) {
        EXPECT_EQ(batched[k].first, loop[k].first);
        const double scale = loop[k].second.abs().max().item<double>();
        EXPECT_GT(scale, 0.0) << loop[k].first << ": a zero Fisher tests nothing";
        EXPECT_TRUE(all_close(batched[k].second, loop[k].second, 1e-5, 1e-6 * scale)) << loop[k].first;
      }
    }
}

}  // namespace

TEST(EwcFisher, BatchedPathEqualsPerSampleLoopOnAnMlpAcrossChunks) {
  // 300 samples: three batched chunks (128, 128, 44); dropout is the identity in eval mode.
  TaskStream stream = one_task_stream(300, 1, 3);
  MultiHeadModel model = tiny_mlp(stream, {7, 5}, 31, /*dropout=*/0.3);
  expect_batched_fisher_equals_per_sample_loop(model, stream);
}

TEST(EwcFisher, BatchedPathEqualsPerSampleLoopOnAConvNetWithStridePaddingDilationPoolingAndBatchNorm) {
  TaskStream stream = one_task_stream(40, 2, 9);
  torch::manual_seed(32);
  namespace nn = torch::nn;
  nn::Sequential trunk(nn::Conv2d(nn::Conv2dOptions(2, 3, 3).stride(2).padding(1)),  // 3 x 5 x 5
                       nn::BatchNorm2d(3), nn::ReLU(),
                       nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(1)),                  // 3 x 4 x 4
                       nn::Conv2d(nn::Conv2dOptions(3, 4, 2).padding(1).dilation(2)),     // 4 x 4 x 4
                       nn::ReLU(), nn::Conv2d(nn::Conv2dOptions(4, 4, 1).bias(false)),    // 4 x 4 x 4
                       nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(1)),                  // 4 x 3 x 3
                       nn::Flatten(), nn::Linear(36, 6), nn::ReLU(), nn::Dropout(0.2));
  MultiHeadModel model(trunk, 6, std::vector<int64_t>{2});
  randomise_batch_norms(*model, 33);
  expect_batched_fisher_equals_per_sample_loop(model, stream);
}

TEST(EwcFisher, BatchedPathEqualsPerSampleLoopOnVgg9AndResNet18) {
  TaskStream stream = one_task_stream(12, 1, 8);
  {
    SCOPED_TRACE("vgg9");
    torch::manual_seed(34);
    Vgg9Config config;
    config.width = 0.25;
    MultiHeadModel vgg = make_vgg9(stream.input_shape, config, {2});
    expect_batched_fisher_equals_per_sample_loop(vgg, stream);
  }
  {
    SCOPED_TRACE("resnet18");  // skip connections and projection shortcuts
    torch::manual_seed(35);
    ResNet18Config config;
    config.width = 1.0 / 16;
    MultiHeadModel resnet = make_resnet18(stream.input_shape, config, {2});
    randomise_batch_norms(*resnet, 36);
    expect_batched_fisher_equals_per_sample_loop(resnet, stream);
  }
}

TEST(EwcFisher, ModelsTheTapeCannotServeFallBackToThePerSampleLoop) {
  TaskStream stream = one_task_stream(6, 2, 5);
  torch::manual_seed(37);
  namespace nn = torch::nn;
  nn::Sequential trunk(nn::Conv2d(nn::Conv2dOptions(2, 4, 3).groups(2)), nn::Flatten(), nn::Linear(36, 3));
  MultiHeadModel model(trunk, 3, std::vector<int64_t>{2});
  SingleCommunicator comm;
  Logger log(1, "");
  StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 4);
  expect_error([&] { fisher_diagonal(ctx, 0, 0, true, FisherPath::Batched); },
               {"fisher_diagonal: batched per-sample gradients are not possible", "grouped Conv2d"});
  const NamedTensors automatic = fisher_diagonal(ctx, 0, 0, true);
  const NamedTensors loop = fisher_diagonal(ctx, 0, 0, true, FisherPath::PerSampleLoop);
  for (size_t k = 0; k < loop.size(); ++k) EXPECT_TRUE(torch::equal(automatic[k].second, loop[k].second));
}

TEST(EwcStrategy, SeparateModeAddsOneTermPerTaskOnlineModeOneDecayedTerm) {
  for (const std::string mode : {"separate", "online"}) {
    SCOPED_TRACE(mode);
    TaskStream stream = tiny_stream(3, 2, 6);
    MultiHeadModel model = tiny_mlp(stream, {3}, 27);
    SingleCommunicator comm;
    Logger log(1, "");
    EwcOptions options;
    options.lambda = 4.0;
    options.labels = "true";
    options.fisher_samples = 5;
    options.mode = mode;
    options.gamma = 0.5;
    EwcStrategy ewc(options);

    StageContext ctx0 = hand_context(model, comm, stream, log, 0, {0}, 4);
    ewc.before_task(ctx0);
    shift_shared(model, random_like_shared(model, 0.1, 41));
    const auto g = random_like_shared(model, 1.0, 40);
    set_shared_grads(model, g);
    ewc.after_backward(ctx0);  // nothing stored yet
    for (size_t k = 0; k < g.size(); ++k) EXPECT_TRUE(torch::equal(model->shared_parameters()[k].grad(), g[k]));
    ewc.after_task(ctx0);
    const auto f1 = reference_fisher_true_labels(*model, stream.tasks[0].train, 0, 5);
    const auto anchor1 = detached_clones(model->shared_parameters());

    StageContext ctx1 = hand_context(model, comm, stream, log, 1, {1}, 4);
    ewc.before_task(ctx1);
    shift_shared(model, random_like_shared(model, 0.1, 42));
    ewc.after_task(ctx1);
    const auto f2 = reference_fisher_true_labels(*model, stream.tasks[1].train, 1, 5);
    const auto anchor2 = detached_clones(model->shared_parameters());

    StageContext ctx2 = hand_context(model, comm, stream, log, 2, {2}, 4);
    ewc.before_task(ctx2);
    shift_shared(model, random_like_shared(model, 0.2, 43));
    set_shared_grads(model, g);
    ewc.after_backward(ctx2);
    const auto theta = model->shared_parameters();
    for (size_t k = 0; k < g.size(); ++k) {
      const torch::Tensor t = theta[k].detach().to(torch::kFloat64);
      torch::Tensor expected = g[k].to(torch::kFloat64);
      if (mode == "separate")
        expected = expected + 4.0 * f1[k] * (t - anchor1[k].to(torch::kFloat64)) +
                   4.0 * f2[k] * (t - anchor2[k].to(torch::kFloat64));
      else
        expected = expected + 4.0 * (0.5 * f1[k] + f2[k]) * (t - anchor2[k].to(torch::kFloat64));
      EXPECT_TRUE(all_close(theta[k].grad(), expected, kRtol, 1e-6)) << k;
    }
    if (mode == "separate") {
      ASSERT_EQ(ewc.fishers().size(), 2u);
      expect_all_close(ewc.fishers()[0], f1);
      expect_all_close(ewc.fishers()[1], f2);
    } else {
      ASSERT_EQ(ewc.fishers().size(), 1u);
      std::vector<torch::Tensor> online;
      for (size_t k = 0; k < f1.size(); ++k) online.push_back(0.5 * f1[k] + f2[k]);
      expect_all_close(ewc.fishers()[0], online);
    }
  }
}

// ---------------------------------------------------------------- 5. MAS

TEST(MasImportance, MeanOverBatchesOfAbsoluteGradientOfMeanSquaredOutputNorm) {
  TaskStream stream = tiny_stream(2, 3, 6);
  MultiHeadModel model = tiny_mlp(stream, {4}, 28);
  SingleCommunicator comm;
  Logger log(1, "");
  for (int64_t batch : {4, 1, 6}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, batch);
    expect_all_close(mas_importance(ctx, 1), reference_mas(*model, stream.tasks[1].train, 1, batch));
  }
}

TEST(MasStrategy, SumsImportanceOverTasksAndPullsWithTwiceLambda) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = tiny_mlp(stream, {3}, 29);
  SingleCommunicator comm;
  Logger log(1, "");
  MasStrategy mas(0.8);
  StageContext ctx0 = hand_context(model, comm, stream, log, 0, {0}, 4);
  mas.after_task(ctx0);
  const auto o1 = reference_mas(*model, stream.tasks[0].train, 0, 4);
  expect_all_close(mas.omega(), o1);
  const auto anchor = detached_clones(model->shared_parameters());
  StageContext ctx1 = hand_context(model, comm, stream, log, 1, {1}, 4);
  mas.before_task(ctx1);
  const auto drift = random_like_shared(model, 0.2, 51);
  shift_shared(model, drift);
  const auto g = random_like_shared(model, 1.0, 52);
  set_shared_grads(model, g);
  mas.after_backward(ctx1);
  for (size_t k = 0; k < g.size(); ++k)
    EXPECT_TRUE(all_close(model->shared_parameters()[k].grad(),
                          g[k].to(torch::kFloat64) + 2.0 * 0.8 * o1[k] * drift[k].to(torch::kFloat64), kRtol, 1e-6));
  mas.after_task(ctx1);
  const auto o2 = reference_mas(*model, stream.tasks[1].train, 1, 4);
  std::vector<torch::Tensor> sum;
  for (size_t k = 0; k < o1.size(); ++k) sum.push_back(o1[k] + o2[k]);
  expect_all_close(mas.omega(), sum);
}

// ---------------------------------------------------------------- 6. SI

TEST(SiStrategy, PathIntegralUsesTaskGradientAndActualUpdates) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = tiny_mlp(stream, {3}, 30);
  SingleCommunicator comm;
  Logger log(1, "");
  SiOptions options;
  options.c = 0.3;
  options.xi = 0.1;
  SiStrategy si(options);
  const size_t n = model->shared_parameters().size();
  auto to64 = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };

  // Task 1: three steps with known gradients G_k and updates D_k.
  StageContext ctx0 = hand_context(model, comm, stream, log, 0, {0}, 4);
  si.before_task(ctx0);
  std::vector<torch::Tensor> w(n), total(n);
  for (size_t k = 0; k < n; ++k) {
    w[k] = torch::zeros(model->shared_parameters()[k].sizes(), torch::kFloat64);
    total[k] = torch::zeros_like(w[k]);
  }
  for (int step = 0; step < 3; ++step) {
    const auto g = random_like_shared(model, 1.0, 60 + step);
    const auto d = random_like_shared(model, 0.05, 70 + step);
    set_shared_grads(model, g);
    si.after_backward(ctx0);
    for (size_t k = 0; k < n; ++k)
      EXPECT_TRUE(torch::equal(model->shared_parameters()[k].grad(), g[k])) << "stage 0 must not add a penalty";
    shift_shared(model, d);
    si.after_step(ctx0);
    for (size_t k = 0; k < n; ++k) {
      w[k] -= to64(g[k]) * to64(d[k]);
      total[k] += to64(d[k]);
    }
  }
  si.after_task(ctx0);
  std::vector<torch::Tensor> omega1(n);
  for (size_t k = 0; k < n; ++k) omega1[k] = w[k] / (total[k].pow(2) + 0.1);
  expect_all_close(si.path_integral(), w, 1e-4, 1e-7);
  expect_all_close(si.omega(), omega1, 1e-4, 1e-6);

  // Task 2: step 1 starts at theta* (no pull yet); step 2 sees a pull of 2 c Omega (theta - theta*),
  // and its path-integral term still uses the gradient before the pull.
  StageContext ctx1 = hand_context(model, comm, stream, log, 1, {1}, 4);
  si.before_task(ctx1);
  for (size_t k = 0; k < n; ++k) {
    w[k] = torch::zeros_like(w[k]);
    total[k] = torch::zeros_like(w[k]);
  }
  for (int step = 0; step < 2; ++step) {
    const auto g = random_like_shared(model, 1.0, 80 + step);
    const auto d = random_like_shared(model, 0.05, 90 + step);
    set_shared_grads(model, g);
    si.after_backward(ctx1);
    for (size_t k = 0; k < n; ++k)
      EXPECT_TRUE(all_close(model->shared_parameters()[k].grad(), to64(g[k]) + 2.0 * 0.3 * omega1[k] * total[k], 1e-4,
                            1e-6))
          << "step " << step << " tensor " << k;
    shift_shared(model, d);
    si.after_step(ctx1);
    for (size_t k = 0; k < n; ++k) {
      w[k] -= to64(g[k]) * to64(d[k]);
      total[k] += to64(d[k]);
    }
  }
  expect_all_close(si.path_integral(), w, 1e-4, 1e-7);
  si.after_task(ctx1);
  std::vector<torch::Tensor> omega2(n);
  for (size_t k = 0; k < n; ++k) omega2[k] = omega1[k] + w[k] / (total[k].pow(2) + 0.1);
  expect_all_close(si.omega(), omega2, 1e-4, 1e-6);
}

// ---------------------------------------------------------------- 7. LwF

TEST(LwfStrategy, DistillationMatchesHandArithmetic) {
  const double T = 2.0;
  const std::vector<std::vector<double>> logits{{1.0, 2.0, 3.0}, {0.0, 1.0, -1.0}};
  const std::vector<std::vector<double>> targets{{0.2, 0.3, 0.5}, {1.0, 0.0, 0.0}};
  double expected = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    double z = 0.0;
    for (double l : logits[i]) z += std::exp(l / T);
    for (size_t k = 0; k < logits[i].size(); ++k) expected -= targets[i][k] * (logits[i][k] / T - std::log(z));
  }
  // log(1 + e^-0.5 + e^-1) = log 1.97441 = 0.68026.
  // Row 1: z = [0.5, 1, 1.5], logsumexp 2.18026, log_softmax = [-1.68026, -1.18026, -0.68026]
  //        -> 0.2*1.68026 + 0.3*1.18026 + 0.5*0.68026 = 1.03026
  // Row 2: z = [0, 0.5, -0.5], logsumexp 1.18026, target one-hot on class 0 -> 1.18026. Total 2.21052.
  EXPECT_NEAR(expected, 2.21052, 1e-4);
  const torch::Tensor got = LwfStrategy::distillation(torch::tensor({{1.0f, 2.0f, 3.0f}, {0.0f, 1.0f, -1.0f}}),
                                                      torch::tensor({{0.2f, 0.3f, 0.5f}, {1.0f, 0.0f, 0.0f}}), T);
  EXPECT_EQ(got.dim(), 0);
  EXPECT_NEAR(got.item<double>(), expected, 1e-6);
}

TEST(LwfStrategy, RecordsOldHeadResponsesAndDistillsThem) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = tiny_mlp(stream, {4}, 31);
  SingleCommunicator comm;
  Logger log(1, "");
  LwfStrategy lwf(1.5, 2.0);
  Trainer trainer(tiny_trainer_config(4), comm, stream, model.ptr(), lwf, log);
  trainer.train_stage(0, {0});
  EXPECT_TRUE(lwf.state().empty());
  // The old model's softened head-1 responses on task 2's training data.
  const TaskData& data = stream.tasks[1].train;
  const torch::Tensor expected =
      torch::softmax(ReferenceNet(*model, 0).logits(data.inputs(torch::arange(data.size()))) / 2.0, 1).detach();

  StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, 4);
  lwf.before_task(ctx);
  auto state = lwf.state();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].first, "targets.head1");
  EXPECT_EQ(state[0].second.sizes(), (std::vector<int64_t>{data.size(), 2}));
  EXPECT_TRUE(all_close(state[0].second, expected, kRtol, kAtol));

  // penalty_loss = lambda * loss_scale * sum over the batch of the distillation on head 1.
  const torch::Tensor positions = torch::tensor({1, 4, 5}, torch::kInt64);
  ctx.batch_positions = positions;
  ctx.batch_features = model->features(data.inputs(positions));
  ctx.loss_scale = 0.25;
  const torch::Tensor penalty = lwf.penalty_loss(ctx);
  ASSERT_TRUE(penalty.defined());
  const torch::Tensor current = torch::log_softmax(ReferenceNet(*model, 0).logits(data.inputs(positions)) / 2.0, 1);
  const double reference = 1.5 * 0.25 * -(expected.index_select(0, positions) * current).sum().item<double>();
  EXPECT_NEAR(penalty.item<double>(), reference, 1e-5 * std::abs(reference));
  EXPECT_TRUE(penalty.requires_grad());

  // A real stage 2 with the distillation in the loss runs and keeps the targets.
  trainer.train_stage(1, {1});
  state = lwf.state();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].second.sizes(), (std::vector<int64_t>{data.size(), 2}));
  EXPECT_TRUE(all_close(state[0].second, expected, kRtol, kAtol));
}

TEST(LwfStrategy, FullRunAndDistillationChangesTheTrajectory) {
  TaskStream stream = tiny_stream(2, 2, 6);
  std::vector<torch::Tensor> trunks[2];
  for (int run = 0; run < 2; ++run) {
    MultiHeadModel model = tiny_mlp(stream, {4}, 32);
    SingleCommunicator comm;
    Logger log(1, "");
    LwfStrategy lwf(run == 0 ? 0.0 : 5.0, 2.0);
    const RunResult result = Trainer(tiny_trainer_config(4, 2), comm, stream, model.ptr(), lwf, log).run();
    ASSERT_EQ(result.matrix.stages.size(), 2u);
    trunks[run] = detached_clones(model->shared_parameters());
  }
  bool differs = false;
  for (size_t k = 0; k < trunks[0].size(); ++k) differs |= !torch::allclose(trunks[0][k], trunks[1][k]);
  EXPECT_TRUE(differs) << "lwf.lambda has no effect on training";
}

// ---------------------------------------------------------------- 8. pruning

TEST(Pruning, FractionsFollowTheDecayedBudget) {
  const std::vector<std::vector<double>> expected{
      {0.1, 0.2, 0.3, 0.4, 0.5},  // t=1: 0.5
      {0.1, 0.2, 0.3, 0.4},       // t=2: 0.4
      {0.1, 0.2, 0.3},            // t=3: 0.32
      {0.1, 0.2},                 // t=4: 0.256
      {0.1, 0.2},                 // t=5: 0.2048
      {0.1},                      // t=6: 0.16384
      {0.1},                      // t=7: 0.131
      {0.1},                      // t=8: 0.105
      {0.1},                      // t=9: 0.0839 (< step: one step)
      {0.1},                      // t=10: 0.067
  };
  for (int t = 1; t <= 10; ++t) {
    const auto got = pruning_fractions(t, 0.5, 0.8, 0.1);
    ASSERT_EQ(got.size(), expected[t - 1].size()) << "task " << t;
    for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], expected[t - 1][k], 1e-12) << "task " << t;
  }
  EXPECT_THROW(pruning_fractions(0, 0.5, 0.8, 0.1), Error);
  EXPECT_THROW(pruning_fractions(1, 0.5, 0.8, 0.0), Error);
}

namespace {
torch::Tensor bools(std::vector<int> v) {
  torch::Tensor t = torch::zeros({static_cast<int64_t>(v.size())}, torch::kBool);
  for (size_t k = 0; k < v.size(); ++k) t[k] = static_cast<bool>(v[k]);
  return t;
}
}  // namespace

TEST(Pruning, LowestScoringPerTensor) {
  const NamedTensors score{{"w", torch::tensor({0.5f, 0.1f, 0.3f, 0.2f})}};
  // All candidates, half: positions 1 (0.1) and 3 (0.2).
  auto free = lowest_scoring(score, {{"w", bools({1, 1, 1, 1})}}, 0.5, false);
  ASSERT_EQ(free.size(), 1u);
  EXPECT_EQ(free[0].first, "w");
  EXPECT_EQ(free[0].second.scalar_type(), torch::kBool);
  EXPECT_TRUE(torch::equal(free[0].second, bools({0, 1, 0, 1})));
  // Position 1 is not a candidate: never freed; the fraction counts the 3 candidates
  // (1/3 of 3 = 1: position 3; 2/3 of 3 = 2: positions 3 and 2).
  free = lowest_scoring(score, {{"w", bools({1, 0, 1, 1})}}, 1.0 / 3.0, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({0, 0, 0, 1})));
  free = lowest_scoring(score, {{"w", bools({1, 0, 1, 1})}}, 2.0 / 3.0, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({0, 0, 1, 1})));
  free = lowest_scoring(score, {{"w", bools({1, 0, 1, 1})}}, 1.0, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({1, 0, 1, 1})));
  // Rounded to the nearest count: 0.3 * 4 = 1.2 -> 1; 0.4 * 4 = 1.6 -> 2.
  EXPECT_EQ(lowest_scoring(score, {{"w", bools({1, 1, 1, 1})}}, 0.3, false)[0].second.sum().item<int64_t>(), 1);
  EXPECT_EQ(lowest_scoring(score, {{"w", bools({1, 1, 1, 1})}}, 0.4, false)[0].second.sum().item<int64_t>(), 2);
  // Ties go to the lower position.
  free = lowest_scoring({{"w", torch::tensor({0.2f, 0.1f, 0.1f, 0.1f})}}, {{"w", bools({1, 1, 1, 1})}}, 0.5, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({0, 1, 1, 0})));
  // Shapes are kept.
  free = lowest_scoring({{"m", torch::tensor({0.5f, 0.1f, 0.3f, 0.2f}).view({2, 2})}},
                        {{"m", bools({1, 1, 1, 1}).view({2, 2})}}, 0.5, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({0, 1, 0, 1}).view({2, 2})));
  EXPECT_THROW(lowest_scoring(score, {{"w", bools({1, 1, 1, 1})}}, 1.5, false), Error);
}

TEST(Pruning, GlobalThresholdPoolsTensors) {
  const NamedTensors score{{"a", torch::tensor({0.5f, 0.4f})}, {"b", torch::tensor({0.1f, 0.2f, 0.3f, 0.05f})}};
  const NamedTensors all{{"a", bools({1, 1})}, {"b", bools({1, 1, 1, 1})}};
  // Per tensor, half of each: a frees 0.4 (position 1); b frees 0.05 and 0.1 (positions 3, 0).
  auto per_tensor = lowest_scoring(score, all, 0.5, false);
  EXPECT_TRUE(torch::equal(per_tensor[0].second, bools({0, 1})));
  EXPECT_TRUE(torch::equal(per_tensor[1].second, bools({1, 0, 0, 1})));
  // Global, half of 6 = 3 lowest overall: 0.05, 0.1, 0.2, all in b.
  auto global = lowest_scoring(score, all, 0.5, true);
  EXPECT_EQ(global[0].first, "a");
  EXPECT_EQ(global[1].first, "b");
  EXPECT_TRUE(torch::equal(global[0].second, bools({0, 0})));
  EXPECT_TRUE(torch::equal(global[1].second, bools({1, 1, 0, 1})));
  // Global with candidates: b's position 1 (0.2) excluded; 5 candidates, 0.4 -> 2: 0.05 and 0.1.
  global = lowest_scoring(score, {{"a", bools({1, 1})}, {"b", bools({1, 0, 1, 1})}}, 0.4, true);
  EXPECT_TRUE(torch::equal(global[0].second, bools({0, 0})));
  EXPECT_TRUE(torch::equal(global[1].second, bools({1, 0, 0, 1})));
}

// ---------------------------------------------------------------- 9. ANPyC with pruning

TEST(AnpycStrategy, PruningFreesTheBudgetKeepsFreeWeightsAtZeroAndFreeSetsOnlyShrink) {
  TaskStream stream = tiny_stream(3, 2, 8);
  MultiHeadModel model = tiny_mlp(stream, {8, 5}, 33);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.lambda = 1.0;
  options.prune = true;
  options.first_budget = 0.3;
  options.decay = 0.8;
  options.step = 0.1;
  options.retrain_epochs = 1;
  AnpycStrategy anpyc(options);
  TrainerConfig config = tiny_trainer_config(4, 2);
  config.momentum = 0.9;       // free weights must stay zero under momentum ...
  config.weight_decay = 0.01;  // ... and weight decay
  Trainer trainer(config, comm, stream, model.ptr(), anpyc, log);

  auto weight_indices = [&] {
    std::vector<size_t> out;
    const auto named = model->named_shared_parameters();
    for (size_t k = 0; k < named.size(); ++k)
      if (named[k].second.dim() >= 2) out.push_back(k);
    return out;
  };
  ASSERT_EQ(weight_indices().size(), 2u);

  // ---- task 1: budget 0.3 in steps 0.1, 0.2, 0.3
  trainer.train_stage(0, {0});
  NamedTensors masks1;
  for (const auto& m : anpyc.masks()) masks1.emplace_back(m.first, m.second.clone());
  auto params = model->shared_parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    SCOPED_TRACE(masks1[k].first);
    const torch::Tensor free = masks1[k].second.eq(0);
    if (params[k].dim() >= 2) {
      EXPECT_EQ(free.sum().item<int64_t>(), std::llround(0.3 * static_cast<double>(params[k].numel())));
      EXPECT_TRUE(params[k].detach().masked_select(free).eq(0).all().item<bool>()) << "free weights are not zero";
      EXPECT_TRUE(params[k].detach().masked_select(free.logical_not()).ne(0).any().item<bool>());
    } else {
      EXPECT_FALSE(free.any().item<bool>()) << "biases are never masked";
    }
  }
  // Omega_1 is computed on the final weights (after the last retraining); zero on free weights.
  const auto omega1 = reference_entropy_taylor(*model, stream.tasks[0].train, 0, 4, -1.0);
  expect_all_close(anpyc.omega(), omega1, 1e-5, 1e-7);
  for (size_t k : weight_indices())
    EXPECT_TRUE(anpyc.omega()[k].second.masked_select(masks1[k].second.eq(0)).eq(0).all().item<bool>());

  // ---- task 2: budget 0.24 -> steps 0.1, 0.2 of the weights free after task 1
  trainer.train_stage(1, {1});
  NamedTensors masks2;
  for (const auto& m : anpyc.masks()) masks2.emplace_back(m.first, m.second.clone());
  params = model->shared_parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    SCOPED_TRACE(masks2[k].first);
    const torch::Tensor free1 = masks1[k].second.eq(0), free2 = masks2[k].second.eq(0);
    EXPECT_TRUE(free2.logical_and(free1.logical_not()).any().item<bool>() == false) << "free set grew";
    EXPECT_TRUE(masks2[k].second.masked_select(free1.logical_not()).eq(1).all().item<bool>())
        << "a weight used by task 1 became free";
    if (params[k].dim() >= 2) {
      EXPECT_EQ(free2.sum().item<int64_t>(), std::llround(0.2 * static_cast<double>(free1.sum().item<int64_t>())));
      EXPECT_TRUE(params[k].detach().masked_select(free2).eq(0).all().item<bool>()) << "free weights are not zero";
      // Task 2 took over some of the weights task 1 left free.
      EXPECT_TRUE(params[k].detach().masked_select(free1.logical_and(free2.logical_not())).ne(0).any().item<bool>());
    } else {
      EXPECT_FALSE(free2.any().item<bool>());
    }
  }
  const auto omega2 = reference_entropy_taylor(*model, stream.tasks[1].train, 1, 4, -1.0);
  std::vector<torch::Tensor> sum;
  for (size_t k = 0; k < omega1.size(); ++k) sum.push_back(omega1[k] + omega2[k]);
  expect_all_close(anpyc.omega(), sum, 1e-5, 1e-7);

  // ---- task 3 (last): no pruning, every weight used
  trainer.train_stage(2, {2});
  for (const auto& m : anpyc.masks()) EXPECT_TRUE(m.second.eq(1).all().item<bool>()) << m.first;
}

TEST(AnpycStrategy, GlobalThresholdFreesTheBudgetOverAllWeights) {
  TaskStream stream = tiny_stream(2, 2, 8);
  MultiHeadModel model = tiny_mlp(stream, {8, 5}, 34);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.first_budget = 0.3;
  options.step = 0.1;
  options.threshold = "global";
  AnpycStrategy anpyc(options);
  Trainer trainer(tiny_trainer_config(4), comm, stream, model.ptr(), anpyc, log);
  trainer.train_stage(0, {0});
  int64_t free = 0, weights = 0;
  const auto params = model->shared_parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    if (params[k].dim() < 2) continue;
    weights += params[k].numel();
    free += anpyc.masks()[k].second.eq(0).sum().item<int64_t>();
    EXPECT_TRUE(params[k].detach().masked_select(anpyc.masks()[k].second.eq(0)).eq(0).all().item<bool>());
  }
  EXPECT_EQ(free, std::llround(0.3 * static_cast<double>(weights)));
}

TEST(AnpycStrategy, RejectsImpossibleOptions) {
  AnpycOptions bad;
  bad.sign = 0.5;
  EXPECT_THROW(AnpycStrategy{bad}, Error);
  bad = AnpycOptions();
  bad.accumulate = "mean";
  EXPECT_THROW(AnpycStrategy{bad}, Error);
  bad = AnpycOptions();
  bad.step = 0.6;
  EXPECT_THROW(AnpycStrategy{bad}, Error);
  bad = AnpycOptions();
  bad.threshold = "median";
  EXPECT_THROW(AnpycStrategy{bad}, Error);
}

// ---------------------------------------------------------------- 10. SGD-F

TEST(SgdfStrategy, TrunkFrozenAfterTask1OnlyTheNewHeadTrains) {
  TaskStream stream = tiny_stream(2, 2, 8);
  MultiHeadModel model = tiny_mlp(stream, {4}, 35);
  SingleCommunicator comm;
  Logger log(1, "");
  SgdfStrategy sgdf;
  Trainer trainer(tiny_trainer_config(4, 2), comm, stream, model.ptr(), sgdf, log);
  const auto trunk0 = detached_clones(model->shared_parameters());
  trainer.train_stage(0, {0});
  const auto trunk1 = detached_clones(model->shared_parameters());
  const auto head1 = detached_clones(model->head_parameters(0));
  const auto head2 = detached_clones(model->head_parameters(1));
  bool trunk_trained = false;
  for (size_t k = 0; k < trunk0.size(); ++k) trunk_trained |= !torch::equal(trunk0[k], trunk1[k]);
  EXPECT_TRUE(trunk_trained) << "task 1 must train the trunk";

  trainer.train_stage(1, {1});
  const auto trunk = model->shared_parameters();
  for (size_t k = 0; k < trunk.size(); ++k) EXPECT_TRUE(torch::equal(trunk[k], trunk1[k])) << "trunk changed in stage 2";
  for (size_t k = 0; k < head1.size(); ++k) EXPECT_TRUE(torch::equal(model->head_parameters(0)[k], head1[k]));
  bool head_trained = false;
  for (size_t k = 0; k < head2.size(); ++k) head_trained |= !torch::equal(model->head_parameters(1)[k], head2[k]);
  EXPECT_TRUE(head_trained) << "head 2 must train in stage 2";
}
