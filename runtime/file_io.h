#pragma once
// Checked file writes and reads. Every file the project writes (results,
// CSVs, config.ini, the checkpoint `latest` pointer, sweep records, report
// outputs, logs) goes through here, so that a full disk, a read-only folder or
// a quota is an error naming the path and the OS reason, never a silently
// empty file and exit 0.
//
// Whole files are written atomically: to "<path>.tmp-<pid>" in the same
// folder, every write(2) checked, fsync, close (checked too: NFS reports
// write-back errors there), rename over `path`, fsync of the folder. A reader
// sees the old file or the new one, never half of one; on failure the
// temporary is removed and `path` is unchanged.
//
// No LibTorch here: the sweep links this without the runtime.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/error.h"

namespace clx {

// "cannot write PATH: No space left on device" and the like.
class FileError : public Error {
 public:
  using Error::Error;
};

// Writes `content` to `path` atomically (see above). Throws FileError naming
// `path` and strerror. A `path` that exists as a symbolic link, a device or
// a pipe is written through in place (checked, not atomic), so that the link
// or the device node itself is never replaced.
void write_file_atomically(const std::string& path, std::string_view content);

// Reads the whole regular file at `path`. Throws FileError ("cannot open
// PATH: Permission denied", "cannot read PATH: is a directory") for a
// missing, unreadable or non-regular file.
std::string read_text_file(const std::string& path);

// fsyncs the folder holding `path`'s entry (after a rename), ignoring file
// systems that cannot fsync a directory. Throws FileError naming `path`.
void fsync_parent_directory(const std::string& path);

// An open file written by checked appends: a log. Each append is written at
// once (write(2), no user-space buffer), so a crash loses no line that
// append returned for; a failed write throws FileError naming the file.
class AppendFile {
 public:
  AppendFile() = default;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  ~AppendFile();
  void open(const std::string& path);  // creates it when missing; throws FileError
  bool is_open() const { return fd_ >= 0; }
  void append(std::string_view text);
  void close();  // checked; also done (unchecked) by the destructor
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// The temporary name write_file_atomically and the checkpoint writer use
// for `path` in this process: "<path>.tmp-<pid>".
std::string temporary_path(const std::string& path);

// Removes temporary files ("<name>.tmp-<pid>") left in `directory` by
// writers that were killed. Call it only while
// holding the folder's run lock (runtime/run_lock.h): every writer of a run
// folder holds that lock, so any temporary present then belongs to a process
// that has ended. As a second guard, a file whose pid is a live process on
// this host other than this one is kept. Returns "name (reason)" for each
// file removed; a file that cannot be removed throws FileError.
std::vector<std::string> remove_stale_temporaries(const std::string& directory);

}  // namespace clx
