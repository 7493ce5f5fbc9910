// Multi-dataset streams: scikit-learn's digits reader, the per-class split,
// resizing to the common shape, the data.datasets list and the stream itself.
#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <string>

#include "runtime/data/digits.h"
#include "runtime/data/multi_dataset.h"
#include "runtime/data/task_stream.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"

using clx::testing_support::expect_error;

namespace {

class DigitsTest : public clx::testing_support::TempDirTest {
 protected:
  DigitsTest() : TempDirTest("clx_digits_") {}
  std::string write(const std::string& name, const std::string& text, bool gzip) {
    const std::string file = path(name).string();
    if (gzip) {
      gzFile out = gzopen(file.c_str(), "wb");
      EXPECT_EQ(gzwrite(out, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
      gzclose(out);
    } else {
      std::ofstream(file) << text;
    }
    return file;
  }
};

// One digits line: pixel k = (k + shift) % 17, then the label; floats written as sklearn writes them ("3.0").
std::string digits_line(int shift, int label) {
  std::string line;
  for (int k = 0; k < 64; ++k) line += std::to_string((k + shift) % 17) + ".0,";
  return line + std::to_string(label) + ".0\n";
}

std::shared_ptr<clx::LabelledImages> images(int64_t n, int64_t channels, int64_t side, int64_t classes, float value) {
  auto data = std::make_shared<clx::LabelledImages>();
  data->images = torch::full({n, channels, side, side}, value);
  data->labels = torch::arange(n, torch::kInt64).remainder(classes);
  data->num_classes = classes;
  data->description = "images " + std::to_string(classes);
  return data;
}

}  // namespace

TEST_F(DigitsTest, ReadsPlainAndGzippedFilesAsPixelsOverSixteen) {
  const std::string text = digits_line(0, 3) + digits_line(5, 9) + "\n";
  for (bool gzip : {false, true}) {
    const clx::LabelledImages data = clx::load_sklearn_digits(write(gzip ? "d.csv.gz" : "d.csv", text, gzip));
    ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{2, 1, 8, 8}));
    EXPECT_EQ(data.num_classes, 10);
    EXPECT_EQ(data.labels[0].item<int64_t>(), 3);
    EXPECT_EQ(data.labels[1].item<int64_t>(), 9);
    // Row 0, pixel 16 (row 2, column 0): 16 / 16 = 1; row 1, pixel 0: 5 / 16.
    EXPECT_FLOAT_EQ(data.images[0][0][2][0].item<float>(), 1.0f);
    EXPECT_FLOAT_EQ(data.images[0][0][2][1].item<float>(), 0.0f);  // (17 % 17) / 16
    EXPECT_FLOAT_EQ(data.images[1][0][0][0].item<float>(), 5.0f / 16.0f);
    EXPECT_FLOAT_EQ(data.images[1][0][7][7].item<float>(), static_cast<float>((63 + 5) % 17) / 16.0f);
  }
}

TEST_F(DigitsTest, BadFilesNameTheFileAndLine) {
  std::string short_line = digits_line(0, 1);
  short_line = short_line.substr(short_line.find(',') + 1);  // 63 pixels and a label
  expect_error([&] { clx::load_sklearn_digits(write("a.csv", digits_line(0, 1) + short_line, false)); },
               {"a.csv, line 2: 64 values, expected 64 pixels and a label"});
  std::string bright = digits_line(0, 1);
  bright.replace(0, 3, "17.0");
  expect_error([&] { clx::load_sklearn_digits(write("b.csv", bright, false)); },
               {"b.csv, line 1, pixel 1: '17.0' is not a whole number in 0..16"});
  expect_error([&] { clx::load_sklearn_digits(write("c.csv", digits_line(0, 10), false)); },
               {"c.csv, line 1, label: '10.0' is not a whole number in 0..9"});
  std::string half = digits_line(0, 1);
  half.replace(0, 3, "2.5");
  expect_error([&] { clx::load_sklearn_digits(write("d.csv", half, false)); }, {"'2.5' is not a whole number"});
  expect_error([&] { clx::load_sklearn_digits(write("e.csv", "\n\n", false)); }, {"e.csv: no images"});
  expect_error([&] { clx::load_sklearn_digits(path("missing.csv.gz").string()); }, {"missing.csv.gz: cannot open"});
  const std::string truncated = path("f.csv.gz").string();
  write("f.csv.gz", digits_line(0, 1) + digits_line(1, 2), true);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) - 8);
  expect_error([&] { clx::load_sklearn_digits(truncated); }, {"f.csv.gz: corrupt or truncated gzip data"});
}

TEST(LabelledSplit, EachClassSplitOnItsOwnBySeed) {
  // Class 0: 10 rows, class 1: 4 rows, class 2: 1 row.
  auto data = images(15, 1, 2, 3, 0.0f);
  data->labels = torch::tensor({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2}, torch::kInt64);
  data->images = torch::arange(15, torch::kFloat32).view({15, 1, 1, 1}).expand({15, 1, 2, 2}).contiguous();
  const clx::LabelledSplit split = clx::split_labelled_per_class(*data, 0.3, 7);
  // round(0.3 * 10) = 3, round(0.3 * 4) = 1, round(0.3 * 1) = 0 test rows.
  EXPECT_EQ(split.test.labels.eq(0).sum().item<int64_t>(), 3);
  EXPECT_EQ(split.test.labels.eq(1).sum().item<int64_t>(), 1);
  EXPECT_EQ(split.test.labels.eq(2).sum().item<int64_t>(), 0);
  EXPECT_EQ(split.train.labels.size(0), 11);
  // Disjoint and complete: the image values are the row numbers.
  const torch::Tensor rows =
      std::get<0>(torch::sort(torch::cat({split.train.images.select(1, 0).select(1, 0).select(1, 0),
                                          split.test.images.select(1, 0).select(1, 0).select(1, 0)})));
  EXPECT_TRUE(rows.equal(torch::arange(15, torch::kFloat32)));
  // The same seed gives the same split, another seed another one.
  EXPECT_TRUE(clx::split_labelled_per_class(*data, 0.3, 7).test.images.equal(split.test.images));
  bool differs = false;
  for (uint64_t seed = 8; seed < 16 && !differs; ++seed)
    differs = !clx::split_labelled_per_class(*data, 0.3, seed).test.images.equal(split.test.images);
  EXPECT_TRUE(differs);
}

TEST(ConformImages, ResizesAndConvertsChannels) {
  // 4x4 grey image with 2x2 blocks 0, 0.25 / 0.5, 1: shrinking to 2x2 averages each block.
  auto grey = images(1, 1, 4, 4, 0.0f);
  grey->images[0][0].slice(0, 0, 2).slice(1, 2, 4).fill_(0.25f);
  grey->images[0][0].slice(0, 2, 4).slice(1, 0, 2).fill_(0.5f);
  grey->images[0][0].slice(0, 2, 4).slice(1, 2, 4).fill_(1.0f);
  const auto small = clx::conform_images(grey, 3, 2);
  ASSERT_EQ(small->images.sizes(), (std::vector<int64_t>{1, 3, 2, 2}));
  const torch::Tensor expected = torch::tensor({0.0f, 0.25f, 0.5f, 1.0f}).view({2, 2});
  for (int c = 0; c < 3; ++c) EXPECT_TRUE(small->images[0][c].allclose(expected)) << small->images[0][c];
  EXPECT_TRUE(small->labels.equal(grey->labels));
  // A constant image stays constant when it grows; RGB to grey is ITU-R 601 luma.
  auto red = images(1, 3, 2, 2, 0.0f);
  red->images.select(1, 0).fill_(1.0f);
  const auto big_grey = clx::conform_images(red, 1, 5);
  ASSERT_EQ(big_grey->images.sizes(), (std::vector<int64_t>{1, 1, 5, 5}));
  EXPECT_TRUE(big_grey->images.allclose(torch::full({1, 1, 5, 5}, 0.299f)));
  // Nothing to change: the same object.
  EXPECT_EQ(clx::conform_images(grey, 1, 4).get(), grey.get());
}

TEST(DatasetList, ParsesFormatAndPathAndNamesTheTask) {
  const auto entries = clx::parse_dataset_list(
      " idx:/usr/share/datasets/fashion-mnist/ , digits:/x/digits.csv.gz,image_folder:/data/notMNIST_small");
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].format, clx::DatasetFormat::Idx);
  EXPECT_EQ(entries[0].path, "/usr/share/datasets/fashion-mnist/");
  EXPECT_EQ(entries[0].name, "fashion-mnist");
  EXPECT_EQ(entries[1].name, "digits");
  EXPECT_EQ(entries[2].format, clx::DatasetFormat::ImageFolder);
  EXPECT_EQ(entries[2].name, "notMNIST_small");
  EXPECT_EQ(clx::parse_dataset_list("svhn:/d/svhn, stl10:/d/stl10_binary, cifar10:/d/cifar-10-batches-bin")[2].format,
            clx::DatasetFormat::Cifar10);
  EXPECT_EQ(clx::to_string(clx::DatasetFormat::Stl10), "stl10");
  expect_error([] { clx::parse_dataset_list("cifar:/data"); },
               {"data.datasets: 'cifar:/data' is not FORMAT:PATH with FORMAT one of idx, digits, image_folder, svhn, "
                "stl10, cifar10"});
  expect_error([] { clx::parse_dataset_list("/data/mnist"); }, {"is not FORMAT:PATH"});
  expect_error([] { clx::parse_dataset_list("idx:"); }, {"data.datasets: 'idx:' names no path"});
  expect_error([] { clx::parse_dataset_list(" , "); }, {"needs a list of FORMAT:PATH entries"});
}

TEST(MultiDatasetStream, OneTaskPerDatasetWithItsOwnHead) {
  clx::StreamConfig config;
  config.kind = clx::StreamKind::MultiDataset;
  config.num_tasks = 2;
  // 3 classes, then 2 classes; constant images 0.1 and 0.2 of 1x4x4.
  std::vector<clx::NamedSources> datasets{{"three", images(12, 1, 4, 3, 0.1f), images(6, 1, 4, 3, 0.1f)},
                                          {"two", images(8, 1, 4, 2, 0.2f), images(4, 1, 4, 2, 0.2f)}};
  const clx::TaskStream stream = clx::build_multi_dataset_stream(config, datasets);
  ASSERT_EQ(stream.size(), 2);
  EXPECT_EQ(stream.description, "multi_dataset 2 tasks (three, two)");
  EXPECT_EQ(stream.num_classes, 5);
  EXPECT_EQ(stream.input_shape, (std::vector<int64_t>{1, 4, 4}));
  EXPECT_EQ(stream.tasks[0].name, "task 1 (three)");
  EXPECT_EQ(stream.tasks[0].head_size, 3);
  EXPECT_EQ(stream.tasks[1].head_size, 2);
  EXPECT_EQ(stream.tasks[1].classes, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(stream.classes_up_to(1), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(stream.tasks[0].train.size(), 12);
  EXPECT_EQ(stream.tasks[1].test.size(), 4);
  // Task 2's labels: 0..1 in its own head, 3..4 in the single head.
  const torch::Tensor all = torch::arange(8, torch::kInt64);
  const clx::TaskData& second = stream.tasks[1].train;
  EXPECT_TRUE(second.labels(all, clx::HeadLayout::Multi).lt(2).all().item<bool>());
  EXPECT_TRUE(second.labels(all, clx::HeadLayout::Single).equal(second.labels(all, clx::HeadLayout::Multi) + 3));
  EXPECT_TRUE(second.inputs(all).allclose(torch::full({8, 1, 4, 4}, 0.2f)));

  config.num_tasks = 3;
  expect_error([&] { clx::build_multi_dataset_stream(config, datasets); },
               {"data.tasks: 3, but 2 datasets were given (one task per dataset)"});
  config.num_tasks = 2;
  datasets[1].test = images(4, 1, 5, 2, 0.2f);
  expect_error([&] { clx::build_multi_dataset_stream(config, datasets); }, {"does not have the common image shape"});
}

TEST(MultiDatasetStream, OptionsCheckedBeforeAnyData) {
  clx::StreamConfig config;
  config.kind = clx::StreamKind::MultiDataset;
  config.num_tasks = 5;
  config.datasets = "idx:/nowhere/a, digits:/nowhere/digits.csv.gz";
  config.folder.channels = 1;
  config.folder.image_size = 28;
  expect_error([&] { clx::validate_stream_options(config); },
               {"data.tasks: 5, but data.datasets lists 2 datasets (one task per dataset)"});
  config.num_tasks = 2;
  config.folder.augment = "flip_crop";
  expect_error([&] { clx::validate_stream_options(config); },
               {"data.augment: flip_crop applies to image_folder datasets only"});
  config.folder.augment = "none";
  EXPECT_NO_THROW(clx::validate_stream_options(config));
  expect_error([&] { clx::load_task_stream(config); }, {"data.datasets: /nowhere/a does not exist"});
  clx::StreamConfig split;
  split.datasets = "idx:/a";
  expect_error([&] { clx::validate_stream_options(split); },
               {"data.datasets: only for data.stream=multi_dataset (data.stream is split)"});
}
