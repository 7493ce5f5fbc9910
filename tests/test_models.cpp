// The networks of models/: shapes, parameter counts worked out by hand, heads,
// the layer tape behind the batched Fisher, and a convolutional model with
// BatchNorm through pruning, checkpoints and resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "algorithms/anpyc.h"
#include "models/conv_nets.h"
#include "models/layer_tape.h"
#include "models/model_factory.h"
#include "runtime/checkpoint.h"
#include "runtime/communicator.h"
#include "runtime/error.h"
#include "runtime/trainer.h"
#include "tests/algorithm_test_support.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"

using namespace clx;
using namespace clx::testing_support;

namespace {

int64_t count(const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  int64_t total = 0;
  for (const auto& item : named) total += item.second.numel();
  return total;
}

torch::Tensor shared(const MultiHeadModel& model, const std::string& name) {
  for (const auto& [key, value] : model->named_shared_parameters())
    if (key == name) return value;
  ADD_FAILURE() << "no shared parameter " << name;
  return torch::zeros({0});
}

MultiHeadModel tiny_resnet(const std::vector<int64_t>& input_shape, const std::vector<int64_t>& heads, uint64_t seed) {
  torch::manual_seed(seed);
  ResNet18Config config;
  config.width = 1.0 / 16;  // 4-8-16-32 channels
  return make_resnet18(input_shape, config, heads);
}

}  // namespace

TEST(LeNet, ParameterCountsShapesAndHeads) {
  // Per conv: in*out*25 + out; per fc: in*out + out. Fashion-MNIST 1x28x28:
  // 832 + 51,264 + fc 64*7*7 -> 512: 1,606,144 + fc 512 -> 256: 131,328 = 1,789,568.
  MultiHeadModel fmnist = make_lenet({1, 28, 28}, LeNetConfig{}, {2, 3});
  EXPECT_EQ(count(fmnist->named_shared_parameters()), 1789568);
  EXPECT_EQ(fmnist->named_shared_parameters().size(), 8u);  // 4 weight layers, weight and bias each
  EXPECT_EQ(shared(fmnist, "trunk.0.weight").sizes(), torch::IntArrayRef({32, 1, 5, 5}));
  EXPECT_EQ(shared(fmnist, "trunk.3.weight").sizes(), torch::IntArrayRef({64, 32, 5, 5}));
  EXPECT_EQ(shared(fmnist, "trunk.7.weight").sizes(), torch::IntArrayRef({512, 3136}));
  EXPECT_EQ(shared(fmnist, "trunk.9.weight").sizes(), torch::IntArrayRef({256, 512}));
  fmnist->eval();
  const torch::Tensor features = fmnist->features(torch::rand({4, 1, 28, 28}));
  EXPECT_EQ(features.sizes(), torch::IntArrayRef({4, 256}));
  EXPECT_EQ(fmnist->head_forward(features, 1).sizes(), torch::IntArrayRef({4, 3}));
  // CIFAR 3x32x32: 2,432 + 51,264 + fc 64*8*8 -> 512: 2,097,664 + 131,328.
  EXPECT_EQ(count(make_lenet({3, 32, 32}, LeNetConfig{}, {10})->named_shared_parameters()), 2282688);
  // Dropout after each fc, only while training; the tape records the 4 layers and reproduces the forward pass.
  LeNetConfig dropout;
  dropout.width = 0.25;  // 8, 16 channels; fc 128, 64
  dropout.dropout = 0.5;
  MultiHeadModel small = make_lenet({1, 8, 8}, dropout, {2});
  // 8*25+8 + 16*8*25+16 + 16*2*2*128+128 + 128*64+64 = 208 + 3,216 + 8,320 + 8,256.
  EXPECT_EQ(count(small->named_shared_parameters()), 20000);
  small->eval();
  const torch::Tensor x = torch::rand({3, 1, 8, 8});
  LayerTape tape;
  const torch::Tensor recorded = small->features_recorded(x, tape);
  EXPECT_TRUE(tape.complete()) << tape.reason();
  EXPECT_EQ(tape.layers().size(), 4u);
  EXPECT_TRUE(torch::allclose(recorded, small->features(x), 1e-6, 1e-7));
  expect_error([] { make_lenet({1, 3, 3}, LeNetConfig{}, {2}); }, {"model.arch=lenet needs images of at least 4x4"});
}

TEST(Vgg9, ParameterCountsShapesAndHeads) {
  // Per conv: in*out*9 + out; per fc: in*out + out.
  // Fashion-MNIST 1x28x28: 320 + 9,248 + 18,496 + 36,928 + 73,856 + 147,584
  //   + fc 128*3*3 -> 256: 295,168 + fc 256 -> 256: 65,792 = 647,392.
  MultiHeadModel fmnist = make_vgg9({1, 28, 28}, Vgg9Config{}, {2, 3});
  EXPECT_EQ(count(fmnist->named_shared_parameters()), 647392);
  EXPECT_EQ(fmnist->named_shared_parameters().size(), 16u);  // 8 weight layers, weight and bias each
  EXPECT_EQ(shared(fmnist, "trunk.0.weight").sizes(), torch::IntArrayRef({32, 1, 3, 3}));
  EXPECT_EQ(shared(fmnist, "trunk.12.weight").sizes(), torch::IntArrayRef({128, 128, 3, 3}));
  EXPECT_EQ(shared(fmnist, "trunk.16.weight").sizes(), torch::IntArrayRef({256, 1152}));
  fmnist->eval();
  const torch::Tensor features = fmnist->features(torch::rand({4, 1, 28, 28}));
  EXPECT_EQ(features.sizes(), torch::IntArrayRef({4, 256}));
  EXPECT_EQ(fmnist->head_forward(features, 0).sizes(), torch::IntArrayRef({4, 2}));
  EXPECT_EQ(fmnist->head_forward(features, 1).sizes(), torch::IntArrayRef({4, 3}));
  EXPECT_EQ(fmnist->head_parameters(1).at(0).sizes(), torch::IntArrayRef({3, 256}));
  // Heads are not shared: all parameters = trunk + 2 heads (256*2+2 + 256*3+3).
  int64_t all = 0;
  for (const auto& p : fmnist->parameters()) all += p.numel();
  EXPECT_EQ(all, 647392 + 514 + 771);

  // CIFAR 3x32x32: 896 + 9,248 + 18,496 + 36,928 + 73,856 + 147,584 + fc 2048 -> 256: 524,544 + 65,792.
  MultiHeadModel cifar = make_vgg9({3, 32, 32}, Vgg9Config{}, {10});
  EXPECT_EQ(count(cifar->named_shared_parameters()), 877344);
  EXPECT_EQ(shared(cifar, "trunk.16.weight").sizes(), torch::IntArrayRef({256, 2048}));

  // Quarter width on 1x8x8: channels 8-8-16-16-32-32, fc 64: 80 + 584 + 1,168 + 2,320 + 4,640 + 9,248
  //   + fc 32*1*1 -> 64: 2,112 + 64 -> 64: 4,160 = 24,312.
  Vgg9Config quarter;
  quarter.width = 0.25;
  EXPECT_EQ(count(make_vgg9({1, 8, 8}, quarter, {2})->named_shared_parameters()), 24312);

  expect_error([] { make_vgg9({1, 7, 7}, Vgg9Config{}, {2}); }, {"model.arch=vgg9 needs images of at least 8x8"});
  Vgg9Config bad;
  bad.width = 0;
  expect_error([&] { make_vgg9({1, 28, 28}, bad, {2}); }, {"model.width"});
}

TEST(Vgg9, DropoutAfterEachFullyConnectedLayerOnlyWhileTraining) {
  Vgg9Config config;
  config.width = 0.25;
  config.dropout = 0.5;
  MultiHeadModel model = make_vgg9({1, 8, 8}, config, {2});
  int dropouts = 0;
  for (const auto& child : model->modules(false))
    if (dynamic_cast<torch::nn::DropoutImpl*>(child.get())) ++dropouts;
  EXPECT_EQ(dropouts, 2);
  model->eval();
  const torch::Tensor x = torch::rand({3, 1, 8, 8});
  EXPECT_TRUE(torch::equal(model->features(x), model->features(x)));
}

TEST(ResNet18, ParameterCountsStemsAndShapes) {
  // Stages (BN: 2 per channel; blocks at width 64-128-256-512):
  //   layer1 2 x (2 x 36,864 + 256) = 147,968
  //   layer2 (73,728 + 147,456 + 512 + 8,192 + 256) + (2 x 147,456 + 512) = 525,568
  //   layer3 (294,912 + 589,824 + 1,024 + 32,768 + 512) + (2 x 589,824 + 1,024) = 2,099,712
  //   layer4 (1,179,648 + 2,359,296 + 2,048 + 131,072 + 1,024) + (2 x 2,359,296 + 2,048) = 8,393,728
  //   = 11,166,976, plus the stem conv and its BN (128).
  ResNet18Config config;
  MultiHeadModel imagenet = make_resnet18({3, 224, 224}, config, {5});  // auto: imagenet stem
  // 7*7*3*64 = 9,408: 11,176,512, torchvision's 11,689,512 less its fc (512*1000 + 1000).
  EXPECT_EQ(count(imagenet->named_shared_parameters()), 11166976 + 9408 + 128);
  EXPECT_EQ(count(imagenet->named_shared_parameters()), 11689512 - 513000);
  EXPECT_EQ(shared(imagenet, "trunk.0.weight").sizes(), torch::IntArrayRef({64, 3, 7, 7}));
  // 20 BatchNorm layers (stem, 16 in blocks, 3 projections), 3 buffers each.
  EXPECT_EQ(imagenet->named_buffers().size(), 60u);
  EXPECT_TRUE(imagenet->named_buffers().contains("trunk.1.running_mean"));
  EXPECT_TRUE(imagenet->named_buffers().contains("trunk.6.downsample.1.running_var"));

  MultiHeadModel cifar = make_resnet18({3, 32, 32}, config, {10});  // auto: small stem, 3*3*3*64 = 1,728
  EXPECT_EQ(count(cifar->named_shared_parameters()), 11166976 + 1728 + 128);
  EXPECT_EQ(shared(cifar, "trunk.0.weight").sizes(), torch::IntArrayRef({64, 3, 3, 3}));
  EXPECT_EQ(shared(cifar, "trunk.5.downsample.0.weight").sizes(), torch::IntArrayRef({128, 64, 1, 1}));
  EXPECT_EQ(shared(cifar, "trunk.10.conv2.weight").sizes(), torch::IntArrayRef({512, 512, 3, 3}));
  MultiHeadModel fmnist = make_resnet18({1, 28, 28}, config, {2, 2});  // 3*3*1*64 = 576
  EXPECT_EQ(count(fmnist->named_shared_parameters()), 11166976 + 576 + 128);
  fmnist->eval();
  const torch::Tensor features = fmnist->features(torch::rand({2, 1, 28, 28}));
  EXPECT_EQ(features.sizes(), torch::IntArrayRef({2, 512}));
  EXPECT_EQ(fmnist->head_forward(features, 1).sizes(), torch::IntArrayRef({2, 2}));

  // The ImageNet stem forced on small images still yields 512 features.
  config.stem = "imagenet";
  MultiHeadModel forced = make_resnet18({3, 64, 64}, config, {3});
  forced->eval();
  EXPECT_EQ(forced->features(torch::rand({2, 3, 64, 64})).sizes(), torch::IntArrayRef({2, 512}));

  // Quarter width (16-32-64-128) on one channel: stem 144 + 32; layer1 2 x (2 x 2,304 + 64);
  // layer2 (4,608 + 9,216 + 128 + 512 + 64) + (2 x 9,216 + 128); layer3 (18,432 + 36,864 + 256 + 2,048 + 128)
  // + (2 x 36,864 + 256); layer4 (73,728 + 147,456 + 512 + 8,192 + 256) + (2 x 147,456 + 512) = 699,888.
  ResNet18Config quarter;
  quarter.width = 0.25;
  EXPECT_EQ(count(make_resnet18({1, 28, 28}, quarter, {2})->named_shared_parameters()), 699888);

  ResNet18Config bad;
  bad.stem = "tiny";
  expect_error([&] { make_resnet18({3, 32, 32}, bad, {2}); }, {"model.stem: 'tiny' is not one of auto, small, imagenet"});
}

TEST(ModelFactory, BuildsEachArchitectureAndNamesBadOptions) {
  ModelConfig config;
  EXPECT_EQ(count(make_model(config, {1, 28, 28}, {2})->named_shared_parameters()),
            784 * 512 + 512 + 512 * 256 + 256);
  config.arch = ModelArch::Vgg9;
  EXPECT_EQ(count(make_model(config, {1, 28, 28}, {2})->named_shared_parameters()), 647392);
  config.arch = ModelArch::ResNet18;
  config.width = 0.25;
  EXPECT_EQ(count(make_model(config, {1, 28, 28}, {2})->named_shared_parameters()), 699888);
  config.dropout = 0.2;
  expect_error([&] { make_model(config, {1, 28, 28}, {2}); }, {"model.dropout: resnet18 has no dropout layers"});
  config.arch = ModelArch::LeNet;
  config.dropout = 0.0;
  config.width = 1.0;
  EXPECT_EQ(count(make_model(config, {1, 28, 28}, {2})->named_shared_parameters()), 1789568);
  expect_error([&] { parse_model_arch("alexnet"); },
               {"model.arch: 'alexnet' is not one of mlp, lenet, vgg9, resnet18, vae, gan, dgm"});
  EXPECT_EQ(parse_model_arch("resnet18"), ModelArch::ResNet18);
  EXPECT_EQ(to_string(ModelArch::Dgm), "dgm");
  EXPECT_TRUE(is_generator(ModelArch::Gan));
  EXPECT_FALSE(is_generator(ModelArch::LeNet));
  config.arch = ModelArch::Vgg9;
  config.dropout = 0.0;
  config.width = -1;
  expect_error([&] { validate_model_config(config); }, {"model.width: must be a positive channel multiplier"});
  config.width = 1;
  expect_error([&] { make_model(config, {1, 4, 4}, {2}); }, {"model.arch=vgg9 needs images of at least 8x8"});
}

// The released ANPyC code's initialisation: truncated normal (std 0.1, cut
// at 2 std) for every Linear and Conv2d weight, heads included, biases 0.1.
TEST(ModelFactory, TruncatedNormalInitialisationOfEveryLinearAndConvLayer) {
  ModelConfig config;
  config.init = ModelInit::TruncatedNormal;
  torch::manual_seed(5);
  const MultiHeadModel mlp = make_model(config, {1, 28, 28}, {2, 2});
  int64_t weights = 0;
  for (const auto& item : mlp->named_parameters()) {
    const torch::Tensor& value = item.value();
    SCOPED_TRACE(item.key());
    if (value.dim() == 1) {
      EXPECT_TRUE(value.eq(0.1f).all().item<bool>()) << "biases are 0.1";
      continue;
    }
    ++weights;
    EXPECT_LE(value.abs().max().item<double>(), 0.2 + 1e-7) << "cut at 2 standard deviations";
    if (value.numel() < 10000) continue;
    // A normal truncated at +-2 sigma has standard deviation 0.8796 sigma.
    EXPECT_NEAR(value.std().item<double>(), 0.08796, 0.002);
    EXPECT_NEAR(value.mean().item<double>(), 0.0, 0.002);
    EXPECT_GT(value.abs().gt(0.19).sum().item<int64_t>(), 0) << "the tails reach the cut";
  }
  EXPECT_EQ(weights, 4);  // two trunk layers, two heads
  config.arch = ModelArch::Vgg9;
  config.width = 0.25;
  const MultiHeadModel vgg = make_model(config, {1, 28, 28}, {2});
  for (const auto& [name, value] : vgg->named_shared_parameters())
    if (value.dim() == 4) EXPECT_LE(value.abs().max().item<double>(), 0.2 + 1e-7) << name;
  // The default keeps LibTorch's initialisation: its biases are not all 0.1.
  config.init = ModelInit::Default;
  EXPECT_FALSE(make_model(config, {1, 28, 28}, {2})->named_shared_parameters()[1].second.eq(0.1f).all().item<bool>());
  expect_error([&] { parse_model_init("xavier"); }, {"model.init: 'xavier' is not one of default, truncated_normal"});
  EXPECT_EQ(parse_model_init("truncated_normal"), ModelInit::TruncatedNormal);
}

TEST(LayerTape, RecordsEveryParameterisedLayerAndReproducesTheForwardPass) {
  const torch::Tensor x = torch::rand({3, 1, 8, 8});
  {
    Vgg9Config config;
    config.width = 0.25;
    config.dropout = 0.3;
    MultiHeadModel vgg = make_vgg9({1, 8, 8}, config, {2});
    vgg->eval();
    LayerTape tape;
    const torch::Tensor recorded = vgg->features_recorded(x, tape);
    EXPECT_TRUE(tape.complete()) << tape.reason();
    EXPECT_EQ(tape.layers().size(), 8u);
    EXPECT_TRUE(torch::equal(recorded, vgg->features(x)));
    vgg->train();  // dropout now draws masks: not a fixed function of each sample
    LayerTape training;
    vgg->features_recorded(x, training);
    EXPECT_FALSE(training.complete());
    EXPECT_NE(training.reason().find("Dropout"), std::string::npos) << training.reason();
  }
  {
    MultiHeadModel resnet = tiny_resnet({1, 8, 8}, {2}, 3);
    resnet->eval();
    LayerTape tape;
    const torch::Tensor recorded = resnet->features_recorded(x, tape);
    EXPECT_TRUE(tape.complete()) << tape.reason();
    // Stem conv + BN, 8 blocks x (2 conv + 2 BN), 3 projections x (conv + BN).
    EXPECT_EQ(tape.layers().size(), 2u + 32u + 6u);
    EXPECT_TRUE(torch::allclose(recorded, resnet->features(x), 1e-6, 1e-7));
    resnet->train();  // BatchNorm now normalises with the batch's statistics
    LayerTape training;
    resnet->features_recorded(x, training);
    EXPECT_FALSE(training.complete());
    EXPECT_NE(training.reason().find("BatchNorm2d"), std::string::npos) << training.reason();
  }
  {
    torch::nn::Sequential grouped(torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).groups(2)));
    LayerTape tape;
    tape.sequential(grouped, torch::rand({1, 2, 5, 5}));
    EXPECT_NE(tape.reason().find("grouped Conv2d"), std::string::npos) << tape.reason();
  }
}

class ConvModelCheckpoints : public TempDirTest {
 protected:
  ConvModelCheckpoints() : TempDirTest("clx_models_") {}
};

// A BatchNorm ResNet through ANPyC with pruning: 4-D masks, every parameter and
// buffer in the checkpoint, and a resume between tasks that ends exactly where
// the uninterrupted run ended.
TEST_F(ConvModelCheckpoints, ResNetWithAnpycPruningCheckpointsAndResumesExactly) {
  TaskStream stream = tiny_image_stream(2, 2, 16, 1, 8);
  AnpycOptions options;
  options.lambda = 1.0;
  options.first_budget = 0.3;
  options.step = 0.1;
  options.retrain_epochs = 1;
  TrainerConfig config;
  config.batch_size = 8;
  config.epochs = 2;
  config.lr = 0.05;
  config.momentum = 0.9;
  config.progress_seconds = 1e9;
  config.checkpoint_dir = path("uninterrupted").string();
  SingleCommunicator comm;
  Logger quiet(1, "");

  MultiHeadModel model = tiny_resnet(stream.input_shape, {2, 2}, 61);
  AnpycStrategy anpyc(options);
  const RunResult uninterrupted = Trainer(config, comm, stream, model.ptr(), anpyc, quiet).run();

  const auto files = CheckpointDirectory(config.checkpoint_dir, 3).files();
  ASSERT_EQ(files.size(), 2u);  // after task 1, after task 2
  // After task 1's pruning: masks of the weights' 4-D shape free part of every
  // convolution, and the freed weights are zero.
  const CheckpointState after_task1 = read_checkpoint(files[0]);
  int64_t conv_masks = 0;
  for (const auto& [key, mask] : after_task1.strategy) {
    if (key.rfind("mask.", 0) != 0 || mask.dim() != 4) continue;
    ++conv_masks;
    const std::string name = key.substr(5);
    torch::Tensor weight;
    for (const auto& [model_name, tensor] : after_task1.model)
      if (model_name == name) weight = tensor;
    ASSERT_TRUE(weight.defined()) << name;
    EXPECT_EQ(mask.sizes(), weight.sizes()) << name;
    EXPECT_GT(mask.eq(0).sum().item<int64_t>(), 0) << name << ": nothing freed";
    EXPECT_TRUE(weight.masked_select(mask.eq(0)).eq(0).all().item<bool>()) << name << ": a freed weight is not zero";
  }
  EXPECT_EQ(conv_masks, 20);

  // The newest checkpoint holds every parameter and buffer as the model ends.
  const CheckpointState last = read_checkpoint(files[1]);
  std::vector<std::pair<std::string, torch::Tensor>> live;
  for (const auto& item : model->named_parameters()) live.emplace_back(item.key(), item.value());
  for (const auto& item : model->named_buffers()) live.emplace_back(item.key(), item.value());
  ASSERT_EQ(last.model.size(), live.size());
  for (size_t k = 0; k < live.size(); ++k) {
    EXPECT_EQ(last.model[k].first, live[k].first);
    EXPECT_TRUE(torch::equal(last.model[k].second, live[k].second)) << live[k].first;
  }

  // A fresh model (other initial weights) resumed after task 1 ends bit for bit where the first run ended.
  MultiHeadModel resumed = tiny_resnet(stream.input_shape, {2, 2}, 62);
  AnpycStrategy resumed_anpyc(options);
  config.checkpoint_dir = path("resumed").string();
  const RunResult continued =
      Trainer(config, comm, stream, resumed.ptr(), resumed_anpyc, quiet).run(&after_task1, files[0]);
  EXPECT_EQ(continued.matrix.stages, uninterrupted.matrix.stages);
  const auto expected = model->named_buffers(), got = resumed->named_buffers();
  for (const auto& item : expected) EXPECT_TRUE(torch::equal(got[item.key()], item.value())) << item.key();
  const auto expected_parameters = model->parameters(), got_parameters = resumed->parameters();
  for (size_t k = 0; k < expected_parameters.size(); ++k)
    EXPECT_TRUE(torch::equal(got_parameters[k], expected_parameters[k])) << "parameter " << k;
}
