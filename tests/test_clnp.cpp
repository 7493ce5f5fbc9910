// CLNP (DESIGN.md §4.3): the threshold search by hand, zero forgetting on the
// accuracy matrix (exactly, with momentum and weight decay in the optimizer),
// the weights between free and owned units, bad input, and resume before the
// threshold search equal to an uninterrupted run.
#include <gtest/gtest.h>

#include "algorithms/clnp.h"
#include "models/conv_nets.h"
#include "models/multi_head_model.h"
#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/trainer.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"
#include "tests/trainer_test_support.h"

using clx::testing_support::checkpoint_every_step;
using clx::testing_support::expect_same_parameters;
using clx::testing_support::find_checkpoint;
using clx::testing_support::expect_error;
using clx::testing_support::pixel_class_images;
using clx::testing_support::small_trainer_config;

namespace {

// Two tasks of 5 classes on the pixel images, 20% of each task's training data held out for validation.
clx::TaskStream stream_with_validation(int64_t train_size, int64_t test_size) {
  clx::StreamConfig config;
  config.kind = clx::StreamKind::Split;
  config.num_tasks = 2;
  config.classes_per_task = 5;
  config.validation_fraction = 0.2;
  return clx::build_task_stream(config, pixel_class_images(train_size, 11), pixel_class_images(test_size, 12));
}

clx::MultiHeadModel clnp_mlp(const clx::TaskStream& stream, std::vector<int64_t> hidden = {16, 8}) {
  torch::manual_seed(5);
  clx::MlpConfig mlp;
  mlp.hidden = std::move(hidden);
  return clx::make_mlp(stream.input_shape, mlp, clx::head_sizes_for(stream, clx::HeadLayout::Multi));
}

clx::TrainerConfig clnp_config() {
  clx::TrainerConfig config = small_trainer_config(16);  // momentum 0.9
  config.weight_decay = 1e-3;  // must not move the weights of owned units either
  config.epochs = 3;
  return config;
}

clx::ClnpOptions clnp_options() {
  clx::ClnpOptions options;
  options.alpha = 1e-3;
  options.margin = 2.0;
  return options;
}

}  // namespace

TEST(ClnpThresholdSearch, LargestPrefixWithinTheMarginByBisection) {
  const std::vector<double> values = {0.1, 0.2, 0.3, 0.4, 0.5};
  // Accuracy without units <= values[j]: 0.90, then 0.895, 0.89, 0.87, 0.80, 0.5.
  const double accuracy[] = {0.90, 0.895, 0.89, 0.87, 0.80, 0.5};
  std::vector<int64_t> asked;
  const auto result = clx::clnp_search_threshold(values, 0.88, [&](int64_t j) {
    asked.push_back(j);
    return accuracy[j + 1];
  });
  EXPECT_DOUBLE_EQ(result.pruned_up_to, 0.2);  // pruning up to 0.3 gives 0.87 < 0.88
  EXPECT_DOUBLE_EQ(result.accuracy, 0.89);
  EXPECT_LE(asked.size(), 4u);  // bisection: -1, then about log2(6) probes
  // Nothing may go: the answer prunes no unit.
  const auto none = clx::clnp_search_threshold(values, 0.899, [&](int64_t j) { return accuracy[j + 1]; });
  EXPECT_LT(none.pruned_up_to, 0);
  EXPECT_DOUBLE_EQ(none.accuracy, 0.90);
  // Everything may go.
  const auto all = clx::clnp_search_threshold(values, 0.4, [&](int64_t j) { return accuracy[j + 1]; });
  EXPECT_DOUBLE_EQ(all.pruned_up_to, 0.5);
}

TEST(ClnpOptions, RefuseImpossibleValues) {
  clx::ClnpOptions negative_margin;
  negative_margin.margin = -1;
  expect_error([&] { clx::ClnpStrategy strategy(negative_margin); }, {"clnp.margin"});
  clx::ClnpOptions negative_alpha;
  negative_alpha.alpha = -1;
  expect_error([&] { clx::ClnpStrategy strategy(negative_alpha); }, {"clnp.alpha"});
}

// Task 1's accuracy after task 2 is exactly its accuracy after task 1; units
// are split between task 1 and the free pool, and no weight leads from a free
// unit into an owned one (nor into task 1's head).
TEST(ClnpTraining, EarlierTaskAccuracyIsExactlyUnchanged) {
  const clx::TaskStream stream = stream_with_validation(400, 200);
  auto model = clnp_mlp(stream);
  clx::ClnpStrategy strategy(clnp_options());
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::Trainer trainer(clnp_config(), single, stream, model.ptr(), strategy, quiet);
  const clx::RunResult result = trainer.run();
  ASSERT_EQ(result.matrix.stages.size(), 2u);
  EXPECT_EQ(result.matrix.stages[1][0], result.matrix.stages[0][0]);
  EXPECT_GT(result.matrix.stages[0][0], 0.5);  // it learned something worth keeping

  int64_t owned_first = 0;
  std::vector<torch::Tensor> free;
  for (const auto& [name, owner] : strategy.owners()) {
    owned_first += owner.eq(0).sum().item<int64_t>();
    free.push_back(owner.lt(0).to(torch::kFloat32));
  }
  EXPECT_GT(owned_first, 0);
  const auto parameters = model->named_parameters();
  // trunk.3.weight: [8 units of layer 2, 16 units of layer 1].
  const torch::Tensor owner1 = strategy.owners()[0].second, owner2 = strategy.owners()[1].second;
  const torch::Tensor weight = parameters["trunk.3.weight"];
  for (int64_t out = 0; out < 8; ++out)
    for (int64_t in = 0; in < 16; ++in) {
      const int64_t o = owner2[out].item<int64_t>(), i = owner1[in].item<int64_t>();
      // A weight into a unit owned by task k from a unit that is free or owned by a later task is zero.
      if (o >= 0 && (i < 0 || i > o)) EXPECT_EQ(weight[out][in].item<float>(), 0.0f) << out << " " << in;
    }
  const torch::Tensor head0 = model->head_parameters(0).at(0);
  for (int64_t unit = 0; unit < 8; ++unit)
    if (owner2[unit].item<int64_t>() != 0) EXPECT_TRUE(head0.select(1, unit).eq(0).all().item<bool>()) << unit;
}

TEST(ClnpTraining, RefusesStreamsModelsAndExhaustedLayers) {
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  {
    // No validation split to choose the threshold on.
    clx::StreamConfig config;
    config.kind = clx::StreamKind::Split;
    config.num_tasks = 2;
    config.classes_per_task = 5;
    const clx::TaskStream stream = clx::build_task_stream(config, pixel_class_images(64, 11), pixel_class_images(32, 12));
    auto model = clnp_mlp(stream);
    clx::ClnpStrategy strategy(clnp_options());
    clx::Trainer trainer(clnp_config(), single, stream, model.ptr(), strategy, quiet);
    expect_error([&] { trainer.train_stage(0, {0}); }, {"data.validation_fraction"});
  }
  const clx::TaskStream stream = stream_with_validation(64, 32);
  {
    // A ResNet's BatchNorm statistics and shortcuts mix units.
    torch::manual_seed(1);
    auto resnet = clx::make_resnet18({1, 4, 4}, clx::ResNet18Config{0.125, "small"},
                                     clx::head_sizes_for(stream, clx::HeadLayout::Multi));
    clx::ClnpStrategy strategy(clnp_options());
    clx::Trainer trainer(clnp_config(), single, stream, resnet.ptr(), strategy, quiet);
    expect_error([&] { trainer.train_stage(0, {0}); }, {"units only meet through weights"});
  }
  {
    // Every unit of the first layer taken by task 1: task 2 cannot start.
    auto model = clnp_mlp(stream, {4, 3});
    clx::ClnpStrategy strategy(clnp_options());
    strategy.load_state({{"owner.trunk.2", torch::zeros({4}, torch::kInt64)},
                         {"owner.trunk.4", torch::tensor({0, -1, -1}, torch::kInt64)}});
    clx::Trainer trainer(clnp_config(), single, stream, model.ptr(), strategy, quiet);
    expect_error([&] { trainer.train_stage(1, {1}); }, {"no free units left in trunk.2 for task 2 of 2"});
  }
}

class ClnpResume : public clx::testing_support::TempDirTest {
 protected:
  ClnpResume() : TempDirTest("clx_clnp_") {}
};

// Stopped in task 1's second epoch, before its threshold search, and resumed:
// the search, the owners, the weights and the accuracy matrix are those of
// the uninterrupted run, bit for bit.
TEST_F(ClnpResume, BeforeTheThresholdSearchEqualsUninterrupted) {
  const clx::TaskStream stream = stream_with_validation(160, 64);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = clnp_config();
  checkpoint_every_step(config, path("checkpoints").string());
  auto model = clnp_mlp(stream);
  clx::ClnpStrategy strategy(clnp_options());
  clx::Trainer trainer(config, single, stream, model.ptr(), strategy, quiet);
  const clx::RunResult uninterrupted = trainer.run();

  for (const int stage : {0, 1}) {
    SCOPED_TRACE("stopped in stage " + std::to_string(stage + 1));
    const auto middle = find_checkpoint(config.checkpoint_dir, [stage](const clx::CheckpointState& state) {
      return state.stage == stage && state.phase == "training" && state.epoch == 1 && state.step == 2;
    });
    ASSERT_TRUE(middle.has_value());
    auto resumed_model = clnp_mlp(stream);
    clx::ClnpStrategy resumed_strategy(clnp_options());
    clx::TrainerConfig resumed_config = config;
    resumed_config.checkpoint_dir = path("resumed" + std::to_string(stage)).string();
    clx::Trainer resumed_trainer(resumed_config, single, stream, resumed_model.ptr(), resumed_strategy, quiet);
    const clx::RunResult resumed = resumed_trainer.run(&*middle, "middle");
    EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
    expect_same_parameters(*model, *resumed_model);
    for (size_t k = 0; k < strategy.owners().size(); ++k)
      EXPECT_TRUE(torch::equal(resumed_strategy.owners()[k].second, strategy.owners()[k].second));
  }
}

TEST(ClnpResults, UnitsTablePerTaskAndLayerFromTheOwners) {
  // Owners after 3 tasks (-1 free): a unit claimed by task 3 was free after tasks 1 and 2.
  clx::ClnpStrategy strategy(clnp_options());
  strategy.load_state({{"owner.trunk.2", torch::tensor({0, 0, 1, -1, 2}, torch::kInt64)},
                       {"owner.trunk.4", torch::tensor({-1, 1, 1}, torch::kInt64)}});
  const std::vector<clx::ResultTable> tables = strategy.result_tables(3);
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_EQ(tables[0].name, "clnp_units");
  using Row = std::vector<clx::ResultTable::Cell>;
  const auto row = [](int64_t task, const char* layer, int64_t units, int64_t own, int64_t earlier, int64_t free) {
    return Row{task, std::string(layer), units, own, earlier, free};
  };
  const std::vector<Row> expected = {row(1, "trunk.2", 5, 2, 0, 3), row(1, "trunk.4", 3, 0, 0, 3),
                                     row(2, "trunk.2", 5, 1, 2, 2), row(2, "trunk.4", 3, 2, 0, 1),
                                     row(3, "trunk.2", 5, 1, 3, 1), row(3, "trunk.4", 3, 0, 2, 1)};
  EXPECT_EQ(tables[0].rows, expected);
}
