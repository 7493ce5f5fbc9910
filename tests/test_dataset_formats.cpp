// The readers of SVHN (.mat, written here with matio), STL-10 and CIFAR-10
// (binary files written here byte by byte), on small files in the real
// formats: pixel values at positions that tell rows from columns and
// channels apart, the label mappings, a damaged file of each kind, and a
// multi-dataset stream over two of them conformed to one shape.
#include <gtest/gtest.h>
#include <matio.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "runtime/data/cifar10.h"
#include "runtime/data/multi_dataset.h"
#include "runtime/data/stl10.h"
#include "runtime/data/svhn.h"
#include "runtime/data/task_stream.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"

namespace {

namespace fs = std::filesystem;
using clx::testing_support::expect_error;

// A pixel value that differs between (row, column) and (column, row), between
// channels and between images, so a transposed or mis-strided read shows.
uint8_t pattern(int64_t n, int64_t k, int64_t row, int64_t column) {
  return static_cast<uint8_t>((7 * row + 3 * column + 50 * k + 11 * n) % 256);
}

float pattern_float(int64_t n, int64_t k, int64_t row, int64_t column) {
  return static_cast<float>(pattern(n, k, row, column)) / 255.0f;
}

class DatasetFormatsTest : public clx::testing_support::TempDirTest {
 protected:
  DatasetFormatsTest() : TempDirTest("clx_dataset_formats_") {}

  std::string write_bytes(const std::string& relative, const std::vector<uint8_t>& bytes) {
    const fs::path file = path(relative);
    fs::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good()) << file;
    return file.string();
  }

  // ---- SVHN: a MATLAB v5 file with X (uint8, column-major 32x32x3xN) and y.
  struct MatVariable {
    std::string name;
    matio_classes class_type;
    matio_types data_type;
    std::vector<size_t> dims;
    std::vector<uint8_t> bytes;  // the data, dims[0] fastest
    bool compressed = true;      // as the real files are: the reader goes through matio's inflate path
  };

  static MatVariable svhn_images(int64_t count) {
    MatVariable x{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, static_cast<size_t>(count)}, {}};
    for (int64_t n = 0; n < count; ++n)
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t column = 0; column < 32; ++column)
          for (int64_t row = 0; row < 32; ++row) x.bytes.push_back(pattern(n, k, row, column));
    return x;
  }

  static MatVariable double_labels(const std::vector<double>& labels) {
    MatVariable y{"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {labels.size(), 1}, {}};
    const auto* bytes = reinterpret_cast<const uint8_t*>(labels.data());
    y.bytes.assign(bytes, bytes + labels.size() * sizeof(double));
    return y;
  }

  std::string write_mat(const std::string& relative, const std::vector<MatVariable>& variables) {
    const fs::path file = path(relative);
    fs::create_directories(file.parent_path());
    mat_t* mat = Mat_CreateVer(file.c_str(), nullptr, MAT_FT_MAT5);
    EXPECT_NE(mat, nullptr) << file;
    if (mat == nullptr) return file.string();
    for (const MatVariable& variable : variables) {
      std::vector<size_t> dims = variable.dims;
      std::vector<uint8_t> data = variable.bytes;
      matvar_t* written = Mat_VarCreate(variable.name.c_str(), variable.class_type, variable.data_type,
                                        static_cast<int>(dims.size()), dims.data(), data.data(), 0);
      EXPECT_NE(written, nullptr) << variable.name;
      EXPECT_EQ(Mat_VarWrite(mat, written, variable.compressed ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE), 0)
          << variable.name;
      Mat_VarFree(written);
    }
    Mat_Close(mat);
    return file.string();
  }

  // ---- STL-10: N images of 3x96x96, each channel column-major, and labels 1..10.
  void write_stl10(const std::string& folder, const std::string& part, int64_t count,
                   const std::vector<uint8_t>& labels) {
    std::vector<uint8_t> images;
    for (int64_t n = 0; n < count; ++n)
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t column = 0; column < 96; ++column)
          for (int64_t row = 0; row < 96; ++row) images.push_back(pattern(n, k, row, column));
    write_bytes(folder + "/" + part + "_X.bin", images);
    write_bytes(folder + "/" + part + "_y.bin", labels);
  }

  // ---- CIFAR-10: records of a label byte and 3 row-major 32x32 planes (R, G, B).
  static std::vector<uint8_t> cifar_records(const std::vector<uint8_t>& labels, int64_t first_image) {
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i < labels.size(); ++i) {
      bytes.push_back(labels[i]);
      for (int64_t k = 0; k < 3; ++k)
        for (int64_t row = 0; row < 32; ++row)
          for (int64_t column = 0; column < 32; ++column)
            bytes.push_back(pattern(first_image + static_cast<int64_t>(i), k, row, column));
    }
    return bytes;
  }

  // Batch b (1..5) holds images 2(b-1), 2(b-1)+1 with labels b-1, b; the test batch images 100, 101.
  void write_cifar10(const std::string& folder) {
    for (int b = 1; b <= 5; ++b)
      write_bytes(folder + "/data_batch_" + std::to_string(b) + ".bin",
                  cifar_records({static_cast<uint8_t>(b - 1), static_cast<uint8_t>(b)}, 2 * (b - 1)));
    write_bytes(folder + "/test_batch.bin", cifar_records({9, 0}, 100));
  }
};

// Image `image` of `images` holds pattern image `pattern_image` at positions
// whose transposes hold other values.
void expect_pixels(const torch::Tensor& images, int64_t image, int64_t pattern_image) {
  const std::vector<std::pair<int64_t, int64_t>> positions{{0, 0}, {1, 5}, {5, 1}, {31, 2}, {2, 31}};
  for (int64_t k = 0; k < 3; ++k)
    for (const auto& [row, column] : positions)
      EXPECT_FLOAT_EQ(images[image][k][row][column].item<float>(), pattern_float(pattern_image, k, row, column))
          << "image " << image << " channel " << k << " row " << row << " column " << column;
}

}  // namespace

// ---- SVHN

TEST_F(DatasetFormatsTest, SvhnReadsColumnMajorImagesAndMapsLabelTenToZero) {
  // y uncompressed after a compressed X: an uncompressed element at an unaligned position.
  MatVariable labels = double_labels({10, 1, 7});
  labels.compressed = false;
  const std::string file = write_mat("svhn/train_32x32.mat", {svhn_images(3), labels});
  const clx::LabelledImages data = clx::load_svhn_split(path("svhn").string(), clx::OfficialSplit::Train);
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_TRUE(data.images.is_contiguous());
  EXPECT_EQ(data.num_classes, 10);
  EXPECT_TRUE(data.labels.equal(torch::tensor({0, 1, 7}, torch::kInt64))) << data.labels;
  for (int64_t n = 0; n < 3; ++n) expect_pixels(data.images, n, n);
  // The whole last image, not only the sampled positions.
  torch::Tensor last = torch::empty({3, 32, 32});
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t row = 0; row < 32; ++row)
      for (int64_t column = 0; column < 32; ++column) last[k][row][column] = pattern_float(2, k, row, column);
  EXPECT_TRUE(data.images[2].equal(last));
  EXPECT_NE(data.description.find(file), std::string::npos) << data.description;

  // uint8 labels (as scipy writes them), a single image (MATLAB drops the trailing 1: X is 32x32x3), and
  // no compression (elements padded to 8 bytes).
  MatVariable one = svhn_images(1);
  one.dims = {32, 32, 3};
  one.compressed = false;
  const std::string single =
      write_mat("one/test_32x32.mat", {one, MatVariable{"y", MAT_C_UINT8, MAT_T_UINT8, {1, 1}, {10}, false}});
  const clx::LabelledImages test = clx::read_svhn_file(single);
  ASSERT_EQ(test.images.sizes(), (std::vector<int64_t>{1, 3, 32, 32}));
  EXPECT_EQ(test.labels[0].item<int64_t>(), 0);
  expect_pixels(test.images, 0, 0);
}

TEST_F(DatasetFormatsTest, SvhnDamagedFilesNameTheFileAndTheProblem) {
  const std::string bad_label = write_mat("a.mat", {svhn_images(2), double_labels({3, 11})});
  expect_error([&] { clx::read_svhn_file(bad_label); },
               {bad_label, "variable y: label 11 of image 2 (of 2) is outside 1..10"});
  const std::string fraction = write_mat("b.mat", {svhn_images(2), double_labels({3, 2.5})});
  expect_error([&] { clx::read_svhn_file(fraction); }, {fraction, "label 2.5 of image 2 (of 2) is not a whole number"});
  const std::string no_y = write_mat("c.mat", {svhn_images(2)});
  expect_error([&] { clx::read_svhn_file(no_y); }, {no_y, "no variable 'y'"});
  const std::string no_x = write_mat("d.mat", {double_labels({1, 2})});
  expect_error([&] { clx::read_svhn_file(no_x); }, {no_x, "no variable 'X'"});
  MatVariable grey = svhn_images(2);
  grey.dims = {32, 32, 1, 6};
  const std::string wrong_dims = write_mat("e.mat", {grey, double_labels({1, 2})});
  expect_error([&] { clx::read_svhn_file(wrong_dims); },
               {wrong_dims, "variable X is uint8 32x32x1x6, expected uint8 32x32x3xN"});
  const MatVariable as_double{"X", MAT_C_DOUBLE, MAT_T_DOUBLE, {32, 32, 3, 2},
                              std::vector<uint8_t>(32 * 32 * 3 * 2 * sizeof(double), 0)};
  const std::string wrong_type = write_mat("f.mat", {as_double, double_labels({1, 2})});
  expect_error([&] { clx::read_svhn_file(wrong_type); }, {wrong_type, "variable X is double 32x32x3x2"});
  const std::string mismatch = write_mat("g.mat", {svhn_images(2), double_labels({1, 2, 3})});
  expect_error([&] { clx::read_svhn_file(mismatch); }, {mismatch, "X holds 2 images but y holds 3 labels"});
  const std::string matrix_y =
      write_mat("h.mat", {svhn_images(2), MatVariable{"y", MAT_C_UINT8, MAT_T_UINT8, {2, 2}, {1, 2, 3, 4}}});
  expect_error([&] { clx::read_svhn_file(matrix_y); }, {matrix_y, "variable y is uint8 2x2, expected double or uint8 Nx1"});
  // Cut short inside X's compressed data (y written first, so X is the last variable).
  const std::string cut = write_mat("j.mat", {double_labels({1, 2}), svhn_images(2)});
  fs::resize_file(cut, fs::file_size(cut) - 100);
  expect_error([&] { clx::read_svhn_file(cut); },
               {cut, "truncated: the variable at byte", "the file ends 100 bytes before that"});
  MatVariable plain_images = svhn_images(2);
  plain_images.compressed = false;
  const std::string cut_uncompressed = write_mat("k.mat", {double_labels({1, 2}), plain_images});
  fs::resize_file(cut_uncompressed, fs::file_size(cut_uncompressed) - 1);
  expect_error([&] { clx::read_svhn_file(cut_uncompressed); }, {cut_uncompressed, "truncated"});
  const std::string not_mat = write_bytes("i.mat", std::vector<uint8_t>(300, 'x'));
  expect_error([&] { clx::read_svhn_file(not_mat); }, {not_mat, "not a MATLAB .mat file"});
  expect_error([&] { clx::load_svhn_split(dir_.string(), clx::OfficialSplit::Test); },
               {path("test_32x32.mat").string(), "does not exist", "train_32x32.mat and test_32x32.mat"});
}

// ---- STL-10

TEST_F(DatasetFormatsTest, Stl10ReadsColumnMajorPlanesAndLabelsOneToTen) {
  write_stl10("stl", "train", 2, {1, 10});
  write_stl10("stl", "test", 1, {4});
  const clx::LabelledImages train = clx::load_stl10_split(path("stl").string(), clx::OfficialSplit::Train);
  ASSERT_EQ(train.images.sizes(), (std::vector<int64_t>{2, 3, 96, 96}));
  EXPECT_TRUE(train.images.is_contiguous());
  EXPECT_TRUE(train.labels.equal(torch::tensor({0, 9}, torch::kInt64))) << train.labels;
  for (int64_t n = 0; n < 2; ++n) expect_pixels(train.images, n, n);
  EXPECT_FLOAT_EQ(train.images[1][2][95][40].item<float>(), pattern_float(1, 2, 95, 40));
  EXPECT_FLOAT_EQ(train.images[1][2][40][95].item<float>(), pattern_float(1, 2, 40, 95));
  const clx::LabelledImages test = clx::load_stl10_split(path("stl").string(), clx::OfficialSplit::Test);
  ASSERT_EQ(test.images.size(0), 1);
  EXPECT_EQ(test.labels[0].item<int64_t>(), 3);
}

TEST_F(DatasetFormatsTest, Stl10DamagedFilesNameTheFile) {
  write_stl10("stl", "train", 2, {1, 2});
  const std::string images = path("stl/train_X.bin").string();
  const std::string labels = path("stl/train_y.bin").string();
  const std::string folder = path("stl").string();
  fs::resize_file(images, 2 * 27648 - 5);
  expect_error([&] { clx::load_stl10_split(folder, clx::OfficialSplit::Train); },
               {images, "55291 bytes, not a whole number of 27648-byte images"});
  write_stl10("stl", "train", 2, {1, 2, 3});
  expect_error([&] { clx::load_stl10_split(folder, clx::OfficialSplit::Train); },
               {"sizes disagree", images, "holds 2 images but", labels, "holds 3 labels"});
  write_stl10("stl", "train", 2, {0, 2});
  expect_error([&] { clx::load_stl10_split(folder, clx::OfficialSplit::Train); },
               {labels, "label 0 of image 1 (of 2) is outside 1..10"});
  expect_error([&] { clx::load_stl10_split(folder, clx::OfficialSplit::Test); },
               {path("stl/test_X.bin").string(), "does not exist", "train_X.bin, train_y.bin, test_X.bin and test_y.bin"});
}

// ---- CIFAR-10

TEST_F(DatasetFormatsTest, Cifar10ReadsRowMajorPlanesFromEveryBatch) {
  write_cifar10("cifar");
  const clx::LabelledImages train = clx::load_cifar10_split(path("cifar").string(), clx::OfficialSplit::Train);
  ASSERT_EQ(train.images.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  EXPECT_TRUE(train.labels.equal(torch::tensor({0, 1, 1, 2, 2, 3, 3, 4, 4, 5}, torch::kInt64))) << train.labels;
  for (int64_t n : {0, 1, 4, 9}) expect_pixels(train.images, n, n);
  const clx::LabelledImages test = clx::load_cifar10_split(path("cifar").string(), clx::OfficialSplit::Test);
  ASSERT_EQ(test.images.size(0), 2);
  EXPECT_TRUE(test.labels.equal(torch::tensor({9, 0}, torch::kInt64)));
  expect_pixels(test.images, 1, 101);
}

TEST_F(DatasetFormatsTest, Cifar10DamagedBatchesNameTheFile) {
  write_cifar10("cifar");
  const std::string folder = path("cifar").string();
  const std::string third = path("cifar/data_batch_3.bin").string();
  fs::resize_file(third, 2 * 3073 + 1);
  expect_error([&] { clx::load_cifar10_split(folder, clx::OfficialSplit::Train); },
               {third, "6147 bytes, not a whole number of 3073-byte records", "a CIFAR batch of the wrong length"});
  write_bytes("cifar/data_batch_3.bin", cifar_records({3, 10}, 0));
  expect_error([&] { clx::load_cifar10_split(folder, clx::OfficialSplit::Train); },
               {third, "label 10 of image 2 (of 2) is outside 0..9"});
  fs::remove(third);
  expect_error([&] { clx::load_cifar10_split(folder, clx::OfficialSplit::Train); },
               {third, "does not exist", "data_batch_1.bin .. data_batch_5.bin and test_batch.bin"});
  // One batch on its own, as the test batch is read.
  const clx::LabelledImages batch = clx::read_cifar10_batch(path("cifar/test_batch.bin").string());
  EXPECT_EQ(batch.images.size(0), 2);
}

// ---- a multi-dataset stream over two of them

TEST_F(DatasetFormatsTest, MultiDatasetStreamConformsStl10AndCifar10ToOneShape) {
  write_stl10("stl10_binary", "train", 2, {1, 2});
  write_stl10("stl10_binary", "test", 1, {3});
  write_cifar10("cifar-10-batches-bin");
  clx::StreamConfig config;
  config.kind = clx::StreamKind::MultiDataset;
  config.num_tasks = 2;
  config.datasets = "stl10:" + path("stl10_binary").string() + ", cifar10:" + path("cifar-10-batches-bin").string();
  config.folder.channels = 1;
  config.folder.image_size = 16;
  const clx::TaskStream stream = clx::load_task_stream(config);
  ASSERT_EQ(stream.size(), 2);
  EXPECT_EQ(stream.input_shape, (std::vector<int64_t>{1, 16, 16}));
  EXPECT_EQ(stream.tasks[0].name, "task 1 (stl10_binary)");
  EXPECT_EQ(stream.tasks[0].train.size(), 2);
  EXPECT_EQ(stream.tasks[0].test.size(), 1);
  EXPECT_EQ(stream.tasks[1].train.size(), 10);
  EXPECT_EQ(stream.tasks[1].test.size(), 2);
  EXPECT_EQ(stream.num_classes, 20);
  for (const clx::Task& task : stream.tasks)
    EXPECT_EQ(task.train.inputs(torch::arange(task.train.size())).sizes(),
              (std::vector<int64_t>{task.train.size(), 1, 16, 16}));
  // STL-10's 96 px shrink by area averaging: output pixel (0, 0) is the grey
  // (ITU-R 601 luma) of the mean of rows and columns 0..5 of image 0.
  float mean[3] = {0, 0, 0};
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t row = 0; row < 6; ++row)
      for (int64_t column = 0; column < 6; ++column) mean[k] += pattern_float(0, k, row, column) / 36.0f;
  const float grey = 0.299f * mean[0] + 0.587f * mean[1] + 0.114f * mean[2];
  // (The task's split lists the source's rows in a seeded order: image 0 is read from the source itself.)
  const torch::Tensor first = stream.tasks[0].train.source->gather(torch::tensor({0}, torch::kInt64), 0);
  EXPECT_NEAR(first[0][0][0][0].item<float>(), grey, 1e-5f);
}
