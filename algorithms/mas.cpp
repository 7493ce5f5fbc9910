#include "algorithms/mas.h"

#include "algorithms/importance.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

void MasStrategy::add_options(po::options_description& options) {
  options.add_options()("mas.lambda", po::value<double>()->default_value(1.0),
                        "MAS strength: penalty lambda * sum Omega (theta - theta*)^2");
}

MasStrategy::MasStrategy(double lambda) : lambda_(lambda) {
  if (lambda_ < 0) throw Error("mas.lambda: must be >= 0");
}

void MasStrategy::after_backward(StageContext& ctx) {
  if (!omega_.empty()) add_quadratic_pull(ctx.model, omega_, anchor_, 2.0 * lambda_);
}

void MasStrategy::after_task(StageContext& ctx) {
  if (omega_.empty()) omega_ = zeros_like_shared(ctx.model);
  for (int task : ctx.tasks) accumulate_into(omega_, mas_importance(ctx, task), "sum");
  anchor_ = snapshot_shared(ctx.model);
}

NamedTensors MasStrategy::state() const { return join_sets({{"omega", &omega_}, {"anchor", &anchor_}}); }

void MasStrategy::load_state(const NamedTensors& state) {
  split_sets(state, {{"omega", &omega_}, {"anchor", &anchor_}});
}

}  // namespace clx
