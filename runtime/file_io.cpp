#include "runtime/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace clx {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& what, const std::string& path, int error) {
  throw FileError("cannot " + what + " " + path + ": " + std::strerror(error));
}

// write(2) until everything is written or it fails (short writes and EINTR
// are retried). Returns 0 or the errno of the failure.
//
// Large files go in 8 MiB pieces, each followed by a request to start
// writing the file's dirty pages to the disk (Linux sync_file_range), so
// that the final fsync waits only for the last piece: left alone, the kernel
// starts only once dirty pages reach a share of the memory (10 % by default,
// gigabytes), i.e. never for one checkpoint. Worth about 15 % of the write
// time of a 190 MB checkpoint (measured when checkpoints were written by
// HDF5 itself).
int write_all(int fd, std::string_view bytes) {
  constexpr size_t kPiece = size_t{8} << 20;
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), std::min(bytes.size(), kPiece));
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    // A write that accepts nothing on a regular file means no space.
    if (written == 0) return ENOSPC;
    bytes.remove_prefix(static_cast<size_t>(written));
#ifdef SYNC_FILE_RANGE_WRITE
    // Best effort: if it fails, the final fsync writes everything.
    if (!bytes.empty()) ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
  }
  return 0;
}

// Whether `name` is "<something>.tmp-<digits>"; `pid` receives the digits.
bool temporary_name(const std::string& name, long* pid) {
  const size_t mark = name.rfind(".tmp-");
  if (mark == std::string::npos || mark == 0) return false;
  const std::string digits = name.substr(mark + 5);
  if (digits.empty() || digits.size() > 10) return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  *pid = std::stol(digits);
  return *pid > 0;
}

}  // namespace

std::string temporary_path(const std::string& path) { return path + ".tmp-" + std::to_string(::getpid()); }

void fsync_parent_directory(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("open the folder of", path, errno);
  const int status = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  // Some file systems cannot fsync a directory; the rename is still atomic.
  if (status != 0 && error != EINVAL && error != ENOTSUP && error != EROFS) fail("fsync the folder of", path, error);
}

namespace {

// A path that is a symbolic link, a device or a pipe (a report's --csv
// /dev/stdout, a link to a file elsewhere) is written through, in place:
// renaming a temporary over it would replace the link or the device node
// itself. Every write is checked all the same.
void write_through(const std::string& path, std::string_view content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("write", path, errno);
  int error = write_all(fd, content);
  struct stat info {};
  if (error == 0 && ::fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0) fail("write", path, error);
}

}  // namespace

void write_file_atomically(const std::string& path, std::string_view content) {
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode) && !S_ISDIR(existing.st_mode))
    return write_through(path, content);
  const std::string tmp = temporary_path(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("write", path, errno);
  int error = write_all(fd, content);
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  // close reports write-back errors on NFS; it is checked even after a failure.
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(tmp.c_str());
    fail("write", path, error);
  }
  fsync_parent_directory(path);
}

std::string read_text_file(const std::string& path) {
  // O_NONBLOCK: opening a named pipe must not wait for a writer (it is refused below).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("open", path, errno);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    fail("read", path, error);
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    throw FileError("cannot read " + path + ": " + (S_ISDIR(info.st_mode) ? "is a directory" : "not a regular file"));
  }
  std::string text;
  char buffer[65536];
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      fail("read", path, error);
    }
    if (got == 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  return text;
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::open(const std::string& path) {
  if (fd_ >= 0) close();
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("open", path, errno);
  path_ = path;
}

void AppendFile::append(std::string_view text) {
  if (fd_ < 0) throw FileError("cannot write " + path_ + ": the file is not open");
  if (const int error = write_all(fd_, text)) fail("write", path_, error);
}

void AppendFile::close() {
  if (fd_ < 0) return;
  const int status = ::close(fd_);
  fd_ = -1;
  if (status != 0) fail("write", path_, errno);
}

std::vector<std::string> remove_stale_temporaries(const std::string& directory) {
  std::vector<std::string> removed;
  std::error_code error;
  fs::directory_iterator it(directory, error);
  if (error) return removed;
  for (const fs::directory_entry& entry : it) {
    const std::string name = entry.path().filename().string();
    long pid = 0;
    std::error_code type_error;
    if (!temporary_name(name, &pid) || !entry.is_regular_file(type_error)) continue;
    std::string reason;
    if (pid == ::getpid()) {
      reason = "left by an earlier process with this pid";
    } else if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      reason = "its writer, process " + std::to_string(pid) + ", has ended";
    } else {
      continue;  // a live process of that pid on this host: not ours to remove
    }
    if (::unlink(entry.path().c_str()) != 0 && errno != ENOENT) fail("remove", entry.path().string(), errno);
    removed.push_back(name + " (" + reason + ")");
  }
  return removed;
}

}  // namespace clx
