// The networks of continual image generation (models/generative.h): shapes
// and parameter counts worked out by hand, growth that leaves old classes and
// tasks untouched, stable names, gradients, the ELBO against hand values,
// seeded sampling and growth, the layer tape. On CLX_TEST_DEVICE (cpu by default).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "models/generative.h"
#include "runtime/error.h"
#include "tests/algorithm_test_support.h"
#include "tests/expect_error.h"
#include "tests/trainer_test_support.h"

using namespace clx;
using namespace clx::testing_support;

namespace {

const torch::Device kDevice = test_device();

std::vector<std::string> names(const torch::nn::Module& module) {
  std::vector<std::string> out;
  for (const auto& item : module.named_parameters()) out.push_back(item.key());
  return out;
}

torch::Tensor parameter(const torch::nn::Module& module, const std::string& name) {
  const auto named = module.named_parameters();
  if (const torch::Tensor* found = named.find(name)) return *found;
  ADD_FAILURE() << "no parameter " << name;
  return torch::zeros({0});
}

int64_t count(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

// The same names in the same order, every value identical (compared on the CPU: the modules may sit on different devices).
void expect_same_named_parameters(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(names(a), names(b));
  for (const auto& item : pa)
    EXPECT_TRUE(torch::equal(item.value().cpu(), pb[item.key()].cpu())) << item.key();
}

GanConfig gan_config(int64_t channels, int64_t side, int64_t classes, double width = 1.0) {
  GanConfig config;
  config.channels = channels;
  config.image_size = side;
  config.classes = classes;
  config.width = width;
  return config;
}

VaeConfig vae_config(int64_t tasks, int64_t hidden = 16, int64_t latent = 2) {
  VaeConfig config;
  config.hidden = hidden;
  config.latent = latent;
  config.tasks = tasks;
  return config;
}

torch::Tensor classes_on_device(std::vector<int64_t> values) {
  return torch::tensor(values, torch::kInt64).to(kDevice);
}

}  // namespace

TEST(ConditionalGan, ShapesAndParameterCountsFor28x28x1And32x32x3) {
  torch::manual_seed(1);
  {
    SCOPED_TRACE("28x28x1, 2 classes");
    // input: (100 + 2) -> 128*7*7 = 6272: 102*6272 + 6272 = 646,016; bn0 2*128; deconv1 128*64*16 + 64 = 131,136;
    // bn1 2*64; deconv2 64*1*16 + 1 = 1,025. Total 778,561.
    ConditionalGenerator generator(gan_config(1, 28, 2));
    EXPECT_EQ(count(*generator), 778561);
    EXPECT_EQ(names(*generator), (std::vector<std::string>{"input.weight", "input.bias", "bn0.weight", "bn0.bias",
                                                           "deconv1.weight", "deconv1.bias", "bn1.weight", "bn1.bias",
                                                           "deconv2.weight", "deconv2.bias"}));
    EXPECT_EQ(parameter(*generator, "input.weight").sizes(), torch::IntArrayRef({6272, 102}));
    EXPECT_EQ(parameter(*generator, "deconv1.weight").sizes(), torch::IntArrayRef({128, 64, 4, 4}));
    EXPECT_EQ(parameter(*generator, "deconv2.weight").sizes(), torch::IntArrayRef({64, 1, 4, 4}));
    generator->to(kDevice);
    const torch::Tensor images = generator->forward(torch::randn({5, 100}).to(kDevice), classes_on_device({0, 1, 1, 0, 1}));
    EXPECT_EQ(images.sizes(), torch::IntArrayRef({5, 1, 28, 28}));
    EXPECT_LE(images.abs().max().item<double>(), 1.0);  // tanh
    // conv1 64*1*16 + 64 = 1,088; conv2 128*64*16 + 128 = 131,200; score (6272 + 2) + 1 = 6,275;
    // aux 2*6272 + 2 = 12,546. Total 151,109.
    ConditionalCritic critic(gan_config(1, 28, 2));
    EXPECT_EQ(count(*critic), 151109);
    EXPECT_EQ(names(*critic), (std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                                        "score.weight", "score.bias", "aux.weight", "aux.bias"}));
    EXPECT_EQ(parameter(*critic, "score.weight").sizes(), torch::IntArrayRef({1, 6274}));
    EXPECT_EQ(parameter(*critic, "aux.weight").sizes(), torch::IntArrayRef({2, 6272}));
    critic->to(kDevice);
    const CriticOutput out = critic->forward(images, classes_on_device({0, 1, 1, 0, 1}));
    EXPECT_EQ(out.score.sizes(), torch::IntArrayRef({5}));
    EXPECT_EQ(out.aux_logits.sizes(), torch::IntArrayRef({5, 2}));
    EXPECT_TRUE(torch::equal(critic->classify(images), out.aux_logits));
  }
  {
    SCOPED_TRACE("32x32x3, 3 classes, width 0.5");
    // 64 and 32 channels; input (100 + 3) -> 64*8*8 = 4096.
    ConditionalGenerator generator(gan_config(3, 32, 3, 0.5));
    EXPECT_EQ(parameter(*generator, "input.weight").sizes(), torch::IntArrayRef({4096, 103}));
    EXPECT_EQ(parameter(*generator, "bn0.weight").sizes(), torch::IntArrayRef({64}));
    EXPECT_EQ(parameter(*generator, "deconv1.weight").sizes(), torch::IntArrayRef({64, 32, 4, 4}));
    EXPECT_EQ(parameter(*generator, "deconv2.weight").sizes(), torch::IntArrayRef({32, 3, 4, 4}));
    generator->to(kDevice);
    const torch::Tensor images = generator->forward(torch::randn({4, 100}).to(kDevice), classes_on_device({2, 0, 1, 2}));
    EXPECT_EQ(images.sizes(), torch::IntArrayRef({4, 3, 32, 32}));
    ConditionalCritic critic(gan_config(3, 32, 3, 0.5));
    EXPECT_EQ(parameter(*critic, "conv1.weight").sizes(), torch::IntArrayRef({32, 3, 4, 4}));
    EXPECT_EQ(parameter(*critic, "score.weight").sizes(), torch::IntArrayRef({1, 64 * 8 * 8 + 3}));
    critic->to(kDevice);
    const CriticOutput out = critic->forward(images, classes_on_device({2, 0, 1, 2}));
    EXPECT_EQ(out.score.sizes(), torch::IntArrayRef({4}));
    EXPECT_EQ(out.aux_logits.sizes(), torch::IntArrayRef({4, 3}));
  }
}

TEST(ConditionalGan, AddedClassSlotLeavesEveryOldClassUnchanged) {
  torch::manual_seed(2);
  ConditionalGenerator generator(gan_config(1, 28, 1, 0.25));
  ConditionalCritic critic(gan_config(1, 28, 1, 0.25));
  generator->to(kDevice);
  critic->to(kDevice);
  const std::vector<std::string> generator_names = names(*generator), critic_names = names(*critic);
  const torch::Tensor z = torch::randn({6, 100}).to(kDevice);
  for (int64_t slot = 1; slot <= 2; ++slot) {
    SCOPED_TRACE("slot " + std::to_string(slot));
    // Old classes 0..slot-1, in training mode (batch statistics of the same
    // batch), then in eval mode (the running statistics, which that pass updated).
    const torch::Tensor old = torch::arange(6, torch::kInt64).remainder(slot).to(kDevice);
    generator->train();
    const torch::Tensor train_before = generator->forward(z, old).detach();
    generator->eval();
    const torch::Tensor eval_before = generator->forward(z, old).detach();
    const CriticOutput critic_before = critic->forward(eval_before, old);
    const torch::Tensor input_before = generator->named_parameters()["input.weight"].detach().clone();
    const torch::Tensor aux_before = critic->named_parameters()["aux.weight"].detach().clone();

    generator->add_class_slot();
    critic->add_class_slot();
    EXPECT_EQ(generator->classes(), slot + 1);
    EXPECT_EQ(critic->classes(), slot + 1);
    // Names and order unchanged; the grown tensors keep their old entries bit for bit.
    EXPECT_EQ(names(*generator), generator_names);
    EXPECT_EQ(names(*critic), critic_names);
    const torch::Tensor input_after = generator->named_parameters()["input.weight"];
    EXPECT_EQ(input_after.sizes(), torch::IntArrayRef({32 * 49, 100 + slot + 1}));
    EXPECT_TRUE(torch::equal(input_after.narrow(1, 0, 100 + slot), input_before));
    EXPECT_TRUE(input_after.requires_grad());
    EXPECT_EQ(input_after.device(), input_before.device());
    const torch::Tensor aux_after = critic->named_parameters()["aux.weight"];
    EXPECT_EQ(aux_after.sizes(), torch::IntArrayRef({slot + 1, 32 * 49}));
    EXPECT_TRUE(torch::equal(aux_after.narrow(0, 0, slot), aux_before));
    // The new column within LibTorch's default bound 1/sqrt(fan_in), fan_in after growth.
    const double bound = 1.0 / std::sqrt(100.0 + slot + 1);
    EXPECT_LE(input_after.select(1, 100 + slot).abs().max().item<double>(), bound);
    EXPECT_GT(input_after.select(1, 100 + slot).abs().max().item<double>(), 0.5 * bound);

    // Same outputs up to the matrix product's rounding (one more, zero-weighted, term).
    EXPECT_TRUE(all_close(generator->forward(z, old), eval_before, 1e-5, 1e-6));
    const CriticOutput critic_after = critic->forward(eval_before, old);
    EXPECT_TRUE(all_close(critic_after.score, critic_before.score, 1e-5, 1e-6));
    EXPECT_EQ(critic_after.aux_logits.size(1), slot + 1);
    EXPECT_TRUE(all_close(critic_after.aux_logits.narrow(1, 0, slot), critic_before.aux_logits, 1e-5, 1e-6));
    // The new class is a different condition.
    const torch::Tensor fresh = torch::full({6}, slot, torch::kInt64).to(kDevice);
    EXPECT_FALSE(torch::allclose(generator->forward(z, fresh), eval_before, 1e-3, 1e-4));
    EXPECT_FALSE(torch::allclose(critic->forward(eval_before, fresh).score, critic_before.score, 1e-3, 1e-4));
    generator->train();
    EXPECT_TRUE(all_close(generator->forward(z, old), train_before, 1e-5, 1e-6));
  }
}

TEST(ConditionalGan, GradientsReachEveryParameter) {
  torch::manual_seed(3);
  ConditionalGenerator generator(gan_config(3, 32, 2, 0.25));
  ConditionalCritic critic(gan_config(3, 32, 2, 0.25));
  generator->add_class_slot();
  critic->add_class_slot();
  generator->to(kDevice);
  critic->to(kDevice);
  // Every class present, so every class column takes part.
  const torch::Tensor classes = classes_on_device({0, 1, 2, 0, 1, 2});
  const torch::Tensor images = generator->forward(torch::randn({6, 100}).to(kDevice), classes);
  const CriticOutput out = critic->forward(images, classes);
  const torch::Tensor loss = out.score.mean() + torch::nn::functional::cross_entropy(out.aux_logits, classes);
  loss.backward();
  for (const torch::nn::Module* module : {static_cast<torch::nn::Module*>(generator.get()),
                                          static_cast<torch::nn::Module*>(critic.get())})
    for (const auto& item : module->named_parameters()) {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      EXPECT_EQ(item.value().grad().sizes(), item.value().sizes()) << item.key();
      EXPECT_TRUE(torch::isfinite(item.value().grad()).all().item<bool>()) << item.key();
      EXPECT_GT(item.value().grad().abs().max().item<double>(), 0.0) << item.key();
    }
  // Growth drops the grown parameters' gradients (of the old shape); the others keep theirs.
  generator->add_class_slot();
  EXPECT_FALSE(generator->named_parameters()["input.weight"].grad().defined());
  EXPECT_TRUE(generator->named_parameters()["deconv1.weight"].grad().defined());
}

TEST(ConditionalGan, IdenticallySeededConstructionsAndGrowthAreIdentical) {
  GanConfig config = gan_config(1, 28, 1, 0.25);
  config.seed = 7;
  torch::manual_seed(4);
  ConditionalGenerator a(config);
  ConditionalCritic critic_a(config);
  torch::manual_seed(4);
  ConditionalGenerator b(config);
  ConditionalCritic critic_b(config);
  expect_same_named_parameters(*a, *b);
  expect_same_named_parameters(*critic_a, *critic_b);
  // Growth draws from (seed, slot), not from the default generator: the same
  // after different draws elsewhere, on any device, and it leaves the default generator alone.
  torch::manual_seed(100);
  a->add_class_slot();
  critic_a->add_class_slot();
  const torch::Tensor after_growth = torch::rand({4});
  torch::manual_seed(100);
  const torch::Tensor without_growth = torch::rand({4});
  EXPECT_TRUE(torch::equal(after_growth, without_growth));
  torch::rand({1000});
  b->to(kDevice);
  critic_b->to(kDevice);
  b->add_class_slot();
  critic_b->add_class_slot();
  EXPECT_EQ(b->named_parameters()["input.weight"].device(), kDevice);
  EXPECT_EQ(critic_b->named_parameters()["aux.bias"].device(), kDevice);
  expect_same_named_parameters(*a, *b);
  expect_same_named_parameters(*critic_a, *critic_b);
  // Noise from an explicit CPU generator: the same on every device.
  const torch::Tensor noise = b->noise(3, at::detail::createCPUGenerator(5));
  EXPECT_EQ(noise.sizes(), torch::IntArrayRef({3, 100}));
  EXPECT_EQ(noise.device(), kDevice);
  EXPECT_TRUE(torch::equal(noise.cpu(), torch::randn({3, 100}, at::detail::createCPUGenerator(5), torch::TensorOptions())));
  // Another seed, another column.
  config.seed = 8;
  torch::manual_seed(4);
  ConditionalGenerator c(config);
  c->add_class_slot();
  EXPECT_FALSE(torch::equal(c->named_parameters()["input.weight"].select(1, 101),
                            a->named_parameters()["input.weight"].select(1, 101)));
  EXPECT_TRUE(torch::equal(c->named_parameters()["input.weight"].narrow(1, 0, 101),
                           a->named_parameters()["input.weight"].narrow(1, 0, 101)));
}

TEST(ConditionalGan, GrowthFollowsTheModulesDtype) {
  torch::manual_seed(5);
  ConditionalGenerator generator(gan_config(1, 28, 1, 0.25));
  ConditionalCritic critic(gan_config(1, 28, 1, 0.25));
  generator->to(torch::kFloat64);
  critic->to(torch::kFloat64);
  generator->add_class_slot();
  critic->add_class_slot();
  for (const auto& p : generator->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
  for (const auto& p : critic->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat64);
  const torch::Tensor z = torch::randn({2, 100}, torch::kFloat64);
  const torch::Tensor images = generator->forward(z, torch::tensor({0, 1}, torch::kInt64));
  EXPECT_EQ(images.scalar_type(), torch::kFloat64);
  EXPECT_EQ(critic->forward(images, torch::tensor({1, 0}, torch::kInt64)).aux_logits.sizes(),
            torch::IntArrayRef({2, 2}));
}

TEST(ConditionalGan, TapeRecordsEveryParameterisedLayerAndReproducesTheForwardPass) {
  torch::manual_seed(6);
  ConditionalGenerator generator(gan_config(1, 28, 2, 0.25));
  ConditionalCritic critic(gan_config(1, 28, 2, 0.25));
  generator->to(kDevice);
  critic->to(kDevice);
  generator->eval();
  const torch::Tensor z = torch::randn({3, 100}).to(kDevice);
  const torch::Tensor classes = classes_on_device({1, 0, 1});
  LayerTape tape;
  const torch::Tensor images = generator->forward_recorded(z, classes, tape);
  EXPECT_TRUE(tape.complete()) << tape.reason();
  EXPECT_TRUE(torch::equal(images, generator->forward(z, classes)));
  std::vector<TapedLayerKind> kinds;
  std::set<const c10::TensorImpl*> recorded;
  for (const TapedLayer& layer : tape.layers()) {
    kinds.push_back(layer.kind);
    for (const auto& p : layer.module->parameters(/*recurse=*/false)) recorded.insert(p.unsafeGetTensorImpl());
  }
  EXPECT_EQ(kinds, (std::vector<TapedLayerKind>{TapedLayerKind::Linear, TapedLayerKind::BatchNorm2d,
                                                TapedLayerKind::ConvTranspose2d, TapedLayerKind::BatchNorm2d,
                                                TapedLayerKind::ConvTranspose2d}));
  for (const auto& item : generator->named_parameters())
    EXPECT_TRUE(recorded.count(item.value().unsafeGetTensorImpl())) << item.key();
  // In training mode BatchNorm mixes the samples: the tape says so.
  generator->train();
  LayerTape training;
  generator->forward_recorded(z, classes, training);
  EXPECT_FALSE(training.complete());

  LayerTape critic_tape;
  const CriticOutput recorded_out = critic->forward_recorded(images, classes, critic_tape);
  const CriticOutput out = critic->forward(images, classes);
  EXPECT_TRUE(critic_tape.complete()) << critic_tape.reason();
  EXPECT_EQ(critic_tape.layers().size(), 4u);
  EXPECT_TRUE(torch::equal(recorded_out.score, out.score));
  EXPECT_TRUE(torch::equal(recorded_out.aux_logits, out.aux_logits));
}

TEST(ConditionalGan, BadClassesAndConfigsAreReportedByName) {
  ConditionalGenerator empty(gan_config(1, 28, 0, 0.25));
  const torch::Tensor z = torch::randn({2, 100});
  expect_error([&] { empty->forward(z, torch::tensor({0, 0}, torch::kInt64)); },
               {"no class slot yet", "add_class_slot()"});
  empty->add_class_slot();
  EXPECT_EQ(empty->forward(z, torch::tensor({0, 0}, torch::kInt64)).size(0), 2);
  expect_error([&] { empty->forward(z, torch::tensor({0, 1}, torch::kInt64)); },
               {"class 1 is outside the 1 class slots"});
  expect_error([&] { empty->forward(z, torch::tensor({0}, torch::kInt64)); }, {"one class per noise row (2)"});
  expect_error([&] { empty->forward(torch::randn({2, 99}), torch::tensor({0, 0}, torch::kInt64)); },
               {"ConditionalGenerator: noise", "100 entries in dimension 1"});
  ConditionalCritic critic(gan_config(3, 32, 1, 0.25));
  expect_error([&] { critic->forward(torch::rand({2, 1, 28, 28}), torch::tensor({0, 0}, torch::kInt64)); },
               {"expected images N x 3 x 32 x 32"});
  expect_error([&] { ConditionalGenerator(gan_config(1, 30, 1)); }, {"multiple of 4", "30"});
  expect_error([&] { ConditionalCritic(gan_config(0, 28, 1)); }, {"channels must be positive"});
  expect_error([&] { ConditionalGenerator(gan_config(1, 28, 1, 0.0)); }, {"width"});
}

// ---------------------------------------------------------------- VAE

TEST(TaskVae, KlTermIsTheClosedForm) {
  // KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j):
  // (mu 0, 0; var 1, 4): 1/2 (0 + 0 + (4 - 1 - ln 4)) = 3/2 - ln 2; (mu 1, -2; var 1, 1): 1/2 (1 + 4) = 5/2.
  const torch::Tensor mu = torch::tensor({0.0, 0.0, 1.0, -2.0}, torch::kFloat64).view({2, 2});
  const torch::Tensor logvar = torch::tensor({0.0, std::log(4.0), 0.0, 0.0}, torch::kFloat64).view({2, 2});
  const torch::Tensor kl = gaussian_kl(mu, logvar);
  EXPECT_NEAR(kl[0].item<double>(), 1.5 - std::log(2.0), 1e-12);
  EXPECT_NEAR(kl[1].item<double>(), 2.5, 1e-12);
}

TEST(TaskVae, ElboOfAHandSetModelIsWorkedOutByHand) {
  // Task 0's mu and logvar layers output their biases (1, -2) and (0, ln 4)
  // whatever the image; the decoder's last layer outputs logits 0 (p = 1/2)
  // whatever the code. Reconstruction: -(x ln 1/2 + (1 - x) ln 1/2) = ln 2 per
  // pixel, 784 ln 2; KL: 1/2 (1 + 4 + 0 + (4 - 1 - ln 4)) = 4 - ln 2.
  torch::manual_seed(7);
  TaskVae vae(vae_config(1));
  {
    torch::NoGradGuard no_grad;
    auto named = vae->named_parameters();
    for (const char* name : {"tasks.0.mu.weight", "tasks.0.logvar.weight", "decoder.deconv2.weight", "decoder.deconv2.bias"})
      named[name].zero_();
    named["tasks.0.mu.bias"].copy_(torch::tensor({1.0, -2.0}));
    named["tasks.0.logvar.bias"].copy_(torch::tensor({0.0, std::log(4.0)}));
  }
  vae->to(kDevice);
  const torch::Tensor images = torch::rand({3, 1, 28, 28}).to(kDevice);
  const VaeLoss loss = vae->elbo_loss(images, 0);
  EXPECT_NEAR(loss.reconstruction.item<double>(), 784 * std::log(2.0), 1e-3);
  EXPECT_NEAR(loss.kl.item<double>(), 4.0 - std::log(2.0), 1e-5);
  EXPECT_NEAR(loss.loss.item<double>(), 783 * std::log(2.0) + 4.0, 1e-3);
}

TEST(TaskVae, ElboIsBinaryCrossEntropySummedOverPixelsPlusKlMeanOverTheBatch) {
  torch::manual_seed(8);
  TaskVae vae(vae_config(2));
  vae->to(kDevice);
  const torch::Tensor images = torch::rand({4, 1, 28, 28}).to(kDevice);
  const torch::Tensor eps = torch::randn({4, 2}).to(kDevice);
  const VaeLoss loss = vae->elbo_loss_with_noise(images, 1, eps);
  // The same from the parts, with the sigmoid's probabilities.
  const TaskVaeImpl::Encoding encoding = vae->encode(images, 1);
  const torch::Tensor p = vae->decode(encoding.mu + (0.5 * encoding.logvar).exp() * eps, 1);
  const torch::Tensor bce = -(images * p.log() + (1 - images) * (1 - p).log()).sum({1, 2, 3}).mean();
  const torch::Tensor kl = (0.5 * (encoding.mu.pow(2) + encoding.logvar.exp() - 1 - encoding.logvar).sum(1)).mean();
  EXPECT_NEAR(loss.reconstruction.item<double>(), bce.item<double>(), 1e-3);
  EXPECT_NEAR(loss.kl.item<double>(), kl.item<double>(), 1e-5);
  EXPECT_NEAR(loss.loss.item<double>(), (bce + kl).item<double>(), 1e-3);
  // An explicit generator gives the draw it makes.
  if (kDevice.is_cpu()) {
    const VaeLoss drawn = vae->elbo_loss(images, 1, at::detail::createCPUGenerator(9));
    const torch::Tensor same = torch::randn({4, 2}, at::detail::createCPUGenerator(9), torch::TensorOptions());
    EXPECT_TRUE(torch::equal(drawn.loss, vae->elbo_loss_with_noise(images, 1, same).loss));
  }
}

TEST(TaskVae, AddTaskLeavesOldTasksUnchangedAndNamesStable) {
  torch::manual_seed(9);
  TaskVae vae(vae_config(1));
  vae->to(kDevice);
  const std::vector<std::string> before = names(*vae);
  EXPECT_EQ(before, (std::vector<std::string>{
                        "encoder.conv1.weight", "encoder.conv1.bias", "encoder.conv2.weight", "encoder.conv2.bias",
                        "encoder.fc.weight", "encoder.fc.bias", "decoder.fc.weight", "decoder.fc.bias",
                        "decoder.deconv1.weight", "decoder.deconv1.bias", "decoder.deconv2.weight",
                        "decoder.deconv2.bias", "tasks.0.mu.weight", "tasks.0.mu.bias", "tasks.0.logvar.weight",
                        "tasks.0.logvar.bias", "tasks.0.latent_to_hidden.weight", "tasks.0.latent_to_hidden.bias"}));
  // encoder 32*16 + 32 + 64*32*16 + 64 + 16*3136 + 16; decoder 3136*16 + 3136 + 64*32*16 + 32 + 32*16 + 1;
  // task 2*(2*16 + 2) + 2*16 + 16.
  EXPECT_EQ(count(*vae), (544 + 32832 + 50192) + (53312 + 32800 + 513) + (68 + 48));
  const torch::Tensor images = torch::rand({3, 1, 28, 28}).to(kDevice);
  const torch::Tensor eps = torch::randn({3, 2}).to(kDevice);
  const torch::Tensor old_loss = vae->elbo_loss_with_noise(images, 0, eps).loss;
  const torch::Tensor old_sample = vae->sample(2, 0, 11);

  vae->add_task();
  EXPECT_EQ(vae->tasks(), 2);
  const std::vector<std::string> after = names(*vae);
  ASSERT_EQ(after.size(), before.size() + 6);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin()));  // old names first, in the same order
  EXPECT_EQ(after.back(), "tasks.1.latent_to_hidden.bias");
  for (const auto& p : vae->parameters()) EXPECT_EQ(p.device(), kDevice);
  EXPECT_TRUE(torch::equal(vae->elbo_loss_with_noise(images, 0, eps).loss, old_loss));
  EXPECT_TRUE(torch::equal(vae->sample(2, 0, 11), old_sample));
  EXPECT_FALSE(torch::equal(vae->elbo_loss_with_noise(images, 1, eps).loss, old_loss));
  expect_error([&] { vae->elbo_loss(images, 2); }, {"task 2 has no latent layers", "2 tasks"});
}

TEST(TaskVae, GradientsReachTheSharedLayersAndOnlyTheTrainedTasksLayers) {
  torch::manual_seed(10);
  VaeConfig config = vae_config(2);
  config.channels = 3;
  config.image_size = 32;
  TaskVae vae(config);
  vae->to(kDevice);
  const torch::Tensor images = torch::rand({4, 3, 32, 32}).to(kDevice);
  const VaeLoss loss = vae->elbo_loss(images, 1);
  EXPECT_EQ(vae->decode(torch::randn({4, 2}).to(kDevice), 1).sizes(), torch::IntArrayRef({4, 3, 32, 32}));
  loss.loss.backward();
  for (const auto& item : vae->named_parameters()) {
    if (item.key().rfind("tasks.0.", 0) == 0) {
      EXPECT_FALSE(item.value().grad().defined()) << item.key();
      continue;
    }
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().max().item<double>(), 0.0) << item.key();
  }
}

TEST(TaskVae, SamplingWithTheSameSeedGivesTheSameImages) {
  torch::manual_seed(11);
  TaskVae vae(vae_config(2));
  vae->to(kDevice);
  const torch::Tensor a = vae->sample(5, 1, 42);
  torch::rand({100});  // the default generator plays no part
  const torch::Tensor b = vae->sample(5, 1, 42);
  EXPECT_EQ(a.sizes(), torch::IntArrayRef({5, 1, 28, 28}));
  EXPECT_EQ(a.device(), kDevice);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, vae->sample(5, 1, 43)));
  EXPECT_FALSE(torch::equal(a, vae->sample(5, 0, 42)));
  EXPECT_GE(a.min().item<double>(), 0.0);
  EXPECT_LE(a.max().item<double>(), 1.0);
  EXPECT_FALSE(a.requires_grad());
  // The seed is a CPU generator's: the same noise as an explicit one.
  EXPECT_TRUE(torch::equal(a, vae->sample(5, 1, at::detail::createCPUGenerator(42))));
}

TEST(TaskVae, IdenticallySeededConstructionsAndGrowthAreIdentical) {
  VaeConfig config = vae_config(1);
  config.seed = 3;
  torch::manual_seed(12);
  TaskVae a(config);
  torch::manual_seed(12);
  TaskVae b(config);
  expect_same_named_parameters(*a, *b);
  // Task layers come from (seed, task): not from the default generator, which growth leaves alone.
  torch::manual_seed(200);
  a->add_task();
  const torch::Tensor after_growth = torch::rand({4});
  torch::manual_seed(200);
  EXPECT_TRUE(torch::equal(after_growth, torch::rand({4})));
  b->to(kDevice);
  b->add_task();
  expect_same_named_parameters(*a, *b);
  // Task 0's layers too come from the seed: constructing with one task or adding it gives the same.
  torch::manual_seed(13);
  config.tasks = 0;
  TaskVae c(config);
  c->add_task();
  EXPECT_TRUE(torch::equal(c->named_parameters()["tasks.0.mu.weight"], a->named_parameters()["tasks.0.mu.weight"]));
  // Another seed, other task layers.
  config.seed = 4;
  TaskVae d(config);
  d->add_task();
  EXPECT_FALSE(torch::equal(d->named_parameters()["tasks.0.mu.weight"], a->named_parameters()["tasks.0.mu.weight"]));
}

TEST(TaskVae, DecoderTapeRecordsEveryDecoderLayer) {
  torch::manual_seed(14);
  TaskVae vae(vae_config(2));
  vae->to(kDevice);
  const torch::Tensor z = torch::randn({3, 2}).to(kDevice);
  LayerTape tape;
  const torch::Tensor recorded = vae->decode_logits_recorded(z, 1, tape);
  EXPECT_TRUE(tape.complete()) << tape.reason();
  EXPECT_EQ(tape.layers().size(), 4u);  // latent_to_hidden, decoder.fc, deconv1, deconv2
  EXPECT_TRUE(torch::equal(recorded, vae->decode_logits(z, 1)));
}
