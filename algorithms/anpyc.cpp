#include "algorithms/anpyc.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "algorithms/pruning.h"
#include "algorithms/registry.h"
#include "runtime/error.h"
#include "runtime/logging.h"

namespace clx {

namespace po = boost::program_options;

namespace {

// "55,80,91,96,98.25": a compression schedule as the option writes it.
std::string schedule_text(const std::vector<double>& percents) {
  std::ostringstream text;
  for (size_t k = 0; k < percents.size(); ++k) text << (k ? "," : "") << std::setprecision(10) << percents[k];
  return text.str();
}

}  // namespace

void AnpycStrategy::add_options(po::options_description& options) {
  const AnpycOptions d;
  options.add_options()
      ("anpyc.lambda", po::value<double>()->default_value(d.lambda), "ANPyC consolidation strength lambda")
      ("anpyc.importance_batch", po::value<int64_t>()->default_value(d.importance.batch),
       "samples per importance batch (the task's training data in stored order)")
      ("anpyc.entropy", po::value<std::string>()->default_value("sum"),
       "H_B of an importance batch: sum (released code) or mean of the per-sample entropies")
      ("anpyc.sign", po::value<double>()->default_value(d.importance.sign),
       "s in omega = max(0, s*g*theta + h*theta^2/2): +1 (released code) or -1 (the weight removed)")
      ("anpyc.hessian", po::value<std::string>()->default_value("gradient_squared"),
       "h in omega: gradient_squared (g^2 of the batch gradient, released code) or fisher (per-sample diagonal Fisher)")
      ("anpyc.accumulate", po::value<std::string>()->default_value("sum"),
       "Omega(1:t) = Omega(1:t-1) + Omega_t (sum) or element-wise max")
      ("anpyc.prune", po::value<bool>()->default_value(d.prune),
       "adversarial neural pruning (when: anpyc.prune_schedule)")
      ("anpyc.prune_schedule", po::value<std::string>()->default_value("released"),
       "released (after every task but the last, steps up to the decaying budget) | compression (a stream of one "
       "task pruned in the rounds of anpyc.compression_schedule after its training, each retrained "
       "anpyc.retrain_epochs and evaluated: the paper's Table IV, written to compression.csv)")
      ("anpyc.compression_schedule", po::value<std::string>()->default_value(schedule_text(d.compression_schedule)),
       "prune_schedule=compression: percent of the weights freed after each round, cumulative, increasing, each in "
       "(0, 100); of each shared tensor, or of the whole network with anpyc.threshold=global")
      ("anpyc.first_budget", po::value<double>()->default_value(d.first_budget),
       "pruning budget P_1 after task 1 (fraction, a whole percent)")
      ("anpyc.decay", po::value<double>()->default_value(d.decay), "budget decay: P_t = floor(decay * P_{t-1}) in whole percent")
      ("anpyc.step", po::value<double>()->default_value(d.step),
       "pruning step (fraction, a whole percent): step, 2*step, ... up to the first multiple that reaches P_t")
      ("anpyc.retrain_epochs", po::value<int64_t>()->default_value(d.retrain_epochs),
       "epochs of retraining after each pruning step (released code: 30)")
      ("anpyc.retrain_until_recovered", po::value<bool>()->default_value(d.retrain_until_recovered),
       "stop a step's retraining once the training loss is back at its value before the step (at most retrain_epochs)")
      ("anpyc.threshold", po::value<std::string>()->default_value("per_tensor"),
       "pruning percentile: per_tensor or global over all tensors")
      ("anpyc.inference_masks", po::value<std::string>()->default_value("none"),
       "none (evaluation uses the whole network, as both sources) | per_task (evaluating task i zeroes the weights "
       "first used after task i)");
}

AnpycOptions AnpycStrategy::read_options(const po::variables_map& values) {
  AnpycOptions o;
  o.lambda = values["anpyc.lambda"].as<double>();
  o.importance.batch = values["anpyc.importance_batch"].as<int64_t>();
  o.importance.entropy = parse_choice<EntropyReduction>("anpyc.entropy", values["anpyc.entropy"].as<std::string>(),
                                                        {{"sum", EntropyReduction::Sum}, {"mean", EntropyReduction::Mean}});
  o.importance.sign = values["anpyc.sign"].as<double>();
  o.importance.hessian = parse_choice<HessianEstimate>(
      "anpyc.hessian", values["anpyc.hessian"].as<std::string>(),
      {{"gradient_squared", HessianEstimate::GradientSquared}, {"fisher", HessianEstimate::Fisher}});
  o.accumulate = parse_choice<Accumulation>("anpyc.accumulate", values["anpyc.accumulate"].as<std::string>(),
                                            {{"sum", Accumulation::Sum}, {"max", Accumulation::Max}});
  o.penalty_step = read_penalty_step(values);
  o.prune = values["anpyc.prune"].as<bool>();
  o.prune_schedule = parse_choice<PruneSchedule>("anpyc.prune_schedule", values["anpyc.prune_schedule"].as<std::string>(),
                                                 {{"released", PruneSchedule::Released},
                                                  {"compression", PruneSchedule::Compression}});
  o.compression_schedule = parse_compression_schedule(values["anpyc.compression_schedule"].as<std::string>());
  o.first_budget = values["anpyc.first_budget"].as<double>();
  o.decay = values["anpyc.decay"].as<double>();
  o.step = values["anpyc.step"].as<double>();
  o.retrain_epochs = values["anpyc.retrain_epochs"].as<int64_t>();
  o.retrain_until_recovered = values["anpyc.retrain_until_recovered"].as<bool>();
  o.threshold = parse_choice<PruningThreshold>("anpyc.threshold", values["anpyc.threshold"].as<std::string>(),
                                               {{"per_tensor", PruningThreshold::PerTensor}, {"global", PruningThreshold::Global}});
  o.inference_masks = parse_choice<InferenceMasks>("anpyc.inference_masks", values["anpyc.inference_masks"].as<std::string>(),
                                                   {{"none", InferenceMasks::None}, {"per_task", InferenceMasks::PerTask}});
  return o;
}

namespace {

// A fraction that must be a whole percent in [low, high], as an integer percent.
int whole_percent(double fraction, const std::string& option, int low, int high) {
  const double percent = 100.0 * fraction;
  const long rounded = std::lround(percent);
  if (!(std::fabs(percent - static_cast<double>(rounded)) < 1e-6) || rounded < low || rounded > high)
    throw Error(option + ": must be a whole percent between " + std::to_string(low) + "% and " + std::to_string(high) +
                "% (a fraction such as 0.1), got " + std::to_string(fraction));
  return static_cast<int>(rounded);
}

// "50%", "98.25%".
std::string percent_text(double percent) {
  std::ostringstream text;
  text << std::setprecision(10) << percent << "%";
  return text.str();
}

}  // namespace

AnpycStrategy::AnpycStrategy(AnpycOptions options) : options_(std::move(options)) {
  if (!(options_.lambda >= 0) || !std::isfinite(options_.lambda)) throw Error("anpyc.lambda: must be >= 0");
  if (options_.importance.batch <= 0)
    throw Error("anpyc.importance_batch: must be a positive number of samples, got " +
                std::to_string(options_.importance.batch));
  if (options_.importance.sign != -1.0 && options_.importance.sign != 1.0) throw Error("anpyc.sign: must be -1 or +1");
  first_budget_percent_ = whole_percent(options_.first_budget, "anpyc.first_budget", 1, 99);
  if (!(options_.decay > 0 && options_.decay <= 1)) throw Error("anpyc.decay: must be in (0, 1]");
  step_percent_ = whole_percent(options_.step, "anpyc.step", 1, 100);
  if (options_.retrain_epochs < 0) throw Error("anpyc.retrain_epochs: must be >= 0");
  check_compression_schedule(options_.compression_schedule);
}

void AnpycStrategy::ensure_initialised(const ContinualNet& model) {
  if (!omega_.empty()) return;
  omega_ = zeros_like_shared(model);
  // Nothing is used before task 1.
  masks_ = zeros_like_shared(model);
  if (options_.inference_masks == InferenceMasks::PerTask)
    for (const auto& [name, parameter] : model.named_shared_parameters())
      first_used_.emplace_back(name, torch::zeros(parameter.sizes(), parameter.options().dtype(torch::kUInt8)));
}

void AnpycStrategy::check_stream(const TaskStream& stream) const {
  if (compressing() && stream.size() != 1)
    throw Error("anpyc.prune_schedule=compression prunes a network trained on one task, this stream has " +
                std::to_string(stream.size()) + " (data.tasks=1, with data.classes_per_task the classes to learn)");
  if (options_.inference_masks == InferenceMasks::PerTask && stream.size() > 255)
    throw Error("anpyc.inference_masks=per_task records the first task of each weight in one byte: at most 255 tasks, "
                "this stream has " + std::to_string(stream.size()));
}

void AnpycStrategy::before_task(StageContext& ctx) {
  ensure_initialised(ctx.model);
  if (ctx.tasks.size() != 1) throw Error("anpyc trains one task per stage");
  check_stream(ctx.stream);
  theta_old_ = snapshot_shared(ctx.model);
}

std::vector<QuadraticTerm> AnpycStrategy::penalty_terms() const {
  // Eq. 5-6: lambda * sum Omega(1:t-1) (theta - theta_old)^2, gradient 2 lambda Omega (theta - theta_old).
  return {QuadraticTerm{omega_, theta_old_, 2.0 * options_.lambda}};
}

void AnpycStrategy::after_backward(StageContext& ctx) {
  // Omega is zero before task 2: nothing to consolidate.
  if (ctx.stage > 0) penalty_after_backward(options_.penalty_step, ctx.model, penalty_terms());
  if (!retraining_) return;
  torch::NoGradGuard no_grad;
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k)
    if (parameters[k].second.grad().defined()) parameters[k].second.grad().mul_(masks_[k].second);
}

void AnpycStrategy::after_step(StageContext& ctx) {
  if (ctx.stage > 0) penalty_after_step(options_.penalty_step, ctx.model, penalty_terms(), ctx.lr);
  if (!retraining_) return;
  // Masked gradients alone do not hold free weights at zero under momentum or weight decay.
  torch::NoGradGuard no_grad;
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) parameters[k].second.mul_(masks_[k].second);
}

void AnpycStrategy::prune_step(StageContext& ctx, int task, double percent) {
  // Omega_t on the current weights; weights freed by an earlier step are zero,
  // so their Omega is 0 and they are freed again (kept in freed_ all the same).
  const NamedTensors score = entropy_taylor_importance(ctx, task, options_.importance);
  const NamedTensors free = weights_to_free(score, candidates_, percent, /*first_task=*/task == 0,
                                            options_.threshold == PruningThreshold::Global);
  torch::NoGradGuard no_grad;
  const auto parameters = ctx.model.named_shared_parameters();
  for (size_t k = 0; k < masks_.size(); ++k) {
    freed_[k].second.logical_or_(free[k].second);
    masks_[k].second = freed_[k].second.logical_not().to(parameters[k].second.scalar_type());
    parameters[k].second.mul_(masks_[k].second);
  }
  loss_before_step_ = ctx.last_epoch_loss;
  ctx.log.info("anpyc: task " + std::to_string(task + 1) + " pruning step " + percent_text(percent) + ":\n" +
               describe_masks(masks_));
}

void AnpycStrategy::retrain(StageContext& ctx, double percent) {
  if (options_.retrain_epochs == 0) return;
  retraining_ = true;
  const std::string label = "retrain (pruned " + percent_text(percent) + ")";
  if (!options_.retrain_until_recovered) {
    ctx.train_epochs(options_.retrain_epochs, label);
  } else {
    // One epoch per call, so that the loss can be checked after each; a
    // resumed call first finishes the epoch its checkpoint was taken in.
    bool recovered = false;
    while (!recovered && retrain_epochs_done_ < options_.retrain_epochs) {
      ctx.train_epochs(1, label + " epoch " + std::to_string(retrain_epochs_done_ + 1) + " of at most " +
                              std::to_string(options_.retrain_epochs));
      ++retrain_epochs_done_;
      recovered = ctx.last_epoch_loss <= loss_before_step_;
    }
    std::ostringstream line;
    line << "anpyc: " << label << ": training loss " << std::setprecision(4) << ctx.last_epoch_loss
         << (recovered ? " is back at or below " : " is still above ") << loss_before_step_ << " after "
         << retrain_epochs_done_ << " epoch(s)";
    ctx.log.info(line.str());
    retrain_epochs_done_ = 0;
  }
  retraining_ = false;
}

void AnpycStrategy::record_compression_round(StageContext& ctx, int task, double percent,
                                             std::optional<double> accuracy_after_pruning) {
  if (!ctx.evaluate) throw Error("anpyc.prune_schedule=compression: the trainer gave after_task no evaluation");
  CompressionRound round;
  round.schedule_percent = percent;
  round.accuracy_after_pruning = accuracy_after_pruning;
  round.accuracy = ctx.evaluate().at(task);
  std::vector<std::string> names;
  std::vector<int64_t> totals;
  for (const auto& [name, freed] : freed_) {
    names.push_back(name);
    totals.push_back(freed.numel());
    round.remaining.push_back(freed.numel() - freed.sum().item<int64_t>());
  }
  compression_rounds_.push_back(std::move(round));
  int64_t head = 0;
  for (const auto& parameter : ctx.model.head_parameters(ctx.head_for(task))) head += parameter.numel();
  const size_t done = compression_rounds_.size() - 1;
  ctx.log.info("anpyc: compression " +
               (done == 0 ? std::string("before pruning") : "round " + std::to_string(done) + "/" +
                                                                std::to_string(options_.compression_schedule.size())) +
               " (weights and biases left; accuracy on the evaluation split)\n" +
               describe_compression(names, totals, compression_rounds_, head));
}

void AnpycStrategy::prune_after_task(StageContext& ctx, int task) {
  std::vector<double> steps = options_.compression_schedule;
  if (!compressing()) {
    steps.clear();
    for (int percent : pruning_steps_percent(task + 1, first_budget_percent_, options_.decay, step_percent_))
      steps.push_back(percent);
  }
  // A resumed round continues after its last finished step; the step that was
  // retraining when the checkpoint was taken continues its retraining.
  const bool resumed_in_retraining = ctx.resuming_after_task && retraining_;
  if (!ctx.resuming_after_task) {
    // Candidates: weights free before this task (task 1: every weight).
    candidates_.clear();
    freed_.clear();
    for (const auto& [name, mask] : masks_) {
      candidates_.emplace_back(name, mask.lt(0.5));
      freed_.emplace_back(name, torch::zeros_like(mask, torch::kBool));
    }
    steps_done_ = 0;
    retrain_epochs_done_ = 0;
    compression_rounds_.clear();
    if (compressing()) record_compression_round(ctx, task, 0.0, std::nullopt);  // the trained network, dense
  }
  const size_t first_step = static_cast<size_t>(steps_done_);
  for (size_t s = first_step; s < steps.size(); ++s) {
    if (!(resumed_in_retraining && s == first_step)) {
      prune_step(ctx, task, steps[s]);
      if (compressing()) accuracy_after_pruning_ = ctx.evaluate().at(task);
    }
    retrain(ctx, steps[s]);
    if (compressing()) record_compression_round(ctx, task, steps[s], accuracy_after_pruning_);
    ++steps_done_;
  }
  // No step (a budget of 0%): every candidate is used by this task.
  if (steps.empty())
    for (auto& [name, mask] : masks_) mask.fill_(1.0);
  candidates_.clear();
  freed_.clear();
  steps_done_ = 0;
}

void AnpycStrategy::after_task(StageContext& ctx) {
  const int task = ctx.tasks.front();
  const bool last = task + 1 >= ctx.stream.size();
  if (options_.prune && (!last || compressing())) {
    prune_after_task(ctx, task);
  } else {
    // No pruning: this task uses every weight that was still free.
    for (auto& [name, mask] : masks_) mask.fill_(1.0);
  }
  // The weights used from now on and used by no earlier task are this task's.
  for (size_t k = 0; k < first_used_.size(); ++k)
    first_used_[k].second.masked_fill_(masks_[k].second.gt(0.5).logical_and(first_used_[k].second.eq(0)), task + 1);
  // Omega_t on the final weights of the task (after the last retraining), then accumulated (Eq. 8).
  accumulate_into(omega_, entropy_taylor_importance(ctx, task, options_.importance), options_.accumulate);
  if (options_.prune) ctx.log.info("anpyc: after task " + std::to_string(task + 1) + "\n" + describe_masks(masks_));
}

void AnpycStrategy::before_evaluate(ContinualNet& model, int task) {
  if (first_used_.empty()) return;
  torch::NoGradGuard no_grad;
  evaluated_weights_ = snapshot_shared(model);
  const auto parameters = model.named_shared_parameters();
  // Weights first used after `task` are zeroed; unused ones (0) are zero already or kept.
  for (size_t k = 0; k < parameters.size(); ++k)
    parameters[k].second.masked_fill_(first_used_[k].second.gt(task + 1), 0.0);
}

void AnpycStrategy::after_evaluate(ContinualNet& model, int task) {
  if (evaluated_weights_.empty()) return;
  torch::NoGradGuard no_grad;
  const auto parameters = model.named_shared_parameters();
  for (size_t k = 0; k < parameters.size(); ++k) parameters[k].second.copy_(evaluated_weights_[k].second);
  evaluated_weights_.clear();
}

NamedTensors AnpycStrategy::state() const {
  NamedTensors all = join_sets({{"omega", &omega_}, {"theta_old", &theta_old_}, {"mask", &masks_},
                                {"first_used", &first_used_}, {"candidates", &candidates_}, {"freed", &freed_}});
  all.emplace_back("progress.steps_done", torch::tensor(steps_done_, torch::kInt64));
  all.emplace_back("progress.retraining", torch::tensor(static_cast<int64_t>(retraining_), torch::kInt64));
  all.emplace_back("progress.retrain_epochs_done", torch::tensor(retrain_epochs_done_, torch::kInt64));
  all.emplace_back("progress.loss_before_step", torch::tensor(loss_before_step_, torch::kFloat64));
  if (compressing()) {
    // One row per round: schedule percent, accuracy after pruning (NaN: none), accuracy, remaining per tensor.
    const int64_t columns = 3 + static_cast<int64_t>(masks_.size());
    torch::Tensor rounds = torch::zeros({static_cast<int64_t>(compression_rounds_.size()), columns}, torch::kFloat64);
    for (size_t r = 0; r < compression_rounds_.size(); ++r) {
      const CompressionRound& round = compression_rounds_[r];
      std::vector<double> row{round.schedule_percent, round.accuracy_after_pruning.value_or(std::nan("")), round.accuracy};
      for (int64_t remaining : round.remaining) row.push_back(static_cast<double>(remaining));
      rounds[static_cast<int64_t>(r)].copy_(torch::tensor(row, torch::kFloat64));
    }
    all.emplace_back("compression.rounds", rounds);
    all.emplace_back("compression.accuracy_after_pruning", torch::tensor(accuracy_after_pruning_, torch::kFloat64));
  }
  return all;
}

void AnpycStrategy::load_state(const NamedTensors& state) {
  split_sets(state, {{"omega", &omega_}, {"theta_old", &theta_old_}, {"mask", &masks_},
                     {"first_used", &first_used_}, {"candidates", &candidates_}, {"freed", &freed_}});
  steps_done_ = named(state, "progress.steps_done").item<int64_t>();
  retraining_ = named(state, "progress.retraining").item<int64_t>() != 0;
  retrain_epochs_done_ = named(state, "progress.retrain_epochs_done").item<int64_t>();
  loss_before_step_ = named(state, "progress.loss_before_step").item<double>();
  compression_rounds_.clear();
  if (compressing()) {
    const torch::Tensor rounds = named(state, "compression.rounds").to(torch::kCPU, torch::kFloat64);
    for (int64_t r = 0; r < rounds.size(0); ++r) {
      CompressionRound round;
      round.schedule_percent = rounds[r][0].item<double>();
      const double after_pruning = rounds[r][1].item<double>();
      if (!std::isnan(after_pruning)) round.accuracy_after_pruning = after_pruning;
      round.accuracy = rounds[r][2].item<double>();
      for (int64_t k = 3; k < rounds.size(1); ++k) round.remaining.push_back(static_cast<int64_t>(rounds[r][k].item<double>()));
      compression_rounds_.push_back(std::move(round));
    }
    accuracy_after_pruning_ = named(state, "compression.accuracy_after_pruning").item<double>();
  }
}

std::vector<ResultTable> AnpycStrategy::result_tables(int /*tasks_trained: compression trains one task*/) const {
  if (!compressing() || compression_rounds_.empty()) return {};
  std::vector<std::string> names;
  std::vector<int64_t> totals;
  for (const auto& [name, mask] : masks_) {
    names.push_back(name);
    totals.push_back(mask.numel());
  }
  return {compression_table(names, totals, compression_rounds_)};
}

}  // namespace clx
