#include "algorithms/ewc.h"

#include "algorithms/importance.h"
#include "algorithms/registry.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

void EwcStrategy::add_options(po::options_description& options) {
  const EwcOptions d;
  options.add_options()
      ("ewc.lambda", po::value<double>()->default_value(d.lambda), "EWC strength: penalty (lambda/2) sum F (theta - theta*)^2")
      ("ewc.fisher_samples", po::value<int64_t>()->default_value(d.fisher_samples),
       "training samples per task for the Fisher (per-sample gradients; <= 0: all)")
      ("ewc.labels", po::value<std::string>()->default_value("sampled"),
       "y in log p(y|x): sampled (from the model, the true Fisher) or true (empirical Fisher)")
      ("ewc.mode", po::value<std::string>()->default_value("separate"), "separate (one term per task) or online (one decayed term)")
      ("ewc.gamma", po::value<double>()->default_value(d.gamma), "online: F = gamma * F + F_t");
}

EwcOptions EwcStrategy::read_options(const po::variables_map& values) {
  EwcOptions o;
  o.lambda = values["ewc.lambda"].as<double>();
  o.fisher_samples = values["ewc.fisher_samples"].as<int64_t>();
  o.labels = parse_choice<FisherLabels>("ewc.labels", values["ewc.labels"].as<std::string>(),
                                        {{"sampled", FisherLabels::Sampled}, {"true", FisherLabels::True}});
  o.mode = parse_choice<EwcMode>("ewc.mode", values["ewc.mode"].as<std::string>(),
                                 {{"separate", EwcMode::Separate}, {"online", EwcMode::Online}});
  o.gamma = values["ewc.gamma"].as<double>();
  o.penalty_step = read_penalty_step(values);
  return o;
}

EwcStrategy::EwcStrategy(EwcOptions options) : options_(std::move(options)) {
  if (options_.lambda < 0) throw Error("ewc.lambda: must be >= 0");
  if (!(options_.gamma > 0 && options_.gamma <= 1)) throw Error("ewc.gamma: must be in (0, 1]");
}

std::vector<QuadraticTerm> EwcStrategy::penalty_terms() const {
  // Gradient of (lambda/2) F (theta - theta*)^2 is lambda F (theta - theta*).
  std::vector<QuadraticTerm> terms;
  for (size_t k = 0; k < fishers_.size(); ++k) terms.push_back(QuadraticTerm{fishers_[k], anchors_[k], options_.lambda});
  return terms;
}

void EwcStrategy::after_backward(StageContext& ctx) {
  penalty_after_backward(options_.penalty_step, ctx.model, penalty_terms());
}

void EwcStrategy::after_step(StageContext& ctx) {
  penalty_after_step(options_.penalty_step, ctx.model, penalty_terms(), ctx.lr);
}

void EwcStrategy::after_task(StageContext& ctx) {
  for (int task : ctx.tasks) {
    NamedTensors fisher = fisher_diagonal(ctx, task, options_.fisher_samples, options_.labels == FisherLabels::Sampled);
    if (options_.mode == EwcMode::Online && !fishers_.empty()) {
      torch::NoGradGuard no_grad;
      for (size_t k = 0; k < fisher.size(); ++k) fishers_[0][k].second.mul_(options_.gamma).add_(fisher[k].second);
      anchors_[0] = snapshot_shared(ctx.model);
    } else {
      fishers_.push_back(std::move(fisher));
      anchors_.push_back(snapshot_shared(ctx.model));
    }
  }
}

NamedTensors EwcStrategy::state() const {
  NamedTensors all;
  for (size_t k = 0; k < fishers_.size(); ++k) {
    const std::string fisher = "fisher" + std::to_string(k + 1), anchor = "anchor" + std::to_string(k + 1);
    for (auto& item : join_sets({{fisher.c_str(), &fishers_[k]}, {anchor.c_str(), &anchors_[k]}})) all.push_back(item);
  }
  return all;
}

void EwcStrategy::load_state(const NamedTensors& state) {
  fishers_.clear();
  anchors_.clear();
  for (size_t k = 1;; ++k) {
    NamedTensors fisher = with_prefix(state, "fisher" + std::to_string(k));
    if (fisher.empty()) break;
    fishers_.push_back(std::move(fisher));
    anchors_.push_back(with_prefix(state, "anchor" + std::to_string(k)));
  }
}

}  // namespace clx
