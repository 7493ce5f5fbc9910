#pragma once
// Writers of the dataset formats this project reads (idx.h, svhn.h, stl10.h,
// cifar10.h, image_folder.h), byte for byte as the real files lay them out,
// so that a multi-dataset stream can be tried end to end without a download
// (launch/make_five_datasets.cpp). The readers' unit tests keep writers of
// their own, written from the format descriptions independently of these, so
// that a reader and a writer cannot share one mistake unnoticed; these are
// checked against the readers (tests/test_format_writers.cpp).
//
// Every writer takes images as uint8 [N, C, H, W] (C = 1 or 3, rows then
// columns) and labels int64 [N] in 0..9, maps them to the format's own
// numbering (SVHN's 10 for digit 0, STL-10's 1..10), and throws clx::Error
// naming the file (and what it expected) on a shape the format cannot hold
// or a file that cannot be written. Files are written atomically (file_io.h).
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace clx {

// An IDX file of `values` (uint8, any number of dimensions), gzipped when
// `path` ends in ".gz" (MNIST's train-images-idx3-ubyte.gz and the like).
void write_idx_file(const std::string& path, const torch::Tensor& values);

// SVHN's train_32x32.mat / test_32x32.mat: MATLAB v5, X uint8 32x32x3xN
// (column-major), y double Nx1 with 10 for digit 0. Images [N, 3, 32, 32].
void write_svhn_mat(const std::string& path, const torch::Tensor& images, const torch::Tensor& labels);

// STL-10's <folder>/<part>_X.bin (each 3x96x96 image as column-major
// planes) and <part>_y.bin (one byte 1..10 each). Images [N, 3, 96, 96].
void write_stl10_split(const std::string& folder, const std::string& part, const torch::Tensor& images,
                       const torch::Tensor& labels);

// One CIFAR-10 binary batch: records of a label byte and the R, G, B planes
// (row-major 32x32 each). Images [N, 3, 32, 32].
void write_cifar10_batch(const std::string& path, const torch::Tensor& images, const torch::Tensor& labels);

// PNG files root/<class_names[label]>/<prefix><index>.png (grey for C = 1,
// colour for C = 3), one folder per class, as an image-folder dataset
// (notMNIST's letter folders). Needs OpenCV (image_folders_supported()).
// Returns the number of files written.
int64_t write_png_class_folders(const std::string& root, const std::vector<std::string>& class_names,
                                const torch::Tensor& images, const torch::Tensor& labels, const std::string& prefix);

// `per_class` learnable images of each of `classes` classes, uint8 [N, C, side, side]
// with labels int64 [N] (class by class): on a noisy dark background, a
// bright block whose place in a 2 x 5 grid is the class, jittered by a few
// pixels; `style` (the dataset's index) changes the block's shape and colour,
// so that datasets written with different styles are different tasks.
// Every pixel follows from `seed`.
struct SyntheticClassImages {
  torch::Tensor images;
  torch::Tensor labels;
};
SyntheticClassImages synthetic_class_images(int64_t per_class, int64_t classes, int64_t channels, int64_t side,
                                            int64_t style, uint64_t seed);

}  // namespace clx
