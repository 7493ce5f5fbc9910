// Continual-learning algorithms (DESIGN.md 4.2-4.3) against reference values
// computed independently here: a hand-written double-precision forward pass
// with its own autograd calls (tests/algorithm_test_support.h), or hand
// arithmetic. One process (SingleCommunicator); the multi-rank counterparts
// are in test_mpi_anpyc.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "algorithms/anpyc.h"
#include "algorithms/ewc.h"
#include "algorithms/importance.h"
#include "algorithms/lwf.h"
#include "algorithms/mas.h"
#include "algorithms/parameter_tensors.h"
#include "algorithms/pruning.h"
#include "algorithms/registry.h"
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

// Models and training live on CLX_TEST_DEVICE (default cpu); the references
// of algorithm_test_support.h are computed on the CPU in double precision.
const torch::Device kDevice = test_device();

MultiHeadModel device_mlp(const TaskStream& stream, std::vector<int64_t> hidden, uint64_t seed, double dropout = 0.0) {
  return tiny_mlp(stream, std::move(hidden), seed, dropout, kDevice);
}

TrainerConfig tiny_trainer_config(int64_t batch, int64_t epochs = 1) {
  TrainerConfig config;
  config.batch_size = batch;
  config.epochs = epochs;
  config.lr = 0.1;
  config.progress_seconds = 1e9;
  config.device = kDevice;
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

// Drawn on the CPU (the same values on every device), placed on the parameters' device.
std::vector<torch::Tensor> random_like_shared(MultiHeadModel& model, double scale, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> out;
  for (auto& p : model->shared_parameters()) out.push_back((torch::randn(p.sizes()) * scale).to(p.options()));
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
  // 6 training samples per task, importance batch 4: two batches of 4 and 2 samples. Heads of size 3.
  TaskStream stream = tiny_stream(2, 3, 6);
  ASSERT_EQ(stream.tasks[1].train.size(), 6);
  // Dropout in the trunk: the pass must run in eval mode (the reference has no dropout).
  MultiHeadModel model = device_mlp(stream, {3}, 21, /*dropout=*/0.5);
  model->train();
  SingleCommunicator comm;
  Logger log(1, "");
  StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, 32);

  for (const bool summed : {true, false}) {
    NamedTensors by_sign[2];
    for (int s = 0; s < 2; ++s) {
      EntropyTaylorSettings settings;
      settings.batch = 4;
      settings.sign = s == 0 ? -1.0 : 1.0;
      settings.entropy = summed ? EntropyReduction::Sum : EntropyReduction::Mean;
      SCOPED_TRACE("sign " + std::to_string(settings.sign) + (summed ? ", summed" : ", mean") + " entropy");
      by_sign[s] = entropy_taylor_importance(ctx, 1, settings);
      EXPECT_TRUE(model->is_training()) << "the importance pass must restore training mode";
      ASSERT_EQ(by_sign[s].size(), 2u);
      EXPECT_EQ(by_sign[s][0].first, "trunk.1.weight");
      EXPECT_EQ(by_sign[s][1].first, "trunk.1.bias");
      EntropyTaylorReference how;
      how.batch = 4;
      how.sign = settings.sign;
      how.summed = summed;
      expect_all_close(by_sign[s], reference_entropy_taylor(*model, stream.tasks[1].train, 1, how));
      for (const auto& item : by_sign[s]) EXPECT_GE(item.second.min().item<double>(), 0.0) << item.first;
    }
    // s = -1: some element is clamped to exactly 0 although its unclamped Taylor term is negative.
    EntropyTaylorReference unclamped;
    unclamped.batch = 4;
    unclamped.sign = -1.0;
    unclamped.summed = summed;
    unclamped.clamp = false;
    const auto raw = reference_entropy_taylor(*model, stream.tasks[1].train, 1, unclamped);
    int64_t clamped = 0;
    for (size_t k = 0; k < raw.size(); ++k)
      clamped += by_sign[0][k].second.eq(0).logical_and(raw[k].lt(-1e-9)).sum().item<int64_t>();
    EXPECT_GT(clamped, 0) << "no element exercised the max(0, .) clamp";
    bool differs = false;
    for (size_t k = 0; k < raw.size(); ++k) differs |= !torch::allclose(by_sign[0][k].second, by_sign[1][k].second);
    EXPECT_TRUE(differs) << "the sign changes nothing";
  }
}

TEST(EntropyTaylorImportance, PerSampleFisherHessianMatchesOneAutogradCallPerSample) {
  TaskStream stream = tiny_stream(2, 3, 7);
  SingleCommunicator comm;
  Logger log(1, "");
  for (const double dropout : {0.0, 0.5}) {
    // With dropout the trunk is Linear, ReLU, Dropout: the batched path must run it in eval mode.
    MultiHeadModel model = device_mlp(stream, {4, 3}, 26, dropout);
    StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, 32);
    for (const int64_t batch : {3, 100}) {
      SCOPED_TRACE("dropout " + std::to_string(dropout) + ", batch " + std::to_string(batch));
      EntropyTaylorSettings settings;
      settings.batch = batch;
      settings.hessian = HessianEstimate::Fisher;
      EntropyTaylorReference how;
      how.batch = batch;
      how.fisher = true;
      expect_all_close(entropy_taylor_importance(ctx, 1, settings),
                       reference_entropy_taylor(*model, stream.tasks[1].train, 1, how), 1e-4, 1e-7);
    }
  }
}

TEST(EntropyTaylorImportance, BatchOfOneAndWholeTaskBatchesAlsoMatch) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = device_mlp(stream, {3}, 22);
  SingleCommunicator comm;
  Logger log(1, "");
  StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 32);
  for (int64_t batch : {1, 6, 100}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    EntropyTaylorSettings settings;
    settings.batch = batch;
    EntropyTaylorReference how;
    how.batch = batch;
    expect_all_close(entropy_taylor_importance(ctx, 0, settings),
                     reference_entropy_taylor(*model, stream.tasks[0].train, 0, how), 1e-5, 1e-8);
  }
  EntropyTaylorSettings none;
  none.batch = 0;
  expect_error([&] { entropy_taylor_importance(ctx, 0, none); }, {"anpyc.importance_batch: must be positive"});
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
    accumulate_into(total, add, Accumulation::Sum);
    EXPECT_TRUE(torch::equal(total[0].second, torch::tensor({1.5f, -1.0f, 4.0f, 1.5f}).view({2, 2})));
    EXPECT_TRUE(torch::equal(total[1].second, torch::tensor({3.0f, 2.0f})));
    EXPECT_EQ(total[0].first, "w");
  }
  {
    NamedTensors total = make({0.5, 1, 1, 1}, {-1, 2});
    accumulate_into(total, add, Accumulation::Max);
    EXPECT_TRUE(torch::equal(total[0].second, torch::tensor({1.0f, 1.0f, 3.0f, 1.0f}).view({2, 2})));
    EXPECT_TRUE(torch::equal(total[1].second, torch::tensor({4.0f, 2.0f})));
  }
  NamedTensors shorter{{"w", torch::zeros({2, 2})}};
  EXPECT_THROW(accumulate_into(shorter, add, Accumulation::Sum), Error);
}

// ---------------------------------------------------------------- 3. consolidation

TEST(Consolidation, QuadraticPullIsTheGradientOfTheQuadraticPenalty) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = device_mlp(stream, {3}, 23);
  const double lambda = 0.7;
  torch::manual_seed(99);
  NamedTensors omega, old;
  for (const auto& [name, p] : model->named_shared_parameters()) {
    omega.emplace_back(name, torch::rand(p.sizes()).to(p.options()));
    old.emplace_back(name, p.detach() + (0.3 * torch::randn(p.sizes())).to(p.options()));
  }
  const auto known = random_like_shared(model, 1.0, 5);
  set_shared_grads(model, known);
  add_quadratic_pull(*model, QuadraticTerm{omega, old, 2.0 * lambda});

  // Reference: autograd of lambda * sum Omega (theta - theta_old)^2 in double.
  std::vector<torch::Tensor> theta;
  torch::Tensor energy = torch::zeros({}, torch::kFloat64);
  for (size_t k = 0; k < omega.size(); ++k) {
    theta.push_back(model->shared_parameters()[k].detach().to(torch::kCPU, torch::kFloat64).requires_grad_(true));
    energy = energy + (omega[k].second.to(torch::kCPU, torch::kFloat64) * (theta[k] - old[k].second.to(torch::kCPU, torch::kFloat64)).pow(2)).sum();
  }
  const auto pull = torch::autograd::grad({lambda * energy}, theta);
  const auto parameters = model->shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k)
    EXPECT_TRUE(all_close(parameters[k].grad(), known[k].to(torch::kCPU, torch::kFloat64) + pull[k], kRtol, 1e-6)) << k;
  EXPECT_NEAR(quadratic_energy(*model, omega, old), energy.item<double>(), 1e-6 * std::abs(energy.item<double>()));

  // A hand example on one element: grad 0.5, Omega 2, theta - theta_old = 0.25, lambda 0.7:
  // 0.5 + 2 * 0.7 * 2 * 0.25 = 1.2. Energy 2 * 0.0625 = 0.125.
  {
    torch::NoGradGuard no_grad;
    NamedTensors one_omega = zeros_like_shared(*model), one_old = snapshot_shared(*model);
    one_omega[0].second.view(-1)[0] = 2.0f;
    one_old[0].second.view(-1)[0] -= 0.25f;
    for (auto& p : parameters) p.mutable_grad() = torch::full(p.sizes(), 0.5f, p.options());
    add_quadratic_pull(*model, QuadraticTerm{one_omega, one_old, 2.0 * lambda});
    EXPECT_NEAR(parameters[0].grad().view(-1)[0].item<double>(), 1.2, 1e-6);
    EXPECT_NEAR(parameters[0].grad().view(-1)[1].item<double>(), 0.5, 1e-7);
    EXPECT_NEAR(quadratic_energy(*model, one_omega, one_old), 0.125, 1e-6);
  }
  // A parameter without a gradient (not trained in this stage) is left alone.
  parameters[1].mutable_grad() = torch::Tensor();
  add_quadratic_pull(*model, QuadraticTerm{omega, old, 2.0 * lambda});
  EXPECT_FALSE(parameters[1].grad().defined());
}

TEST(Consolidation, ProximalStepIsTheClosedFormMinimiserOfTheSgdStepPlusPenalty) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = device_mlp(stream, {3}, 23);
  const auto parameters = model->shared_parameters();
  // Hand case on element 0 of the first tensor: theta 1, anchor 0.5, Omega 2,
  // coefficient 2 lambda = 3, lr 0.1: c = 0.1 * 3 * 2 = 0.6, theta <- (1 + 0.6 * 0.5) / 1.6 = 0.8125.
  // A second term (Omega 1, anchor -1, coefficient 1): theta <- (1 + 0.3 - 0.1) / (1 + 0.6 + 0.1) = 1.2 / 1.7.
  NamedTensors omega = zeros_like_shared(*model), anchor = snapshot_shared(*model);
  NamedTensors omega2 = zeros_like_shared(*model), anchor2 = snapshot_shared(*model);
  {
    torch::NoGradGuard no_grad;
    parameters[0].view(-1)[0] = 1.0f;
    anchor[0].second.view(-1)[0] = 0.5f;
    omega[0].second.view(-1)[0] = 2.0f;
    anchor2[0].second.view(-1)[0] = -1.0f;
    omega2[0].second.view(-1)[0] = 1.0f;
    for (const auto& p : parameters) p.mutable_grad() = torch::zeros_like(p);
  }
  const torch::Tensor before = parameters[0].detach().clone();
  apply_proximal_pull(*model, {QuadraticTerm{omega, anchor, 3.0}}, 0.1);
  EXPECT_NEAR(parameters[0].view(-1)[0].item<double>(), 0.8125, 1e-7);
  // Omega 0 elsewhere: c = 0, nothing moves.
  EXPECT_TRUE(torch::equal(parameters[0].detach().view(-1).narrow(0, 1, parameters[0].numel() - 1),
                           before.view(-1).narrow(0, 1, parameters[0].numel() - 1)));
  {
    torch::NoGradGuard no_grad;
    parameters[0].view(-1)[0] = 1.0f;
  }
  apply_proximal_pull(*model, {QuadraticTerm{omega, anchor, 3.0}, QuadraticTerm{omega2, anchor2, 1.0}}, 0.1);
  EXPECT_NEAR(parameters[0].view(-1)[0].item<double>(), 1.2 / 1.7, 1e-7);
  // penalty_after_backward / penalty_after_step act only under their own step.
  const torch::Tensor moved = parameters[0].detach().clone();
  penalty_after_step(PenaltyStep::Explicit, *model, {QuadraticTerm{omega, anchor, 3.0}}, 0.1);
  EXPECT_TRUE(torch::equal(parameters[0], moved));
  penalty_after_backward(PenaltyStep::Proximal, *model, {QuadraticTerm{omega, anchor, 3.0}});
  EXPECT_TRUE(parameters[0].grad().eq(0).all().item<bool>());
  expect_error([&] { apply_proximal_pull(*model, {QuadraticTerm{omega, anchor, 3.0}}, 0.0); },
               {"train.penalty_step=proximal", "learning rate"});
}

// One weight under plain SGD with only the penalty lambda Omega (theta - theta*)^2:
// the explicit step multiplies the distance by 1 - lr 2 lambda Omega, which
// diverges once that exceeds 2 in size; the proximal step divides it by
// 1 + lr 2 lambda Omega and converges at any strength.
TEST(Consolidation, ProximalStepStaysStableWhereTheExplicitStepDiverges) {
  TaskStream stream = tiny_stream(2, 2, 6);
  const double lr = 0.1, omega_value = 1.0;
  for (const double lambda : {5.0, 50.0, 5e5}) {
    SCOPED_TRACE("lambda " + std::to_string(lambda));
    double distance[2];
    for (const PenaltyStep step : {PenaltyStep::Explicit, PenaltyStep::Proximal}) {
      MultiHeadModel model = device_mlp(stream, {3}, 27);
      NamedTensors omega = zeros_like_shared(*model);
      for (auto& item : omega) item.second.fill_(omega_value);
      const NamedTensors anchor = zeros_like_shared(*model);
      const auto parameters = model->shared_parameters();
      {
        torch::NoGradGuard no_grad;
        for (const auto& p : parameters) p.fill_(1.0);  // every weight 1 away from its anchor 0
      }
      const std::vector<QuadraticTerm> terms{QuadraticTerm{omega, anchor, 2.0 * lambda}};
      for (int iteration = 0; iteration < 3; ++iteration) {
        for (const auto& p : parameters) p.mutable_grad() = torch::zeros_like(p);
        penalty_after_backward(step, *model, terms);
        {
          torch::NoGradGuard no_grad;
          for (const auto& p : parameters) p.sub_(p.grad() * lr);  // plain SGD
        }
        penalty_after_step(step, *model, terms, lr);
      }
      distance[step == PenaltyStep::Proximal] = parameters[0].abs().max().item<double>();
    }
    const double factor = lr * 2.0 * lambda * omega_value;  // 1, 10, 1e5
    const double proximal = std::pow(1.0 / (1.0 + factor), 3);
    EXPECT_NEAR(distance[1], proximal, 1e-5 * proximal) << "proximal";
    EXPECT_NEAR(distance[0], std::pow(std::abs(1.0 - factor), 3), 1e-5 * std::pow(std::abs(1.0 - factor), 3))
        << "explicit: |1 - lr 2 lambda Omega|^3";
    if (factor > 2.0) EXPECT_GT(distance[0], 100.0) << "the explicit step diverges";
  }
}

TEST(AnpycStrategy, ConsolidatesWithTwiceLambdaOmegaTimesDriftFromTask2On) {
  for (const Accumulation mode : {Accumulation::Sum, Accumulation::Max}) {
    SCOPED_TRACE(mode == Accumulation::Sum ? "accumulate sum" : "accumulate max");
    TaskStream stream = tiny_stream(2, 2, 6);
    MultiHeadModel model = device_mlp(stream, {3}, 24);
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
    const auto omega1 = reference_entropy_taylor(*model, stream.tasks[0].train, 0, EntropyTaylorReference{});
    expect_all_close(anpyc.omega(), omega1, 1e-5, 1e-8);
    for (const auto& mask : anpyc.masks()) EXPECT_TRUE(mask.second.eq(1).all().item<bool>()) << mask.first;

    StageContext ctx1 = hand_context(model, comm, stream, log, 1, {1}, 4);
    anpyc.before_task(ctx1);
    const auto drift = random_like_shared(model, 0.2, 33);
    shift_shared(model, drift);
    set_shared_grads(model, g);
    anpyc.after_backward(ctx1);
    const auto parameters = model->shared_parameters();
    for (size_t k = 0; k < g.size(); ++k)
      EXPECT_TRUE(all_close(parameters[k].grad(), g[k].to(torch::kCPU, torch::kFloat64) + 2.0 * 1.5 * omega1[k] * drift[k].to(torch::kCPU, torch::kFloat64),
                            kRtol, 1e-6))
          << k;
    anpyc.after_task(ctx1);
    const auto omega2 = reference_entropy_taylor(*model, stream.tasks[1].train, 1, EntropyTaylorReference{});
    std::vector<torch::Tensor> expected;
    for (size_t k = 0; k < omega1.size(); ++k)
      expected.push_back(mode == Accumulation::Sum ? omega1[k] + omega2[k] : torch::maximum(omega1[k], omega2[k]));
    expect_all_close(anpyc.omega(), expected, 1e-5, 1e-8);

    std::set<std::string> names;
    for (const auto& item : anpyc.state()) names.insert(item.first);
    for (const char* name : {"omega.trunk.1.weight", "theta_old.trunk.1.bias", "mask.trunk.1.weight"})
      EXPECT_TRUE(names.count(name)) << name;
  }
}

// ---------------------------------------------------------------- 4. EWC

TEST(EwcFisher, TrueLabelsArePerSampleSquaredGradientsNotTheSquaredMean) {
  TaskStream stream = tiny_stream(2, 3, 6);
  MultiHeadModel model = device_mlp(stream, {3}, 25);
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
  MultiHeadModel model = device_mlp(stream, {3}, 26);
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
  config.kind = clx::StreamKind::Split;
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
  MultiHeadModel model = device_mlp(stream, {7, 5}, 31, /*dropout=*/0.3);
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

TEST(EwcFisher, BatchedPathEqualsPerSampleLoopThroughTransposedConvolutions) {
  // The generators' upsampling (models/generative.h): stride 2 with padding 1,
  // and output padding, dilation and no bias on the second layer.
  TaskStream stream = one_task_stream(20, 2, 4);
  torch::manual_seed(38);
  namespace nn = torch::nn;
  nn::Sequential trunk(nn::ConvTranspose2d(nn::ConvTranspose2dOptions(2, 3, 4).stride(2).padding(1)),  // 3 x 8 x 8
                       nn::BatchNorm2d(3), nn::ReLU(),
                       nn::ConvTranspose2d(nn::ConvTranspose2dOptions(3, 2, 3)
                                               .stride(2).padding(2).output_padding(1).dilation(2).bias(false)),
                       nn::ReLU(), nn::Flatten());                                                  // 2 x 16 x 16
  MultiHeadModel model(trunk, 512, std::vector<int64_t>{2});
  randomise_batch_norms(*model, 39);
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
  for (const EwcMode mode : {EwcMode::Separate, EwcMode::Online}) {
    SCOPED_TRACE(mode == EwcMode::Separate ? "separate" : "online");
    TaskStream stream = tiny_stream(3, 2, 6);
    MultiHeadModel model = device_mlp(stream, {3}, 27);
    SingleCommunicator comm;
    Logger log(1, "");
    EwcOptions options;
    options.lambda = 4.0;
    options.labels = FisherLabels::True;
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
      const torch::Tensor t = theta[k].detach().to(torch::kCPU, torch::kFloat64);
      torch::Tensor expected = g[k].to(torch::kCPU, torch::kFloat64);
      if (mode == EwcMode::Separate)
        expected = expected + 4.0 * f1[k] * (t - anchor1[k].to(torch::kCPU, torch::kFloat64)) +
                   4.0 * f2[k] * (t - anchor2[k].to(torch::kCPU, torch::kFloat64));
      else
        expected = expected + 4.0 * (0.5 * f1[k] + f2[k]) * (t - anchor2[k].to(torch::kCPU, torch::kFloat64));
      EXPECT_TRUE(all_close(theta[k].grad(), expected, kRtol, 1e-6)) << k;
    }
    if (mode == EwcMode::Separate) {
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

TEST(MasImportance, BatchFormIsTheMeanOverBatchesOfTheAbsoluteBatchGradient) {
  TaskStream stream = tiny_stream(2, 3, 6);
  MultiHeadModel model = device_mlp(stream, {4}, 28);
  SingleCommunicator comm;
  Logger log(1, "");
  for (int64_t batch : {4, 1, 6}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, batch);
    expect_all_close(mas_importance(ctx, 1, MasForm::Batch), reference_mas(*model, stream.tasks[1].train, 1, batch));
  }
}

TEST(MasImportance, PerSampleFormMatchesOneAutogradCallPerSample) {
  // 300 samples: three chunks of the batched per-sample pass (128, 128, 44).
  TaskStream stream = tiny_split_stream("tiny", 2, 3, 300, 5, [](int64_t, int64_t classes, uint64_t seed) {
    return tiny_images(classes * 120, classes, seed);
  });
  ASSERT_EQ(stream.tasks[1].train.size(), 300);
  MultiHeadModel model = device_mlp(stream, {5, 4}, 29, /*dropout=*/0.5);
  model->train();
  SingleCommunicator comm;
  Logger log(1, "");
  StageContext ctx = hand_context(model, comm, stream, log, 1, {1}, 10);
  const NamedTensors per_sample = mas_importance(ctx, 1, MasForm::PerSample);
  expect_all_close(per_sample, reference_mas_per_sample(*model, stream.tasks[1].train, 1), 1e-4, 1e-7);
  // Not the batch form: with equal batches of 10, |mean of gradients| <= mean of |gradients|, strictly somewhere.
  const NamedTensors batch = mas_importance(ctx, 1, MasForm::Batch);
  bool larger = false;
  for (size_t k = 0; k < batch.size(); ++k) {
    EXPECT_TRUE(batch[k].second.le(per_sample[k].second * (1 + 1e-5) + 1e-7).all().item<bool>()) << batch[k].first;
    larger |= per_sample[k].second.gt(batch[k].second * 1.01 + 1e-7).any().item<bool>();
  }
  EXPECT_TRUE(larger);
}

TEST(MasStrategy, SumsImportanceOverTasksAndPullsWithTwiceLambda) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = device_mlp(stream, {3}, 29);
  SingleCommunicator comm;
  Logger log(1, "");
  MasOptions options;
  options.lambda = 0.8;
  MasStrategy mas(options);
  StageContext ctx0 = hand_context(model, comm, stream, log, 0, {0}, 4);
  mas.after_task(ctx0);
  const auto o1 = reference_mas_per_sample(*model, stream.tasks[0].train, 0);
  expect_all_close(mas.omega(), o1);
  StageContext ctx1 = hand_context(model, comm, stream, log, 1, {1}, 4);
  mas.before_task(ctx1);
  const auto drift = random_like_shared(model, 0.2, 51);
  shift_shared(model, drift);
  const auto g = random_like_shared(model, 1.0, 52);
  set_shared_grads(model, g);
  mas.after_backward(ctx1);
  for (size_t k = 0; k < g.size(); ++k)
    EXPECT_TRUE(all_close(model->shared_parameters()[k].grad(),
                          g[k].to(torch::kCPU, torch::kFloat64) + 2.0 * 0.8 * o1[k] * drift[k].to(torch::kCPU, torch::kFloat64), kRtol, 1e-6));
  mas.after_task(ctx1);
  const auto o2 = reference_mas_per_sample(*model, stream.tasks[1].train, 1);
  std::vector<torch::Tensor> sum;
  for (size_t k = 0; k < o1.size(); ++k) sum.push_back(o1[k] + o2[k]);
  expect_all_close(mas.omega(), sum);
}

// ---------------------------------------------------------------- 6. SI

TEST(SiStrategy, PathIntegralUsesTaskGradientAndActualUpdates) {
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = device_mlp(stream, {3}, 30);
  SingleCommunicator comm;
  Logger log(1, "");
  SiOptions options;
  options.c = 0.3;
  options.xi = 0.1;
  SiStrategy si(options);
  const size_t n = model->shared_parameters().size();
  auto to64 = [](const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat64); };

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
  int64_t negative = 0;
  for (size_t k = 0; k < n; ++k) {
    omega1[k] = (w[k] / (total[k].pow(2) + 0.1)).clamp_min(0.0);
    negative += w[k].lt(0).sum().item<int64_t>();
  }
  EXPECT_GT(negative, 0) << "no path integral was negative: the clamp is not exercised";
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
  for (size_t k = 0; k < n; ++k) omega2[k] = omega1[k] + (w[k] / (total[k].pow(2) + 0.1)).clamp_min(0.0);
  expect_all_close(si.omega(), omega2, 1e-4, 1e-6);
}

TEST(SiStrategy, NegativePathIntegralGivesZeroImportanceNotANegativeOne) {
  // One step on one element: gradient +1 and update +0.5 (a step up the loss) give
  // w = -0.5 and Omega = max(0, -0.5 / (0.25 + 0.1)) = 0; gradient -2 with the same
  // update gives w = 1 and Omega = 1 / 0.35.
  TaskStream stream = tiny_stream(2, 2, 6);
  MultiHeadModel model = device_mlp(stream, {3}, 30);
  SingleCommunicator comm;
  Logger log(1, "");
  SiStrategy si(SiOptions{});
  StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 4);
  si.before_task(ctx);
  std::vector<torch::Tensor> g, d;
  for (const auto& p : model->shared_parameters()) {
    g.push_back(torch::zeros_like(p));
    d.push_back(torch::zeros_like(p));
  }
  g[0].view(-1)[0] = 1.0f;
  g[0].view(-1)[1] = -2.0f;
  d[0].view(-1)[0] = 0.5f;
  d[0].view(-1)[1] = 0.5f;
  set_shared_grads(model, g);
  si.after_backward(ctx);
  shift_shared(model, d);
  si.after_step(ctx);
  si.after_task(ctx);
  EXPECT_NEAR(si.path_integral()[0].second.view(-1)[0].item<double>(), -0.5, 1e-7);
  EXPECT_EQ(si.omega()[0].second.view(-1)[0].item<double>(), 0.0);
  EXPECT_NEAR(si.omega()[0].second.view(-1)[1].item<double>(), 1.0 / 0.35, 1e-5);
  EXPECT_TRUE(si.omega()[1].second.eq(0).all().item<bool>());
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
  MultiHeadModel model = device_mlp(stream, {4}, 31);
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
  ctx.batch_features = model->features(ctx.inputs(data, positions));
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
    MultiHeadModel model = device_mlp(stream, {4}, 32);
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

TEST(Pruning, BudgetsAndStepsOverTenTasksFollowTheReleasedSequence) {
  const std::vector<int> budgets{50, 40, 32, 25, 20, 16, 12, 9, 7, 5};
  const std::vector<std::vector<int>> steps{
      {10, 20, 30, 40, 50},  // 50
      {10, 20, 30, 40},      // 40
      {10, 20, 30, 40},      // 32: up to the first multiple of 10 that reaches it
      {10, 20, 30},          // 25
      {10, 20},              // 20
      {10, 20},              // 16
      {10, 20},              // 12
      {10},                  // 9
      {10},                  // 7
      {10},                  // 5
  };
  for (int t = 1; t <= 10; ++t) {
    EXPECT_EQ(pruning_budget_percent(t, 50, 0.8), budgets[t - 1]) << "task " << t;
    EXPECT_EQ(pruning_steps_percent(t, 50, 0.8, 10), steps[t - 1]) << "task " << t;
  }
  // A budget that reaches 0% has no step; other step sizes take their own multiples.
  EXPECT_EQ(pruning_budget_percent(2, 1, 0.5), 0);
  EXPECT_TRUE(pruning_steps_percent(2, 1, 0.5, 10).empty());
  EXPECT_EQ(pruning_steps_percent(1, 50, 0.8, 15), (std::vector<int>{15, 30, 45, 60}));
  EXPECT_THROW(pruning_budget_percent(0, 50, 0.8), Error);
  EXPECT_THROW(pruning_steps_percent(1, 50, 0.8, 0), Error);
}

TEST(Pruning, UnitsWithEveryIncomingWeightAndBiasFreeAreCountedPerLayer) {
  // Layer "l": unit 0 has nothing used (weights and bias free), unit 1 a used
  // weight, unit 2 only a used bias. "conv" (no bias mask): channel 0 all free.
  const NamedTensors masks = {
      {"l.weight", torch::tensor({0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f}).view({3, 2})},
      {"l.bias", torch::tensor({0.0f, 0.0f, 1.0f})},
      {"conv.weight", torch::cat({torch::zeros({1, 1, 2, 2}), torch::tensor({0.0f, 0.0f, 0.0f, 1.0f}).view({1, 1, 2, 2})})},
      {"scale.weight", torch::zeros({4})}};  // 1-D: no units to speak of
  const std::vector<UnreachableUnits> layers = unreachable_units(masks);
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ(layers[0].layer, "l");
  EXPECT_EQ(layers[0].units, 3);
  EXPECT_EQ(layers[0].unreachable, 1);
  EXPECT_EQ(layers[1].layer, "conv");
  EXPECT_EQ(layers[1].units, 2);
  EXPECT_EQ(layers[1].unreachable, 1);
  const std::string text = describe_masks(masks);
  EXPECT_NE(text.find("l: 1 of 3 units with every incoming weight and bias free"), std::string::npos) << text;
  EXPECT_NE(text.find("conv: 1 of 2 units"), std::string::npos) << text;

  // Why the log calls them lost: a unit whose weights and bias are zero (as
  // freed weights are) feeds a ReLU exactly 0, and no gradient reaches it.
  torch::nn::Linear layer(3, 2);
  {
    torch::NoGradGuard no_grad;
    layer->weight[0].zero_();
    layer->bias[0].zero_();
    layer->bias[1].fill_(10.0);  // unit 1 active on every input: its gradient is not zero
  }
  const torch::Tensor x = torch::randn({5, 3});
  torch::relu(layer->forward(x)).sum().backward();
  EXPECT_EQ(layer->weight.grad()[0].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(layer->bias.grad()[0].item<float>(), 0.0f);
  EXPECT_GT(layer->weight.grad()[1].abs().sum().item<float>() + layer->bias.grad()[1].abs().item<float>(), 0.0f);
}

TEST(Pruning, PercentileInterpolatesLinearlyAsNumpy) {
  // numpy.percentile([1, 2, 3, 4], q): index q/100 * 3 of the sorted values.
  const torch::Tensor four = torch::tensor({4.0f, 1.0f, 3.0f, 2.0f});
  EXPECT_DOUBLE_EQ(percentile(four, 0), 1.0);
  EXPECT_NEAR(percentile(four, 10), 1.3, 1e-12);
  EXPECT_NEAR(percentile(four, 50), 2.5, 1e-12);
  EXPECT_NEAR(percentile(four, 90), 3.7, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(four, 100), 4.0);
  // Ties: numpy.percentile([0, 0, 0, 1, 5], 50) = 0 and (.., 70) = 0.8; any shape is flattened.
  const torch::Tensor ties = torch::tensor({5.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f}).narrow(0, 0, 5).view({5, 1});
  EXPECT_DOUBLE_EQ(percentile(ties, 50), 0.0);
  EXPECT_NEAR(percentile(ties, 70), 0.8, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(torch::tensor({0.25f}), 30), 0.25);
  EXPECT_THROW(percentile(torch::zeros({0}), 50), Error);
  EXPECT_THROW(percentile(four, 101), Error);
}

namespace {
torch::Tensor bools(std::vector<int> v) {
  torch::Tensor t = torch::zeros({static_cast<int64_t>(v.size())}, torch::kBool);
  for (size_t k = 0; k < v.size(); ++k) t[k] = static_cast<bool>(v[k]);
  return t;
}
}  // namespace

TEST(Pruning, TaskOneFreesZeroImportanceAndWhatLiesStrictlyBelowThePercentile) {
  // Sorted {0, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6}: the 10th percentile is 0 (index 0.7):
  // nothing lies below it, but both zeros are freed; the 30th is 0.11 (index 2.1).
  const NamedTensors omega{{"w", torch::tensor({0.0f, 0.5f, 0.1f, 0.3f, 0.0f, 0.2f, 0.4f, 0.6f}).view({2, 4})}};
  const NamedTensors all{{"w", bools({1, 1, 1, 1, 1, 1, 1, 1}).view({2, 4})}};
  auto free = weights_to_free(omega, all, 10, /*first_task=*/true, false);
  ASSERT_EQ(free.size(), 1u);
  EXPECT_EQ(free[0].first, "w");
  EXPECT_TRUE(torch::equal(free[0].second, bools({1, 0, 0, 0, 1, 0, 0, 0}).view({2, 4})));
  free = weights_to_free(omega, all, 30, true, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({1, 0, 1, 0, 1, 0, 0, 0}).view({2, 4})));
  // A value exactly at the percentile stays used at task 1: {0.1, ..., 0.5}, 25th percentile 0.2.
  const NamedTensors five{{"b", torch::tensor({0.3f, 0.1f, 0.2f, 0.5f, 0.4f})}};
  const NamedTensors five_all{{"b", bools({1, 1, 1, 1, 1})}};
  EXPECT_TRUE(torch::equal(weights_to_free(five, five_all, 25, true, false)[0].second, bools({0, 1, 0, 0, 0})));
  // ... and is freed at a later task (ties freed).
  EXPECT_TRUE(torch::equal(weights_to_free(five, five_all, 25, false, false)[0].second, bools({0, 1, 1, 0, 0})));
}

TEST(Pruning, LaterTasksFreeCandidatesAtOrBelowTheCandidatesPercentileTiesIncluded) {
  // Candidates' values {0.9, 0.5, 0.3, 0.7}: 50th percentile 0.6; position 1 (0.1) is used, never freed.
  const NamedTensors omega{{"w", torch::tensor({0.9f, 0.1f, 0.5f, 0.3f, 0.7f})}};
  auto free = weights_to_free(omega, {{"w", bools({1, 0, 1, 1, 1})}}, 50, false, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({0, 0, 1, 1, 0})));
  // Ties: three candidates share the 10th percentile 0.2, a 10% step frees all three.
  free = weights_to_free({{"w", torch::tensor({0.2f, 0.2f, 0.7f, 0.2f})}}, {{"w", bools({1, 1, 1, 1})}}, 10, false, false);
  EXPECT_TRUE(torch::equal(free[0].second, bools({1, 1, 0, 1})));
  // No candidate left in a tensor: nothing freed there.
  free = weights_to_free(omega, {{"w", bools({0, 0, 0, 0, 0})}}, 50, false, false);
  EXPECT_FALSE(free[0].second.any().item<bool>());
}

TEST(Pruning, GlobalThresholdPoolsTheTensorsCandidates) {
  const NamedTensors omega{{"a", torch::tensor({0.5f, 0.4f})}, {"b", torch::tensor({0.1f, 0.2f, 0.3f, 0.05f})}};
  const NamedTensors all{{"a", bools({1, 1})}, {"b", bools({1, 1, 1, 1})}};
  // Per tensor, 50th percentiles 0.45 and 0.15: a frees 0.4; b frees 0.1 and 0.05.
  auto per_tensor = weights_to_free(omega, all, 50, false, false);
  EXPECT_TRUE(torch::equal(per_tensor[0].second, bools({0, 1})));
  EXPECT_TRUE(torch::equal(per_tensor[1].second, bools({1, 0, 0, 1})));
  // Pooled {0.05, 0.1, 0.2, 0.3, 0.4, 0.5}: 50th percentile 0.25, every freed weight in b.
  auto global = weights_to_free(omega, all, 50, false, true);
  EXPECT_EQ(global[1].first, "b");
  EXPECT_TRUE(torch::equal(global[0].second, bools({0, 0})));
  EXPECT_TRUE(torch::equal(global[1].second, bools({1, 1, 0, 1})));
}

// Compression rounds use the task-1 rule on every weight with a cumulative
// percent: the weights freed by earlier rounds are zero and score 0, so each
// round's percentile frees the schedule's share of the whole tensor (or, with
// a global threshold, of the network).
TEST(Pruning, CompressionRoundsFreeTheirCumulativePercentPerTensorOrGlobally) {
  const NamedTensors all{{"w", bools({1, 1, 1, 1, 1, 1, 1, 1})}, {"b", bools({1, 1, 1, 1})}};
  const NamedTensors round1{{"w", torch::tensor({0.8f, 0.1f, 0.4f, 0.3f, 0.6f, 0.2f, 0.7f, 0.5f})},
                            {"b", torch::tensor({0.05f, 0.9f, 0.3f, 0.02f})}};
  // Per tensor, 25%: w's percentile 0.2 + 0.75 * 0.1 = 0.275 frees 0.1, 0.2; b's 0.02 + 0.75 * 0.03 = 0.0425 frees 0.02.
  auto per_tensor1 = weights_to_free(round1, all, 25, /*first_task=*/true, /*global=*/false);
  EXPECT_TRUE(torch::equal(per_tensor1[0].second, bools({0, 1, 0, 0, 0, 1, 0, 0})));
  EXPECT_TRUE(torch::equal(per_tensor1[1].second, bools({0, 0, 0, 1})));
  // After retraining the kept weights score anew, the freed ones 0. 50%: w's
  // {0, 0, .35, .45, .5, .6, .7, .8} at index 3.5 gives 0.475 (4 of 8 freed);
  // b's {0, .1, .3, .9} at index 1.5 gives 0.2 (2 of 4).
  const NamedTensors per_tensor2_omega{{"w", torch::tensor({0.8f, 0.0f, 0.35f, 0.45f, 0.6f, 0.0f, 0.7f, 0.5f})},
                                       {"b", torch::tensor({0.1f, 0.9f, 0.3f, 0.0f})}};
  auto per_tensor2 = weights_to_free(per_tensor2_omega, all, 50, true, false);
  EXPECT_TRUE(torch::equal(per_tensor2[0].second, bools({0, 1, 1, 1, 0, 1, 0, 0})));
  EXPECT_TRUE(torch::equal(per_tensor2[1].second, bools({1, 0, 0, 1})));
  // Global, 25% of the 12 pooled values {.02, .05, .1, .2, .3, .3, ...}: index
  // 2.75 gives 0.175, so w loses 1 of 8 and b 2 of 4: rates differ per tensor.
  auto global1 = weights_to_free(round1, all, 25, true, true);
  EXPECT_TRUE(torch::equal(global1[0].second, bools({0, 1, 0, 0, 0, 0, 0, 0})));
  EXPECT_TRUE(torch::equal(global1[1].second, bools({1, 0, 0, 1})));
  // Global, 50%: pooled {0, 0, 0, .2, .3, .35, .45, ...}, index 5.5 gives 0.4: 6 of 12.
  const NamedTensors global2_omega{{"w", torch::tensor({0.8f, 0.0f, 0.35f, 0.45f, 0.6f, 0.2f, 0.7f, 0.5f})},
                                   {"b", torch::tensor({0.0f, 0.9f, 0.3f, 0.0f})}};
  auto global2 = weights_to_free(global2_omega, all, 50, true, true);
  EXPECT_TRUE(torch::equal(global2[0].second, bools({0, 1, 1, 0, 0, 1, 0, 0})));
  EXPECT_TRUE(torch::equal(global2[1].second, bools({1, 0, 1, 1})));
}

TEST(Pruning, CompressionScheduleIsIncreasingPercentsInsideZeroToHundred) {
  EXPECT_EQ(parse_compression_schedule(" 55, 80,91.5 "), (std::vector<double>{55, 80, 91.5}));
  EXPECT_EQ(parse_compression_schedule("98.25"), (std::vector<double>{98.25}));
  EXPECT_NO_THROW(check_compression_schedule(AnpycOptions().compression_schedule));
  const std::vector<std::pair<std::string, std::string>> cases{
      {"50,40", "anpyc.compression_schedule: round 2's 40 is not above round 1's 50"},
      {"50,50", "anpyc.compression_schedule: round 2's 50 is not above round 1's 50"},
      {"0,50", "anpyc.compression_schedule: round 1's 0 is outside (0, 100)"},
      {"50,100", "anpyc.compression_schedule: round 2's 100 is outside (0, 100)"},
      {"-5", "anpyc.compression_schedule: round 1's -5 is outside (0, 100)"},
      {"nan", "anpyc.compression_schedule: round 1's nan is outside (0, 100)"},
      {"50,abc", "anpyc.compression_schedule: 'abc' is not a number"},
      {"50,60x", "anpyc.compression_schedule: '60x' is not a number"},
      {" , ", "anpyc.compression_schedule: needs at least one round"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(text);
    expect_error([&] { parse_compression_schedule(text); }, {message});
  }
}

TEST(Pruning, CompressionRatioIsTotalOverRemainingForEachTensorAndTheNetwork) {
  EXPECT_DOUBLE_EQ(compression_ratio(1000, 10), 100.0);
  EXPECT_DOUBLE_EQ(compression_ratio(7, 2), 3.5);
  EXPECT_DOUBLE_EQ(compression_ratio(5, 5), 1.0);
  EXPECT_TRUE(std::isinf(compression_ratio(5, 0)));
  // Tensors of 900 and 100 weights: dense, then 500 left (2x), then 17 left (1000 / 17 = 58.82x).
  const std::vector<std::string> names{"w", "b"};
  const std::vector<int64_t> totals{900, 100};
  const std::vector<CompressionRound> rounds{{0.0, {900, 100}, std::nullopt, 0.9},
                                             {50.0, {400, 100}, 0.85, 0.88},
                                             {98.25, {10, 7}, 0.5, 0.8}};
  const ResultTable table = compression_table(names, totals, rounds);
  EXPECT_EQ(table.name, "compression");
  ASSERT_EQ(table.rows.size(), 9u);  // 3 rounds x (2 tensors + network)
  const std::vector<ResultTable::Cell> network_round2{int64_t{2}, 98.25, std::string("network"), int64_t{1000},
                                                      int64_t{17}, 1.7, 1000.0 / 17.0, 0.5, 0.8};
  EXPECT_EQ(table.rows[8], network_round2);
  const std::vector<ResultTable::Cell> w_round1{int64_t{1}, 50.0, std::string("w"), int64_t{900}, int64_t{400},
                                                100.0 * 400.0 / 900.0, 2.25, 0.85, 0.88};
  EXPECT_EQ(table.rows[3], w_round1);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(table.rows[2][7])) << "round 0 has no accuracy after pruning";
  // The log's table: percent left per tensor, the network's count and ratio, with the head's 10 counted too
  // ((1000 + 10) / (17 + 10) = 37.41x).
  const std::string text = describe_compression(names, totals, rounds, 10);
  for (const char* phrase : {"dense", "98.25%", "44.44%", "7.00%", "58.82x", "2.00x", "37.41x", "85.00%", "80.00%"})
    EXPECT_NE(text.find(phrase), std::string::npos) << phrase << " missing from\n" << text;
}

// ---------------------------------------------------------------- 9. ANPyC with pruning

namespace {

// The pruning round of DESIGN.md 4.2 written out here with std::sort and
// numpy's percentile formula, on importance from the library's pass:
// returns the free set after the round, given the free set before the task.
std::vector<torch::Tensor> expected_free_after_round(MultiHeadModel& model, StageContext& ctx, int task,
                                                     const std::vector<torch::Tensor>& free_before,
                                                     const std::vector<double>& steps, const AnpycOptions& options) {
  auto numpy_percentile = [](std::vector<double> v, double percent) {
    std::sort(v.begin(), v.end());
    const double index = percent / 100.0 * static_cast<double>(v.size() - 1);
    const size_t below = static_cast<size_t>(std::floor(index)), above = std::min(below + 1, v.size() - 1);
    const double t = index - static_cast<double>(below), d = v[above] - v[below];
    return t >= 0.5 ? v[above] - d * (1.0 - t) : v[below] + d * t;
  };
  std::vector<torch::Tensor> freed;
  for (const auto& f : free_before) freed.push_back(torch::zeros_like(f));
  for (double percent : steps) {
    const NamedTensors omega = entropy_taylor_importance(ctx, task, options.importance);
    for (size_t k = 0; k < omega.size(); ++k) {
      const torch::Tensor values = omega[k].second.to(torch::kCPU, torch::kFloat64).reshape({-1});
      const torch::Tensor candidates = free_before[k].reshape({-1});
      std::vector<double> candidate_values;
      for (int64_t i = 0; i < values.numel(); ++i)
        if (candidates[i].item<bool>()) candidate_values.push_back(values[i].item<double>());
      if (candidate_values.empty()) continue;
      const double threshold = numpy_percentile(candidate_values, percent);
      torch::Tensor flat_freed = freed[k].view({-1});
      for (int64_t i = 0; i < values.numel(); ++i) {
        const double v = values[i].item<double>();
        const bool rule = task == 0 ? (v == 0.0 || v < threshold) : v <= threshold;
        if (candidates[i].item<bool>() && rule) flat_freed[i] = true;
      }
    }
    torch::NoGradGuard no_grad;
    const auto parameters = model->shared_parameters();
    for (size_t k = 0; k < parameters.size(); ++k) parameters[k].masked_fill_(freed[k], 0.0);
  }
  return freed;
}

}  // namespace

// Two identical models: one pruned by the strategy, one by the rules written
// out above. No retraining (retrain_epochs 0), so the steps see the weights of
// the previous step with the freed ones zeroed.
TEST(AnpycStrategy, PruningRoundsFollowTheReleasedRulesStepByStepBiasesIncluded) {
  TaskStream stream = tiny_stream(3, 2, 10);
  MultiHeadModel model = device_mlp(stream, {8, 5}, 33), expected_model = device_mlp(stream, {8, 5}, 33);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.retrain_epochs = 0;
  options.importance.batch = 4;
  AnpycStrategy anpyc(options);
  std::vector<torch::Tensor> free_before;
  for (const auto& p : model->shared_parameters()) free_before.push_back(torch::ones_like(p, torch::kBool));
  NamedTensors expected_omega = zeros_like_shared(*expected_model);
  for (int task = 0; task < 3; ++task) {
    SCOPED_TRACE("task " + std::to_string(task + 1));
    StageContext ctx = hand_context(model, comm, stream, log, task, {task}, 4);
    StageContext expected_ctx = hand_context(expected_model, comm, stream, log, task, {task}, 4);
    anpyc.before_task(ctx);
    const auto training = random_like_shared(model, 0.3, 40 + task);  // "training": every weight moves
    shift_shared(model, training);
    shift_shared(expected_model, training);
    anpyc.after_task(ctx);
    const std::vector<int> budget_steps = task < 2 ? pruning_steps_percent(task + 1, 50, 0.8, 10) : std::vector<int>{};
    const std::vector<double> steps(budget_steps.begin(), budget_steps.end());
    const auto freed = expected_free_after_round(expected_model, expected_ctx, task, free_before, steps, options);
    const auto parameters = model->shared_parameters(), expected = expected_model->shared_parameters();
    int64_t freed_count = 0;
    for (size_t k = 0; k < freed.size(); ++k) {
      SCOPED_TRACE(anpyc.masks()[k].first);
      EXPECT_TRUE(torch::equal(anpyc.masks()[k].second.eq(0), freed[k]));
      EXPECT_TRUE(torch::equal(parameters[k], expected[k]));
      EXPECT_TRUE(parameters[k].masked_select(freed[k]).eq(0).all().item<bool>()) << "a free weight is not zero";
      EXPECT_TRUE(freed[k].logical_and(free_before[k].logical_not()).any().item<bool>() == false) << "the free set grew";
      freed_count += freed[k].sum().item<int64_t>();
      if (parameters[k].dim() == 1 && task == 0) EXPECT_TRUE(freed[k].any().item<bool>()) << "biases are masked too";
      free_before[k] = freed[k];
    }
    if (task < 2) EXPECT_GT(freed_count, 0);
    else EXPECT_EQ(freed_count, 0) << "the last task uses every weight";
    // Omega_t is computed on the final weights of the round and summed.
    accumulate_into(expected_omega, entropy_taylor_importance(expected_ctx, task, options.importance), Accumulation::Sum);
    for (size_t k = 0; k < expected_omega.size(); ++k)
      EXPECT_TRUE(torch::equal(anpyc.omega()[k].second, expected_omega[k].second)) << expected_omega[k].first;
  }
}

// Compression: one task, pruned in the schedule's rounds by the task-1 rule
// (the reference above, on a twin model), each round evaluated after pruning
// and after retraining; what is used only shrinks from round to round.
TEST(AnpycStrategy, CompressionRoundsFollowTheTaskOneRuleRoundByRoundAndRecordEachRound) {
  TaskStream stream = tiny_stream(1, 4, 12);
  MultiHeadModel model = device_mlp(stream, {8, 5}, 34), expected_model = device_mlp(stream, {8, 5}, 34);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.prune_schedule = PruneSchedule::Compression;
  options.compression_schedule = {30, 60, 85};
  options.retrain_epochs = 0;
  options.importance.batch = 4;
  AnpycStrategy anpyc(options);
  StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 4);
  StageContext expected_ctx = hand_context(expected_model, comm, stream, log, 0, {0}, 4);
  // The trainer's evaluation, scripted: dense, then after pruning and after retraining for each round.
  const std::vector<double> accuracies{0.9, 0.7, 0.8, 0.6, 0.75, 0.5, 0.7};
  std::vector<std::vector<torch::Tensor>> used_seen;
  ctx.evaluate = [&] {
    std::vector<torch::Tensor> used;
    for (const auto& [name, mask] : anpyc.masks()) used.push_back(mask.gt(0.5));
    used_seen.push_back(used);
    return std::vector<double>{accuracies.at(used_seen.size() - 1)};
  };
  anpyc.before_task(ctx);
  const auto training = random_like_shared(model, 0.3, 45);
  shift_shared(model, training);
  shift_shared(expected_model, training);
  anpyc.after_task(ctx);

  std::vector<torch::Tensor> all;
  for (const auto& p : model->shared_parameters()) all.push_back(torch::ones_like(p, torch::kBool));
  const auto freed = expected_free_after_round(expected_model, expected_ctx, 0, all, {30, 60, 85}, options);
  const auto parameters = model->shared_parameters(), expected = expected_model->shared_parameters();
  for (size_t k = 0; k < freed.size(); ++k) {
    SCOPED_TRACE(anpyc.masks()[k].first);
    EXPECT_TRUE(torch::equal(anpyc.masks()[k].second.eq(0), freed[k]));
    EXPECT_TRUE(torch::equal(parameters[k], expected[k]));
  }
  ASSERT_EQ(used_seen.size(), accuracies.size());
  const std::vector<CompressionRound>& rounds = anpyc.compression_rounds();
  ASSERT_EQ(rounds.size(), 4u);
  const std::vector<double> percents{0, 30, 60, 85};
  for (size_t r = 0; r < rounds.size(); ++r) {
    SCOPED_TRACE("round " + std::to_string(r));
    EXPECT_EQ(rounds[r].schedule_percent, percents[r]);
    EXPECT_EQ(rounds[r].accuracy, accuracies[r == 0 ? 0 : 2 * r]);
    EXPECT_EQ(rounds[r].accuracy_after_pruning, r == 0 ? std::nullopt : std::optional<double>(accuracies[2 * r - 1]));
    int64_t remaining = 0, total = 0;
    for (size_t k = 0; k < parameters.size(); ++k) {
      total += parameters[k].numel();
      remaining += rounds[r].remaining[k];
      // Round r's counts are what the evaluation after its retraining saw (round 0: every weight).
      EXPECT_EQ(rounds[r].remaining[k], r == 0 ? parameters[k].numel() : used_seen[2 * r][k].sum().item<int64_t>());
      if (r > 0) EXPECT_LE(rounds[r].remaining[k], rounds[r - 1].remaining[k]);
    }
    // The task-1 rule frees at least the percentile's rank q (n - 1) of each tensor's n weights (no ties here):
    // at most (1 - q) n + q left.
    if (r > 0)
      EXPECT_LE(static_cast<double>(remaining),
                (1.0 - percents[r] / 100.0) * static_cast<double>(total) + static_cast<double>(parameters.size()));
  }
  // Used weights only shrink: each evaluation after the first sees a subset of the one before.
  for (size_t call = 2; call < used_seen.size(); ++call)
    for (size_t k = 0; k < used_seen[call].size(); ++k)
      EXPECT_FALSE(used_seen[call][k].logical_and(used_seen[call - 1][k].logical_not()).any().item<bool>())
          << "evaluation " << call << ": a freed weight is used again";
  // The record is strategy state: a strategy loaded from it reports the same table.
  AnpycStrategy loaded(options);
  loaded.load_state(anpyc.state());
  ASSERT_EQ(loaded.result_tables(1).size(), 1u);
  EXPECT_EQ(loaded.result_tables(1)[0].rows, anpyc.result_tables(1)[0].rows);
}

TEST(AnpycStrategy, CompressionNeedsAStreamOfOneTask) {
  TaskStream stream = tiny_stream(2, 2, 8);
  MultiHeadModel model = device_mlp(stream, {6}, 35);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.prune_schedule = PruneSchedule::Compression;
  AnpycStrategy anpyc(options);
  StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 4);
  expect_error([&] { anpyc.before_task(ctx); },
               {"anpyc.prune_schedule=compression prunes a network trained on one task, this stream has 2"});
}

TEST(AnpycStrategy, FreeWeightsStayZeroWhileRetrainingUnderMomentumAndWeightDecay) {
  TaskStream stream = tiny_stream(3, 2, 8);
  MultiHeadModel model = device_mlp(stream, {8, 5}, 33);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.lambda = 1.0;
  options.first_budget = 0.3;
  options.retrain_epochs = 1;
  options.importance.batch = 4;
  AnpycStrategy anpyc(options);
  TrainerConfig config = tiny_trainer_config(4, 2);
  config.momentum = 0.9;
  config.weight_decay = 0.01;
  Trainer trainer(config, comm, stream, model.ptr(), anpyc, log);
  NamedTensors previous;
  for (int task = 0; task < 3; ++task) {
    SCOPED_TRACE("task " + std::to_string(task + 1));
    trainer.train_stage(task, {task});
    const auto parameters = model->shared_parameters();
    for (size_t k = 0; k < parameters.size(); ++k) {
      const torch::Tensor free = anpyc.masks()[k].second.eq(0);
      EXPECT_TRUE(parameters[k].detach().masked_select(free).eq(0).all().item<bool>()) << "free weights are not zero";
      if (!previous.empty())
        EXPECT_FALSE(free.logical_and(previous[k].second.eq(1)).any().item<bool>()) << "a used weight became free";
    }
    previous.clear();
    for (const auto& m : anpyc.masks()) previous.emplace_back(m.first, m.second.clone());
  }
  for (const auto& m : anpyc.masks()) EXPECT_TRUE(m.second.eq(1).all().item<bool>()) << m.first;
}

TEST(AnpycStrategy, RetrainUntilRecoveredStopsOnceTheTrainingLossIsBack) {
  TaskStream stream = tiny_stream(2, 2, 8);
  MultiHeadModel model = device_mlp(stream, {6}, 36);
  SingleCommunicator comm;
  Logger log(1, "");
  for (const bool until : {true, false}) {
    SCOPED_TRACE(until ? "until recovered" : "fixed epochs");
    AnpycOptions options;
    options.first_budget = 0.2;  // steps 10% and 20%
    options.retrain_epochs = 5;
    options.retrain_until_recovered = until;
    AnpycStrategy anpyc(options);
    StageContext ctx = hand_context(model, comm, stream, log, 0, {0}, 4);
    // Scripted training losses: 0.5 before pruning; step 10% recovers after 3 epochs
    // (0.9, 0.6, 0.45), step 20% after 1 (0.44 <= 0.45).
    const std::vector<double> losses{0.9, 0.6, 0.45, 0.44, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3};
    std::vector<int64_t> calls;
    size_t next = 0;
    ctx.last_epoch_loss = 0.5;
    ctx.train_epochs = [&](int64_t epochs, const std::string&) {
      calls.push_back(epochs);
      for (int64_t e = 0; e < epochs; ++e) ctx.last_epoch_loss = losses.at(std::min(next++, losses.size() - 1));
    };
    anpyc.before_task(ctx);
    anpyc.after_task(ctx);
    if (until) EXPECT_EQ(calls, (std::vector<int64_t>{1, 1, 1, 1}));
    else EXPECT_EQ(calls, (std::vector<int64_t>{5, 5}));
  }
}

TEST(AnpycStrategy, PerTaskInferenceMasksHideWeightsFirstUsedByLaterTasks) {
  TaskStream stream = tiny_stream(3, 2, 8);
  MultiHeadModel model = device_mlp(stream, {6, 4}, 37);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.retrain_epochs = 0;
  // One step of 10% per task: it frees the weights whose Omega is 0 (with
  // s = +1, those whose g theta lies in [-2, 0] in every batch) and leaves the others to the task.
  options.first_budget = 0.1;
  options.inference_masks = InferenceMasks::PerTask;
  AnpycStrategy anpyc(options);
  for (int task = 0; task < 3; ++task) {
    StageContext ctx = hand_context(model, comm, stream, log, task, {task}, 4);
    anpyc.before_task(ctx);
    shift_shared(model, random_like_shared(model, 0.3, 60 + task));  // free weights come back to life
    anpyc.after_task(ctx);
  }
  const NamedTensors& first = anpyc.first_used();
  ASSERT_EQ(first.size(), model->shared_parameters().size());
  std::set<int> tasks_seen;
  for (const auto& [name, record] : first) {
    EXPECT_EQ(record.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(record.ge(1).logical_and(record.le(3)).all().item<bool>()) << name << ": every weight is used by the end";
    for (int t = 1; t <= 3; ++t)
      if (record.eq(t).any().item<bool>()) tasks_seen.insert(t);
  }
  EXPECT_EQ(tasks_seen, (std::set<int>{1, 2, 3}));
  const auto weights = detached_clones(model->shared_parameters());
  for (int task = 0; task < 3; ++task) {
    SCOPED_TRACE("evaluating task " + std::to_string(task + 1));
    anpyc.before_evaluate(*model, task);
    const auto parameters = model->shared_parameters();
    for (size_t k = 0; k < parameters.size(); ++k) {
      const torch::Tensor later = first[k].second.gt(task + 1);
      EXPECT_TRUE(parameters[k].masked_select(later).eq(0).all().item<bool>());
      EXPECT_TRUE(torch::equal(parameters[k].masked_select(later.logical_not()), weights[k].masked_select(later.logical_not())));
    }
    anpyc.after_evaluate(*model, task);
    for (size_t k = 0; k < parameters.size(); ++k) EXPECT_TRUE(torch::equal(parameters[k], weights[k])) << "not restored";
  }
  std::set<std::string> names;
  for (const auto& item : anpyc.state()) names.insert(item.first);
  EXPECT_TRUE(names.count("first_used.trunk.1.weight"));
}

TEST(AnpycStrategy, TrainerEvaluatesEachTaskThroughItsInferenceMasks) {
  TaskStream stream = tiny_stream(2, 2, 8);
  // Dropout while training: the hand evaluation below has none, so the trainer's must not either.
  MultiHeadModel model = device_mlp(stream, {6}, 38, /*dropout=*/0.5);
  SingleCommunicator comm;
  Logger log(1, "");
  AnpycOptions options;
  options.retrain_epochs = 1;
  options.importance.batch = 4;
  options.inference_masks = InferenceMasks::PerTask;
  AnpycStrategy anpyc(options);
  Trainer trainer(tiny_trainer_config(4, 2), comm, stream, model.ptr(), anpyc, log);
  const RunResult result = trainer.run();
  // Task 1 by hand through its own weights: those first used by task 2 zeroed.
  const auto weights = detached_clones(model->shared_parameters());
  {
    torch::NoGradGuard no_grad;
    const auto parameters = model->shared_parameters();
    for (size_t k = 0; k < parameters.size(); ++k) parameters[k].masked_fill_(anpyc.first_used()[k].second.gt(1), 0.0);
  }
  const TaskData& test = stream.tasks[0].test;
  model->eval();
  const torch::Tensor predicted = model->logits(test.inputs(torch::arange(test.size())).to(kDevice), 0).argmax(1);
  const double accuracy = predicted.eq(test.labels(torch::arange(test.size()), HeadLayout::Multi).to(kDevice)).sum().item<double>() /
                          static_cast<double>(test.size());
  EXPECT_DOUBLE_EQ(result.matrix.stages.back()[0], accuracy);
  {
    torch::NoGradGuard no_grad;
    const auto parameters = model->shared_parameters();
    for (size_t k = 0; k < parameters.size(); ++k) parameters[k].copy_(weights[k]);
  }
  bool any_later = false;
  for (const auto& item : anpyc.first_used()) any_later |= item.second.eq(2).any().item<bool>();
  EXPECT_TRUE(any_later) << "task 2 used no weight of its own";
}

// ---------------------------------------------------------------- 10. options

namespace {

// The strategy `algorithm` made from a command line of train options, as train makes it.
std::unique_ptr<Strategy> strategy_from(const std::string& algorithm, const std::vector<std::string>& arguments) {
  namespace po = boost::program_options;
  po::options_description options;
  add_strategy_options(options);
  std::vector<const char*> argv{"train"};
  for (const auto& argument : arguments) argv.push_back(argument.c_str());
  po::variables_map values;
  po::store(po::parse_command_line(static_cast<int>(argv.size()), argv.data(), options), values);
  po::notify(values);
  return make_strategy(algorithm, values);
}

}  // namespace

TEST(StrategyOptions, DefaultsReproduceTheReleasedCode) {
  const AnpycOptions defaults;
  EXPECT_EQ(defaults.importance.batch, 100);
  EXPECT_EQ(defaults.importance.sign, 1.0);
  EXPECT_EQ(defaults.importance.entropy, EntropyReduction::Sum);
  EXPECT_EQ(defaults.importance.hessian, HessianEstimate::GradientSquared);
  EXPECT_EQ(defaults.retrain_epochs, 30);
  EXPECT_EQ(defaults.lambda, 3.0);
  EXPECT_EQ(defaults.inference_masks, InferenceMasks::None);
  EXPECT_EQ(defaults.penalty_step, PenaltyStep::Explicit);
  EXPECT_EQ(defaults.prune_schedule, PruneSchedule::Released);
  for (const char* algorithm : {"anpyc", "ewc", "si", "mas", "lwf", "finetune"})
    EXPECT_NE(strategy_from(algorithm, {}), nullptr) << algorithm;
  EXPECT_NE(strategy_from("anpyc", {"--anpyc.entropy=mean", "--anpyc.hessian=fisher", "--train.penalty_step=proximal",
                                    "--anpyc.inference_masks=per_task", "--anpyc.retrain_until_recovered=true"}),
            nullptr);
  EXPECT_NE(strategy_from("anpyc", {"--anpyc.prune_schedule=compression", "--anpyc.compression_schedule=50,75,87.5"}),
            nullptr);
}

TEST(StrategyOptions, EachBadValueGetsOneMessageNamingItsOption) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases{
      {"anpyc", "--anpyc.importance_batch=0", "anpyc.importance_batch: must be a positive number of samples, got 0"},
      {"anpyc", "--anpyc.importance_batch=-5", "anpyc.importance_batch: must be a positive number of samples, got -5"},
      {"anpyc", "--anpyc.entropy=median", "anpyc.entropy: 'median' is not one of sum, mean"},
      {"anpyc", "--anpyc.hessian=exact", "anpyc.hessian: 'exact' is not one of gradient_squared, fisher"},
      {"anpyc", "--train.penalty_step=implicit", "train.penalty_step: 'implicit' is not one of explicit, proximal"},
      {"finetune", "--train.penalty_step=implicit", "train.penalty_step: 'implicit' is not one of explicit, proximal"},
      {"ewc", "--train.penalty_step=Proximal", "train.penalty_step: 'Proximal' is not one of explicit, proximal"},
      {"anpyc", "--anpyc.inference_masks=all", "anpyc.inference_masks: 'all' is not one of none, per_task"},
      {"anpyc", "--anpyc.accumulate=mean", "anpyc.accumulate: 'mean' is not one of sum, max"},
      {"anpyc", "--anpyc.threshold=median", "anpyc.threshold: 'median' is not one of per_tensor, global"},
      {"anpyc", "--anpyc.sign=0.5", "anpyc.sign: must be -1 or +1"},
      {"anpyc", "--anpyc.step=0.125", "anpyc.step: must be a whole percent between 1% and 100%"},
      {"anpyc", "--anpyc.first_budget=1", "anpyc.first_budget: must be a whole percent between 1% and 99%"},
      {"anpyc", "--anpyc.retrain_epochs=-1", "anpyc.retrain_epochs: must be >= 0"},
      {"anpyc", "--anpyc.prune_schedule=budget", "anpyc.prune_schedule: 'budget' is not one of released, compression"},
      {"anpyc", "--anpyc.compression_schedule=90,80",
       "anpyc.compression_schedule: round 2's 80 is not above round 1's 90: the percents are cumulative and must "
       "increase round by round"},
      {"anpyc", "--anpyc.compression_schedule=50,100", "anpyc.compression_schedule: round 2's 100 is outside (0, 100)"},
      {"mas", "--mas.importance=sum", "mas.importance: 'sum' is not one of per_sample, batch"},
      {"ewc", "--ewc.labels=random", "ewc.labels: 'random' is not one of sampled, true"},
      {"ewc", "--ewc.mode=both", "ewc.mode: 'both' is not one of separate, online"},
  };
  for (const auto& [algorithm, argument, message] : cases) {
    SCOPED_TRACE(algorithm + " " + argument);
    expect_error([&] { strategy_from(algorithm, {argument}); }, {message});
  }
}

// ---------------------------------------------------------------- 11. SGD-F

TEST(SgdfStrategy, TrunkFrozenAfterTask1OnlyTheNewHeadTrains) {
  TaskStream stream = tiny_stream(2, 2, 8);
  MultiHeadModel model = device_mlp(stream, {4}, 35);
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
