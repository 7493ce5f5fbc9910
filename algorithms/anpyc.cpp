#include "algorithms/anpyc.h"

#include <iomanip>
#include <sstream>

#include "algorithms/importance.h"
#include "algorithms/pruning.h"
#include "runtime/error.h"
#include "runtime/logging.h"

namespace clx {

namespace po = boost::program_options;

void AnpycStrategy::add_options(po::options_description& options) {
  const AnpycOptions d;
  options.add_options()
      ("anpyc.lambda", po::value<double>()->default_value(d.lambda), "ANPyC consolidation strength lambda")
      ("anpyc.sign", po::value<double>()->default_value(d.sign),
       "s in omega = max(0, s*g*theta + g^2*theta^2/2): -1 (paper: weight removed) or +1 (released code)")
      ("anpyc.accumulate", po::value<std::string>()->default_value(d.accumulate),
       "Omega(1:t) = Omega(1:t-1) + Omega_t (sum) or element-wise max")
      ("anpyc.prune", po::value<bool>()->default_value(d.prune), "adversarial neural pruning after every task but the last")
      ("anpyc.first_budget", po::value<double>()->default_value(d.first_budget), "pruning budget P_1 after task 1 (fraction)")
      ("anpyc.decay", po::value<double>()->default_value(d.decay), "budget decay: P_t = P_1 * decay^(t-1)")
      ("anpyc.step", po::value<double>()->default_value(d.step), "pruning step: prune step, 2*step, ... up to P_t")
      ("anpyc.retrain_epochs", po::value<int64_t>()->default_value(d.retrain_epochs),
       "epochs of retraining after each pruning step (released code: 30)")
      ("anpyc.threshold", po::value<std::string>()->default_value(d.threshold),
       "pruning threshold: per_tensor percentile or global over all tensors")
      ("anpyc.prune_biases", po::value<bool>()->default_value(d.prune_biases), "prune biases too (default: weights only)");
}

AnpycOptions AnpycStrategy::read_options(const po::variables_map& values) {
  AnpycOptions o;
  o.lambda = values["anpyc.lambda"].as<double>();
  o.sign = values["anpyc.sign"].as<double>();
  o.accumulate = values["anpyc.accumulate"].as<std::string>();
  o.prune = values["anpyc.prune"].as<bool>();
  o.first_budget = values["anpyc.first_budget"].as<double>();
  o.decay = values["anpyc.decay"].as<double>();
  o.step = values["anpyc.step"].as<double>();
  o.retrain_epochs = values["anpyc.retrain_epochs"].as<int64_t>();
  o.threshold = values["anpyc.threshold"].as<std::string>();
  o.prune_biases = values["anpyc.prune_biases"].as<bool>();
  return o;
}

AnpycStrategy::AnpycStrategy(AnpycOptions options) : options_(std::move(options)) {
  if (options_.lambda < 0) throw Error("anpyc.lambda: must be >= 0");
  if (options_.sign != -1.0 && options_.sign != 1.0) throw Error("anpyc.sign: must be -1 or +1");
  if (options_.accumulate != "sum" && options_.accumulate != "max")
    throw Error("anpyc.accumulate: '" + options_.accumulate + "' is not one of sum, max");
  if (!(options_.first_budget > 0 && options_.first_budget < 1)) throw Error("anpyc.first_budget: must be in (0, 1)");
  if (!(options_.decay > 0 && options_.decay <= 1)) throw Error("anpyc.decay: must be in (0, 1]");
  if (!(options_.step > 0 && options_.step <= options_.first_budget))
    throw Error("anpyc.step: must be in (0, anpyc.first_budget]");
  if (options_.retrain_epochs < 0) throw Error("anpyc.retrain_epochs: must be >= 0");
  if (options_.threshold != "per_tensor" && options_.threshold != "global")
    throw Error("anpyc.threshold: '" + options_.threshold + "' is not one of per_tensor, global");
}

void AnpycStrategy::ensure_initialised(const ContinualNet& model) {
  if (!omega_.empty()) return;
  omega_ = zeros_like_shared(model);
  for (const auto& [name, parameter] : model.named_shared_parameters()) {
    const bool prunable = parameter.dim() >= 2 || options_.prune_biases;
    prunable_.emplace_back(name, torch::full(parameter.sizes(), prunable, torch::kBool));
    // Nothing is used before task 1; tensors that are never pruned count as used.
    masks_.emplace_back(name, torch::full(parameter.sizes(), prunable ? 0.0f : 1.0f));
  }
}

void AnpycStrategy::before_task(StageContext& ctx) {
  ensure_initialised(ctx.model);
  if (ctx.tasks.size() != 1) throw Error("anpyc trains one task per stage");
  theta_old_ = snapshot_shared(ctx.model);
}

void AnpycStrategy::after_backward(StageContext& ctx) {
  // Eq. 5-6: grad += 2 * lambda * Omega(1:t-1) * (theta - theta_old); Omega is zero before task 2.
  if (ctx.stage > 0) add_quadratic_pull(ctx.model, omega_, theta_old_, 2.0 * options_.lambda);
  if (!retraining_) return;
  torch::NoGradGuard no_grad;
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k)
    if (parameters[k].second.grad().defined()) parameters[k].second.grad().mul_(masks_[k].second);
}

void AnpycStrategy::after_step(StageContext& ctx) {
  if (!retraining_) return;
  // Masked gradients alone do not hold free weights at zero under momentum or weight decay.
  torch::NoGradGuard no_grad;
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) parameters[k].second.mul_(masks_[k].second);
}

void AnpycStrategy::prune_after_task(StageContext& ctx, int task) {
  const bool global = options_.threshold == "global";
  const std::vector<double> fractions = pruning_fractions(task + 1, options_.first_budget, options_.decay, options_.step);
  // A resumed round continues after its last finished step; the step that was
  // retraining when the checkpoint was taken continues its retraining.
  const bool resumed_in_retraining = ctx.resuming_after_task && retraining_;
  if (!ctx.resuming_after_task) {
    // Candidates: weights free before this task (task 1: every prunable weight).
    candidates_.clear();
    for (size_t k = 0; k < masks_.size(); ++k)
      candidates_.emplace_back(masks_[k].first, masks_[k].second.lt(0.5).logical_and(prunable_[k].second));
    freed_.clear();
    steps_done_ = 0;
  }
  const size_t first_step = static_cast<size_t>(steps_done_);
  for (size_t s = first_step; s < fractions.size(); ++s) {
    const double fraction = fractions[s];
    if (!(resumed_in_retraining && s == first_step)) {
      NamedTensors score = entropy_taylor_importance(ctx, task, options_.sign);
      // Weights freed by an earlier step of this round stay freed: they rank lowest.
      for (size_t k = 0; k < score.size() && !freed_.empty(); ++k) score[k].second.masked_fill_(freed_[k].second, -1.0);
      freed_ = lowest_scoring(score, candidates_, fraction, global);
      torch::NoGradGuard no_grad;
      const auto parameters = ctx.model.named_shared_parameters();
      for (size_t k = 0; k < masks_.size(); ++k) {
        masks_[k].second = freed_[k].second.logical_not().to(torch::kFloat32);
        parameters[k].second.mul_(masks_[k].second);
      }
      std::ostringstream line;
      line << "anpyc: task " << task + 1 << " pruned " << std::fixed << std::setprecision(0) << 100 * fraction
           << "% of its candidate weights";
      ctx.log.info(line.str());
    }
    if (options_.retrain_epochs > 0) {
      retraining_ = true;
      std::ostringstream label;
      label << "retrain (pruned " << std::fixed << std::setprecision(0) << 100 * fraction << "%)";
      ctx.train_epochs(options_.retrain_epochs, label.str());
      retraining_ = false;
    }
    ++steps_done_;
  }
  candidates_.clear();
  freed_.clear();
  steps_done_ = 0;
}

void AnpycStrategy::after_task(StageContext& ctx) {
  const int task = ctx.tasks.front();
  const bool last = task + 1 >= ctx.stream.size();
  if (options_.prune && !last) {
    prune_after_task(ctx, task);
  } else {
    // No pruning: this task uses every weight that was still free.
    for (size_t k = 0; k < masks_.size(); ++k) masks_[k].second.fill_(1.0f);
  }
  // Omega_t on the final weights of the task (after the last retraining), then accumulated (Eq. 8).
  accumulate_into(omega_, entropy_taylor_importance(ctx, task, options_.sign), options_.accumulate);
  if (options_.prune) ctx.log.info("anpyc: after task " + std::to_string(task + 1) + "\n" + describe_masks(masks_, prunable_));
}

NamedTensors AnpycStrategy::state() const {
  NamedTensors all = join_sets({{"omega", &omega_}, {"theta_old", &theta_old_}, {"mask", &masks_},
                                {"candidates", &candidates_}, {"freed", &freed_}});
  all.emplace_back("progress.steps_done", torch::tensor(steps_done_, torch::kInt64));
  all.emplace_back("progress.retraining", torch::tensor(static_cast<int64_t>(retraining_), torch::kInt64));
  return all;
}

void AnpycStrategy::load_state(const NamedTensors& state) {
  split_sets(state, {{"omega", &omega_}, {"theta_old", &theta_old_}, {"mask", &masks_},
                     {"candidates", &candidates_}, {"freed", &freed_}});
  steps_done_ = named(state, "progress.steps_done").item<int64_t>();
  retraining_ = named(state, "progress.retraining").item<int64_t>() != 0;
  prunable_.clear();
  for (const auto& [name, mask] : masks_) {
    const bool prunable = mask.dim() >= 2 || options_.prune_biases;
    prunable_.emplace_back(name, torch::full(mask.sizes(), prunable, torch::kBool));
  }
}

}  // namespace clx
