#include "models/dgm_objective.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <filesystem>
#include <sstream>

#include "models/generation_objective.h"
#include "models/task_classes.h"
#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"
#include "runtime/png.h"
#include "runtime/text.h"

namespace clx {
namespace {

namespace F = torch::nn::functional;

constexpr uint64_t kEpochDrawTag = 0x64e9;
constexpr uint64_t kReplayTag = 0x6472;
constexpr uint64_t kCriticResetTag = 0x6463;
constexpr uint64_t kSampleGridTag = 0x6467;
constexpr uint64_t kFidSampleTag = 0x6466;

DgmNetImpl& dgm_of(ContinualNet& model) { return as_dgm_net(model, "the DGM objective trains model.arch=dgm only"); }

}  // namespace

void validate_dgm_objective_config(const DgmObjectiveConfig& config) {
  if (!(config.gradient_penalty >= 0.0) || !std::isfinite(config.gradient_penalty))
    throw Error("dgm.gradient_penalty: must be a finite value >= 0, got " + std::to_string(config.gradient_penalty));
  if (!(config.critic_lr > 0.0) || !std::isfinite(config.critic_lr))
    throw Error("dgm.critic_lr: must be a finite value > 0, got " + std::to_string(config.critic_lr));
}

DgmObjective::DgmObjective(DgmObjectiveConfig config)
    : config_((validate_dgm_objective_config(config), std::move(config))),
      critic_optimizer_(config_.critic_lr, {0.5, 0.999},  // the reference's betas
                        "DGM's discriminator diverged; lower dgm.critic_lr or train.lr") {
  if (!config_.fid.fid_features.empty()) {
    GenerationConfig fid = config_.fid;
    fid.samples_dir.clear();
    fid_ = std::make_unique<FidScorer>(fid, *this);
  }
}

DgmObjective::FidScorer::FidScorer(GenerationConfig config, const DgmObjective& owner)
    : GenerationObjective(std::move(config)), owner_(owner) {}

LocalLoss DgmObjective::FidScorer::local_loss(ContinualNet&, const TrainingBatch&, const std::function<int64_t(int)>&) {
  throw Error("internal: DGM's FID scorer does not train");
}

torch::Tensor DgmObjective::FidScorer::scoring_images(ContinualNet& model, const TaskStream&, int task, uint64_t seed) {
  DgmNetImpl& generator = dgm_of(model);
  const auto options = generator.parameters().front().options();
  const int64_t n = config_.fid_samples;
  at::Generator draw = at::detail::createCPUGenerator(mix_seed({seed, kFidSampleTag, static_cast<uint64_t>(task)}));
  const torch::Tensor z = torch::randn({n, generator.config().noise_dim}, draw, torch::kFloat32);
  const torch::Tensor classes = owner_.classes_of(task, torch::arange(n, torch::kInt64));
  constexpr int64_t kChunk = 500;  // a chunk's activations at a time
  std::vector<torch::Tensor> images;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t count = std::min(kChunk, n - start);
    images.push_back(generator.generate(z.narrow(0, start, count).to(options),
                                        classes.narrow(0, start, count).to(options.device()), task));
  }
  return (torch::cat(images).to(torch::kFloat32) + 1) / 2;
}

ScoreKind DgmObjective::score_kind() const {
  ScoreKind kind;  // accuracy, as a classifier's
  kind.statistic = "wasserstein estimate";
  kind.statistic_is_fraction = false;
  return kind;
}

void DgmObjective::check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const {
  const auto* net = dynamic_cast<const DgmNetImpl*>(&model);
  if (net == nullptr) throw Error("model.arch: the DGM objective trains model.arch=dgm only");
  if (heads != HeadLayout::Single)
    throw Error("model.heads: DGM is class-incremental, its classifier answers over every class seen (single); got " +
                to_string(heads));
  const DgmNetConfig& config = net->config();
  if (config.classes != stream.num_classes || config.tasks != static_cast<int64_t>(stream.size()))
    throw Error("model: DGM's generator has " + std::to_string(config.classes) + " classes and " +
                std::to_string(config.tasks) + " tasks, the stream " + std::to_string(stream.num_classes) + " and " +
                std::to_string(stream.size()));
  const std::vector<int64_t> shape{config.channels, config.image_size, config.image_size};
  if (stream.input_shape != shape)
    throw Error("data: DGM generates " + c10::str(c10::IntArrayRef(shape)) + " images, the stream's are " +
                c10::str(c10::IntArrayRef(stream.input_shape)));
  if (fid_) fid_->check_shape(stream);
}

void DgmObjective::prepare(const ContinualNet& model, const TaskStream& stream) {
  if (critic_) return;  // prepared already: keep the critic
  const auto& net = dynamic_cast<const DgmNetImpl&>(model);
  GanConfig critic_config;
  critic_config.channels = net.config().channels;
  critic_config.image_size = net.config().image_size;
  critic_config.classes = stream.num_classes;
  critic_ = ConditionalCritic(critic_config);
  critic_->to(net.parameters().front().device());
  task_classes_ = classes_of_tasks(stream, "dgm");
}

void DgmObjective::begin_stage(const ObjectiveStage& stage) {
  stage_ = stage;
  // The reference redraws its discriminator before every task after the first; a
  // stage resumed from inside has its critic from the checkpoint.
  if (config_.reset_critic && stage.stage > 0 && !stage.resumed) {
    at::Generator generator =
        at::detail::createCPUGenerator(mix_seed({config_.seed, kCriticResetTag, static_cast<uint64_t>(stage.stage)}));
    reinitialise_default(*critic_, generator);
  }
  critic_optimizer_.begin_stage(*critic_, stage);
}

void DgmObjective::begin_epoch(uint64_t epoch_seed, int64_t stage_samples) {
  epoch_seed_ = epoch_seed;
  stage_samples_ = stage_samples;
  critic_noise_ = generator_noise_ = mixing_ = torch::Tensor();
}

torch::Tensor DgmObjective::classes_of(int task, const torch::Tensor& positions) const {
  return classes_at_positions(task_classes(task), positions);
}

DgmObjective::Replay DgmObjective::replay(DgmNetImpl& generator, int stage, int task,
                                          const torch::Tensor& positions) const {
  torch::NoGradGuard no_grad;
  const auto options = generator.parameters().front().options();
  const torch::Tensor z = GenerationObjective::per_position_noise(
      mix_seed({config_.seed, kReplayTag, static_cast<uint64_t>(stage)}), kReplayTag, task, positions,
      generator.config().noise_dim);
  Replay replay;
  replay.classes = classes_of(task, positions).to(options.device());
  replay.images = generator.generate(z.to(options), replay.classes, task);
  return replay;
}

torch::Tensor DgmObjective::chunk_of(const torch::Tensor& positions, int64_t image, int64_t chunks) {
  return (positions + image).remainder(chunks);
}

LocalLoss DgmObjective::local_loss(ContinualNet& model, const TrainingBatch& batch, const std::function<int64_t(int)>&) {
  DgmNetImpl& generator = dgm_of(model);
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(batch.device);
  LocalLoss result{torch::zeros({}, options), torch::zeros({}, options), {}};
  const int task = batch.group_tasks.empty() ? stage_.stage : static_cast<int>(batch.group_tasks.at(0));
  if (!critic_noise_.defined()) {
    at::Generator draw = at::detail::createCPUGenerator(mix_seed({epoch_seed_, kEpochDrawTag}));
    const int64_t noise = generator.config().noise_dim;
    critic_noise_ = torch::randn({stage_samples_, noise}, draw, torch::kFloat32).to(batch.device);
    generator_noise_ = torch::randn({stage_samples_, noise}, draw, torch::kFloat32).to(batch.device);
    mixing_ = torch::rand({stage_samples_}, draw, torch::kFloat32).to(batch.device);
  }
  const bool has_rows = batch.inputs.defined() && batch.inputs.size(0) > 0;
  torch::Tensor positions, real, classes;
  if (has_rows) {
    positions = batch.input_positions.to(batch.device);
    real = batch.inputs * 2 - 1;  // the generator's tanh range
    classes = batch.labels.size() == 1 ? batch.labels[0] : torch::cat(batch.labels);
  }
  critic_->train();

  // The classifier: t + 1 steps, chunk k holding image g of position p when (p + g) mod (t + 1) = k.
  const int64_t chunks = task + 1;
  std::vector<torch::Tensor> images, labels, chunk_ids;
  if (has_rows) {
    images.push_back(real);
    labels.push_back(classes);
    chunk_ids.push_back(chunk_of(positions, 0, chunks));
    for (int earlier = 0; earlier < task; ++earlier) {
      const Replay replayed = replay(generator, stage_.stage, earlier, positions);
      images.push_back(replayed.images.to(real.dtype()));
      labels.push_back(replayed.classes);
      chunk_ids.push_back(chunk_of(positions, earlier + 1, chunks));
    }
  }
  const torch::Tensor all_images = has_rows ? torch::cat(images) : torch::Tensor();
  const torch::Tensor all_labels = has_rows ? torch::cat(labels) : torch::Tensor();
  const torch::Tensor all_chunks = has_rows ? torch::cat(chunk_ids) : torch::Tensor();
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    torch::Tensor loss_sum;
    if (has_rows) {
      const torch::Tensor rows = all_chunks.eq(chunk).nonzero().view(-1);
      if (rows.numel() > 0)
        loss_sum = F::cross_entropy(critic_->classify(all_images.index_select(0, rows)), all_labels.index_select(0, rows),
                                    F::CrossEntropyFuncOptions().reduction(torch::kSum));
    }
    // Each chunk holds one image per position of the global batch.
    critic_optimizer_.step(loss_sum, batch.global_count);
  }

  // The critic: real against generated images of this task's classes.
  torch::Tensor critic_loss, wasserstein_sum = torch::zeros({}, options);
  if (has_rows) {
    torch::Tensor fake;
    {
      torch::NoGradGuard no_grad;
      fake = generator.generate(critic_noise_.index_select(0, positions), classes, task);
    }
    const torch::Tensor on_real = critic_->forward(real, classes).score;
    const torch::Tensor on_fake = critic_->forward(fake, classes).score;
    const torch::Tensor penalty =
        gradient_penalty_per_sample(*critic_, real, fake, mixing_.index_select(0, positions), classes);
    critic_loss = (on_fake - on_real + config_.gradient_penalty * penalty).sum().to(torch::kFloat32);
    wasserstein_sum = (on_real - on_fake).sum().detach().to(torch::kFloat32);
  }
  critic_optimizer_.step(critic_loss, batch.global_count);
  if (!has_rows) return result;

  // The generator: fool the critic just stepped (its parameters take no gradient).
  FrozenParameters frozen(*critic_);
  const torch::Tensor generated = generator.generate(generator_noise_.index_select(0, positions), classes, task);
  result.loss_sum = (-critic_->forward(generated, classes).score).sum().to(torch::kFloat32);
  result.statistic_sum = wasserstein_sum;
  return result;
}

std::vector<double> DgmObjective::evaluate(const EvaluationContext& context) {
  const bool was_training = critic_->is_training();
  critic_->eval();
  const std::vector<double> accuracy =
      sharded_accuracy(context, [&](int, const torch::Tensor& inputs) { return critic_->classify(inputs * 2 - 1); });
  if (was_training) critic_->train();
  if (context.comm.rank() == 0 && !config_.samples_dir.empty() && context.trained_up_to >= 0)
    write_sample_grid(dgm_of(context.model), context.trained_up_to);
  if (fid_) fid_rows_[context.trained_up_to] = fid_->evaluate(context);  // a collective: rank 0's row everywhere
  return accuracy;
}

std::string DgmObjective::state_text() const {
  // The FID rows ("fid <point> <value>..."), then the scorer's generated accuracy (lines without the prefix).
  return rows_by_point_text(fid_rows_, "fid ") + (fid_ ? fid_->state_text() : std::string());
}

void DgmObjective::load_state_text(const std::string& text) {
  fid_rows_ = parse_rows_by_point(text, "fid ");
  if (!fid_) return;
  std::istringstream lines(text);
  std::string rest;
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("fid ", 0) != 0) rest += line + "\n";
  fid_->load_state_text(rest);
}

std::vector<ResultTable> DgmObjective::result_tables() const {
  if (!fid_) return {};
  std::vector<ResultTable> tables = fid_->result_tables();
  if (!fid_rows_.empty()) tables.push_back(rows_by_point_table("fid_matrix", fid_rows_));
  return tables;
}

void DgmObjective::write_sample_grid(DgmNetImpl& generator, int trained_up_to) const {
  torch::NoGradGuard no_grad;
  const auto options = generator.parameters().front().options();
  const int64_t columns = config_.sample_columns;
  std::vector<torch::Tensor> rows;
  for (int task = 0; task <= trained_up_to; ++task)
    for (int64_t cls : task_classes(task)) {
      const torch::Tensor z = GenerationObjective::per_position_noise(mix_seed({config_.seed, kSampleGridTag}),
                                                                      kSampleGridTag, static_cast<int>(cls),
                                                                      torch::arange(columns), generator.config().noise_dim);
      const torch::Tensor classes =
          torch::full({columns}, cls, torch::TensorOptions().dtype(torch::kInt64).device(options.device()));
      rows.push_back((generator.generate(z.to(options), classes, task).to(torch::kFloat32).cpu() + 1) / 2);
    }
  std::error_code error;
  std::filesystem::create_directories(config_.samples_dir, error);
  if (error) throw Error("dgm: cannot create the sample folder " + config_.samples_dir + ": " + error.message());
  write_png((std::filesystem::path(config_.samples_dir) / ("after_task_" + std::to_string(trained_up_to + 1) + ".png"))
                .string(),
            image_grid(torch::cat(rows), static_cast<int64_t>(rows.size()), columns));
}

NamedTensors DgmObjective::trained_state() {
  if (!critic_) return {};
  NamedTensors state;
  for (auto& [name, tensor] : parameters_and_buffers(*critic_)) state.emplace_back("critic." + name, tensor);
  return state;
}

}  // namespace clx
