#pragma once
// Joint training: every task at once in a single stage (the upper bound).
// Its final accuracies are the m_i of the paper's FWT (metrics.joint_results).
#include "runtime/strategy.h"

namespace clx {

class JointStrategy final : public Strategy {
 public:
  std::string name() const override { return "joint"; }
  HeadLayout default_heads() const override { return HeadLayout::Multi; }
  std::vector<std::vector<int>> stages(int num_tasks) const override;
};

}  // namespace clx
