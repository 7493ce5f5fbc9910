#include "runtime/checkpoint.h"

#include <hdf5.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>

#include "runtime/file_io.h"
#include "runtime/fingerprint.h"

namespace clx {

CheckpointError::CheckpointError(const std::string& path, const std::string& object, const std::string& reason)
    : Error("checkpoint " + path + ": " + object + ": " + reason), path_(path), object_(object), reason_(reason) {}

namespace {

namespace fs = std::filesystem;

// Serial HDF5 must not be entered by two threads at once (the Debian build is
// thread-safe, but the error-stack settings are per thread): every public
// function below holds this lock while it talks to HDF5.
std::mutex& hdf5_mutex() {
  static std::mutex mutex;
  return mutex;
}

// Called under the lock at every entry: the automatic error printing is a
// per-thread setting in thread-safe builds.
void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// ---- HDF5 error stack -> one line

herr_t collect_error(unsigned /*n*/, const H5E_error2_t* entry, void* data) {
  auto* lines = static_cast<std::vector<std::string>*>(data);
  std::string text = entry->desc ? entry->desc : "";
  char minor[256] = {0};
  if (H5Eget_msg(entry->min_num, nullptr, minor, sizeof(minor)) > 0) {
    if (text.empty())
      text = minor;
    else if (text.find(minor) == std::string::npos)
      text += std::string(" (") + minor + ")";
  }
  lines->push_back(text);
  return 0;
}

// The most specific message on HDF5's error stack (the innermost entry),
// then clears the stack. Empty when the stack is empty.
std::string hdf5_detail() {
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &lines);
  H5Eclear2(H5E_DEFAULT);
  if (lines.empty()) return "";
  // One line: some HDF5 messages (the sec2 driver's) span several.
  std::string detail = lines.back();
  for (char& c : detail)
    if (c == '\n' || c == '\r') c = ' ';
  return detail;
}

std::string with_detail(const std::string& what) {
  const std::string detail = hdf5_detail();
  return detail.empty() ? what : what + " (HDF5: " + detail + ")";
}

// ---- RAII handle

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) { other.id_ = -1; }
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      closer_ = other.closer_;
      other.id_ = -1;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = -1;
  }
  // Closes now and reports whether closing succeeded.
  bool close() {
    herr_t status = 0;
    if (id_ >= 0 && closer_) status = closer_(id_);
    id_ = -1;
    return status >= 0;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// ---- dtypes

struct DtypeInfo {
  torch::ScalarType scalar;
  const char* name;   // value of the "dtype" attribute
  hid_t (*file_type)();  // little-endian type written to the file
  hid_t (*memory_type)();
  H5T_class_t h5_class;
  size_t size;
  H5T_sign_t sign;  // for integers
};

// HDF5's predefined type ids are macros that expand to function calls (they
// are valid only after the library is initialised), hence the lambdas.
const std::vector<DtypeInfo>& dtype_table() {
  static const std::vector<DtypeInfo> table = {
      {torch::kFloat32, "float32", [] { return H5T_IEEE_F32LE; }, [] { return H5T_NATIVE_FLOAT; }, H5T_FLOAT, 4,
       H5T_SGN_ERROR},
      {torch::kFloat64, "float64", [] { return H5T_IEEE_F64LE; }, [] { return H5T_NATIVE_DOUBLE; }, H5T_FLOAT, 8,
       H5T_SGN_ERROR},
      {torch::kFloat16, "float16", [] { return H5T_STD_U16LE; }, [] { return H5T_NATIVE_UINT16; }, H5T_INTEGER, 2,
       H5T_SGN_NONE},
      {torch::kBFloat16, "bfloat16", [] { return H5T_STD_U16LE; }, [] { return H5T_NATIVE_UINT16; }, H5T_INTEGER, 2,
       H5T_SGN_NONE},
      {torch::kInt64, "int64", [] { return H5T_STD_I64LE; }, [] { return H5T_NATIVE_INT64; }, H5T_INTEGER, 8,
       H5T_SGN_2},
      {torch::kInt32, "int32", [] { return H5T_STD_I32LE; }, [] { return H5T_NATIVE_INT32; }, H5T_INTEGER, 4,
       H5T_SGN_2},
      {torch::kInt16, "int16", [] { return H5T_STD_I16LE; }, [] { return H5T_NATIVE_INT16; }, H5T_INTEGER, 2,
       H5T_SGN_2},
      {torch::kInt8, "int8", [] { return H5T_STD_I8LE; }, [] { return H5T_NATIVE_INT8; }, H5T_INTEGER, 1, H5T_SGN_2},
      {torch::kUInt8, "uint8", [] { return H5T_STD_U8LE; }, [] { return H5T_NATIVE_UINT8; }, H5T_INTEGER, 1,
       H5T_SGN_NONE},
      {torch::kBool, "bool", [] { return H5T_STD_U8LE; }, [] { return H5T_NATIVE_UINT8; }, H5T_INTEGER, 1,
       H5T_SGN_NONE},
  };
  return table;
}

const DtypeInfo* dtype_by_scalar(torch::ScalarType scalar) {
  for (const DtypeInfo& info : dtype_table())
    if (info.scalar == scalar) return &info;
  return nullptr;
}

const DtypeInfo* dtype_by_name(const std::string& name) {
  for (const DtypeInfo& info : dtype_table())
    if (name == info.name) return &info;
  return nullptr;
}

std::string dtype_name(torch::ScalarType scalar) {
  const DtypeInfo* info = dtype_by_scalar(scalar);
  return info ? info->name : std::string(c10::toString(scalar));
}

std::string shape_text(c10::IntArrayRef sizes) {
  std::string text = "[";
  for (size_t i = 0; i < sizes.size(); ++i) text += (i ? ", " : "") + std::to_string(sizes[i]);
  return text + "]";
}

std::string describe_h5_type(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  std::string name;
  switch (cls) {
    case H5T_INTEGER: name = H5Tget_sign(type) == H5T_SGN_NONE ? "unsigned integer" : "signed integer"; break;
    case H5T_FLOAT: name = "float"; break;
    case H5T_STRING: name = H5Tis_variable_str(type) > 0 ? "variable-length string" : "fixed-length string"; break;
    case H5T_COMPOUND: name = "compound"; break;
    case H5T_ARRAY: name = "array"; break;
    case H5T_ENUM: name = "enum"; break;
    case H5T_VLEN: name = "variable-length sequence"; break;
    default: name = "HDF5 type class " + std::to_string(static_cast<int>(cls)); break;
  }
  H5Eclear2(H5E_DEFAULT);
  return name + " of " + std::to_string(size) + " bytes";
}

bool type_matches(hid_t type, const DtypeInfo& info) {
  if (H5Tget_class(type) != info.h5_class || H5Tget_size(type) != info.size) return false;
  if (info.h5_class == H5T_INTEGER && H5Tget_sign(type) != info.sign) return false;
  return true;
}

Handle fixed_string_type(size_t size) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(size, 1));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  return type;
}

std::string strip_nuls(std::string text) {
  while (!text.empty() && text.back() == '\0') text.pop_back();
  return text;
}

std::string join_path(const std::string& group, const std::string& link) {
  return group == "/" ? "/" + link : group + "/" + link;
}

// ======================================================================
// Writing

class Writer {
 public:
  explicit Writer(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& object, const std::string& reason) const {
    throw CheckpointError(path_, object, reason);
  }
  hid_t check(hid_t id, const std::string& object, const std::string& what) const {
    if (id < 0) fail(object, with_detail(what));
    return id;
  }
  void check_status(herr_t status, const std::string& object, const std::string& what) const {
    if (status < 0) fail(object, with_detail(what));
  }

  Handle create_group(hid_t parent, const std::string& link, const std::string& object) const {
    return Handle(check(H5Gcreate2(parent, link.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), object,
                        "cannot create group"),
                  H5Gclose);
  }

  void write_int_attribute(hid_t object_id, const std::string& object, const char* name, int64_t value) const {
    Handle space(check(H5Screate(H5S_SCALAR), object, "cannot create dataspace"), H5Sclose);
    Handle attr(check(H5Acreate2(object_id, name, H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), object,
                      std::string("cannot create attribute '") + name + "'"),
                H5Aclose);
    check_status(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), object, std::string("cannot write attribute '") + name + "'");
  }

  void write_string_attribute(hid_t object_id, const std::string& object, const char* name,
                              const std::string& value) const {
    check_text(object, std::string("attribute '") + name + "'", value);
    Handle type = fixed_string_type(value.size());
    Handle space(check(H5Screate(H5S_SCALAR), object, "cannot create dataspace"), H5Sclose);
    Handle attr(check(H5Acreate2(object_id, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), object,
                      std::string("cannot create attribute '") + name + "'"),
                H5Aclose);
    std::string buffer = value;
    buffer.resize(std::max<size_t>(value.size(), 1), '\0');
    check_status(H5Awrite(attr.get(), type.get(), buffer.data()), object,
          std::string("cannot write attribute '") + name + "'");
  }

  // 1-D array of fixed-length strings (one per name, NUL-padded).
  void write_names_attribute(hid_t group_id, const std::string& object, const std::vector<std::string>& names) const {
    size_t width = 1;
    for (const std::string& name : names) width = std::max(width, name.size());
    Handle type = fixed_string_type(width);
    const hsize_t count = names.size();
    Handle space(check(H5Screate_simple(1, &count, nullptr), object, "cannot create dataspace"), H5Sclose);
    Handle attr(check(H5Acreate2(group_id, "names", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), object,
                      "cannot create attribute 'names'"),
                H5Aclose);
    std::string buffer(names.size() * width + 1, '\0');
    for (size_t i = 0; i < names.size(); ++i) std::memcpy(&buffer[i * width], names[i].data(), names[i].size());
    check_status(H5Awrite(attr.get(), type.get(), buffer.data()), object, "cannot write attribute 'names'");
  }

  void check_text(const std::string& object, const std::string& what, const std::string& text) const {
    if (text.find('\0') != std::string::npos)
      fail(object, what + " contains a NUL byte (text fields must be text; store binary data as a uint8 tensor)");
  }

  void write_tensor(hid_t parent, const std::string& link, const std::string& object,
                    const torch::Tensor& tensor) const {
    if (!tensor.defined()) fail(object, "tensor is undefined");
    const DtypeInfo* info = dtype_by_scalar(tensor.scalar_type());
    if (!info) fail(object, "dtype " + std::string(c10::toString(tensor.scalar_type())) + " is not supported");
    const torch::Tensor host = tensor.detach().to(torch::kCPU).contiguous();
    Handle space;
    if (host.dim() == 0) {
      space = Handle(check(H5Screate(H5S_SCALAR), object, "cannot create dataspace"), H5Sclose);
    } else {
      if (host.dim() > H5S_MAX_RANK) fail(object, "more than " + std::to_string(H5S_MAX_RANK) + " dimensions");
      std::vector<hsize_t> dims(host.sizes().begin(), host.sizes().end());
      space = Handle(check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), object,
                           "cannot create dataspace"),
                     H5Sclose);
    }
    Handle dcpl(check(H5Pcreate(H5P_DATASET_CREATE), object, "cannot create property list"), H5Pclose);
    check_status(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS), object, "cannot set layout");
    check_status(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), object, "cannot set fill time");
    Handle dataset(check(H5Dcreate2(parent, link.c_str(), info->file_type(), space.get(), H5P_DEFAULT, dcpl.get(),
                                    H5P_DEFAULT),
                         object, "cannot create dataset"),
                   H5Dclose);
    // Written straight from the tensor's memory: the file type is the memory
    // type, so HDF5 converts nothing, and large datasets bypass its sieve buffer.
    if (host.numel() > 0)
      check_status(H5Dwrite(dataset.get(), info->memory_type(), H5S_ALL, H5S_ALL, H5P_DEFAULT, host.data_ptr()), object,
            "cannot write data");
    write_string_attribute(dataset.get(), object, "dtype", info->name);
    write_string_attribute(dataset.get(), object, "fingerprint", Fingerprint().add(host).hex());
  }

  void write_text(hid_t parent, const std::string& link, const std::string& object, const std::string& text) const {
    check_text(object, "text", text);
    Handle type = fixed_string_type(text.size());
    Handle space(check(H5Screate(H5S_SCALAR), object, "cannot create dataspace"), H5Sclose);
    Handle dataset(check(H5Dcreate2(parent, link.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                                    H5P_DEFAULT),
                         object, "cannot create dataset"),
                   H5Dclose);
    std::string buffer = text;
    buffer.resize(std::max<size_t>(text.size(), 1), '\0');
    check_status(H5Dwrite(dataset.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data()), object,
          "cannot write data");
    write_string_attribute(dataset.get(), object, "fingerprint", Fingerprint().add(std::string_view(text)).hex());
  }

  // A group of named entries: attribute "names" lists them in order, each is
  // stored under checkpoint_link_name(name).
  template <typename Value, typename WriteOne>
  void write_named_group(hid_t file, const std::string& group_name,
                         const std::vector<std::pair<std::string, Value>>& entries, WriteOne write_one) const {
    const std::string object = "/" + group_name;
    std::vector<std::string> names;
    std::set<std::string> seen;
    for (const auto& entry : entries) {
      const std::string& name = entry.first;
      if (name.empty()) fail(object, "an entry has an empty name");
      check_text(object, "name '" + name + "'", name);
      if (!seen.insert(name).second) fail(join_path(object, checkpoint_link_name(name)), "duplicate name");
      names.push_back(name);
    }
    Handle group = create_group(file, group_name, object);
    write_names_attribute(group.get(), object, names);
    for (const auto& entry : entries) {
      const std::string link = checkpoint_link_name(entry.first);
      write_one(group.get(), link, join_path(object, link), entry.second);
    }
  }

  void write_all(hid_t file, const CheckpointState& state) const {
    const std::string root = "/";
    write_int_attribute(file, root, "format_version", state.format_version);
    write_int_attribute(file, root, "world_size", state.world_size);
    write_int_attribute(file, root, "stage", state.stage);
    write_string_attribute(file, root, "phase", state.phase);
    write_int_attribute(file, root, "epoch", state.epoch);
    write_int_attribute(file, root, "step", state.step);
    write_int_attribute(file, root, "global_step", state.global_step);
    write_string_attribute(file, root, "header_fingerprint", header_fingerprint(state));
    write_string_attribute(file, root, "producer", "clx");

    write_text(file, "config", "/config", state.config_text);

    // Accuracy matrix: rows so far (possibly none) x tasks.
    Handle accuracy = create_group(file, "accuracy", "/accuracy");
    const int64_t rows = static_cast<int64_t>(state.accuracy_stages.size());
    const int64_t cols = rows > 0 ? static_cast<int64_t>(state.accuracy_stages[0].size())
                                  : static_cast<int64_t>(state.accuracy_initial.size());
    torch::Tensor stages = torch::empty({rows, cols}, torch::kFloat64);
    for (int64_t r = 0; r < rows; ++r) {
      const auto& row = state.accuracy_stages[static_cast<size_t>(r)];
      if (static_cast<int64_t>(row.size()) != cols)
        fail("/accuracy/stages", "row " + std::to_string(r) + " has " + std::to_string(row.size()) +
                                     " entries, row 0 has " + std::to_string(cols) + " (rows must be equally long)");
      if (cols > 0) std::memcpy(stages[r].data_ptr<double>(), row.data(), row.size() * sizeof(double));
    }
    torch::Tensor initial = torch::empty({static_cast<int64_t>(state.accuracy_initial.size())}, torch::kFloat64);
    if (!state.accuracy_initial.empty())
      std::memcpy(initial.data_ptr<double>(), state.accuracy_initial.data(),
                  state.accuracy_initial.size() * sizeof(double));
    write_tensor(accuracy.get(), "initial", "/accuracy/initial", initial);
    write_tensor(accuracy.get(), "stages", "/accuracy/stages", stages);
    accuracy.reset();

    auto tensor_writer = [this](hid_t group, const std::string& link, const std::string& object,
                                const torch::Tensor& tensor) { write_tensor(group, link, object, tensor); };
    auto text_writer = [this](hid_t group, const std::string& link, const std::string& object,
                              const std::string& text) { write_text(group, link, object, text); };
    write_named_group(file, "model", state.model, tensor_writer);
    write_named_group(file, "optimizer", state.optimizer, tensor_writer);
    write_named_group(file, "strategy", state.strategy, tensor_writer);
    write_named_group(file, "strategy_text", state.strategy_text, text_writer);

    NamedTensors ranks;
    for (size_t rank = 0; rank < state.rank_states.size(); ++rank) {
      const std::string& bytes = state.rank_states[rank];
      torch::Tensor tensor = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
      if (!bytes.empty()) std::memcpy(tensor.data_ptr(), bytes.data(), bytes.size());
      ranks.emplace_back(std::to_string(rank), tensor);
    }
    write_named_group(file, "ranks", ranks, tensor_writer);
  }

  static std::string header_fingerprint(const CheckpointState& state) {
    Fingerprint fp;
    fp.add(state.format_version).add(state.world_size).add(state.stage).add(std::string_view(state.phase));
    fp.add(state.epoch).add(state.step).add(state.global_step);
    return fp.hex();
  }

 private:
  std::string path_;
};

// ======================================================================
// Reading

class Reader {
 public:
  Reader(std::string path, uint64_t file_size) : path_(std::move(path)), file_size_(file_size) {}

  [[noreturn]] void fail(const std::string& object, const std::string& reason) const {
    throw CheckpointError(path_, object, reason);
  }
  hid_t check(hid_t id, const std::string& object, const std::string& what) const {
    if (id < 0) fail(object, with_detail(what));
    return id;
  }

  // Opens child `link` of `parent`, which must be a hard link to an object of `type`.
  Handle open_child(hid_t parent, const std::string& link, const std::string& object, H5I_type_t type) const {
    const char* kind = type == H5I_DATASET ? "dataset" : "group";
    const htri_t exists = H5Lexists(parent, link.c_str(), H5P_DEFAULT);
    if (exists < 0) fail(object, with_detail(std::string("cannot look up ") + kind));
    if (exists == 0) fail(object, std::string("missing ") + kind);
    H5L_info_t link_info;
    if (H5Lget_info(parent, link.c_str(), &link_info, H5P_DEFAULT) < 0)
      fail(object, with_detail("cannot read link"));
    if (link_info.type != H5L_TYPE_HARD) fail(object, std::string("is a soft or external link, expected a ") + kind);
    Handle handle(check(H5Oopen(parent, link.c_str(), H5P_DEFAULT), object, std::string("cannot open ") + kind),
                  H5Oclose);
    if (H5Iget_type(handle.get()) != type) fail(object, std::string("is not a ") + kind);
    return handle;
  }

  Handle open_attribute(hid_t object_id, const std::string& object, const char* name) const {
    const htri_t exists = H5Aexists(object_id, name);
    if (exists < 0) fail(object, with_detail(std::string("cannot look up attribute '") + name + "'"));
    if (exists == 0) fail(object, std::string("missing attribute '") + name + "'");
    return Handle(check(H5Aopen(object_id, name, H5P_DEFAULT), object,
                        std::string("cannot open attribute '") + name + "'"),
                  H5Aclose);
  }

  // Number of elements of a scalar or simple dataspace; shape in `dims`
  // (empty for a scalar).
  hsize_t extent(hid_t space, const std::string& object, const std::string& what, std::vector<hsize_t>* dims) const {
    const H5S_class_t cls = H5Sget_simple_extent_type(space);
    if (cls == H5S_SCALAR) {
      dims->clear();
      return 1;
    }
    if (cls != H5S_SIMPLE) fail(object, with_detail(what + " has a null or unknown dataspace"));
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > H5S_MAX_RANK) fail(object, with_detail(what + " has an invalid rank"));
    dims->assign(static_cast<size_t>(rank), 0);
    if (rank > 0 && H5Sget_simple_extent_dims(space, dims->data(), nullptr) < 0)
      fail(object, with_detail(what + ": cannot read dimensions"));
    hsize_t count = 1;
    for (hsize_t dim : *dims) {
      if (dim > static_cast<hsize_t>(std::numeric_limits<int64_t>::max())) fail(object, what + ": dimension too large");
      if (dim != 0 && count > std::numeric_limits<hsize_t>::max() / dim) fail(object, what + ": too many elements");
      count *= dim;
    }
    return count;
  }

  // Guards allocations against sizes no file of this size can hold.
  void check_size(const std::string& object, const std::string& what, hsize_t count, size_t element_size,
                  uint64_t limit) const {
    if (element_size != 0 && count > limit / element_size)
      fail(object, what + " claims " + std::to_string(count) + " elements of " + std::to_string(element_size) +
                       " bytes, more than the file (" + std::to_string(file_size_) + " bytes) can hold");
  }

  int64_t read_int_attribute(hid_t object_id, const std::string& object, const char* name) const {
    Handle attr = open_attribute(object_id, object, name);
    const std::string what = std::string("attribute '") + name + "'";
    Handle type(check(H5Aget_type(attr.get()), object, "cannot read the type of " + what), H5Tclose);
    if (H5Tget_class(type.get()) != H5T_INTEGER || H5Tget_size(type.get()) > 8)
      fail(object, what + " is a " + describe_h5_type(type.get()) + ", expected a 64-bit integer");
    Handle space(check(H5Aget_space(attr.get()), object, "cannot read the dataspace of " + what), H5Sclose);
    std::vector<hsize_t> dims;
    if (extent(space.get(), object, what, &dims) != 1 || !dims.empty())
      fail(object, what + " is not a scalar");
    int64_t value = 0;
    if (H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0) fail(object, with_detail("cannot read " + what));
    return value;
  }

  // Fixed-length string(s) of an attribute or dataset, NUL padding removed.
  std::vector<std::string> read_fixed_strings(hid_t type, hid_t space, const std::string& object,
                                              const std::string& what, bool scalar,
                                              const std::function<herr_t(hid_t, void*)>& read) const {
    if (H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) != 0)
      fail(object, with_detail(what + " is a " + describe_h5_type(type) + ", expected a fixed-length string"));
    const size_t width = H5Tget_size(type);
    if (width == 0) fail(object, with_detail(what + " has a string type of size 0"));
    std::vector<hsize_t> dims;
    const hsize_t count = extent(space, object, what, &dims);
    if (scalar && !dims.empty()) fail(object, what + " is not a scalar string");
    if (!scalar && dims.size() != 1) fail(object, what + " is not a 1-D array of strings");
    check_size(object, what, count, width, file_size_);
    Handle memory_type = fixed_string_type(width);
    // Same character set as stored: HDF5 does not convert between ASCII and UTF-8.
    const H5T_cset_t cset = H5Tget_cset(type);
    if (cset == H5T_CSET_ASCII || cset == H5T_CSET_UTF8) H5Tset_cset(memory_type.get(), cset);
    H5Eclear2(H5E_DEFAULT);
    std::string buffer(static_cast<size_t>(count) * width + 1, '\0');
    if (count > 0 && read(memory_type.get(), buffer.data()) < 0) fail(object, with_detail("cannot read " + what));
    std::vector<std::string> strings;
    for (hsize_t i = 0; i < count; ++i)
      strings.push_back(strip_nuls(buffer.substr(static_cast<size_t>(i) * width, width)));
    return strings;
  }

  std::string read_string_attribute(hid_t object_id, const std::string& object, const char* name) const {
    Handle attr = open_attribute(object_id, object, name);
    const std::string what = std::string("attribute '") + name + "'";
    Handle type(check(H5Aget_type(attr.get()), object, "cannot read the type of " + what), H5Tclose);
    Handle space(check(H5Aget_space(attr.get()), object, "cannot read the dataspace of " + what), H5Sclose);
    return read_fixed_strings(type.get(), space.get(), object, what, true,
                              [&](hid_t memory, void* buffer) { return H5Aread(attr.get(), memory, buffer); })[0];
  }

  std::vector<std::string> read_names_attribute(hid_t group_id, const std::string& object) const {
    Handle attr = open_attribute(group_id, object, "names");
    const std::string what = "attribute 'names'";
    Handle type(check(H5Aget_type(attr.get()), object, "cannot read the type of " + what), H5Tclose);
    Handle space(check(H5Aget_space(attr.get()), object, "cannot read the dataspace of " + what), H5Sclose);
    return read_fixed_strings(type.get(), space.get(), object, what, false,
                              [&](hid_t memory, void* buffer) { return H5Aread(attr.get(), memory, buffer); });
  }

  void check_fingerprint(hid_t dataset, const std::string& object, const std::string& actual) const {
    const std::string stored = read_string_attribute(dataset, object, "fingerprint");
    if (stored != actual)
      fail(object, "fingerprint mismatch: stored " + stored + ", data gives " + actual +
                       " (the stored bytes are damaged)");
  }

  torch::Tensor read_tensor(hid_t dataset, const std::string& object) const {
    const std::string dtype = read_string_attribute(dataset, object, "dtype");
    const DtypeInfo* info = dtype_by_name(dtype);
    if (!info) fail(object, "unsupported dtype '" + dtype + "'");
    Handle type(check(H5Dget_type(dataset), object, "cannot read the datatype"), H5Tclose);
    if (!type_matches(type.get(), *info))
      fail(object, "stored as " + describe_h5_type(type.get()) + ", which does not hold dtype " + info->name);
    Handle space(check(H5Dget_space(dataset), object, "cannot read the dataspace"), H5Sclose);
    std::vector<hsize_t> dims;
    const hsize_t count = extent(space.get(), object, "dataset", &dims);
    H5D_layout_t layout = H5D_LAYOUT_ERROR;
    const uint64_t bytes_limit = storage_limit(dataset, object, &layout);
    check_size(object, "dataset", count, info->size, bytes_limit);
    const uint64_t bytes = count * info->size;
    if (layout == H5D_CONTIGUOUS && bytes > 0) {
      const hsize_t stored = H5Dget_storage_size(dataset);
      if (stored < bytes)
        fail(object, with_detail("holds " + std::to_string(stored) + " bytes of data, its shape needs " +
                                 std::to_string(bytes)));
    }
    std::vector<int64_t> shape(dims.begin(), dims.end());
    torch::Tensor tensor = torch::empty(shape, torch::TensorOptions().dtype(info->scalar));
    if (count > 0 && H5Dread(dataset, info->memory_type(), H5S_ALL, H5S_ALL, H5P_DEFAULT, tensor.data_ptr()) < 0)
      fail(object, with_detail("cannot read data"));
    check_fingerprint(dataset, object, Fingerprint().add(tensor).hex());
    return tensor;
  }

  // Most bytes a dataset with this layout may claim: contiguous and compact
  // data is stored uncompressed inside the file; chunked data (e.g. after
  // h5repack) may be compressed, up to a generous ratio.
  uint64_t storage_limit(hid_t dataset, const std::string& object, H5D_layout_t* layout) const {
    Handle dcpl(check(H5Dget_create_plist(dataset), object, "cannot read the creation properties"), H5Pclose);
    *layout = H5Pget_layout(dcpl.get());
    switch (*layout) {
      case H5D_CONTIGUOUS: return file_size_;
      case H5D_COMPACT: return std::min<uint64_t>(file_size_, 65536);
      case H5D_CHUNKED: return file_size_ > std::numeric_limits<uint64_t>::max() / 1024 ? file_size_ : file_size_ * 1024;
      default: fail(object, with_detail("has an unsupported storage layout"));
    }
  }

  std::string read_text(hid_t dataset, const std::string& object) const {
    Handle type(check(H5Dget_type(dataset), object, "cannot read the datatype"), H5Tclose);
    Handle space(check(H5Dget_space(dataset), object, "cannot read the dataspace"), H5Sclose);
    H5D_layout_t layout = H5D_LAYOUT_ERROR;
    storage_limit(dataset, object, &layout);
    const std::string text =
        read_fixed_strings(type.get(), space.get(), object, "dataset", true, [&](hid_t memory, void* buffer) {
          return H5Dread(dataset, memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer);
        })[0];
    check_fingerprint(dataset, object, Fingerprint().add(std::string_view(text)).hex());
    return text;
  }

  template <typename Value, typename ReadOne>
  std::vector<std::pair<std::string, Value>> read_named_group(hid_t file, const std::string& group_name,
                                                              ReadOne read_one) const {
    const std::string object = "/" + group_name;
    Handle group = open_child(file, group_name, object, H5I_GROUP);
    const std::vector<std::string> names = read_names_attribute(group.get(), object);
    std::set<std::string> links;
    std::vector<std::pair<std::string, Value>> entries;
    for (const std::string& name : names) {
      if (name.empty()) fail(object, "attribute 'names' holds an empty name");
      const std::string link = checkpoint_link_name(name);
      const std::string child = join_path(object, link);
      if (!links.insert(link).second) fail(child, "listed twice in attribute 'names' of " + object);
      Handle dataset = open_child(group.get(), link, child, H5I_DATASET);
      entries.emplace_back(name, read_one(dataset.get(), child));
    }
    H5G_info_t info;
    if (H5Gget_info(group.get(), &info) < 0) fail(object, with_detail("cannot read group information"));
    if (info.nlinks != names.size()) {
      for (hsize_t i = 0; i < info.nlinks; ++i) {
        const ssize_t length =
            H5Lget_name_by_idx(group.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
        if (length < 0 || static_cast<uint64_t>(length) > file_size_) break;
        std::string link(static_cast<size_t>(length) + 1, '\0');
        if (H5Lget_name_by_idx(group.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, link.data(), link.size(),
                               H5P_DEFAULT) < 0)
          break;
        link.resize(static_cast<size_t>(length));
        if (!links.count(link)) fail(join_path(object, link), "not listed in attribute 'names' of " + object);
      }
      H5Eclear2(H5E_DEFAULT);
      fail(object, "holds " + std::to_string(info.nlinks) + " links, attribute 'names' lists " +
                       std::to_string(names.size()));
    }
    return entries;
  }

  CheckpointState read_all(hid_t file) const {
    CheckpointState state;
    const std::string root = "/";
    state.format_version = read_int_attribute(file, root, "format_version");
    if (state.format_version < kOldestReadableCheckpointFormatVersion ||
        state.format_version > kCheckpointFormatVersion) {
      std::string reason = "unsupported format_version " + std::to_string(state.format_version) +
                           " (this build reads " + std::to_string(kOldestReadableCheckpointFormatVersion) + " to " +
                           std::to_string(kCheckpointFormatVersion) + ")";
      if (state.format_version == 1)
        reason += "; version 1 files carry FNV-1a fingerprints: resume them with the build that wrote them";
      fail(root, reason);
    }
    state.world_size = read_int_attribute(file, root, "world_size");
    state.stage = read_int_attribute(file, root, "stage");
    state.phase = read_string_attribute(file, root, "phase");
    state.epoch = read_int_attribute(file, root, "epoch");
    state.step = read_int_attribute(file, root, "step");
    state.global_step = read_int_attribute(file, root, "global_step");
    const std::string header = read_string_attribute(file, root, "header_fingerprint");
    const std::string actual = Writer::header_fingerprint(state);
    if (header != actual)
      fail(root, "fingerprint mismatch of the root attributes: stored " + header + ", attributes give " + actual +
                     " (the stored bytes are damaged)");
    if (state.world_size < 1) fail(root, "attribute 'world_size' is " + std::to_string(state.world_size));
    for (auto [name, value] : {std::pair<const char*, int64_t>{"stage", state.stage},
                               {"epoch", state.epoch}, {"step", state.step}, {"global_step", state.global_step}})
      if (value < 0) fail(root, std::string("attribute '") + name + "' is negative (" + std::to_string(value) + ")");

    {
      Handle config = open_child(file, "config", "/config", H5I_DATASET);
      state.config_text = read_text(config.get(), "/config");
    }
    {
      Handle accuracy = open_child(file, "accuracy", "/accuracy", H5I_GROUP);
      Handle initial_set = open_child(accuracy.get(), "initial", "/accuracy/initial", H5I_DATASET);
      const torch::Tensor initial = read_tensor(initial_set.get(), "/accuracy/initial");
      if (initial.scalar_type() != torch::kFloat64 || initial.dim() != 1)
        fail("/accuracy/initial", "dtype " + dtype_name(initial.scalar_type()) + " shape " +
                                      shape_text(initial.sizes()) + ", expected a 1-D float64 array");
      state.accuracy_initial.assign(initial.data_ptr<double>(), initial.data_ptr<double>() + initial.numel());
      Handle stages_set = open_child(accuracy.get(), "stages", "/accuracy/stages", H5I_DATASET);
      const torch::Tensor stages = read_tensor(stages_set.get(), "/accuracy/stages");
      if (stages.scalar_type() != torch::kFloat64 || stages.dim() != 2)
        fail("/accuracy/stages", "dtype " + dtype_name(stages.scalar_type()) + " shape " +
                                     shape_text(stages.sizes()) + ", expected a 2-D float64 array");
      for (int64_t r = 0; r < stages.size(0); ++r) {
        const double* row = stages.data_ptr<double>() + r * stages.size(1);
        state.accuracy_stages.emplace_back(row, row + stages.size(1));
      }
    }
    auto tensor_reader = [this](hid_t dataset, const std::string& object) { return read_tensor(dataset, object); };
    auto text_reader = [this](hid_t dataset, const std::string& object) { return read_text(dataset, object); };
    state.model = read_named_group<torch::Tensor>(file, "model", tensor_reader);
    state.optimizer = read_named_group<torch::Tensor>(file, "optimizer", tensor_reader);
    state.strategy = read_named_group<torch::Tensor>(file, "strategy", tensor_reader);
    state.strategy_text = read_named_group<std::string>(file, "strategy_text", text_reader);
    const NamedTensors ranks = read_named_group<torch::Tensor>(file, "ranks", tensor_reader);
    for (size_t rank = 0; rank < ranks.size(); ++rank) {
      const auto& [name, tensor] = ranks[rank];
      const std::string object = "/ranks/" + checkpoint_link_name(name);
      if (name != std::to_string(rank))
        fail(object, "entry " + std::to_string(rank) + " of /ranks is named '" + name + "', expected '" +
                         std::to_string(rank) + "'");
      if (tensor.scalar_type() != torch::kUInt8 || tensor.dim() != 1)
        fail(object, "dtype " + dtype_name(tensor.scalar_type()) + " shape " + shape_text(tensor.sizes()) +
                         ", expected a 1-D uint8 array");
      state.rank_states.emplace_back(static_cast<const char*>(tensor.data_ptr()), static_cast<size_t>(tensor.numel()));
    }
    return state;
  }

 private:
  std::string path_;
  uint64_t file_size_;
};

Handle file_access_properties(const std::string& path) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.valid()) throw CheckpointError(path, "/", with_detail("cannot create file access properties"));
  // Objects still open when the file is closed are closed with it.
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  // Readable by HDF5 1.8 and later; allows attributes over 64 KiB (dense storage).
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_V18);
#if H5_VERSION_GE(1, 10, 7)
  // Files are published by rename and never modified afterwards, so HDF5's
  // own file locks add nothing, and they fail on some parallel file systems.
  H5Pset_file_locking(fapl.get(), false, true);
#endif
  return fapl;
}

// The file is built in memory (HDF5's core driver, no backing store) and
// written out by write_file_atomically, so the only file I/O of a checkpoint
// write is that one checked write. HDF5's own writes to disk cannot be made
// safe on failure: when the disk filled during H5Dwrite, H5Fclose failed to
// flush, left the file half-closed inside the library, and the process later
// crashed in HDF5's exit handler (signal 11).
//
// The core driver keeps the file in one buffer, allocated through these
// callbacks; when the file is closed, image_free hands the buffer over
// instead of freeing it, so the finished file (superblock marked closed) is
// written without a copy. (H5Fget_file_image would copy it, and in HDF5
// 1.10.8 it clears the superblock's open flags without updating its
// checksum, so the copy does not open again.)
struct CoreImage {
  char* live = nullptr;   // the file's buffer: what the last resize returned
  size_t capacity = 0;
  char* bytes = nullptr;  // the buffer, once handed over at close (ours to free)
  CoreImage() = default;
  CoreImage(const CoreImage&) = delete;
  CoreImage& operator=(const CoreImage&) = delete;
  ~CoreImage() { std::free(bytes); }
};

// HDF5 also allocates and frees through these callbacks when it first tries
// to open an existing file of that name (H5Fcreate's check for an open
// file), so only the buffer of the file's own resizes is handed over.
void* image_malloc(size_t size, H5FD_file_image_op_t operation, void* udata) {
  void* memory = std::malloc(size);
  if (operation == H5FD_FILE_IMAGE_OP_FILE_RESIZE && memory != nullptr) {
    static_cast<CoreImage*>(udata)->live = static_cast<char*>(memory);
    static_cast<CoreImage*>(udata)->capacity = size;
  }
  return memory;
}
void* image_memcpy(void* dest, const void* src, size_t size, H5FD_file_image_op_t, void*) {
  return std::memcpy(dest, src, size);
}
void* image_realloc(void* memory, size_t size, H5FD_file_image_op_t operation, void* udata) {
  void* resized = std::realloc(memory, size);
  if (operation == H5FD_FILE_IMAGE_OP_FILE_RESIZE && resized != nullptr) {
    static_cast<CoreImage*>(udata)->live = static_cast<char*>(resized);
    static_cast<CoreImage*>(udata)->capacity = size;
  }
  return resized;
}
herr_t image_free(void* memory, H5FD_file_image_op_t operation, void* udata) {
  auto* image = static_cast<CoreImage*>(udata);
  if (operation == H5FD_FILE_IMAGE_OP_FILE_CLOSE && memory != nullptr && memory == image->live &&
      image->bytes == nullptr)
    image->bytes = static_cast<char*>(memory);
  else
    std::free(memory);
  return 0;
}
void* image_udata_copy(void* udata) { return udata; }  // one CoreImage, owned by the writer
herr_t image_udata_free(void*) { return 0; }

Handle memory_file_properties(const std::string& path, const CheckpointState& state, CoreImage* image) {
  Handle fapl = file_access_properties(path);
  uint64_t bytes = 1 << 20;  // attributes, names, B-trees: far below 1 MiB for thousands of tensors
  for (const NamedTensors* group : {&state.model, &state.optimizer, &state.strategy})
    for (const auto& [name, tensor] : *group)
      if (tensor.defined()) bytes += static_cast<uint64_t>(tensor.numel()) * tensor.element_size() + name.size();
  for (const std::string& rank_state : state.rank_states) bytes += rank_state.size();
  // One allocation of the whole file (each growth would copy what is there).
  if (H5Pset_fapl_core(fapl.get(), static_cast<size_t>(bytes), false) < 0)
    throw CheckpointError(path, "/", with_detail("cannot select HDF5's in-memory file driver"));
  H5FD_file_image_callbacks_t callbacks = {image_malloc, image_memcpy,     image_realloc, image_free,
                                           image_udata_copy, image_udata_free, image};
  if (H5Pset_file_image_callbacks(fapl.get(), &callbacks) < 0)
    throw CheckpointError(path, "/", with_detail("cannot set the in-memory file's callbacks"));
  return fapl;
}

// Builds the checkpoint file in memory; returns its size (bytes in `image`).
size_t build_checkpoint_image(const std::string& path, const CheckpointState& state, CoreImage* image) {
  Handle fapl = memory_file_properties(path, state, image);
  // Named as the temporary file will be: H5Fcreate first tries to open an
  // existing file of that name, and would read a whole earlier checkpoint.
  const std::string name = temporary_path(path);
  Handle file(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
  if (!file.valid()) throw CheckpointError(path, "/", with_detail("cannot create the file in memory"));
  Writer(path).write_all(file.get(), state);
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) throw CheckpointError(path, "/", with_detail("cannot flush"));
  const ssize_t size = H5Fget_file_image(file.get(), nullptr, 0);  // the size only: nothing is copied
  if (size <= 0) throw CheckpointError(path, "/", with_detail("cannot read the file's size"));
  if (!file.close()) throw CheckpointError(path, "/", with_detail("cannot close the file in memory"));
  if (image->bytes == nullptr || image->capacity < static_cast<size_t>(size))
    throw CheckpointError(path, "/", "HDF5 did not hand over the file's memory at close");
  return static_cast<size_t>(size);
}

}  // namespace

std::string checkpoint_link_name(const std::string& name) {
  if (name == ".") return "%2E";
  std::string link;
  for (char c : name) {
    if (c == '%')
      link += "%25";
    else if (c == '/')
      link += "%2F";
    else
      link += c;
  }
  return link;
}

void write_checkpoint(const std::string& path, const CheckpointState& state) {
  CoreImage image;
  size_t size = 0;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    quiet_hdf5();
    try {
      size = build_checkpoint_image(path, state, &image);
    } catch (...) {
      H5Eclear2(H5E_DEFAULT);
      throw;
    }
  }
  write_file_atomically(path, std::string_view(image.bytes, size));
}

CheckpointState read_checkpoint(const std::string& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (error || !fs::exists(status)) throw CheckpointError(path, "/", "cannot open: no such file");
  if (!fs::is_regular_file(status)) throw CheckpointError(path, "/", "cannot open: not a regular file");
  const uint64_t file_size = fs::file_size(path, error);
  if (error) throw CheckpointError(path, "/", "cannot read the file size: " + error.message());

  std::lock_guard<std::mutex> lock(hdf5_mutex());
  quiet_hdf5();
  Handle fapl = file_access_properties(path);
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!file.valid()) {
    const std::string detail = hdf5_detail();
    std::string reason;
    if (detail.find("signature") != std::string::npos)
      reason = "not an HDF5 file (no HDF5 signature found)";
    else if (detail.find("truncated") != std::string::npos)
      reason = "truncated file (HDF5: " + detail + ")";
    else
      reason = "cannot open as an HDF5 file" + (detail.empty() ? std::string() : " (HDF5: " + detail + ")");
    throw CheckpointError(path, "/", reason);
  }
  try {
    Reader reader(path, file_size);
    CheckpointState state = reader.read_all(file.get());
    return state;
  } catch (...) {
    H5Eclear2(H5E_DEFAULT);
    throw;
  }
}

void check_tensors_match(const std::string& path, const std::string& group, const NamedTensors& stored,
                         const NamedTensors& expected) {
  std::string prefix = group;
  if (prefix.empty() || prefix[0] != '/') prefix = "/" + prefix;
  while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
  auto object = [&](const std::string& name) { return join_path(prefix, checkpoint_link_name(name)); };

  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, tensor] : stored) by_name.emplace(name, &tensor);
  std::set<std::string> expected_names;
  for (const auto& [name, want] : expected) {
    expected_names.insert(name);
    const auto found = by_name.find(name);
    if (found == by_name.end()) throw CheckpointError(path, object(name), "missing (the model expects it)");
    const torch::Tensor& have = *found->second;
    if (!have.defined()) throw CheckpointError(path, object(name), "undefined tensor");
    if (have.sizes() != want.sizes())
      throw CheckpointError(path, object(name),
                            "shape " + shape_text(have.sizes()) + ", expected " + shape_text(want.sizes()));
    if (have.scalar_type() != want.scalar_type())
      throw CheckpointError(path, object(name), "dtype " + dtype_name(have.scalar_type()) + ", expected " +
                                                    dtype_name(want.scalar_type()));
  }
  for (const auto& [name, tensor] : stored)
    if (!expected_names.count(name)) throw CheckpointError(path, object(name), "not expected (no such tensor here)");
}

// ======================================================================
// CheckpointDirectory

namespace {

// Sequence number of "ckpt-<digits>.h5", or -1.
int64_t checkpoint_sequence(const std::string& name) {
  const std::string head = "ckpt-", tail = ".h5";
  if (name.size() < head.size() + 8 + tail.size() || name.compare(0, head.size(), head) != 0 ||
      name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
    return -1;
  const std::string digits = name.substr(head.size(), name.size() - head.size() - tail.size());
  if (digits.size() > 18) return -1;
  for (char c : digits)
    if (c < '0' || c > '9') return -1;
  return std::stoll(digits);
}

struct CheckpointEntry {
  int64_t sequence;
  std::string name;
  std::string not_a_file;  // empty for a regular file, else what it is ("a directory", ...)
};

std::string describe_non_regular(const fs::file_status& status) {
  switch (status.type()) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::symlink: return "a symbolic link";
    case fs::file_type::not_found: return "a dangling symbolic link";
    case fs::file_type::fifo: return "a named pipe";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::block:
    case fs::file_type::character: return "a device";
    default: return "not a regular file";
  }
}

// Every entry named like a checkpoint, oldest first. An entry that is not a
// regular file (a directory of that name, a dangling link) is listed too: it
// takes its sequence number, so the next checkpoint never collides with it.
std::vector<CheckpointEntry> list_checkpoints(const std::string& directory) {
  std::vector<CheckpointEntry> found;
  std::error_code error;
  fs::directory_iterator it(directory, error);
  if (error) return found;
  for (const fs::directory_entry& entry : it) {
    const std::string name = entry.path().filename().string();
    const int64_t sequence = checkpoint_sequence(name);
    if (sequence < 0) continue;
    std::error_code status_error;
    const fs::file_status status = fs::status(entry.path(), status_error);
    found.push_back({sequence, name, fs::is_regular_file(status) ? "" : describe_non_regular(status)});
  }
  std::sort(found.begin(), found.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.sequence < b.sequence; });
  return found;
}

}  // namespace

CheckpointDirectory::CheckpointDirectory(std::string directory, int keep_last)
    : directory_(std::move(directory)), keep_last_(keep_last) {
  if (directory_.empty()) throw Error("checkpoint directory: empty path");
  if (keep_last_ < 1)
    throw Error("checkpoint directory " + directory_ + ": keep_last must be at least 1, got " +
                std::to_string(keep_last_));
}

std::vector<std::string> CheckpointDirectory::files() const {
  std::vector<std::string> paths;
  for (const CheckpointEntry& entry : list_checkpoints(directory_))
    if (entry.not_a_file.empty()) paths.push_back((fs::path(directory_) / entry.name).string());
  return paths;
}

std::string CheckpointDirectory::save(const CheckpointState& state) {
  std::error_code error;
  fs::create_directories(directory_, error);
  if (error) throw Error("cannot create checkpoint directory " + directory_ + ": " + error.message());
  const auto existing = list_checkpoints(directory_);
  const int64_t sequence = existing.empty() ? 1 : existing.back().sequence + 1;
  char name[64];
  std::snprintf(name, sizeof(name), "ckpt-%08lld.h5", static_cast<long long>(sequence));
  const std::string path = (fs::path(directory_) / name).string();
  if (fs::exists(fs::symlink_status(path, error)))
    throw Error("checkpoint " + path + " already exists; not overwriting it");
  write_checkpoint(path, state);
  write_file_atomically((fs::path(directory_) / "latest").string(), std::string(name) + "\n");

  const std::vector<std::string> all = files();
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < all.size(); ++i)
    if (!fs::remove(all[i], error) && error)
      throw Error("cannot delete old checkpoint " + all[i] + ": " + error.message());
  return path;
}

std::optional<CheckpointState> CheckpointDirectory::load_newest(std::vector<std::string>* problems,
                                                                std::string* loaded_path,
                                                                const CheckpointCheck& check) const {
  const std::vector<CheckpointEntry> entries = list_checkpoints(directory_);
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const std::string path = (fs::path(directory_) / it->name).string();
    try {
      if (!it->not_a_file.empty()) throw CheckpointError(path, "/", "not a regular file (" + it->not_a_file + ")");
      CheckpointState state = read_checkpoint(path);
      if (check) check(path, state);
      if (loaded_path) *loaded_path = path;
      return state;
    } catch (const CheckpointError& error) {
      if (problems) problems->push_back(error.what());
    }
  }
  return std::nullopt;
}

}  // namespace clx
