#include "runtime/data/synthetic_images.h"

#include <cstdio>
#include <filesystem>

#include "runtime/data/sampler.h"
#include "runtime/error.h"

#ifdef CLX_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace clx {

#ifdef CLX_HAVE_OPENCV

namespace {

// One image of class `k` of `classes` (BGR, as OpenCV writes it).
cv::Mat synthetic_image(int64_t k, int64_t classes, int64_t min_side, SplitMix64& random) {
  const int width = static_cast<int>(min_side + static_cast<int64_t>(random.below(min_side + 1)));
  const int height = static_cast<int>(min_side + static_cast<int64_t>(random.below(min_side + 1)));
  cv::Mat image(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>(random.below(60)), static_cast<uint8_t>(random.below(60)),
                                            static_cast<uint8_t>(random.below(60)));
  // The class's hue at full saturation, converted to BGR.
  cv::Mat hue(1, 1, CV_8UC3, cv::Scalar(static_cast<double>(180 * k / classes), 255, 230));
  cv::cvtColor(hue, hue, cv::COLOR_HSV2BGR);
  const cv::Vec3b colour = hue.at<cv::Vec3b>(0, 0);
  const int jitter_x = static_cast<int>(random.below(width / 4 + 1)), jitter_y = static_cast<int>(random.below(height / 4 + 1));
  cv::rectangle(image, cv::Point(width / 8 + jitter_x, height / 8 + jitter_y),
                cv::Point(width / 8 + jitter_x + width / 2, height / 8 + jitter_y + height / 2),
                cv::Scalar(colour[0], colour[1], colour[2]), cv::FILLED);
  return image;
}

}  // namespace

int64_t write_synthetic_image_folder(const std::string& root, int64_t classes, int64_t images_per_class,
                                     int64_t min_side, uint64_t seed) {
  if (classes < 1 || images_per_class < 1 || min_side < 1)
    throw Error("synthetic image folder: classes, images per class and side must be positive");
  int64_t written = 0;
  for (int64_t k = 0; k < classes; ++k) {
    char folder_name[32];
    std::snprintf(folder_name, sizeof(folder_name), "class_%02lld", static_cast<long long>(k));
    const std::filesystem::path folder = std::filesystem::path(root) / folder_name;
    std::filesystem::create_directories(folder);
    for (int64_t i = 0; i < images_per_class + k % 3; ++i) {
      SplitMix64 random(mix_seed({seed, static_cast<uint64_t>(k), static_cast<uint64_t>(i)}));
      char file_name[32];
      std::snprintf(file_name, sizeof(file_name), "image_%04lld.%s", static_cast<long long>(i), i % 3 == 2 ? "png" : "jpg");
      const std::string path = (folder / file_name).string();
      if (!cv::imwrite(path, synthetic_image(k, classes, min_side, random), {cv::IMWRITE_JPEG_QUALITY, 90}))
        throw Error(path + ": cannot be written");
      ++written;
    }
  }
  return written;
}

#else

int64_t write_synthetic_image_folder(const std::string&, int64_t, int64_t, int64_t, uint64_t) {
  throw Error("synthetic image folder: this build has no OpenCV (install libopencv-dev and rebuild)");
}

#endif

}  // namespace clx
