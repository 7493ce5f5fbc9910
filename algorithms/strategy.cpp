#include "algorithms/strategy.h"

#include "algorithms/anpyc.h"
#include "algorithms/ewc.h"
#include "algorithms/finetune.h"
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
       [](const po::variables_map&) { return std::make_unique<SgdStrategy>(); }},
      {"sgdf", "whole network on task 1, then only the new heads (SGD-F)", {},
       [](const po::variables_map&) { return std::make_unique<SgdfStrategy>(); }},
      {"finetune", "one head per task, shared trunk fine-tuned on each task", {},
       [](const po::variables_map&) { return std::make_unique<FinetuneStrategy>(); }},
      {"joint", "all tasks trained at once (upper bound; source of m_i for FWT)", {},
       [](const po::variables_map&) { return std::make_unique<JointStrategy>(); }},
      {"ewc", "elastic weight consolidation, per-sample Fisher", EwcStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<EwcStrategy>(EwcStrategy::read_options(v)); }},
      {"si", "synaptic intelligence (path-integral importance)", SiStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<SiStrategy>(SiStrategy::read_options(v)); }},
      {"mas", "memory aware synapses (output-sensitivity importance)", MasStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<MasStrategy>(v["mas.lambda"].as<double>()); }},
      {"lwf", "learning without forgetting (distillation of earlier heads)", LwfStrategy::add_options,
       [](const po::variables_map& v) {
         return std::make_unique<LwfStrategy>(v["lwf.lambda"].as<double>(), v["lwf.temperature"].as<double>());
       }},
      {"anpyc", "ANPyC: entropy-Taylor consolidation with adversarial neural pruning (anpyc.prune)",
       AnpycStrategy::add_options,
       [](const po::variables_map& v) { return std::make_unique<AnpycStrategy>(AnpycStrategy::read_options(v)); }},
  };
  return registry;
}

void add_strategy_options(po::options_description& options) {
  for (const auto& info : strategy_registry())
    if (info.add_options) info.add_options(options);
}

std::string strategy_names() {
  std::string names;
  for (const auto& info : strategy_registry()) names += (names.empty() ? "" : ", ") + info.name;
  return names;
}

std::unique_ptr<Strategy> make_strategy(const std::string& name, const po::variables_map& options) {
  for (const auto& info : strategy_registry())
    if (info.name == name) return info.make(options);
  throw Error("train.algorithm: '" + name + "' is not one of " + strategy_names());
}

}  // namespace clx
