#include "models/vae_objective.h"

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <sstream>

#include "models/vae_net.h"
#include "runtime/collectives.h"
#include "runtime/communicator.h"
#include "runtime/error.h"
#include "runtime/fid.h"
#include "runtime/png.h"
#include "runtime/data/sampler.h"
#include "runtime/strategy.h"
#include "runtime/text.h"

namespace clx {
namespace {

constexpr uint64_t kEpochNoiseTag = 0x7ae0;
constexpr uint64_t kFidSampleTag = 0xf1d5;
constexpr uint64_t kImportanceNoiseTag = 0x1a9c;

TaskVaeImpl& vae_of(ContinualNet& model) { return *as_vae_net(model, "the VAE objective trains model.arch=vae only").vae; }

}  // namespace

void validate_vae_objective_config(const VaeObjectiveConfig& config) {
  if (config.fid_features.empty())
    throw Error("generation.fid_features: a generation run needs the FID feature file (make one with fid-features)");
  if (config.fid_samples < 2)
    throw Error("generation.fid_samples: must be at least 2 (FID needs a covariance), got " +
                std::to_string(config.fid_samples));
  if (config.sample_columns < 1)
    throw Error("generation.sample_columns: must be at least 1, got " + std::to_string(config.sample_columns));
}

VaeObjective::VaeObjective(VaeObjectiveConfig config)
    : config_(std::move(config)),
      features_((validate_vae_objective_config(config_), load_fid_features(config_.fid_features, config_.fid_checksum))) {}

ScoreKind VaeObjective::score_kind() const {
  ScoreKind kind;
  kind.name = "fid";
  kind.higher_is_better = false;
  kind.display_scale = 1.0;
  kind.statistic = "kl";
  kind.statistic_is_fraction = false;
  return kind;
}

void VaeObjective::check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const {
  const auto* net = dynamic_cast<const VaeNetImpl*>(&model);
  if (net == nullptr) throw Error("model.arch: the VAE objective trains model.arch=vae only");
  if (heads != HeadLayout::Multi)
    throw Error("model.heads: the VAE has one set of latent layers per task (multi); got " + to_string(heads));
  if (net->vae->tasks() != stream.size())
    throw Error("model: the VAE has latent layers for " + std::to_string(net->vae->tasks()) + " tasks, the stream has " +
                std::to_string(stream.size()));
  if (stream.input_shape != features_.info.image_shape)
    throw Error("generation.fid_features: " + config_.fid_features + " scores images of shape " +
                c10::str(c10::IntArrayRef(features_.info.image_shape)) + " (" + features_.info.dataset +
                "), the stream's are " + c10::str(c10::IntArrayRef(stream.input_shape)));
}

void VaeObjective::begin_epoch(uint64_t epoch_seed, int64_t stage_samples) {
  epoch_seed_ = epoch_seed;
  stage_samples_ = stage_samples;
  epoch_noise_ = torch::Tensor();
}

LocalLoss VaeObjective::local_loss(ContinualNet& model, const TrainingBatch& batch,
                                   const std::function<int64_t(int)>& head_for) {
  TaskVaeImpl& vae = vae_of(model);
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(batch.device);
  LocalLoss result{torch::zeros({}, options), torch::zeros({}, options), {}};
  if (!batch.inputs.defined()) return result;
  if (!epoch_noise_.defined()) {
    epoch_noise_ = epoch_noise(epoch_seed_, stage_samples_, vae.config().latent).to(batch.device);
  }
  int64_t offset = 0;
  for (size_t g = 0; g < batch.group_tasks.size(); ++g) {
    const int64_t n = batch.group_counts[g];
    const torch::Tensor images = batch.inputs.narrow(0, offset, n);
    const torch::Tensor eps =
        epoch_noise_.index_select(0, batch.input_positions.narrow(0, offset, n).to(batch.device));
    offset += n;
    const VaeLoss loss = vae.elbo_loss_with_noise(images, head_for(batch.group_tasks[g]), eps);
    // elbo_loss_* gives batch means; the trainer wants sums over this rank's samples.
    result.loss_sum = result.loss_sum + loss.loss.to(torch::kFloat32) * static_cast<double>(n);
    result.statistic_sum = result.statistic_sum + loss.kl.detach().to(torch::kFloat32) * static_cast<double>(n);
  }
  return result;
}

torch::Tensor VaeObjective::epoch_noise(uint64_t epoch_seed, int64_t samples, int64_t latent) {
  // One draw per training sample of the stage: sample p's noise is row p on any rank.
  at::Generator generator = at::detail::createCPUGenerator(mix_seed({epoch_seed, kEpochNoiseTag}));
  return torch::randn({samples, latent}, generator, torch::kFloat32);
}

torch::Tensor VaeObjective::importance_noise(uint64_t seed, int task, const torch::Tensor& positions, int64_t latent) {
  const torch::Tensor rows = positions.to(torch::kCPU).contiguous();
  torch::Tensor noise = torch::empty({rows.size(0), latent}, torch::kFloat32);
  for (int64_t k = 0; k < rows.size(0); ++k) {
    at::Generator generator = at::detail::createCPUGenerator(
        mix_seed({seed, kImportanceNoiseTag, static_cast<uint64_t>(task), static_cast<uint64_t>(rows.data_ptr<int64_t>()[k])}));
    noise[k].copy_(torch::randn({latent}, generator, torch::kFloat32));
  }
  return noise;
}

Objective::GeneratedForward VaeObjective::generated_output(ContinualNet& model, uint64_t seed) {
  return [&model, seed](int task, const torch::Tensor& positions) {
    TaskVaeImpl& vae = vae_of(model);
    const torch::Tensor z = importance_noise(seed, task, positions, vae.config().latent);
    return vae.decode(z.to(vae.parameters().front().options()), task).flatten(1);
  };
}

Objective::GeneratedForward VaeObjective::generated_logits(ContinualNet& model, uint64_t seed) {
  const GeneratedForward images = generated_output(model, seed);
  return [this, images](int task, const torch::Tensor& positions) {
    const torch::Tensor flat = images(task, positions);
    if (features_.device() != flat.device()) features_.to(flat.device());
    features_.model()->eval();  // the classifier is a fixed function here: gradients flow through it, not into it
    const std::vector<int64_t>& shape = features_.info.image_shape;
    return features_.model()->logits(flat.view({flat.size(0), shape[0], shape[1], shape[2]}), 0);
  };
}

torch::Tensor VaeObjective::fid_images(ContinualNet& model, int task, uint64_t seed) {
  TaskVaeImpl& vae = vae_of(model);
  return vae.sample(config_.fid_samples, task, mix_seed({seed, kFidSampleTag, static_cast<uint64_t>(task)}));
}

std::vector<double> VaeObjective::evaluate(const EvaluationContext& context) {
  const int T = static_cast<int>(context.stream.size());
  torch::Tensor row = torch::zeros({T}, torch::kFloat64);
  torch::Tensor accuracy = torch::zeros({T}, torch::kFloat64);  // generated accuracy of each task
  // A failure on rank 0 (a task without images) reaches every rank as one error.
  run_on_all_ranks(context.comm, [&] {
    if (!context.comm.is_root()) return;
    torch::NoGradGuard no_grad;
    ContinualNet& model = context.model;
    const bool was_training = model.is_training();
    model.eval();
    features_.to(context.device);
    real_statistics_.resize(T);
    std::vector<torch::Tensor> grid_rows;  // the sample grid: one row per task trained so far
    for (int task = 0; task < T; ++task) {
      if (!real_statistics_[task]) {
        const TaskData& data = context.eval_data(task);
        if (data.size() < 2)
          throw Error("generation: task " + std::to_string(task + 1) + " (" + context.stream.tasks[task].name +
                      ") has " + std::to_string(data.size()) + " evaluation image(s); FID needs at least 2");
        real_statistics_[task] = features_.statistics(data.inputs(torch::arange(data.size(), torch::kInt64)));
      }
      context.strategy.before_evaluate(model, task);
      const torch::Tensor generated = fid_images(model, task, context.seed);
      context.strategy.after_evaluate(model, task);
      row[task] = frechet_distance(features_.statistics(generated), *real_statistics_[task]);
      const torch::Tensor classes =
          torch::tensor(context.stream.tasks[task].classes, torch::kInt64).to(features_.device());
      accuracy[task] = torch::isin(features_.predict(generated), classes).to(torch::kFloat64).mean().item<double>();
      if (task <= context.trained_up_to)
        grid_rows.push_back(generated.narrow(0, 0, std::min(config_.sample_columns, generated.size(0))));
    }
    if (!config_.samples_dir.empty() && !grid_rows.empty()) {
      std::filesystem::create_directories(config_.samples_dir);
      write_png((std::filesystem::path(config_.samples_dir) /
                 ("after_task_" + std::to_string(context.trained_up_to + 1) + ".png"))
                    .string(),
                image_grid(torch::cat(grid_rows), static_cast<int64_t>(grid_rows.size()), config_.sample_columns));
    }
    if (was_training) model.train();
  });
  // Rank 0's rows for every rank (on the communicator's device).
  torch::Tensor shared = torch::stack({row, accuracy}).to(context.device);
  context.comm.broadcast(shared, 0);
  shared = shared.to(torch::kCPU).contiguous();
  const double* values = shared.data_ptr<double>();
  generated_accuracy_[context.trained_up_to] = std::vector<double>(values + T, values + 2 * T);
  return std::vector<double>(values, values + T);
}

std::string VaeObjective::state_text() const {
  // One line per evaluation point: the point, then each task's value as exact hexadecimal floats.
  std::ostringstream text;
  for (const auto& [point, values] : generated_accuracy_) {
    text << point;
    for (double value : values) text << " " << exact_double_text(value);
    text << "\n";
  }
  return text.str();
}

void VaeObjective::load_state_text(const std::string& text) {
  generated_accuracy_.clear();
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    int point = 0;
    fields >> point;
    std::vector<double> values;
    for (std::string field; fields >> field;) values.push_back(parse_exact_double(field));
    generated_accuracy_[point] = values;
  }
}

std::vector<ResultTable> VaeObjective::result_tables() const {
  if (generated_accuracy_.empty()) return {};
  ResultTable table;
  table.name = "generated_accuracy";
  table.columns = {"after"};
  for (size_t t = 0; t < generated_accuracy_.begin()->second.size(); ++t)
    table.columns.push_back("task_" + std::to_string(t + 1));
  for (const auto& [point, values] : generated_accuracy_) {
    std::vector<ResultTable::Cell> row{point < 0 ? std::string("initial") : "task_" + std::to_string(point + 1)};
    for (double value : values) row.emplace_back(value);
    table.rows.push_back(std::move(row));
  }
  return {table};
}

}  // namespace clx
