#pragma once
// Task streams: the sequence of tasks a continual learner is trained on.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/data/idx.h"

namespace clx {

// Task-incremental: one output head per task, labels within the task.
// Single: one head over every class of the stream (domain- or class-incremental).
enum class HeadLayout { Multi, Single };

HeadLayout parse_head_layout(const std::string& text);
std::string to_string(HeadLayout layout);

// One split (train, validation or test) of one task: a view on a shared source dataset.
struct TaskData {
  std::shared_ptr<const LabelledImages> source;
  torch::Tensor rows;               // int64 [n]: rows of source
  torch::Tensor local_labels;       // int64 [n]: label within the task's head
  torch::Tensor global_labels;      // int64 [n]: label in the stream's single-head space
  torch::Tensor pixel_permutation;  // int64 [C*H*W], undefined when not permuted

  int64_t size() const { return rows.defined() ? rows.size(0) : 0; }
  // Inputs [len(positions), C, H, W]; `positions` index this split (0..size-1).
  torch::Tensor inputs(const torch::Tensor& positions) const;
  torch::Tensor labels(const torch::Tensor& positions, HeadLayout layout) const;
};

struct Task {
  int index = 0;  // 0-based; printed 1-based
  std::string name;
  std::vector<int64_t> classes;  // classes of the source dataset in this task
  int64_t head_size = 0;         // outputs of this task's head in the multi-head layout
  TaskData train, validation, test;
};

struct StreamConfig {
  std::string kind = "split";  // split | permuted
  std::string dataset = "fashion-mnist";
  std::string root = "/usr/share/datasets/fashion-mnist";
  int64_t num_tasks = 5;
  int64_t classes_per_task = 2;        // split only
  std::string class_order = "natural";  // split only: natural | shuffled (seeded)
  bool permute_first = false;          // permuted only: whether task 1 is permuted too
  uint64_t seed = 1;                   // permutations, class order, subsets, validation split
  int64_t train_samples_per_task = 0;  // 0 = all
  int64_t test_samples_per_task = 0;   // 0 = all
  double validation_fraction = 0.0;    // carved from each task's training data
};

class TaskStream {
 public:
  std::string description;
  std::vector<Task> tasks;
  int64_t num_classes = 0;  // outputs of the single head
  std::vector<int64_t> input_shape;  // {C, H, W}

  int64_t size() const { return static_cast<int64_t>(tasks.size()); }
  // Classes of tasks 0..task, sorted: what a single head may answer when evaluated after `task`.
  std::vector<int64_t> classes_up_to(int task) const;
  // Sizes of every split of every task: part of the cross-rank configuration check.
  std::string summary() const;
};

// Checks the configuration (throws clx::Error naming the option) and builds
// the stream from already loaded train and test data.
TaskStream build_task_stream(const StreamConfig& config, std::shared_ptr<const LabelledImages> train,
                             std::shared_ptr<const LabelledImages> test);
// Loads the MNIST-format dataset under config.root, then builds the stream.
TaskStream load_task_stream(const StreamConfig& config);
// Throws clx::Error naming the option when the configuration is impossible
// for a dataset of `num_classes` classes.
void validate_stream_config(const StreamConfig& config, int64_t num_classes);

}  // namespace clx
