#pragma once
// A synthetic one-folder-per-class image tree, for trying the image-folder
// path without a download (launch/make_image_tree), the loader benchmark and
// the command-line tests. Needs OpenCV (image_folders_supported()).
#include <cstdint>
#include <string>

namespace clx {

// Writes root/class_KK/image_NNNN.{jpg,png} for classes KK = 00, 01, ...;
// class k holds images_per_class + k % 3 images (classes of different
// sizes), every third one a PNG, the rest JPEG (quality 90). Each image is
// width x height pixels drawn from [min_side, 2 * min_side] (so resizing is
// exercised) and shows a filled rectangle of class k's hue, jittered in
// position, on a noisy dark background: easy to learn, not trivial. Every
// pixel follows from `seed`. Returns the number of files written; throws
// clx::Error naming the file when one cannot be written.
int64_t write_synthetic_image_folder(const std::string& root, int64_t classes, int64_t images_per_class,
                                     int64_t min_side, uint64_t seed);

}  // namespace clx
