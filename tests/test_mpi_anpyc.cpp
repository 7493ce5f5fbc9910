// Importance passes and consolidation state of the continual-learning
// algorithms on the job's world size against a single-process computation
// made in the same test: Omega, masks, Fisher and MAS importance must not
// depend on the number of ranks.
#include <gtest/gtest.h>

#include "algorithms/anpyc.h"
#include "algorithms/ewc.h"
#include "algorithms/importance.h"
#include "algorithms/mas.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/mpi_test_support.h"

using namespace clx;
using namespace clx::testing_support;

namespace {

// Every comparison of these tests reports the world size.
void expect_close(const NamedTensors& got, const NamedTensors& expected, double rtol) {
  expect_close_to_largest(got, expected, rtol, "on " + std::to_string(world->size()) + " rank(s)");
}

}  // namespace

// 11 samples with a global batch of 4: batches of 4, 4 and 3, the last split 2/1 over 2 ranks.
TEST(DistributedImportance, PassesMatchSingleProcessOnTheSameModel) {
  TaskStream stream = tiny_stream(2, 3, 11);
  MultiHeadModel model = tiny_mlp(stream, {6}, 51);
  SingleCommunicator single;
  Logger quiet(1, "");
  StageContext one = hand_context(model, single, stream, quiet, 1, {1}, 4, 9);
  StageContext all = hand_context(model, *world, stream, quiet, 1, {1}, 4, 9);
  for (double sign : {-1.0, 1.0})
    expect_close(entropy_taylor_importance(all, 1, sign), entropy_taylor_importance(one, 1, sign), 1e-5);
  expect_close(mas_importance(all, 1), mas_importance(one, 1), 1e-5);
  for (bool sampled : {true, false})
    for (int64_t samples : {0, 7}) {
      SCOPED_TRACE(std::string(sampled ? "sampled" : "true") + " labels, samples " + std::to_string(samples));
      expect_close(fisher_diagonal(all, 1, samples, sampled), fisher_diagonal(one, 1, samples, sampled), 1e-5);
    }
}

TEST(DistributedAnpyc, PruningRunGivesTheSameOmegaAndMasksAsOneProcess) {
  TaskStream stream = tiny_stream(3, 2, 11);
  AnpycOptions options;
  options.lambda = 1.0;
  options.first_budget = 0.3;
  options.step = 0.1;
  options.retrain_epochs = 1;
  Logger quiet(1, "");

  MultiHeadModel reference = tiny_mlp(stream, {8, 5}, 52);
  SingleCommunicator single;
  AnpycStrategy reference_anpyc(options);
  Trainer reference_trainer(clx::testing_support::small_trainer_config(4), single, stream, reference.ptr(), reference_anpyc, quiet);

  MultiHeadModel model = tiny_mlp(stream, {8, 5}, 52);
  AnpycStrategy anpyc(options);
  Trainer trainer(clx::testing_support::small_trainer_config(4), *world, stream, model.ptr(), anpyc, quiet);
  trainer.broadcast_parameters();

  for (int stage = 0; stage < 3; ++stage) {
    SCOPED_TRACE("after task " + std::to_string(stage + 1));
    reference_trainer.train_stage(stage, {stage});
    trainer.train_stage(stage, {stage});
    expect_close(anpyc.omega(), reference_anpyc.omega(), 1e-4);
    ASSERT_EQ(anpyc.masks().size(), reference_anpyc.masks().size());
    int64_t free = 0;
    for (size_t k = 0; k < anpyc.masks().size(); ++k) {
      EXPECT_TRUE(torch::equal(anpyc.masks()[k].second, reference_anpyc.masks()[k].second))
          << anpyc.masks()[k].first << " on " << world->size() << " rank(s)";
      free += anpyc.masks()[k].second.eq(0).sum().item<int64_t>();
    }
    if (stage < 2) EXPECT_GT(free, 0) << "nothing was pruned";
    const auto got = model->shared_parameters(), expected = reference->shared_parameters();
    for (size_t k = 0; k < got.size(); ++k)
      EXPECT_TRUE(all_close(got[k], expected[k], 1e-4, 1e-5)) << "parameter " << k;
  }
}

TEST(DistributedBaselines, EwcFishersAndMasOmegaMatchOneProcess) {
  TaskStream stream = tiny_stream(2, 2, 11);
  Logger quiet(1, "");
  SingleCommunicator single;
  {
    EwcOptions options;
    options.lambda = 10.0;
    options.fisher_samples = 9;
    MultiHeadModel reference = tiny_mlp(stream, {6}, 53);
    EwcStrategy reference_ewc(options);
    Trainer(clx::testing_support::small_trainer_config(4), single, stream, reference.ptr(), reference_ewc, quiet).run();
    MultiHeadModel model = tiny_mlp(stream, {6}, 53);
    EwcStrategy ewc(options);
    Trainer(clx::testing_support::small_trainer_config(4), *world, stream, model.ptr(), ewc, quiet).run();
    ASSERT_EQ(ewc.fishers().size(), 2u);
    ASSERT_EQ(reference_ewc.fishers().size(), 2u);
    for (size_t t = 0; t < 2; ++t) {
      SCOPED_TRACE("EWC fisher " + std::to_string(t + 1));
      expect_close(ewc.fishers()[t], reference_ewc.fishers()[t], 1e-4);
    }
  }
  {
    MultiHeadModel reference = tiny_mlp(stream, {6}, 54);
    MasStrategy reference_mas(1.0);
    Trainer(clx::testing_support::small_trainer_config(4), single, stream, reference.ptr(), reference_mas, quiet).run();
    MultiHeadModel model = tiny_mlp(stream, {6}, 54);
    MasStrategy mas(1.0);
    Trainer(clx::testing_support::small_trainer_config(4), *world, stream, model.ptr(), mas, quiet).run();
    SCOPED_TRACE("MAS omega");
    expect_close(mas.omega(), reference_mas.omega(), 1e-4);
  }
}
