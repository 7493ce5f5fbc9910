#include "algorithms/clnp.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "algorithms/importance.h"
#include "runtime/communicator.h"
#include "runtime/error.h"
#include "runtime/logging.h"

namespace clx {

namespace po = boost::program_options;

namespace {

// A layer's units after task `task` trained, from the final owners (-1 free):
// a unit claimed by a later task was free then.
struct LayerOwnership {
  int64_t by_task = 0, by_earlier = 0, free = 0;
};
LayerOwnership ownership_after(const torch::Tensor& owner, int task) {
  return {owner.eq(task).sum().item<int64_t>(), owner.ge(0).logical_and(owner.lt(task)).sum().item<int64_t>(),
          owner.lt(0).logical_or(owner.gt(task)).sum().item<int64_t>()};
}

// Per-unit mean of |activations| over everything but the sample and unit
// dimensions: [n, units] for a fully connected layer, [n, channels] for a convolution.
torch::Tensor per_unit_magnitude(const torch::Tensor& activations) {
  const torch::Tensor magnitude = activations.abs();
  return magnitude.dim() > 2 ? magnitude.flatten(2).mean(2) : magnitude;
}

std::string percent_text(double fraction) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(2) << 100.0 * fraction;
  return text.str();
}

}  // namespace

ClnpThreshold clnp_search_threshold(const std::vector<double>& sorted_values, double floor,
                                    const std::function<double(int64_t j)>& accuracy_without) {
  // Invariant: accuracy_without(low) >= floor (low = -1 prunes nothing and is
  // accepted whatever its accuracy); every j > high fails.
  int64_t low = -1, high = static_cast<int64_t>(sorted_values.size()) - 1;
  double low_accuracy = accuracy_without(-1);
  while (low < high) {
    const int64_t middle = low + (high - low + 1) / 2;
    const double accuracy = accuracy_without(middle);
    if (accuracy >= floor) {
      low = middle;
      low_accuracy = accuracy;
    } else {
      high = middle - 1;
    }
  }
  return ClnpThreshold{low >= 0 ? sorted_values[static_cast<size_t>(low)] : -1.0, low_accuracy};
}

void ClnpStrategy::add_options(po::options_description& options) {
  const ClnpOptions d;
  options.add_options()
      ("clnp.alpha", po::value<double>()->default_value(d.alpha),
       "CLNP's L1 strength on the free units' activations while a task trains")
      ("clnp.margin", po::value<double>()->default_value(d.margin),
       "CLNP's graceful forgetting: accuracy points (on each task's validation split) that pruning may lose");
}

ClnpOptions ClnpStrategy::read_options(const po::variables_map& values) {
  ClnpOptions options;
  options.alpha = values["clnp.alpha"].as<double>();
  options.margin = values["clnp.margin"].as<double>();
  return options;
}

ClnpStrategy::ClnpStrategy(ClnpOptions options) : options_(options) {
  if (!(options_.alpha >= 0) || !std::isfinite(options_.alpha))
    throw Error("clnp.alpha: must be >= 0, got " + std::to_string(options_.alpha));
  if (!(options_.margin >= 0) || !std::isfinite(options_.margin))
    throw Error("clnp.margin: must be >= 0 (accuracy points), got " + std::to_string(options_.margin));
}

void ClnpStrategy::check_model(const StageContext& ctx) const {
  const HiddenUnits& units = ctx.model.hidden_units();
  units.require_wired(ctx.model.named_shared_parameters(), "clnp", "an mlp with hidden layers, lenet or vgg9");
  if (!units.isolation_broken_by.empty())
    throw Error("train.algorithm=clnp needs a network whose units only meet through weights (mlp, lenet or vgg9): in "
                "this one " + units.isolation_broken_by + " carry later tasks' units into earlier ones");
  const Task& task = ctx.stream.tasks.at(static_cast<size_t>(ctx.tasks.at(0)));
  if (task.validation.size() == 0)
    throw Error("train.algorithm=clnp chooses its pruning threshold on each task's validation split, and task " +
                std::to_string(task.index + 1) + " has none: set data.validation_fraction (e.g. 0.1)");
}

std::vector<torch::Tensor> ClnpStrategy::free_units() const {
  std::vector<torch::Tensor> free;
  for (const auto& item : owners_) free.push_back(item.second.lt(0).to(torch::kFloat32));
  return free;
}

void ClnpStrategy::before_task(StageContext& ctx) {
  check_model(ctx);
  const HiddenUnits& units = ctx.model.hidden_units();
  if (owners_.empty())
    for (size_t k = 0; k < units.layers.size(); ++k)
      owners_.emplace_back(units.names[k], torch::full({units.layers[k]->units()}, int64_t{-1},
                                                       torch::TensorOptions().dtype(torch::kInt64).device(ctx.device)));
  for (size_t k = 0; k < owners_.size(); ++k) {
    const int64_t free = owners_[k].second.lt(0).sum().item<int64_t>();
    if (free == 0)
      throw Error("clnp: no free units left in " + owners_[k].first + " for task " + std::to_string(ctx.tasks.at(0) + 1) +
                  " of " + std::to_string(ctx.stream.size()) + " (all " + std::to_string(owners_[k].second.numel()) +
                  " are owned by earlier tasks): use a wider model or a larger clnp.alpha");
  }
  units.clear_gates();
  task_start_ = snapshot_shared(ctx.model);
}

void ClnpStrategy::before_forward(StageContext& ctx) {
  // Here rather than in before_task: a resumed run enters the task without it.
  for (const auto& layer : ctx.model.hidden_units().layers) layer.ptr()->keep_activations(true);
}

torch::Tensor ClnpStrategy::penalty_loss(StageContext& ctx) {
  if (options_.alpha == 0 || !ctx.batch_features.defined()) return {};
  const HiddenUnits& units = ctx.model.hidden_units();
  const std::vector<torch::Tensor> free = free_units();
  torch::Tensor total;
  for (size_t k = 0; k < units.layers.size(); ++k) {
    const torch::Tensor term = (per_unit_magnitude(units.layers[k]->kept_activations()) * free[k]).sum();
    total = total.defined() ? total + term : term;
  }
  // Summed over this rank's samples, scaled so that the average over ranks is the global-batch mean.
  return options_.alpha * ctx.loss_scale * total;
}

void ClnpStrategy::after_backward(StageContext& ctx) {
  torch::NoGradGuard no_grad;
  // A resumed run starts here without before_task: the owned units' weights
  // have not moved since the task began, so the current values are the task's start.
  if (task_start_.empty()) task_start_ = snapshot_shared(ctx.model);
  const std::vector<torch::Tensor> free = free_units();
  const HiddenUnits& units = ctx.model.hidden_units();
  for (const auto& [name, parameter] : ctx.model.named_shared_parameters()) {
    const ParameterUnits* wiring = units.wiring(name);
    if (parameter.grad().defined() && wiring != nullptr)
      parameter.mutable_grad().mul_(output_units_view(*wiring, parameter, free));
  }
}

void ClnpStrategy::after_step(StageContext& ctx) {
  // Whatever the optimizer did besides the masked gradient (weight decay,
  // momentum from earlier steps), the weights into owned units keep their values.
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> free = free_units();
  const HiddenUnits& units = ctx.model.hidden_units();
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) {
    torch::Tensor parameter = parameters[k].second;
    const ParameterUnits* wiring = units.wiring(parameters[k].first);
    if (wiring == nullptr) continue;
    const torch::Tensor owned = output_units_view(*wiring, parameter, free).eq(0).expand_as(parameter);
    parameter.copy_(torch::where(owned, task_start_[k].second, parameter));
  }
}

std::vector<torch::Tensor> ClnpStrategy::mean_activations(StageContext& ctx, const TaskData& data) {
  const HiddenUnits& units = ctx.model.hidden_units();
  int64_t width = 0;
  for (const auto& layer : units.layers) width += layer->units();
  const int64_t chunks = (data.size() + options_.chunk - 1) / options_.chunk;
  torch::NoGradGuard no_grad;
  const torch::Tensor sums = sum_chunks_in_order(
      ctx.comm, chunks, width, torch::TensorOptions().dtype(torch::kFloat64).device(ctx.device),
      [&](int64_t chunk, torch::Tensor& out) {
        const int64_t begin = chunk * options_.chunk, end = std::min(begin + options_.chunk, data.size());
        ctx.model.features(ctx.inputs(data, torch::arange(begin, end, torch::kInt64)));
        int64_t offset = 0;
        for (const auto& layer : units.layers) {
          out.narrow(0, offset, layer->units()).copy_(per_unit_magnitude(layer->kept_activations()).sum(0));
          offset += layer->units();
        }
      });
  std::vector<torch::Tensor> means;
  int64_t offset = 0;
  for (const auto& layer : units.layers) {
    means.push_back((sums.narrow(0, offset, layer->units()) / static_cast<double>(data.size())).to(torch::kFloat32));
    offset += layer->units();
  }
  return means;
}

void ClnpStrategy::set_gates(const ContinualNet& model, const std::vector<torch::Tensor>& gates) const {
  const HiddenUnits& units = model.hidden_units();
  for (size_t k = 0; k < units.layers.size(); ++k) units.layers[k].ptr()->set_gate(gates[k]);
}

double ClnpStrategy::gated_accuracy(StageContext& ctx, const TaskData& data, int64_t head,
                                    const std::vector<torch::Tensor>& gates) {
  set_gates(ctx.model, gates);
  const int64_t chunks = (data.size() + options_.chunk - 1) / options_.chunk;
  torch::NoGradGuard no_grad;
  const torch::Tensor correct = sum_chunks_in_order(
      ctx.comm, chunks, 1, torch::TensorOptions().dtype(torch::kFloat64).device(ctx.device),
      [&](int64_t chunk, torch::Tensor& out) {
        const int64_t begin = chunk * options_.chunk, end = std::min(begin + options_.chunk, data.size());
        const torch::Tensor positions = torch::arange(begin, end, torch::kInt64);
        const torch::Tensor predicted = ctx.model.logits(ctx.inputs(data, positions), head).argmax(1);
        out.fill_(predicted.eq(data.labels(positions, ctx.heads).to(ctx.device)).sum().item<int64_t>());
      });
  ctx.model.hidden_units().clear_gates();
  return correct.item<double>() / static_cast<double>(data.size());
}

void ClnpStrategy::after_task(StageContext& ctx) {
  const int task = ctx.tasks.at(0);
  const Task& data = ctx.stream.tasks.at(static_cast<size_t>(task));
  const int64_t head = ctx.head_for(task);
  const bool was_training = ctx.model.is_training();
  ctx.model.eval();
  ctx.model.hidden_units().clear_gates();
  const std::vector<torch::Tensor> free = free_units();
  const std::vector<torch::Tensor> activity = mean_activations(ctx, data.train);

  // Candidates: the units that were free while the task trained, by activity.
  std::vector<double> values;
  for (size_t k = 0; k < free.size(); ++k) {
    const torch::Tensor candidate = activity[k].masked_select(free[k].gt(0)).to(torch::kCPU, torch::kFloat64);
    values.insert(values.end(), candidate.data_ptr<double>(), candidate.data_ptr<double>() + candidate.numel());
  }
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  auto gates_pruning_up_to = [&](double cut) {
    std::vector<torch::Tensor> gates;
    for (size_t k = 0; k < free.size(); ++k)
      gates.push_back(1.0 - free[k] * activity[k].le(cut).to(torch::kFloat32));
    return gates;
  };
  std::vector<torch::Tensor> all_on;
  for (const auto& f : free) all_on.push_back(torch::ones_like(f));
  const double unpruned = gated_accuracy(ctx, data.validation, head, all_on);
  const ClnpThreshold threshold =
      clnp_search_threshold(values, unpruned - options_.margin / 100.0, [&](int64_t j) {
        return j < 0 ? unpruned : gated_accuracy(ctx, data.validation, head, gates_pruning_up_to(values[static_cast<size_t>(j)]));
      });

  // Claim the active candidates; the others go back to the free pool.
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> claimed;
  for (size_t k = 0; k < owners_.size(); ++k) {
    claimed.push_back(free[k].gt(0).logical_and(activity[k].gt(threshold.pruned_up_to)));
    owners_[k].second.masked_fill_(claimed.back(), task);
  }
  // Zero every weight from a free unit into an owned unit (and into this task's head).
  const std::vector<torch::Tensor> now_free = free_units();
  std::vector<torch::Tensor> owned;
  for (const auto& f : now_free) owned.push_back(1.0 - f);
  const HiddenUnits& units = ctx.model.hidden_units();
  for (const auto& [name, parameter] : ctx.model.named_shared_parameters()) {
    const ParameterUnits* wiring = units.wiring(name);
    const torch::Tensor from_free = wiring ? input_units_view(*wiring, parameter, now_free) : torch::Tensor();
    if (from_free.defined())
      parameter.masked_fill_((output_units_view(*wiring, parameter, owned) * from_free).gt(0).expand_as(parameter), 0.0);
  }
  for (auto& head_parameter : ctx.model.head_parameters(head))
    if (head_parameter.dim() == 2)
      head_parameter.masked_fill_(now_free.back().gt(0).view({1, -1}).expand_as(head_parameter), 0.0);
  const double pruned_accuracy = gated_accuracy(ctx, data.validation, head, gates_for_task(task));

  std::ostringstream report;
  report << "clnp: task " << task + 1 << ": validation accuracy " << percent_text(unpruned) << "% before pruning, "
         << percent_text(pruned_accuracy) << "% after (margin " << options_.margin << " points); threshold "
         << (threshold.pruned_up_to < 0 ? std::string("none (every candidate kept)")
                                        : "mean |activation| <= " + std::to_string(threshold.pruned_up_to))
         << "\n  layer: units owned by this task / by earlier tasks (reused, frozen) / free";
  for (const auto& [name, owner] : owners_) {
    const LayerOwnership count = ownership_after(owner, task);
    report << "\n  " << name << ": " << count.by_task << " / " << count.by_earlier << " / " << count.free << " of "
           << owner.numel();
  }
  ctx.log.info(report.str());
  for (const auto& layer : units.layers) layer.ptr()->keep_activations(false);
  task_start_.clear();
  if (was_training) ctx.model.train();
}

std::vector<torch::Tensor> ClnpStrategy::gates_for_task(int task) const {
  std::vector<torch::Tensor> gates;
  for (const auto& item : owners_) gates.push_back(item.second.ge(0).logical_and(item.second.le(task)).to(torch::kFloat32));
  return gates;
}

void ClnpStrategy::before_evaluate(ContinualNet& model, int task) {
  if (owners_.empty()) return;  // evaluated before the first task
  set_gates(model, gates_for_task(task));
}

void ClnpStrategy::after_evaluate(ContinualNet& model, int) { model.hidden_units().clear_gates(); }

std::vector<ResultTable> ClnpStrategy::result_tables(int tasks_trained) const {
  ResultTable table;
  table.name = "clnp_units";
  table.columns = {"task", "layer", "units", "owned_by_task", "owned_by_earlier_tasks", "free"};
  for (int task = 0; task < tasks_trained; ++task)
    for (const auto& [name, owner] : owners_) {
      const LayerOwnership count = ownership_after(owner, task);
      table.rows.push_back(
          {static_cast<int64_t>(task + 1), name, owner.numel(), count.by_task, count.by_earlier, count.free});
    }
  return {table};
}

NamedTensors ClnpStrategy::state() const { return join_sets({{"owner", &owners_}}); }

void ClnpStrategy::load_state(const NamedTensors& state) { split_sets(state, {{"owner", &owners_}}); }

}  // namespace clx
