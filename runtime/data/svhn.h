#pragma once
// SVHN, cropped digits (the "format 2" files train_32x32.mat and
// test_32x32.mat; extra_32x32.mat is not read), read with matio. Each file is
// a MATLAB file holding
//
//   X   uint8 32x32x3xN   X(row, column, channel, n), MATLAB's column-major order
//   y   Nx1 (or 1xN) labels 1..10, double or uint8; 10 is the digit 0
//
// MATLAB drops trailing singleton dimensions, so a file of one image has X of
// 32x32x3.
#include <string>

#include "runtime/data/byte_images.h"

namespace clx {

inline constexpr int64_t kSvhnSide = 32;

// One SVHN file as float32 [N, 3, 32, 32] in [0, 1] and labels 0..9 (digit d
// is class d: the file's 10 becomes 0). Throws clx::Error naming the file and
// what is wrong: not a MATLAB file matio reads, a MATLAB v5 file cut short,
// no X or no y, X not uint8 of 32x32x3xN, y not N numbers, a label that is
// not a whole number in 1..10.
LabelledImages read_svhn_file(const std::string& path);

// `folder`/train_32x32.mat or `folder`/test_32x32.mat.
LabelledImages load_svhn_split(const std::string& folder, OfficialSplit split);

}  // namespace clx
