#include "runtime/data/task_stream.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "runtime/data/augment.h"
#include "runtime/data/multi_dataset.h"
#include "runtime/choice.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"
#include "runtime/text.h"

namespace clx {

HeadLayout parse_head_layout(const std::string& text) {
  if (text == "multi") return HeadLayout::Multi;
  if (text == "single") return HeadLayout::Single;
  throw Error("model.heads: '" + text + "' is not one of auto, multi, single");
}

std::string to_string(HeadLayout layout) { return layout == HeadLayout::Multi ? "multi" : "single"; }

StreamKind parse_stream_kind(const std::string& text) {
  return parse_choice<StreamKind>("data.stream", text,
                                  {{"split", StreamKind::Split},
                                   {"class_incremental", StreamKind::ClassIncremental},
                                   {"permuted", StreamKind::Permuted},
                                   {"multi_dataset", StreamKind::MultiDataset}});
}

SourceFormat parse_source_format(const std::string& text) {
  return parse_choice<SourceFormat>("data.format", text,
                                    {{"idx", SourceFormat::Idx}, {"image_folder", SourceFormat::ImageFolder}});
}

ClassOrder parse_class_order(const std::string& text) {
  return parse_choice<ClassOrder>("data.class_order", text,
                                  {{"natural", ClassOrder::Natural}, {"shuffled", ClassOrder::Shuffled}});
}

std::string to_string(StreamKind kind) {
  switch (kind) {
    case StreamKind::Split: return "split";
    case StreamKind::ClassIncremental: return "class_incremental";
    case StreamKind::Permuted: return "permuted";
    case StreamKind::MultiDataset: return "multi_dataset";
  }
  return "unknown";
}

std::string to_string(SourceFormat format) { return format == SourceFormat::Idx ? "idx" : "image_folder"; }

torch::Tensor TaskData::inputs(const torch::Tensor& positions, uint64_t augment_seed) const {
  torch::Tensor batch = source->gather(rows.index_select(0, positions.to(rows.device())), augment_seed);
  if (!pixel_permutation.defined()) return batch;
  const auto shape = batch.sizes().vec();
  return batch.reshape({batch.size(0), -1}).index_select(1, pixel_permutation).reshape(shape);
}

torch::Tensor TaskData::labels(const torch::Tensor& positions, HeadLayout layout) const {
  const torch::Tensor& chosen = layout == HeadLayout::Multi ? local_labels : global_labels;
  return chosen.index_select(0, positions.to(chosen.device()));
}

std::vector<int64_t> TaskStream::classes_up_to(int task) const {
  std::vector<int64_t> classes;
  for (int t = 0; t <= task && t < size(); ++t)
    classes.insert(classes.end(), tasks[t].classes.begin(), tasks[t].classes.end());
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  return classes;
}

std::string TaskStream::summary() const {
  std::ostringstream text;
  text << description << "\n";
  std::set<const ImageSource*> described;
  for (const Task& task : tasks) {
    text << task.name << ": train " << task.train.size() << ", validation " << task.validation.size() << ", test "
         << task.test.size() << ", head " << task.head_size << "\n";
    for (const TaskData* data : {&task.train, &task.test})
      if (data->source && described.insert(data->source.get()).second) text << "  " << data->source->description << "\n";
  }
  return text.str();
}

void TaskStream::to(torch::Device device) {
  std::map<const ImageSource*, std::shared_ptr<const ImageSource>> placed;
  std::vector<std::shared_ptr<const ImageSource>> originals;  // alive until the end, so no address is reused
  for (Task& task : tasks) {
    for (TaskData* data : {&task.train, &task.validation, &task.test}) {
      if (!data->source) continue;
      std::shared_ptr<const ImageSource>& moved = placed[data->source.get()];
      if (!moved) {
        originals.push_back(data->source);
        moved = data->source->placed_for(device);
      }
      data->source = moved;
      const torch::Device storage = moved->storage_device();
      for (torch::Tensor* index : {&data->rows, &data->local_labels, &data->global_labels, &data->pixel_permutation})
        if (index->defined()) *index = index->to(storage);
    }
  }
}

torch::Device TaskStream::data_device() const {
  if (tasks.empty() || !tasks[0].train.rows.defined()) return torch::kCPU;
  return tasks[0].train.rows.device();
}

namespace {

constexpr int64_t kIdxClasses = 10;  // the MNIST family

std::vector<int64_t> parse_task_classes(const std::string& text) {
  std::vector<int64_t> counts;
  for (const std::string& item : parse_name_list(text)) {
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || value < 1)
      throw Error("data.task_classes: '" + item + "' is not a positive number of classes (expected e.g. 30,25,25,22)");
    counts.push_back(value);
  }
  return counts;
}

// What error messages call the data: the name, and the folder for image folders.
std::string dataset_label(const StreamConfig& config) {
  return config.format == SourceFormat::ImageFolder ? config.dataset + " (" + config.root + ")" : config.dataset;
}

std::string join(const std::vector<int64_t>& values) {
  std::string text;
  for (int64_t value : values) text += (text.empty() ? "" : ",") + std::to_string(value);
  return text;
}

// The checks that need no dataset.
void check_stream_options(const StreamConfig& config) {
  if (config.kind != StreamKind::MultiDataset && !config.datasets.empty())
    throw Error("data.datasets: only for data.stream=multi_dataset (data.stream is " + to_string(config.kind) + ")");
  if (config.num_tasks < 1) throw Error("data.tasks: must be at least 1, got " + std::to_string(config.num_tasks));
  if (config.train_samples_per_task < 0) throw Error("data.train_samples_per_task: must be >= 0 (0 = all)");
  if (config.test_samples_per_task < 0) throw Error("data.test_samples_per_task: must be >= 0 (0 = all)");
  if (!(config.validation_fraction >= 0.0 && config.validation_fraction < 1.0))
    throw Error("data.validation_fraction: must be in [0, 1), got " + std::to_string(config.validation_fraction));
  if (config.kind == StreamKind::Split && config.classes_per_task < 1)
    throw Error("data.classes_per_task: must be at least 1, got " + std::to_string(config.classes_per_task));
  if (!config.task_classes.empty()) {
    if (config.kind != StreamKind::ClassIncremental)
      throw Error("data.task_classes: only for data.stream=class_incremental (data.stream is " +
                  to_string(config.kind) + ")");
    const std::vector<int64_t> counts = parse_task_classes(config.task_classes);
    if (static_cast<int64_t>(counts.size()) != config.num_tasks)
      throw Error("data.task_classes: " + std::to_string(counts.size()) + " tasks (" + join(counts) +
                  ") but data.tasks is " + std::to_string(config.num_tasks));
  }
  if (config.kind == StreamKind::MultiDataset) {
    validate_multi_dataset_options(config);
  } else if (config.format == SourceFormat::ImageFolder) {
    if (!image_folders_supported())
      throw Error("data.format=image_folder: this build has no OpenCV (install libopencv-dev, e.g. with "
                  "scripts/setup.sh, and rebuild)");
    validate_image_folder_options(config.folder);
  } else if (parse_augment(config.folder.augment) != Augment::None) {
    throw Error("data.augment: " + config.folder.augment + " needs data.format=image_folder (IDX data is not augmented)");
  }
}

void check_class_counts(const StreamConfig& config, int64_t num_classes) {
  const std::string data = dataset_label(config);
  if (config.kind == StreamKind::Split) {
    if (config.classes_per_task > num_classes)
      throw Error("data.classes_per_task: " + std::to_string(config.classes_per_task) + " classes per task, but " +
                  data + " has only " + std::to_string(num_classes) + " classes");
    if (config.num_tasks * config.classes_per_task > num_classes)
      throw Error("data.tasks: " + std::to_string(config.num_tasks) + " tasks of " +
                  std::to_string(config.classes_per_task) + " classes need " +
                  std::to_string(config.num_tasks * config.classes_per_task) + " classes, but " + data +
                  " has only " + std::to_string(num_classes));
  } else if (config.kind == StreamKind::ClassIncremental) {
    if (config.task_classes.empty() && config.num_tasks > num_classes)
      throw Error("data.tasks: " + std::to_string(config.num_tasks) + " class-incremental tasks need at least " +
                  std::to_string(config.num_tasks) + " classes, but " + data + " has only " +
                  std::to_string(num_classes));
    const std::vector<int64_t> counts = task_class_counts(config, num_classes);
    int64_t needed = 0;
    for (int64_t count : counts) needed += count;
    if (needed > num_classes)
      throw Error("data.task_classes: tasks of " + join(counts) + " classes need " + std::to_string(needed) +
                  " classes, but " + data + " has only " + std::to_string(num_classes));
  }
}

}  // namespace

void validate_stream_options(const StreamConfig& config) {
  check_stream_options(config);
  if (config.format == SourceFormat::Idx && config.kind != StreamKind::MultiDataset) check_class_counts(config, kIdxClasses);
}

void validate_stream_config(const StreamConfig& config, int64_t num_classes) {
  check_stream_options(config);
  check_class_counts(config, num_classes);
}

std::vector<int64_t> task_class_counts(const StreamConfig& config, int64_t num_classes) {
  if (config.kind == StreamKind::Split) return std::vector<int64_t>(config.num_tasks, config.classes_per_task);
  if (config.kind == StreamKind::Permuted) return std::vector<int64_t>(config.num_tasks, num_classes);
  if (!config.task_classes.empty()) return parse_task_classes(config.task_classes);
  std::vector<int64_t> counts;
  for (int64_t t = 0; t < config.num_tasks; ++t)
    counts.push_back(shard_range(num_classes, static_cast<int>(t), static_cast<int>(config.num_tasks)).second);
  return counts;
}

namespace {

// Rows of `source` whose label is in `classes` (all rows when `classes` is empty),
// shuffled by `seed` so that subsets and validation splits are random but reproducible.
torch::Tensor shuffled_rows(const ImageSource& source, const std::vector<int64_t>& classes, uint64_t seed) {
  torch::Tensor rows;
  if (classes.empty()) {
    rows = torch::arange(source.size(), torch::kInt64);
  } else {
    torch::Tensor wanted = torch::zeros({source.num_classes}, torch::kBool);
    for (int64_t c : classes) wanted[c] = true;
    rows = torch::nonzero(wanted.index_select(0, source.labels)).reshape({-1});
  }
  return rows.index_select(0, seeded_permutation(rows.size(0), seed));
}

TaskData make_task_data(std::shared_ptr<const ImageSource> source, torch::Tensor rows,
                        const std::vector<int64_t>& classes, torch::Tensor permutation) {
  TaskData data;
  data.source = std::move(source);
  data.rows = rows;
  data.global_labels = data.source->labels.index_select(0, rows);
  if (classes.empty()) {
    data.local_labels = data.global_labels;
  } else {
    torch::Tensor to_local = torch::full({data.source->num_classes}, -1, torch::kInt64);
    for (size_t k = 0; k < classes.size(); ++k) to_local[classes[k]] = static_cast<int64_t>(k);
    data.local_labels = to_local.index_select(0, data.global_labels);
  }
  data.pixel_permutation = permutation;
  return data;
}

torch::Tensor take_prefix(const torch::Tensor& rows, int64_t limit) {
  return limit > 0 && limit < rows.size(0) ? rows.narrow(0, 0, limit) : rows;
}

}  // namespace

namespace {

// Classes in the order tasks take them: natural, or shuffled by data.seed.
std::vector<int64_t> class_order_for(const StreamConfig& config, int64_t num_classes) {
  std::vector<int64_t> order(num_classes);
  for (int64_t c = 0; c < num_classes; ++c) order[c] = c;
  if (config.kind != StreamKind::Permuted && config.class_order == ClassOrder::Shuffled) {
    const torch::Tensor shuffled = seeded_permutation(num_classes, mix_seed({config.seed, 0xc1a55}));
    for (int64_t c = 0; c < num_classes; ++c) order[c] = shuffled[c].item<int64_t>();
  }
  return order;
}

std::string stream_description(const StreamConfig& config, const std::vector<int64_t>& counts) {
  std::ostringstream description;
  description << to_string(config.kind) << " " << config.dataset << ": " << config.num_tasks << " tasks";
  if (config.kind == StreamKind::Split) description << " of " << config.classes_per_task << " classes";
  if (config.kind == StreamKind::ClassIncremental) description << " of " << join(counts) << " classes";
  return description.str();
}

// "task 3 (classes 4 5)"; tasks of many classes give the count instead of the list.
std::string class_task_name(int64_t t, const std::vector<int64_t>& classes) {
  std::ostringstream name;
  name << "task " << t + 1;
  if (classes.size() > 10) {
    name << " (" << classes.size() << " classes)";
  } else {
    name << " (classes";
    for (int64_t c : classes) name << " " << c;
    name << ")";
  }
  return name.str();
}

// Fills the train, validation and test splits of `task` (classes empty: every class).
void fill_splits(const StreamConfig& config, Task& task, const std::vector<int64_t>& classes,
                 const torch::Tensor& permutation, const std::shared_ptr<const ImageSource>& train,
                 const std::shared_ptr<const ImageSource>& test) {
  const uint64_t task_seed = mix_seed({config.seed, 0x7a5c, static_cast<uint64_t>(task.index)});
  // The sample limit picks the task's pool; validation is carved from that pool.
  torch::Tensor train_rows = take_prefix(shuffled_rows(*train, classes, task_seed), config.train_samples_per_task);
  const int64_t validation_count = std::llround(config.validation_fraction * static_cast<double>(train_rows.size(0)));
  torch::Tensor validation_rows = train_rows.narrow(0, 0, validation_count);
  train_rows = train_rows.narrow(0, validation_count, train_rows.size(0) - validation_count);
  torch::Tensor test_rows = take_prefix(shuffled_rows(*test, classes, task_seed + 1), config.test_samples_per_task);
  if (train_rows.size(0) == 0) throw Error(task.name + " has no training samples");
  if (test_rows.size(0) == 0) throw Error(task.name + " has no test samples");
  task.train = make_task_data(train, train_rows, classes, permutation);
  task.validation = make_task_data(train, validation_rows, classes, permutation);
  task.test = make_task_data(test, test_rows, classes, permutation);
}

}  // namespace

TaskStream build_task_stream(const StreamConfig& config, std::shared_ptr<const ImageSource> train,
                             std::shared_ptr<const ImageSource> test) {
  validate_stream_config(config, train->num_classes);
  if (test->num_classes != train->num_classes || test->image_shape() != train->image_shape())
    throw Error("data.root: the train and test data of " + config.root + " differ in classes or image shape");
  TaskStream stream;
  stream.num_classes = train->num_classes;
  stream.input_shape = train->image_shape();
  int64_t pixels = 1;
  for (int64_t side : stream.input_shape) pixels *= side;
  const std::vector<int64_t> class_order = class_order_for(config, train->num_classes);
  const std::vector<int64_t> counts = task_class_counts(config, train->num_classes);
  stream.description = stream_description(config, counts);

  int64_t first_class = 0;
  for (int64_t t = 0; t < config.num_tasks; ++t) {
    Task task;
    task.index = static_cast<int>(t);
    std::vector<int64_t> classes;  // empty: every class (permuted)
    torch::Tensor permutation;
    if (config.kind == StreamKind::Permuted) {
      task.classes = class_order;
      task.head_size = train->num_classes;
      const bool permuted = t > 0 || config.permute_first;
      if (permuted) permutation = seeded_permutation(pixels, mix_seed({config.seed, 0x9e12, static_cast<uint64_t>(t)}));
      task.name = "task " + std::to_string(t + 1) +
                  (permuted ? " (permutation " + std::to_string(t + 1) + ")" : std::string(" (identity)"));
    } else {
      classes.assign(class_order.begin() + first_class, class_order.begin() + first_class + counts[t]);
      first_class += counts[t];
      task.classes = classes;
      task.head_size = counts[t];
      task.name = class_task_name(t, classes);
    }
    fill_splits(config, task, classes, permutation, train, test);
    stream.tasks.push_back(std::move(task));
  }
  return stream;
}

TaskStream build_multi_dataset_stream(const StreamConfig& config, const std::vector<NamedSources>& datasets) {
  if (static_cast<int64_t>(datasets.size()) != config.num_tasks)
    throw Error("data.tasks: " + std::to_string(config.num_tasks) + ", but " + std::to_string(datasets.size()) +
                " datasets were given (one task per dataset)");
  TaskStream stream;
  stream.input_shape = datasets.front().train->image_shape();
  std::string names;
  int64_t offset = 0;
  for (size_t t = 0; t < datasets.size(); ++t) {
    const NamedSources& dataset = datasets[t];
    for (const auto& source : {dataset.train, dataset.test})
      if (source->image_shape() != stream.input_shape)
        throw Error("data.datasets: " + source->description + " does not have the common image shape");
    if (dataset.test->num_classes != dataset.train->num_classes)
      throw Error("data.datasets: the train and test data of " + dataset.name + " differ in classes");
    Task task;
    task.index = static_cast<int>(t);
    task.name = "task " + std::to_string(t + 1) + " (" + dataset.name + ")";
    task.head_size = dataset.train->num_classes;
    for (int64_t c = 0; c < task.head_size; ++c) task.classes.push_back(offset + c);
    fill_splits(config, task, {}, torch::Tensor(), dataset.train, dataset.test);
    // The single-head layout: this dataset's classes come after the previous datasets'.
    for (TaskData* data : {&task.train, &task.validation, &task.test}) data->global_labels = data->global_labels + offset;
    offset += task.head_size;
    names += (names.empty() ? "" : ", ") + dataset.name;
    stream.tasks.push_back(std::move(task));
  }
  stream.num_classes = offset;
  stream.description = "multi_dataset " + std::to_string(datasets.size()) + " tasks (" + names + ")";
  return stream;
}

TaskStream load_task_stream(const StreamConfig& config) {
  validate_stream_options(config);
  if (config.kind == StreamKind::MultiDataset) return load_multi_dataset_stream(config);
  if (config.format == SourceFormat::ImageFolder) {
    ImageFolderData data = load_image_folder(config.root, config.dataset, config.folder, config.seed);
    TaskStream stream = build_task_stream(config, data.train, data.test);
    stream.warnings = std::move(data.warnings);
    return stream;
  }
  auto train = std::make_shared<LabelledImages>(load_mnist_split(config.root, "train"));
  auto test = std::make_shared<LabelledImages>(load_mnist_split(config.root, "t10k"));
  if (train->images.sizes().slice(1) != test->images.sizes().slice(1))
    throw Error("data.root: train and t10k images of " + config.root + " have different shapes");
  return build_task_stream(config, train, test);
}

}  // namespace clx
