// The dataset writers of runtime/data/format_writers.h (make-five-datasets)
// read back by this project's readers: every pixel and label as written, the
// formats' own label numbering, the synthetic class images' layout, and the
// refusals naming the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/data/byte_images.h"
#include "runtime/data/cifar10.h"
#include "runtime/data/format_writers.h"
#include "runtime/data/idx.h"
#include "runtime/data/image_folder.h"
#include "runtime/data/stl10.h"
#include "runtime/data/svhn.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"

namespace {

using clx::testing_support::expect_error;

class FormatWritersTest : public clx::testing_support::TempDirTest {
 protected:
  FormatWritersTest() : TempDirTest("clx_format_writers_") {}
};

// Random uint8 images [n, c, side, side] and labels 0..9 covering digit 0.
clx::SyntheticClassImages random_images(int64_t n, int64_t channels, int64_t side, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor labels = torch::randint(0, 10, {n}, torch::kInt64);
  labels[0] = 0;  // SVHN writes digit 0 as 10, STL-10 as 1
  return {torch::randint(0, 256, {n, channels, side, side}, torch::kInt64).to(torch::kUInt8), labels};
}

torch::Tensor as_unit_floats(const torch::Tensor& bytes) { return bytes.to(torch::kFloat32).div(255.0f); }

TEST_F(FormatWritersTest, IdxPlainAndGzipReadBackBitForBit) {
  const torch::Tensor values = torch::randint(0, 256, {3, 5, 7}, torch::kInt64).to(torch::kUInt8);
  clx::write_idx_file(path("plain/images-idx3-ubyte").string(), values);
  clx::write_idx_file(path("gz/images-idx3-ubyte.gz").string(), values);
  EXPECT_TRUE(torch::equal(clx::read_idx(path("plain/images-idx3-ubyte").string()), values));
  EXPECT_TRUE(torch::equal(clx::read_idx(path("gz/images-idx3-ubyte.gz").string()), values));
  // The .gz file really is gzip (starts with the magic bytes 1f 8b).
  const std::string raw = clx::read_plain_or_gzip_file(path("plain/images-idx3-ubyte").string(), 1 << 20);
  EXPECT_EQ(raw.size(), 4u + 3 * 4 + 3 * 5 * 7);
  EXPECT_EQ(raw.substr(0, 4), std::string("\0\0\x08\x03", 4));
  std::ifstream gz(path("gz/images-idx3-ubyte.gz"), std::ios::binary);
  char magic[2] = {0, 0};
  gz.read(magic, 2);
  EXPECT_EQ(static_cast<unsigned char>(magic[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(magic[1]), 0x8b);

  // An MNIST split written with it loads through load_mnist_split.
  const clx::SyntheticClassImages data = random_images(6, 1, 28, 3);
  clx::write_idx_file(path("mnist/train-images-idx3-ubyte.gz").string(), data.images.squeeze(1));
  clx::write_idx_file(path("mnist/train-labels-idx1-ubyte.gz").string(), data.labels.to(torch::kUInt8));
  const clx::LabelledImages mnist = clx::load_mnist_split(path("mnist").string(), "train");
  EXPECT_TRUE(torch::equal(mnist.labels, data.labels));
  EXPECT_TRUE(torch::allclose(mnist.images, as_unit_floats(data.images)));
}

TEST_F(FormatWritersTest, SvhnMatReadsBackWithDigitZeroAsTen) {
  const clx::SyntheticClassImages data = random_images(5, 3, 32, 4);
  const std::string file = path("svhn/train_32x32.mat").string();
  clx::write_svhn_mat(file, data.images, data.labels);
  const clx::LabelledImages read = clx::read_svhn_file(file);
  EXPECT_TRUE(torch::equal(read.labels, data.labels));  // the reader maps 10 back to 0
  EXPECT_TRUE(torch::equal(read.images, as_unit_floats(data.images)));
  // No temporary is left beside it.
  int64_t entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path("svhn"))) entries += entry.is_regular_file();
  EXPECT_EQ(entries, 1);
}

TEST_F(FormatWritersTest, Stl10AndCifar10ReadBackEveryPixel) {
  const clx::SyntheticClassImages stl = random_images(3, 3, 96, 5);
  clx::write_stl10_split(path("stl10_binary").string(), "test", stl.images, stl.labels);
  const clx::LabelledImages stl_read = clx::load_stl10_split(path("stl10_binary").string(), clx::OfficialSplit::Test);
  EXPECT_TRUE(torch::equal(stl_read.labels, stl.labels));
  EXPECT_TRUE(torch::equal(stl_read.images, as_unit_floats(stl.images)));
  // The labels file holds the format's own numbering, 1..10.
  const std::string y = clx::read_plain_or_gzip_file(path("stl10_binary/test_y.bin").string(), 100);
  ASSERT_EQ(y.size(), 3u);
  EXPECT_EQ(static_cast<int>(y[0]), 1);

  const clx::SyntheticClassImages cifar = random_images(4, 3, 32, 6);
  clx::write_cifar10_batch(path("cifar/test_batch.bin").string(), cifar.images, cifar.labels);
  const clx::LabelledImages cifar_read = clx::read_cifar10_batch(path("cifar/test_batch.bin").string());
  EXPECT_TRUE(torch::equal(cifar_read.labels, cifar.labels));
  EXPECT_TRUE(torch::equal(cifar_read.images, as_unit_floats(cifar.images)));
}

TEST_F(FormatWritersTest, PngClassFoldersLoadAsAnImageFolder) {
  if (!clx::image_folders_supported()) GTEST_SKIP() << "this build has no OpenCV";
  const clx::SyntheticClassImages data = clx::synthetic_class_images(4, 3, 1, 28, 1, 7);
  EXPECT_EQ(clx::write_png_class_folders(path("letters").string(), {"A", "B", "C"}, data.images, data.labels, "a"), 12);
  EXPECT_TRUE(std::filesystem::is_regular_file(path("letters/C/a00011.png")));
  clx::ImageFolderOptions options;
  options.image_size = 28;
  options.channels = 1;
  options.test_fraction = 0.25;  // one of each class's four images
  const clx::ImageFolderData folder = clx::load_image_folder(path("letters").string(), "letters", options, 1);
  ASSERT_EQ(folder.train->size() + folder.test->size(), 12);
  EXPECT_EQ(folder.train->class_names, (std::vector<std::string>{"A", "B", "C"}));
  // Every decoded training image is one of the written images of its class, pixel for pixel (PNG is lossless).
  const torch::Tensor decoded = folder.train->gather(torch::arange(folder.train->size()), 0);
  for (int64_t i = 0; i < folder.train->size(); ++i) {
    const int64_t label = folder.train->labels[i].item<int64_t>();
    bool found = false;
    for (int64_t j = label * 4; j < label * 4 + 4; ++j)
      found = found || torch::equal(decoded[i], as_unit_floats(data.images[j]));
    EXPECT_TRUE(found) << "training image " << i;
  }
}

TEST(SyntheticClassImages, ClassesByPlaceStylesApartAndSeeded) {
  const clx::SyntheticClassImages a = clx::synthetic_class_images(3, 10, 1, 20, 0, 9);
  EXPECT_EQ(a.images.sizes().vec(), (std::vector<int64_t>{30, 1, 20, 20}));
  EXPECT_TRUE(torch::equal(a.labels, torch::arange(10).repeat_interleave(3)));
  // Style 0 is a full block: class k's block starts at column 4*(k % 5) (+ jitter
  // of at most 1) and row 10*(k / 5) (+ at most 1), bright (>= 200) over a dark
  // background (< 50). Class 7: columns 8..11, rows 10..19.
  const torch::Tensor image = a.images[7 * 3][0].to(torch::kInt64);
  EXPECT_GE(image[12][9].item<int64_t>(), 200);  // inside whatever the jitter
  EXPECT_LT(image[2][2].item<int64_t>(), 50);    // another class's place
  EXPECT_LT(image[12][18].item<int64_t>(), 50);
  // The same seed gives the same pixels; another seed or style others.
  EXPECT_TRUE(torch::equal(clx::synthetic_class_images(3, 10, 1, 20, 0, 9).images, a.images));
  EXPECT_FALSE(torch::equal(clx::synthetic_class_images(3, 10, 1, 20, 0, 10).images, a.images));
  EXPECT_FALSE(torch::equal(clx::synthetic_class_images(3, 10, 1, 20, 1, 9).images, a.images));
  expect_error([] { clx::synthetic_class_images(3, 11, 1, 20, 0, 1); }, {"classes 1..10"});
}

TEST_F(FormatWritersTest, ShapesTheFormatCannotHoldNameTheFile) {
  const clx::SyntheticClassImages grey = random_images(2, 1, 32, 8);
  const std::string svhn = path("svhn.mat").string();
  expect_error([&] { clx::write_svhn_mat(svhn, grey.images, grey.labels); },
               {svhn, "SVHN holds uint8 images n x 3x32x32", "got"});
  const clx::SyntheticClassImages colour = random_images(2, 3, 32, 8);
  expect_error([&] { clx::write_stl10_split(path("stl").string(), "train", colour.images, colour.labels); },
               {"train_X.bin", "STL-10 holds uint8 images n x 3x96x96"});
  expect_error([&] { clx::write_cifar10_batch(path("c.bin").string(), colour.images, colour.labels.slice(0, 0, 1)); },
               {"c.bin", "one label per image (2)"});
  expect_error([&] { clx::write_cifar10_batch(path("c.bin").string(), colour.images, colour.labels + 10); },
               {"c.bin", "labels must be 0..9"});
  expect_error([&] { clx::write_idx_file(path("f.idx").string(), torch::zeros({2}, torch::kFloat32)); },
               {"f.idx", "uint8"});
  EXPECT_FALSE(std::filesystem::exists(path("c.bin")));
}

}  // namespace
