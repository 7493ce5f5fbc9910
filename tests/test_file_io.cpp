// Unit tests of the checked file writes (runtime/file_io.h), the folder lock
// (runtime/folder_lock.h) and the text helpers (runtime/text.h): a full disk,
// a directory where a file is expected, a second holder of a run folder.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/file_io.h"
#include "runtime/folder_lock.h"
#include "runtime/text.h"
#include "tests/expect_error.h"
#include "tests/small_tmpfs.h"
#include "tests/temp_dir_test.h"

namespace {

namespace fs = std::filesystem;
using clx::testing_support::expect_error;

std::string read_all(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class FileIoTest : public clx::testing_support::TempDirTest {
 protected:
  FileIoTest() : TempDirTest("clx_test_file_io_") {}
};

TEST_F(FileIoTest, WritesAtomicallyAndLeavesNoTemporary) {
  const fs::path file = path("results.json");
  clx::write_file_atomically(file.string(), "first\n");
  clx::write_file_atomically(file.string(), "second\n");
  EXPECT_EQ(read_all(file), "second\n");
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"results.json"});
}

// The defect: results were written through an unchecked stream, so a full
// disk gave exit 0 and empty files. Now the write fails naming the file and
// the OS reason, the earlier file is kept whole and no temporary is left.
TEST_F(FileIoTest, FullDiskIsAnErrorNamingTheFileAndKeepsTheOldFile) {
  clx::testing_support::SmallTmpfs disk(path("disk"), 64 * 1024);
  CLX_REQUIRE_TMPFS(disk);
  const fs::path file = disk.path() / "metrics.csv";
  clx::write_file_atomically(file.string(), "metric,value\nacc,0.9\n");
  expect_error<clx::FileError>([&] { clx::write_file_atomically(file.string(), std::string(256 * 1024, 'x')); },
                               {"cannot write " + file.string(), "No space left on device"});
  EXPECT_EQ(read_all(file), "metric,value\nacc,0.9\n");
  EXPECT_EQ(names_in(disk.path()), std::vector<std::string>{"metrics.csv"});
}

// A link (or a device: report --csv /dev/stdout) is written through, never
// replaced by a file of its name.
TEST_F(FileIoTest, WritesThroughLinksAndDevices) {
  std::ofstream(path("target.csv")) << "old\n";
  fs::create_symlink(path("target.csv"), path("link.csv"));
  clx::write_file_atomically(path("link.csv").string(), "new\n");
  EXPECT_TRUE(fs::is_symlink(path("link.csv")));
  EXPECT_EQ(read_all(path("target.csv")), "new\n");
  fs::create_symlink("/dev/null", path("null.csv"));
  clx::write_file_atomically(path("null.csv").string(), "discarded\n");
  EXPECT_TRUE(fs::is_symlink(path("null.csv")));
  EXPECT_EQ(names_in(dir_), (std::vector<std::string>{"link.csv", "null.csv", "target.csv"}));
}

TEST_F(FileIoTest, MissingFolderIsAnErrorNamingTheFile) {
  const fs::path file = path("no/such/folder/config.ini");
  expect_error<clx::FileError>([&] { clx::write_file_atomically(file.string(), "x"); },
                               {"cannot write " + file.string(), "No such file or directory"});
}

TEST_F(FileIoTest, AppendFileReportsAFailedWrite) {
  clx::AppendFile log;
  log.open(path("train.log").string());
  log.append("one\n");
  log.append("two\n");
  log.close();
  EXPECT_EQ(read_all(path("train.log")), "one\ntwo\n");
  // /dev/full accepts the open and fails every write with ENOSPC.
  clx::AppendFile full;
  full.open("/dev/full");
  expect_error<clx::FileError>([&] { full.append("a line\n"); }, {"cannot write /dev/full", "No space left on device"});
}

TEST_F(FileIoTest, ReadTextFileRefusesWhatIsNoRegularFile) {
  std::ofstream(path("a.ini")) << "[train]\nepochs = 2\n";
  EXPECT_EQ(clx::read_text_file(path("a.ini").string()), "[train]\nepochs = 2\n");
  fs::create_directories(path("folder.ini"));
  expect_error<clx::FileError>([&] { clx::read_text_file(path("folder.ini").string()); },
                               {"cannot read " + path("folder.ini").string() + ": is a directory"});
  ASSERT_EQ(::mkfifo(path("pipe.ini").c_str(), 0644), 0);
  expect_error<clx::FileError>([&] { clx::read_text_file(path("pipe.ini").string()); },
                               {path("pipe.ini").string() + ": not a regular file"});
  expect_error<clx::FileError>([&] { clx::read_text_file(path("missing.ini").string()); },
                               {"cannot open " + path("missing.ini").string() + ": No such file or directory"});
}

// A process that has ended: a child that exits at once, reaped.
pid_t ended_process() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

TEST_F(FileIoTest, RemovesTemporariesOfEndedWritersOnly) {
  const std::string dead = std::to_string(ended_process());
  const std::string self = std::to_string(::getpid());
  const std::string alive = std::to_string(::getppid());  // the test runner's parent: alive, not us
  for (const std::string& name : std::vector<std::string>{"ckpt-00000002.h5.tmp-" + dead, "results.json.tmp-" + self,
                                                         "ckpt-00000003.h5.tmp-" + alive, "ckpt-00000001.h5",
                                                         "notes.tmp", "notes.tmp-x"})
    std::ofstream(path(name)) << "x";
  fs::create_directories(path("folder.tmp-" + dead));  // not a file: not ours
  std::vector<std::string> removed = clx::remove_stale_temporaries(dir_.string());
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{
                         "ckpt-00000002.h5.tmp-" + dead + " (its writer, process " + dead + ", has ended)",
                         "results.json.tmp-" + self + " (left by an earlier process with this pid)"}));
  EXPECT_EQ(names_in(dir_), (std::vector<std::string>{"ckpt-00000001.h5", "ckpt-00000003.h5.tmp-" + alive,
                                                      "folder.tmp-" + dead, "notes.tmp", "notes.tmp-x"}));
}

TEST_F(FileIoTest, FolderLockIsExclusiveAndNamesItsHolder) {
  const std::string lock_path = path(".lock").string();
  {
    clx::FolderLock first(lock_path, "train (2 rank(s))");
    EXPECT_TRUE(first.held());
    // A second lock of the same file (here in the same process: open file
    // description locks conflict with every other open) is refused at once.
    char host[256] = {0};
    ::gethostname(host, sizeof(host) - 1);
    expect_error<clx::FolderLockedError>(
        [&] { clx::FolderLock second(lock_path, "train (1 rank(s))"); },
        {lock_path + " is held by train (2 rank(s)) on host " + host + ", pid " + std::to_string(::getpid()) +
         ", started "});
    // And from another process, which is what two runs are.
    const pid_t child = ::fork();
    if (child == 0) {
      try {
        clx::FolderLock other(lock_path, "other");
        ::_exit(0);
      } catch (const clx::FolderLockedError&) {
        ::_exit(7);
      } catch (...) {
        ::_exit(8);
      }
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 7) << "the other process took the lock, or failed otherwise";
  }
  // Released with its holder: the next run takes it.
  clx::FolderLock again(lock_path, "train");
  EXPECT_TRUE(again.held());
}

// A lock whose file was deleted, or deleted and made anew (what a second run
// would do in a folder removed under the first), no longer guards the folder.
TEST_F(FileIoTest, FolderLockFindsItsFileRemovedOrReplaced) {
  const std::string lock_path = path(".lock").string();
  clx::FolderLock lock(lock_path, "train");
  lock.check_in_place();  // untouched: fine
  std::filesystem::remove(lock_path);
  expect_error<clx::FileError>([&] { lock.check_in_place(); },
                               {"the lock file " + lock_path + " was removed while this process held it",
                                "two runs never write into one folder"});
  clx::FolderLock second(lock_path, "train");  // the file is new: a second run can take it
  second.check_in_place();
  expect_error<clx::FileError>([&] { lock.check_in_place(); }, {lock_path + " was replaced by another file"});
}

TEST_F(FileIoTest, FolderLockInAMissingFolderIsAFileError) {
  expect_error<clx::FileError>([&] { clx::FolderLock lock(path("missing/.lock").string(), "train"); },
                               {"cannot open the lock file " + path("missing/.lock").string()});
}

TEST(Text, ValidatesUtf8) {
  EXPECT_TRUE(clx::is_valid_utf8("fashion-mnist"));
  EXPECT_TRUE(clx::is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  size_t offset = 99;
  EXPECT_FALSE(clx::is_valid_utf8("caf\xe9", &offset));  // Latin-1
  EXPECT_EQ(offset, 3u);
  EXPECT_FALSE(clx::is_valid_utf8("\xc0\xaf", &offset));          // overlong '/'
  EXPECT_FALSE(clx::is_valid_utf8("\xed\xa0\x80", &offset));      // a surrogate
  EXPECT_FALSE(clx::is_valid_utf8("\xf4\x90\x80\x80", &offset));  // above U+10FFFF
  EXPECT_FALSE(clx::is_valid_utf8("ab\xe2\x82", &offset));        // cut short
  EXPECT_EQ(offset, 2u);
}

TEST(Text, FirstDifferingLine) {
  EXPECT_EQ(clx::first_differing_line("a = 1\nb = 2\n", "a = 1\nb = 2\n"), std::nullopt);
  EXPECT_EQ(clx::first_differing_line("a = 1\nb = 2\n", "a = 1\nb = 3\n"),
            std::make_optional(std::make_pair(std::string("b = 2"), std::string("b = 3"))));
  EXPECT_EQ(clx::first_differing_line("a = 1\n", "a = 1\nc = 4\n"),
            std::make_optional(std::make_pair(std::string("<missing>"), std::string("c = 4"))));
}

}  // namespace
