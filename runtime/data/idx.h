#pragma once
// Reader for the IDX format of MNIST-family datasets (plain or gzipped; gzip
// is detected from the file's first bytes, not its name).
#include <torch/torch.h>

#include <string>

#include "runtime/data/image_source.h"

namespace clx {

// Reads an IDX file into a tensor of its own shape and element type
// (uint8, int8, int16, int32, float32, float64). Throws clx::Error naming the
// file on: a file that cannot be opened, a wrong magic number, a truncated or
// corrupt gzip stream, fewer data bytes than the header promises, or trailing
// bytes after the data.
torch::Tensor read_idx(const std::string& path);

// Loads `<root>/<prefix>-images-idx3-ubyte[.gz]` and
// `<root>/<prefix>-labels-idx1-ubyte[.gz]` (prefix "train" or "t10k"),
// checking that the two files agree on the number of samples and that every
// label is below `num_classes`.
LabelledImages load_mnist_split(const std::string& root, const std::string& prefix, int64_t num_classes = 10);

// The whole content of a plain or gzipped file (gzip detected from its first
// bytes). Throws clx::Error naming the file when it cannot be opened, is a
// directory, is corrupt or truncated gzip, or holds more than `max_bytes`.
std::string read_plain_or_gzip_file(const std::string& path, int64_t max_bytes);

// Finds `<root>/<stem>` or `<root>/<stem>.gz`; throws naming both if neither exists.
std::string find_idx_file(const std::string& root, const std::string& stem);

}  // namespace clx
