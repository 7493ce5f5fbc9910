// DGM (models/dgm_net.h, algorithms/dgm.h, models/dgm_objective.h): the
// growth rule and schedule against hand arithmetic, masks binarised and
// combined, an expansion that leaves earlier tasks' images as they were, a
// checkpoint of a grown network read back, and training: what task 1
// reserved stays unchanged through task 2, and resumes before, at and after
// an expansion equal the uninterrupted run.
#include <algorithm>
#include <functional>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "algorithms/dgm.h"
#include "models/dgm_net.h"
#include "models/dgm_objective.h"
#include "runtime/checkpoint.h"
#include "runtime/communicator.h"
#include "runtime/logging.h"
#include "runtime/trainer.h"
#include "tests/expect_error.h"
#include "tests/generation_test_support.h"
#include "tests/temp_dir_test.h"

namespace {

using clx::testing_support::checkpoint_every_step;
using clx::testing_support::expect_error;
using clx::testing_support::expect_same_parameters;
using clx::testing_support::find_checkpoint;
using clx::testing_support::two_class_task_stream;

clx::DgmNetConfig small_config(clx::DgmMasks masks) {
  clx::DgmNetConfig config;
  config.masks = masks;
  config.image_size = 28;
  config.noise_dim = 16;
  config.base_channels = 2;  // widths 8, 4, 2
  config.classes = 2;
  config.tasks = 2;
  config.seed = 7;
  return config;
}

clx::DgmNet small_dgm(clx::DgmMasks masks) {
  torch::manual_seed(5);
  return clx::DgmNet(small_config(masks));
}

torch::Tensor fixed_noise(int64_t n, int64_t dim) {
  torch::manual_seed(99);
  return torch::randn({n, dim});
}

}  // namespace

TEST(DgmFormulas, GrowthKeepsTheFreeCapacityAsTheReferenceComputesIt) {
  // DGMw, noise 128, widths 24, 12, 6 (the reference's MNIST generator), 4x4 kernels;
  // the task reserved 5000, 3000 and 500 weights.
  // conv1: ceil(5000 / (128 * 16)) = 3; conv2: inputs 24 + 3 = 27, credit 3 * 12 * 16 = 576,
  // ceil((3000 - 576) / (27 * 16)) = ceil(5.61) = 6; conv3: inputs 12 + 6 = 18, credit 6 * 6 * 16 = 576 > 500: 0.
  const clx::DgmWidths added = clx::dgm_growth(clx::DgmMasks::Weights, {5000, 3000, 500}, {24, 12, 6}, 128, {4, 4, 4});
  EXPECT_EQ(added, (clx::DgmWidths{3, 6, 0}));
  // A layer that reserved nothing more gains nothing.
  EXPECT_EQ(clx::dgm_growth(clx::DgmMasks::Weights, {0, 0, 0}, {24, 12, 6}, 128, {4, 4, 4}), (clx::DgmWidths{0, 0, 0}));
  // DGMa: as many units as the task reserved.
  EXPECT_EQ(clx::dgm_growth(clx::DgmMasks::Units, {5, 0, 2}, {80, 40, 20}, 128, {4, 4, 4}), (clx::DgmWidths{5, 0, 2}));
}

TEST(DgmFormulas, LargestScaleRisesOverTheEpochsToSmax) {
  // 1/s_max + (s_max - 1/s_max) (e + 1) / E, s_max 1e4, E = 4.
  EXPECT_DOUBLE_EQ(clx::dgm_epoch_scale(1e4, 0, 4), 1e-4 + (1e4 - 1e-4) * 0.25);
  EXPECT_DOUBLE_EQ(clx::dgm_epoch_scale(1e4, 1, 4), 1e-4 + (1e4 - 1e-4) * 0.5);
  EXPECT_DOUBLE_EQ(clx::dgm_epoch_scale(1e4, 3, 4), 1e4);
}

TEST(DgmOptions, ReferenceValuesPerMaskKindAndRefusals) {
  clx::DgmOptions weights;
  weights.masks = clx::DgmMasks::Weights;
  EXPECT_DOUBLE_EQ(clx::resolved_dgm_options(weights).smax, 1e4);
  EXPECT_DOUBLE_EQ(clx::resolved_dgm_options(weights).sparsity, 0.08);
  clx::DgmOptions units;
  units.masks = clx::DgmMasks::Units;
  EXPECT_DOUBLE_EQ(clx::resolved_dgm_options(units).smax, 1e5);
  EXPECT_DOUBLE_EQ(clx::resolved_dgm_options(units).sparsity, 0.01);
  clx::DgmOptions bad;
  bad.smax = -1;
  expect_error([&] { clx::DgmStrategy strategy(bad); }, {"dgm.smax", "positive"});
  bad = clx::DgmOptions{};
  bad.max_units = 0;
  expect_error([&] { clx::DgmStrategy strategy(bad); }, {"dgm.max_units"});
  expect_error([] { clx::parse_dgm_masks("channels"); }, {"dgm.masks", "weights", "units"});
}

TEST(DgmMasks, BinarisedAtZeroAndCombinedByMax) {
  clx::DgmNet net = small_dgm(clx::DgmMasks::Units);
  {
    torch::NoGradGuard no_grad;
    // conv3 has 2 units: task 1 (-0.5, 0) -> (0, 1): e = 0 is sigmoid 0.5, kept as the reference's >= 0.5;
    // task 2 (3, -2) -> (1, 0); the union (1, 1).
    net->embeddings(0)[2].copy_(torch::tensor({-0.5, 0.0}));
    net->embeddings(1)[2].copy_(torch::tensor({3.0, -2.0}));
    net->embeddings(0)[0].fill_(-1.0);
    net->embeddings(1)[0].fill_(-1.0);
  }
  EXPECT_TRUE(torch::equal(net->binary_masks(0)[2], torch::tensor({0.0f, 1.0f})));
  EXPECT_TRUE(torch::equal(net->binary_masks(1)[2], torch::tensor({1.0f, 0.0f})));
  EXPECT_TRUE(torch::equal(net->reserved_masks(-1)[2], torch::tensor({0.0f, 0.0f})));
  EXPECT_TRUE(torch::equal(net->reserved_masks(0)[2], torch::tensor({0.0f, 1.0f})));
  EXPECT_TRUE(torch::equal(net->reserved_masks(1)[2], torch::tensor({1.0f, 1.0f})));
  EXPECT_EQ(net->reserved_masks(1)[0].sum().item<double>(), 0.0);
  // DGMa's weight view: conv3's weight [4 in, 2 out] is reserved where its output unit and its input unit are.
  std::vector<torch::Tensor> reserved = net->reserved_masks(1);
  reserved[1] = torch::tensor({1.0f, 0.0f, 1.0f, 0.0f});
  const torch::Tensor view = net->reserved_weights(reserved)[2].select(3, 0).select(2, 0);  // [in, out]
  EXPECT_TRUE(torch::equal(view, torch::tensor({{1.0f, 1.0f}, {0.0f, 0.0f}, {1.0f, 1.0f}, {0.0f, 0.0f}})));
}

class DgmExpansion : public ::testing::TestWithParam<clx::DgmMasks> {};

TEST_P(DgmExpansion, LeavesTheImagesOfFinishedTasksUnchanged) {
  clx::DgmNet net = small_dgm(GetParam());
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& embedding : net->embeddings(0)) embedding.copy_(torch::randn(embedding.sizes()));
  }
  const torch::Tensor z = fixed_noise(6, 16);
  const torch::Tensor classes = torch::tensor({0, 1, 0, 1, 0, 1}, torch::kInt64);
  const torch::Tensor before = net->generate(z, classes, 0).detach();
  const torch::Tensor task_2_embedding = net->embeddings(1)[0].detach().clone();
  net->expand({3, 2, 1}, /*finished=*/0, /*growth=*/0);
  EXPECT_EQ(net->widths(), (clx::DgmWidths{11, 6, 3}));
  EXPECT_EQ(net->weights()[1].sizes(), torch::IntArrayRef({11, 6, 4, 4}));
  const torch::Tensor after = net->generate(z, classes, 0).detach();
  EXPECT_TRUE(torch::allclose(after, before, 0.0, 1e-6)) << (after - before).abs().max().item<double>();
  // New entries: -90 for the finished task (mask 0), 0 for the next (mask 1, free to take).
  const torch::Tensor finished = net->embeddings(0)[0].detach(), next = net->embeddings(1)[0].detach();
  EXPECT_EQ(finished.narrow(GetParam() == clx::DgmMasks::Weights ? 1 : 0, 8, 3).max().item<double>(), -90.0);
  EXPECT_EQ(next.narrow(GetParam() == clx::DgmMasks::Weights ? 1 : 0, 8, 3).abs().max().item<double>(), 0.0);
  // The next task's existing entries are kept.
  EXPECT_TRUE(torch::equal(next.narrow(GetParam() == clx::DgmMasks::Weights ? 1 : 0, 0, 8), task_2_embedding));
  // Growth draws the same values on any rank: a second network grown alike is identical.
  clx::DgmNet twin = small_dgm(GetParam());
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& embedding : twin->embeddings(0)) embedding.copy_(torch::randn(embedding.sizes()));
  }
  twin->expand({3, 2, 1}, 0, 0);
  expect_same_parameters(*net, *twin);
}

INSTANTIATE_TEST_SUITE_P(WeightsAndUnits, DgmExpansion, ::testing::Values(clx::DgmMasks::Weights, clx::DgmMasks::Units));

TEST(DgmCheckpoint, AFreshNetworkTakesTheSavedShapesAndRefusesANarrowerStart) {
  clx::DgmNet grown = small_dgm(clx::DgmMasks::Weights);
  grown->expand({3, 2, 1}, 0, 0);
  const clx::NamedTensors saved = clx::parameters_and_buffers(*grown);
  clx::DgmNet fresh = small_dgm(clx::DgmMasks::Weights);
  fresh->prepare_for_saved_state(saved);
  EXPECT_EQ(fresh->widths(), grown->widths());
  const clx::NamedTensors live = clx::parameters_and_buffers(*fresh);
  ASSERT_EQ(live.size(), saved.size());
  for (size_t k = 0; k < live.size(); ++k) EXPECT_EQ(live[k].second.sizes(), saved[k].second.sizes()) << live[k].first;

  clx::DgmNetConfig wider = small_config(clx::DgmMasks::Weights);
  wider.base_channels = 4;  // starts at 16, 8, 4: the saved 11 is narrower
  clx::DgmNet other(wider);
  expect_error([&] { other->prepare_for_saved_state(saved); },
               {"conv1.weight", "11 output channels", "fewer than the 16", "another initial size"});
}

namespace {

struct DgmRun {
  clx::DgmNet model{nullptr};
  std::unique_ptr<clx::DgmStrategy> strategy;
  std::unique_ptr<clx::DgmObjective> objective;
};

// `model`: another network than small_dgm's (built with its seed and config).
DgmRun make_dgm_run(const clx::TaskStream& stream, clx::DgmMasks masks, clx::DgmNet model = nullptr) {
  DgmRun run;
  run.model = model ? model : small_dgm(masks);
  clx::DgmOptions options;
  options.masks = masks;
  run.strategy = std::make_unique<clx::DgmStrategy>(options);
  clx::DgmObjectiveConfig objective;
  objective.seed = 1;
  run.objective = std::make_unique<clx::DgmObjective>(objective);
  torch::manual_seed(11);
  run.objective->check(*run.model, stream, clx::HeadLayout::Single);
  run.objective->prepare(*run.model, stream);
  return run;
}

clx::TrainerConfig dgm_trainer_config() {
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(16);
  config.optimizer = clx::OptimizerKind::Adam;
  config.lr = 0.002;
  config.adam_beta1 = 0.5;
  config.heads = clx::HeadLayout::Single;
  return config;
}

class DgmTraining : public clx::testing_support::TempDirTest {
 protected:
  DgmTraining() : TempDirTest("clx_dgm_") {}
};

}  // namespace

// Task 2 trains the free part of the generator only: task 1's images, made
// through its binary masks, are what they were after task 1; the reserved
// weights are unchanged and the generator grew.
TEST_F(DgmTraining, TaskTwoLeavesTaskOnesGeneratorUnchanged) {
  const clx::TaskStream stream = two_class_task_stream(64, 32);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  DgmRun run = make_dgm_run(stream, clx::DgmMasks::Weights);
  clx::TrainerConfig config = dgm_trainer_config();
  config.checkpoint_dir = path("checkpoints").string();
  config.config_text = "test = 1\n";
  clx::Trainer trainer(config, single, stream, run.model.ptr(), *run.strategy, quiet, run.objective.get());
  const clx::RunResult result = trainer.run();
  ASSERT_EQ(result.matrix.stages.size(), 2u);

  // The checkpoint after task 1 (before the expansion's values were trained on).
  const auto after_first = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 1 && state.phase == "between_tasks";
  });
  ASSERT_TRUE(after_first.has_value());
  clx::DgmNet first = small_dgm(clx::DgmMasks::Weights);
  first->prepare_for_saved_state(after_first->model);
  {
    torch::NoGradGuard no_grad;
    const clx::NamedTensors live = clx::parameters_and_buffers(*first);
    for (auto& [name, tensor] : live) tensor.copy_(clx::named(after_first->model, name));
  }
  EXPECT_GT(run.model->widths()[0] + run.model->widths()[1] + run.model->widths()[2], 14) << "the generator did not grow";
  const torch::Tensor z = fixed_noise(8, 16);
  const torch::Tensor zeros = torch::zeros({8}, torch::kInt64);
  const torch::Tensor then = first->generate(z, zeros, 0).detach();
  const torch::Tensor now = run.model->generate(z, zeros, 0).detach();
  EXPECT_TRUE(torch::allclose(now, then, 0.0, 1e-5)) << (now - then).abs().max().item<double>();
  // The weights task 1 reserved, unchanged bit for bit.
  const std::vector<torch::Tensor> reserved = first->reserved_masks(0);
  for (int l = 0; l < clx::kDgmLayers; ++l) {
    const torch::Tensor old_weight = first->weights()[l].detach();
    torch::Tensor current = run.model->weights()[l].detach();
    for (int64_t d = 0; d < old_weight.dim(); ++d) current = current.narrow(d, 0, old_weight.size(d));
    const torch::Tensor kept = reserved[l].gt(0.5);
    EXPECT_GT(kept.sum().item<int64_t>(), 0) << "layer " << l;
    EXPECT_TRUE(torch::equal(current.masked_select(kept), old_weight.masked_select(kept))) << "layer " << l;
  }
  // The result table: one row per task and layer.
  const auto tables = run.strategy->result_tables(2);
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_EQ(tables[0].rows.size(), 6u);
}

// The head slot as the optimizer once got it: every task's output layer and
// mask embeddings, whichever task the stage trains.
class WholeSlotDgm : public clx::DgmNetImpl {
 public:
  using clx::DgmNetImpl::DgmNetImpl;
  std::vector<torch::Tensor> head_parameters_trained_by(int64_t head, const std::vector<int>&) const override {
    return head_parameters(head);
  }
};

// A stage optimises its own task's output layer and embeddings only (with
// DGMw most of the generator's parameters are the other tasks' embeddings).
// They get no gradient in that stage, so leaving them out of the optimizer
// and the all-reduce changes no value: the same generator, critic and matrix
// as a run that hands the optimizer the whole slot.
TEST_F(DgmTraining, AStageOptimisesItsOwnTasksTensorsOnlyWithTheSameResult) {
  const clx::TaskStream stream = two_class_task_stream(64, 32);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = dgm_trainer_config();

  DgmRun own = make_dgm_run(stream, clx::DgmMasks::Weights);
  const std::vector<torch::Tensor> second = own.model->head_parameters_trained_by(0, {1});
  ASSERT_EQ(second.size(), 1u + clx::kDgmLayers);
  EXPECT_TRUE(second[0].is_same(own.model->head_parameters(0)[1])) << "task 2's output layer first";
  for (int l = 0; l < clx::kDgmLayers; ++l)
    EXPECT_TRUE(second[1 + l].is_same(own.model->embeddings(1)[l])) << "task 2's embedding of layer " << l;
  clx::Trainer own_trainer(config, single, stream, own.model.ptr(), *own.strategy, quiet, own.objective.get());
  const clx::RunResult own_result = own_trainer.run();

  torch::manual_seed(5);  // as small_dgm
  DgmRun whole = make_dgm_run(stream, clx::DgmMasks::Weights,
                              clx::DgmNet(std::shared_ptr<clx::DgmNetImpl>(
                                  std::make_shared<WholeSlotDgm>(small_config(clx::DgmMasks::Weights)))));
  clx::Trainer whole_trainer(config, single, stream, whole.model.ptr(), *whole.strategy, quiet, whole.objective.get());
  const clx::RunResult whole_result = whole_trainer.run();

  EXPECT_EQ(own_result.matrix.stages, whole_result.matrix.stages);
  EXPECT_EQ(own.model->widths(), whole.model->widths());
  expect_same_parameters(*own.model, *whole.model);
  expect_same_parameters(*own.objective->critic(), *whole.objective->critic());
}

// Resumed into a network built at its initial size from three checkpoints:
// in the middle of task 1 (before the expansion), between the tasks (the
// expansion just made, nothing trained on it yet) and in the middle of task
// 2 (after it): the same generator, critic and matrix as uninterrupted.
TEST_F(DgmTraining, ResumeBeforeAtAndAfterAnExpansionEqualsUninterrupted) {
  const clx::TaskStream stream = two_class_task_stream(64, 32);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = dgm_trainer_config();
  checkpoint_every_step(config, path("checkpoints").string());
  DgmRun run = make_dgm_run(stream, clx::DgmMasks::Units);
  const clx::DgmWidths initial_widths = run.model->widths();
  clx::Trainer trainer(config, single, stream, run.model.ptr(), *run.strategy, quiet, run.objective.get());
  const clx::RunResult uninterrupted = trainer.run();
  ASSERT_NE(run.model->widths(), initial_widths) << "the generator did not grow: nothing to resume across";

  struct Point {
    std::string name;
    std::function<bool(const clx::CheckpointState&)> is;
  };
  const std::vector<Point> points{
      {"before the expansion (task 1, epoch 2, step 2)",
       [](const clx::CheckpointState& s) { return s.stage == 0 && s.phase == "training" && s.epoch == 1 && s.step == 2; }},
      {"at the expansion (between tasks 1 and 2)",
       [](const clx::CheckpointState& s) { return s.stage == 1 && s.phase == "between_tasks"; }},
      {"after the expansion (task 2, epoch 2, step 2)",
       [](const clx::CheckpointState& s) { return s.stage == 1 && s.phase == "training" && s.epoch == 1 && s.step == 2; }},
  };
  for (size_t k = 0; k < points.size(); ++k) {
    SCOPED_TRACE(points[k].name);
    const auto checkpoint = find_checkpoint(path("checkpoints").string(), points[k].is);
    ASSERT_TRUE(checkpoint.has_value());
    DgmRun resumed = make_dgm_run(stream, clx::DgmMasks::Units);
    clx::TrainerConfig resumed_config = config;
    resumed_config.checkpoint_dir = path("resumed_" + std::to_string(k)).string();
    clx::Trainer resumed_trainer(resumed_config, single, stream, resumed.model.ptr(), *resumed.strategy, quiet,
                                 resumed.objective.get());
    const clx::RunResult result = resumed_trainer.run(&*checkpoint, "checkpoint " + std::to_string(k));
    EXPECT_EQ(result.matrix.stages, uninterrupted.matrix.stages);
    EXPECT_EQ(resumed.model->widths(), run.model->widths());
    expect_same_parameters(*run.model, *resumed.model);
    expect_same_parameters(*run.objective->critic(), *resumed.objective->critic());
  }
}

// Replay of an earlier task: labelled with that task's classes, made through
// that task's binary masks (another task's embeddings, even while it trains
// with soft gates, do not reach it), the same images for the same (stage,
// task, positions) whatever else the batch holds, and new noise at another stage.
TEST(DgmReplay, LabelsAreTheTasksClassesAndImagesComeThroughItsBinaryMasks) {
  const clx::TaskStream stream = two_class_task_stream(64, 32);
  DgmRun run = make_dgm_run(stream, clx::DgmMasks::Weights);
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& embedding : run.model->embeddings(0)) embedding.copy_(torch::randn(embedding.sizes()));
  }
  const int64_t task_1_class = run.objective->task_classes(0).at(0);
  ASSERT_NE(task_1_class, run.objective->task_classes(1).at(0));
  const torch::Tensor positions = torch::tensor({0, 3, 5, 6}, torch::kInt64);
  const clx::DgmObjective::Replay replay = run.objective->replay(*run.model, /*stage=*/1, /*task=*/0, positions);
  EXPECT_TRUE(torch::equal(replay.classes, torch::full({4}, task_1_class, torch::kInt64)));
  EXPECT_EQ(replay.images.sizes(), torch::IntArrayRef({4, 1, 28, 28}));
  EXPECT_FALSE(replay.images.requires_grad());

  // Task 2 training (soft gates, other embeddings) does not change task 1's replay.
  {
    torch::NoGradGuard no_grad;
    for (auto& embedding : run.model->embeddings(1)) embedding.fill_(5.0);
  }
  run.model->set_training_scale(1, 10.0);
  const clx::DgmObjective::Replay again = run.objective->replay(*run.model, 1, 0, positions);
  run.model->clear_training_scale();
  EXPECT_TRUE(torch::equal(again.images, replay.images));
  // A position's image depends on its position alone, not on the batch around it.
  const clx::DgmObjective::Replay one = run.objective->replay(*run.model, 1, 0, torch::tensor({5}, torch::kInt64));
  EXPECT_TRUE(torch::allclose(one.images[0], replay.images[2], 0.0, 1e-6));
  // Task 1's masks decide: switch its gates off everywhere and the replay changes.
  {
    torch::NoGradGuard no_grad;
    for (auto& embedding : run.model->embeddings(0)) embedding.fill_(-1.0);
  }
  EXPECT_FALSE(torch::allclose(run.objective->replay(*run.model, 1, 0, positions).images, replay.images));
  // Another stage replays from other noise.
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    for (auto& embedding : run.model->embeddings(0)) embedding.copy_(torch::randn(embedding.sizes()));
  }
  EXPECT_TRUE(torch::equal(run.objective->replay(*run.model, 1, 0, positions).images, replay.images));
  EXPECT_FALSE(torch::allclose(run.objective->replay(*run.model, 2, 0, positions).images, replay.images));
}

// The classifier's chunks: image g of position p goes to chunk (p + g) mod (t + 1).
TEST(DgmReplay, ChunksSpreadEachPositionsImagesOverTheClassifierSteps) {
  const torch::Tensor positions = torch::tensor({0, 1, 2, 3, 4}, torch::kInt64);
  EXPECT_TRUE(torch::equal(clx::DgmObjective::chunk_of(positions, 0, 3), torch::tensor({0, 1, 2, 0, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(clx::DgmObjective::chunk_of(positions, 2, 3), torch::tensor({2, 0, 1, 2, 0}, torch::kInt64)));
  // Every chunk of a position gets exactly one of its t + 1 images.
  for (int64_t p = 0; p < 5; ++p) {
    std::vector<int64_t> seen;
    for (int64_t g = 0; g < 3; ++g)
      seen.push_back(clx::DgmObjective::chunk_of(torch::tensor({p}, torch::kInt64), g, 3).item<int64_t>());
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2})) << "position " << p;
  }
}

TEST(DgmStream, ATaskIncrementalStreamIsRefused) {
  clx::StreamConfig config;
  config.kind = clx::StreamKind::Permuted;
  config.num_tasks = 2;
  const clx::TaskStream permuted = clx::build_task_stream(config, clx::testing_support::two_class_images(16, 1),
                                                          clx::testing_support::two_class_images(8, 2));
  clx::DgmStrategy strategy(clx::DgmOptions{});
  expect_error([&] { strategy.check_stream(permuted); }, {"train.algorithm=dgm", "class-incremental", "data.stream=split"});
}
