// Unit tests of the image-folder data path (runtime/data/image_folder.h,
// augment.h, worker_pool.h) on small trees written here with OpenCV: PNG
// files of known pixels (decoded exactly), JPEG files (within tolerance), a
// corrupt JPEG, empty and cut-short PNG files, and a file that is no image.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "runtime/data/augment.h"
#include "runtime/data/image_folder.h"
#include "runtime/data/sampler.h"
#include "runtime/data/task_stream.h"
#include "runtime/data/worker_pool.h"
#include "runtime/error.h"
#include "tests/expect_error.h"
#include "tests/temp_dir_test.h"

namespace {

namespace fs = std::filesystem;
using clx::testing_support::expect_error;

// An 8x8 BGR image whose pixel (y, x) is (b, g, r) = (y * 8 + x, 100 + y, 200 + x) + shift.
cv::Mat distinct_pixels(int shift) {
  cv::Mat image(8, 8, CV_8UC3);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x)
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>(y * 8 + x + shift), static_cast<uint8_t>(100 + y + shift),
                                            static_cast<uint8_t>(200 + x + shift));
  return image;
}

cv::Mat constant(int height, int width, cv::Vec3b bgr) { return cv::Mat(height, width, CV_8UC3, cv::Scalar(bgr[0], bgr[1], bgr[2])); }

// The planar RGB float image the loader must produce from a BGR uint8 image of the same size.
torch::Tensor expected_rgb(const cv::Mat& bgr) {
  torch::Tensor out = torch::empty({3, bgr.rows, bgr.cols});
  for (int y = 0; y < bgr.rows; ++y)
    for (int x = 0; x < bgr.cols; ++x)
      for (int c = 0; c < 3; ++c) out[c][y][x] = static_cast<float>(bgr.at<cv::Vec3b>(y, x)[2 - c]) / 255.0f;
  return out;
}

class ImageFolderTest : public clx::testing_support::TempDirTest {
 protected:
  ImageFolderTest() : TempDirTest("clx_image_folder_") {}

  void write(const std::string& relative, const cv::Mat& image) {
    const fs::path path = dir_ / relative;
    fs::create_directories(path.parent_path());
    ASSERT_TRUE(cv::imwrite(path.string(), image)) << path;
  }
  void write_bytes(const std::string& relative, const std::string& bytes) {
    const fs::path path = dir_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
  }

  // A Caltech-like tree: classes of 3, 4 and 5 images (PNG and JPEG of
  // several sizes), a background class, hidden files and a stray root file.
  void write_tree() {
    for (int i = 0; i < 3; ++i) write("apple/a" + std::to_string(i) + ".png", distinct_pixels(i));
    for (int i = 0; i < 4; ++i) write("banana/b" + std::to_string(i) + ".jpg", constant(12 + i, 20, cv::Vec3b(30, 120, 200)));
    for (int i = 0; i < 5; ++i)
      write("cherry/c" + std::to_string(i) + (i % 2 ? ".png" : ".jpg"), constant(8, 8 + 2 * i, cv::Vec3b(10, 20, 240)));
    write("BACKGROUND_Google/g0.jpg", constant(9, 9, cv::Vec3b(90, 90, 90)));
    write("BACKGROUND_Google/g1.jpg", constant(9, 9, cv::Vec3b(95, 95, 95)));
    write_bytes("apple/.DS_Store", "not an image, but hidden");
    write_bytes("README.txt", "files directly under the root are not classes");
  }

  clx::ImageFolderOptions options(int64_t size = 8) const {
    clx::ImageFolderOptions o;
    o.image_size = size;
    return o;
  }

  std::shared_ptr<clx::ImageFolderSource> source_of_all(const clx::ImageFolderOptions& o, int workers = 0) {
    clx::WorkerPool pool(0);
    const clx::ImageFolderScan scan = clx::scan_image_folder(dir_.string(), o, pool);
    return std::make_shared<clx::ImageFolderSource>(scan.files, scan.labels, static_cast<int64_t>(scan.class_names.size()),
                                                    scan.class_names, "test tree", o,
                                                    std::make_shared<clx::WorkerPool>(workers));
  }
  std::string path(const std::string& relative) const { return (dir_ / relative).string(); }
};

torch::Tensor rows(std::initializer_list<int64_t> values) { return torch::tensor(std::vector<int64_t>(values), torch::kInt64); }

// ---- scan

TEST_F(ImageFolderTest, ScanListsSortedClassesAndFiles) {
  write_tree();
  clx::WorkerPool pool(2);
  const clx::ImageFolderScan scan = clx::scan_image_folder(dir_.string(), options(), pool);
  EXPECT_EQ(scan.class_names, (std::vector<std::string>{"BACKGROUND_Google", "apple", "banana", "cherry"}));
  ASSERT_EQ(scan.files.size(), 14u);
  EXPECT_EQ(scan.files[0], path("BACKGROUND_Google/g0.jpg"));
  EXPECT_EQ(scan.files[2], path("apple/a0.png"));
  EXPECT_EQ(scan.files[13], path("cherry/c4.jpg"));
  EXPECT_EQ(scan.labels, (std::vector<int64_t>{0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3}));
  EXPECT_TRUE(scan.skipped.empty());

  clx::ImageFolderOptions without = options();
  without.exclude_classes = {"BACKGROUND_Google"};
  const clx::ImageFolderScan excluded = clx::scan_image_folder(dir_.string(), without, pool);
  EXPECT_EQ(excluded.class_names, (std::vector<std::string>{"apple", "banana", "cherry"}));
  EXPECT_EQ(excluded.files.size(), 12u);
  EXPECT_EQ(excluded.labels.front(), 0);
  without.exclude_classes = {"Background"};
  expect_error([&] { clx::scan_image_folder(dir_.string(), without, pool); },
               {"data.exclude_classes", "'Background'", dir_.string()});
}

TEST_F(ImageFolderTest, BadInputNamesTheFolderOrFile) {
  clx::WorkerPool pool(0);
  expect_error([&] { clx::scan_image_folder(path("missing"), options(), pool); }, {"data.root", path("missing"), "does not exist"});
  write_bytes("plain_file", "x");
  expect_error([&] { clx::scan_image_folder(path("plain_file"), options(), pool); }, {"data.root", "is not a folder"});
  fs::create_directories(dir_ / "no_classes");
  expect_error([&] { clx::scan_image_folder(path("no_classes"), options(), pool); },
               {"data.root", path("no_classes"), "no class sub-folders"});
  fs::remove(dir_ / "no_classes");
  fs::remove(dir_ / "plain_file");

  write_tree();
  fs::create_directories(dir_ / "durian");
  expect_error([&] { clx::scan_image_folder(dir_.string(), options(), pool); }, {path("durian"), "is empty"});
  fs::remove(dir_ / "durian");

  // A JPEG whose data after the start-of-image marker is garbage, and a text file with an image's name.
  write_bytes("banana/b9_corrupt.jpg", std::string("\xFF\xD8\xFF\xE0", 4) + std::string(200, '\x5A'));
  expect_error([&] { clx::scan_image_folder(dir_.string(), options(), pool); },
               {"data.root", path("banana/b9_corrupt.jpg"), "corrupt image", "data.bad_images=skip"});
  write_bytes("cherry/notes.jpg", "these are notes, not a picture\n");
  expect_error([&] { clx::scan_image_folder(dir_.string(), options(), pool); },
               {path("banana/b9_corrupt.jpg"), "and 1 more bad files"});
  fs::remove(dir_ / "banana/b9_corrupt.jpg");
  expect_error([&] { clx::scan_image_folder(dir_.string(), options(), pool); },
               {path("cherry/notes.jpg"), "not an image file"});
  fs::remove(dir_ / "cherry/notes.jpg");

  // The unreadable files of notMNIST_small: an empty .png, and a PNG cut short.
  write_bytes("apple/empty.png", "");
  expect_error([&] { clx::scan_image_folder(dir_.string(), options(), pool); },
               {path("apple/empty.png"), "not an image file"});
  fs::remove(dir_ / "apple/empty.png");
  write("apple/cut.png", distinct_pixels(9));
  fs::resize_file(dir_ / "apple/cut.png", fs::file_size(dir_ / "apple/cut.png") / 2);
  expect_error([&] { clx::scan_image_folder(dir_.string(), options(), pool); },
               {path("apple/cut.png"), "corrupt image"});
}

TEST_F(ImageFolderTest, SkipLeavesBadFilesOutWithAWarning) {
  write_tree();
  write_bytes("banana/b9_corrupt.jpg", std::string("\xFF\xD8\xFF\xE0", 4) + std::string(200, '\x5A'));
  write_bytes("cherry/notes.txt", "these are notes\n");
  clx::ImageFolderOptions skip = options();
  skip.bad_images = "skip";
  clx::WorkerPool pool(1);
  const clx::ImageFolderScan scan = clx::scan_image_folder(dir_.string(), skip, pool);
  EXPECT_EQ(scan.files.size(), 14u);
  ASSERT_EQ(scan.skipped.size(), 2u);
  EXPECT_EQ(scan.skipped[0].rfind(path("banana/b9_corrupt.jpg") + ": corrupt image", 0), 0u) << scan.skipped[0];
  EXPECT_EQ(scan.skipped[1].rfind(path("cherry/notes.txt") + ": not an image file", 0), 0u) << scan.skipped[1];
  const clx::ImageFolderData data = clx::load_image_folder(dir_.string(), "tree", skip, 1);
  ASSERT_EQ(data.warnings.size(), 3u);
  EXPECT_EQ(data.warnings[0], "data.bad_images=skip: left out 2 of 16 files in " + dir_.string() + " (no readable image)");
  EXPECT_NE(data.warnings[1].find("data.bad_images=skip: left out " + path("banana/b9_corrupt.jpg")), std::string::npos);

  // A class whose every file is bad has nothing left.
  for (int i = 0; i < 3; ++i) write_bytes("apple/a" + std::to_string(i) + ".png", "broken");
  expect_error([&] { clx::scan_image_folder(dir_.string(), skip, pool); }, {path("apple"), "no readable image"});
}

// ---- split

TEST_F(ImageFolderTest, SplitPerClassIsSeededDisjointAndSized) {
  write_tree();
  clx::WorkerPool pool(0);
  const clx::ImageFolderScan scan = clx::scan_image_folder(dir_.string(), options(), pool);
  const clx::ImageFolderSplit split = clx::split_per_class(scan, 0.3, 7);
  // Per class round(0.3 n) test images, at least 1 and at most n - 1: n = 2, 3, 4, 5 -> 1, 1, 1, 2.
  std::vector<int64_t> tests(4, 0), trains(4, 0);
  for (int64_t i : split.test) ++tests[scan.labels[i]];
  for (int64_t i : split.train) ++trains[scan.labels[i]];
  EXPECT_EQ(tests, (std::vector<int64_t>{1, 1, 1, 2}));
  EXPECT_EQ(trains, (std::vector<int64_t>{1, 2, 3, 3}));
  std::set<int64_t> all(split.train.begin(), split.train.end());
  for (int64_t i : split.test) EXPECT_TRUE(all.insert(i).second) << "file " << i << " in both splits";
  EXPECT_EQ(all.size(), scan.files.size());
  EXPECT_TRUE(std::is_sorted(split.train.begin(), split.train.end()));

  const clx::ImageFolderSplit again = clx::split_per_class(scan, 0.3, 7);
  EXPECT_EQ(again.test, split.test);
  bool differs = false;
  for (uint64_t seed = 8; seed < 16; ++seed) differs |= clx::split_per_class(scan, 0.3, seed).test != split.test;
  EXPECT_TRUE(differs);
  EXPECT_EQ(clx::split_per_class(scan, 0.6, 7).test.size(), 1u + 2u + 2u + 3u);

  // A class's split follows its name, not its position: leaving out another class changes nothing.
  clx::ImageFolderOptions without = options();
  without.exclude_classes = {"BACKGROUND_Google"};
  const clx::ImageFolderScan fewer = clx::scan_image_folder(dir_.string(), without, pool);
  std::vector<std::string> test_files, fewer_test_files;
  for (int64_t i : split.test)
    if (scan.labels[i] != 0) test_files.push_back(scan.files[i]);
  for (int64_t i : clx::split_per_class(fewer, 0.3, 7).test) fewer_test_files.push_back(fewer.files[i]);
  EXPECT_EQ(test_files, fewer_test_files);

  write("single/only.png", distinct_pixels(0));
  const clx::ImageFolderScan with_single = clx::scan_image_folder(dir_.string(), options(), pool);
  expect_error([&] { clx::split_per_class(with_single, 0.3, 7); }, {path("single"), "has 1 image", "at least 2"});
}

// ---- decoding

TEST_F(ImageFolderTest, DecodesPngExactlyAndJpegClosely) {
  write_tree();
  const auto source = source_of_all(options());
  EXPECT_EQ(source->image_shape(), (std::vector<int64_t>{3, 8, 8}));
  EXPECT_EQ(source->num_classes, 4);
  EXPECT_TRUE(torch::equal(source->labels, torch::tensor({0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3}, torch::kInt64)));
  // Rows 2..4: apple's PNGs, 8x8 as written, RGB order.
  const torch::Tensor batch = source->gather(rows({4, 2}), 0);
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{2, 3, 8, 8}));
  EXPECT_EQ(batch.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(batch[0], expected_rgb(distinct_pixels(2))));
  EXPECT_TRUE(torch::equal(batch[1], expected_rgb(distinct_pixels(0))));
  // Row 5: banana's 20x12 JPEG of one colour, resized to 8x8: (r, g, b) = (200, 120, 30) within JPEG's error.
  const torch::Tensor banana = source->gather(rows({5}), 0)[0];
  const std::vector<float> rgb = {200, 120, 30};
  for (int c = 0; c < 3; ++c) EXPECT_LE((banana[c] * 255 - rgb[c]).abs().max().item<float>(), 4.0f) << "channel " << c;
}

TEST_F(ImageFolderTest, ResizesToTheSquareSideAndConvertsChannels) {
  // 16x16 PNG of 2x2 blocks: base (4 * block row + block column) * 6, plus 2 or 4 within the block.
  cv::Mat blocks(16, 16, CV_8UC3);
  cv::Mat area(8, 8, CV_8UC3);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) {
      const int base = ((y / 2) * 8 + x / 2) * 3;
      const uint8_t v = static_cast<uint8_t>(base + 2 * (y % 2) + 2 * (x % 2));
      blocks.at<cv::Vec3b>(y, x) = cv::Vec3b(v, v, v);
      area.at<cv::Vec3b>(y / 2, x / 2) = cv::Vec3b(base + 2, base + 2, base + 2);  // the block's exact mean
    }
  write("grey/blocks.png", blocks);
  write("grey/small.png", constant(4, 4, cv::Vec3b(77, 77, 77)));
  write("colour/red.png", constant(8, 8, cv::Vec3b(0, 0, 255)));
  write("colour/red2.png", constant(8, 8, cv::Vec3b(0, 0, 250)));
  const auto source = source_of_all(options(8));  // classes: colour (rows 0, 1), grey (rows 2, 3)
  const torch::Tensor shrunk = source->gather(rows({2}), 0)[0];
  EXPECT_TRUE(torch::equal(shrunk, expected_rgb(area))) << "INTER_AREA averages each 2x2 block";
  const torch::Tensor grown = source->gather(rows({3}), 0)[0];
  EXPECT_TRUE(torch::equal(grown, torch::full({3, 8, 8}, 77.0f / 255.0f)));

  clx::ImageFolderOptions grey = options(8);
  grey.channels = 1;
  const auto grey_source = source_of_all(grey);
  EXPECT_EQ(grey_source->image_shape(), (std::vector<int64_t>{1, 8, 8}));
  const torch::Tensor one_channel = grey_source->gather(rows({2, 0}), 0);
  ASSERT_EQ(one_channel.sizes(), (std::vector<int64_t>{2, 1, 8, 8}));
  EXPECT_TRUE(torch::equal(one_channel[0][0], expected_rgb(area)[0]));  // grey stays grey
  // Pure red: luma 0.299 * 255 = 76.2 -> 76 (OpenCV's fixed-point conversion), within 1.
  EXPECT_LE((one_channel[1] * 255 - 76).abs().max().item<float>(), 1.0f);
}

// ---- augmentation

TEST(Augment, FlipCropMatchesAHandWrittenExample) {
  // A 2x3 RGB image; pixel (y, x) channel c holds 10 * (3 * y + x) + c.
  std::vector<uint8_t> hwc(2 * 3 * 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) hwc[(y * 3 + x) * 3 + c] = static_cast<uint8_t>(10 * (3 * y + x) + c);
  std::vector<float> out(3 * 2 * 3);
  clx::to_planar_float(hwc.data(), 2, 3, 3, nullptr, 1, out.data());
  EXPECT_EQ(out[0 * 6 + 1 * 3 + 2], 50.0f / 255.0f);  // channel 0, (1, 2)
  EXPECT_EQ(out[2 * 6 + 0 * 3 + 1], 12.0f / 255.0f);  // channel 2, (0, 1)
  // Padding 1, crop at (dy, dx) = (0, 2), mirrored. Crop row y reads image row y - 1; crop column x
  // reads image column x + 1; the mirror reads crop column 2 - x. So output (y, x) = image (y - 1, 3 - x).
  const clx::FlipCrop transform{0, 2, true};
  clx::to_planar_float(hwc.data(), 2, 3, 3, &transform, 1, out.data());
  const float z = 0.0f;
  const std::vector<float> channel0 = {z, z, z,                                    // row -1: padding
                                       z, 20.0f / 255.0f, 10.0f / 255.0f};          // image (0, 3) outside, (0, 2), (0, 1)
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 6), channel0);
  EXPECT_EQ(out[1 * 6 + 1 * 3 + 1], 21.0f / 255.0f);  // channel 1 of image (0, 2)
}

TEST(Augment, DrawsFollowTheSeedAndRow) {
  const clx::FlipCrop a = clx::draw_flip_crop(99, 5, 4);
  clx::SplitMix64 generator(clx::mix_seed({99, 5}));
  EXPECT_EQ(a.dy, static_cast<int64_t>(generator.below(9)));
  EXPECT_EQ(a.dx, static_cast<int64_t>(generator.below(9)));
  EXPECT_EQ(a.flip, generator.below(2) == 1);
  std::set<std::tuple<int64_t, int64_t, bool>> seen;
  for (int64_t row = 0; row < 1000; ++row) {
    const clx::FlipCrop d = clx::draw_flip_crop(7, row, 2);
    ASSERT_GE(d.dy, 0);
    ASSERT_LE(d.dy, 4);
    ASSERT_GE(d.dx, 0);
    ASSERT_LE(d.dx, 4);
    seen.insert({d.dy, d.dx, d.flip});
  }
  EXPECT_EQ(seen.size(), 50u);  // every one of the 5 x 5 x 2 transforms occurs in 1000 draws
  EXPECT_EQ(clx::parse_augment("flip_crop"), clx::Augment::FlipCrop);
  expect_error([] { clx::parse_augment("mixup"); }, {"data.augment", "mixup"});
}

TEST_F(ImageFolderTest, AugmentedBatchesMatchAnIndependentTensorImplementation) {
  write_tree();
  clx::ImageFolderOptions augmented = options();
  augmented.augment = "flip_crop";
  augmented.crop_padding = 2;
  const auto plain = source_of_all(options());
  const auto source = source_of_all(augmented);
  const torch::Tensor which = rows({2, 3, 4, 7, 10});
  const torch::Tensor originals = plain->gather(which, 0);
  EXPECT_TRUE(torch::equal(source->gather(which, 0), originals)) << "augment_seed 0 means no augmentation";
  const uint64_t seed = 4242;
  const torch::Tensor batch = source->gather(which, seed);
  int flips = 0;
  for (int64_t i = 0; i < which.size(0); ++i) {
    const clx::FlipCrop d = clx::draw_flip_crop(seed, which[i].item<int64_t>(), 2);
    flips += d.flip;
    // torchvision's order: pad, crop, then mirror.
    torch::Tensor expected = torch::constant_pad_nd(originals[i], {2, 2, 2, 2}, 0).narrow(1, d.dy, 8).narrow(2, d.dx, 8);
    if (d.flip) expected = expected.flip({2});
    EXPECT_TRUE(torch::equal(batch[i], expected)) << "row " << which[i].item<int64_t>();
  }
  EXPECT_GT(flips, 0);
  EXPECT_LT(flips, which.size(0));
  // The same (seed, row) gives the same image whatever batch it is in; another seed another one.
  EXPECT_TRUE(torch::equal(source->gather(rows({10, 2}), seed)[1], batch[0]));
  bool differs = false;
  for (uint64_t other = 1; other < 5; ++other) differs |= !torch::equal(source->gather(which, other), batch);
  EXPECT_TRUE(differs);
}

TEST_F(ImageFolderTest, WorkerCountAndCacheDoNotChangeTheBatches) {
  write_tree();
  clx::ImageFolderOptions augmented = options(10);
  augmented.augment = "flip_crop";
  augmented.crop_padding = 1;
  const torch::Tensor all = torch::arange(14, torch::kInt64).flip({0});
  const torch::Tensor reference = source_of_all(augmented, 0)->gather(all, 31);
  for (int workers : {1, 3}) EXPECT_TRUE(torch::equal(source_of_all(augmented, workers)->gather(all, 31), reference)) << workers;

  const torch::Tensor unaugmented = source_of_all(options(10), 1)->gather(all, 0);

  clx::ImageFolderOptions cached = augmented;
  cached.cache = true;
  const auto source = source_of_all(cached, 2);
  const auto uncached = source_of_all(augmented, 2);
  EXPECT_TRUE(torch::equal(source->gather(all, 31), reference));
  // Once cached, the files are not read again: deleting one changes nothing...
  const std::string removed = source->file(2);
  fs::remove(removed);
  EXPECT_TRUE(torch::equal(source->gather(all, 31), reference));
  EXPECT_TRUE(torch::equal(source->gather(all, 0), unaugmented));
  // ...while an uncached source names the file it cannot decode.
  expect_error([&] { uncached->gather(all, 31); }, {removed, "cannot be decoded"});
  expect_error([&] { uncached->gather(rows({14}), 0); }, {"row index outside 0..13"});
}

TEST(WorkerPool, RunsEveryItemOnceAndRethrowsTheFirstError) {
  for (int workers : {0, 1, 3}) {
    clx::WorkerPool pool(workers);
    std::vector<std::atomic<int>> hits(1000);
    for (int repeat = 0; repeat < 3; ++repeat) pool.run(1000, [&](int64_t i) { hits[i]++; });
    for (const auto& hit : hits) ASSERT_EQ(hit.load(), 3);
    expect_error([&] { pool.run(50, [](int64_t i) { if (i == 17) throw clx::Error("item 17 failed"); }); },
                 {"item 17 failed"});
    std::atomic<int> after{0};
    pool.run(10, [&](int64_t) { after++; });  // the pool still works after an error
    EXPECT_EQ(after.load(), 10);
  }
}

// ---- streams over a folder

TEST_F(ImageFolderTest, ClassIncrementalStreamOverAFolder) {
  write_tree();
  clx::StreamConfig config;
  config.format = clx::SourceFormat::ImageFolder;
  config.kind = clx::StreamKind::ClassIncremental;
  config.dataset = "tree";
  config.root = dir_.string();
  config.num_tasks = 2;
  config.task_classes = "1,2";
  config.folder = options();
  config.folder.exclude_classes = {"BACKGROUND_Google"};
  config.folder.test_fraction = 0.5;
  clx::TaskStream stream = clx::load_task_stream(config);
  EXPECT_EQ(stream.description, "class_incremental tree: 2 tasks of 1,2 classes");
  EXPECT_EQ(stream.num_classes, 3);
  EXPECT_EQ(stream.input_shape, (std::vector<int64_t>{3, 8, 8}));
  ASSERT_EQ(stream.size(), 2);
  EXPECT_EQ(stream.tasks[0].classes, (std::vector<int64_t>{0}));
  EXPECT_EQ(stream.tasks[1].classes, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(stream.tasks[1].head_size, 2);
  // apple 3 -> test 2 (round(1.5) = 2) train 1; banana 4 -> 2 + 2; cherry 5 -> 3 (round(2.5)) + 2.
  EXPECT_EQ(stream.tasks[0].train.size(), 1);
  EXPECT_EQ(stream.tasks[0].test.size(), 2);
  EXPECT_EQ(stream.tasks[1].train.size(), 4);
  EXPECT_EQ(stream.tasks[1].test.size(), 5);
  const clx::TaskData& data = stream.tasks[1].test;
  const torch::Tensor positions = torch::arange(data.size(), torch::kInt64);
  EXPECT_TRUE(torch::equal(data.labels(positions, clx::HeadLayout::Multi), data.global_labels - 1));
  EXPECT_EQ(data.inputs(positions).sizes(), (std::vector<int64_t>{5, 3, 8, 8}));
  EXPECT_NE(stream.summary().find("tree test: 7 images of 3 classes in " + dir_.string()), std::string::npos)
      << stream.summary();
  EXPECT_NE(stream.summary().find("(files "), std::string::npos);

  stream.to(torch::kCPU);
  const auto* placed = dynamic_cast<const clx::ImageFolderSource*>(stream.tasks[1].test.source.get());
  ASSERT_NE(placed, nullptr);
  EXPECT_FALSE(placed->pins_memory());
  EXPECT_EQ(stream.tasks[0].train.source.get(), stream.tasks[1].train.source.get());
  EXPECT_TRUE(torch::equal(stream.tasks[1].test.inputs(positions), data.inputs(positions)));

  config.task_classes = "2,2";
  expect_error([&] { clx::load_task_stream(config); }, {"data.task_classes", "need 4", "tree (" + dir_.string() + ")", "only 3"});
  config.root = path("nowhere");
  expect_error([&] { clx::load_task_stream(config); }, {"data.root", path("nowhere"), "does not exist"});
}

}  // namespace
