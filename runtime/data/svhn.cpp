#include "runtime/data/svhn.h"

#include <matio.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "runtime/error.h"
#include "runtime/text.h"

namespace clx {
namespace {

constexpr int64_t kClasses = 10;
constexpr const char* kLayout =
    "an SVHN folder holds train_32x32.mat and test_32x32.mat, the cropped digits of "
    "http://ufldl.stanford.edu/housenumbers/";

struct MatFileCloser {
  void operator()(mat_t* file) const { Mat_Close(file); }
};
struct MatVariableFreer {
  void operator()(matvar_t* variable) const { Mat_VarFree(variable); }
};
using MatFile = std::unique_ptr<mat_t, MatFileCloser>;
using MatVariable = std::unique_ptr<matvar_t, MatVariableFreer>;

std::vector<int64_t> dims_of(const matvar_t& variable) {
  return std::vector<int64_t>(variable.dims, variable.dims + variable.rank);
}

std::string class_name(matio_classes type) {
  switch (type) {
    case MAT_C_DOUBLE: return "double";
    case MAT_C_SINGLE: return "single";
    case MAT_C_INT8: return "int8";
    case MAT_C_UINT8: return "uint8";
    case MAT_C_INT16: return "int16";
    case MAT_C_UINT16: return "uint16";
    case MAT_C_INT32: return "int32";
    case MAT_C_UINT32: return "uint32";
    case MAT_C_INT64: return "int64";
    case MAT_C_UINT64: return "uint64";
    case MAT_C_CELL: return "cell";
    case MAT_C_STRUCT: return "struct";
    case MAT_C_CHAR: return "char";
    case MAT_C_SPARSE: return "sparse";
    default: return "class " + std::to_string(static_cast<int>(type));
  }
}

// "uint8 32x32x3x5" (or "complex double 1x5"): how a variable is described in messages.
std::string describe(const matvar_t& variable) {
  return std::string(variable.isComplex ? "complex " : "") + class_name(variable.class_type) + " " +
         sizes_text(dims_of(variable));
}

// The variable `name` of `file`, header only (matio reads the data later, so
// a variable of the wrong kind is reported before its data is inflated).
MatVariable variable_info(mat_t* file, const std::string& path, const char* name, const std::string& expected) {
  MatVariable info(Mat_VarReadInfo(file, name));
  if (!info)
    throw Error(path + ": no variable '" + name + "' (an SVHN file holds " + expected +
                "; a file cut short loses its last variables)");
  return info;
}

// The data of variable `name` (its header already checked): `elements` values of `element_bytes` each.
MatVariable variable_data(mat_t* file, const std::string& path, const char* name, int64_t elements,
                          size_t element_bytes) {
  MatVariable variable(Mat_VarRead(file, name));
  if (!variable || variable->data == nullptr || static_cast<size_t>(variable->data_size) != element_bytes ||
      variable->nbytes < static_cast<size_t>(elements) * element_bytes)
    throw Error(path + ": the data of variable '" + name + "' cannot be read (truncated or corrupt file?)");
  return variable;
}

// matio reads a variable whose data the file cuts short without complaint:
// with matio 1.5.23, X of a file cut 100 bytes short came back without an
// error and with its missing bytes arbitrary, compressed or not. So a MATLAB v5 file's
// top-level elements (a tag of type and byte count, then the data) are
// walked first, and one that ends past the end of the file is an error.
// Other versions (7.3 is HDF5, which checks itself) are left to matio.
void check_mat5_elements_fit(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  unsigned char header[128];
  if (!file.read(reinterpret_cast<char*>(header), sizeof(header))) return;  // too short: Mat_Open refuses it
  // Bytes 124..127: version 0x0100 and "MI", both written in the file's byte order.
  const bool little_endian = header[126] == 'I' && header[127] == 'M';
  const bool big_endian = header[126] == 'M' && header[127] == 'I';
  const int version = little_endian ? header[124] | header[125] << 8 : header[124] << 8 | header[125];
  if ((!little_endian && !big_endian) || version != 0x0100) return;
  auto word = [&](const unsigned char* b) -> uint64_t {
    return little_endian ? uint64_t{b[0]} | uint64_t{b[1]} << 8 | uint64_t{b[2]} << 16 | uint64_t{b[3]} << 24
                         : uint64_t{b[3]} | uint64_t{b[2]} << 8 | uint64_t{b[1]} << 16 | uint64_t{b[0]} << 24;
  };
  constexpr uint64_t kCompressed = 15;  // miCOMPRESSED: zlib data, not padded to 8 bytes
  std::error_code error;
  const uint64_t size = std::filesystem::file_size(path, error);
  if (error) return;
  uint64_t position = sizeof(header);
  unsigned char tag[8];
  while (position + sizeof(tag) <= size) {
    file.seekg(static_cast<std::streamoff>(position));
    if (!file.read(reinterpret_cast<char*>(tag), sizeof(tag))) return;
    const uint64_t type = word(tag), bytes = word(tag + 4);
    // A "small data element" packs its type and length in the first word and its data in the second.
    const bool small = (type >> 16) != 0;
    const uint64_t end = small ? position + 8 : position + 8 + bytes;
    if (end > size)
      throw Error(path + ": truncated: the variable at byte " + std::to_string(position) + " needs " +
                  std::to_string(end - position) + " bytes, the file ends " + std::to_string(end - size) +
                  " bytes before that");
    // Uncompressed data is padded to a multiple of 8 bytes (of its own length: a compressed element before
    // it leaves the position unaligned).
    position = small || type == kCompressed ? end : end + (8 - bytes % 8) % 8;
  }
}

}  // namespace

LabelledImages read_svhn_file(const std::string& path) {
  const char* images_wanted = "X, uint8 32x32x3xN, and y, N labels 1..10";
  check_mat5_elements_fit(path);
  MatFile file(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
  if (!file) throw Error(path + ": not a MATLAB .mat file that matio can read");

  // X: 32x32x3xN uint8, or 32x32x3 for a single image.
  const MatVariable x_info = variable_info(file.get(), path, "X", images_wanted);
  const std::vector<int64_t> x_dims = dims_of(*x_info);
  const bool x_shape_ok = (x_dims.size() == 4 || x_dims.size() == 3) && x_dims[0] == kSvhnSide &&
                          x_dims[1] == kSvhnSide && x_dims[2] == 3 && (x_dims.size() == 3 || x_dims[3] > 0);
  if (x_info->class_type != MAT_C_UINT8 || x_info->isComplex || !x_shape_ok)
    throw Error(path + ": variable X is " + describe(*x_info) + ", expected uint8 32x32x3xN (SVHN's images)");
  const int64_t count = x_dims.size() == 4 ? x_dims[3] : 1;

  // y: N numbers, Nx1 or 1xN.
  const MatVariable y_info = variable_info(file.get(), path, "y", images_wanted);
  const std::vector<int64_t> y_dims = dims_of(*y_info);
  const bool y_is_vector = y_dims.size() == 2 && (y_dims[0] == 1 || y_dims[1] == 1);
  const int64_t label_count = y_is_vector ? y_dims[0] * y_dims[1] : -1;
  if ((y_info->class_type != MAT_C_DOUBLE && y_info->class_type != MAT_C_UINT8) || y_info->isComplex || !y_is_vector)
    throw Error(path + ": variable y is " + describe(*y_info) + ", expected double or uint8 Nx1 (SVHN's labels)");
  if (label_count != count)
    throw Error(path + ": sizes disagree: X holds " + std::to_string(count) + " images but y holds " +
                std::to_string(label_count) + " labels");

  const bool double_labels = y_info->class_type == MAT_C_DOUBLE;
  const MatVariable y = variable_data(file.get(), path, "y", count, double_labels ? sizeof(double) : 1);
  const torch::Tensor labels =
      torch::from_blob(y->data, {count}, double_labels ? torch::kFloat64 : torch::kUInt8);
  check_label_range(labels, 1, kClasses, path + ", variable y");

  const MatVariable x = variable_data(file.get(), path, "X", count * 3 * kSvhnSide * kSvhnSide, 1);
  // Column-major X(r, c, k, n) is row-major [n][k][c][r]: viewed so, then rows and columns swapped.
  const torch::Tensor pixels =
      torch::from_blob(x->data, {count, 3, kSvhnSide, kSvhnSide}, torch::kUInt8).transpose(2, 3);
  // Label 10 is the digit 0.
  return labelled_images_from_bytes(pixels, labels.to(torch::kInt64).remainder(kClasses), kClasses,
                                    "svhn (" + path + ")");
}

LabelledImages load_svhn_split(const std::string& folder, OfficialSplit split) {
  return read_svhn_file(
      dataset_file(folder, split == OfficialSplit::Train ? "train_32x32.mat" : "test_32x32.mat", kLayout));
}

}  // namespace clx
