#pragma once
// PNG files without an image library: 8-bit greyscale or RGB, no
// interlacing, every scanline with filter 0, the pixels deflated by zlib
// (which the project links for gzip already). Enough for the sample grids a
// generation run writes; the report's plots come from gnuplot. Also NumPy's
// .npy format for the generated images themselves (numpy.load reads them),
// so a script can recompute what a run scored.
#include <torch/torch.h>

#include <string>

namespace clx {

// The PNG bytes of `image`: uint8 [H, W] (greyscale) or [H, W, 3] (RGB), on any device.
std::string encode_png(const torch::Tensor& image);
// encode_png written atomically to `path` (FileError naming it).
void write_png(const std::string& path, const torch::Tensor& image);

// The .npy (format 1.0) bytes of `array`: float32, little-endian, C order,
// its shape in the header; from any device.
std::string encode_npy(const torch::Tensor& array);
// encode_npy written atomically to `path` (FileError naming it).
void write_npy(const std::string& path, const torch::Tensor& array);

// A grid of images float [rows * columns, C, H, W] in [0, 1] (C = 1 or 3),
// row-major, with `gap` pixels of white between cells and around them:
// uint8 [rows * (H + gap) + gap, columns * (W + gap) + gap] (C = 1) or with a
// last dimension of 3 (C = 3). Missing cells (fewer images) stay white.
torch::Tensor image_grid(const torch::Tensor& images, int64_t rows, int64_t columns, int64_t gap = 2);

}  // namespace clx
