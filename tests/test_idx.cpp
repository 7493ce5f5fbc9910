// Unit tests of the IDX reader (runtime/data/idx.h): plain and gzipped files,
// every element type's big-endian decoding, load_mnist_split and the errors.
#include <gtest/gtest.h>

#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/data/idx.h"
#include "runtime/error.h"

using clx::testing_support::expect_error;

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

void append_be32(Bytes& out, uint32_t value) {
  out.push_back(static_cast<unsigned char>(value >> 24));
  out.push_back(static_cast<unsigned char>(value >> 16));
  out.push_back(static_cast<unsigned char>(value >> 8));
  out.push_back(static_cast<unsigned char>(value));
}

// IDX header: 00 00 <type> <rank>, then one big-endian uint32 per dimension.
Bytes idx_header(unsigned char type, const std::vector<uint32_t>& shape) {
  Bytes out = {0, 0, type, static_cast<unsigned char>(shape.size())};
  for (uint32_t dim : shape) append_be32(out, dim);
  return out;
}

Bytes idx_uint8(const std::vector<uint32_t>& shape, const Bytes& data) {
  Bytes out = idx_header(0x08, shape);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_plain(const fs::path& path, const Bytes& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  ASSERT_TRUE(file) << path;
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(file.good()) << path;
}

void write_gzip(const fs::path& path, const Bytes& bytes) {
  gzFile file = gzopen(path.string().c_str(), "wb9");
  ASSERT_NE(file, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(file), Z_OK);
}

Bytes read_all(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// Deterministic, poorly compressible bytes.
Bytes noise(size_t count, uint32_t seed) {
  Bytes out(count);
  uint32_t state = seed * 2654435761u + 1u;
  for (size_t i = 0; i < count; ++i) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    out[i] = static_cast<unsigned char>(state >> 7);
  }
  return out;
}

class IdxTest : public clx::testing_support::TempDirTest {
 protected:
  IdxTest() : TempDirTest("clx_test_idx_") {}

  // A tiny MNIST-format split: `count` images of 2x3 pixels, labels 0..9.
  static Bytes image_pixels(uint32_t count) {
    Bytes pixels(count * 6);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>((i * 37 + 5) % 256);
    pixels[0] = 0;
    pixels[1] = 255;
    return pixels;
  }
};

TEST_F(IdxTest, ReadsPlainUint8ImagesAndLabels) {
  const Bytes pixels = image_pixels(4);  // 4 images of 2x3
  write_plain(path("images"), idx_uint8({4, 2, 3}, pixels));
  write_plain(path("labels"), idx_uint8({4}, {3, 0, 9, 7}));

  const torch::Tensor images = clx::read_idx(path("images").string());
  ASSERT_EQ(images.scalar_type(), torch::kUInt8);
  ASSERT_EQ(images.sizes().vec(), (std::vector<int64_t>{4, 2, 3}));
  const auto flat = images.contiguous().reshape({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) EXPECT_EQ(flat[i].item<int64_t>(), pixels[i]) << "element " << i;
  // Row-major: image 1, row 1, column 2 is byte 6 + 3 + 2.
  EXPECT_EQ(images[1][1][2].item<int64_t>(), pixels[11]);

  const torch::Tensor labels = clx::read_idx(path("labels").string());
  ASSERT_EQ(labels.scalar_type(), torch::kUInt8);
  ASSERT_EQ(labels.sizes().vec(), (std::vector<int64_t>{4}));
  EXPECT_TRUE(torch::equal(labels, torch::tensor({3, 0, 9, 7}, torch::kUInt8)));
}

TEST_F(IdxTest, ReadsGzippedUint8ImagesAndLabels) {
  const Bytes pixels = image_pixels(5);
  write_gzip(path("images.gz"), idx_uint8({5, 2, 3}, pixels));
  write_gzip(path("labels.gz"), idx_uint8({5}, {1, 2, 3, 4, 5}));
  // The gzip file really is compressed (starts with the gzip magic bytes).
  const Bytes raw = read_all(path("images.gz"));
  ASSERT_GE(raw.size(), 2u);
  EXPECT_EQ(raw[0], 0x1f);
  EXPECT_EQ(raw[1], 0x8b);

  const torch::Tensor images = clx::read_idx(path("images.gz").string());
  ASSERT_EQ(images.sizes().vec(), (std::vector<int64_t>{5, 2, 3}));
  ASSERT_EQ(images.scalar_type(), torch::kUInt8);
  const torch::Tensor expected =
      torch::from_blob(const_cast<unsigned char*>(pixels.data()), {5, 2, 3}, torch::kUInt8).clone();
  EXPECT_TRUE(torch::equal(images, expected));

  const torch::Tensor labels = clx::read_idx(path("labels.gz").string());
  EXPECT_TRUE(torch::equal(labels, torch::tensor({1, 2, 3, 4, 5}, torch::kUInt8)));
}

TEST_F(IdxTest, GzipIsDetectedFromContentNotName) {
  // A gzipped file without ".gz" and a plain file named ".gz" both read correctly.
  write_gzip(path("labels_gz_without_suffix"), idx_uint8({3}, {7, 8, 9}));
  write_plain(path("plain_with_suffix.gz"), idx_uint8({3}, {4, 5, 6}));
  EXPECT_TRUE(torch::equal(clx::read_idx(path("labels_gz_without_suffix").string()),
                           torch::tensor({7, 8, 9}, torch::kUInt8)));
  EXPECT_TRUE(
      torch::equal(clx::read_idx(path("plain_with_suffix.gz").string()), torch::tensor({4, 5, 6}, torch::kUInt8)));
}

TEST_F(IdxTest, DecodesBigEndianInt32) {
  const std::vector<int32_t> values = {1, -2, 0x01020304, -2147483647 - 1, 2147483647, 256};
  Bytes bytes = idx_header(0x0C, {2, 3});
  for (int32_t v : values) append_be32(bytes, static_cast<uint32_t>(v));
  write_plain(path("int32"), bytes);

  const torch::Tensor t = clx::read_idx(path("int32").string());
  ASSERT_EQ(t.scalar_type(), torch::kInt32);
  ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{2, 3}));
  const auto flat = t.reshape({-1});
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(flat[i].item<int32_t>(), values[i]) << "element " << i;
}

TEST_F(IdxTest, DecodesBigEndianFloat32) {
  const std::vector<float> values = {0.0f, 1.5f, -3.25f, 1e-7f, 123456.789f, -0.0f, 3.4e38f};
  Bytes bytes = idx_header(0x0D, {7});
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    append_be32(bytes, bits);
  }
  write_gzip(path("float32.gz"), bytes);

  const torch::Tensor t = clx::read_idx(path("float32.gz").string());
  ASSERT_EQ(t.scalar_type(), torch::kFloat32);
  ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{7}));
  for (size_t i = 0; i < values.size(); ++i) {
    const float got = t[i].item<float>();
    EXPECT_EQ(got, values[i]) << "element " << i;  // exact: the bits are copied
    EXPECT_EQ(std::signbit(got), std::signbit(values[i])) << "element " << i;
  }
}

TEST_F(IdxTest, DecodesInt8Int16AndFloat64) {
  {
    Bytes bytes = idx_header(0x09, {3});
    bytes.insert(bytes.end(), {0x80, 0xFF, 0x7F});
    write_plain(path("int8"), bytes);
    const torch::Tensor t = clx::read_idx(path("int8").string());
    ASSERT_EQ(t.scalar_type(), torch::kInt8);
    EXPECT_TRUE(torch::equal(t, torch::tensor({-128, -1, 127}, torch::kInt8)));
  }
  {
    Bytes bytes = idx_header(0x0B, {3});
    bytes.insert(bytes.end(), {0x01, 0x02, 0xFF, 0xFE, 0x80, 0x00});
    write_plain(path("int16"), bytes);
    const torch::Tensor t = clx::read_idx(path("int16").string());
    ASSERT_EQ(t.scalar_type(), torch::kInt16);
    EXPECT_TRUE(torch::equal(t, torch::tensor({0x0102, -2, -32768}, torch::kInt16)));
  }
  {
    const std::vector<double> values = {3.141592653589793, -1e300};
    Bytes bytes = idx_header(0x0E, {2});
    for (double v : values) {
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      append_be32(bytes, static_cast<uint32_t>(bits >> 32));
      append_be32(bytes, static_cast<uint32_t>(bits));
    }
    write_plain(path("float64"), bytes);
    const torch::Tensor t = clx::read_idx(path("float64").string());
    ASSERT_EQ(t.scalar_type(), torch::kFloat64);
    EXPECT_EQ(t[0].item<double>(), values[0]);
    EXPECT_EQ(t[1].item<double>(), values[1]);
  }
}

TEST_F(IdxTest, LoadMnistSplitScalesPixelsAndWidensLabels) {
  const uint32_t n = 6;
  const Bytes pixels = image_pixels(n);
  const Bytes labels = {0, 9, 3, 3, 5, 1};
  write_plain(path("train-images-idx3-ubyte"), idx_uint8({n, 2, 3}, pixels));
  write_gzip(path("train-labels-idx1-ubyte.gz"), idx_uint8({n}, labels));

  const clx::LabelledImages split = clx::load_mnist_split(dir_.string(), "train", 10);
  ASSERT_EQ(split.images.scalar_type(), torch::kFloat32);
  ASSERT_EQ(split.images.sizes().vec(), (std::vector<int64_t>{n, 1, 2, 3}));
  ASSERT_EQ(split.labels.scalar_type(), torch::kInt64);
  ASSERT_EQ(split.labels.sizes().vec(), (std::vector<int64_t>{n}));
  EXPECT_EQ(split.size(), n);
  EXPECT_EQ(split.num_classes, 10);
  EXPECT_NE(split.description.find("train"), std::string::npos) << split.description;

  EXPECT_GE(split.images.min().item<float>(), 0.0f);
  EXPECT_LE(split.images.max().item<float>(), 1.0f);
  EXPECT_EQ(split.images.min().item<float>(), 0.0f);  // pixel 0
  EXPECT_EQ(split.images.max().item<float>(), 1.0f);  // pixel 255
  const auto flat = split.images.reshape({-1});
  for (size_t i = 0; i < pixels.size(); ++i)
    EXPECT_NEAR(flat[i].item<float>(), pixels[i] / 255.0f, 1e-7) << "pixel " << i;
  for (size_t i = 0; i < labels.size(); ++i) EXPECT_EQ(split.labels[i].item<int64_t>(), labels[i]);
}

TEST_F(IdxTest, LoadMnistSplitPrefersPlainFileOverGz) {
  write_plain(path("t10k-images-idx3-ubyte"), idx_uint8({2, 2, 3}, image_pixels(2)));
  write_gzip(path("t10k-images-idx3-ubyte.gz"), idx_uint8({3, 2, 3}, image_pixels(3)));
  write_plain(path("t10k-labels-idx1-ubyte"), idx_uint8({2}, {1, 2}));
  EXPECT_EQ(clx::find_idx_file(dir_.string(), "t10k-images-idx3-ubyte"), path("t10k-images-idx3-ubyte").string());
  EXPECT_EQ(clx::load_mnist_split(dir_.string(), "t10k").size(), 2);
}

// ---- errors

TEST_F(IdxTest, MissingFileNamesBothCandidates) {
  const std::string plain = path("train-images-idx3-ubyte").string();
  expect_error([&] { clx::find_idx_file(dir_.string(), "train-images-idx3-ubyte"); }, {plain, plain + ".gz"});
  expect_error([&] { clx::load_mnist_split(dir_.string(), "train"); }, {plain, plain + ".gz"});
}

TEST_F(IdxTest, ReadIdxOnMissingPathThrows) {
  const std::string missing = path("does-not-exist").string();
  expect_error([&] { clx::read_idx(missing); }, {missing, "cannot open"});
}

TEST_F(IdxTest, WrongMagicNumberThrows) {
  Bytes bytes = {0x12, 0x34, 0x08, 0x01};
  append_be32(bytes, 2);
  bytes.insert(bytes.end(), {1, 2});
  write_plain(path("bad_magic"), bytes);
  const std::string p = path("bad_magic").string();
  expect_error([&] { clx::read_idx(p); }, {p, "magic number", "12 34"});
}

TEST_F(IdxTest, UnknownElementTypeThrows) {
  Bytes bytes = {0x00, 0x00, 0x07, 0x01};
  append_be32(bytes, 2);
  bytes.insert(bytes.end(), {1, 2});
  write_plain(path("bad_type"), bytes);
  const std::string p = path("bad_type").string();
  expect_error([&] { clx::read_idx(p); }, {p, "unknown element type", "0x07"});
}

TEST_F(IdxTest, TooShortHeaderThrows) {
  write_plain(path("short"), Bytes{0x00, 0x00});
  const std::string p = path("short").string();
  expect_error([&] { clx::read_idx(p); }, {p, "too short"});

  Bytes partial = {0x00, 0x00, 0x08, 0x03};
  append_be32(partial, 2);  // only one of the three dimensions
  write_plain(path("partial_header"), partial);
  const std::string q = path("partial_header").string();
  expect_error([&] { clx::read_idx(q); }, {q, "truncated IDX header"});
}

TEST_F(IdxTest, TruncatedDataThrows) {
  Bytes bytes = idx_uint8({2, 2, 3}, image_pixels(2));
  bytes.resize(bytes.size() - 5);  // header promises 12 data bytes, 7 remain
  write_plain(path("truncated"), bytes);
  const std::string p = path("truncated").string();
  expect_error([&] { clx::read_idx(p); }, {p, "truncated", "12", "7"});

  write_gzip(path("truncated.gz"), bytes);  // a valid gzip stream of too few bytes
  const std::string q = path("truncated.gz").string();
  expect_error([&] { clx::read_idx(q); }, {q, "truncated"});
}

// A header may claim far more data than the file holds (the case the IDX
// fuzz target found): the reader must fail on the missing bytes, not try to
// allocate what the header claims (here 128 x 2^25 float64 values = 32 GiB).
TEST_F(IdxTest, HugeClaimInATinyFileIsTruncatedNotAnAllocation) {
  Bytes bytes = idx_header(0x0E, {128, 1u << 25});
  bytes.resize(bytes.size() + 16, 0);
  write_plain(path("huge-claim"), bytes);
  const std::string p = path("huge-claim").string();
  expect_error([&] { clx::read_idx(p); }, {p, "truncated", "34359738368", "16"});
}

TEST_F(IdxTest, TrailingBytesThrow) {
  Bytes bytes = idx_uint8({3}, {1, 2, 3});
  bytes.push_back(4);
  write_plain(path("trailing"), bytes);
  const std::string p = path("trailing").string();
  expect_error([&] { clx::read_idx(p); }, {p, "sizes disagree"});

  write_gzip(path("trailing.gz"), bytes);
  const std::string q = path("trailing.gz").string();
  expect_error([&] { clx::read_idx(q); }, {q, "sizes disagree"});
}

TEST_F(IdxTest, TruncatedGzipStreamThrows) {
  const Bytes data = noise(4000, 7);  // poorly compressible: the .gz is about 4 kB
  write_gzip(path("full.gz"), idx_uint8({4000}, data));
  const Bytes full = read_all(path("full.gz"));
  ASSERT_GT(full.size(), 2000u);
  // The complete file reads back.
  const torch::Tensor complete = clx::read_idx(path("full.gz").string());
  ASSERT_EQ(complete.numel(), 4000);
  EXPECT_EQ(complete[3999].item<int64_t>(), data[3999]);

  const Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(full.size() / 2));
  write_plain(path("cut.gz"), cut);
  const std::string p = path("cut.gz").string();
  expect_error([&] { clx::read_idx(p); }, {p, "corrupt or truncated gzip"});

  // Losing only the 8-byte gzip trailer (CRC and length) is also an error.
  const Bytes no_trailer(full.begin(), full.end() - 8);
  write_plain(path("no_trailer.gz"), no_trailer);
  const std::string q = path("no_trailer.gz").string();
  expect_error([&] { clx::read_idx(q); }, {q, "corrupt or truncated gzip"});
}

TEST_F(IdxTest, CorruptGzipStreamThrows) {
  const Bytes data = noise(4000, 11);
  write_gzip(path("corrupt.gz"), idx_uint8({4000}, data));
  Bytes bytes = read_all(path("corrupt.gz"));
  ASSERT_GT(bytes.size(), 100u);
  for (size_t i = 30; i < 60; ++i) bytes[i] ^= 0x5A;  // damage the deflate stream
  write_plain(path("corrupt.gz"), bytes);
  const std::string p = path("corrupt.gz").string();
  expect_error([&] { clx::read_idx(p); }, {p, "corrupt or truncated gzip"});
}

TEST_F(IdxTest, DirectoryInsteadOfFileThrows) {
  fs::create_directories(path("a_directory"));
  const std::string p = path("a_directory").string();
  expect_error([&] { clx::read_idx(p); }, {p, "directory"});
}

TEST_F(IdxTest, ImageAndLabelCountsMustAgree) {
  write_plain(path("train-images-idx3-ubyte"), idx_uint8({6, 2, 3}, image_pixels(6)));
  write_plain(path("train-labels-idx1-ubyte"), idx_uint8({5}, {0, 1, 2, 3, 4}));
  expect_error([&] { clx::load_mnist_split(dir_.string(), "train"); },
               {"sizes disagree", path("train-images-idx3-ubyte").string(), path("train-labels-idx1-ubyte").string(),
                "holds 6 images", "holds 5 labels"});
}

TEST_F(IdxTest, LabelOutsideNumClassesThrows) {
  write_plain(path("train-images-idx3-ubyte"), idx_uint8({6, 2, 3}, image_pixels(6)));
  write_plain(path("train-labels-idx1-ubyte"), idx_uint8({6}, {0, 1, 2, 10, 4, 5}));
  const std::string labels = path("train-labels-idx1-ubyte").string();
  expect_error([&] { clx::load_mnist_split(dir_.string(), "train", 10); }, {labels, "label 10", "outside 0..9"});
  // The same files are fine with 11 classes, and label 9 is fine with 10.
  EXPECT_EQ(clx::load_mnist_split(dir_.string(), "train", 11).size(), 6);
  write_plain(path("train-labels-idx1-ubyte"), idx_uint8({6}, {0, 1, 2, 9, 4, 5}));
  EXPECT_EQ(clx::load_mnist_split(dir_.string(), "train", 10).size(), 6);
}

TEST_F(IdxTest, LoadMnistSplitRejectsWrongRankOrType) {
  // Images with 2 dimensions instead of 3.
  write_plain(path("train-images-idx3-ubyte"), idx_uint8({6, 6}, image_pixels(6)));
  write_plain(path("train-labels-idx1-ubyte"), idx_uint8({6}, {0, 1, 2, 3, 4, 5}));
  expect_error([&] { clx::load_mnist_split(dir_.string(), "train"); },
               {path("train-images-idx3-ubyte").string(), "3-dimensional"});
  // Labels of int32 instead of uint8.
  write_plain(path("train-images-idx3-ubyte"), idx_uint8({6, 2, 3}, image_pixels(6)));
  Bytes labels = idx_header(0x0C, {6});
  for (uint32_t i = 0; i < 6; ++i) append_be32(labels, i);
  write_plain(path("train-labels-idx1-ubyte"), labels);
  expect_error([&] { clx::load_mnist_split(dir_.string(), "train"); },
               {path("train-labels-idx1-ubyte").string(), "label"});
}

// ---- the real dataset of this machine

TEST(IdxRealData, FashionMnistSplits) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(fs::path(root) / "train-images-idx3-ubyte.gz") &&
      !fs::exists(fs::path(root) / "train-images-idx3-ubyte"))
    GTEST_SKIP() << "Fashion-MNIST not installed under " << root;

  const clx::LabelledImages train = clx::load_mnist_split(root, "train", 10);
  ASSERT_EQ(train.images.sizes().vec(), (std::vector<int64_t>{60000, 1, 28, 28}));
  ASSERT_EQ(train.labels.sizes().vec(), (std::vector<int64_t>{60000}));
  EXPECT_EQ(train.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(train.labels.scalar_type(), torch::kInt64);
  EXPECT_GE(train.images.min().item<float>(), 0.0f);
  EXPECT_LE(train.images.max().item<float>(), 1.0f);
  EXPECT_EQ(train.labels.min().item<int64_t>(), 0);
  EXPECT_EQ(train.labels.max().item<int64_t>(), 9);
  const torch::Tensor train_counts = torch::bincount(train.labels, {}, 10);
  EXPECT_TRUE(torch::equal(train_counts, torch::full({10}, 6000, torch::kInt64))) << train_counts;

  const clx::LabelledImages test = clx::load_mnist_split(root, "t10k", 10);
  ASSERT_EQ(test.images.sizes().vec(), (std::vector<int64_t>{10000, 1, 28, 28}));
  ASSERT_EQ(test.labels.sizes().vec(), (std::vector<int64_t>{10000}));
  const torch::Tensor test_counts = torch::bincount(test.labels, {}, 10);
  EXPECT_TRUE(torch::equal(test_counts, torch::full({10}, 1000, torch::kInt64))) << test_counts;
}

}  // namespace
