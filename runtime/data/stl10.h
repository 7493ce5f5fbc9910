#pragma once
// STL-10, binary version (stl10_binary.tar.gz unpacks to stl10_binary/):
// train_X.bin and train_y.bin (5,000 labelled images), test_X.bin and
// test_y.bin (8,000); unlabeled_X.bin is not read. X holds N images of
// 3x96x96 uint8 pixels, each colour plane in column order (MATLAB's layout):
// pixel (row r, column c) of channel k of image n is byte
// n*27648 + k*9216 + c*96 + r. y holds one label byte per image, 1..10.
#include <string>

#include "runtime/data/byte_images.h"

namespace clx {

inline constexpr int64_t kStl10Side = 96;
inline constexpr int64_t kStl10ImageBytes = 3 * kStl10Side * kStl10Side;

// `folder`'s train_* or test_* pair as float32 [N, 3, 96, 96] in [0, 1] (rows
// and columns the usual way round) and labels 0..9 (the files' 1..10 minus 1).
// Throws clx::Error naming the file: an X whose length is no whole number of
// 27648-byte images (or zero), a y with another number of labels than X has
// images, a label outside 1..10.
LabelledImages load_stl10_split(const std::string& folder, OfficialSplit split);

}  // namespace clx
