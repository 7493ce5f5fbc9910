#include "algorithms/strategy.h"

#include "algorithms/finetune.h"
#include "algorithms/joint.h"
#include "algorithms/sgd.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

const std::vector<StrategyInfo>& strategy_registry() {
  static const std::vector<StrategyInfo> registry = {
      {"sgd", "single head, plain SGD on each task in turn (lower bound)", {},
       [](const po::variables_map&) { return std::make_unique<SgdStrategy>(); }},
      {"finetune", "one head per task, shared trunk fine-tuned on each task", {},
       [](const po::variables_map&) { return std::make_unique<FinetuneStrategy>(); }},
      {"joint", "all tasks trained at once (upper bound; source of m_i for FWT)", {},
       [](const po::variables_map&) { return std::make_unique<JointStrategy>(); }},
  };
  return registry;
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
