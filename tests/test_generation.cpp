// The generation objective through the one trainer (DESIGN.md §3, §4.4):
// the VAE trained by the trainer follows a hand-written ELBO/SGD loop step
// for step; the FID row the trainer records is the Fréchet distance of the
// objective's generated images against the task's real test images; a run
// resumed mid-epoch ends bit-identical to an uninterrupted one; bad
// combinations are refused naming the option or file.
#include <gtest/gtest.h>
#include <zlib.h>

#ifdef CLX_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

#include "algorithms/dgr.h"
#include "algorithms/finetune.h"
#include "algorithms/importance.h"
#include "algorithms/joint.h"
#include "models/model_factory.h"
#include "models/vae_objective.h"
#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/fid.h"
#include "runtime/png.h"
#include "runtime/file_io.h"
#include "runtime/logging.h"
#include "runtime/trainer.h"
#include "tests/expect_error.h"
#include "tests/generation_test_support.h"
#include "tests/temp_dir_test.h"
#include "tests/trainer_test_support.h"

using namespace clx::testing_support;

namespace {

class Generation : public TempDirTest {
 protected:
  Generation() : TempDirTest("clx_generation_") {}
  std::string feature_file() {
    const std::string file = path("fid.h5").string();
    if (!std::filesystem::exists(file)) write_feature_file(file);
    return file;
  }
  clx::GenerationConfig objective_config(int64_t samples = 50) {
    clx::GenerationConfig config;
    config.fid_features = feature_file();
    config.fid_samples = samples;
    return config;
  }
};

// Plain SGD (no momentum: the hand-written loop below is plain SGD), batch 8,
// 2 epochs; a small rate, as the ELBO sums over 784 pixels.
clx::TrainerConfig vae_trainer_config() {
  clx::TrainerConfig config = small_trainer_config(8);
  config.lr = 0.001;
  config.momentum = 0.0;
  return config;
}

// Adam at 0.005: what the resume and joint tests train with (optimizer state to restore; visible progress).
clx::TrainerConfig vae_adam_config() {
  clx::TrainerConfig config = vae_trainer_config();
  config.optimizer = clx::OptimizerKind::Adam;
  config.lr = 0.005;
  return config;
}

}  // namespace

// Task 1 trained by the trainer (plain SGD, batch 8, 2 epochs of 20 images:
// a short last batch) equals the loop written out: for each batch of the
// sampler's order, the mean negative ELBO of its images under task 1's latent
// layers with noise row p for sample p, and one SGD step.
TEST_F(Generation, TrainerStepsAreTheHandWrittenElboLoop) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::VaeObjective objective(objective_config());
  clx::FinetuneStrategy strategy;
  const clx::TrainerConfig config = vae_trainer_config();

  clx::VaeNet trained = small_vae(2);
  clx::Trainer trainer(config, single, stream, trained.ptr(), strategy, quiet, &objective);
  trainer.train_stage(0, {0});

  clx::VaeNet by_hand = small_vae(2);
  const clx::TaskData& data = stream.tasks[0].train;
  ASSERT_EQ(data.size(), 20);
  clx::ShardedSampler sampler(data.size(), config.batch_size, 0, 1, config.seed);
  std::vector<torch::Tensor> trainable = by_hand->shared_parameters();
  for (auto& p : by_hand->head_parameters(0)) trainable.push_back(p);
  torch::optim::SGD sgd(trainable, torch::optim::SGDOptions(config.lr));
  int64_t steps = 0;
  for (int64_t epoch = 0; epoch < config.epochs; ++epoch) {
    sampler.set_epoch(0, epoch);
    const torch::Tensor noise =
        clx::VaeObjective::epoch_noise(clx::mix_seed({config.seed, 0, static_cast<uint64_t>(epoch)}), 20, 4);
    for (int64_t b = 0; b < sampler.batches_per_epoch(); ++b) {
      const torch::Tensor positions = sampler.local_batch(b);
      sgd.zero_grad();
      by_hand->vae->elbo_loss_with_noise(data.inputs(positions), 0, noise.index_select(0, positions)).loss.backward();
      sgd.step();
      ++steps;
    }
  }
  EXPECT_EQ(steps, 2 * 3);  // 8 + 8 + 4 images an epoch
  const auto want = by_hand->named_parameters(), got = trained->named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k)
    EXPECT_TRUE(got[k].value().allclose(want[k].value(), 1e-5, 1e-6))
        << want[k].key() << " differs by " << (got[k].value() - want[k].value()).abs().max().item<float>();
  // Task 2's latent layers were not trained: bit-identical to the start.
  clx::VaeNet untouched = small_vae(2);
  for (size_t k = 0; k < want.size(); ++k)
    if (want[k].key().rfind("vae.tasks.1.", 0) == 0) EXPECT_TRUE(got[k].value().equal(untouched->named_parameters()[k].value()));
}

// A run's FID matrix: row j, column i is the FID between the objective's
// generated images for task i (the same latent draws after every stage) and
// task i's real test images, with the feature file's network.
TEST_F(Generation, FidMatrixIsTheFrechetDistanceOfGeneratedAndRealFeatures) {
  const clx::TaskStream stream = two_class_task_stream(40, 30);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::VaeObjective objective(objective_config(40));
  clx::FinetuneStrategy strategy;
  clx::VaeNet model = small_vae(2);
  clx::Trainer trainer(vae_trainer_config(), single, stream, model.ptr(), strategy, quiet, &objective);
  const clx::RunResult result = trainer.run();

  EXPECT_EQ(result.score.name, "fid");
  EXPECT_FALSE(result.score.higher_is_better);
  ASSERT_EQ(result.matrix.stages.size(), 2u);
  clx::FidFeatureNet features = clx::load_fid_features(feature_file());
  const auto& last = result.matrix.stages.back();
  for (int task = 0; task < 2; ++task) {
    const clx::TaskData& test = stream.tasks[task].test;
    ASSERT_EQ(test.size(), 15);
    const double expected = clx::frechet_distance(features.statistics(objective.fid_images(*model, task, 1)),
                                                  features.statistics(test.inputs(torch::arange(15))));
    EXPECT_DOUBLE_EQ(last[task], expected) << "task " << task + 1;
    EXPECT_GT(last[task], 0.0);
  }
  // Training task 1 moved its FID; the same draws: evaluating again gives the same row.
  EXPECT_NE(result.matrix.stages[0][0], result.matrix.initial[0]);
  EXPECT_EQ(trainer.evaluate_all(1), last);

  // Generated accuracy: the share of each task's FID images the classifier puts in the task's class.
  ASSERT_EQ(result.tables.size(), 1u);
  const clx::ResultTable& table = result.tables[0];
  EXPECT_EQ(table.name, "generated_accuracy");
  EXPECT_EQ(table.columns, (std::vector<std::string>{"after", "task_1", "task_2"}));
  ASSERT_EQ(table.rows.size(), 3u);  // initial, after task 1, after task 2
  EXPECT_EQ(std::get<std::string>(table.rows[2][0]), "task_2");
  for (int task = 0; task < 2; ++task) {
    const torch::Tensor predicted = features.predict(objective.fid_images(*model, task, 1));
    const double expected = predicted.eq(task).to(torch::kFloat64).mean().item<double>();  // task t holds class t
    EXPECT_DOUBLE_EQ(std::get<double>(table.rows[2][1 + task]), expected) << "task " << task + 1;
  }
}

// With a samples folder, each stage writes a grid: one row per task trained
// so far, sample_columns of that task's FID images (28 px cells, 2 px gaps).
TEST_F(Generation, WritesASampleGridAfterEachStage) {
  const clx::TaskStream stream = two_class_task_stream(40, 30);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::GenerationConfig config = objective_config(20);
  config.samples_dir = path("samples").string();
  config.sample_columns = 4;
  clx::VaeObjective objective(config);
  clx::FinetuneStrategy strategy;
  clx::VaeNet model = small_vae(2);
  clx::Trainer(vae_trainer_config(), single, stream, model.ptr(), strategy, quiet, &objective).run();
  EXPECT_FALSE(std::filesystem::exists(path("samples") / "after_task_0.png"));  // nothing trained: no grid
  for (int rows : {1, 2}) {
    const std::string file = (path("samples") / ("after_task_" + std::to_string(rows) + ".png")).string();
    ASSERT_TRUE(std::filesystem::exists(file)) << file;
    const std::string png = clx::read_text_file(file);
    const auto u32 = [&](size_t at) {
      return (uint32_t(uint8_t(png[at])) << 24) | (uint32_t(uint8_t(png[at + 1])) << 16) |
             (uint32_t(uint8_t(png[at + 2])) << 8) | uint32_t(uint8_t(png[at + 3]));
    };
    EXPECT_EQ(u32(16), 4u * 30 + 2) << file;             // width: 4 cells
    EXPECT_EQ(u32(20), static_cast<uint32_t>(rows) * 30 + 2) << file;  // height: a row per task trained
  }
  // The grid's first row is the start of task 1's FID images.
  EXPECT_EQ(clx::read_text_file((path("samples") / "after_task_2.png").string()),
            clx::encode_png(clx::image_grid(torch::cat({objective.fid_images(*model, 0, 1).narrow(0, 0, 4),
                                                        objective.fid_images(*model, 1, 1).narrow(0, 0, 4)}),
                                            2, 4)));
}

// Stopped after the second step of task 2's first epoch (joint-free, two
// stages) and resumed from that checkpoint: the same parameters and FID
// matrix, bit for bit (the epoch's noise is a function of the epoch seed).
TEST_F(Generation, ResumeMidEpochEqualsUninterrupted) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::TrainerConfig config = vae_adam_config();
  checkpoint_every_step(config, path("checkpoints").string());

  clx::VaeObjective objective(objective_config());
  clx::FinetuneStrategy strategy;
  clx::VaeNet model = small_vae(2);
  const clx::RunResult uninterrupted = clx::Trainer(config, single, stream, model.ptr(), strategy, quiet, &objective).run();

  const auto middle = find_checkpoint(config.checkpoint_dir, [](const clx::CheckpointState& state) {
    return state.stage == 1 && state.phase == "training" && state.epoch == 0 && state.step == 2;
  });
  ASSERT_TRUE(middle.has_value());
  clx::VaeObjective resumed_objective(objective_config());
  clx::FinetuneStrategy resumed_strategy;
  clx::VaeNet resumed_model = small_vae(2, /*seed=*/99);  // every weight must come from the checkpoint
  config.checkpoint_dir = path("resumed").string();
  const clx::RunResult resumed = clx::Trainer(config, single, stream, resumed_model.ptr(), resumed_strategy, quiet,
                                              &resumed_objective)
                                     .run(&*middle, "middle");
  EXPECT_EQ(resumed.matrix.stages, uninterrupted.matrix.stages);
  expect_same_parameters(*model, *resumed_model);
  // The generated accuracy of the stages before the checkpoint came back with it.
  ASSERT_EQ(resumed.tables.size(), 1u);
  ASSERT_EQ(uninterrupted.tables.size(), 1u);
  EXPECT_EQ(resumed.tables[0].rows, uninterrupted.tables[0].rows);
}

// Joint training mixes both tasks in one batch, each sample through its own
// task's latent layers: both tasks' FID improve on the untrained network.
TEST_F(Generation, JointTrainsEveryTasksLatentLayers) {
  const clx::TaskStream stream = two_class_task_stream(60, 30);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::VaeObjective objective(objective_config(40));
  clx::JointStrategy strategy;
  clx::VaeNet model = small_vae(2);
  clx::TrainerConfig config = vae_adam_config();
  config.epochs = 3;
  const clx::RunResult result = clx::Trainer(config, single, stream, model.ptr(), strategy, quiet, &objective).run();
  ASSERT_EQ(result.matrix.stages.size(), 1u);
  for (int task = 0; task < 2; ++task) EXPECT_LT(result.matrix.stages[0][task], result.matrix.initial[task]) << task;
}

TEST_F(Generation, RefusesWhatItCannotTrainOrScore) {
  const clx::TaskStream stream = two_class_task_stream(20, 10);
  expect_error<clx::FidFeatureError>([&] {
    clx::GenerationConfig config;
    config.fid_features = path("missing.h5").string();
    clx::VaeObjective objective(config);
  }, {path("missing.h5").string() + " does not exist"});
  expect_error<clx::Error>([&] { clx::VaeObjective objective(clx::GenerationConfig{}); }, {"generation.fid_features: a generation run needs the FID feature file"});
  expect_error<clx::Error>([&] { clx::VaeObjective objective(objective_config(1)); }, {"generation.fid_samples: must be at least 2"});

  clx::VaeObjective objective(objective_config());
  clx::MlpConfig mlp;
  auto classifier = clx::make_mlp(stream.input_shape, mlp, {1, 1});
  expect_error<clx::Error>([&] { objective.check(*classifier, stream, clx::HeadLayout::Multi); }, {"model.arch: the VAE objective trains model.arch=vae only"});
  clx::VaeNet vae = small_vae(2);
  expect_error<clx::Error>([&] { objective.check(*vae, stream, clx::HeadLayout::Single); }, {"model.heads: the VAE has one set of latent layers per task"});
  clx::VaeNet three = small_vae(3);
  expect_error<clx::Error>([&] { objective.check(*three, stream, clx::HeadLayout::Multi); },
                           {"the VAE has latent layers for 3 tasks, the stream has 2"});
  // A feature file for other images.
  torch::manual_seed(3);
  clx::FidFeatureNet other({1, 32, 32}, 2);
  clx::save_fid_features(path("fid32.h5").string(), other);
  clx::GenerationConfig config32 = objective_config();
  config32.fid_features = path("fid32.h5").string();
  clx::VaeObjective objective32(config32);
  expect_error<clx::Error>([&] { objective32.check(*vae, stream, clx::HeadLayout::Multi); }, {"generation.fid_features: " + config32.fid_features + " scores images of shape [1, 32, 32]"});
  // The VAE is no classifier.
  expect_error<clx::Error>([&] { vae->logits(torch::zeros({1, 1, 28, 28}), 0); }, {"the VAE (model.arch=vae) has no classifier"});
  clx::ModelConfig vae_model;
  vae_model.arch = clx::ModelArch::Vae;
  expect_error<clx::Error>([&] { clx::make_continual_net(vae_model, {1, 20, 20}, {1}); },
                           {"model.arch=vae: takes C x 28 x 28 or C x 32 x 32 images, the data's are [1, 20, 20]"});
  vae_model.vae_latent = 0;
  expect_error<clx::Error>([&] { clx::validate_model_config(vae_model); }, {"model.vae_latent: must be at least 1"});
}

// The trunk is the encoder and decoder; head t is task t's latent layers; together every parameter once.
TEST(VaeNet, SharedParametersAndHeadsPartitionTheNetwork) {
  clx::VaeNet vae = small_vae(3);
  int64_t counted = 0;
  for (const auto& [name, tensor] : vae->named_shared_parameters()) {
    EXPECT_EQ(name.find("tasks."), std::string::npos) << name;
    counted += tensor.numel();
  }
  for (int64_t t = 0; t < 3; ++t) {
    const auto head = vae->head_parameters(t);
    EXPECT_EQ(head.size(), 6u);  // mu, logvar, latent_to_hidden: weight and bias
    for (const auto& p : head) counted += p.numel();
  }
  int64_t total = 0;
  for (const auto& p : vae->parameters()) total += p.numel();
  EXPECT_EQ(counted, total);
  EXPECT_EQ(vae->num_heads(), 3);
}

// A 3x2 greyscale image by hand: the signature, IHDR's fields, and IDAT
// inflating to each row behind its filter byte 0; with OpenCV, a decoder
// that is not ours reads the same pixels back (greyscale and RGB).
TEST(Png, EncodesAHandCase) {
  const torch::Tensor image = torch::arange(6, torch::kUInt8).view({2, 3});
  const std::string png = clx::encode_png(image);
  ASSERT_GT(png.size(), 8u + 25u + 12u + 12u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const auto u32 = [&](size_t at) {
    return (uint32_t(uint8_t(png[at])) << 24) | (uint32_t(uint8_t(png[at + 1])) << 16) |
           (uint32_t(uint8_t(png[at + 2])) << 8) | uint32_t(uint8_t(png[at + 3]));
  };
  EXPECT_EQ(u32(8), 13u);
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(u32(16), 3u);  // width
  EXPECT_EQ(u32(20), 2u);  // height
  EXPECT_EQ(png.substr(24, 5), std::string("\x08\x00\x00\x00\x00", 5));  // depth 8, greyscale, deflate, filter, no interlace
  const uint32_t idat_length = u32(33);
  EXPECT_EQ(png.substr(37, 4), "IDAT");
  std::string inflated(64, '\0');
  uLongf inflated_size = inflated.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(&inflated[0]), &inflated_size,
                       reinterpret_cast<const Bytef*>(png.data() + 41), idat_length),
            Z_OK);
  EXPECT_EQ(inflated.substr(0, inflated_size), std::string("\0\0\1\2\0\3\4\5", 8));
  EXPECT_EQ(png.substr(png.size() - 12), std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12));
#ifdef CLX_HAVE_OPENCV
  const std::vector<uchar> bytes(png.begin(), png.end());
  const cv::Mat grey = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
  ASSERT_EQ(grey.rows, 2);
  ASSERT_EQ(grey.cols, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) EXPECT_EQ(grey.at<uchar>(y, x), 3 * y + x);
  const torch::Tensor rgb = torch::arange(2 * 2 * 3, torch::kUInt8).view({2, 2, 3}).mul(10);
  const std::string rgb_png = clx::encode_png(rgb);
  const cv::Mat colour = cv::imdecode(std::vector<uchar>(rgb_png.begin(), rgb_png.end()), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(colour.channels(), 3);
  // OpenCV gives BGR.
  EXPECT_EQ(colour.at<cv::Vec3b>(1, 0)[2], rgb[1][0][0].item<uint8_t>());
  EXPECT_EQ(colour.at<cv::Vec3b>(1, 0)[0], rgb[1][0][2].item<uint8_t>());
#endif
  expect_error<clx::Error>([] { clx::encode_png(torch::zeros({2, 2})); }, {"encode_png: needs uint8 [H, W] or [H, W, 3]"});
}

// NumPy's format 1.0 for float32 [2, 1] {1, -2.5}: magic, version, header
// length 118 (10 + 118 = 128 bytes, a multiple of 64, space-padded, newline
// last), then the little-endian floats; a 1-D shape keeps its comma.
TEST(Npy, EncodesAHandCase) {
  const std::string npy = clx::encode_npy(torch::tensor({1.0f, -2.5f}).view({2, 1}));
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }";
  header.append(117 - header.size(), ' ');
  header += "\n";
  const std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header +
                               std::string("\x00\x00\x80\x3f\x00\x00\x20\xc0", 8);
  EXPECT_EQ(npy, expected);
  const std::string vector = clx::encode_npy(torch::zeros({3}, torch::kFloat64));
  EXPECT_NE(vector.find("'shape': (3,), }"), std::string::npos);
  EXPECT_EQ(vector.size(), 128u + 3 * 4);  // 10 + 58 + the newline, padded to 128; then three floats
  EXPECT_EQ(vector[127], '\n');
}

// Three 2x2 images (0, 0.5, 1) in a 2x2 grid with 1-pixel gaps: row-major
// cells, white gaps, the missing fourth cell white.
TEST(ImageGrid, PlacesCellsRowMajorWithWhiteGaps) {
  const torch::Tensor images = torch::tensor({0.0f, 0.5f, 1.0f}).view({3, 1, 1, 1}).expand({3, 1, 2, 2});
  const torch::Tensor grid = clx::image_grid(images, 2, 2, 1);
  ASSERT_EQ(grid.sizes(), torch::IntArrayRef({7, 7}));
  const auto at = [&](int y, int x) { return grid[y][x].item<uint8_t>(); };
  EXPECT_EQ(at(1, 1), 0);
  EXPECT_EQ(at(2, 2), 0);
  EXPECT_EQ(at(1, 4), 128);
  EXPECT_EQ(at(2, 5), 128);
  EXPECT_EQ(at(4, 1), 255);
  EXPECT_EQ(at(5, 5), 255);  // no fourth image
  EXPECT_EQ(at(0, 0), 255);
  EXPECT_EQ(at(3, 3), 255);
  EXPECT_EQ(at(1, 3), 255);  // the gap between cells
  expect_error<clx::Error>([&] { clx::image_grid(images, 1, 2); }, {"image_grid: 3 images do not fit 1 x 2 cells"});
}

// ANPyC's importance on a generator (DESIGN.md §4.4), by hand: for the one
// importance batch of task 1 (20 positions < 100), H = sum over draws p of the
// entropy of the feature classifier's softmax on decode(z_p, task 1), g = dH/dtheta,
// Omega = max(0, g theta + g^2 theta^2 / 2). The encoder generates nothing: Omega 0.
TEST_F(Generation, EntropyTaylorImportanceDifferentiatesTheGeneratedImages) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::VaeObjective objective(objective_config());
  clx::VaeNet model = small_vae(2);
  clx::StageContext context{*model, single, stream, quiet, clx::HeadLayout::Multi, 0, {0}};
  context.seed = 5;
  context.generated_logits = objective.generated_logits(*model, 5);
  context.generated_output = objective.generated_output(*model, 5);
  const clx::NamedTensors omega = clx::entropy_taylor_importance(context, 0, clx::EntropyTaylorSettings{});

  clx::FidFeatureNet features = clx::load_fid_features(feature_file());
  features.model()->eval();
  const torch::Tensor z = clx::VaeObjective::importance_noise(5, 0, torch::arange(20), 4);
  const torch::Tensor entropy =
      clx::softmax_entropy(features.model()->logits(model->vae->decode(z, 0), 0)).sum();
  const auto shared = model->named_shared_parameters();
  std::vector<torch::Tensor> parameters;
  for (const auto& item : shared) parameters.push_back(item.second);
  const auto grads = torch::autograd::grad({entropy}, parameters, {}, false, false, true);
  ASSERT_EQ(omega.size(), shared.size());
  bool decoder_positive = false;
  for (size_t k = 0; k < shared.size(); ++k) {
    const torch::Tensor& got = omega[k].second;
    if (shared[k].first.rfind("vae.encoder.", 0) == 0) {
      EXPECT_FALSE(grads[k].defined()) << shared[k].first;
      EXPECT_EQ(got.abs().max().item<float>(), 0.0f) << shared[k].first;
      continue;
    }
    const torch::Tensor theta = shared[k].second.detach(), g = grads[k];
    const torch::Tensor expected = (g * theta + 0.5 * g * g * theta * theta).clamp_min(0.0);
    EXPECT_TRUE(got.view_as(expected).allclose(expected, 1e-4, 1e-9)) << shared[k].first;
    decoder_positive = decoder_positive || got.max().item<float>() > 0;
  }
  EXPECT_TRUE(decoder_positive);
}

// MAS on a generator: the mean over draws p of |d ||G(z_p)||^2 / dtheta|, each draw's gradient on its own.
TEST_F(Generation, MasImportanceIsTheGeneratedImagesSensitivity) {
  const clx::TaskStream stream = two_class_task_stream(6, 4);  // 3 draws per task
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::VaeObjective objective(objective_config());
  clx::VaeNet model = small_vae(2);
  clx::StageContext context{*model, single, stream, quiet, clx::HeadLayout::Multi, 0, {1}};
  context.seed = 2;
  context.generated_logits = objective.generated_logits(*model, 2);
  context.generated_output = objective.generated_output(*model, 2);
  const clx::NamedTensors omega = clx::mas_importance(context, 1, clx::MasForm::PerSample);
  std::vector<torch::Tensor> parameters;
  for (const auto& item : model->named_shared_parameters()) parameters.push_back(item.second);
  std::vector<torch::Tensor> expected;
  for (const auto& p : parameters) expected.push_back(torch::zeros_like(p));
  for (int64_t p = 0; p < 3; ++p) {
    const torch::Tensor z = clx::VaeObjective::importance_noise(2, 1, torch::tensor({p}), 4);
    const auto grads = torch::autograd::grad({model->vae->decode(z, 1).pow(2).sum()}, parameters, {}, false, false, true);
    for (size_t k = 0; k < parameters.size(); ++k)
      if (grads[k].defined()) expected[k] += grads[k].abs() / 3.0;
  }
  for (size_t k = 0; k < parameters.size(); ++k)
    EXPECT_TRUE(omega[k].second.view_as(expected[k]).allclose(expected[k], 1e-4, 1e-9)) << omega[k].first;
  // Each draw is seeded by (seed, task, position): the same rows whatever chunk asks for them.
  EXPECT_TRUE(clx::VaeObjective::importance_noise(2, 1, torch::tensor({2, 0}), 4)[1].equal(
      clx::VaeObjective::importance_noise(2, 1, torch::tensor({0}), 4)[0]));
}

// DGR's replay term by hand, at task 2 (r = 1/2): each sample's replayed image
// is the generator after task 1 decoding its seeded draw through task 1's
// latent layers; the term is (1 - r) times the negative ELBO of those images
// under the current VAE (with the draw's own noise), summed and scaled like
// the task loss; the task's own loss is weighted by r. Task 1 replays nothing.
TEST_F(Generation, DgrReplaysThePreviousGeneratorsImages) {
  const clx::TaskStream stream = two_class_task_stream(40, 20);
  clx::SingleCommunicator single;
  clx::Logger quiet(1, "");
  clx::VaeNet model = small_vae(2);
  clx::DgrStrategy dgr(clx::DgrOptions{});
  clx::StageContext first{*model, single, stream, quiet, clx::HeadLayout::Multi, 0, {0}};
  dgr.before_task(first);
  first.batch_positions = torch::tensor({1, 2}, torch::kInt64);
  EXPECT_FALSE(dgr.penalty_loss(first).defined());
  EXPECT_EQ(dgr.task_loss_weight(first), 1.0);

  clx::StageContext second{*model, single, stream, quiet, clx::HeadLayout::Multi, 1, {1}};
  second.seed = 9;
  second.step = 4;
  second.loss_scale = 0.5;
  second.batch_positions = torch::tensor({3, 7, 11}, torch::kInt64);
  dgr.before_task(second);  // the snapshot: the VAE after task 1
  clx::VaeNet after_task_1 = small_vae(2);
  {
    torch::NoGradGuard no_grad;
    const auto from = model->parameters();
    const auto to = after_task_1->parameters();
    for (size_t k = 0; k < from.size(); ++k) to[k].copy_(from[k]);
    for (auto& p : model->parameters()) p.add_(0.01 * torch::randn_like(p));  // task 2's training moves the VAE on
  }
  const torch::Tensor penalty = dgr.penalty_loss(second);
  const auto draw = clx::DgrStrategy::replay_draw(9, 1, 4, second.batch_positions, 1, 4);
  EXPECT_TRUE(draw.tasks.eq(0).all().item<bool>());
  torch::Tensor images;
  {
    torch::NoGradGuard no_grad;
    images = after_task_1->vae->decode(draw.z, 0);
  }
  const double expected = 0.5 * 3 * model->vae->elbo_loss_with_noise(images, 0, draw.eps).loss.item<double>() * 0.5;
  EXPECT_NEAR(penalty.item<double>(), expected, 1e-4 * std::abs(expected));
  EXPECT_EQ(dgr.task_loss_weight(second), 0.5);
  // The replay trains the current VAE: the term has a gradient.
  EXPECT_TRUE(penalty.requires_grad());
  // Another step, other draws; the same step and positions, the same draws.
  EXPECT_FALSE(clx::DgrStrategy::replay_draw(9, 1, 5, second.batch_positions, 1, 4).z.equal(draw.z));
  EXPECT_TRUE(clx::DgrStrategy::replay_draw(9, 1, 4, second.batch_positions, 1, 4).z.equal(draw.z));
  expect_error<clx::Error>([] { clx::DgrStrategy(clx::DgrOptions{1.5}); }, {"dgr.ratio: must be in (0, 1]"});
}
