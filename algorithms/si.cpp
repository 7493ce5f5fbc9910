#include "algorithms/si.h"

#include "algorithms/registry.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

void SiStrategy::add_options(po::options_description& options) {
  const SiOptions d;
  options.add_options()
      ("si.c", po::value<double>()->default_value(d.c), "SI strength c: penalty c * sum Omega (theta - theta*)^2")
      ("si.xi", po::value<double>()->default_value(d.xi), "SI damping xi in Omega += w / ((delta theta)^2 + xi)");
}

SiOptions SiStrategy::read_options(const po::variables_map& values) {
  return SiOptions{values["si.c"].as<double>(), values["si.xi"].as<double>(), read_penalty_step(values)};
}

SiStrategy::SiStrategy(SiOptions options) : options_(options) {
  if (options_.c < 0) throw Error("si.c: must be >= 0");
  if (!(options_.xi > 0)) throw Error("si.xi: must be positive");
}

void SiStrategy::before_task(StageContext& ctx) {
  if (omega_.empty()) {
    omega_ = zeros_like_shared(ctx.model);
    anchor_ = snapshot_shared(ctx.model);
  }
  path_ = zeros_like_shared(ctx.model);
  start_ = snapshot_shared(ctx.model);
  previous_ = snapshot_shared(ctx.model);
}

std::vector<QuadraticTerm> SiStrategy::penalty_terms() const {
  // c * sum Omega (theta - theta*)^2, gradient 2 c Omega (theta - theta*).
  return {QuadraticTerm{omega_, anchor_, 2.0 * options_.c}};
}

void SiStrategy::after_backward(StageContext& ctx) {
  // The gradient here is the all-reduced task-loss gradient: keep it before adding the penalty.
  task_gradient_.clear();
  for (const auto& [name, parameter] : ctx.model.named_shared_parameters())
    task_gradient_.push_back(parameter.grad().defined() ? parameter.grad().clone() : torch::zeros_like(parameter));
  if (ctx.stage > 0) penalty_after_backward(options_.penalty_step, ctx.model, penalty_terms());
}

void SiStrategy::after_step(StageContext& ctx) {
  // delta_theta is the actual update, the proximal pull included.
  if (ctx.stage > 0) penalty_after_step(options_.penalty_step, ctx.model, penalty_terms(), ctx.lr);
  torch::NoGradGuard no_grad;
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) {
    const torch::Tensor& theta = parameters[k].second;
    path_[k].second.sub_(task_gradient_[k] * (theta - previous_[k].second));
    previous_[k].second.copy_(theta);
  }
}

void SiStrategy::after_task(StageContext& ctx) {
  torch::NoGradGuard no_grad;
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) {
    const torch::Tensor delta = parameters[k].second.detach() - start_[k].second;
    omega_[k].second.add_((path_[k].second / (delta * delta + options_.xi)).clamp_min_(0.0));
  }
  anchor_ = snapshot_shared(ctx.model);
}

NamedTensors SiStrategy::state() const {
  return join_sets({{"omega", &omega_}, {"anchor", &anchor_}, {"path", &path_}, {"start", &start_},
                    {"previous", &previous_}});
}

void SiStrategy::load_state(const NamedTensors& state) {
  split_sets(state, {{"omega", &omega_}, {"anchor", &anchor_}, {"path", &path_}, {"start", &start_},
                     {"previous", &previous_}});
}

}  // namespace clx
