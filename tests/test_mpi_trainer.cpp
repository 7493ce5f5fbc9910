// The data-parallel trainer on the job's world size against a single-process
// run computed in the same test: same trajectory, same accuracies.
#include <gtest/gtest.h>

#include "algorithms/clnp.h"
#include "algorithms/dgm.h"
#include "algorithms/dgr.h"
#include "algorithms/ewc.h"
#include "algorithms/finetune.h"
#include "algorithms/hat.h"
#include "models/multi_head_model.h"
#include "models/dgm_objective.h"
#include "models/gan_objective.h"
#include "models/vae_objective.h"
#include "runtime/collectives.h"
#include "runtime/error.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/mpi_test_support.h"
#include "tests/generation_test_support.h"
#include "tests/trainer_test_support.h"

#include <unistd.h>

#include <filesystem>

using clx::testing_support::two_task_stream;
using clx::testing_support::world;

namespace {

clx::MultiHeadModel fresh_model(const clx::TaskStream& stream) {
  torch::manual_seed(5);
  clx::MlpConfig mlp;
  mlp.hidden = {16, 8};
  return clx::make_mlp(stream.input_shape, mlp, clx::head_sizes_for(stream, clx::HeadLayout::Multi));
}

void expect_same_parameters(clx::MultiHeadModel& a, clx::MultiHeadModel& b) {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-4, 1e-5))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
}

// A per-process copy of the seeded feature file the VAE tests score with
// (every rank writes its own, identical one), removed at the end of the test.
struct FeatureFile {
  explicit FeatureFile(const std::string& tag)
      : path((std::filesystem::temp_directory_path() / ("clx_mpi_" + tag + "_fid_" + std::to_string(::getpid()) + ".h5"))
                 .string()) {
    std::filesystem::remove(path);
    clx::testing_support::write_feature_file(path);
  }
  ~FeatureFile() { std::filesystem::remove(path); }
  clx::GenerationConfig objective(int64_t fid_samples) const {
    clx::GenerationConfig config;
    config.fid_features = path;
    config.fid_samples = fid_samples;
    return config;
  }
  std::string path;
};

// Plain SGD at a small rate (the ELBO sums over 784 pixels), global batch 8.
clx::TrainerConfig vae_sgd_config() {
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(8);
  config.lr = 0.001;
  config.momentum = 0.0;
  return config;
}

}  // namespace

// 2 ranks with per-rank batch b follow the 1-rank trajectory with batch 2b,
// including a last global batch that does not split evenly across ranks.
TEST(DataParallelTrainer, WorldSizeDoesNotChangeTheTrajectory) {
  for (int64_t train_size : {256, 251}) {
    clx::TaskStream stream = two_task_stream(train_size, 97);
    const int64_t global_batch = 8 * world->size();
    clx::FinetuneStrategy strategy;
    clx::Logger quiet(1, "");

    clx::MultiHeadModel reference = fresh_model(stream);
    clx::SingleCommunicator single;
    clx::Trainer reference_trainer(clx::testing_support::small_trainer_config(global_batch), single, stream, reference.ptr(), strategy, quiet);
    reference_trainer.train_stage(0, {0});

    clx::MultiHeadModel distributed = fresh_model(stream);
    if (world->rank() != 0) {
      // Parameters must come from rank 0: scramble the others' initial weights.
      torch::NoGradGuard no_grad;
      for (auto& p : distributed->parameters()) p.uniform_(-1, 1);
    }
    clx::Trainer trainer(clx::testing_support::small_trainer_config(global_batch), *world, stream, distributed.ptr(), strategy, quiet);
    trainer.broadcast_parameters();
    trainer.train_stage(0, {0});

    SCOPED_TRACE("train size " + std::to_string(train_size));
    expect_same_parameters(reference, distributed);
    const auto expected = reference_trainer.evaluate_all(0);
    const auto got = trainer.evaluate_all(0);
    for (size_t t = 0; t < expected.size(); ++t) EXPECT_NEAR(got[t], expected[t], 1.0 / 97 + 1e-12);
  }
}

TEST(DataParallelTrainer, FullRunMatchesSingleProcessAccuracyMatrix) {
  clx::TaskStream stream = two_task_stream(200, 97);
  clx::FinetuneStrategy strategy;
  clx::Logger quiet(1, "");
  clx::MultiHeadModel reference = fresh_model(stream);
  clx::SingleCommunicator single;
  const auto expected = clx::Trainer(clx::testing_support::small_trainer_config(16), single, stream, reference.ptr(), strategy, quiet).run();
  clx::MultiHeadModel distributed = fresh_model(stream);
  const auto got = clx::Trainer(clx::testing_support::small_trainer_config(16), *world, stream, distributed.ptr(), strategy, quiet).run();
  ASSERT_EQ(got.matrix.stages.size(), 2u);
  EXPECT_EQ(got.matrix.initial, expected.matrix.initial);
  for (size_t j = 0; j < 2; ++j)
    for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(got.matrix.stages[j][i], expected.matrix.stages[j][i], 1.0 / 40);
  expect_same_parameters(reference, distributed);
}

TEST(DataParallelTrainer, PerturbedRankIsCaughtByFingerprints) {
  clx::TaskStream stream = two_task_stream(64, 97);
  clx::FinetuneStrategy strategy;
  clx::Logger quiet(1, "");
  clx::MultiHeadModel model = fresh_model(stream);
  clx::Trainer trainer(clx::testing_support::small_trainer_config(16), *world, stream, model.ptr(), strategy, quiet);
  trainer.broadcast_parameters();
  const std::string before = trainer.state_fingerprints();
  if (world->size() < 2) return;
  if (world->rank() == 1) {
    torch::NoGradGuard no_grad;
    model->named_parameters()["trunk.3.weight"].view(-1)[0] += 1e-3;
  }
  try {
    clx::require_identical_across_ranks(*world, trainer.state_fingerprints(), "model state");
    FAIL() << "a perturbed rank went unnoticed";
  } catch (const clx::CollectiveError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("rank(s) 1 differ from rank 0"), std::string::npos) << message;
    EXPECT_NE(message.find("trunk.3.weight"), std::string::npos) << message;
  }
}

TEST(DataParallelTrainer, DivergingLossStopsEveryRank) {
  clx::TaskStream stream = two_task_stream(64, 97);
  clx::FinetuneStrategy strategy;
  clx::Logger quiet(1, "");
  clx::MultiHeadModel model = fresh_model(stream);
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(16);
  config.lr = 1e30;
  clx::Trainer trainer(config, *world, stream, model.ptr(), strategy, quiet);
  try {
    trainer.train_stage(0, {0});
    FAIL() << "training with lr 1e30 did not stop";
  } catch (const clx::CollectiveError& error) {
    EXPECT_NE(std::string(error.what()).find("non-finite training loss"), std::string::npos) << error.what();
  }
}

// HAT on the job's ranks against one process: the same weights, embeddings
// and cumulative masks after two tasks (the embeddings' gradients are averaged
// across ranks before their compensation and step).
TEST(DataParallelTrainer, HatMatchesOneProcess) {
  clx::TaskStream stream = two_task_stream(200, 97);
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(16);
  config.momentum = 0.0;
  clx::MultiHeadModel reference = fresh_model(stream);
  clx::HatStrategy reference_strategy(clx::HatOptions{});
  clx::SingleCommunicator single;
  const auto expected = clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet).run();
  clx::MultiHeadModel distributed = fresh_model(stream);
  clx::HatStrategy strategy(clx::HatOptions{});
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet).run();
  expect_same_parameters(reference, distributed);
  const auto expected_state = reference_strategy.state(), got_state = strategy.state();
  ASSERT_EQ(got_state.size(), expected_state.size());
  for (size_t k = 0; k < got_state.size(); ++k)
    EXPECT_TRUE(got_state[k].second.allclose(expected_state[k].second, 1e-4, 1e-5)) << got_state[k].first;
  for (size_t j = 0; j < 2; ++j)
    for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(got.matrix.stages[j][i], expected.matrix.stages[j][i], 1.0 / 40);
}

// CLNP on the job's ranks against one process: the same owners (activation
// statistics and accuracies are summed in chunk order, so the threshold search
// sees the same numbers) and the same weights.
TEST(DataParallelTrainer, ClnpMatchesOneProcess) {
  clx::StreamConfig stream_config;
  stream_config.kind = clx::StreamKind::Split;
  stream_config.num_tasks = 2;
  stream_config.classes_per_task = 5;
  stream_config.validation_fraction = 0.2;
  const clx::TaskStream stream = clx::build_task_stream(stream_config, clx::testing_support::pixel_class_images(240, 11),
                                                        clx::testing_support::pixel_class_images(97, 12));
  clx::Logger quiet(1, "");
  const clx::TrainerConfig config = clx::testing_support::small_trainer_config(16);
  clx::ClnpOptions options;
  options.alpha = 1e-3;
  clx::MultiHeadModel reference = fresh_model(stream);
  clx::ClnpStrategy reference_strategy(options);
  clx::SingleCommunicator single;
  const auto expected = clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet).run();
  clx::MultiHeadModel distributed = fresh_model(stream);
  clx::ClnpStrategy strategy(options);
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet).run();
  expect_same_parameters(reference, distributed);
  for (size_t k = 0; k < strategy.owners().size(); ++k)
    EXPECT_TRUE(torch::equal(strategy.owners()[k].second, reference_strategy.owners()[k].second)) << strategy.owners()[k].first;
  EXPECT_EQ(got.matrix.stages[1][0], got.matrix.stages[0][0]);  // zero forgetting on every rank count
}

// EWC on the VAE (its Fisher taken on generated images, sample by sample in
// chunks summed in order) on the job's ranks against one process: the same
// Fisher (up to the rounding of task 1's weights) and the same trajectory.
TEST(DataParallelTrainer, EwcOnVaeMatchesOneProcess) {
  const clx::TaskStream stream = clx::testing_support::two_class_task_stream(40, 20);
  const FeatureFile features("ewc_vae");
  const clx::GenerationConfig objective_config = features.objective(20);
  clx::Logger quiet(1, "");
  const clx::TrainerConfig config = vae_sgd_config();
  clx::EwcOptions options;
  options.fisher_samples = 10;

  clx::VaeObjective reference_objective(objective_config);
  clx::EwcStrategy reference_strategy(options);
  clx::VaeNet reference = clx::testing_support::small_vae(2);
  clx::SingleCommunicator single;
  clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet, &reference_objective).run();

  clx::VaeObjective objective(objective_config);
  clx::EwcStrategy strategy(options);
  clx::VaeNet distributed = clx::testing_support::small_vae(2);
  clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet, &objective).run();

  ASSERT_EQ(strategy.fishers().size(), reference_strategy.fishers().size());
  const auto& fisher = strategy.fishers()[0];
  const auto& expected = reference_strategy.fishers()[0];
  bool decoder_positive = false;
  for (size_t k = 0; k < fisher.size(); ++k) {
    // Task 1's training sums gradients in another order on 2 ranks: the Fisher is taken on weights equal to rounding.
    EXPECT_TRUE(fisher[k].second.allclose(expected[k].second, 1e-3, 1e-7))
        << fisher[k].first << " differs by " << (fisher[k].second - expected[k].second).abs().max().item<float>()
        << " (largest entry " << expected[k].second.abs().max().item<float>() << ")";
    if (fisher[k].first.rfind("vae.decoder.", 0) == 0) decoder_positive = decoder_positive || fisher[k].second.max().item<float>() > 0;
  }
  EXPECT_TRUE(decoder_positive);
  // The penalty carries the Fisher's rounding into task 2's steps: 1e-4 absolute on weights of ~0.05
  // (on some CPUs the deconvolution's weights differed by 2e-5 after task 2).
  const auto pa = reference->named_parameters(), pb = distributed->named_parameters();
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-3, 1e-4))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
}

// DGR on the VAE: the replayed draws depend on (seed, stage, step, position)
// only, so 2 ranks replay what 1 rank replays and follow its trajectory.
TEST(DataParallelTrainer, DgrOnVaeMatchesOneProcess) {
  const clx::TaskStream stream = clx::testing_support::two_class_task_stream(40, 20);
  const FeatureFile features("dgr_vae");
  const clx::GenerationConfig objective_config = features.objective(20);
  clx::Logger quiet(1, "");
  const clx::TrainerConfig config = vae_sgd_config();

  clx::VaeObjective reference_objective(objective_config);
  clx::DgrStrategy reference_strategy(clx::DgrOptions{});
  clx::VaeNet reference = clx::testing_support::small_vae(2);
  clx::SingleCommunicator single;
  const auto expected =
      clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet, &reference_objective).run();

  clx::VaeObjective objective(objective_config);
  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::VaeNet distributed = clx::testing_support::small_vae(2);
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet, &objective).run();
  // Task 2's replay goes through task 1's weights, equal up to the rounding of another summation order:
  // 1e-4 absolute (on some CPUs the deconvolution's weights differed by 2e-5 after task 2).
  const auto pa = reference->named_parameters(), pb = distributed->named_parameters();
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-3, 1e-4))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
  for (size_t i = 0; i < 2; ++i)
    EXPECT_NEAR(got.matrix.stages[1][i], expected.matrix.stages[1][i], 1e-3 * (1 + expected.matrix.stages[1][i]));
}

// The VAE objective on the job's ranks against one process: the same
// trajectory (each sample's reparameterisation noise is its row of the
// epoch's draw, wherever it is trained) and the same FID matrix on every rank.
TEST(DataParallelTrainer, VaeMatchesOneProcess) {
  const clx::TaskStream stream = clx::testing_support::two_class_task_stream(44, 20);
  const FeatureFile features("vae");
  const clx::GenerationConfig objective_config = features.objective(30);
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(8);
  config.lr = 0.02;

  clx::VaeObjective reference_objective(objective_config);
  clx::FinetuneStrategy reference_strategy;
  clx::VaeNet reference = clx::testing_support::small_vae(2);
  clx::SingleCommunicator single;
  const auto expected =
      clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet, &reference_objective).run();

  clx::VaeObjective objective(objective_config);
  clx::FinetuneStrategy strategy;
  clx::VaeNet distributed = clx::testing_support::small_vae(2, world->rank() == 0 ? 7 : 8);  // weights from rank 0
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet, &objective).run();

  const auto pa = reference->named_parameters(), pb = distributed->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-4, 1e-5))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
  ASSERT_EQ(got.matrix.stages.size(), 2u);
  EXPECT_EQ(got.matrix.initial, expected.matrix.initial);
  for (size_t j = 0; j < 2; ++j)
    for (size_t i = 0; i < 2; ++i)
      EXPECT_NEAR(got.matrix.stages[j][i], expected.matrix.stages[j][i], 1e-3 * (1 + expected.matrix.stages[j][i]));
}

// The GAN objective on the job's ranks against one process: the critic's
// step all-reduces its gradient to the global-batch mean, every sample's
// draws are its rows of the epoch's draws, and the generator has no
// BatchNorm, so 2 ranks (a last batch of 5 split 3 / 2; each rank's critic
// drawn differently and replaced by rank 0's) follow the 1-rank trajectory.
TEST(DataParallelTrainer, GanMatchesOneProcess) {
  const clx::TaskStream stream = clx::testing_support::two_class_task_stream(42, 20);
  const FeatureFile features("gan");
  clx::GanObjectiveConfig objective_config;
  objective_config.generation = features.objective(30);
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(8);
  config.heads = clx::HeadLayout::Single;
  config.lr = 0.01;

  clx::GanObjective reference_objective(objective_config);
  clx::FinetuneStrategy reference_strategy;
  clx::GanNet reference = clx::testing_support::small_gan(2);
  clx::SingleCommunicator single;
  const auto expected =
      clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet, &reference_objective).run();

  clx::GanObjective objective(objective_config);
  clx::FinetuneStrategy strategy;
  clx::GanNet distributed = clx::testing_support::small_gan(2, world->rank() == 0 ? 7 : 8);  // weights from rank 0
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet, &objective).run();

  const auto pa = reference->named_parameters(), pb = distributed->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-4, 1e-5))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
  const auto ca = reference_objective.critic()->named_parameters(), cb = objective.critic()->named_parameters();
  for (size_t k = 0; k < ca.size(); ++k)
    EXPECT_TRUE(ca[k].value().allclose(cb[k].value(), 1e-4, 1e-5))
        << "critic " << ca[k].key() << " differs by " << (ca[k].value() - cb[k].value()).abs().max().item<float>();
  ASSERT_EQ(got.matrix.stages.size(), 2u);
  for (size_t j = 0; j < 2; ++j)
    for (size_t i = 0; i < 2; ++i)
      EXPECT_NEAR(got.matrix.stages[j][i], expected.matrix.stages[j][i], 1e-3 * (1 + expected.matrix.stages[j][i]));
}

// DGM (DGMw): the generator's weights, heads and mask embeddings all-reduced
// by the trainer, the critic's classifier steps and critic step by the
// objective, every draw a function of (seed, stage, epoch, position): 2 ranks
// (starting from rank 0's generator and critic) follow 1 rank, through the
// expansion after task 1 (the same growth on every rank) and the replay of
// task 1 during task 2.
TEST(DataParallelTrainer, DgmMatchesOneProcessThroughAnExpansion) {
  const clx::TaskStream stream = clx::testing_support::two_class_task_stream(42, 20);
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(8);
  config.heads = clx::HeadLayout::Single;
  config.optimizer = clx::OptimizerKind::Adam;
  config.lr = 0.002;
  config.adam_beta1 = 0.5;
  clx::DgmNetConfig net_config;
  net_config.image_size = 28;
  net_config.noise_dim = 16;
  net_config.base_channels = 2;
  net_config.classes = 2;
  net_config.tasks = 2;
  net_config.seed = 7;
  clx::DgmObjectiveConfig objective_config;
  objective_config.seed = 1;
  auto make = [&](uint64_t seed, std::unique_ptr<clx::DgmObjective>& objective) {
    torch::manual_seed(seed);
    clx::DgmNet net(net_config);
    objective = std::make_unique<clx::DgmObjective>(objective_config);
    objective->prepare(*net, stream);
    return net;
  };

  std::unique_ptr<clx::DgmObjective> reference_objective, objective;
  clx::DgmNet reference = make(5, reference_objective);
  clx::DgmStrategy reference_strategy{clx::DgmOptions{}};
  clx::SingleCommunicator single;
  const auto expected =
      clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet, reference_objective.get()).run();

  clx::DgmNet distributed = make(world->rank() == 0 ? 5 : 6, objective);  // weights from rank 0
  clx::DgmStrategy strategy{clx::DgmOptions{}};
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet, objective.get()).run();

  ASSERT_EQ(distributed->widths(), reference->widths());
  EXPECT_NE(reference->widths(), reference->initial_widths()) << "the generator did not grow";
  const auto pa = reference->named_parameters(), pb = distributed->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-4, 1e-4))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
  const auto ca = reference_objective->critic()->named_parameters(), cb = objective->critic()->named_parameters();
  for (size_t k = 0; k < ca.size(); ++k)
    EXPECT_TRUE(ca[k].value().allclose(cb[k].value(), 1e-4, 1e-4))
        << "critic " << ca[k].key() << " differs by " << (ca[k].value() - cb[k].value()).abs().max().item<float>();
  for (int l = 0; l < clx::kDgmLayers; ++l)
    EXPECT_TRUE(torch::equal(reference->reserved_masks(1)[l], distributed->reserved_masks(1)[l])) << "layer " << l;
  EXPECT_EQ(got.matrix.stages, expected.matrix.stages);
}

// DGR on a classifier: the generator beside it all-reduces its gradient to
// the global-batch mean and every replay draw is a function of (seed, stage,
// step, position), so 2 ranks (each drawing its generator differently and
// starting from rank 0's; a last batch of 4 split 2 / 2) follow 1 rank:
// the classifier, the generator and the accuracy matrix.
TEST(DataParallelTrainer, DgrOnClassifierMatchesOneProcess) {
  const clx::TaskStream stream = clx::testing_support::tiny_image_stream(2, 2, 20, 1, 28);
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(8);
  config.heads = clx::HeadLayout::Single;
  config.epochs = 1;
  auto classifier = [&] {
    torch::manual_seed(5);
    clx::MlpConfig mlp;
    mlp.hidden = {16};
    return clx::make_mlp(stream.input_shape, mlp, {stream.num_classes});
  };

  clx::DgrStrategy reference_strategy(clx::DgrOptions{});
  clx::MultiHeadModel reference = classifier();
  clx::SingleCommunicator single;
  torch::manual_seed(11);  // the generator's shared layers are drawn at the first task
  const auto expected = clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet).run();

  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::MultiHeadModel distributed = classifier();
  torch::manual_seed(world->rank() == 0 ? 11 : 12);  // rank 1 draws another generator: rank 0's must win
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet).run();

  const auto pa = reference->named_parameters(), pb = distributed->named_parameters();
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-4, 1e-5))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
  // Adam divides each gradient by its own running scale, so an entry whose gradient is rounding noise moves
  // by up to lr (1e-3) a step either way: the generator agrees to 1e-3 (2e-4 seen), where a generator not
  // taken from rank 0 differs by 0.1-0.5 and one trained on other draws by far more than 1e-3.
  const auto ga = reference_strategy.generator()->named_parameters(), gb = strategy.generator()->named_parameters();
  for (size_t k = 0; k < ga.size(); ++k)
    EXPECT_TRUE(ga[k].value().allclose(gb[k].value(), 1e-3, 1e-3))
        << "generator " << ga[k].key() << " differs by " << (ga[k].value() - gb[k].value()).abs().max().item<float>();
  ASSERT_EQ(got.matrix.stages.size(), 2u);
  for (size_t j = 0; j < 2; ++j)
    for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(got.matrix.stages[j][i], expected.matrix.stages[j][i], 1e-6);
}

// DGR on the GAN: each sample's replayed partner comes from this epoch's draws
// at its position and the generator as task 1 left it, so 2 ranks follow 1.
TEST(DataParallelTrainer, DgrOnGanMatchesOneProcess) {
  const clx::TaskStream stream = clx::testing_support::two_class_task_stream(42, 20);
  const FeatureFile features("dgr_gan");
  clx::GanObjectiveConfig objective_config;
  objective_config.generation = features.objective(30);
  objective_config.replay = true;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = clx::testing_support::small_trainer_config(8);
  config.heads = clx::HeadLayout::Single;
  config.lr = 0.01;

  clx::GanObjective reference_objective(objective_config);
  clx::DgrStrategy reference_strategy(clx::DgrOptions{});
  clx::GanNet reference = clx::testing_support::small_gan(2);
  clx::SingleCommunicator single;
  const auto expected =
      clx::Trainer(config, single, stream, reference.ptr(), reference_strategy, quiet, &reference_objective).run();

  clx::GanObjective objective(objective_config);
  clx::DgrStrategy strategy(clx::DgrOptions{});
  clx::GanNet distributed = clx::testing_support::small_gan(2);
  const auto got = clx::Trainer(config, *world, stream, distributed.ptr(), strategy, quiet, &objective).run();
  const auto pa = reference->named_parameters(), pb = distributed->named_parameters();
  for (size_t k = 0; k < pa.size(); ++k)
    EXPECT_TRUE(pa[k].value().allclose(pb[k].value(), 1e-4, 1e-5))
        << pa[k].key() << " differs by " << (pa[k].value() - pb[k].value()).abs().max().item<float>();
  for (size_t j = 0; j < 2; ++j)
    for (size_t i = 0; i < 2; ++i)
      EXPECT_NEAR(got.matrix.stages[j][i], expected.matrix.stages[j][i], 1e-3 * (1 + expected.matrix.stages[j][i]));
}
