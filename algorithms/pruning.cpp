#include "algorithms/pruning.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "runtime/error.h"

namespace clx {

int pruning_budget_percent(int task, int first_percent, double decay) {
  if (task < 1) throw Error("pruning budget: tasks count from 1");
  int budget = first_percent;
  // The small epsilon keeps products such as 0.8 * 25 = 20 from rounding down to 19.
  for (int t = 2; t <= task; ++t) budget = static_cast<int>(std::floor(decay * budget + 1e-9));
  return budget;
}

std::vector<int> pruning_steps_percent(int task, int first_percent, double decay, int step_percent) {
  if (step_percent <= 0) throw Error("anpyc.step: must be a positive whole percent");
  const int budget = pruning_budget_percent(task, first_percent, decay);
  std::vector<int> steps;
  for (int p = step_percent; budget > 0; p += step_percent) {
    steps.push_back(p);
    if (p >= budget) break;
  }
  return steps;
}

double percentile(const torch::Tensor& values, double percent) {
  const int64_t n = values.numel();
  if (n == 0) throw Error("percentile of no values");
  if (!(percent >= 0.0 && percent <= 100.0)) throw Error("percentile: percent must be in [0, 100]");
  const double virtual_index = percent / 100.0 * static_cast<double>(n - 1);
  const int64_t below = std::min<int64_t>(static_cast<int64_t>(std::floor(virtual_index)), n - 1);
  const int64_t above = std::min<int64_t>(below + 1, n - 1);
  const double t = virtual_index - static_cast<double>(below);
  // Only the two order statistics are needed; kthvalue counts from 1.
  const torch::Tensor flat = values.detach().reshape({-1}).to(torch::kFloat64);
  const double a = std::get<0>(torch::kthvalue(flat, below + 1)).item<double>();
  const double b = above == below ? a : std::get<0>(torch::kthvalue(flat, above + 1)).item<double>();
  // numpy's _lerp: a + (b - a) t, and b - (b - a)(1 - t) for t >= 0.5.
  const double difference = b - a;
  return t >= 0.5 ? b - difference * (1.0 - t) : a + difference * t;
}

namespace {

torch::Tensor free_by_rule(const torch::Tensor& omega, const torch::Tensor& candidates, double threshold, bool first_task) {
  const torch::Tensor value = omega.to(torch::kFloat64);
  const torch::Tensor below = first_task ? value.eq(0).logical_or(value.lt(threshold)) : value.le(threshold);
  return below.logical_and(candidates);
}

}  // namespace

NamedTensors weights_to_free(const NamedTensors& omega, const NamedTensors& candidates, double percent, bool first_task,
                             bool global) {
  if (omega.size() != candidates.size()) throw Error("weights_to_free: tensor sets of different sizes");
  torch::NoGradGuard no_grad;
  double pooled_threshold = 0.0;
  if (global) {
    std::vector<torch::Tensor> pooled;
    for (size_t k = 0; k < omega.size(); ++k) pooled.push_back(omega[k].second.masked_select(candidates[k].second));
    const torch::Tensor all = torch::cat(pooled);
    if (all.numel() > 0) pooled_threshold = percentile(all, percent);
  }
  NamedTensors free;
  for (size_t k = 0; k < omega.size(); ++k) {
    const torch::Tensor& tensor_candidates = candidates[k].second;
    double threshold = pooled_threshold;
    if (!global) {
      const torch::Tensor values = omega[k].second.masked_select(tensor_candidates);
      if (values.numel() == 0) {
        free.emplace_back(omega[k].first, torch::zeros_like(tensor_candidates));
        continue;
      }
      threshold = percentile(values, percent);
    }
    free.emplace_back(omega[k].first, free_by_rule(omega[k].second, tensor_candidates, threshold, first_task));
  }
  return free;
}

std::string describe_masks(const NamedTensors& masks) {
  std::ostringstream text;
  int64_t used_total = 0, free_total = 0;
  for (const auto& [name, mask] : masks) {
    const int64_t n = mask.numel();
    const int64_t used = mask.gt(0.5).sum().item<int64_t>();
    used_total += used;
    free_total += n - used;
    text << "  " << name << ": used " << used << ", free " << n - used << " (" << std::fixed << std::setprecision(1)
         << 100.0 * static_cast<double>(n - used) / static_cast<double>(std::max<int64_t>(n, 1)) << "% free)\n";
  }
  text << "  network: used " << used_total << ", free " << free_total << " (" << std::fixed << std::setprecision(1)
       << 100.0 * static_cast<double>(free_total) / static_cast<double>(std::max<int64_t>(used_total + free_total, 1))
       << "% still free)";
  return text.str();
}

}  // namespace clx
