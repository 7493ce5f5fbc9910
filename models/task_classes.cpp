#include "models/task_classes.h"

#include "runtime/error.h"

namespace clx {

std::vector<std::vector<int64_t>> classes_of_tasks(const TaskStream& stream, const std::string& what) {
  std::vector<std::vector<int64_t>> classes;
  for (const Task& task : stream.tasks) {
    const torch::Tensor labels = task.train.global_labels.to(torch::kCPU);
    if (labels.numel() == 0)
      throw Error(what + ": task " + std::to_string(task.index + 1) + " (" + task.name +
                  ") has no training images: a class-incremental stream needs images of every class");
    const torch::Tensor unique = std::get<0>(torch::_unique(labels, /*sorted=*/true)).contiguous();
    classes.emplace_back(unique.data_ptr<int64_t>(), unique.data_ptr<int64_t>() + unique.numel());
  }
  return classes;
}

torch::Tensor classes_at_positions(const std::vector<int64_t>& classes, const torch::Tensor& positions) {
  return torch::tensor(classes, torch::kInt64)
      .index_select(0, positions.to(torch::kCPU).remainder(static_cast<int64_t>(classes.size())));
}

}  // namespace clx
