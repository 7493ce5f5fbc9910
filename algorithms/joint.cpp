#include "algorithms/joint.h"

namespace clx {

std::vector<std::vector<int>> JointStrategy::stages(int num_tasks) const {
  std::vector<int> all;
  for (int task = 0; task < num_tasks; ++task) all.push_back(task);
  return {all};
}

}  // namespace clx
