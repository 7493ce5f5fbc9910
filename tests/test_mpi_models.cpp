// Convolutional models on the job's world size: BatchNorm buffers agree across
// ranks after training, and the importance passes (batched Fisher included)
// give the single-process values.
#include <gtest/gtest.h>

#include "algorithms/ewc.h"
#include "algorithms/finetune.h"
#include "algorithms/importance.h"
#include "models/conv_nets.h"
#include "runtime/collectives.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/mpi_test_support.h"

using namespace clx;
using namespace clx::testing_support;

namespace {

MultiHeadModel tiny_resnet(const TaskStream& stream, uint64_t seed) {
  torch::manual_seed(seed);
  ResNet18Config config;
  config.width = 1.0 / 16;  // 4-8-16-32 channels
  return make_resnet18(stream.input_shape, config, head_sizes_for(stream, HeadLayout::Multi));
}

// Every comparison of these tests reports the world size.
void expect_close(const NamedTensors& got, const NamedTensors& expected, double rtol) {
  expect_close_to_largest(got, expected, rtol, "on " + std::to_string(world->size()) + " rank(s)");
}

}  // namespace

TEST(DistributedBuffers, AverageBuffersGivesEveryRankTheMeanInOneStep) {
  TaskStream stream = tiny_image_stream(2, 2, 8, 1, 8);
  MultiHeadModel model = tiny_resnet(stream, 71);
  FinetuneStrategy strategy;
  Logger quiet(1, "");
  Trainer trainer(small_trainer_config(4), *world, stream, model.ptr(), strategy, quiet);
  {
    torch::NoGradGuard no_grad;
    const double r = world->rank() + 1;
    for (const auto& item : model->named_buffers()) {
      const std::string& name = item.key();
      if (name.find("running_mean") != std::string::npos) item.value().fill_(r);
      if (name.find("running_var") != std::string::npos) item.value().fill_(2 * r);
      if (name.find("num_batches_tracked") != std::string::npos) item.value().fill_(static_cast<int64_t>(10 * r));
    }
  }
  trainer.average_buffers();
  // Mean over ranks r = 1..n of r is (n + 1) / 2.
  const double mean = (world->size() + 1) / 2.0;
  for (const auto& item : model->named_buffers()) {
    const std::string& name = item.key();
    const torch::Tensor& value = item.value();
    if (name.find("running_mean") != std::string::npos) EXPECT_TRUE(value.eq(mean).all().item<bool>()) << name;
    if (name.find("running_var") != std::string::npos) EXPECT_TRUE(value.eq(2 * mean).all().item<bool>()) << name;
    if (name.find("num_batches_tracked") != std::string::npos) {
      EXPECT_EQ(value.scalar_type(), torch::kInt64) << name;
      EXPECT_EQ(value.item<int64_t>(), static_cast<int64_t>(10 * mean)) << name;
    }
  }
}

// Each rank normalises its own local batches, so without the end-of-epoch
// average the running statistics would differ and the fingerprint check after
// every task would stop the run. EWC's batched Fisher then runs through
// BatchNorm in eval mode on every rank.
TEST(DistributedBuffers, BatchNormRunWithEwcPassesTheCrossRankFingerprintChecks) {
  TaskStream stream = tiny_image_stream(2, 2, 16, 1, 8);
  MultiHeadModel model = tiny_resnet(stream, 72);
  EwcOptions options;
  options.lambda = 10.0;
  EwcStrategy ewc(options);
  Logger quiet(1, "");
  TrainerConfig config = small_trainer_config(4 * world->size());
  ASSERT_TRUE(config.check_consistency);
  Trainer trainer(config, *world, stream, model.ptr(), ewc, quiet);
  const RunResult result = trainer.run();  // throws CollectiveError if any fingerprint differs
  EXPECT_EQ(result.matrix.stages.size(), 2u);
  const std::string fingerprints = trainer.state_fingerprints();
  EXPECT_NE(fingerprints.find("trunk.1.running_mean"), std::string::npos);
  EXPECT_NE(fingerprints.find("ewc.fisher2.trunk.0.weight"), std::string::npos) << fingerprints;
  require_identical_across_ranks(*world, fingerprints, "buffers after training");
  // Training moved the running statistics away from their initial zero mean.
  EXPECT_GT(model->named_buffers()["trunk.1.running_mean"].abs().max().item<double>(), 0.0);
}

TEST(DistributedImportance, ConvNetPassesMatchSingleProcessOnTheSameModel) {
  TaskStream stream = tiny_image_stream(2, 2, 11, 1, 8);
  SingleCommunicator single;
  Logger quiet(1, "");
  torch::manual_seed(73);
  Vgg9Config vgg_config;
  vgg_config.width = 0.25;
  MultiHeadModel vgg = make_vgg9(stream.input_shape, vgg_config, head_sizes_for(stream, HeadLayout::Multi));
  MultiHeadModel resnet = tiny_resnet(stream, 74);
  for (MultiHeadModel* model : {&vgg, &resnet}) {
    SCOPED_TRACE(model == &vgg ? "vgg9" : "resnet18");
    StageContext one = hand_context(*model, single, stream, quiet, 1, {1}, 4, 9);
    StageContext all = hand_context(*model, *world, stream, quiet, 1, {1}, 4, 9);
    for (bool sampled : {true, false}) {
      SCOPED_TRACE(sampled ? "sampled labels" : "true labels");
      expect_close(fisher_diagonal(all, 1, 0, sampled), fisher_diagonal(one, 1, 0, sampled), 1e-5);
    }
    EntropyTaylorSettings settings;
    settings.batch = 4;
    expect_close(entropy_taylor_importance(all, 1, settings), entropy_taylor_importance(one, 1, settings), 1e-4);
    settings.hessian = HessianEstimate::Fisher;
    expect_close(entropy_taylor_importance(all, 1, settings), entropy_taylor_importance(one, 1, settings), 1e-4);
    for (const MasForm form : {MasForm::PerSample, MasForm::Batch})
      expect_close(mas_importance(all, 1, form), mas_importance(one, 1, form), 1e-4);
  }
}
