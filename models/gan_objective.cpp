#include "models/gan_objective.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

#include "models/task_classes.h"
#include "runtime/error.h"
#include "runtime/data/sampler.h"

namespace clx {
namespace {

constexpr uint64_t kEpochDrawTag = 0x6a40;
constexpr uint64_t kFidSampleTag = 0x6f1d;
constexpr uint64_t kImportanceNoiseTag = 0x61a9;

namespace F = torch::nn::functional;

GanNetImpl& gan_of(ContinualNet& model) { return as_gan_net(model, "the GAN objective trains model.arch=gan only"); }

void copy_generator(const ConditionalGeneratorImpl& from, ConditionalGeneratorImpl& to) {
  torch::NoGradGuard no_grad;
  const auto source = from.parameters(), target = to.parameters();
  for (size_t k = 0; k < source.size(); ++k) target[k].copy_(source[k]);
}

torch::Tensor cross_entropy_per_sample(const torch::Tensor& logits, const torch::Tensor& classes) {
  return F::cross_entropy(logits, classes, F::CrossEntropyFuncOptions().reduction(torch::kNone));
}

}  // namespace

void validate_gan_objective_config(const GanObjectiveConfig& config) {
  validate_generation_config(config.generation);
  if (!(config.gradient_penalty >= 0.0) || !std::isfinite(config.gradient_penalty))
    throw Error("generation.gradient_penalty: must be a finite value >= 0, got " + std::to_string(config.gradient_penalty));
  if (!(config.aux_weight >= 0.0) || !std::isfinite(config.aux_weight))
    throw Error("generation.aux_weight: must be a finite value >= 0, got " + std::to_string(config.aux_weight));
  if (!(config.critic_lr > 0.0) || !std::isfinite(config.critic_lr))
    throw Error("generation.critic_lr: must be a finite value > 0, got " + std::to_string(config.critic_lr));
  if (!(config.replay_ratio >= 0.0 && config.replay_ratio <= 1.0))
    throw Error("dgr.ratio: must be in (0, 1] (0: 1/t), got " + std::to_string(config.replay_ratio));
}

GanObjective::GanObjective(GanObjectiveConfig config)
    : GenerationObjective((validate_gan_objective_config(config), config.generation)),
      gan_config_(std::move(config)),
      critic_optimizer_(gan_config_.critic_lr, {0.5, 0.9},  // WGAN-GP's betas
                        "the GAN's training diverged; lower generation.critic_lr or train.lr, or check the data") {}

void GanObjective::check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const {
  const auto* net = dynamic_cast<const GanNetImpl*>(&model);
  if (net == nullptr) throw Error("model.arch: the GAN objective trains model.arch=gan only");
  if (heads != HeadLayout::Single)
    throw Error("model.heads: the conditional GAN is conditioned on the stream's classes (single); got " +
                to_string(heads));
  if (net->config().classes != stream.num_classes)
    throw Error("model: the GAN has " + std::to_string(net->config().classes) + " class slots, the stream has " +
                std::to_string(stream.num_classes) + " classes");
  check_image_shape(stream);
}

void GanObjective::prepare(const ContinualNet& model, const TaskStream& stream) {
  if (critic_) return;  // prepared already: keep the critic (and its weights)
  const auto& net = dynamic_cast<const GanNetImpl&>(model);
  model_ = &net;
  critic_ = ConditionalCritic(net.config());
  critic_->to(net.generator->parameters().front().device());
  if (gan_config_.replay) {
    // Replaced by the generator's weights before task 2; a copy now, so the checkpoint's tensors exist from the start.
    previous_generator_ = ConditionalGenerator(net.config());
    previous_generator_->to(net.generator->parameters().front().device());
    copy_generator(*net.generator, *previous_generator_);
  }
  task_slots_ = classes_of_tasks(stream, "generation");
}

void GanObjective::begin_stage(const ObjectiveStage& stage) {
  stage_ = stage;
  // Every rank starts the run from rank 0's critic (as the trainer does with the model).
  critic_optimizer_.begin_stage(*critic_, stage);
  // Replay: the generator as the previous task left it (a resumed stage has it from its checkpoint).
  if (gan_config_.replay && stage.stage > 0 && !stage.resumed) copy_generator(*model_->generator, *previous_generator_);
}

double GanObjective::new_data_weight(int stage) const {
  return gan_config_.replay_ratio > 0.0 ? gan_config_.replay_ratio : 1.0 / static_cast<double>(stage + 1);
}

GanObjective::Replay GanObjective::replay_for(int stage, const torch::Tensor& positions) {
  std::vector<int64_t> earlier;
  for (int task = 0; task < stage; ++task) earlier.insert(earlier.end(), task_slots(task).begin(), task_slots(task).end());
  const torch::Tensor slots = torch::tensor(earlier, torch::kInt64).to(positions.device());
  const torch::Tensor pick = (draws_.replay_pick.index_select(0, positions) * static_cast<double>(earlier.size()))
                                 .to(torch::kInt64)
                                 .clamp_max(static_cast<int64_t>(earlier.size()) - 1);
  Replay replay;
  replay.classes = slots.index_select(0, pick);
  torch::NoGradGuard no_grad;
  previous_generator_->eval();
  replay.images = previous_generator_->forward(draws_.replay_noise.index_select(0, positions), replay.classes);
  return replay;
}

void GanObjective::begin_epoch(uint64_t epoch_seed, int64_t stage_samples) {
  epoch_seed_ = epoch_seed;
  stage_samples_ = stage_samples;
  draws_ = EpochDraws{};
}

GanObjective::EpochDraws GanObjective::epoch_draws(uint64_t epoch_seed, int64_t samples, int64_t noise_dim,
                                                   bool replay) {
  at::Generator generator = at::detail::createCPUGenerator(mix_seed({epoch_seed, kEpochDrawTag}));
  EpochDraws draws;
  draws.critic_noise = torch::randn({samples, noise_dim}, generator, torch::kFloat32);
  draws.generator_noise = torch::randn({samples, noise_dim}, generator, torch::kFloat32);
  draws.mixing = torch::rand({samples}, generator, torch::kFloat32);
  if (replay) {  // after the others: a run without replay draws the same values
    draws.replay_noise = torch::randn({samples, noise_dim}, generator, torch::kFloat32);
    draws.replay_pick = torch::rand({samples}, generator, torch::kFloat32);
    draws.replay_critic_noise = torch::randn({samples, noise_dim}, generator, torch::kFloat32);
    draws.replay_generator_noise = torch::randn({samples, noise_dim}, generator, torch::kFloat32);
    draws.replay_mixing = torch::rand({samples}, generator, torch::kFloat32);
  }
  return draws;
}

torch::Tensor GanObjective::critic_step(ConditionalGeneratorImpl& generator, const torch::Tensor& real,
                                        const torch::Tensor& classes, const torch::Tensor& weights,
                                        const torch::Tensor& critic_noise, const torch::Tensor& mixing,
                                        const TrainingBatch& batch) {
  critic_->train();
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(batch.device);
  torch::Tensor loss_sum, wasserstein_sum = torch::zeros({}, options);
  if (real.defined()) {
    torch::Tensor fake;
    {
      torch::NoGradGuard no_grad;
      fake = generator.forward(critic_noise, classes);
    }
    const CriticOutput on_real = critic_->forward(real, classes);
    const CriticOutput on_fake = critic_->forward(fake, classes);
    const torch::Tensor penalty = gradient_penalty_per_sample(*critic_, real, fake, mixing, classes);
    const torch::Tensor per_sample = on_fake.score - on_real.score + gan_config_.gradient_penalty * penalty +
                                     gan_config_.aux_weight * cross_entropy_per_sample(on_real.aux_logits, classes);
    loss_sum = (per_sample * weights).sum().to(torch::kFloat32);
    // The estimate over the new data's rows (the first ones; replayed rows follow).
    const int64_t new_rows = batch.inputs.size(0);
    wasserstein_sum = (on_real.score - on_fake.score).narrow(0, 0, new_rows).sum().detach().to(torch::kFloat32);
  }
  critic_optimizer_.step(loss_sum, batch.global_count);
  return wasserstein_sum;
}

LocalLoss GanObjective::local_loss(ContinualNet& model, const TrainingBatch& batch, const std::function<int64_t(int)>&) {
  ConditionalGeneratorImpl& generator = *gan_of(model).generator;
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(batch.device);
  LocalLoss result{torch::zeros({}, options), torch::zeros({}, options), {}};
  if (!draws_.critic_noise.defined()) {
    draws_ = epoch_draws(epoch_seed_, stage_samples_, generator.config().noise_dim, gan_config_.replay);
    for (torch::Tensor* draw : {&draws_.critic_noise, &draws_.generator_noise, &draws_.mixing, &draws_.replay_noise,
                                &draws_.replay_pick, &draws_.replay_critic_noise, &draws_.replay_generator_noise,
                                &draws_.replay_mixing})
      if (draw->defined()) *draw = draw->to(batch.device);
  }
  // This rank's rows: its samples, then (replay, from task 2 on) each sample's replayed partner.
  torch::Tensor real, classes, weights, critic_noise, generator_noise, mixing;
  if (batch.inputs.defined()) {
    const torch::Tensor positions = batch.input_positions.to(batch.device);
    real = batch.inputs * 2 - 1;  // the generator's tanh range
    classes = batch.labels.size() == 1 ? batch.labels[0] : torch::cat(batch.labels);
    critic_noise = draws_.critic_noise.index_select(0, positions);
    generator_noise = draws_.generator_noise.index_select(0, positions);
    mixing = draws_.mixing.index_select(0, positions);
    weights = torch::ones({real.size(0)}, real.options());
    if (gan_config_.replay && stage_.stage > 0) {
      const double r = new_data_weight(stage_.stage);
      const Replay replay = replay_for(stage_.stage, positions);
      real = torch::cat({real, replay.images.to(real.dtype())});
      classes = torch::cat({classes, replay.classes});
      weights = torch::cat({torch::full({positions.size(0)}, r, weights.options()),
                            torch::full({positions.size(0)}, 1.0 - r, weights.options())});
      critic_noise = torch::cat({critic_noise, draws_.replay_critic_noise.index_select(0, positions)});
      generator_noise = torch::cat({generator_noise, draws_.replay_generator_noise.index_select(0, positions)});
      mixing = torch::cat({mixing, draws_.replay_mixing.index_select(0, positions)});
    }
  }
  // Every rank steps the critic, with samples or not: its all-reduce is a collective.
  const torch::Tensor wasserstein_sum = critic_step(generator, real, classes, weights, critic_noise, mixing, batch);
  if (!real.defined()) return result;
  FrozenParameters frozen(*critic_);
  const torch::Tensor fake = generator.forward(generator_noise, classes);
  const CriticOutput on_fake = critic_->forward(fake, classes);
  const torch::Tensor per_sample =
      -on_fake.score + gan_config_.aux_weight * cross_entropy_per_sample(on_fake.aux_logits, classes);
  result.loss_sum = (per_sample * weights).sum().to(torch::kFloat32);
  result.statistic_sum = wasserstein_sum;
  return result;
}

NamedTensors GanObjective::trained_state() {
  if (!critic_) return {};
  NamedTensors state;
  for (auto& [name, tensor] : parameters_and_buffers(*critic_)) state.emplace_back("critic." + name, tensor);
  if (previous_generator_)
    for (auto& [name, tensor] : parameters_and_buffers(*previous_generator_))
      state.emplace_back("previous_generator." + name, tensor);
  return state;
}

torch::Tensor GanObjective::position_classes(int task, const torch::Tensor& positions) const {
  return classes_at_positions(task_slots(task), positions);
}

torch::Tensor GanObjective::scoring_images(ContinualNet& model, const TaskStream&, int task, uint64_t seed) {
  ConditionalGeneratorImpl& generator = *gan_of(model).generator;
  const int64_t n = config_.fid_samples;
  at::Generator draw = at::detail::createCPUGenerator(mix_seed({seed, kFidSampleTag, static_cast<uint64_t>(task)}));
  const torch::Tensor z = torch::randn({n, generator.config().noise_dim}, draw, torch::kFloat32);
  const torch::Tensor classes = position_classes(task, torch::arange(n, torch::kInt64));
  const auto options = generator.parameters().front().options();
  // In chunks: a batch's activations, not all n images', exist at a time.
  constexpr int64_t kChunk = 500;
  std::vector<torch::Tensor> images;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t count = std::min(kChunk, n - start);
    images.push_back(generator.forward(z.narrow(0, start, count).to(options),
                                       classes.narrow(0, start, count).to(options.device())));
  }
  return (torch::cat(images).to(torch::kFloat32) + 1) / 2;
}

Objective::GeneratedForward GanObjective::generated_output(ContinualNet& model, uint64_t seed) {
  return [this, &model, seed](int task, const torch::Tensor& positions) {
    ConditionalGeneratorImpl& generator = *gan_of(model).generator;
    const auto options = generator.parameters().front().options();
    const torch::Tensor z =
        per_position_noise(seed, kImportanceNoiseTag, task, positions, generator.config().noise_dim).to(options);
    return generator.forward(z, position_classes(task, positions).to(options.device())).flatten(1);
  };
}

Objective::GeneratedForward GanObjective::generated_logits(ContinualNet& model, uint64_t seed) {
  const GeneratedForward images = generated_output(model, seed);
  return [this, images, &model](int task, const torch::Tensor& positions) {
    const GanConfig& config = gan_of(model).config();
    const torch::Tensor flat = images(task, positions);
    // The critic's auxiliary classifier is a fixed function here: gradients flow through it, not into it.
    FrozenParameters frozen(*critic_);
    return critic_->classify(flat.view({flat.size(0), config.channels, config.image_size, config.image_size}));
  };
}

}  // namespace clx
