// Unit tests of task streams (runtime/data/task_stream.h) on small synthetic
// datasets: split and permuted streams, subsets, validation and config checks.
#include <gtest/gtest.h>

#include "tests/expect_error.h"
#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/data/idx.h"
#include "runtime/data/sampler.h"
#include "runtime/data/task_stream.h"
#include "runtime/error.h"

using clx::testing_support::expect_error;

namespace {

std::vector<int64_t> to_vector(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

std::set<int64_t> to_set(const torch::Tensor& tensor) {
  const auto v = to_vector(tensor);
  return std::set<int64_t>(v.begin(), v.end());
}

constexpr int64_t kClasses = 10;
constexpr int64_t kChannels = 1, kHeight = 3, kWidth = 3, kPixels = kChannels * kHeight * kWidth;

// `count` samples with labels n % 10 (so count / 10 per class) and images
// 1x3x3 whose pixels are all distinct across the dataset: image n, pixel p
// holds (offset + n * 9 + p + 1) / 4096.
std::shared_ptr<const clx::LabelledImages> synthetic(int64_t count, int64_t offset) {
  auto data = std::make_shared<clx::LabelledImages>();
  data->images = (torch::arange(count * kPixels, torch::kFloat32) + float(offset + 1))
                     .div_(4096.0f)
                     .reshape({count, kChannels, kHeight, kWidth});
  data->labels = torch::arange(count, torch::kInt64).remainder(kClasses);
  data->num_classes = kClasses;
  data->description = "synthetic";
  return data;
}

class TaskStreamTest : public ::testing::Test {
 protected:
  std::shared_ptr<const clx::LabelledImages> train_ = synthetic(100, 0);
  std::shared_ptr<const clx::LabelledImages> test_ = synthetic(40, 100000);

  static clx::StreamConfig split_config() {
    clx::StreamConfig config;
    config.kind = clx::StreamKind::Split;
    config.dataset = "synthetic";
    config.num_tasks = 5;
    config.classes_per_task = 2;
    config.seed = 1;
    return config;
  }
  static clx::StreamConfig permuted_config() {
    clx::StreamConfig config;
    config.kind = clx::StreamKind::Permuted;
    config.dataset = "synthetic";
    config.num_tasks = 3;
    config.seed = 1;
    return config;
  }
  torch::Tensor all_positions(const clx::TaskData& data) const { return torch::arange(data.size(), torch::kInt64); }
};

// Checks that `data` is a consistent view: rows within the source, labels
// matching the source and the task's class-to-local mapping.
void check_split_data(const clx::TaskData& data, const clx::LabelledImages& source, const std::vector<int64_t>& classes) {
  ASSERT_TRUE(data.rows.defined());
  EXPECT_EQ(data.source.get(), &source);
  const auto rows = to_vector(data.rows);
  EXPECT_EQ(std::set<int64_t>(rows.begin(), rows.end()).size(), rows.size()) << "duplicate rows";
  const auto global = to_vector(data.global_labels);
  const auto local = to_vector(data.local_labels);
  ASSERT_EQ(global.size(), rows.size());
  ASSERT_EQ(local.size(), rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    ASSERT_GE(rows[k], 0);
    ASSERT_LT(rows[k], source.size());
    EXPECT_EQ(global[k], source.labels[rows[k]].item<int64_t>());
    const auto where = std::find(classes.begin(), classes.end(), global[k]);
    ASSERT_NE(where, classes.end()) << "row " << rows[k] << " of class " << global[k] << " is not in the task";
    EXPECT_EQ(local[k], where - classes.begin());
  }
}

// ---- split streams

TEST_F(TaskStreamTest, SplitNaturalOrderHoldsTwoClassesPerTask) {
  const clx::TaskStream stream = clx::build_task_stream(split_config(), train_, test_);
  ASSERT_EQ(stream.size(), 5);
  EXPECT_EQ(stream.num_classes, 10);
  EXPECT_EQ(stream.input_shape, (std::vector<int64_t>{1, 3, 3}));
  for (int t = 0; t < 5; ++t) {
    SCOPED_TRACE("task " + std::to_string(t));
    const clx::Task& task = stream.tasks[t];
    EXPECT_EQ(task.index, t);
    const std::vector<int64_t> classes = {2 * t, 2 * t + 1};
    EXPECT_EQ(task.classes, classes);
    EXPECT_EQ(task.head_size, 2);
    EXPECT_NE(task.name.find("task " + std::to_string(t + 1)), std::string::npos) << task.name;

    // Exactly the samples of classes 2t and 2t+1 (10 per class in train, 4 in test).
    std::set<int64_t> expected_train, expected_test;
    for (int64_t n = 0; n < 100; ++n)
      if (n % 10 == 2 * t || n % 10 == 2 * t + 1) expected_train.insert(n);
    for (int64_t n = 0; n < 40; ++n)
      if (n % 10 == 2 * t || n % 10 == 2 * t + 1) expected_test.insert(n);
    EXPECT_EQ(task.train.size(), 20);
    EXPECT_EQ(task.test.size(), 8);
    EXPECT_EQ(task.validation.size(), 0);
    EXPECT_EQ(to_set(task.train.rows), expected_train);
    EXPECT_EQ(to_set(task.test.rows), expected_test);
    check_split_data(task.train, *train_, classes);
    check_split_data(task.test, *test_, classes);

    // Local labels: the lower class is 0, the upper 1; global labels are the classes.
    const torch::Tensor train_global = task.train.global_labels;
    EXPECT_TRUE(torch::equal(task.train.local_labels, train_global - 2 * t));
    EXPECT_TRUE(torch::equal(task.test.local_labels, task.test.global_labels - 2 * t));
    EXPECT_EQ(task.train.local_labels.min().item<int64_t>(), 0);
    EXPECT_EQ(task.train.local_labels.max().item<int64_t>(), 1);

    // labels() and inputs() select by position within the split.
    const torch::Tensor positions = torch::tensor({3, 0, 19}, torch::kInt64);
    EXPECT_TRUE(torch::equal(task.train.labels(positions, clx::HeadLayout::Multi),
                             task.train.local_labels.index_select(0, positions)));
    EXPECT_TRUE(torch::equal(task.train.labels(positions, clx::HeadLayout::Single),
                             task.train.global_labels.index_select(0, positions)));
    EXPECT_FALSE(task.train.pixel_permutation.defined());
    const torch::Tensor inputs = task.train.inputs(positions);
    EXPECT_EQ(inputs.sizes().vec(), (std::vector<int64_t>{3, 1, 3, 3}));
    EXPECT_TRUE(torch::equal(inputs, train_->images.index_select(0, task.train.rows.index_select(0, positions))));
    EXPECT_TRUE(
        torch::equal(task.test.inputs(all_positions(task.test)), test_->images.index_select(0, task.test.rows)));

    // classes_up_to(t) = 0 .. 2t+1.
    std::vector<int64_t> seen(2 * t + 2);
    for (int64_t c = 0; c < 2 * t + 2; ++c) seen[c] = c;
    EXPECT_EQ(stream.classes_up_to(t), seen);
  }
  EXPECT_EQ(stream.classes_up_to(99).size(), 10u);  // clamps past the last task
  const std::string summary = stream.summary();
  EXPECT_NE(summary.find("task 5"), std::string::npos) << summary;
  EXPECT_NE(summary.find("train 20"), std::string::npos) << summary;
}

TEST_F(TaskStreamTest, SplitWithFewerTasksThanClassesUsesLeadingClasses) {
  clx::StreamConfig config = split_config();
  config.num_tasks = 3;
  config.classes_per_task = 3;
  const clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  ASSERT_EQ(stream.size(), 3);
  EXPECT_EQ(stream.tasks[2].classes, (std::vector<int64_t>{6, 7, 8}));
  EXPECT_EQ(stream.tasks[2].head_size, 3);
  EXPECT_EQ(stream.tasks[2].train.size(), 30);
  check_split_data(stream.tasks[2].train, *train_, {6, 7, 8});
  EXPECT_EQ(stream.classes_up_to(2), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST_F(TaskStreamTest, SplitShuffledClassOrderIsASeededPermutation) {
  clx::StreamConfig config = split_config();
  config.class_order = clx::ClassOrder::Shuffled;
  auto class_order = [&](uint64_t seed) {
    clx::StreamConfig c = config;
    c.seed = seed;
    const clx::TaskStream stream = clx::build_task_stream(c, train_, test_);
    std::vector<int64_t> order;
    for (const clx::Task& task : stream.tasks) {
      EXPECT_EQ(task.classes.size(), 2u);
      check_split_data(task.train, *train_, task.classes);
      check_split_data(task.test, *test_, task.classes);
      EXPECT_EQ(task.train.size(), 20);
      order.insert(order.end(), task.classes.begin(), task.classes.end());
    }
    return order;
  };
  const std::vector<int64_t> natural = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<int64_t> first = class_order(1);
  std::vector<int64_t> sorted = first;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, natural);               // a permutation of the classes
  EXPECT_EQ(class_order(1), first);          // same seed, same order
  // Documented as seeded: it is the project's own permutation of (seed, tag).
  EXPECT_EQ(first, to_vector(clx::seeded_permutation(10, clx::mix_seed({1, 0xc1a55}))));
  // Some other seed gives another order, and the order is not the natural one.
  bool differs = false;
  for (uint64_t seed = 2; seed < 6; ++seed) differs |= class_order(seed) != first;
  EXPECT_TRUE(differs);
  EXPECT_NE(first, natural);
}

// ---- permuted streams

TEST_F(TaskStreamTest, PermutedKeepsTaskOneAndPermutesLaterTasks) {
  const clx::TaskStream stream = clx::build_task_stream(permuted_config(), train_, test_);
  ASSERT_EQ(stream.size(), 3);
  EXPECT_EQ(stream.num_classes, 10);
  std::vector<torch::Tensor> permutations;
  for (int t = 0; t < 3; ++t) {
    SCOPED_TRACE("task " + std::to_string(t));
    const clx::Task& task = stream.tasks[t];
    EXPECT_EQ(task.head_size, 10);
    EXPECT_EQ(task.classes, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    // Every sample of the source, each once.
    EXPECT_EQ(task.train.size(), 100);
    EXPECT_EQ(task.test.size(), 40);
    EXPECT_TRUE(torch::equal(std::get<0>(task.train.rows.sort()), torch::arange(100, torch::kInt64)));
    EXPECT_TRUE(torch::equal(std::get<0>(task.test.rows.sort()), torch::arange(40, torch::kInt64)));
    // One head over all classes: local labels are the global ones.
    EXPECT_TRUE(torch::equal(task.train.local_labels, task.train.global_labels));
    EXPECT_TRUE(torch::equal(task.test.local_labels, task.test.global_labels));
    EXPECT_TRUE(torch::equal(task.train.global_labels, train_->labels.index_select(0, task.train.rows)));

    for (const clx::TaskData* data : {&task.train, &task.test}) {
      const torch::Tensor positions = all_positions(*data);
      const clx::LabelledImages& source = data == &task.train ? *train_ : *test_;
      EXPECT_EQ(data->source.get(), &source);
      const torch::Tensor originals = source.images.index_select(0, data->rows);
      const torch::Tensor inputs = data->inputs(positions);
      ASSERT_EQ(inputs.sizes(), originals.sizes());
      if (t == 0) {
        EXPECT_FALSE(data->pixel_permutation.defined());
        EXPECT_TRUE(torch::equal(inputs, originals));
      } else {
        ASSERT_TRUE(data->pixel_permutation.defined());
        const torch::Tensor perm = data->pixel_permutation;
        EXPECT_TRUE(torch::equal(std::get<0>(perm.sort()), torch::arange(kPixels, torch::kInt64)));
        const torch::Tensor expected = originals.reshape({originals.size(0), -1}).index_select(1, perm);
        EXPECT_TRUE(torch::equal(inputs.reshape({inputs.size(0), -1}), expected));
        EXPECT_FALSE(torch::equal(inputs, originals));
        // Same pixels, moved: each image's multiset of values is unchanged.
        EXPECT_TRUE(torch::equal(std::get<0>(inputs.reshape({inputs.size(0), -1}).sort(1)),
                                 std::get<0>(originals.reshape({originals.size(0), -1}).sort(1))));
      }
    }
    if (t > 0) {
      // Train, validation and test of one task share its permutation.
      EXPECT_TRUE(torch::equal(task.train.pixel_permutation, task.test.pixel_permutation));
      EXPECT_TRUE(torch::equal(task.train.pixel_permutation, task.validation.pixel_permutation));
      permutations.push_back(task.train.pixel_permutation);
    }
  }
  ASSERT_EQ(permutations.size(), 2u);
  EXPECT_FALSE(torch::equal(permutations[0], permutations[1]));
  // classes_up_to: every class from the first task on.
  EXPECT_EQ(stream.classes_up_to(0).size(), 10u);
  // The permutations are a function of the seed.
  const clx::TaskStream again = clx::build_task_stream(permuted_config(), train_, test_);
  EXPECT_TRUE(torch::equal(again.tasks[1].train.pixel_permutation, permutations[0]));
  EXPECT_TRUE(torch::equal(again.tasks[2].train.pixel_permutation, permutations[1]));
  clx::StreamConfig other = permuted_config();
  other.seed = 2;
  const clx::TaskStream reseeded = clx::build_task_stream(other, train_, test_);
  EXPECT_FALSE(torch::equal(reseeded.tasks[1].train.pixel_permutation, permutations[0]));
}

TEST_F(TaskStreamTest, PermutedWithPermuteFirstPermutesTaskOneToo) {
  clx::StreamConfig config = permuted_config();
  config.permute_first = true;
  const clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  ASSERT_EQ(stream.size(), 3);
  std::vector<torch::Tensor> permutations;
  for (const clx::Task& task : stream.tasks) {
    ASSERT_TRUE(task.train.pixel_permutation.defined()) << task.name;
    const torch::Tensor perm = task.train.pixel_permutation;
    EXPECT_FALSE(torch::equal(perm, torch::arange(kPixels, torch::kInt64))) << task.name;
    const torch::Tensor positions = all_positions(task.train);
    const torch::Tensor originals = train_->images.index_select(0, task.train.rows);
    const torch::Tensor inputs = task.train.inputs(positions);
    EXPECT_TRUE(torch::equal(inputs.reshape({100, -1}), originals.reshape({100, -1}).index_select(1, perm)));
    EXPECT_FALSE(torch::equal(inputs, originals));
    EXPECT_EQ(task.head_size, 10);
    EXPECT_TRUE(torch::equal(task.train.local_labels, task.train.global_labels));
    permutations.push_back(perm);
  }
  for (size_t a = 0; a < permutations.size(); ++a)
    for (size_t b = a + 1; b < permutations.size(); ++b) EXPECT_FALSE(torch::equal(permutations[a], permutations[b]));
}

// ---- subsets and validation

TEST_F(TaskStreamTest, SamplesPerTaskLimitSizes) {
  clx::StreamConfig config = split_config();
  config.train_samples_per_task = 7;
  config.test_samples_per_task = 3;
  const clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  for (int t = 0; t < 5; ++t) {
    const clx::Task& task = stream.tasks[t];
    EXPECT_EQ(task.train.size(), 7);
    EXPECT_EQ(task.test.size(), 3);
    EXPECT_EQ(task.train.local_labels.size(0), 7);
    EXPECT_EQ(task.test.global_labels.size(0), 3);
    check_split_data(task.train, *train_, {2 * t, 2 * t + 1});
    check_split_data(task.test, *test_, {2 * t, 2 * t + 1});
  }
  // A limit above the available count keeps everything.
  config.train_samples_per_task = 1000;
  config.test_samples_per_task = 1000;
  const clx::TaskStream all = clx::build_task_stream(config, train_, test_);
  EXPECT_EQ(all.tasks[0].train.size(), 20);
  EXPECT_EQ(all.tasks[0].test.size(), 8);

  clx::StreamConfig permuted = permuted_config();
  permuted.train_samples_per_task = 25;
  permuted.test_samples_per_task = 11;
  const clx::TaskStream small = clx::build_task_stream(permuted, train_, test_);
  for (const clx::Task& task : small.tasks) {
    EXPECT_EQ(task.train.size(), 25);
    EXPECT_EQ(task.test.size(), 11);
    EXPECT_EQ(task.train.inputs(all_positions(task.train)).size(0), 25);
  }
}

// The sample limit picks each task's pool; validation is carved from the
// pool and rounded to the nearest sample (0.29 * 10 = 2.9 -> 3).
TEST_F(TaskStreamTest, ValidationIsCarvedFromTheLimitedPoolAndRounded) {
  clx::StreamConfig config = split_config();
  config.train_samples_per_task = 10;
  config.validation_fraction = 0.29;
  const clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  for (const clx::Task& task : stream.tasks) {
    EXPECT_EQ(task.validation.size(), 3);
    EXPECT_EQ(task.train.size(), 7);
  }
}

TEST_F(TaskStreamTest, ValidationFractionCarvesDisjointRowsFromTrain) {
  clx::StreamConfig config = split_config();
  config.validation_fraction = 0.2;
  const clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  for (int t = 0; t < 5; ++t) {
    SCOPED_TRACE("task " + std::to_string(t));
    const clx::Task& task = stream.tasks[t];
    EXPECT_EQ(task.validation.size(), 4);  // 20% of the task's 20 training samples
    EXPECT_EQ(task.train.size(), 16);
    EXPECT_EQ(task.test.size(), 8);
    check_split_data(task.validation, *train_, {2 * t, 2 * t + 1});
    check_split_data(task.train, *train_, {2 * t, 2 * t + 1});
    const std::set<int64_t> train_rows = to_set(task.train.rows), validation_rows = to_set(task.validation.rows);
    for (int64_t row : validation_rows) EXPECT_EQ(train_rows.count(row), 0u) << "row " << row << " in both";
    std::set<int64_t> both = train_rows;
    both.insert(validation_rows.begin(), validation_rows.end());
    EXPECT_EQ(both.size(), 20u);  // together: every sample of the task's classes
    EXPECT_TRUE(torch::equal(task.validation.inputs(all_positions(task.validation)),
                             train_->images.index_select(0, task.validation.rows)));
  }

  clx::StreamConfig permuted = permuted_config();
  permuted.validation_fraction = 0.2;
  const clx::TaskStream pstream = clx::build_task_stream(permuted, train_, test_);
  for (const clx::Task& task : pstream.tasks) {
    EXPECT_EQ(task.validation.size(), 20);
    EXPECT_EQ(task.train.size(), 80);
    const std::set<int64_t> train_rows = to_set(task.train.rows), validation_rows = to_set(task.validation.rows);
    for (int64_t row : validation_rows) EXPECT_EQ(train_rows.count(row), 0u) << "row " << row << " in both";
    EXPECT_EQ(train_rows.size() + validation_rows.size(), 100u);
  }
}

TEST_F(TaskStreamTest, SameSeedGivesSameStream) {
  clx::StreamConfig config = split_config();
  config.validation_fraction = 0.2;
  config.train_samples_per_task = 10;
  const clx::TaskStream a = clx::build_task_stream(config, train_, test_);
  const clx::TaskStream b = clx::build_task_stream(config, train_, test_);
  for (int t = 0; t < 5; ++t) {
    EXPECT_TRUE(torch::equal(a.tasks[t].train.rows, b.tasks[t].train.rows));
    EXPECT_TRUE(torch::equal(a.tasks[t].validation.rows, b.tasks[t].validation.rows));
    EXPECT_TRUE(torch::equal(a.tasks[t].test.rows, b.tasks[t].test.rows));
  }
  EXPECT_EQ(a.summary(), b.summary());
}

// ---- configuration errors

TEST_F(TaskStreamTest, ValidateStreamConfigNamesTheOption) {
  {
    clx::StreamConfig config = split_config();
    EXPECT_NO_THROW(clx::validate_stream_config(config, 10));
  }
  {
    clx::StreamConfig config = split_config();
    config.num_tasks = 0;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.tasks"});
  }
  {
    clx::StreamConfig config = split_config();
    config.classes_per_task = 0;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.classes_per_task"});
  }
  {
    clx::StreamConfig config = split_config();
    config.num_tasks = 1;
    config.classes_per_task = 11;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.classes_per_task", "11", "10"});
  }
  {
    clx::StreamConfig config = split_config();
    config.num_tasks = 6;  // 6 tasks of 2 classes need 12 > 10
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.tasks", "12"});
  }
  expect_error([] { clx::parse_stream_kind("foo"); },
               {"data.stream", "'foo'", "split, class_incremental, permuted, multi_dataset"});
  {
    clx::StreamConfig config = split_config();
    config.validation_fraction = 1.0;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.validation_fraction"});
    config.validation_fraction = -0.1;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.validation_fraction"});
  }
  expect_error([] { clx::parse_class_order("random"); }, {"data.class_order", "'random'", "natural, shuffled"});
  {
    clx::StreamConfig config = split_config();
    config.train_samples_per_task = -1;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.train_samples_per_task"});
    config.train_samples_per_task = 0;
    config.test_samples_per_task = -5;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.test_samples_per_task"});
  }
  {
    // Permuted streams ignore the split-only options.
    clx::StreamConfig config = permuted_config();
    config.num_tasks = 20;
    config.classes_per_task = 0;
    config.class_order = clx::ClassOrder::Shuffled;
    EXPECT_NO_THROW(clx::validate_stream_config(config, 10));
    config.num_tasks = 0;
    expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.tasks"});
  }
}

TEST_F(TaskStreamTest, BuildTaskStreamValidatesFirst) {
  clx::StreamConfig config = split_config();
  config.num_tasks = 6;
  expect_error([&] { clx::build_task_stream(config, train_, test_); }, {"data.tasks"});
}

TEST_F(TaskStreamTest, TaskWithoutSamplesThrows) {
  // Classes 8 and 9 have no test samples here: the last task cannot be built.
  auto sparse_test = std::make_shared<clx::LabelledImages>(*test_);
  sparse_test->labels = torch::arange(40, torch::kInt64).remainder(8);
  expect_error([&] { clx::build_task_stream(split_config(), train_, sparse_test); }, {"task 5", "no test samples"});
}

// ---- class-incremental streams

TEST_F(TaskStreamTest, ClassIncrementalTakesTheListedClassCounts) {
  clx::StreamConfig config = split_config();
  config.kind = clx::StreamKind::ClassIncremental;
  config.num_tasks = 3;
  config.task_classes = "3, 3,4";
  const clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  ASSERT_EQ(stream.size(), 3);
  EXPECT_EQ(stream.description, "class_incremental synthetic: 3 tasks of 3,3,4 classes");
  const std::vector<std::vector<int64_t>> expected = {{0, 1, 2}, {3, 4, 5}, {6, 7, 8, 9}};
  for (int t = 0; t < 3; ++t) {
    SCOPED_TRACE("task " + std::to_string(t));
    const clx::Task& task = stream.tasks[t];
    EXPECT_EQ(task.classes, expected[t]);
    EXPECT_EQ(task.head_size, static_cast<int64_t>(expected[t].size()));
    EXPECT_EQ(task.train.size(), 10 * task.head_size);
    EXPECT_EQ(task.test.size(), 4 * task.head_size);
    check_split_data(task.train, *train_, expected[t]);
    check_split_data(task.test, *test_, expected[t]);
  }
  // One growing head: evaluation after task 2 may answer classes 0..5.
  EXPECT_EQ(stream.classes_up_to(1), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
}

TEST_F(TaskStreamTest, ClassIncrementalWithoutAListSplitsEveryClassEvenly) {
  clx::StreamConfig config = split_config();
  config.kind = clx::StreamKind::ClassIncremental;
  config.num_tasks = 4;  // 10 classes: 3, 3, 2, 2
  EXPECT_EQ(clx::task_class_counts(config, 10), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(clx::task_class_counts(config, 102), (std::vector<int64_t>{26, 26, 25, 25}));
  config.class_order = clx::ClassOrder::Shuffled;
  const clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  std::vector<int64_t> order;
  for (const clx::Task& task : stream.tasks) {
    check_split_data(task.train, *train_, task.classes);
    order.insert(order.end(), task.classes.begin(), task.classes.end());
  }
  // The same seeded class order as split streams, cut at 3, 6 and 8.
  EXPECT_EQ(order, to_vector(clx::seeded_permutation(10, clx::mix_seed({1, 0xc1a55}))));
  EXPECT_EQ(stream.tasks[2].classes.size(), 2u);
}

TEST_F(TaskStreamTest, ClassIncrementalOptionErrors) {
  clx::StreamConfig config = split_config();
  config.kind = clx::StreamKind::ClassIncremental;
  config.num_tasks = 4;
  config.task_classes = "3,3,2";
  expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.task_classes", "3 tasks", "data.tasks is 4"});
  config.task_classes = "3,x,2,2";
  expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.task_classes", "'x'"});
  config.task_classes = "3,0,2,2";
  expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.task_classes", "'0'"});
  config.task_classes = "3,3,3,3";
  expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.task_classes", "need 12", "only 10"});
  config.task_classes = "";
  config.num_tasks = 11;
  expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.tasks", "11", "only 10"});
  config = split_config();
  config.task_classes = "2,2,2,2,2";
  expect_error([&] { clx::validate_stream_config(config, 10); }, {"data.task_classes", "class_incremental"});
}

TEST(StreamChoices, NamesParseToTheirEnumsAndBack) {
  for (const char* name : {"split", "class_incremental", "permuted", "multi_dataset"})
    EXPECT_EQ(clx::to_string(clx::parse_stream_kind(name)), name);
  for (const char* name : {"idx", "image_folder"}) EXPECT_EQ(clx::to_string(clx::parse_source_format(name)), name);
  EXPECT_EQ(clx::parse_class_order("natural"), clx::ClassOrder::Natural);
  EXPECT_EQ(clx::parse_class_order("shuffled"), clx::ClassOrder::Shuffled);
}

TEST_F(TaskStreamTest, StreamOptionsAreCheckedBeforeAnyDataIsRead) {
  clx::StreamConfig config = split_config();
  EXPECT_NO_THROW(clx::validate_stream_options(config));
  expect_error([] { clx::parse_source_format("hdf5"); }, {"data.format", "'hdf5'", "idx, image_folder"});
  config = split_config();
  config.num_tasks = 6;  // IDX data has 10 classes: known before reading
  expect_error([&] { clx::validate_stream_options(config); }, {"data.tasks", "12"});
  config = split_config();
  config.folder.augment = "flip_crop";
  expect_error([&] { clx::validate_stream_options(config); }, {"data.augment", "image_folder"});
  config.folder.augment = "rotate";
  expect_error([&] { clx::validate_stream_options(config); }, {"data.augment", "rotate"});
  config = split_config();
  config.format = clx::SourceFormat::ImageFolder;
  config.kind = clx::StreamKind::ClassIncremental;
  config.num_tasks = 40;  // the class count of a folder is known only after the scan
  EXPECT_NO_THROW(clx::validate_stream_options(config));
  for (auto [option, change] : std::vector<std::pair<std::string, std::function<void(clx::ImageFolderOptions&)>>>{
           {"data.image_size", [](clx::ImageFolderOptions& o) { o.image_size = 4; }},
           {"data.channels", [](clx::ImageFolderOptions& o) { o.channels = 2; }},
           {"data.crop_padding", [](clx::ImageFolderOptions& o) { o.crop_padding = 40; }},
           {"data.workers", [](clx::ImageFolderOptions& o) { o.workers = -1; }},
           {"data.bad_images", [](clx::ImageFolderOptions& o) { o.bad_images = "ignore"; }},
           {"data.test_fraction", [](clx::ImageFolderOptions& o) { o.test_fraction = 1.0; }}}) {
    clx::StreamConfig bad = config;
    change(bad.folder);
    expect_error([&] { clx::validate_stream_options(bad); }, {option});
  }
}

// ---- device placement

TEST_F(TaskStreamTest, ToPlacesEachSharedSourceOnce) {
  clx::StreamConfig config = split_config();
  config.validation_fraction = 0.2;
  clx::TaskStream stream = clx::build_task_stream(config, train_, test_);
  const torch::Tensor before = stream.tasks[3].train.inputs(torch::tensor({0, 5}, torch::kInt64));
  stream.to(torch::kCPU);
  EXPECT_EQ(stream.data_device(), torch::Device(torch::kCPU));
  const auto train_source = stream.tasks[0].train.source;
  const auto test_source = stream.tasks[0].test.source;
  EXPECT_NE(train_source.get(), test_source.get());
  for (const clx::Task& task : stream.tasks) {
    EXPECT_EQ(task.train.source.get(), train_source.get());
    EXPECT_EQ(task.validation.source.get(), train_source.get());
    EXPECT_EQ(task.test.source.get(), test_source.get());
  }
  EXPECT_TRUE(torch::equal(stream.tasks[3].train.inputs(torch::tensor({0, 5}, torch::kInt64)), before));
  // In-memory data on the CPU is shared, not copied.
  const auto* placed = dynamic_cast<const clx::LabelledImages*>(train_source.get());
  ASSERT_NE(placed, nullptr);
  EXPECT_EQ(placed->images.data_ptr(), train_->images.data_ptr());
}

TEST_F(TaskStreamTest, InMemoryDataIgnoresTheAugmentSeed) {
  const clx::TaskStream stream = clx::build_task_stream(split_config(), train_, test_);
  const torch::Tensor positions = torch::tensor({1, 4, 2}, torch::kInt64);
  EXPECT_TRUE(torch::equal(stream.tasks[0].train.inputs(positions, 12345), stream.tasks[0].train.inputs(positions)));
}

TEST(HeadLayout, ParsesAndPrints) {
  EXPECT_EQ(clx::parse_head_layout("multi"), clx::HeadLayout::Multi);
  EXPECT_EQ(clx::parse_head_layout("single"), clx::HeadLayout::Single);
  EXPECT_EQ(clx::to_string(clx::HeadLayout::Multi), "multi");
  EXPECT_EQ(clx::to_string(clx::HeadLayout::Single), "single");
  expect_error([] { clx::parse_head_layout("both"); }, {"model.heads", "both"});
}

}  // namespace
