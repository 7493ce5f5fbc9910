#pragma once
// An exclusive lock on a folder for the life of a process: what keeps two
// runs of `train` out of one run folder, and two sweeps out of one sweep
// folder. Rank 0 of a run holds it (launch/train.cpp); the ranks agree on the
// outcome through run_on_all_ranks.
//
// The lock is an fcntl lock on a file in the folder (an open file
// description lock, F_OFD_SETLK, where it works; a classic POSIX record lock
// otherwise). Unlike flock(2), fcntl locks are seen across nodes on NFS
// (through the lock manager, lockd/NFSv4), and on Lustre mounted with
// -o flock, GPFS, BeeGFS with global file locks and CephFS: see
// cluster/README.md. The kernel releases the lock when the process ends,
// however it ends, so a killed run never leaves its folder locked (on NFS,
// once the server notices a dead client, after its lease time).
//
// The holder writes who it is into the lock file (host, pid, start time,
// what it runs), so the process that finds the folder locked can say by whom.
// The lock is as good as its file: check_in_place() finds a lock file that
// was deleted or replaced (a run folder removed under a running job).
#include <string>

#include "runtime/error.h"

namespace clx {

// Another process holds the lock. holder(): "train on host h, pid 123,
// started 2025-01-31 12:00:00 +0100", or a note that the holder is unknown.
class FolderLockedError : public Error {
 public:
  FolderLockedError(const std::string& lock_path, const std::string& holder);
  const std::string& lock_path() const { return lock_path_; }
  const std::string& holder() const { return holder_; }

 private:
  std::string lock_path_, holder_;
};

class FolderLock {
 public:
  FolderLock() = default;
  // Takes the lock on `lock_path` (the file is created when missing) without
  // waiting, and records this process in it as running `program`. Throws
  // FolderLockedError when another process holds it, FileError when the lock
  // cannot be taken (a missing folder, a file system without locks: the
  // message says which).
  FolderLock(const std::string& lock_path, const std::string& program);
  FolderLock(FolderLock&& other) noexcept;
  FolderLock& operator=(FolderLock&& other) noexcept;
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();  // releases the lock; the file stays (it holds no state)

  bool held() const { return fd_ >= 0; }
  // Throws FileError when the lock file at path() is no longer the file this
  // lock holds: removed (the folder deleted or moved) or replaced by another
  // file. A lock on a file that has left its folder protects nothing, so a
  // run checks this before it writes into the folder and stops instead of
  // writing beside a second run that took a new lock there.
  void check_in_place() const;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace clx
