// DGR on a classifier (DESIGN.md §4.3; algorithms/dgr.h, the classifier
// form): the replayed images are the previous generator's decodes of each
// position's draw, their labels the previous solver's answers; the generator
// trains beside the classifier; a run resumed mid-task equals an
// uninterrupted one; a multi-head layout is refused.
#include <gtest/gtest.h>

#include "algorithms/dgr.h"
#include "models/multi_head_model.h"
#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/logging.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"
#include "tests/trainer_test_support.h"

using namespace clx::testing_support;

namespace {

class DgrClassifier : public TempDirTest {
 protected:
  DgrClassifier() : TempDirTest("clx_dgr_") {}
};

// Two tasks of two classes on 1x28x28 images (the generator's shape), 24 training images a task.
clx::TaskStream dgr_stream() { return tiny_image_stream(2, 2, 24, 1, 28); }

// One head over the four classes.
clx::MultiHeadModel single_head_mlp(const clx::TaskStream& stream, uint64_t seed = 5) {
  torch::manual_seed(seed);
  clx::MlpConfig mlp;
  mlp.hidden = {16};
  return clx::make_mlp(stream.input_shape, mlp, {stream.num_classes});
}

clx::TrainerConfig dgr_config() {
  clx::TrainerConfig config = small_trainer_config(8);
  config.heads = clx::HeadLayout::Single;
  config.epochs = 1;
  return config;
}

clx::NamedTensors copy_parameters(const torch::nn::Module& module) {
  clx::NamedTensors copy;
  for (const auto& item : module.named_parameters()) copy.emplace_back(item.key(), item.value().detach().clone());
  return copy;
}

void load_parameters(torch::nn::Module& module, const clx::NamedTensors& values) {
  torch::NoGradGuard no_grad;
  const auto parameters = module.named_parameters();
  for (size_t k = 0; k < values.size(); ++k) parameters[k].value().copy_(values[k].second);
}

}  // namespace

// After task 2's last step: the replayed images are the decodes, by the
// generator as it was after task 1, of that step's draws for its positions;
// their labels are the answers of the classifier as it was after task 1,
// among the classes of task 1 (0 and 1).
TEST_F(DgrClassifier, ReplayComesFromThePreviousGeneratorLabelledByThePreviousSolver) {
  const clx::TaskStream stream = dgr_stream();
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::MultiHeadModel model = single_head_mlp(stream);
  const clx::TrainerConfig config = dgr_config();
  clx::Trainer trainer(config, single, stream, model.ptr(), strategy, quiet);
  trainer.train_stage(0, {0});
  EXPECT_FALSE(strategy.replay_images().defined());  // task 1 replays nothing
  const clx::NamedTensors solver_after_task1 = copy_parameters(*model);
  const clx::NamedTensors generator_after_task1 = copy_parameters(*strategy.generator());
  trainer.train_stage(1, {1});

  // The last step's positions and its step index (24 images, batch 8: 3 steps).
  clx::ShardedSampler sampler(24, config.batch_size, 0, 1, config.seed);
  sampler.set_epoch(1, 0);
  const torch::Tensor positions = sampler.local_batch(2);
  const auto draw = clx::DgrStrategy::replay_draw(config.seed, 1, 2, positions, 1, 32);
  clx::VaeConfig vae_config;
  vae_config.tasks = 1;
  vae_config.seed = config.seed;
  clx::VaeNet previous_generator(vae_config);
  load_parameters(*previous_generator, generator_after_task1);
  previous_generator->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor images = previous_generator->vae->decode(draw.z, 0);
  ASSERT_TRUE(strategy.replay_images().defined());
  EXPECT_TRUE(strategy.replay_images().allclose(images, 1e-6, 1e-7));

  clx::MultiHeadModel previous_solver = single_head_mlp(stream, 99);
  load_parameters(*previous_solver, solver_after_task1);
  previous_solver->eval();
  const torch::Tensor logits = previous_solver->logits(images, 0);
  const torch::Tensor expected = logits.narrow(1, 0, 2).argmax(1);  // task 1's classes: 0 and 1
  EXPECT_TRUE(strategy.replay_labels().equal(expected)) << strategy.replay_labels() << expected;
  // The generator kept training in task 2.
  EXPECT_FALSE(strategy.generator()->parameters()[0].equal(generator_after_task1[0].second));
}

// Interrupted in task 2 after 2 steps and resumed from that checkpoint: the
// classifier and the generator bit for bit, the same accuracy matrix.
TEST_F(DgrClassifier, ResumeMidTaskEqualsUninterrupted) {
  const clx::TaskStream stream = dgr_stream();
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = dgr_config();
  checkpoint_every_step(config, path("checkpoints").string());
  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::MultiHeadModel model = single_head_mlp(stream);
  const clx::RunResult uninterrupted = clx::Trainer(config, single, stream, model.ptr(), strategy, quiet).run();

  const auto middle = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 1 && state.phase == "training" && state.step == 2;
  });
  ASSERT_TRUE(middle.has_value());
  bool optimizer_stored = false;
  for (const auto& [name, tensor] : middle->strategy) optimizer_stored = optimizer_stored || name == "generator_optimizer";
  EXPECT_TRUE(optimizer_stored);
  clx::DgrStrategy resumed_strategy(clx::DgrOptions{});
  clx::MultiHeadModel resumed_model = single_head_mlp(stream, 42);
  torch::manual_seed(77);  // the generator's weights must come from the checkpoint too
  config.checkpoint_dir = path("resumed").string();
  const clx::RunResult resumed =
      clx::Trainer(config, single, stream, resumed_model.ptr(), resumed_strategy, quiet).run(&*middle, "middle");
  EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
  expect_same_parameters(*model, *resumed_model);
  expect_same_parameters(*strategy.generator(), *resumed_strategy.generator());
}

TEST_F(DgrClassifier, RefusesMultiHeadAndBadOptions) {
  const clx::TaskStream stream = dgr_stream();
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::MultiHeadModel model = tiny_mlp(stream, {16}, 5);
  clx::TrainerConfig config = dgr_config();
  config.heads = clx::HeadLayout::Multi;
  expect_error([&] { clx::Trainer(config, single, stream, model.ptr(), strategy, quiet).run(); },
               {"model.heads: dgr on a classifier replays images without a task", "model.heads=single"});
  clx::DgrOptions bad;
  bad.generator_lr = 0;
  expect_error([&] { clx::DgrStrategy refused(bad); }, {"dgr.generator_lr: must be a finite value > 0"});
}
