// Importance passes and consolidation state of the continual-learning
// algorithms on the job's world size against a single-process computation
// made in the same test. The importance passes sum per-chunk contributions in
// chunk order (algorithms/importance.h), so on the same model they must agree
// with one process bit for bit; whole training runs also differ by the
// summation order of the training gradients (see the last test).
#include <gtest/gtest.h>

#include "algorithms/anpyc.h"
#include "algorithms/ewc.h"
#include "algorithms/importance.h"
#include "algorithms/mas.h"
#include "algorithms/pruning.h"
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

void expect_identical(const NamedTensors& got, const NamedTensors& expected, const std::string& what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].first, expected[k].first);
    EXPECT_TRUE(torch::equal(got[k].second, expected[k].second))
        << what << " " << got[k].first << " on " << world->size() << " rank(s): largest difference "
        << (got[k].second.to(torch::kFloat64) - expected[k].second.to(torch::kFloat64)).abs().max().item<double>();
  }
}

}  // namespace

// 11 samples in importance batches of 4 (4, 4, 3) and per-sample chunks of 128:
// with 2 ranks, rank 1 computes the second batch, rank 0 the first and the third.
TEST(DistributedImportance, PassesEqualOneProcessBitForBitOnTheSameModel) {
  TaskStream stream = tiny_stream(2, 3, 11);
  MultiHeadModel model = tiny_mlp(stream, {6}, 51);
  SingleCommunicator single;
  Logger quiet(1, "");
  StageContext one = hand_context(model, single, stream, quiet, 1, {1}, 4, 9);
  StageContext all = hand_context(model, *world, stream, quiet, 1, {1}, 4, 9);
  for (const auto entropy : {EntropyReduction::Sum, EntropyReduction::Mean})
    for (const auto hessian : {HessianEstimate::GradientSquared, HessianEstimate::Fisher})
      for (double sign : {-1.0, 1.0}) {
        EntropyTaylorSettings settings{4, sign, entropy, hessian};
        expect_identical(entropy_taylor_importance(all, 1, settings), entropy_taylor_importance(one, 1, settings),
                         "entropy-Taylor Omega");
      }
  for (const MasForm form : {MasForm::PerSample, MasForm::Batch})
    expect_identical(mas_importance(all, 1, form), mas_importance(one, 1, form), "MAS Omega");
  for (bool sampled : {true, false})
    for (int64_t samples : {0, 7}) {
      SCOPED_TRACE(std::string(sampled ? "sampled" : "true") + " labels, samples " + std::to_string(samples));
      expect_identical(fisher_diagonal(all, 1, samples, sampled), fisher_diagonal(one, 1, samples, sampled), "Fisher");
    }
}

// 300 samples in importance batches of 100 and per-sample chunks of 128: the
// summed entropy's gradient of each batch is computed whole by one rank.
TEST(DistributedImportance, SummedEntropyAndPerSampleMasEqualOneProcessOnManyBatches) {
  TaskStream stream = tiny_split_stream("tiny", 1, 3, 300, 4, [](int64_t, int64_t classes, uint64_t seed) {
    return tiny_images(classes * 100, classes, seed);
  });
  MultiHeadModel model = tiny_mlp(stream, {7, 5}, 55);
  SingleCommunicator single;
  Logger quiet(1, "");
  StageContext one = hand_context(model, single, stream, quiet, 0, {0}, 32, 9);
  StageContext all = hand_context(model, *world, stream, quiet, 0, {0}, 32, 9);
  expect_identical(entropy_taylor_importance(all, 0, EntropyTaylorSettings{}),
                   entropy_taylor_importance(one, 0, EntropyTaylorSettings{}), "entropy-Taylor Omega");
  expect_identical(mas_importance(all, 0, MasForm::PerSample), mas_importance(one, 0, MasForm::PerSample), "MAS Omega");
}

// A pruning round (no retraining) on identical weights: the masks, weights and
// Omega after it are the same on any number of ranks, bit for bit.
TEST(DistributedAnpyc, PruningRoundGivesBitIdenticalMasksOnTheSameWeights) {
  TaskStream stream = tiny_stream(2, 2, 13);
  SingleCommunicator single;
  Logger quiet(1, "");
  AnpycOptions options;
  options.retrain_epochs = 0;
  options.importance.batch = 3;
  MultiHeadModel reference = tiny_mlp(stream, {8, 5}, 56), model = tiny_mlp(stream, {8, 5}, 56);
  AnpycStrategy reference_anpyc(options), anpyc(options);
  StageContext one = hand_context(reference, single, stream, quiet, 0, {0}, 4);
  StageContext all = hand_context(model, *world, stream, quiet, 0, {0}, 4);
  reference_anpyc.before_task(one);
  anpyc.before_task(all);
  reference_anpyc.after_task(one);
  anpyc.after_task(all);
  expect_identical(anpyc.masks(), reference_anpyc.masks(), "masks");
  expect_identical(anpyc.omega(), reference_anpyc.omega(), "Omega");
  int64_t free = 0;
  for (const auto& [name, mask] : anpyc.masks()) free += mask.eq(0).sum().item<int64_t>();
  EXPECT_GT(free, 0) << "nothing was pruned";
}

// Whole runs: the training gradients of 2 ranks are sums of two half-batch
// gradients, which round differently from one whole-batch gradient, so the
// weights after training agree to float rounding only, and so can the masks
// that pruning derives from them. On this small network they still agree
// exactly; docs/algorithms.md says what is and is not rank-count invariant.
TEST(DistributedAnpyc, PruningRunGivesTheSameOmegaAndMasksAsOneProcess) {
  TaskStream stream = tiny_stream(3, 2, 11);
  AnpycOptions options;
  options.lambda = 1.0;
  options.first_budget = 0.3;
  options.retrain_epochs = 1;
  options.importance.batch = 4;
  Logger quiet(1, "");

  MultiHeadModel reference = tiny_mlp(stream, {8, 5}, 52);
  SingleCommunicator single;
  AnpycStrategy reference_anpyc(options);
  Trainer reference_trainer(small_trainer_config(4), single, stream, reference.ptr(), reference_anpyc, quiet);

  MultiHeadModel model = tiny_mlp(stream, {8, 5}, 52);
  AnpycStrategy anpyc(options);
  Trainer trainer(small_trainer_config(4), *world, stream, model.ptr(), anpyc, quiet);
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
    Trainer(small_trainer_config(4), single, stream, reference.ptr(), reference_ewc, quiet).run();
    MultiHeadModel model = tiny_mlp(stream, {6}, 53);
    EwcStrategy ewc(options);
    Trainer(small_trainer_config(4), *world, stream, model.ptr(), ewc, quiet).run();
    ASSERT_EQ(ewc.fishers().size(), 2u);
    ASSERT_EQ(reference_ewc.fishers().size(), 2u);
    for (size_t t = 0; t < 2; ++t) {
      SCOPED_TRACE("EWC fisher " + std::to_string(t + 1));
      expect_close(ewc.fishers()[t], reference_ewc.fishers()[t], 1e-4);
    }
  }
  {
    MultiHeadModel reference = tiny_mlp(stream, {6}, 54);
    MasStrategy reference_mas(MasOptions{});
    Trainer(small_trainer_config(4), single, stream, reference.ptr(), reference_mas, quiet).run();
    MultiHeadModel model = tiny_mlp(stream, {6}, 54);
    MasStrategy mas(MasOptions{});
    Trainer(small_trainer_config(4), *world, stream, model.ptr(), mas, quiet).run();
    SCOPED_TRACE("MAS omega");
    expect_close(mas.omega(), reference_mas.omega(), 1e-4);
  }
}
