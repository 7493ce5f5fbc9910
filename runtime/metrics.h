#pragma once
// Continual-learning metrics, all derived from the accuracy matrix the
// trainer fills (DESIGN.md section 4.1). Accuracies are fractions in [0, 1].
#include <optional>
#include <string>
#include <vector>

namespace clx {

struct AccuracyMatrix {
  // stages[j][i]: accuracy on task i after training stage j (every task,
  // future ones included). A sequential run has one stage per task; a joint
  // run has a single stage covering every task.
  std::vector<std::vector<double>> stages;
  // initial[i]: accuracy on task i of the randomly initialised network (b_i).
  std::vector<double> initial;

  int num_tasks() const { return static_cast<int>(initial.size()); }
  bool sequential() const { return static_cast<int>(stages.size()) == num_tasks(); }
  const std::vector<double>& final_row() const { return stages.back(); }
};

// ACC = (1/T) sum_i P[T][i]
double average_accuracy(const AccuracyMatrix& matrix);
// BWT = 1/(T-1) sum_{i<T} (P[T][i] - P[i][i]); needs a sequential matrix and T >= 2.
std::optional<double> backward_transfer(const AccuracyMatrix& matrix);
// FWT (paper) = 1/(T-1) sum_{i>=2} (P[i][i] - m_i), m = joint run's final accuracies.
std::optional<double> forward_transfer_paper(const AccuracyMatrix& matrix, const std::vector<double>& joint);
// FWT (GEM) = 1/(T-1) sum_{i>=2} (P[i-1][i] - b_i), b = accuracy of the random initialisation.
std::optional<double> forward_transfer_gem(const AccuracyMatrix& matrix);
// SMT = mean over tasks i<T of the (population) variance of P[j][i] for j = i..T:
// how much an earlier task's accuracy moves while later tasks are learned.
std::optional<double> stability(const AccuracyMatrix& matrix);

struct MetricSummary {
  double acc = 0.0;
  std::optional<double> bwt, fwt_paper, fwt_gem, smt;
};
MetricSummary summarise(const AccuracyMatrix& matrix, const std::vector<double>& joint_accuracies = {});

// Final per-task accuracies of a run, read from its results.json (used as m_i for FWT).
std::vector<double> read_final_accuracies(const std::string& results_json_path);

}  // namespace clx
