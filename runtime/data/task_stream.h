#pragma once
// Task streams: the sequence of tasks a continual learner is trained on.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/data/idx.h"
#include "runtime/data/image_folder.h"

namespace clx {

// Task-incremental: one output head per task, labels within the task.
// Single: one head over every class of the stream (domain- or class-incremental).
enum class HeadLayout { Multi, Single };

HeadLayout parse_head_layout(const std::string& text);
std::string to_string(HeadLayout layout);

// One split (train, validation or test) of one task: a view on a shared image source.
// Its index tensors live on the source's storage device (TaskStream::to).
struct TaskData {
  std::shared_ptr<const ImageSource> source;
  torch::Tensor rows;               // int64 [n]: rows of source
  torch::Tensor local_labels;       // int64 [n]: label within the task's head
  torch::Tensor global_labels;      // int64 [n]: label in the stream's single-head space
  torch::Tensor pixel_permutation;  // int64 [C*H*W], undefined when not permuted

  int64_t size() const { return rows.defined() ? rows.size(0) : 0; }
  // Inputs float32 [len(positions), C, H, W] on the source's storage device;
  // `positions` (any device) index this split (0..size-1). augment_seed 0: no
  // augmentation; otherwise each sample's is drawn from (augment_seed, source
  // row) as image_source.h says; the trainer passes mix_seed({train.seed,
  // stage, sampler epoch}).
  torch::Tensor inputs(const torch::Tensor& positions, uint64_t augment_seed = 0) const;
  // Labels int64 [len(positions)] on the source's storage device.
  torch::Tensor labels(const torch::Tensor& positions, HeadLayout layout) const;
};

struct Task {
  int index = 0;  // 0-based; printed 1-based
  std::string name;
  std::vector<int64_t> classes;  // classes of the source dataset in this task
  int64_t head_size = 0;         // outputs of this task's head in the multi-head layout
  TaskData train, validation, test;
};

// Streams (data.stream):
//  - split: data.tasks tasks of data.classes_per_task classes each, in class order;
//  - class_incremental: the classes in class order partitioned into tasks of
//    data.task_classes classes (e.g. "30,25,25,22"), or into data.tasks near-equal
//    parts (the first ones one class larger) when that list is empty;
//  - permuted: every task holds every class, its pixels permuted by a seeded permutation.
// Split and class-incremental tasks have one head each (the multi-head layout,
// task-incremental evaluation) or share one head over every class (single:
// class-incremental evaluation over the classes seen so far).
enum class StreamKind { Split, ClassIncremental, Permuted, MultiDataset };  // data.stream
enum class SourceFormat { Idx, ImageFolder };                               // data.format
enum class ClassOrder { Natural, Shuffled };                                // data.class_order
// Parsed once from the option's text; clx::Error names the option and the choices.
StreamKind parse_stream_kind(const std::string& text);
SourceFormat parse_source_format(const std::string& text);
ClassOrder parse_class_order(const std::string& text);
std::string to_string(StreamKind kind);
std::string to_string(SourceFormat format);

struct StreamConfig {
  SourceFormat format = SourceFormat::Idx;  // idx (MNIST-format files) | image_folder (one sub-folder per class)
  StreamKind kind = StreamKind::Split;      // split | class_incremental | permuted | multi_dataset
  std::string dataset = "fashion-mnist";
  std::string root = "/usr/share/datasets/fashion-mnist";
  int64_t num_tasks = 5;
  int64_t classes_per_task = 2;        // split only
  std::string task_classes;            // class_incremental only: classes per task, comma-separated ("" = equal split)
  ClassOrder class_order = ClassOrder::Natural;  // split, class_incremental: natural | shuffled (seeded)
  bool permute_first = false;          // permuted only: whether task 1 is permuted too
  uint64_t seed = 1;                   // permutations, class order, subsets, validation split
  int64_t train_samples_per_task = 0;  // 0 = all
  int64_t test_samples_per_task = 0;   // 0 = all
  double validation_fraction = 0.0;    // carved from each task's training data
  ImageFolderOptions folder;           // image_folder; multi_dataset: the common image size and channels
  std::string datasets;                // multi_dataset only: FORMAT:PATH per task, comma-separated (multi_dataset.h)
};

class TaskStream {
 public:
  std::string description;
  std::vector<Task> tasks;
  int64_t num_classes = 0;  // outputs of the single head
  std::vector<int64_t> input_shape;  // {C, H, W}
  // For the caller to log once (e.g. the files left out under data.bad_images=skip).
  std::vector<std::string> warnings;

  int64_t size() const { return static_cast<int64_t>(tasks.size()); }
  // Classes of tasks 0..task, sorted: what a single head may answer when evaluated after `task`.
  std::vector<int64_t> classes_up_to(int task) const;
  // Sizes of every split of every task and the descriptions of the sources
  // (an image folder's includes a fingerprint of its file list): part of the
  // cross-rank configuration check.
  std::string summary() const;
  // Prepares the stream for training on `device` (DESIGN section 5): in-memory
  // sources (images, labels) move there, image folders stay on the host and
  // return pinned batches for a CUDA device; every split's rows, labels and
  // pixel permutation follow its source. Each shared source is placed once.
  void to(torch::Device device);
  // Where the index tensors (and batches) of the tasks' training data live:
  // the device to draw sampler positions on.
  torch::Device data_device() const;
};

// Checks the configuration (throws clx::Error naming the option) and builds
// the stream from already loaded train and test data (same classes and image shape).
TaskStream build_task_stream(const StreamConfig& config, std::shared_ptr<const ImageSource> train,
                             std::shared_ptr<const ImageSource> test);
// One dataset of a multi-dataset stream, already in the stream's common shape.
struct NamedSources {
  std::string name;
  std::shared_ptr<const ImageSource> train, test;
};
// A multi-dataset stream: task t is the whole of datasets[t], its head over
// that dataset's classes; in the single-head layout the datasets' classes
// follow one another (task t's class c is class offset_t + c).
TaskStream build_multi_dataset_stream(const StreamConfig& config, const std::vector<NamedSources>& datasets);
// Loads the data under config.root in config.format (validated first), then builds the stream.
TaskStream load_task_stream(const StreamConfig& config);
// Throws clx::Error naming the option when the configuration is impossible,
// before any data is read (for IDX data, with its 10 classes).
void validate_stream_options(const StreamConfig& config);
// validate_stream_options, plus the checks against a dataset of `num_classes` classes.
void validate_stream_config(const StreamConfig& config, int64_t num_classes);
// Number of classes of each task of a split or class-incremental stream over
// `num_classes` classes (validate_stream_config first).
std::vector<int64_t> task_class_counts(const StreamConfig& config, int64_t num_classes);

}  // namespace clx
