#pragma once
// HDF5 checkpoints (DESIGN.md section 6). One self-describing file per
// checkpoint; the exact layout is documented in docs/checkpoint_format.md so
// that h5dump or h5py can read a checkpoint without the framework.
//
// Every dataset carries a 64-bit XXH64 fingerprint (runtime/fingerprint.h)
// of its contents, checked on reading: HDF5 itself does not notice flipped
// bytes inside raw data. All HDF5 calls made by this module are serialised
// by one mutex (serial HDF5 is not thread-safe).
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/error.h"
#include "runtime/named_tensors.h"

namespace clx {

// Version 2: dataset fingerprints are XXH64. Version 1 (FNV-1a fingerprints,
// otherwise the same layout) is refused with a message saying so: a
// checkpoint serves to resume a run with the build that wrote it.
inline constexpr int64_t kCheckpointFormatVersion = 2;
inline constexpr int64_t kOldestReadableCheckpointFormatVersion = 2;

// A checkpoint that cannot be read or does not match what is expected. The
// message names the file and the HDF5 object ("/model/trunk.1.weight", or
// "/" for the file itself).
class CheckpointError : public Error {
 public:
  CheckpointError(const std::string& path, const std::string& object, const std::string& reason);
  const std::string& path() const { return path_; }
  const std::string& object() const { return object_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string path_, object_, reason_;
};


struct CheckpointState {
  int64_t format_version = kCheckpointFormatVersion;
  std::string config_text;  // effective configuration ("key = value" lines)
  int64_t world_size = 1;
  int64_t stage = 0;         // stage index being trained (0-based)
  std::string phase;         // the trainer's: training, after_task, between_tasks (StagePhase); FID feature files: their own
  int64_t epoch = 0;         // sampler epoch within the stage
  int64_t step = 0;          // batches done within the epoch
  int64_t global_step = 0;   // optimizer steps within the stage
  NamedTensors model;        // parameters and buffers by name
  NamedTensors optimizer;    // optimizer state tensors by name
  NamedTensors strategy;     // strategy tensors by name (names may contain '.')
  std::vector<std::pair<std::string, std::string>> strategy_text;  // small string-valued fields
  std::vector<std::vector<double>> accuracy_stages;                // accuracy matrix rows so far
  std::vector<double> accuracy_initial;
  std::vector<std::string> rank_states;  // one opaque byte string per rank, index = rank
};

// Supported tensor dtypes: float32, float64, float16, bfloat16, int64, int32,
// int16, int8, uint8, bool (any device; stored as contiguous CPU copies).
// Names must be non-empty and unique within their group; text values
// (config, phase, strategy_text) must not contain NUL bytes.
//
// Builds the file in memory and publishes it with write_file_atomically
// (runtime/file_io.h): "<path>.tmp-<pid>", every write checked, fsync,
// rename to `path`, fsync of the folder. Throws clx::Error naming the file
// and the reason (the HDF5 object, or the OS error such as "No space left on
// device") on any failure; never leaves a partial file at `path`, and leaves
// no HDF5 object open.
void write_checkpoint(const std::string& path, const CheckpointState& state);

// Reads and validates every object (presence, type, rank, fingerprint,
// format_version). Throws CheckpointError naming the file and the object.
// Tensors come back on the CPU.
CheckpointState read_checkpoint(const std::string& path);

// Checks that `stored` (e.g. CheckpointState::model) holds exactly the names,
// shapes and dtypes of `expected` (e.g. the live model's named parameters and
// buffers). `group` is the HDF5 group the tensors came from ("/model").
// Throws CheckpointError naming the file and the first mismatching tensor,
// e.g. "/model/x: shape [3, 4], expected [4, 4]".
void check_tensors_match(const std::string& path, const std::string& group, const NamedTensors& stored,
                         const NamedTensors& expected);

// The HDF5 link name used for a tensor or text name: '%' -> "%25", '/' -> "%2F",
// and the name "." -> "%2E". Other names are used as they are.
std::string checkpoint_link_name(const std::string& name);

// Checks a checkpoint that read correctly against what the run needs (e.g.
// the live model's tensors). Throws CheckpointError for a defect of this
// file, which makes load_newest fall back to the previous one, and any other
// exception to refuse the resume outright (e.g. another configuration).
using CheckpointCheck = std::function<void(const std::string& path, const CheckpointState& state)>;

// A checkpoint directory: files "ckpt-<8-digit sequence>.h5" plus a text file
// "latest" holding the newest complete file name (written atomically with
// write_file_atomically). Never overwrites an existing checkpoint file in
// place. Only one process may save into a directory at a time (the run
// folder's lock, runtime/folder_lock.h, guarantees it).
class CheckpointDirectory {
 public:
  CheckpointDirectory(std::string directory, int keep_last);  // keep_last >= 1
  // Writes the next checkpoint, updates "latest", then deletes the oldest
  // beyond keep_last. Returns the path. Creates the directory if needed.
  std::string save(const CheckpointState& state);
  // Newest checkpoint that reads, validates and passes `check`. Each entry
  // skipped on the way (damaged, failing `check`, or a name that is not a
  // regular file, such as a directory ckpt-00000003.h5) appends its reason,
  // naming the file and the object, to `problems`; std::nullopt if none is
  // usable. `loaded_path`, if given, receives the path of the checkpoint
  // returned.
  std::optional<CheckpointState> load_newest(std::vector<std::string>* problems = nullptr,
                                             std::string* loaded_path = nullptr,
                                             const CheckpointCheck& check = nullptr) const;
  // Existing checkpoint files (full paths, regular files only), oldest first.
  // Entries of a checkpoint's name that are not regular files still take
  // their sequence number: the next save numbers past them.
  std::vector<std::string> files() const;
  const std::string& directory() const { return directory_; }
  int keep_last() const { return keep_last_; }

 private:
  std::string directory_;
  int keep_last_;
};

}  // namespace clx
