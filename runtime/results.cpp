#include "runtime/results.h"

#include <algorithm>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>
#include <variant>

#include "runtime/error.h"
#include "runtime/file_io.h"

namespace clx {
namespace {

// "wasserstein estimate" -> "wasserstein_estimate": a JSON key without spaces.
std::string snake_case(std::string text) {
  for (char& c : text)
    if (c == ' ') c = '_';
  return text;
}

nlohmann::json optional_json(const std::optional<double>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

std::string optional_csv(const std::optional<double>& value) {
  if (!value) return "";
  std::ostringstream text;
  text << std::setprecision(10) << *value;
  return text.str();
}

// A metric as logs show it: value * scale (100: percent; FID as is).
std::string optional_scaled(const std::optional<double>& value, double scale) {
  if (!value) return "n/a";
  std::ostringstream text;
  text << std::fixed << std::setprecision(2) << scale * *value;
  return text.str();
}

// "accuracy_matrix" for classification, "fid_matrix" for generation: the
// matrix's name in results.json and its CSV file.
std::string matrix_name(const ScoreKind& score) { return score.name + "_matrix"; }

nlohmann::json cell_json(const ResultTable::Cell& cell) {
  return std::visit(
      [](const auto& value) -> nlohmann::json {
        if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::monostate>) return nullptr;
        else return value;
      },
      cell);
}

// A CSV field: numbers to 10 significant digits; text quoted (RFC 4180) when it holds a comma, quote or line break.
std::string cell_csv(const ResultTable::Cell& cell) {
  if (const auto* text = std::get_if<std::string>(&cell)) {
    if (text->find_first_of(",\"\n\r") == std::string::npos) return *text;
    std::string quoted = "\"";
    for (char c : *text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    return quoted + "\"";
  }
  std::ostringstream number;
  if (const auto* integer = std::get_if<int64_t>(&cell)) number << *integer;
  if (const auto* real = std::get_if<double>(&cell)) number << std::setprecision(10) << *real;
  return number.str();
}

std::string stage_label(const StageRecord& stage) {
  if (stage.tasks.size() == 1) return "after task " + std::to_string(stage.tasks[0] + 1);
  return "after tasks " + std::to_string(stage.tasks.front() + 1) + "-" + std::to_string(stage.tasks.back() + 1);
}

}  // namespace

void write_results(const std::string& directory, const RunDescription& run, const RunResult& result,
                   const MetricSummary& metrics) {
  const std::filesystem::path dir(directory);
  nlohmann::json json;
  json["strategy"] = run.strategy;
  json["stream"] = run.stream;
  json["world_size"] = run.world_size;
  json["backend"] = run.backend;
  json["tasks"] = result.task_names;
  json["score"] = {{"name", result.score.name}, {"higher_is_better", result.score.higher_is_better}};
  json[matrix_name(result.score)]["initial"] = result.matrix.initial;
  json[matrix_name(result.score)]["stages"] = result.matrix.stages;
  json["metrics"] = {{"acc", metrics.acc},
                     {"bwt", optional_json(metrics.bwt)},
                     {"fwt_paper", optional_json(metrics.fwt_paper)},
                     {"fwt_gem", optional_json(metrics.fwt_gem)},
                     {"smt", optional_json(metrics.smt)}};
  nlohmann::json stages = nlohmann::json::array();
  for (const StageRecord& stage : result.stages)
    stages.push_back({{"tasks", stage.tasks},
                      {"train_seconds", stage.train_seconds},
                      {"eval_seconds", stage.eval_seconds},
                      {"final_loss", stage.final_loss},
                      {result.score.statistic_is_fraction ? "final_train_accuracy" : "final_" + snake_case(result.score.statistic),
                       stage.final_train_accuracy}});
  json["stages"] = stages;
  json["total_seconds"] = result.total_seconds;
  for (const ResultTable& table : result.tables) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : table.rows) {
      nlohmann::json cells = nlohmann::json::array();
      for (const auto& cell : row) cells.push_back(cell_json(cell));
      rows.push_back(cells);
    }
    json["tables"][table.name] = {{"columns", table.columns}, {"rows", rows}};
  }
  json["config"] = run.effective_config;
  // Invalid UTF-8 (a file or class name from the data, say) becomes U+FFFD
  // rather than an exception that would lose the run's results.
  write_file_atomically((dir / "results.json").string(),
                        json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");

  std::ostringstream matrix;
  matrix << "stage";
  for (size_t i = 0; i < result.task_names.size(); ++i) matrix << ",task_" << i + 1;
  matrix << "\n" << "initial";
  for (double value : result.matrix.initial) matrix << "," << std::setprecision(10) << value;
  matrix << "\n";
  for (size_t j = 0; j < result.matrix.stages.size(); ++j) {
    std::string label = stage_label(result.stages[j]);
    std::replace(label.begin(), label.end(), ' ', '_');
    matrix << label;
    for (double value : result.matrix.stages[j]) matrix << "," << std::setprecision(10) << value;
    matrix << "\n";
  }
  write_file_atomically((dir / (matrix_name(result.score) + ".csv")).string(), matrix.str());

  std::ostringstream csv;
  csv << "metric,value\n"
      << "acc," << std::setprecision(10) << metrics.acc << "\n"
      << "bwt," << optional_csv(metrics.bwt) << "\n"
      << "fwt_paper," << optional_csv(metrics.fwt_paper) << "\n"
      << "fwt_gem," << optional_csv(metrics.fwt_gem) << "\n"
      << "smt," << optional_csv(metrics.smt) << "\n";
  write_file_atomically((dir / "metrics.csv").string(), csv.str());

  for (const ResultTable& table : result.tables) {
    std::ostringstream text;
    for (size_t k = 0; k < table.columns.size(); ++k) text << (k ? "," : "") << table.columns[k];
    text << "\n";
    for (const auto& row : table.rows) {
      for (size_t k = 0; k < row.size(); ++k) text << (k ? "," : "") << cell_csv(row[k]);
      text << "\n";
    }
    write_file_atomically((dir / (table.name + ".csv")).string(), text.str());
  }
}

std::string format_results_table(const RunResult& result, const MetricSummary& metrics) {
  std::ostringstream table;
  const size_t T = result.task_names.size();
  const ScoreKind& score = result.score;
  const double scale = score.display_scale;
  if (score.name == "accuracy") table << "Accuracy matrix (%), row = after training, column = task evaluated\n";
  else
    table << score.name << " matrix (" << (score.higher_is_better ? "higher" : "lower")
          << " is better), row = after training, column = task evaluated\n";
  table << std::left << std::setw(18) << "" << std::right;
  for (size_t i = 0; i < T; ++i) table << std::setw(8) << ("T" + std::to_string(i + 1));
  table << "\n" << std::left << std::setw(18) << "initial" << std::right << std::fixed << std::setprecision(2);
  for (double value : result.matrix.initial) table << std::setw(8) << scale * value;
  table << "\n";
  for (size_t j = 0; j < result.matrix.stages.size(); ++j) {
    table << std::left << std::setw(18) << stage_label(result.stages[j]) << std::right;
    for (double value : result.matrix.stages[j]) table << std::setw(8) << scale * value;
    table << "\n";
  }
  // The metrics are the same formulas over any score matrix; over FID, "ACC"
  // is the mean final FID and a positive BWT is forgetting.
  if (score.name == "accuracy")
    table << "ACC " << optional_scaled(metrics.acc, scale) << "  BWT " << optional_scaled(metrics.bwt, scale)
          << "  FWT(paper) " << optional_scaled(metrics.fwt_paper, scale) << "  FWT(GEM) "
          << optional_scaled(metrics.fwt_gem, scale) << "  SMT "
          << (metrics.smt ? std::to_string(*metrics.smt * 1e4).substr(0, 6) + " (x1e-4)" : "n/a") << "\n";
  else
    table << "mean final " << score.name << " " << optional_scaled(metrics.acc, scale) << "  BWT "
          << optional_scaled(metrics.bwt, scale) << " (positive: forgetting)  FWT(paper) "
          << optional_scaled(metrics.fwt_paper, scale) << "\n";
  double train = 0.0;
  for (const StageRecord& stage : result.stages) train += stage.train_seconds;
  table << "time: " << std::setprecision(1) << result.total_seconds << " s in all, "
        << train / std::max<size_t>(result.stages.size(), 1) << " s of training per stage\n";
  return table.str();
}

}  // namespace clx
