#pragma once
// The registry of continual-learning strategies. Each algorithm lives in its
// own file pair and implements clx::Strategy (runtime/strategy.h).
#include <boost/program_options.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "algorithms/parameter_tensors.h"
#include "runtime/choice.h"
#include "runtime/error.h"
#include "runtime/strategy.h"

namespace clx {

struct StrategyInfo {
  std::string name;
  std::string summary;
  // Declares the algorithm's own options (config section named after it), if any.
  std::function<void(boost::program_options::options_description&)> add_options;
  std::function<std::unique_ptr<Strategy>(const boost::program_options::variables_map&)> make;
  // Whether it trains a generator (model.arch=vae) as well as a classifier:
  // true for the strategies that read nothing but the objective's loss and
  // its gradients, and for those whose importance passes read
  // StageContext::generated_logits / generated_output on a generator (EWC,
  // MAS, ANPyC); LwF, HAT and CLNP read class logits or hidden units of a
  // classifier and train classifiers only.
  bool trains_generators = false;
  // Whether it trains generators only (DGR's generation form).
  bool generators_only = false;
};

const std::vector<StrategyInfo>& strategy_registry();
// Throws clx::Error naming train.algorithm and listing the known names.
std::unique_ptr<Strategy> make_strategy(const std::string& name, const boost::program_options::variables_map& options);
std::string strategy_names();  // "sgd, sgdf, finetune, ..."
std::string generation_strategy_names();  // those with trains_generators
// False for an unknown name (make_strategy reports those).
bool strategy_trains_generators(const std::string& name);
bool strategy_trains_generators_only(const std::string& name);
// Every algorithm's own options ([anpyc], [ewc], [si], [mas], [lwf] sections),
// and train.penalty_step, which every quadratic penalty reads.
void add_strategy_options(boost::program_options::options_description& options);

// train.penalty_step (explicit | proximal); Explicit when the map lacks it.
PenaltyStep read_penalty_step(const boost::program_options::variables_map& values);

}  // namespace clx
