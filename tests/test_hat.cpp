// HAT (DESIGN.md §4.3) and the hidden-unit hooks it gates: the annealing,
// compensation and regulariser against hand arithmetic; which units each
// model's parameters connect; gradient conditioning that leaves the weights
// of earlier tasks' units untouched; resume in the middle of a task.
#include <gtest/gtest.h>

#include <cmath>

#include "algorithms/hat.h"
#include "models/conv_nets.h"
#include "models/multi_head_model.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"
#include "tests/trainer_test_support.h"

using clx::testing_support::checkpoint_every_step;
using clx::testing_support::expect_same_parameters;
using clx::testing_support::find_checkpoint;
using clx::testing_support::expect_error;
using clx::testing_support::small_trainer_config;
using clx::testing_support::two_task_stream;

namespace {

const clx::ParameterUnits& wiring_of(const clx::ContinualNet& model, const std::string& name) {
  for (const auto& wiring : model.hidden_units().parameters)
    if (wiring.parameter == name) return wiring;
  throw std::runtime_error("no wiring for " + name);
}

clx::MultiHeadModel hat_mlp(const clx::TaskStream& stream) {
  torch::manual_seed(5);
  clx::MlpConfig mlp;
  mlp.hidden = {16, 8};
  return clx::make_mlp(stream.input_shape, mlp, clx::head_sizes_for(stream, clx::HeadLayout::Multi));
}

clx::TrainerConfig hat_config() {
  clx::TrainerConfig config = small_trainer_config(16);
  config.momentum = 0.0;  // the reference's plain SGD
  config.epochs = 3;
  return config;
}

}  // namespace

TEST(HatFormulas, AnnealingRisesFromOneOverSmaxToSmaxWithinAnEpoch) {
  EXPECT_DOUBLE_EQ(clx::hat_annealed_scale(400, 0, 5), 1.0 / 400);
  EXPECT_DOUBLE_EQ(clx::hat_annealed_scale(400, 4, 5), 400.0);
  EXPECT_DOUBLE_EQ(clx::hat_annealed_scale(400, 2, 5), 0.0025 + (400 - 0.0025) * 0.5);
  EXPECT_DOUBLE_EQ(clx::hat_annealed_scale(400, 0, 1), 400.0);
}

TEST(HatFormulas, CompensationMatchesHandArithmetic) {
  // g *= s_max / s * (cosh(clamp(s e, -50, 50)) + 1) / (cosh(e) + 1), with s = 2, s_max = 4.
  const torch::Tensor e = torch::tensor({0.0, 1.0, -2.0, 30.0}, torch::kFloat64);
  torch::Tensor g = torch::tensor({1.0, 1.0, 0.5, 1.0}, torch::kFloat64);
  clx::hat_compensate_gradient(g, e, 2.0, 4.0);
  const double expected[] = {2.0 * 2.0 / 2.0, 2.0 * (std::cosh(2.0) + 1) / (std::cosh(1.0) + 1),
                             0.5 * 2.0 * (std::cosh(4.0) + 1) / (std::cosh(2.0) + 1),
                             2.0 * (std::cosh(50.0) + 1) / (std::cosh(30.0) + 1)};  // s e = 60 clamped to 50
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(g[k].item<double>(), expected[k], 1e-9 * std::abs(expected[k])) << k;
}

TEST(HatFormulas, RegulariserCountsGatesOnFreeUnitsOverTheFreeUnits) {
  // Layer 1: gates (0.5, 1), earlier (0, 1); layer 2: gate 0.25, earlier 0.5.
  // c * (0.5 * 1 + 1 * 0 + 0.25 * 0.5) / (1 + 0 + 0.5) with c = 0.75.
  const auto value = clx::hat_regulariser({torch::tensor({0.5, 1.0}), torch::tensor({0.25})},
                                          {torch::tensor({0.0, 1.0}), torch::tensor({0.5})}, 0.75);
  EXPECT_NEAR(value.item<double>(), 0.75 * 0.625 / 1.5, 1e-7);
  // Before any task every unit is free: c * mean of the gates.
  EXPECT_NEAR(clx::hat_regulariser({torch::tensor({0.5, 1.0})}, {torch::zeros({2})}, 1.0).item<double>(), 0.75, 1e-7);
}

TEST(HatOptions, RefuseImpossibleValues) {
  expect_error([] { clx::HatStrategy(clx::HatOptions{0.0, 0.75}); }, {"hat.smax"});
  expect_error([] { clx::HatStrategy(clx::HatOptions{400.0, -1.0}); }, {"hat.c"});
}

TEST(HiddenUnits, MlpLayersAndWiring) {
  const clx::TaskStream stream = two_task_stream(32, 16);
  auto model = hat_mlp(stream);
  const clx::HiddenUnits& units = model->hidden_units();
  ASSERT_EQ(units.layers.size(), 2u);
  EXPECT_EQ(units.names, (std::vector<std::string>{"trunk.2", "trunk.4"}));
  EXPECT_EQ(units.layers[0]->units(), 16);
  const auto& first = wiring_of(*model, "trunk.1.weight");
  EXPECT_EQ(first.out, 0);
  EXPECT_EQ(first.in, -1);
  const auto& second = wiring_of(*model, "trunk.3.weight");
  EXPECT_EQ(second.out, 1);
  EXPECT_EQ(second.in, 0);
  EXPECT_EQ(wiring_of(*model, "trunk.3.bias").out, 1);
  // Without a gate the trunk is the plain ReLU network; a gate scales its units.
  const torch::Tensor x = torch::rand({3, 1, 4, 4});
  const torch::Tensor plain = model->features(x);
  units.layers[1].ptr()->set_gate(torch::tensor({1.0f, 0.0f, 0.5f, 1.0f, 1.0f, 1.0f, 1.0f, 2.0f}));
  const torch::Tensor gated = model->features(x);
  units.clear_gates();
  const torch::Tensor scale = torch::tensor({1.0f, 0.0f, 0.5f, 1.0f, 1.0f, 1.0f, 1.0f, 2.0f});
  EXPECT_TRUE(torch::allclose(gated, plain * scale));
  EXPECT_TRUE(torch::equal(model->features(x), plain));
}

TEST(HiddenUnits, ConvolutionChannelsAndTheFlattenedFullyConnectedLayer) {
  torch::manual_seed(1);
  auto lenet = clx::make_lenet({1, 28, 28}, clx::LeNetConfig{}, {2});
  EXPECT_EQ(lenet->hidden_units().layers.size(), 4u);  // conv 32, conv 64, fc 512, fc 256
  const auto& fc1 = wiring_of(*lenet, "trunk.7.weight");
  EXPECT_EQ(fc1.out, 2);
  EXPECT_EQ(fc1.in, 1);
  EXPECT_EQ(fc1.in_repeat, 49);  // 64 channels x 7 x 7 flattened: feature j reads channel j / 49
  std::vector<torch::Tensor> per_layer;
  for (const auto& layer : lenet->hidden_units().layers) per_layer.push_back(torch::arange(layer->units()).to(torch::kFloat));
  const auto parameters = lenet->named_parameters();
  const torch::Tensor view = clx::input_units_view(fc1, parameters["trunk.7.weight"], per_layer);
  ASSERT_EQ(view.sizes(), (std::vector<int64_t>{1, 64 * 49}));
  EXPECT_EQ(view[0][0].item<float>(), 0.0f);
  EXPECT_EQ(view[0][48].item<float>(), 0.0f);
  EXPECT_EQ(view[0][49].item<float>(), 1.0f);
  EXPECT_EQ(view[0][64 * 49 - 1].item<float>(), 63.0f);
  const torch::Tensor conv_out = clx::output_units_view(wiring_of(*lenet, "trunk.3.weight"), parameters["trunk.3.weight"], per_layer);
  EXPECT_EQ(conv_out.sizes(), (std::vector<int64_t>{64, 1, 1, 1}));

  // Every shared parameter of VGG-9 and ResNet-18 is wired; a ResNet block's
  // shortcut feeds the block's output units from the block's input units.
  auto vgg = clx::make_vgg9({3, 32, 32}, clx::Vgg9Config{0.25, 0.0}, {2});
  auto resnet = clx::make_resnet18({3, 32, 32}, clx::ResNet18Config{0.25, "small"}, {2});
  for (const clx::ContinualNet* model : {static_cast<const clx::ContinualNet*>(vgg.get()),
                                         static_cast<const clx::ContinualNet*>(resnet.get())})
    for (const auto& [name, parameter] : model->named_shared_parameters()) EXPECT_NO_THROW(wiring_of(*model, name)) << name;
  EXPECT_EQ(vgg->hidden_units().layers.size(), 8u);
  EXPECT_EQ(resnet->hidden_units().layers.size(), 17u);  // stem + 2 per block x 8
  const auto& shortcut = wiring_of(*resnet, "trunk.5.downsample.0.weight");
  EXPECT_EQ(shortcut.out, wiring_of(*resnet, "trunk.5.conv2.weight").out);
  EXPECT_EQ(shortcut.in, wiring_of(*resnet, "trunk.5.conv1.weight").in);
  // Gates change nothing while unset: the taped forward (per-sample gradients) still sees every layer.
  resnet->eval();
  clx::LayerTape tape;
  const torch::Tensor x = torch::rand({2, 3, 32, 32});
  EXPECT_TRUE(torch::allclose(resnet->features_recorded(x, tape), resnet->features(x)));
  EXPECT_TRUE(tape.complete()) << tape.reason();
}

TEST(HatTraining, ModelWithoutHiddenUnitsIsRefused) {
  const clx::TaskStream stream = two_task_stream(32, 16);
  torch::manual_seed(5);
  clx::MlpConfig no_hidden;
  no_hidden.hidden = {};
  auto model = clx::make_mlp(stream.input_shape, no_hidden, clx::head_sizes_for(stream, clx::HeadLayout::Multi));
  clx::HatStrategy strategy(clx::HatOptions{});
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::Trainer trainer(hat_config(), single, stream, model.ptr(), strategy, quiet);
  expect_error([&] { trainer.train_stage(0, {0}); }, {"exposes its hidden units"});
}

// After task 1, every weight between two units task 1 fully uses (cumulative
// gate exactly 1) keeps its value bit for bit through task 2's training, and
// so does every bias of such a unit; weights into units task 1 leaves free do move.
TEST(HatTraining, LaterTaskLeavesTheWeightsOfEarlierUnitsUnchanged) {
  const clx::TaskStream stream = two_task_stream(256, 64);
  auto model = hat_mlp(stream);
  clx::HatStrategy strategy(clx::HatOptions{});
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::Trainer trainer(hat_config(), single, stream, model.ptr(), strategy, quiet);
  trainer.train_stage(0, {0});
  const auto after_first = trainer.evaluate_all(0);
  const clx::NamedTensors before = clx::snapshot_shared(*model);
  std::vector<torch::Tensor> cumulative;
  for (const auto& item : strategy.cumulative_masks()) cumulative.push_back(item.second.clone());
  trainer.train_stage(1, {1});

  int64_t frozen = 0, moved_free = 0;
  const auto now = model->named_shared_parameters();
  for (size_t k = 0; k < now.size(); ++k) {
    const auto& wiring = wiring_of(*model, now[k].first);
    torch::Tensor used = clx::output_units_view(wiring, now[k].second, cumulative);
    const torch::Tensor in = clx::input_units_view(wiring, now[k].second, cumulative);
    if (in.defined()) used = torch::min(used, in);
    used = used.expand_as(now[k].second);
    const torch::Tensor unchanged = now[k].second.detach().eq(before[k].second);
    const torch::Tensor blocked = used.eq(1.0);
    frozen += blocked.sum().item<int64_t>();
    EXPECT_TRUE(unchanged.masked_select(blocked).all().item<bool>()) << now[k].first;
    moved_free += torch::logical_not(unchanged).logical_and(used.eq(0.0)).sum().item<int64_t>();
  }
  EXPECT_GT(frozen, 0);
  EXPECT_GT(moved_free, 0);
  // Task 1 is evaluated through its own gates: what task 2 trained does not reach it.
  const auto after_second = trainer.evaluate_all(1);
  EXPECT_NEAR(after_second[0], after_first[0], 1.0 / 64 + 1e-9);
}

class HatResume : public clx::testing_support::TempDirTest {
 protected:
  HatResume() : TempDirTest("clx_hat_") {}
};

// Stopped in the middle of task 2 and resumed from that checkpoint: the same
// weights, embeddings, cumulative masks and accuracy matrix, bit for bit.
TEST_F(HatResume, MidTaskEqualsUninterrupted) {
  const clx::TaskStream stream = two_task_stream(96, 32);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = hat_config();
  checkpoint_every_step(config, path("checkpoints").string());
  auto model = hat_mlp(stream);
  clx::HatStrategy strategy(clx::HatOptions{});
  clx::Trainer trainer(config, single, stream, model.ptr(), strategy, quiet);
  const clx::RunResult uninterrupted = trainer.run();

  const auto middle = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 1 && state.phase == "training" && state.epoch == 1 && state.step == 3;
  });
  ASSERT_TRUE(middle.has_value());
  auto resumed_model = hat_mlp(stream);
  clx::HatStrategy resumed_strategy(clx::HatOptions{});
  config.checkpoint_dir = path("resumed").string();
  clx::Trainer resumed_trainer(config, single, stream, resumed_model.ptr(), resumed_strategy, quiet);
  const clx::RunResult resumed = resumed_trainer.run(&*middle, "middle");

  EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
  expect_same_parameters(*model, *resumed_model);
  const auto expected_state = strategy.state(), got_state = resumed_strategy.state();
  ASSERT_EQ(got_state.size(), expected_state.size());
  for (size_t k = 0; k < expected_state.size(); ++k)
    EXPECT_TRUE(torch::equal(got_state[k].second, expected_state[k].second)) << got_state[k].first;
}

TEST(HatResults, UnitsTablePerTaskAndLayerFromTheEmbeddings) {
  // At s_max = 400 a gate sigmoid(400 e) exceeds 0.5 exactly when e > 0.
  clx::HatStrategy strategy(clx::HatOptions{});
  strategy.load_state({{"embedding.trunk.2", torch::tensor({{1.0f, -1.0f, 0.01f, -0.01f}, {-1.0f, 1.0f, -1.0f, 0.002f}})},
                       {"embedding.trunk.4", torch::tensor({{0.5f, -0.5f}, {0.5f, -0.1f}})},
                       {"cumulative.trunk.2", torch::zeros({4})},
                       {"cumulative.trunk.4", torch::zeros({2})}});
  const std::vector<clx::ResultTable> tables = strategy.result_tables(2);
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_EQ(tables[0].name, "hat_units");
  using Row = std::vector<clx::ResultTable::Cell>;
  const std::vector<Row> expected = {
      Row{int64_t{1}, std::string("trunk.2"), int64_t{4}, int64_t{2}, int64_t{2}, 50.0},
      Row{int64_t{1}, std::string("trunk.4"), int64_t{2}, int64_t{1}, int64_t{1}, 50.0},
      Row{int64_t{2}, std::string("trunk.2"), int64_t{4}, int64_t{2}, int64_t{4}, 100.0},
      Row{int64_t{2}, std::string("trunk.4"), int64_t{2}, int64_t{1}, int64_t{1}, 50.0}};
  EXPECT_EQ(tables[0].rows, expected);
  EXPECT_EQ(strategy.result_tables(1)[0].rows.size(), 2u);  // only the tasks trained so far
}
