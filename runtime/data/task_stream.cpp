#include "runtime/data/task_stream.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {

HeadLayout parse_head_layout(const std::string& text) {
  if (text == "multi") return HeadLayout::Multi;
  if (text == "single") return HeadLayout::Single;
  throw Error("model.heads: '" + text + "' is not one of auto, multi, single");
}

std::string to_string(HeadLayout layout) { return layout == HeadLayout::Multi ? "multi" : "single"; }

torch::Tensor TaskData::inputs(const torch::Tensor& positions) const {
  torch::Tensor batch = source->images.index_select(0, rows.index_select(0, positions));
  if (!pixel_permutation.defined()) return batch;
  const auto shape = batch.sizes().vec();
  return batch.reshape({batch.size(0), -1}).index_select(1, pixel_permutation).reshape(shape);
}

torch::Tensor TaskData::labels(const torch::Tensor& positions, HeadLayout layout) const {
  return (layout == HeadLayout::Multi ? local_labels : global_labels).index_select(0, positions);
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
  for (const Task& task : tasks)
    text << task.name << ": train " << task.train.size() << ", validation " << task.validation.size() << ", test "
         << task.test.size() << ", head " << task.head_size << "\n";
  return text.str();
}

void validate_stream_config(const StreamConfig& config, int64_t num_classes) {
  if (config.kind != "split" && config.kind != "permuted")
    throw Error("data.stream: '" + config.kind + "' is not one of split, permuted");
  if (config.num_tasks < 1) throw Error("data.tasks: must be at least 1, got " + std::to_string(config.num_tasks));
  if (config.train_samples_per_task < 0) throw Error("data.train_samples_per_task: must be >= 0 (0 = all)");
  if (config.test_samples_per_task < 0) throw Error("data.test_samples_per_task: must be >= 0 (0 = all)");
  if (!(config.validation_fraction >= 0.0 && config.validation_fraction < 1.0))
    throw Error("data.validation_fraction: must be in [0, 1), got " + std::to_string(config.validation_fraction));
  if (config.kind == "split") {
    if (config.classes_per_task < 1)
      throw Error("data.classes_per_task: must be at least 1, got " + std::to_string(config.classes_per_task));
    if (config.classes_per_task > num_classes)
      throw Error("data.classes_per_task: " + std::to_string(config.classes_per_task) + " classes per task, but " +
                  config.dataset + " has only " + std::to_string(num_classes) + " classes");
    if (config.num_tasks * config.classes_per_task > num_classes)
      throw Error("data.tasks: " + std::to_string(config.num_tasks) + " tasks of " +
                  std::to_string(config.classes_per_task) + " classes need " +
                  std::to_string(config.num_tasks * config.classes_per_task) + " classes, but " + config.dataset +
                  " has only " + std::to_string(num_classes));
    if (config.class_order != "natural" && config.class_order != "shuffled")
      throw Error("data.class_order: '" + config.class_order + "' is not one of natural, shuffled");
  }
}

namespace {

// Rows of `source` whose label is in `classes` (all rows when `classes` is empty),
// shuffled by `seed` so that subsets and validation splits are random but reproducible.
torch::Tensor shuffled_rows(const LabelledImages& source, const std::vector<int64_t>& classes, uint64_t seed) {
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

TaskData make_task_data(std::shared_ptr<const LabelledImages> source, torch::Tensor rows,
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

TaskStream build_task_stream(const StreamConfig& config, std::shared_ptr<const LabelledImages> train,
                             std::shared_ptr<const LabelledImages> test) {
  validate_stream_config(config, train->num_classes);
  TaskStream stream;
  stream.num_classes = train->num_classes;
  stream.input_shape = train->images.sizes().slice(1).vec();
  const int64_t pixels = train->images[0].numel();

  std::vector<int64_t> class_order(train->num_classes);
  for (int64_t c = 0; c < train->num_classes; ++c) class_order[c] = c;
  if (config.kind == "split" && config.class_order == "shuffled") {
    torch::Tensor order = seeded_permutation(train->num_classes, mix_seed({config.seed, 0xc1a55}));
    for (int64_t c = 0; c < train->num_classes; ++c) class_order[c] = order[c].item<int64_t>();
  }

  std::ostringstream description;
  description << config.kind << " " << config.dataset << ": " << config.num_tasks << " tasks";
  if (config.kind == "split") description << " of " << config.classes_per_task << " classes";
  stream.description = description.str();

  for (int64_t t = 0; t < config.num_tasks; ++t) {
    Task task;
    task.index = static_cast<int>(t);
    std::vector<int64_t> classes;  // empty: every class (permuted)
    torch::Tensor permutation;
    std::ostringstream name;
    name << "task " << t + 1;
    if (config.kind == "split") {
      classes.assign(class_order.begin() + t * config.classes_per_task,
                     class_order.begin() + (t + 1) * config.classes_per_task);
      task.classes = classes;
      task.head_size = config.classes_per_task;
      name << " (classes";
      for (int64_t c : classes) name << " " << c;
      name << ")";
    } else {
      task.classes = class_order;
      task.head_size = train->num_classes;
      if (t > 0 || config.permute_first) {
        permutation = seeded_permutation(pixels, mix_seed({config.seed, 0x9e12, static_cast<uint64_t>(t)}));
        name << " (permutation " << t + 1 << ")";
      } else {
        name << " (identity)";
      }
    }
    task.name = name.str();

    const uint64_t task_seed = mix_seed({config.seed, 0x7a5c, static_cast<uint64_t>(t)});
    // The sample limit picks the task's pool; validation is carved from that pool.
    torch::Tensor train_rows = take_prefix(shuffled_rows(*train, classes, task_seed), config.train_samples_per_task);
    const int64_t validation_count =
        std::llround(config.validation_fraction * static_cast<double>(train_rows.size(0)));
    torch::Tensor validation_rows = train_rows.narrow(0, 0, validation_count);
    train_rows = train_rows.narrow(0, validation_count, train_rows.size(0) - validation_count);
    torch::Tensor test_rows = take_prefix(shuffled_rows(*test, classes, task_seed + 1), config.test_samples_per_task);
    if (train_rows.size(0) == 0) throw Error(task.name + " has no training samples");
    if (test_rows.size(0) == 0) throw Error(task.name + " has no test samples");

    task.train = make_task_data(train, train_rows, classes, permutation);
    task.validation = make_task_data(train, validation_rows, classes, permutation);
    task.test = make_task_data(test, test_rows, classes, permutation);
    stream.tasks.push_back(std::move(task));
  }
  return stream;
}

TaskStream load_task_stream(const StreamConfig& config) {
  auto train = std::make_shared<LabelledImages>(load_mnist_split(config.root, "train"));
  auto test = std::make_shared<LabelledImages>(load_mnist_split(config.root, "t10k"));
  if (train->images.sizes().slice(1) != test->images.sizes().slice(1))
    throw Error("data.root: train and t10k images of " + config.root + " have different shapes");
  return build_task_stream(config, train, test);
}

}  // namespace clx
