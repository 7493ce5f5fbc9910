// Unit tests of the HDF5 checkpoint files (runtime/checkpoint.h): bit-exact
// round trips, atomic writes, the checkpoint directory (latest, keep_last,
// fallback to the previous file) and every kind of damage a reader must
// report with the file and the HDF5 object it concerns.
#include <gtest/gtest.h>

#include "tests/expect_error.h"
#include "tests/small_tmpfs.h"
#include "tests/temp_dir_test.h"
#include <hdf5.h>
#include <torch/torch.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "runtime/checkpoint.h"
#include "runtime/error.h"
#include "runtime/fingerprint.h"

namespace {

namespace fs = std::filesystem;
using clx::CheckpointState;
using clx::NamedTensors;

template <typename Body>
void expect_checkpoint_error(Body&& body, const std::vector<std::string>& phrases) {
  clx::testing_support::expect_error<clx::CheckpointError>(std::forward<Body>(body), phrases);
}

// Every field set, every supported dtype, 0-dim and empty tensors, names
// that need escaping, binary rank states.
CheckpointState full_state() {
  torch::manual_seed(7);
  CheckpointState state;
  state.config_text = "algorithm = anpyc\nlr = 0.01\ntasks = 5\n";
  state.world_size = 2;
  state.stage = 3;
  state.phase = "pruning";
  state.epoch = 4;
  state.step = 17;
  state.global_step = 1234;
  state.model = {
      {"trunk.0.weight", torch::randn({8, 4})},
      {"trunk.0.bias", torch::randn({8})},
      {"trunk.1.weight", torch::randn({3, 8}).t()},  // non-contiguous input
      {"bn.num_batches_tracked", torch::tensor(42, torch::kInt64)},  // 0-dim
      {"bn.running_mean", torch::randn({8}, torch::kFloat64)},
      {"heads.0.weight", torch::empty({0, 8})},  // empty
  };
  state.optimizer = {
      {"momentum.trunk.0.weight", torch::randn({8, 4})},
      {"step", torch::tensor(9.5)},
  };
  state.strategy = {
      {"mask.trunk.0.weight", torch::rand({8, 4}) > 0.5},  // bool
      {"omega.trunk.0.weight", torch::rand({8, 4})},
      {"counts", torch::randint(0, 1000, {5}, torch::kInt32)},
      {"bytes", torch::randint(0, 256, {2, 3}, torch::kUInt8)},
      {"small", torch::randint(-100, 100, {4}, torch::kInt8)},
      {"medium", torch::randint(-30000, 30000, {4}, torch::kInt16)},
      {"half", torch::randn({3}).to(torch::kFloat16)},
      {"brain", torch::randn({3}).to(torch::kBFloat16)},
      {"flag", torch::tensor(true)},  // 0-dim bool
      {"empty.bool", torch::empty({0}, torch::kBool)},
      {"a/b%c", torch::arange(3)},  // needs escaping
      {".", torch::arange(2)},
  };
  state.strategy_text = {{"hat.mode", "cumulative"}, {"empty", ""}, {"multi", "line one\nline two"}};
  state.accuracy_stages = {{0.9, 0.1, 0.05}, {0.85, 0.92, 0.1}, {0.8, 0.9, 0.95}};
  state.accuracy_initial = {0.1, 0.11, 0.09};
  state.rank_states = {std::string("\x00\x01\x02rng", 6), std::string(), std::string(300, '\xff')};
  return state;
}

void expect_same_tensors(const NamedTensors& got, const NamedTensors& want, const std::string& group) {
  ASSERT_EQ(got.size(), want.size()) << group;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(group + "/" + want[i].first);
    EXPECT_EQ(got[i].first, want[i].first);
    EXPECT_EQ(got[i].second.scalar_type(), want[i].second.scalar_type());
    EXPECT_EQ(got[i].second.sizes(), want[i].second.sizes());
    EXPECT_TRUE(got[i].second.device().is_cpu());
    EXPECT_TRUE(torch::equal(got[i].second, want[i].second.contiguous()));
    // Bit-exact, including NaN payloads and signed zeros.
    EXPECT_EQ(clx::Fingerprint().add(got[i].second).value(), clx::Fingerprint().add(want[i].second).value());
  }
}

void expect_same_state(const CheckpointState& got, const CheckpointState& want) {
  EXPECT_EQ(got.format_version, clx::kCheckpointFormatVersion);
  EXPECT_EQ(got.config_text, want.config_text);
  EXPECT_EQ(got.world_size, want.world_size);
  EXPECT_EQ(got.stage, want.stage);
  EXPECT_EQ(got.phase, want.phase);
  EXPECT_EQ(got.epoch, want.epoch);
  EXPECT_EQ(got.step, want.step);
  EXPECT_EQ(got.global_step, want.global_step);
  expect_same_tensors(got.model, want.model, "/model");
  expect_same_tensors(got.optimizer, want.optimizer, "/optimizer");
  expect_same_tensors(got.strategy, want.strategy, "/strategy");
  EXPECT_EQ(got.strategy_text, want.strategy_text);
  EXPECT_EQ(got.accuracy_stages, want.accuracy_stages);
  EXPECT_EQ(got.accuracy_initial, want.accuracy_initial);
  EXPECT_EQ(got.rank_states, want.rank_states);
}

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// File offset of a contiguous dataset's raw data.
haddr_t data_offset(const fs::path& path, const std::string& dataset) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(file, 0);
  const hid_t set = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
  EXPECT_GE(set, 0);
  const haddr_t offset = H5Dget_offset(set);
  H5Dclose(set);
  H5Fclose(file);
  return offset;
}

void flip_byte(const fs::path& path, uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file) << path;
  file.seekg(static_cast<std::streamoff>(offset));
  char byte = 0;
  file.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x10);
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(&byte, 1);
  ASSERT_TRUE(file.good());
}

// Opens a checkpoint for writing with HDF5 itself, to damage it on purpose.
template <typename Edit>
void edit_file(const fs::path& path, Edit&& edit) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0) << path;
  edit(file);
  ASSERT_GE(H5Fclose(file), 0);
}

class CheckpointTest : public clx::testing_support::TempDirTest {
 protected:
  CheckpointTest() : TempDirTest("clx_test_ckpt_") {}
  std::vector<std::string> names_in_dir() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  // A valid checkpoint of full_state() at `name`.
  fs::path written(const std::string& name = "ckpt.h5") const {
    const fs::path file = path(name);
    clx::write_checkpoint(file.string(), full_state());
    return file;
  }
};

TEST_F(CheckpointTest, RoundTripsEveryFieldBitExactly) {
  const CheckpointState state = full_state();
  const fs::path file = path("ckpt.h5");
  clx::write_checkpoint(file.string(), state);
  expect_same_state(clx::read_checkpoint(file.string()), state);
}

TEST_F(CheckpointTest, RoundTripsDefaultStateWithZeroAccuracyRows) {
  CheckpointState state;  // no tensors, no rows, no ranks, empty texts
  state.accuracy_initial = {0.1, 0.2};
  const fs::path file = path("empty.h5");
  clx::write_checkpoint(file.string(), state);
  const CheckpointState got = clx::read_checkpoint(file.string());
  expect_same_state(got, state);
  EXPECT_TRUE(got.accuracy_stages.empty());
  EXPECT_TRUE(got.model.empty());
  EXPECT_TRUE(got.rank_states.empty());
}

TEST_F(CheckpointTest, RoundTripsNaNPayloadsAndSignedZeros) {
  CheckpointState state;
  torch::Tensor special = torch::tensor({0.0f, -0.0f, std::numeric_limits<float>::infinity(), 1e-45f});
  torch::Tensor nan = torch::full({2}, std::numeric_limits<float>::quiet_NaN());
  uint32_t payload = 0x7fc00123u;
  std::memcpy(nan.data_ptr<float>() + 1, &payload, 4);
  state.model = {{"special", special}, {"nan", nan}};
  state.accuracy_stages = {{-0.0, std::numeric_limits<double>::denorm_min()}};
  const fs::path file = path("nan.h5");
  clx::write_checkpoint(file.string(), state);
  const CheckpointState got = clx::read_checkpoint(file.string());
  ASSERT_EQ(got.model.size(), 2u);
  EXPECT_EQ(std::memcmp(got.model[0].second.data_ptr(), special.data_ptr(), 16), 0);
  EXPECT_EQ(std::memcmp(got.model[1].second.data_ptr(), nan.data_ptr(), 8), 0);
  EXPECT_TRUE(std::signbit(got.accuracy_stages[0][0]));
  EXPECT_EQ(got.accuracy_stages[0][1], std::numeric_limits<double>::denorm_min());
}

TEST_F(CheckpointTest, ManyTensorsWithLongNames) {
  // The 'names' attribute grows past HDF5's 64 KiB compact-attribute limit.
  CheckpointState state;
  for (int i = 0; i < 2000; ++i) {
    std::string name = "block." + std::to_string(i) + ".some_rather_long_parameter_name.weight";
    state.model.emplace_back(name, torch::full({2}, static_cast<float>(i)));
  }
  const fs::path file = path("many.h5");
  clx::write_checkpoint(file.string(), state);
  expect_same_state(clx::read_checkpoint(file.string()), state);
}

TEST_F(CheckpointTest, WriteLeavesNoTemporaryFile) {
  const fs::path file = written("ckpt.h5");
  EXPECT_EQ(names_in_dir(), std::vector<std::string>{"ckpt.h5"});
  // Writing again replaces the file atomically.
  CheckpointState changed = full_state();
  changed.stage = 4;
  clx::write_checkpoint(file.string(), changed);
  EXPECT_EQ(names_in_dir(), std::vector<std::string>{"ckpt.h5"});
  EXPECT_EQ(clx::read_checkpoint(file.string()).stage, 4);
}

TEST_F(CheckpointTest, FailedWriteLeavesNothingBehind) {
  CheckpointState state = full_state();
  state.strategy.emplace_back("undefined", torch::Tensor());
  const fs::path file = path("bad.h5");
  expect_checkpoint_error([&] { clx::write_checkpoint(file.string(), state); },
                          {file.string(), "/strategy/undefined", "undefined"});
  EXPECT_TRUE(names_in_dir().empty());

  CheckpointState duplicate;
  duplicate.model = {{"w", torch::zeros({1})}, {"w", torch::zeros({1})}};
  expect_checkpoint_error([&] { clx::write_checkpoint(file.string(), duplicate); }, {file.string(), "/model/w"});
  EXPECT_TRUE(names_in_dir().empty());

  CheckpointState unsupported;
  unsupported.model = {{"c", torch::zeros({2}, torch::kComplexFloat)}};
  expect_checkpoint_error([&] { clx::write_checkpoint(file.string(), unsupported); }, {"/model/c", "not supported"});
  EXPECT_TRUE(names_in_dir().empty());

  CheckpointState ragged;
  ragged.accuracy_stages = {{0.1, 0.2}, {0.3}};
  expect_checkpoint_error([&] { clx::write_checkpoint(file.string(), ragged); }, {"/accuracy/stages"});
  EXPECT_TRUE(names_in_dir().empty());

  const fs::path missing_dir = path("no/such/dir/ckpt.h5");
  EXPECT_THROW(clx::write_checkpoint(missing_dir.string(), full_state()), clx::Error);
  EXPECT_TRUE(names_in_dir().empty());
}

TEST_F(CheckpointTest, DirectorySavesUpdatesLatestAndKeepsLast) {
  clx::CheckpointDirectory directory(path("run").string(), 2);
  EXPECT_TRUE(directory.files().empty());
  std::vector<std::string> saved;
  for (int i = 0; i < 4; ++i) {
    CheckpointState state = full_state();
    state.global_step = i;
    saved.push_back(directory.save(state));
    EXPECT_EQ(std::ifstream(path("run/latest")).rdbuf() != nullptr, true);
    std::ifstream latest(path("run/latest"));
    std::string name;
    std::getline(latest, name);
    EXPECT_EQ(path("run/" + name).string(), saved.back());
  }
  EXPECT_EQ(fs::path(saved[0]).filename(), "ckpt-00000001.h5");
  EXPECT_EQ(fs::path(saved[3]).filename(), "ckpt-00000004.h5");
  EXPECT_EQ(directory.files(), (std::vector<std::string>{saved[2], saved[3]}));
  // Nothing else in the directory: no temporary files.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(path("run"))) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt-00000003.h5", "ckpt-00000004.h5", "latest"}));

  std::vector<std::string> problems;
  std::string loaded;
  const auto state = directory.load_newest(&problems, &loaded);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->global_step, 3);
  EXPECT_EQ(loaded, saved[3]);
  EXPECT_TRUE(problems.empty());
}

TEST_F(CheckpointTest, DirectoryRejectsKeepLastBelowOne) {
  EXPECT_THROW(clx::CheckpointDirectory(path("run").string(), 0), clx::Error);
}

TEST_F(CheckpointTest, LoadNewestFallsBackWhenNewestIsTruncated) {
  clx::CheckpointDirectory directory(path("run").string(), 3);
  CheckpointState first = full_state();
  first.global_step = 100;
  directory.save(first);
  CheckpointState second = full_state();
  second.global_step = 200;
  const std::string newest = directory.save(second);
  std::vector<char> bytes = read_bytes(newest);
  bytes.resize(bytes.size() / 2);
  write_bytes(newest, bytes);

  std::vector<std::string> problems;
  std::string loaded;
  const auto state = directory.load_newest(&problems, &loaded);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->global_step, 100);
  EXPECT_EQ(fs::path(loaded).filename(), "ckpt-00000001.h5");
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find(newest), std::string::npos) << problems[0];
  EXPECT_NE(problems[0].find("truncated"), std::string::npos) << problems[0];

  // Damage the older one too: nothing usable, both problems reported.
  const std::string older = directory.files().front();
  write_bytes(older, {'n', 'o', 'p', 'e'});
  problems.clear();
  EXPECT_FALSE(directory.load_newest(&problems).has_value());
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find(newest), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find(older), std::string::npos) << problems[1];
  EXPECT_NE(problems[1].find("not an HDF5 file"), std::string::npos) << problems[1];

  // The next save continues the sequence and never reuses a name.
  EXPECT_EQ(fs::path(directory.save(first)).filename(), "ckpt-00000003.h5");
}

TEST_F(CheckpointTest, LoadNewestOnEmptyOrMissingDirectory) {
  std::vector<std::string> problems;
  EXPECT_FALSE(clx::CheckpointDirectory(dir_.string(), 1).load_newest(&problems).has_value());
  EXPECT_FALSE(clx::CheckpointDirectory(path("missing").string(), 1).load_newest(&problems).has_value());
  EXPECT_TRUE(problems.empty());
  // Temporary files of an interrupted write are not checkpoints.
  write_bytes(path("ckpt-00000001.h5.tmp-123"), {'x'});
  EXPECT_TRUE(clx::CheckpointDirectory(dir_.string(), 1).files().empty());
}

TEST_F(CheckpointTest, TruncatedFileNamesTheFile) {
  const fs::path file = written();
  std::vector<char> bytes = read_bytes(file);
  bytes.resize(bytes.size() / 2);
  write_bytes(file, bytes);
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); }, {file.string(), "truncated"});
}

TEST_F(CheckpointTest, FlippedTensorByteFailsTheFingerprint) {
  const fs::path file = written();
  const haddr_t offset = data_offset(file, "/model/trunk.1.weight");
  ASSERT_NE(offset, HADDR_UNDEF);
  flip_byte(file, offset + 5);
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                          {file.string(), "/model/trunk.1.weight", "fingerprint mismatch"});
}

TEST_F(CheckpointTest, FlippedBytesInOtherDatasetsAreCaught) {
  for (const std::string& dataset : {"/config", "/ranks/2", "/accuracy/stages", "/strategy/mask.trunk.0.weight",
                                     "/strategy_text/multi", "/strategy/a%2Fb%25c"}) {
    SCOPED_TRACE(dataset);
    const fs::path file = written();
    const haddr_t offset = data_offset(file, dataset);
    ASSERT_NE(offset, HADDR_UNDEF);
    flip_byte(file, offset + 1);
    expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                            {file.string(), dataset, "fingerprint mismatch"});
  }
}

TEST_F(CheckpointTest, ChangedRootAttributeFailsTheHeaderFingerprint) {
  const fs::path file = written();
  edit_file(file, [](hid_t h5) {
    const hid_t attr = H5Aopen(h5, "stage", H5P_DEFAULT);
    const int64_t stage = 1;
    H5Awrite(attr, H5T_NATIVE_INT64, &stage);
    H5Aclose(attr);
  });
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); }, {file.string(), "root attributes"});
}

TEST_F(CheckpointTest, MissingDatasetIsNamed) {
  const fs::path file = written();
  edit_file(file, [](hid_t h5) { ASSERT_GE(H5Ldelete(h5, "/model/trunk.0.bias", H5P_DEFAULT), 0); });
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                          {file.string(), "/model/trunk.0.bias", "missing dataset"});

  const fs::path other = written("other.h5");
  edit_file(other, [](hid_t h5) { ASSERT_GE(H5Ldelete(h5, "/config", H5P_DEFAULT), 0); });
  expect_checkpoint_error([&] { clx::read_checkpoint(other.string()); }, {other.string(), "/config", "missing"});

  const fs::path group = written("group.h5");
  edit_file(group, [](hid_t h5) { ASSERT_GE(H5Ldelete(h5, "/optimizer", H5P_DEFAULT), 0); });
  expect_checkpoint_error([&] { clx::read_checkpoint(group.string()); },
                          {group.string(), "/optimizer", "missing group"});
}

TEST_F(CheckpointTest, MissingAttributeIsNamed) {
  const fs::path file = written();
  edit_file(file, [](hid_t h5) { ASSERT_GE(H5Adelete_by_name(h5, "/strategy/counts", "fingerprint", H5P_DEFAULT), 0); });
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                          {file.string(), "/strategy/counts", "missing attribute 'fingerprint'"});

  const fs::path root = written("root.h5");
  edit_file(root, [](hid_t h5) { ASSERT_GE(H5Adelete(h5, "world_size"), 0); });
  expect_checkpoint_error([&] { clx::read_checkpoint(root.string()); },
                          {root.string(), "/", "missing attribute 'world_size'"});
}

TEST_F(CheckpointTest, UnlistedDatasetIsNamed) {
  const fs::path file = written();
  edit_file(file, [](hid_t h5) {
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t set = H5Dcreate2(h5, "/strategy/intruder", H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(set, 0);
    H5Dclose(set);
    H5Sclose(space);
  });
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); }, {file.string(), "/strategy/intruder"});
}

TEST_F(CheckpointTest, StoredTypeThatContradictsDtypeIsRejected) {
  const fs::path file = written();
  edit_file(file, [](hid_t h5) {
    const hid_t set = H5Dopen2(h5, "/model/trunk.0.weight", H5P_DEFAULT);
    H5Adelete(set, "dtype");
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 5);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t attr = H5Acreate2(set, "dtype", type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(attr, type, "int32");
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    H5Dclose(set);
  });
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                          {file.string(), "/model/trunk.0.weight", "does not hold dtype int32"});
}

TEST_F(CheckpointTest, WrongRankOfAccuracyMatrixIsRejected) {
  const fs::path file = written();
  // Replace /accuracy/stages by a well-formed but 1-D float64 dataset.
  edit_file(file, [](hid_t h5) {
    ASSERT_GE(H5Ldelete(h5, "/accuracy/stages", H5P_DEFAULT), 0);
    const double values[3] = {0.1, 0.2, 0.3};
    const hsize_t count = 3;
    const hid_t space = H5Screate_simple(1, &count, nullptr);
    const hid_t set = H5Dcreate2(h5, "/accuracy/stages", H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(set, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
    const hid_t scalar = H5Screate(H5S_SCALAR);
    auto string_attr = [&](const char* name, const std::string& value) {
      const hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, value.size());
      const hid_t attr = H5Acreate2(set, name, type, scalar, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(attr, type, value.data());
      H5Aclose(attr);
      H5Tclose(type);
    };
    string_attr("dtype", "float64");
    string_attr("fingerprint", clx::Fingerprint().add(torch::tensor({0.1, 0.2, 0.3}, torch::kFloat64)).hex());
    H5Sclose(scalar);
    H5Dclose(set);
    H5Sclose(space);
  });
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                          {file.string(), "/accuracy/stages", "expected a 2-D float64 array"});
}

TEST_F(CheckpointTest, NotAnHdf5File) {
  const fs::path file = path("text.h5");
  std::ofstream(file) << "this is not an HDF5 file\n";
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); }, {file.string(), "not an HDF5 file"});
  const fs::path empty = path("empty.h5");
  std::ofstream{empty};
  expect_checkpoint_error([&] { clx::read_checkpoint(empty.string()); }, {empty.string()});
  expect_checkpoint_error([&] { clx::read_checkpoint(path("absent.h5").string()); },
                          {path("absent.h5").string(), "no such file"});
  expect_checkpoint_error([&] { clx::read_checkpoint(dir_.string()); }, {dir_.string(), "not a regular file"});
}

void set_format_version(const fs::path& file, int64_t version) {
  edit_file(file, [version](hid_t h5) {
    const hid_t attr = H5Aopen(h5, "format_version", H5P_DEFAULT);
    ASSERT_GE(attr, 0);
    H5Awrite(attr, H5T_NATIVE_INT64, &version);
    H5Aclose(attr);
  });
}

TEST_F(CheckpointTest, NewerFormatVersionIsRejected) {
  const fs::path file = written();
  set_format_version(file, clx::kCheckpointFormatVersion + 1);
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                          {file.string(), "unsupported format_version " +
                                              std::to_string(clx::kCheckpointFormatVersion + 1)});
}

// Version 1 had FNV-1a fingerprints; its files are refused with a reason, not
// reported as damaged datasets.
TEST_F(CheckpointTest, FormatVersion1IsRefusedAsSuch) {
  const fs::path file = written();
  set_format_version(file, 1);
  expect_checkpoint_error([&] { clx::read_checkpoint(file.string()); },
                          {file.string(), ": /: unsupported format_version 1 (this build reads 2 to", "FNV-1a"});
}

// The defect: a directory named like a checkpoint was skipped silently, and
// the next save picked its name and failed ("already exists"). Now it is
// reported with its reason and numbered past.
TEST_F(CheckpointTest, ANameThatIsNoRegularFileIsReportedAndNumberedPast) {
  clx::CheckpointDirectory directory(path("run").string(), 5);
  CheckpointState first = full_state();
  first.global_step = 100;
  directory.save(first);
  directory.save(first);
  fs::remove(path("run/ckpt-00000002.h5"));
  fs::create_directories(path("run/ckpt-00000003.h5"));
  fs::create_symlink("nowhere", path("run/ckpt-00000004.h5"));

  std::vector<std::string> problems;
  std::string loaded;
  const auto state = directory.load_newest(&problems, &loaded);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(fs::path(loaded).filename(), "ckpt-00000001.h5");
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find(path("run/ckpt-00000004.h5").string() + ": /: not a regular file (a dangling symbolic link)"),
            std::string::npos)
      << problems[0];
  EXPECT_NE(problems[1].find(path("run/ckpt-00000003.h5").string() + ": /: not a regular file (a directory)"),
            std::string::npos)
      << problems[1];
  EXPECT_EQ(directory.files(), std::vector<std::string>{path("run/ckpt-00000001.h5").string()});

  EXPECT_EQ(fs::path(directory.save(first)).filename(), "ckpt-00000005.h5");
  EXPECT_TRUE(fs::is_directory(path("run/ckpt-00000003.h5")));  // never deleted as an old checkpoint
}

// A check that throws CheckpointError makes load_newest fall back (a model
// tensor of the wrong shape, say); any other exception refuses outright.
TEST_F(CheckpointTest, LoadNewestFallsBackPastFilesThatFailTheCheck) {
  clx::CheckpointDirectory directory(path("run").string(), 3);
  CheckpointState fits = full_state();
  fits.global_step = 1;
  directory.save(fits);
  CheckpointState other_model = full_state();
  other_model.global_step = 2;
  other_model.model[0].second = torch::zeros({9, 4});
  const std::string newest = directory.save(other_model);

  const NamedTensors live = full_state().model;
  auto fits_the_model = [&](const std::string& file, const CheckpointState& candidate) {
    clx::check_tensors_match(file, "/model", candidate.model, live);
  };
  std::vector<std::string> problems;
  const auto state = directory.load_newest(&problems, nullptr, fits_the_model);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->global_step, 1);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find(newest + ": /model/trunk.0.weight: shape [9, 4], expected [8, 4]"), std::string::npos)
      << problems[0];

  auto refuses = [](const std::string& file, const CheckpointState&) { throw clx::Error(file + ": refused"); };
  clx::testing_support::expect_error([&] { directory.load_newest(nullptr, nullptr, refuses); }, {newest + ": refused"});
}

// The defect: a full disk during a checkpoint write was reported, but HDF5
// was left holding the half-closed file and crashed at exit (signal 11).
// Now the error names the file and the OS reason, HDF5 holds no object, the
// earlier checkpoint is intact and nothing else is left behind.
TEST_F(CheckpointTest, FullDiskFailsCleanlyAndKeepsTheEarlierCheckpoint) {
  clx::testing_support::SmallTmpfs disk(path("disk"), 1 << 20);
  CLX_REQUIRE_TMPFS(disk);
  clx::CheckpointDirectory directory((disk.path() / "checkpoints").string(), 3);
  CheckpointState small = full_state();
  const std::string first = directory.save(small);
  CheckpointState large = full_state();
  large.model.emplace_back("big", torch::ones({300, 1000}));  // 1.2 MB: more than the disk holds
  const std::string second = (disk.path() / "checkpoints" / "ckpt-00000002.h5").string();
  clx::testing_support::expect_error([&] { directory.save(large); },
                                     {"cannot write " + second, "No space left on device"});
  EXPECT_EQ(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
  EXPECT_EQ(clx::read_checkpoint(first).global_step, small.global_step);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(disk.path() / "checkpoints"))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt-00000001.h5", "latest"}));
}

TEST_F(CheckpointTest, CheckTensorsMatchNamesTheFirstMismatch) {
  const std::string file = "/runs/x/ckpt-00000007.h5";
  const NamedTensors expected = {{"a", torch::zeros({4, 4})}, {"x", torch::zeros({4, 4})}};
  EXPECT_NO_THROW(clx::check_tensors_match(file, "/model", expected, expected));

  const NamedTensors wrong_shape = {{"a", torch::zeros({4, 4})}, {"x", torch::zeros({3, 4})}};
  expect_checkpoint_error([&] { clx::check_tensors_match(file, "/model", wrong_shape, expected); },
                          {file, "/model/x: shape [3, 4], expected [4, 4]"});

  const NamedTensors wrong_type = {{"a", torch::zeros({4, 4}, torch::kFloat64)}, {"x", torch::zeros({4, 4})}};
  expect_checkpoint_error([&] { clx::check_tensors_match(file, "model", wrong_type, expected); },
                          {file, "/model/a: dtype float64, expected float32"});

  const NamedTensors missing = {{"a", torch::zeros({4, 4})}};
  expect_checkpoint_error([&] { clx::check_tensors_match(file, "/model", missing, expected); },
                          {file, "/model/x: missing"});

  NamedTensors extra = expected;
  extra.emplace_back("y/z", torch::zeros({1}));
  expect_checkpoint_error([&] { clx::check_tensors_match(file, "/strategy", extra, expected); },
                          {file, "/strategy/y%2Fz", "not expected"});
}

TEST_F(CheckpointTest, CheckTensorsMatchOnARealFile) {
  const fs::path file = written();
  const CheckpointState state = clx::read_checkpoint(file.string());
  NamedTensors live = full_state().model;
  EXPECT_NO_THROW(clx::check_tensors_match(file.string(), "/model", state.model, live));
  live[2].second = torch::zeros({8, 3}, torch::kFloat64);
  expect_checkpoint_error([&] { clx::check_tensors_match(file.string(), "/model", state.model, live); },
                          {file.string(), "/model/trunk.1.weight: dtype float32, expected float64"});
}

// Random byte flips and truncations of a valid checkpoint: every outcome is
// a successful read or a clx::Error, never a crash or another exception.
TEST_F(CheckpointTest, RandomDamageIsAlwaysAnErrorNeverACrash) {
  CheckpointState small = full_state();
  const fs::path original = path("original.h5");
  clx::write_checkpoint(original.string(), small);
  const std::vector<char> bytes = read_bytes(original);
  std::mt19937_64 random(20240601);
  const fs::path damaged = path("damaged.h5");
  int errors = 0, successes = 0;
  for (int iteration = 0; iteration < 500; ++iteration) {
    std::vector<char> copy = bytes;
    const int kind = static_cast<int>(random() % 4);
    if (kind == 0) {
      copy.resize(random() % copy.size());
    } else {
      const int flips = kind == 1 ? 1 : static_cast<int>(1 + random() % 16);
      for (int f = 0; f < flips; ++f) copy[random() % copy.size()] ^= static_cast<char>(1 + random() % 255);
    }
    write_bytes(damaged, copy);
    try {
      clx::read_checkpoint(damaged.string());
      ++successes;  // a flip in unused space
    } catch (const clx::Error& error) {
      ++errors;
      EXPECT_NE(std::string(error.what()).find(damaged.string()), std::string::npos) << error.what();
    } catch (const std::exception& error) {
      ADD_FAILURE() << "iteration " << iteration << ": not a clx::Error: " << error.what();
    }
  }
  EXPECT_EQ(errors + successes, 500);
  EXPECT_GT(errors, 400);
}

// The small checkpoint shown in docs/checkpoint_format.md (h5dump excerpt
// and h5py example).
CheckpointState documented_example_state() {
  CheckpointState state;
  state.config_text = "model = mlp\nalgorithm = sgd\n";
  state.world_size = 2;
  state.stage = 1;
  state.phase = "training";
  state.epoch = 2;
  state.step = 3;
  state.global_step = 40;
  state.model = {{"trunk.0.weight", torch::arange(12, torch::kFloat32).reshape({3, 4})},
                 {"trunk.0.bias", torch::tensor({0.5, -0.5, 0.25}, torch::kFloat64)},
                 {"count", torch::tensor(int64_t{7})}};
  state.optimizer = {{"momentum.trunk.0.weight", torch::full({3, 4}, 0.125f)}};
  state.strategy = {{"mask.trunk.0.weight", torch::ones({3, 4}, torch::kUInt8)},
                    {"ids", torch::arange(4, torch::kInt32)},
                    {"a/b", torch::empty({0}, torch::kUInt8)}};
  state.strategy_text = {{"mode", ""}};
  state.accuracy_initial = {0.1, 0.12};
  state.accuracy_stages = {{0.5, 0.25}};
  state.rank_states = {"rank0", "rank1"};
  return state;
}

// The text between the first line starting with `opening` after `heading`
// and the next line "```" of a Markdown file.
std::string markdown_block(const std::string& markdown, const std::string& heading, const std::string& opening) {
  const size_t section = markdown.find(heading);
  if (section == std::string::npos) return "";
  const size_t start = markdown.find("\n" + opening + "\n", section);
  if (start == std::string::npos) return "";
  const size_t body = start + opening.size() + 2;
  const size_t end = markdown.find("\n```\n", body);
  return end == std::string::npos ? "" : markdown.substr(body, end + 1 - body);
}

// A python3 that can import h5py, numpy and xxhash, or "" (the pyenv shim on
// PATH may lack the Debian packages that /usr/bin/python3 has).
std::string python_with_h5py() {
  for (const std::string python : {"python3", "/usr/bin/python3"})
    if (std::system((python + " -c 'import h5py, numpy, xxhash' >/dev/null 2>&1").c_str()) == 0) return python;
  return "";
}

// The h5py reader in docs/checkpoint_format.md, run on the documented example:
// it verifies every fingerprint and prints what the document says it prints.
TEST_F(CheckpointTest, DocumentedH5pyReaderReadsTheExample) {
  const std::string python = python_with_h5py();
  if (python.empty()) GTEST_SKIP() << "needs python3 with h5py, numpy and xxhash (python3-h5py, python3-xxhash)";
  const fs::path document = fs::path(__FILE__).parent_path().parent_path() / "docs" / "checkpoint_format.md";
  std::ifstream in(document);
  ASSERT_TRUE(in) << document;
  const std::string markdown((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string script = markdown_block(markdown, "## Reading with h5py", "```python");
  const std::string expected = markdown_block(markdown, "Output for the file above:", "```");
  ASSERT_FALSE(script.empty()) << "no python block after '## Reading with h5py' in " << document;
  ASSERT_FALSE(expected.empty()) << "no output block after 'Output for the file above:' in " << document;

  const fs::path file = path("ckpt-00000001.h5"), program = path("read.py"), output = path("output.txt");
  clx::write_checkpoint(file.string(), documented_example_state());
  std::ofstream(program) << script;
  const std::string command = python + " " + program.string() + " " + file.string() + " >" + output.string() + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream result(output);
  const std::string printed((std::istreambuf_iterator<char>(result)), std::istreambuf_iterator<char>());
  ASSERT_EQ(status, 0) << command << "\n" << printed;
  EXPECT_EQ(printed, expected) << "update the output shown in " << document;
}

// A tensor of the ResNet-18 state below: its name, shape and whether it is a
// trainable parameter (a buffer otherwise).
struct ResNetTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool parameter;
};

// The parameters and buffers of a ResNet-18 (He et al. 2016, torchvision
// names) with the 3x3 stem used for 32x32 inputs and a 10-class fc: 62
// parameters holding 11,173,962 values, 60 BatchNorm buffers. Written out
// here rather than taken from models/, so that this test measures the
// checkpoint format on its own.
std::vector<ResNetTensor> resnet18_tensors() {
  std::vector<ResNetTensor> tensors;
  auto batch_norm = [&](const std::string& prefix, int64_t channels) {
    tensors.push_back({prefix + ".weight", {channels}, true});
    tensors.push_back({prefix + ".bias", {channels}, true});
    tensors.push_back({prefix + ".running_mean", {channels}, false});
    tensors.push_back({prefix + ".running_var", {channels}, false});
    tensors.push_back({prefix + ".num_batches_tracked", {}, false});
  };
  tensors.push_back({"conv1.weight", {64, 3, 3, 3}, true});
  batch_norm("bn1", 64);
  int64_t in_channels = 64;
  for (int layer = 1; layer <= 4; ++layer) {
    const int64_t channels = int64_t{64} << (layer - 1);
    for (int block = 0; block < 2; ++block) {
      const std::string prefix = "layer" + std::to_string(layer) + "." + std::to_string(block);
      tensors.push_back({prefix + ".conv1.weight", {channels, in_channels, 3, 3}, true});
      batch_norm(prefix + ".bn1", channels);
      tensors.push_back({prefix + ".conv2.weight", {channels, channels, 3, 3}, true});
      batch_norm(prefix + ".bn2", channels);
      if (in_channels != channels) {  // first block of layers 2-4: strided 1x1 projection
        tensors.push_back({prefix + ".downsample.0.weight", {channels, in_channels, 1, 1}, true});
        batch_norm(prefix + ".downsample.1", channels);
      }
      in_channels = channels;
    }
  }
  tensors.push_back({"fc.weight", {10, 512}, true});
  tensors.push_back({"fc.bias", {10}, true});
  return tensors;
}

// What an ANPyC checkpoint of a ResNet-18 holds: parameters and buffers, SGD
// momentum, and per parameter theta_old, omega (float32) and a bool mask.
CheckpointState resnet18_anpyc_state() {
  torch::manual_seed(18);
  CheckpointState state;
  state.config_text = "model = resnet18\nalgorithm = anpyc\n";
  state.phase = "training";
  state.accuracy_initial = {0.1, 0.1, 0.1, 0.1, 0.1};
  for (const ResNetTensor& t : resnet18_tensors()) {
    if (t.shape.empty()) {
      state.model.emplace_back(t.name, torch::tensor(int64_t{1000}));
      continue;
    }
    state.model.emplace_back(t.name, torch::randn(t.shape));
    if (!t.parameter) continue;
    state.optimizer.emplace_back("momentum." + t.name, torch::randn(t.shape));
    state.strategy.emplace_back("theta_old." + t.name, torch::randn(t.shape));
    state.strategy.emplace_back("omega." + t.name, torch::rand(t.shape));
    state.strategy.emplace_back("mask." + t.name, torch::rand(t.shape) > 0.3);
  }
  return state;
}

int64_t tensor_bytes(const CheckpointState& state) {
  int64_t bytes = 0;
  for (const NamedTensors* group : {&state.model, &state.optimizer, &state.strategy})
    for (const auto& entry : *group) bytes += entry.second.numel() * entry.second.element_size();
  return bytes;
}

TEST(ResNet18State, HasTheShapesOfResNet18) {
  int64_t parameters = 0, parameter_tensors = 0;
  for (const ResNetTensor& t : resnet18_tensors()) {
    if (!t.parameter) continue;
    ++parameter_tensors;
    int64_t count = 1;
    for (int64_t dim : t.shape) count *= dim;
    parameters += count;
  }
  EXPECT_EQ(parameter_tensors, 62);
  EXPECT_EQ(parameters, 11173962);  // torchvision resnet18 with a 3x3 stem and 10 classes
}

// Seconds taken by `body`.
template <typename Body>
double seconds(Body&& body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Writes the tensors' bytes to `file` in one sequence of large write(2)
// calls and fsyncs it: what the disk allows for this much data, to read the
// checkpoint's own speed against (a shared disk varies several-fold).
double raw_write_and_fsync_seconds(const fs::path& file, const CheckpointState& state) {
  return seconds([&] {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << file;
    for (const NamedTensors* group : {&state.model, &state.optimizer, &state.strategy})
      for (const auto& entry : *group) {
        const char* data = static_cast<const char*>(entry.second.data_ptr());
        size_t left = static_cast<size_t>(entry.second.numel() * entry.second.element_size());
        while (left > 0) {
          const ssize_t done = ::write(fd, data, left);
          ASSERT_GT(done, 0) << file;
          data += done;
          left -= static_cast<size_t>(done);
        }
      }
    ASSERT_EQ(::fsync(fd), 0) << file;
    ::close(fd);
  });
}

// Drops a file's (clean, fsynced) pages from the page cache, so that the
// next read comes from the disk.
void evict_from_page_cache(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << file;
  EXPECT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
}

// An ANPyC checkpoint of a ResNet-18 (about 190 MB): prints the write speed
// (with fsync) next to a plain write+fsync of the same bytes, and the read
// speed (with full checksum verification) from the disk and from the page
// cache. Not a timed assertion: speed belongs to benchmarks; this reports it.
TEST_F(CheckpointTest, ResNet18StateThroughput) {
  const CheckpointState state = resnet18_anpyc_state();
  const double mb = static_cast<double>(tensor_bytes(state)) / 1e6;
  const fs::path raw = path("raw.bin"), file = path("resnet18.h5");
  const double raw_s = raw_write_and_fsync_seconds(raw, state);
  fs::remove(raw);
  const double write_s = seconds([&] { clx::write_checkpoint(file.string(), state); });
  evict_from_page_cache(file);
  CheckpointState got;
  const double cold_read_s = seconds([&] { got = clx::read_checkpoint(file.string()); });
  const double warm_read_s = seconds([&] { got = clx::read_checkpoint(file.string()); });
  std::cout << "[checkpoint] ResNet-18 + ANPyC state, " << mb << " MB of tensors in "
            << state.model.size() + state.optimizer.size() + state.strategy.size() << " datasets, file "
            << static_cast<double>(fs::file_size(file)) / 1e6 << " MB\n"
            << "[checkpoint]   write+fsync " << mb / write_s << " MB/s (" << write_s << " s); plain write+fsync of "
            << "the same bytes " << mb / raw_s << " MB/s (" << raw_s << " s)\n"
            << "[checkpoint]   read+verify " << mb / cold_read_s << " MB/s from disk (" << cold_read_s << " s), "
            << mb / warm_read_s << " MB/s from the page cache (" << warm_read_s << " s)\n";
  RecordProperty("write_MBps", std::to_string(mb / write_s));
  RecordProperty("raw_write_MBps", std::to_string(mb / raw_s));
  RecordProperty("cold_read_MBps", std::to_string(mb / cold_read_s));
  RecordProperty("warm_read_MBps", std::to_string(mb / warm_read_s));
  expect_same_state(got, state);
  // Little more than the data itself: contiguous datasets, no chunking.
  EXPECT_LT(fs::file_size(file), static_cast<uintmax_t>(tensor_bytes(state)) + 1000000u);
}

}  // namespace
