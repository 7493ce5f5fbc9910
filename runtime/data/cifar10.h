#pragma once
// CIFAR-10, binary version (cifar-10-binary.tar.gz unpacks to
// cifar-10-batches-bin/): data_batch_1.bin .. data_batch_5.bin (the 50,000
// training images) and test_batch.bin (10,000), each a sequence of records
//
//   1 label byte (0..9) | 1024 red | 1024 green | 1024 blue bytes
//
// each colour plane 32x32 in row order (3073 bytes a record, 10,000 records a
// batch). Plain or gzipped files are read alike.
#include <string>

#include "runtime/data/byte_images.h"

namespace clx {

inline constexpr int64_t kCifarSide = 32;
inline constexpr int64_t kCifarRecordBytes = 1 + 3 * kCifarSide * kCifarSide;

// One batch file as float32 [N, 3, 32, 32] in [0, 1], labels 0..9. Throws
// clx::Error naming the file: a length that is no whole number of 3073-byte
// records (or zero), a label above 9.
LabelledImages read_cifar10_batch(const std::string& path);

// The training batches (in order 1..5) or the test batch under `folder`; a
// missing batch file is named in the error.
LabelledImages load_cifar10_split(const std::string& folder, OfficialSplit split);

}  // namespace clx
