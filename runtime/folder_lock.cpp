#include "runtime/folder_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "runtime/file_io.h"

namespace clx {
namespace {

// F_OFD_SETLK where it works: the lock belongs to the open file, not to the
// process, so it conflicts with every other open of the file (another
// thread, another FolderLock of this process) and is not dropped when some
// other descriptor of the same file is closed. Where it fails for any reason
// but a conflict (an old kernel, a file system that takes only classic
// locks), a classic POSIX record lock (F_SETLK), which NFS's lock manager has
// always carried; this process opens the lock file nowhere else, so the
// classic lock's release on any close of the file does not arise.
int try_lock(int fd) {
  struct flock request {};
  request.l_type = F_WRLCK;
  request.l_whence = SEEK_SET;
  request.l_start = 0;
  request.l_len = 0;  // the whole file
#ifdef F_OFD_SETLK
  if (::fcntl(fd, F_OFD_SETLK, &request) == 0) return 0;
  if (errno == EAGAIN || errno == EACCES) return errno;
#endif
  return ::fcntl(fd, F_SETLK, &request) == 0 ? 0 : errno;
}

std::string now_text() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[64];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S %z", &local);
  return text;
}

std::string host_name() {
  char name[256] = {0};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown host";
  return name;
}

// What the holder wrote into the lock file (one line).
std::string read_holder(int fd) {
  char buffer[1024];
  const ssize_t got = ::pread(fd, buffer, sizeof(buffer) - 1, 0);
  std::string text = got > 0 ? std::string(buffer, static_cast<size_t>(got)) : std::string();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text.empty() ? "a process that has not yet written its name into the lock file (it is starting)" : text;
}

std::string lock_failure_hint(int error) {
  if (error == ENOLCK || error == ENOSYS || error == EOPNOTSUPP)
    return " (the file system does not provide fcntl locks here: on NFS the lock manager must run, Lustre needs the "
           "flock mount option; see cluster/README.md)";
  return "";
}

}  // namespace

FolderLockedError::FolderLockedError(const std::string& lock_path, const std::string& holder)
    : Error(lock_path + " is held by " + holder), lock_path_(lock_path), holder_(holder) {}

FolderLock::FolderLock(const std::string& lock_path, const std::string& program) : path_(lock_path) {
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int error = errno;
    throw FileError("cannot open the lock file " + lock_path + ": " + std::strerror(error));
  }
  const int error = try_lock(fd);
  if (error == EAGAIN || error == EACCES) {
    const std::string holder = read_holder(fd);
    ::close(fd);
    throw FolderLockedError(lock_path, holder);
  }
  if (error != 0) {
    ::close(fd);
    throw FileError("cannot lock " + lock_path + ": " + std::strerror(error) + lock_failure_hint(error));
  }
  const std::string holder = program + " on host " + host_name() + ", pid " + std::to_string(::getpid()) +
                             ", started " + now_text() + "\n";
  // Checked like every write: a full disk is found here, before the run starts.
  int write_error = 0;
  if (::ftruncate(fd, 0) != 0) write_error = errno;
  if (write_error == 0) {
    const ssize_t written = ::pwrite(fd, holder.data(), holder.size(), 0);
    if (written != static_cast<ssize_t>(holder.size())) write_error = written < 0 ? errno : ENOSPC;
  }
  if (write_error == 0 && ::fsync(fd) != 0) write_error = errno;
  if (write_error != 0) {
    ::close(fd);
    throw FileError("cannot write " + lock_path + ": " + std::strerror(write_error));
  }
  fd_ = fd;
}

FolderLock::FolderLock(FolderLock&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

FolderLock& FolderLock::operator=(FolderLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

void FolderLock::check_in_place() const {
  if (fd_ < 0) return;
  struct stat held {}, at_path {};
  if (::fstat(fd_, &held) != 0) throw FileError("cannot stat the held lock file " + path_ + ": " + std::strerror(errno));
  const bool present = ::stat(path_.c_str(), &at_path) == 0;
  if (present && at_path.st_dev == held.st_dev && at_path.st_ino == held.st_ino) return;
  throw FileError("the lock file " + path_ + " was " + (present ? "replaced by another file" : "removed") +
                  " while this process held it (was its folder deleted or moved?): stopping before writing there, "
                  "so that two runs never write into one folder");
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace clx
