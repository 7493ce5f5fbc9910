#pragma once
// scikit-learn's 8x8 handwritten digits (Debian's python3-sklearn ships them
// as sklearn/datasets/data/digits.csv.gz): 1797 images of 8x8 pixels with
// values 0..16, one image per line as 64 comma-separated pixel values in row
// order followed by the label 0..9.
#include <string>

#include "runtime/data/image_source.h"

namespace clx {

// Where Debian's python3-sklearn installs the file.
inline constexpr const char* kDebianDigitsPath = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";

// Every image of `path` (plain or gzipped) as float32 [N, 1, 8, 8] in [0, 1]
// (pixel / 16), labels int64, 10 classes. Throws clx::Error naming the file
// and line on a line without 65 numbers, a pixel outside 0..16, a label
// outside 0..9 or a value that is not a whole number.
LabelledImages load_sklearn_digits(const std::string& path);

// The digits have no official test set: each class is split on its own, its
// rows in a seeded order, the first round(test_fraction * n) for testing.
struct LabelledSplit {
  LabelledImages train, test;
};
LabelledSplit split_labelled_per_class(const LabelledImages& data, double test_fraction, uint64_t seed);

}  // namespace clx
