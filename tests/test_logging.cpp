// Unit tests of the training logs (runtime/logging.h): the time-left estimates and checked log writes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/file_io.h"
#include "runtime/logging.h"

namespace {

TEST(SequenceClock, EstimatesFromEpochsThenFromCompletedStages) {
  clx::SequenceClock clock(3);
  clock.start_stage(0, 4, 0, 0.0);
  EXPECT_EQ(clock.stage_left(0.0), std::nullopt);
  EXPECT_EQ(clock.describe(0.0), "");
  clock.epoch_done(1, 2.0);  // 2 s per epoch, 3 epochs left, nothing known after the epochs yet
  EXPECT_DOUBLE_EQ(*clock.stage_left(2.0), 6.0);
  EXPECT_DOUBLE_EQ(*clock.sequence_left(2.0), 6.0 + 2 * 8.0);
  clock.epoch_done(2, 6.0);  // now 3 s per epoch
  EXPECT_DOUBLE_EQ(*clock.stage_left(6.0), 6.0);
  clock.epoch_done(3, 9.0);
  clock.epoch_done(4, 12.0);
  clock.main_training_done(12.0);
  EXPECT_EQ(clock.stage_left(13.0), std::nullopt);  // pruning/importance: no stage timed yet
  clock.stage_done(true, 20.0);                     // 20 s in all, 8 s after the epochs

  clock.start_stage(1, 4, 0, 20.0);
  clock.epoch_done(1, 23.0);
  EXPECT_DOUBLE_EQ(*clock.stage_left(23.0), 3 * 3.0 + 8.0);
  EXPECT_DOUBLE_EQ(*clock.sequence_left(23.0), 17.0 + 20.0);
  EXPECT_EQ(clock.describe(23.0), "task ~17.0s left, sequence ~37.0s left");
  clock.epoch_done(4, 32.0);
  clock.main_training_done(32.0);
  EXPECT_DOUBLE_EQ(*clock.stage_left(35.0), 5.0);  // 8 s after the epochs, 3 s of them gone
  clock.stage_done(true, 40.0);

  // A resumed stage: two of four epochs were done before; its time is no sample.
  clock.start_stage(2, 4, 2, 100.0);
  clock.epoch_done(3, 103.0);
  EXPECT_DOUBLE_EQ(*clock.stage_left(103.0), 3.0 + 8.0);
  EXPECT_EQ(clock.describe(103.0), "task ~11.0s left, sequence ~11.0s left");
}

}  // namespace

namespace {

// A log that cannot be written (a full disk) is an error naming the file,
// never lines silently lost.
TEST(Logger, AFailedLogWriteIsAnError) {
  clx::Logger log(0, "/dev/full", "off");
  try {
    log.info("epoch 1 done");
    ADD_FAILURE() << "no error for a log on a full device";
  } catch (const clx::FileError& error) {
    EXPECT_NE(std::string(error.what()).find("cannot write /dev/full: No space left on device"), std::string::npos)
        << error.what();
  }
}

// A run opens train.log only once its start is accepted; the lines logged
// before are kept and written first.
TEST(Logger, KeptLinesGoFirstIntoTheFileOpenedLater) {
  const std::string path = std::filesystem::temp_directory_path() / ("clx_test_log_" + std::to_string(::getpid()));
  std::filesystem::remove(path);
  {
    clx::Logger log(0, "", "off");
    log.keep_lines_for_file();
    log.info("first");
    EXPECT_FALSE(std::filesystem::exists(path));
    log.write_to_file(path);
    log.info("second");
  }
  std::ifstream file(path);
  std::string line1, line2, rest;
  std::getline(file, line1);
  std::getline(file, line2);
  EXPECT_FALSE(std::getline(file, rest));
  EXPECT_EQ(line1.substr(line1.find("] ") + 2), "first");
  EXPECT_EQ(line2.substr(line2.find("] ") + 2), "second");
  std::filesystem::remove(path);
}

}  // namespace
