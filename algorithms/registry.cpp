#include "algorithms/registry.h"

#include "algorithms/anpyc.h"
#include "algorithms/clnp.h"
#include "algorithms/dgr.h"
#include "algorithms/ewc.h"
#include "algorithms/finetune.h"
#include "algorithms/dgm.h"
#include "algorithms/hat.h"
#include "algorithms/joint.h"
#include "algorithms/lwf.h"
#include "algorithms/mas.h"
#include "algorithms/sgd.h"
#include "algorithms/sgdf.h"
#include "algorithms/si.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

const std::vector<StrategyInfo>& strategy_registry() {
  static const std::vector<StrategyInfo> registry = {
      {"sgd", "single head, plain SGD on each task in turn (lower bound)", {},
       [](const po::variables_map&) { return std::make_unique<SgdStrategy>(); }, true},
      {"sgdf", "whole network on task 1, then only the new heads (SGD-F)", {},
       [](const po::variables_map&) { return std::make_unique<SgdfStrategy>(); }, true},
      {"finetune", "one head per task, shared trunk fine-tuned on each task", {},
       [](const po::variables_map&) { return std::make_unique<FinetuneStrategy>(); }, true},
      {"joint", "all tasks trained at once (upper bound; source of m_i for FWT)", {},
       [](const po::variables_map&) { return std::make_unique<JointStrategy>(); }, true},
      {"ewc", "elastic weight consolidation, per-sample Fisher", EwcStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<EwcStrategy>(EwcStrategy::read_options(v)); }, true},
      {"si", "synaptic intelligence (path-integral importance)", SiStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<SiStrategy>(SiStrategy::read_options(v)); }, true},
      {"mas", "memory aware synapses (output-sensitivity importance)", MasStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<MasStrategy>(MasStrategy::read_options(v)); }, true},
      {"lwf", "learning without forgetting (distillation of earlier heads)", LwfStrategy::add_options,
       [](const po::variables_map& v) {
         return std::make_unique<LwfStrategy>(v["lwf.lambda"].as<double>(), v["lwf.temperature"].as<double>());
       }},
      {"anpyc", "ANPyC: entropy-Taylor consolidation with adversarial neural pruning (anpyc.prune)",
       AnpycStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<AnpycStrategy>(AnpycStrategy::read_options(v)); }, true},
      {"hat", "hard attention to the task: learned per-task unit gates, gradients of used units blocked",
       HatStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<HatStrategy>(HatStrategy::read_options(v)); }},
      {"clnp", "node-importance pruning: units claimed per task, the rest freed, old units frozen (zero forgetting)",
       ClnpStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<ClnpStrategy>(ClnpStrategy::read_options(v)); }},
      {"dgr", "deep generative replay: the previous generator (a VAE trained beside a classifier, or the VAE or GAN "
              "itself) replays the earlier tasks; a classifier's replay is labelled by the previous classifier",
       DgrStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<DgrStrategy>(DgrStrategy::read_options(v)); }, true},
      {"dgm", "dynamic generative memory (class-incremental): a generator with per-task learned masks on its weights "
              "(dgm.masks=weights, DGMw) or units (DGMa) that grows after every task, replaying earlier classes to "
              "the critic's classifier (model.arch=dgm)",
       DgmStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<DgmStrategy>(DgmStrategy::read_options(v)); }},
  };
  return registry;
}

void add_strategy_options(po::options_description& options) {
  options.add_options()("train.penalty_step", po::value<std::string>()->default_value("explicit"),
                        "how the quadratic penalties of anpyc, ewc, si and mas are applied: explicit (their gradient "
                        "added to the averaged gradient) | proximal (closed-form step after the optimizer step, "
                        "stable at any strength)");
  for (const auto& info : strategy_registry())
    if (info.add_options) info.add_options(options);
}

std::string strategy_names() {
  std::string names;
  for (const auto& info : strategy_registry()) names += (names.empty() ? "" : ", ") + info.name;
  return names;
}

std::string generation_strategy_names() {
  std::string names;
  for (const auto& info : strategy_registry())
    if (info.trains_generators) names += (names.empty() ? "" : ", ") + info.name;
  return names;
}

bool strategy_trains_generators(const std::string& name) {
  for (const auto& info : strategy_registry())
    if (info.name == name) return info.trains_generators;
  return false;
}

bool strategy_trains_generators_only(const std::string& name) {
  for (const auto& info : strategy_registry())
    if (info.name == name) return info.generators_only;
  return false;
}

PenaltyStep read_penalty_step(const po::variables_map& values) {
  if (!values.count("train.penalty_step")) return PenaltyStep::Explicit;
  return parse_choice<PenaltyStep>("train.penalty_step", values["train.penalty_step"].as<std::string>(),
                                   {{"explicit", PenaltyStep::Explicit}, {"proximal", PenaltyStep::Proximal}});
}

std::unique_ptr<Strategy> make_strategy(const std::string& name, const po::variables_map& options) {
  read_penalty_step(options);  // checked for every algorithm, also those without a penalty
  for (const auto& info : strategy_registry())
    if (info.name == name) return info.make(options);
  throw Error("train.algorithm: '" + name + "' is not one of " + strategy_names());
}

}  // namespace clx
