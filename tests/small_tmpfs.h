#pragma once
// A small tmpfs mounted for one test: a file system that fills up, to test
// what a full disk does to a write. Mounting needs CAP_SYS_ADMIN (root, as
// on the CI machine); where it is refused, the test is skipped with that
// reason.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace clx::testing_support {

class SmallTmpfs {
 public:
  // Mounts a tmpfs of `bytes` at `where` (created if missing).
  SmallTmpfs(const std::filesystem::path& where, size_t bytes) : where_(where) {
    std::filesystem::create_directories(where_);
    const std::string options = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", where_.c_str(), "tmpfs", 0, options.c_str()) == 0)
      mounted_ = true;
    else
      why_not_ = std::string("cannot mount a tmpfs to fill up (") + std::strerror(errno) +
                 "): needs root or CAP_SYS_ADMIN";
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  ~SmallTmpfs() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& why_not() const { return why_not_; }
  const std::filesystem::path& path() const { return where_; }

 private:
  std::filesystem::path where_;
  bool mounted_ = false;
  std::string why_not_;
};

}  // namespace clx::testing_support

// Skips the current test when the tmpfs could not be mounted.
#define CLX_REQUIRE_TMPFS(tmpfs) \
  if (!(tmpfs).mounted()) GTEST_SKIP() << (tmpfs).why_not()
