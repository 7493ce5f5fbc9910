#include "models/generation_objective.h"

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <sstream>

#include "runtime/collectives.h"
#include "runtime/communicator.h"
#include "runtime/continual_net.h"
#include "runtime/error.h"
#include "runtime/fid.h"
#include "runtime/file_io.h"
#include "runtime/png.h"
#include "runtime/data/sampler.h"
#include "runtime/strategy.h"
#include "runtime/text.h"

namespace clx {

void validate_generation_config(const GenerationConfig& config) {
  if (config.fid_features.empty())
    throw Error("generation.fid_features: a generation run needs the FID feature file (make one with fid-features)");
  if (config.fid_samples < 2)
    throw Error("generation.fid_samples: must be at least 2 (FID needs a covariance), got " +
                std::to_string(config.fid_samples));
  if (config.sample_columns < 1)
    throw Error("generation.sample_columns: must be at least 1, got " + std::to_string(config.sample_columns));
}

GenerationObjective::GenerationObjective(GenerationConfig config)
    : config_(std::move(config)),
      features_((validate_generation_config(config_), load_fid_features(config_.fid_features, config_.fid_checksum))) {}

ScoreKind GenerationObjective::fid_score_kind(const std::string& statistic) {
  ScoreKind kind;
  kind.name = "fid";
  kind.higher_is_better = false;
  kind.display_scale = 1.0;
  kind.statistic = statistic;
  kind.statistic_is_fraction = false;
  return kind;
}

void GenerationObjective::check_image_shape(const TaskStream& stream) const {
  if (stream.input_shape != features_.info.image_shape)
    throw Error("generation.fid_features: " + config_.fid_features + " scores images of shape " +
                c10::str(c10::IntArrayRef(features_.info.image_shape)) + " (" + features_.info.dataset +
                "), the stream's are " + c10::str(c10::IntArrayRef(stream.input_shape)));
}

torch::Tensor GenerationObjective::per_position_noise(uint64_t seed, uint64_t tag, int task,
                                                      const torch::Tensor& positions, int64_t dim) {
  const torch::Tensor rows = positions.to(torch::kCPU).contiguous();
  torch::Tensor noise = torch::empty({rows.size(0), dim}, torch::kFloat32);
  for (int64_t k = 0; k < rows.size(0); ++k) {
    at::Generator generator = at::detail::createCPUGenerator(
        mix_seed({seed, tag, static_cast<uint64_t>(task), static_cast<uint64_t>(rows.data_ptr<int64_t>()[k])}));
    noise[k].copy_(torch::randn({dim}, generator, torch::kFloat32));
  }
  return noise;
}

torch::Tensor GenerationObjective::feature_logits(const torch::Tensor& flat_images) {
  if (features_.device() != flat_images.device()) features_.to(flat_images.device());
  features_.model()->eval();
  const std::vector<int64_t>& shape = features_.info.image_shape;
  return features_.model()->logits(flat_images.view({flat_images.size(0), shape[0], shape[1], shape[2]}), 0);
}

std::vector<double> GenerationObjective::evaluate(const EvaluationContext& context) {
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
    const std::filesystem::path images_dir = std::filesystem::path(config_.samples_dir) / "fid_images";
    for (int task = 0; task < T; ++task) {
      if (!real_statistics_[task]) {
        const TaskData& data = context.eval_data(task);
        if (data.size() < 2)
          throw Error("generation: task " + std::to_string(task + 1) + " (" + context.stream.tasks[task].name +
                      ") has " + std::to_string(data.size()) + " evaluation image(s); FID needs at least 2");
        real_statistics_[task] = features_.statistics(data.inputs(torch::arange(data.size(), torch::kInt64)));
      }
      context.strategy.before_evaluate(model, task);
      const torch::Tensor generated = scoring_images(model, context.stream, task, context.seed);
      context.strategy.after_evaluate(model, task);
      row[task] = frechet_distance(features_.statistics(generated), *real_statistics_[task]);
      if (config_.save_images && !config_.samples_dir.empty()) {
        std::filesystem::create_directories(images_dir);
        write_npy((images_dir / ("task_" + std::to_string(task + 1) + ".npy")).string(), generated);
      }
      const torch::Tensor classes =
          torch::tensor(context.stream.tasks[task].classes, torch::kInt64).to(features_.device());
      accuracy[task] = torch::isin(features_.predict(generated), classes).to(torch::kFloat64).mean().item<double>();
      if (task <= context.trained_up_to)
        grid_rows.push_back(generated.narrow(0, 0, std::min(config_.sample_columns, generated.size(0))));
    }
    if (config_.save_images && !config_.samples_dir.empty())
      write_file_atomically((images_dir / "after_task.txt").string(), std::to_string(context.trained_up_to + 1) + "\n");
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

std::string rows_by_point_text(const RowsByPoint& rows, const std::string& line_prefix) {
  std::ostringstream text;
  for (const auto& [point, values] : rows) {
    text << line_prefix << point;
    for (double value : values) text << " " << exact_double_text(value);
    text << "\n";
  }
  return text.str();
}

RowsByPoint parse_rows_by_point(const std::string& text, const std::string& line_prefix) {
  RowsByPoint rows;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.compare(0, line_prefix.size(), line_prefix) != 0) continue;
    std::istringstream fields(line.substr(line_prefix.size()));
    int point = 0;
    if (!(fields >> point)) continue;
    std::vector<double> values;
    for (std::string field; fields >> field;) values.push_back(parse_exact_double(field));
    rows[point] = values;
  }
  return rows;
}

ResultTable rows_by_point_table(const std::string& name, const RowsByPoint& rows) {
  ResultTable table;
  table.name = name;
  table.columns = {"after"};
  if (rows.empty()) return table;
  for (size_t t = 0; t < rows.begin()->second.size(); ++t) table.columns.push_back("task_" + std::to_string(t + 1));
  for (const auto& [point, values] : rows) {
    std::vector<ResultTable::Cell> row{point < 0 ? std::string("initial") : "task_" + std::to_string(point + 1)};
    for (double value : values) row.emplace_back(value);
    table.rows.push_back(std::move(row));
  }
  return table;
}

std::string GenerationObjective::state_text() const {
  // One line per evaluation point: the point, then each task's value as exact hexadecimal floats.
  return rows_by_point_text(generated_accuracy_);
}

void GenerationObjective::load_state_text(const std::string& text) { generated_accuracy_ = parse_rows_by_point(text); }

std::vector<ResultTable> GenerationObjective::result_tables() const {
  if (generated_accuracy_.empty()) return {};
  return {rows_by_point_table("generated_accuracy", generated_accuracy_)};
}

}  // namespace clx
