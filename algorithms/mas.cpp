#include "algorithms/mas.h"

#include "algorithms/registry.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

void MasStrategy::add_options(po::options_description& options) {
  const MasOptions d;
  options.add_options()
      ("mas.lambda", po::value<double>()->default_value(d.lambda), "MAS strength: penalty lambda * sum Omega (theta - theta*)^2")
      ("mas.importance", po::value<std::string>()->default_value("per_sample"),
       "per_sample (mean of |per-sample gradient|, the MAS paper) or batch (mean over training batches of |batch gradient|)");
}

MasOptions MasStrategy::read_options(const po::variables_map& values) {
  MasOptions o;
  o.lambda = values["mas.lambda"].as<double>();
  o.importance = parse_choice<MasForm>("mas.importance", values["mas.importance"].as<std::string>(),
                                       {{"per_sample", MasForm::PerSample}, {"batch", MasForm::Batch}});
  o.penalty_step = read_penalty_step(values);
  return o;
}

MasStrategy::MasStrategy(MasOptions options) : options_(options) {
  if (!(options_.lambda >= 0)) throw Error("mas.lambda: must be >= 0");
}

std::vector<QuadraticTerm> MasStrategy::penalty_terms() const {
  // lambda * sum Omega (theta - theta*)^2, gradient 2 lambda Omega (theta - theta*).
  if (omega_.empty()) return {};
  return {QuadraticTerm{omega_, anchor_, 2.0 * options_.lambda}};
}

void MasStrategy::after_backward(StageContext& ctx) {
  penalty_after_backward(options_.penalty_step, ctx.model, penalty_terms());
}

void MasStrategy::after_step(StageContext& ctx) {
  penalty_after_step(options_.penalty_step, ctx.model, penalty_terms(), ctx.lr);
}

void MasStrategy::after_task(StageContext& ctx) {
  if (omega_.empty()) omega_ = zeros_like_shared(ctx.model);
  for (int task : ctx.tasks) accumulate_into(omega_, mas_importance(ctx, task, options_.importance), Accumulation::Sum);
  anchor_ = snapshot_shared(ctx.model);
}

NamedTensors MasStrategy::state() const { return join_sets({{"omega", &omega_}, {"anchor", &anchor_}}); }

void MasStrategy::load_state(const NamedTensors& state) {
  split_sets(state, {{"omega", &omega_}, {"anchor", &anchor_}});
}

}  // namespace clx
