#pragma once
// The registry of continual-learning strategies. Each algorithm lives in its
// own file pair and implements clx::Strategy (runtime/strategy.h).
#include <boost/program_options.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/strategy.h"

namespace clx {

struct StrategyInfo {
  std::string name;
  std::string summary;
  // Declares the algorithm's own options (config section named after it), if any.
  std::function<void(boost::program_options::options_description&)> add_options;
  std::function<std::unique_ptr<Strategy>(const boost::program_options::variables_map&)> make;
};

const std::vector<StrategyInfo>& strategy_registry();
// Throws clx::Error naming train.algorithm and listing the known names.
std::unique_ptr<Strategy> make_strategy(const std::string& name, const boost::program_options::variables_map& options);
std::string strategy_names();  // "sgd, sgdf, finetune, ..."
// Every algorithm's own options ([anpyc], [ewc], [si], [mas], [lwf] sections).
void add_strategy_options(boost::program_options::options_description& options);

}  // namespace clx
