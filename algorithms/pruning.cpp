#include "algorithms/pruning.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "runtime/error.h"

namespace clx {

std::vector<double> pruning_fractions(int task, double first_budget, double decay, double step) {
  if (task < 1) throw Error("pruning_fractions: tasks count from 1");
  if (!(step > 0.0)) throw Error("anpyc.step: must be positive");
  const double budget = first_budget * std::pow(decay, task - 1);
  std::vector<double> fractions;
  for (int k = 1; k * step <= budget + 1e-9; ++k) fractions.push_back(k * step);
  if (fractions.empty()) fractions.push_back(step);
  return fractions;
}

namespace {

// Marks the `count` lowest-scoring candidates of `score` (flat) as free.
torch::Tensor free_lowest(const torch::Tensor& score, const torch::Tensor& candidates, int64_t count) {
  torch::Tensor keyed = score.to(torch::kFloat64).masked_fill(candidates.logical_not(), INFINITY);
  torch::Tensor order = std::get<1>(torch::sort(keyed, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  torch::Tensor free = torch::zeros_like(candidates);
  if (count > 0) free.index_fill_(0, order.narrow(0, 0, count), true);
  return free;
}

}  // namespace

NamedTensors lowest_scoring(const NamedTensors& score, const NamedTensors& candidates, double fraction, bool global) {
  if (!(fraction >= 0.0 && fraction <= 1.0)) throw Error("pruning fraction must be in [0, 1]");
  NamedTensors free;
  if (!global) {
    for (size_t k = 0; k < score.size(); ++k) {
      const torch::Tensor flat_candidates = candidates[k].second.reshape({-1});
      const int64_t count = std::llround(fraction * flat_candidates.sum().item<double>());
      free.emplace_back(score[k].first, free_lowest(score[k].second.reshape({-1}), flat_candidates, count)
                                            .view(score[k].second.sizes()));
    }
    return free;
  }
  std::vector<torch::Tensor> scores, masks;
  for (size_t k = 0; k < score.size(); ++k) {
    scores.push_back(score[k].second.reshape({-1}).to(torch::kFloat64));
    masks.push_back(candidates[k].second.reshape({-1}));
  }
  const torch::Tensor all_candidates = torch::cat(masks);
  const int64_t count = std::llround(fraction * all_candidates.sum().item<double>());
  const torch::Tensor all_free = free_lowest(torch::cat(scores), all_candidates, count);
  int64_t offset = 0;
  for (size_t k = 0; k < score.size(); ++k) {
    const int64_t n = score[k].second.numel();
    free.emplace_back(score[k].first, all_free.narrow(0, offset, n).view(score[k].second.sizes()).clone());
    offset += n;
  }
  return free;
}

std::string describe_masks(const NamedTensors& masks, const NamedTensors& prunable) {
  std::ostringstream text;
  int64_t used_total = 0, free_total = 0;
  for (size_t k = 0; k < masks.size(); ++k) {
    if (!prunable[k].second.any().item<bool>()) continue;
    const int64_t n = prunable[k].second.sum().item<int64_t>();
    const int64_t used = (masks[k].second.gt(0.5).logical_and(prunable[k].second)).sum().item<int64_t>();
    used_total += used;
    free_total += n - used;
    text << "  " << masks[k].first << ": used " << used << ", free " << n - used << " (" << std::fixed
         << std::setprecision(1) << 100.0 * static_cast<double>(n - used) / static_cast<double>(n) << "% free)\n";
  }
  text << "  network: used " << used_total << ", free " << free_total << " (" << std::fixed << std::setprecision(1)
       << 100.0 * static_cast<double>(free_total) / static_cast<double>(std::max<int64_t>(used_total + free_total, 1))
       << "% still free)";
  return text.str();
}

}  // namespace clx
