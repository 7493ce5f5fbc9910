// The conditional GAN objective through the one trainer (DESIGN.md §3, §4.4):
// the trainer's steps equal a hand-written WGAN-GP loop (the critic's Adam
// step, then the generator's SGD step, each on the same per-position draws);
// a run resumed mid-epoch (both optimizers' state, the critic's weights) ends
// bit-identical to an uninterrupted one; the importance passes generate what
// the objective says; a non-finite critic loss and impossible setups are
// refused with one message naming the cause.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "algorithms/dgr.h"
#include "algorithms/finetune.h"
#include "models/gan_objective.h"
#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/fid.h"
#include "runtime/logging.h"
#include "runtime/trainer.h"
#include "tests/expect_error.h"
#include "tests/generation_test_support.h"
#include "tests/temp_dir_test.h"
#include "tests/trainer_test_support.h"

using namespace clx::testing_support;

namespace {

class Gan : public TempDirTest {
 protected:
  Gan() : TempDirTest("clx_gan_") {}
  clx::GanObjectiveConfig objective_config(int64_t samples = 40) {
    const std::string file = path("fid.h5").string();
    if (!std::filesystem::exists(file)) write_feature_file(file);
    clx::GanObjectiveConfig config;
    config.generation.fid_features = file;
    config.generation.fid_samples = samples;
    return config;
  }
};

clx::TrainerConfig gan_trainer_config() {
  clx::TrainerConfig config = small_trainer_config(8);
  config.heads = clx::HeadLayout::Single;
  config.lr = 0.01;
  config.momentum = 0.0;
  return config;
}

namespace F = torch::nn::functional;

// A deep copy of `critic`'s weights in a new module.
clx::ConditionalCritic copy_of(clx::ConditionalCritic& critic, const clx::GanConfig& config) {
  clx::ConditionalCritic copy(config);
  torch::NoGradGuard no_grad;
  const auto from = critic->parameters(), to = copy->parameters();
  for (size_t k = 0; k < from.size(); ++k) to[k].copy_(from[k]);
  return copy;
}

}  // namespace

// Task 1 (class 0, 20 images, batch 8: a short last batch), 2 epochs, by the
// trainer and by hand: per batch, the critic's WGAN-GP + class loss (mean over
// the batch) and an Adam step (2e-4, betas 0.5 and 0.9), then the generator's
// -D + class loss through the stepped critic and an SGD step.
TEST_F(Gan, TrainerStepsAreTheHandWrittenWganGpLoop) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  const clx::GanObjectiveConfig gan = objective_config();
  clx::GanObjective objective(gan);
  clx::FinetuneStrategy strategy;
  const clx::TrainerConfig config = gan_trainer_config();

  clx::GanNet trained = small_gan(2);
  clx::Trainer trainer(config, single, stream, trained.ptr(), strategy, quiet, &objective);
  clx::GanNet by_hand = small_gan(2);
  clx::ConditionalCritic critic = copy_of(objective.critic(), by_hand->config());
  trainer.train_stage(0, {0});

  const clx::TaskData& data = stream.tasks[0].train;
  ASSERT_EQ(data.size(), 20);
  clx::ShardedSampler sampler(data.size(), config.batch_size, 0, 1, config.seed);
  torch::optim::SGD generator_sgd(by_hand->parameters(), torch::optim::SGDOptions(config.lr));
  torch::optim::Adam critic_adam(critic->parameters(), torch::optim::AdamOptions(gan.critic_lr).betas({0.5, 0.9}));
  for (int64_t epoch = 0; epoch < config.epochs; ++epoch) {
    sampler.set_epoch(0, epoch);
    const auto draws = clx::GanObjective::epoch_draws(clx::mix_seed({config.seed, 0, static_cast<uint64_t>(epoch)}), 20, 8);
    for (int64_t b = 0; b < sampler.batches_per_epoch(); ++b) {
      const torch::Tensor positions = sampler.local_batch(b);
      const torch::Tensor real = data.inputs(positions) * 2 - 1;
      const torch::Tensor classes = data.labels(positions, clx::HeadLayout::Single);
      EXPECT_TRUE(classes.eq(0).all().item<bool>());  // task 1 is class 0: slot 0
      critic_adam.zero_grad();
      torch::Tensor fake;
      {
        torch::NoGradGuard no_grad;
        fake = by_hand->generator->forward(draws.critic_noise.index_select(0, positions), classes);
      }
      const torch::Tensor e = draws.mixing.index_select(0, positions).view({-1, 1, 1, 1});
      const torch::Tensor mixed = (e * real + (1 - e) * fake).requires_grad_(true);
      const torch::Tensor slope =
          torch::autograd::grad({critic->forward(mixed, classes).score.sum()}, {mixed}, {}, true, true)[0];
      const auto on_real = critic->forward(real, classes), on_fake = critic->forward(fake, classes);
      const torch::Tensor critic_loss = (on_fake.score - on_real.score).mean() +
                                        10.0 * (slope.flatten(1).norm(2, 1) - 1).pow(2).mean() +
                                        F::cross_entropy(on_real.aux_logits, classes);
      critic_loss.backward();
      critic_adam.step();

      generator_sgd.zero_grad();
      const torch::Tensor generated = by_hand->generator->forward(draws.generator_noise.index_select(0, positions), classes);
      const auto judged = critic->forward(generated, classes);
      (-judged.score.mean() + F::cross_entropy(judged.aux_logits, classes)).backward();
      generator_sgd.step();
    }
  }
  const auto want = by_hand->named_parameters(), got = trained->named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k)
    EXPECT_TRUE(got[k].value().allclose(want[k].value(), 1e-4, 1e-6))
        << want[k].key() << " differs by " << (got[k].value() - want[k].value()).abs().max().item<float>();
  const auto critic_want = critic->named_parameters(), critic_got = objective.critic()->named_parameters();
  for (size_t k = 0; k < critic_want.size(); ++k)
    EXPECT_TRUE(critic_got[k].value().allclose(critic_want[k].value(), 1e-4, 1e-6))
        << "critic " << critic_want[k].key() << " differs by "
        << (critic_got[k].value() - critic_want[k].value()).abs().max().item<float>();
  // Class 1's input column had no gradient: where it was drawn.
  const clx::GanNet untouched = small_gan(2);
  EXPECT_TRUE(trained->generator->named_parameters()["input.weight"].select(1, 8 + 1).equal(
      untouched->generator->named_parameters()["input.weight"].select(1, 8 + 1)));
}

// Interrupted in task 2's first epoch and resumed from that checkpoint (Adam on
// the generator): the generator, the critic and the FID matrix bit for bit.
TEST_F(Gan, ResumeMidEpochEqualsUninterrupted) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = gan_trainer_config();
  config.optimizer = clx::OptimizerKind::Adam;
  config.lr = 0.002;
  checkpoint_every_step(config, path("checkpoints").string());

  clx::GanObjective objective(objective_config());
  clx::FinetuneStrategy strategy;
  clx::GanNet model = small_gan(2);
  const clx::RunResult uninterrupted = clx::Trainer(config, single, stream, model.ptr(), strategy, quiet, &objective).run();

  const auto middle = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 1 && state.phase == "training" && state.epoch == 0 && state.step == 2;
  });
  ASSERT_TRUE(middle.has_value());
  bool critic_stored = false, critic_optimizer_stored = false;
  for (const auto& [name, tensor] : middle->model) critic_stored = critic_stored || name == "objective.critic.aux.weight";
  for (const auto& [name, tensor] : middle->optimizer) critic_optimizer_stored = critic_optimizer_stored || name == "objective.archive";
  EXPECT_TRUE(critic_stored);
  EXPECT_TRUE(critic_optimizer_stored);

  clx::GanObjective resumed_objective(objective_config());
  clx::FinetuneStrategy resumed_strategy;
  clx::GanNet resumed_model = small_gan(2, /*seed=*/99);  // every weight must come from the checkpoint
  torch::manual_seed(123);                               // and the critic's too
  config.checkpoint_dir = path("resumed").string();
  const clx::RunResult resumed = clx::Trainer(config, single, stream, resumed_model.ptr(), resumed_strategy, quiet,
                                              &resumed_objective)
                                     .run(&*middle, "middle");
  EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
  expect_same_parameters(*model, *resumed_model);
  expect_same_parameters(*objective.critic(), *resumed_objective.critic());
  ASSERT_EQ(resumed.tables.size(), 1u);
  EXPECT_EQ(resumed.tables[0].rows, uninterrupted.tables[0].rows);
}

// The FID row is the Fréchet distance of the scoring images against the real
// test images; task i's scoring images cycle through its class slots and come
// from the same draws after every stage.
TEST_F(Gan, FidRowIsTheFrechetDistanceOfTheScoringImages) {
  const clx::TaskStream stream = two_class_task_stream(24, 30);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::GanObjective objective(objective_config(30));
  clx::FinetuneStrategy strategy;
  clx::TrainerConfig config = gan_trainer_config();
  config.epochs = 1;
  clx::GanNet model = small_gan(2);
  const clx::RunResult result = clx::Trainer(config, single, stream, model.ptr(), strategy, quiet, &objective).run();
  EXPECT_EQ(objective.task_slots(0), std::vector<int64_t>{0});
  EXPECT_EQ(objective.task_slots(1), std::vector<int64_t>{1});
  clx::FidFeatureNet features = clx::load_fid_features(objective_config().generation.fid_features, "");
  torch::NoGradGuard no_grad;
  for (int task = 0; task < 2; ++task) {
    const torch::Tensor images = objective.scoring_images(*model, stream, task, config.seed);
    ASSERT_EQ(images.sizes(), (std::vector<int64_t>{30, 1, 28, 28}));
    EXPECT_TRUE(images.equal(objective.scoring_images(*model, stream, task, config.seed)));
    EXPECT_GE(images.min().item<float>(), 0.0f);
    EXPECT_LE(images.max().item<float>(), 1.0f);
    const clx::TaskData& test = stream.tasks[task].test;
    const double expected = clx::frechet_distance(features.statistics(images),
                                                  features.statistics(test.inputs(torch::arange(test.size()))));
    EXPECT_NEAR(result.matrix.stages[1][task], expected, 1e-6 * (1 + expected));
  }
}

// What ANPyC, EWC and MAS differentiate on the GAN: position p of task t is
// class slot p mod m with its own noise draw (the same in any batch), the
// images flattened; the logits are the critic's auxiliary classifier's.
TEST_F(Gan, ImportancePassesGenerateEachPositionsOwnDraw) {
  const clx::TaskStream stream = two_class_task_stream(24, 10);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::GanObjective objective(objective_config());
  clx::FinetuneStrategy strategy;
  clx::GanNet model = small_gan(2);
  clx::Trainer trainer(gan_trainer_config(), single, stream, model.ptr(), strategy, quiet, &objective);
  const auto output = objective.generated_output(*model, 5);
  const auto logits = objective.generated_logits(*model, 5);
  const torch::Tensor both = output(1, torch::tensor({3, 0}));
  ASSERT_EQ(both.sizes(), (std::vector<int64_t>{2, 784}));
  EXPECT_TRUE(both[0].allclose(output(1, torch::tensor({3}))[0], 1e-6, 1e-7));
  EXPECT_TRUE(both[1].allclose(output(1, torch::tensor({0}))[0], 1e-6, 1e-7));
  EXPECT_FALSE(both[0].allclose(output(0, torch::tensor({3}))[0]));  // task 1's class slot, its own draw
  const torch::Tensor classified = logits(1, torch::tensor({3, 0}));
  EXPECT_TRUE(classified.allclose(objective.critic()->classify(both.view({2, 1, 28, 28})), 1e-6, 1e-7));
  EXPECT_TRUE(classified.requires_grad());
  // The critic is a fixed function in these passes: no gradient reaches it.
  classified.sum().backward();
  for (const auto& parameter : objective.critic()->parameters()) EXPECT_FALSE(parameter.grad().defined());
  EXPECT_TRUE(model->generator->parameters().front().grad().defined());
}

// A NaN image makes the critic's loss NaN: the run stops with one message.
TEST_F(Gan, NonFiniteCriticLossStopsTheRun) {
  auto train = two_class_images(16, 21);
  train->images[3][0][5][5] = std::numeric_limits<float>::quiet_NaN();
  const clx::TaskStream stream = split_stream(train, two_class_images(10, 22), 2, 1);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::GanObjective objective(objective_config(10));
  clx::FinetuneStrategy strategy;
  clx::GanNet model = small_gan(2);
  clx::TrainerConfig config = gan_trainer_config();
  config.batch_size = 16;
  expect_error([&] { clx::Trainer(config, single, stream, model.ptr(), strategy, quiet, &objective).run(); },
               {"non-finite critic loss", "generation.critic_lr"});
}

TEST_F(Gan, RefusesWhatItCannotTrain) {
  const clx::TaskStream stream = two_class_task_stream(20, 10);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::FinetuneStrategy strategy;
  clx::GanObjective objective(objective_config());
  clx::GanNet model = small_gan(2);
  clx::TrainerConfig multi = gan_trainer_config();
  multi.heads = clx::HeadLayout::Multi;
  expect_error([&] { clx::Trainer(multi, single, stream, model.ptr(), strategy, quiet, &objective); },
               {"model.heads: the conditional GAN is conditioned on the stream's classes (single)"});
  clx::GanNet three = small_gan(3);
  expect_error([&] { clx::Trainer(gan_trainer_config(), single, stream, three.ptr(), strategy, quiet, &objective); },
               {"the GAN has 3 class slots, the stream has 2 classes"});
  clx::GanObjectiveConfig bad = objective_config();
  bad.gradient_penalty = -1;
  expect_error([&] { clx::GanObjective refused(bad); }, {"generation.gradient_penalty: must be a finite value >= 0"});
  bad = objective_config();
  bad.critic_lr = 0;
  expect_error([&] { clx::GanObjective refused(bad); }, {"generation.critic_lr: must be a finite value > 0"});
}

// DGR on the GAN (the objective replays): in task 2 each sample's replayed
// partner is the generator as task 1 left it, drawing class slot 0 (task 1's
// only class) from this epoch's replay noise; the new rows weigh r = 1/2.
TEST_F(Gan, DgrReplaysTheGeneratorAsThePreviousTaskLeftIt) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::GanObjectiveConfig config = objective_config();
  config.replay = true;
  clx::GanObjective objective(config);
  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::GanNet model = small_gan(2);
  const clx::TrainerConfig trainer_config = gan_trainer_config();
  clx::Trainer trainer(trainer_config, single, stream, model.ptr(), strategy, quiet, &objective);
  trainer.train_stage(0, {0});
  clx::GanNet after_task1 = small_gan(2, 99);
  {
    torch::NoGradGuard no_grad;
    const auto from = model->parameters(), to = after_task1->parameters();
    for (size_t k = 0; k < from.size(); ++k) to[k].copy_(from[k]);
  }
  trainer.train_stage(1, {1});
  EXPECT_DOUBLE_EQ(objective.new_data_weight(1), 0.5);
  EXPECT_FALSE(model->generator->parameters()[0].equal(after_task1->generator->parameters()[0]));  // task 2 trained it

  // The last epoch's draws (sampler epoch 1 of stage 1) for positions 3 and 0.
  const auto draws = clx::GanObjective::epoch_draws(clx::mix_seed({trainer_config.seed, 1, 1}), 20, 8, true);
  const torch::Tensor positions = torch::tensor({3, 0});
  const clx::GanObjective::Replay replay = objective.replay_for(1, positions);
  EXPECT_TRUE(replay.classes.equal(torch::zeros({2}, torch::kInt64)));
  torch::NoGradGuard no_grad;
  const torch::Tensor expected =
      after_task1->generator->forward(draws.replay_noise.index_select(0, positions), replay.classes);
  EXPECT_TRUE(replay.images.allclose(expected, 1e-6, 1e-7));
  // The previous generator is checkpointed with the critic.
  bool stored = false;
  for (const auto& [name, tensor] : objective.trained_state())
    if (name == "previous_generator.input.weight")
      stored = tensor.equal(after_task1->generator->named_parameters()["input.weight"]);
  EXPECT_TRUE(stored);
}

// DGR on the GAN interrupted in task 2 and resumed: the previous generator
// comes back from the checkpoint, and the run ends bit for bit as an
// uninterrupted one.
TEST_F(Gan, DgrResumeMidTaskEqualsUninterrupted) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = gan_trainer_config();
  checkpoint_every_step(config, path("checkpoints").string());
  clx::GanObjectiveConfig objective_settings = objective_config();
  objective_settings.replay = true;
  clx::GanObjective objective(objective_settings);
  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::GanNet model = small_gan(2);
  const clx::RunResult uninterrupted = clx::Trainer(config, single, stream, model.ptr(), strategy, quiet, &objective).run();
  const auto middle = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 1 && state.phase == "training" && state.epoch == 0 && state.step == 2;
  });
  ASSERT_TRUE(middle.has_value());
  clx::GanObjective resumed_objective(objective_settings);
  clx::DgrStrategy resumed_strategy(clx::DgrOptions{});
  clx::GanNet resumed_model = small_gan(2, 99);
  torch::manual_seed(123);
  config.checkpoint_dir = path("resumed").string();
  const clx::RunResult resumed = clx::Trainer(config, single, stream, resumed_model.ptr(), resumed_strategy, quiet,
                                              &resumed_objective)
                                     .run(&*middle, "middle");
  EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
  expect_same_parameters(*model, *resumed_model);
  expect_same_parameters(*objective.critic(), *resumed_objective.critic());
}
