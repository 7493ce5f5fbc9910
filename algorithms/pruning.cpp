#include "algorithms/pruning.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "runtime/error.h"
#include "runtime/text.h"

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

std::vector<UnreachableUnits> unreachable_units(const NamedTensors& masks) {
  static const std::string kWeight = ".weight";
  std::vector<UnreachableUnits> layers;
  for (const auto& [name, mask] : masks) {
    if (mask.dim() < 2 || name.size() <= kWeight.size() ||
        name.compare(name.size() - kWeight.size(), kWeight.size(), kWeight) != 0)
      continue;
    const std::string layer = name.substr(0, name.size() - kWeight.size());
    const int64_t units = mask.size(0);
    torch::Tensor reached = mask.reshape({units, -1}).gt(0.5).any(1);
    for (const auto& [bias_name, bias] : masks)
      if (bias_name == layer + ".bias" && bias.numel() == units) reached = reached.logical_or(bias.reshape({-1}).gt(0.5));
    layers.push_back({layer, units, units - reached.sum().item<int64_t>()});
  }
  return layers;
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
  for (const UnreachableUnits& layer : unreachable_units(masks))
    if (layer.unreachable > 0)
      text << "  " << layer.layer << ": " << layer.unreachable << " of " << layer.units
           << " units with every incoming weight and bias free (zero: no later task can revive them through a ReLU)\n";
  text << "  network: used " << used_total << ", free " << free_total << " (" << std::fixed << std::setprecision(1)
       << 100.0 * static_cast<double>(free_total) / static_cast<double>(std::max<int64_t>(used_total + free_total, 1))
       << "% still free)";
  return text.str();
}

// ---------------------------------------------------------------- compression pruning

namespace {

constexpr const char* kScheduleOption = "anpyc.compression_schedule";

std::string number_text(double value) {
  std::ostringstream text;
  text << std::setprecision(10) << value;
  return text.str();
}

std::string fixed_text(double value, int decimals, const std::string& suffix) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(decimals) << value << suffix;
  return text.str();
}

}  // namespace

std::vector<double> parse_compression_schedule(const std::string& text) {
  std::vector<double> percents;
  for (const std::string& item : parse_name_list(text)) {
    size_t used = 0;
    double value = 0.0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size())
      throw Error(std::string(kScheduleOption) + ": '" + item + "' is not a number (expected percents such as 50,75,90)");
    percents.push_back(value);
  }
  check_compression_schedule(percents);
  return percents;
}

void check_compression_schedule(const std::vector<double>& percents) {
  const std::string option = kScheduleOption;
  if (percents.empty())
    throw Error(option + ": needs at least one round (percents of the weights freed, e.g. 50,75,90)");
  for (size_t k = 0; k < percents.size(); ++k) {
    if (!(percents[k] > 0.0 && percents[k] < 100.0))
      throw Error(option + ": round " + std::to_string(k + 1) + "'s " + number_text(percents[k]) +
                  " is outside (0, 100): each round frees a percent of the weights strictly between 0 and 100");
    if (k > 0 && !(percents[k] > percents[k - 1]))
      throw Error(option + ": round " + std::to_string(k + 1) + "'s " + number_text(percents[k]) +
                  " is not above round " + std::to_string(k) + "'s " + number_text(percents[k - 1]) +
                  ": the percents are cumulative and must increase round by round");
  }
}

double compression_ratio(int64_t total, int64_t remaining) {
  if (remaining <= 0) return std::numeric_limits<double>::infinity();
  return static_cast<double>(total) / static_cast<double>(remaining);
}

ResultTable compression_table(const std::vector<std::string>& names, const std::vector<int64_t>& totals,
                              const std::vector<CompressionRound>& rounds) {
  ResultTable table;
  table.name = "compression";
  table.columns = {"round",       "schedule_percent", "tensor",   "total", "remaining", "remaining_percent",
                   "compression", "accuracy_after_pruning", "accuracy"};
  int64_t network_total = 0;
  for (int64_t total : totals) network_total += total;
  for (size_t r = 0; r < rounds.size(); ++r) {
    const CompressionRound& round = rounds[r];
    const ResultTable::Cell after_pruning =
        round.accuracy_after_pruning ? ResultTable::Cell(*round.accuracy_after_pruning) : ResultTable::Cell();
    auto add_row = [&](const std::string& tensor, int64_t total, int64_t remaining) {
      table.rows.push_back({static_cast<int64_t>(r), round.schedule_percent, tensor, total, remaining,
                            100.0 * static_cast<double>(remaining) / static_cast<double>(std::max<int64_t>(total, 1)),
                            compression_ratio(total, remaining), after_pruning, round.accuracy});
    };
    int64_t network_remaining = 0;
    for (size_t k = 0; k < names.size(); ++k) {
      add_row(names[k], totals[k], round.remaining.at(k));
      network_remaining += round.remaining.at(k);
    }
    add_row("network", network_total, network_remaining);
  }
  return table;
}

std::string describe_compression(const std::vector<std::string>& names, const std::vector<int64_t>& totals,
                                 const std::vector<CompressionRound>& rounds, int64_t unpruned) {
  size_t name_width = std::string("accuracy after pruning").size();
  for (const auto& name : names) name_width = std::max(name_width, name.size());
  constexpr int kCell = 11;
  std::ostringstream text;
  auto row = [&](const std::string& label, const std::string& total, const std::vector<std::string>& cells) {
    text << "  " << std::left << std::setw(static_cast<int>(name_width)) << label << std::right << std::setw(kCell) << total;
    for (const auto& cell : cells) text << std::setw(kCell) << cell;
    text << "\n";
  };
  std::vector<std::string> header;
  for (const CompressionRound& round : rounds)
    header.push_back(round.schedule_percent == 0.0 ? "dense" : number_text(round.schedule_percent) + "%");
  row("left of each shared tensor", "total", header);
  int64_t network_total = 0;
  std::vector<int64_t> network_remaining(rounds.size(), 0);
  for (size_t k = 0; k < names.size(); ++k) {
    std::vector<std::string> cells;
    for (size_t r = 0; r < rounds.size(); ++r) {
      const int64_t remaining = rounds[r].remaining.at(k);
      network_remaining[r] += remaining;
      cells.push_back(fixed_text(100.0 * static_cast<double>(remaining) / static_cast<double>(std::max<int64_t>(totals[k], 1)),
                                 2, "%"));
    }
    network_total += totals[k];
    row(names[k], std::to_string(totals[k]), cells);
  }
  std::vector<std::string> counts, ratios, with_unpruned, after_pruning, accuracy;
  for (size_t r = 0; r < rounds.size(); ++r) {
    counts.push_back(std::to_string(network_remaining[r]));
    ratios.push_back(fixed_text(compression_ratio(network_total, network_remaining[r]), 2, "x"));
    with_unpruned.push_back(
        fixed_text(compression_ratio(network_total + unpruned, network_remaining[r] + unpruned), 2, "x"));
    after_pruning.push_back(rounds[r].accuracy_after_pruning ? fixed_text(100.0 * *rounds[r].accuracy_after_pruning, 2, "%")
                                                             : "-");
    accuracy.push_back(fixed_text(100.0 * rounds[r].accuracy, 2, "%"));
  }
  row("network (weights left)", std::to_string(network_total), counts);
  row("compression", "", ratios);
  if (unpruned > 0) row("compression with head", std::to_string(unpruned), with_unpruned);
  row("accuracy after pruning", "", after_pruning);
  row("accuracy", "", accuracy);
  std::string table = text.str();
  if (!table.empty()) table.pop_back();  // no trailing newline: the logger ends the line
  return table;
}

}  // namespace clx
