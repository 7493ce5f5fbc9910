#pragma once
// The classes of each task of a stream, ascending (the generator class slots
// a class-incremental generation objective trains per task).
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/data/task_stream.h"

namespace clx {

// Throws clx::Error, prefixed by `what` ("generation", "dgm"), naming a task without training images.
std::vector<std::vector<int64_t>> classes_of_tasks(const TaskStream& stream, const std::string& what);

// The class of each stage position p of a task with these classes: classes[p mod m], int64 on the CPU.
torch::Tensor classes_at_positions(const std::vector<int64_t>& classes, const torch::Tensor& positions);

}  // namespace clx
