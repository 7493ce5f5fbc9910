#include "runtime/metrics.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/error.h"

namespace clx {

double average_accuracy(const AccuracyMatrix& matrix) {
  if (matrix.stages.empty()) return 0.0;
  const auto& last = matrix.final_row();
  double sum = 0.0;
  for (double value : last) sum += value;
  return sum / static_cast<double>(last.size());
}

std::optional<double> backward_transfer(const AccuracyMatrix& matrix) {
  const int T = matrix.num_tasks();
  if (!matrix.sequential() || T < 2) return std::nullopt;
  double sum = 0.0;
  for (int i = 0; i < T - 1; ++i) sum += matrix.stages[T - 1][i] - matrix.stages[i][i];
  return sum / (T - 1);
}

std::optional<double> forward_transfer_paper(const AccuracyMatrix& matrix, const std::vector<double>& joint) {
  const int T = matrix.num_tasks();
  if (!matrix.sequential() || T < 2 || static_cast<int>(joint.size()) != T) return std::nullopt;
  double sum = 0.0;
  for (int i = 1; i < T; ++i) sum += matrix.stages[i][i] - joint[i];
  return sum / (T - 1);
}

std::optional<double> forward_transfer_gem(const AccuracyMatrix& matrix) {
  const int T = matrix.num_tasks();
  if (!matrix.sequential() || T < 2) return std::nullopt;
  double sum = 0.0;
  for (int i = 1; i < T; ++i) sum += matrix.stages[i - 1][i] - matrix.initial[i];
  return sum / (T - 1);
}

std::optional<double> stability(const AccuracyMatrix& matrix) {
  const int T = matrix.num_tasks();
  if (!matrix.sequential() || T < 2) return std::nullopt;
  double total = 0.0;
  for (int i = 0; i < T - 1; ++i) {
    double mean = 0.0;
    for (int j = i; j < T; ++j) mean += matrix.stages[j][i];
    mean /= (T - i);
    double variance = 0.0;
    for (int j = i; j < T; ++j) variance += (matrix.stages[j][i] - mean) * (matrix.stages[j][i] - mean);
    total += variance / (T - i);
  }
  return total / (T - 1);
}

MetricSummary summarise(const AccuracyMatrix& matrix, const std::vector<double>& joint_accuracies) {
  MetricSummary summary;
  summary.acc = average_accuracy(matrix);
  summary.bwt = backward_transfer(matrix);
  summary.fwt_paper = forward_transfer_paper(matrix, joint_accuracies);
  summary.fwt_gem = forward_transfer_gem(matrix);
  summary.smt = stability(matrix);
  return summary;
}

std::vector<double> read_final_accuracies(const std::string& results_json_path) {
  std::ifstream file(results_json_path);
  if (!file) throw Error("metrics.joint_results: cannot open " + results_json_path);
  try {
    const nlohmann::json results = nlohmann::json::parse(file);
    // A generation run's matrix is its score's (fid_matrix); a classification run's the accuracy matrix.
    const std::string matrix =
        results.contains("score") ? results.at("score").at("name").get<std::string>() + "_matrix" : "accuracy_matrix";
    const nlohmann::json& stages = results.at(matrix).at("stages");
    if (!stages.is_array() || stages.empty() || !stages.back().is_array())
      throw Error("metrics.joint_results: " + results_json_path + " has no " + matrix + ".stages rows");
    return stages.back().get<std::vector<double>>();
  } catch (const nlohmann::json::exception& error) {
    throw Error("metrics.joint_results: " + results_json_path + " is not a results.json of this framework (" +
                error.what() + ")");
  }
}

}  // namespace clx
