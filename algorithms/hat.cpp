#include "algorithms/hat.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <iomanip>
#include <sstream>

#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"
#include "runtime/logging.h"

namespace clx {

namespace po = boost::program_options;

namespace {

// The reference's constants: the cosh argument's clamp in the compensation,
// and the range the embeddings are held to after each step.
constexpr double kCoshClamp = 50.0;
constexpr double kEmbeddingClamp = 6.0;

}  // namespace

double hat_annealed_scale(double smax, int64_t batch, int64_t batches) {
  if (batches <= 1) return smax;
  return 1.0 / smax + (smax - 1.0 / smax) * static_cast<double>(batch) / static_cast<double>(batches - 1);
}

void hat_compensate_gradient(torch::Tensor& gradient, const torch::Tensor& embedding, double s, double smax) {
  torch::NoGradGuard no_grad;
  const torch::Tensor numerator = torch::cosh(torch::clamp(s * embedding, -kCoshClamp, kCoshClamp)) + 1.0;
  const torch::Tensor denominator = torch::cosh(embedding) + 1.0;
  gradient.mul_(smax / s * numerator / denominator);
}

torch::Tensor hat_regulariser(const std::vector<torch::Tensor>& gates, const std::vector<torch::Tensor>& cumulative,
                              double c) {
  torch::Tensor used = torch::zeros({}, gates.at(0).options());
  torch::Tensor free = torch::zeros({}, gates.at(0).options());
  for (size_t k = 0; k < gates.size(); ++k) {
    const torch::Tensor available = 1.0 - cumulative.at(k);
    used = used + (gates[k] * available).sum();
    free = free + available.sum();
  }
  // Every unit taken by earlier tasks (no free unit left): nothing to regularise.
  return c * used / free.clamp_min(1e-12);
}

void HatStrategy::add_options(po::options_description& options) {
  const HatOptions d;
  options.add_options()
      ("hat.smax", po::value<double>()->default_value(d.smax),
       "HAT's largest gate scale s_max (gates sigmoid(s e); s rises from 1/s_max to s_max within each epoch)")
      ("hat.c", po::value<double>()->default_value(d.c),
       "HAT's regulariser strength c in c * sum a_t (1 - a_<t) / sum (1 - a_<t)");
}

HatOptions HatStrategy::read_options(const po::variables_map& values) {
  return HatOptions{values["hat.smax"].as<double>(), values["hat.c"].as<double>()};
}

HatStrategy::HatStrategy(HatOptions options) : options_(options) {
  if (!(options_.smax > 0) || !std::isfinite(options_.smax))
    throw Error("hat.smax: must be positive, got " + std::to_string(options_.smax));
  if (!(options_.c >= 0) || !std::isfinite(options_.c)) throw Error("hat.c: must be >= 0, got " + std::to_string(options_.c));
}

void HatStrategy::check_model(const ContinualNet& model) const {
  model.hidden_units().require_wired(model.named_shared_parameters(), "hat",
                                     "an mlp with hidden layers, lenet, vgg9 or resnet18");
}

std::vector<torch::Tensor> HatStrategy::cumulative_values() const {
  std::vector<torch::Tensor> values;
  for (const auto& item : cumulative_) values.push_back(item.second);
  return values;
}

void HatStrategy::before_task(StageContext& ctx) {
  check_model(ctx.model);
  if (!embeddings_.empty()) return;
  // N(0, 1) as the reference's nn.Embedding, from train.seed: the same on every rank.
  at::Generator generator = at::detail::createCPUGenerator(mix_seed({ctx.seed, 0x4a7}));
  const HiddenUnits& units = ctx.model.hidden_units();
  const int64_t tasks = static_cast<int64_t>(ctx.stream.size());
  for (size_t k = 0; k < units.layers.size(); ++k) {
    const int64_t width = units.layers[k]->units();
    embeddings_.emplace_back(units.names[k],
                             torch::randn({tasks, width}, generator, torch::kFloat32).to(ctx.device).requires_grad_());
    cumulative_.emplace_back(units.names[k], torch::zeros({width}, torch::TensorOptions().device(ctx.device)));
  }
}

void HatStrategy::before_forward(StageContext& ctx) {
  const int task = ctx.tasks.at(0);
  s_ = hat_annealed_scale(options_.smax, ctx.batch, ctx.batches_per_epoch);
  const HiddenUnits& units = ctx.model.hidden_units();
  gates_.clear();
  for (size_t k = 0; k < units.layers.size(); ++k) {
    gates_.push_back(torch::sigmoid(s_ * embeddings_[k].second[task]));
    units.layers[k].ptr()->set_gate(gates_.back());
  }
}

torch::Tensor HatStrategy::penalty_loss(StageContext&) {
  return hat_regulariser(gates_, cumulative_values(), options_.c);
}

void HatStrategy::after_backward(StageContext& ctx) {
  torch::NoGradGuard no_grad;
  // The embeddings' gradients: averaged over ranks in one all-reduce, then compensated.
  std::vector<torch::Tensor> gradients;
  for (auto& item : embeddings_) {
    torch::Tensor& embedding = item.second;
    gradients.push_back(embedding.grad().defined() ? embedding.grad() : torch::zeros_like(embedding));
  }
  torch::Tensor flat = torch::cat([&] {
    std::vector<torch::Tensor> rows;
    for (const auto& gradient : gradients) rows.push_back(gradient.reshape(-1));
    return rows;
  }());
  ctx.comm.allreduce(flat, ReduceOp::Sum);
  flat.div_(static_cast<double>(ctx.comm.size()));
  int64_t offset = 0;
  for (size_t k = 0; k < embeddings_.size(); ++k) {
    torch::Tensor& embedding = embeddings_[k].second;
    torch::Tensor gradient = flat.narrow(0, offset, embedding.numel()).view_as(embedding).clone();
    offset += embedding.numel();
    hat_compensate_gradient(gradient, embedding.detach(), s_, options_.smax);
    embedding.mutable_grad() = gradient;
  }

  // Weight gradients: 1 - min(a_<t of the output unit, a_<t of the input unit).
  const std::vector<torch::Tensor> cumulative = cumulative_values();
  const HiddenUnits& units = ctx.model.hidden_units();
  for (const auto& [name, parameter] : ctx.model.named_shared_parameters()) {
    const ParameterUnits* wiring = units.wiring(name);
    if (!parameter.grad().defined() || wiring == nullptr) continue;
    torch::Tensor used = output_units_view(*wiring, parameter, cumulative);
    const torch::Tensor in = input_units_view(*wiring, parameter, cumulative);
    if (in.defined()) used = torch::min(used, in);
    parameter.mutable_grad().mul_(1.0 - used);
  }
}

void HatStrategy::after_step(StageContext& ctx) {
  torch::NoGradGuard no_grad;
  for (auto& item : embeddings_) {
    torch::Tensor& embedding = item.second;
    embedding.sub_(ctx.lr * embedding.grad()).clamp_(-kEmbeddingClamp, kEmbeddingClamp);
    embedding.mutable_grad() = torch::Tensor();
  }
}

std::vector<HatStrategy::LayerUse> HatStrategy::units_used(int task) const {
  torch::NoGradGuard no_grad;
  std::vector<LayerUse> use;
  for (const auto& [name, embedding] : embeddings_) {
    const torch::Tensor gates = torch::sigmoid(options_.smax * embedding.detach().slice(0, 0, task + 1));
    use.push_back({gates[task].gt(0.5).sum().item<int64_t>(), std::get<0>(gates.max(0)).gt(0.5).sum().item<int64_t>(),
                   embedding.size(1)});
  }
  return use;
}

void HatStrategy::after_task(StageContext& ctx) {
  torch::NoGradGuard no_grad;
  const HiddenUnits& units = ctx.model.hidden_units();
  units.clear_gates();
  gates_.clear();
  const int task = ctx.tasks.at(0);
  for (size_t k = 0; k < embeddings_.size(); ++k) {
    torch::Tensor& cumulative = cumulative_[k].second;
    cumulative = torch::max(cumulative, torch::sigmoid(options_.smax * embeddings_[k].second[task].detach()));
  }
  std::ostringstream report;
  report << "hat: units used after task " << task + 1 << " (gate > 0.5: this task / all tasks so far)";
  const std::vector<LayerUse> use = units_used(task);
  for (size_t k = 0; k < use.size(); ++k)
    report << "\n  " << units.names[k] << ": " << use[k].this_task << " / " << use[k].so_far << " of " << use[k].width
           << " (" << std::fixed << std::setprecision(1)
           << 100.0 * static_cast<double>(use[k].so_far) / static_cast<double>(use[k].width) << "% used)";
  ctx.log.info(report.str());
}

std::vector<ResultTable> HatStrategy::result_tables(int tasks_trained) const {
  ResultTable table;
  table.name = "hat_units";
  table.columns = {"task", "layer", "units", "used_by_task", "used_so_far", "used_so_far_percent"};
  for (int task = 0; task < tasks_trained && !embeddings_.empty(); ++task) {
    const std::vector<LayerUse> use = units_used(task);
    for (size_t k = 0; k < use.size(); ++k)
      table.rows.push_back({static_cast<int64_t>(task + 1), embeddings_[k].first, use[k].width, use[k].this_task,
                            use[k].so_far,
                            100.0 * static_cast<double>(use[k].so_far) / static_cast<double>(use[k].width)});
  }
  return {table};
}

void HatStrategy::before_evaluate(ContinualNet& model, int task) {
  if (embeddings_.empty()) return;  // evaluated before the first task: no gates yet
  torch::NoGradGuard no_grad;
  const HiddenUnits& units = model.hidden_units();
  for (size_t k = 0; k < units.layers.size(); ++k)
    units.layers[k].ptr()->set_gate(torch::sigmoid(options_.smax * embeddings_[k].second[task].detach()));
}

void HatStrategy::after_evaluate(ContinualNet& model, int) { model.hidden_units().clear_gates(); }

NamedTensors HatStrategy::state() const {
  return join_sets({{"embedding", &embeddings_}, {"cumulative", &cumulative_}});
}

void HatStrategy::load_state(const NamedTensors& state) {
  split_sets(state, {{"embedding", &embeddings_}, {"cumulative", &cumulative_}});
  for (auto& item : embeddings_) item.second = item.second.detach().clone().requires_grad_();
}

}  // namespace clx
