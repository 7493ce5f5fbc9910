#!/usr/bin/env bash
# scripts/deps_prefix.sh as the GPU check uses it: the prefix is made, moved to
# another path, and a small CMake project configured with `cmake -C
# prefix.cmake` finds every package inside it and links a program against
# Boost.Program_options, HDF5, matio, zlib, xxhash and GoogleTest from the
# static archives alone, which then runs (and writes and reads a .mat file).
# Also: no absolute symbolic link or shared library link left, pkg-config
# paths inside the prefix, REQUIREMENTS written.
# (The whole project built against it in a clean Debian root: scripts/check_deps_prefix.sh.)
# Needs SOURCE_DIR, apt-get with the package lists; skipped (77) when the
# packages cannot be downloaded.
: "${MPIRUN:=mpirun}"  # named by cli_lib.sh; nothing here runs under MPI
source "$(dirname "$0")/cli_lib.sh"

if ! bash "$SOURCE_DIR/scripts/deps_prefix.sh" "$WORK/made" --no-data > "$WORK/made.out" 2>&1; then
  if grep -q "apt-get download failed" "$WORK/made.out"; then echo "skipped: packages cannot be downloaded"; exit 77; fi
  fail "deps_prefix.sh"; tail -20 "$WORK/made.out"; finish; exit 1
fi
pass "deps_prefix.sh: $(grep -o 'prefix [0-9.]* MiB' "$WORK/made.out")"
mv "$WORK/made" "$WORK/moved"
PREFIX=$WORK/moved

absolute_links=$(find "$PREFIX" -type l -lname '/*' | wc -l)
shared=$(find "$PREFIX" \( -name '*.so' -o -name '*.so.*' \) | wc -l)
[ "$absolute_links" -eq 0 ] && [ "$shared" -eq 0 ] && pass "no absolute symbolic links, no shared libraries" ||
  fail "$absolute_links absolute links, $shared shared libraries"
grep -Eq '^glibc=[0-9.]+ ' "$PREFIX/REQUIREMENTS" && grep -Eq '^glibcxx=3\.4\.[0-9]+ ' "$PREFIX/REQUIREMENTS" &&
  pass "REQUIREMENTS: $(grep -v '^#' "$PREFIX/REQUIREMENTS" | cut -d' ' -f1 | paste -sd' ')" || fail "REQUIREMENTS"
if command -v pkg-config >/dev/null; then
  flags=$(PKG_CONFIG_PATH=$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig pkg-config --cflags --libs hdf5-serial zlib)
  paths=$(for flag in $flags; do case "$flag" in -I*|-L*) realpath -m "${flag:2}" ;; esac; done)
  if [ -n "$paths" ] && ! grep -qv "^$PREFIX/usr/" <<< "$paths" && grep -qx "$PREFIX/usr/include/hdf5/serial" <<< "$paths"; then
    pass "pkg-config after the move: $(paste -sd' ' <<< "$paths")"
  else
    fail "pkg-config paths outside the moved prefix: $flags"
  fi
fi

# A program using each package, configured and linked against the moved prefix only.
mkdir -p "$WORK/probe"
cat > "$WORK/probe/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(probe LANGUAGES C CXX)
set(CMAKE_CXX_STANDARD 17)
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(nlohmann_json 3 REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(GTest REQUIRED)
find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(XXHASH_LIBRARY xxhash REQUIRED)
find_library(SZIP_LIBRARY sz REQUIRED)
find_library(AEC_LIBRARY aec REQUIRED)
find_path(MATIO_INCLUDE_DIR matio.h REQUIRED)
find_library(MATIO_LIBRARY matio REQUIRED)
add_executable(probe probe.cpp)
target_include_directories(probe PRIVATE ${HDF5_C_INCLUDE_DIRS} ${XXHASH_INCLUDE_DIR} ${MATIO_INCLUDE_DIR})
target_link_libraries(probe PRIVATE Boost::program_options nlohmann_json::nlohmann_json GTest::gtest ${MATIO_LIBRARY}
                      ${HDF5_C_LIBRARIES} ${SZIP_LIBRARY} ${AEC_LIBRARY} ${XXHASH_LIBRARY} ZLIB::ZLIB Threads::Threads ${CMAKE_DL_LIBS})
foreach(found Boost_DIR GTest_DIR nlohmann_json_DIR HDF5_C_LIBRARIES ZLIB_LIBRARY XXHASH_LIBRARY SZIP_LIBRARY MATIO_LIBRARY)
  message(STATUS "probe ${found}=${${found}}")
endforeach()
EOF
cat > "$WORK/probe/probe.cpp" <<'EOF'
#include <boost/program_options.hpp>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <matio.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>
#include <zlib.h>
#include <iostream>
int main(int argc, char** argv) {
  namespace po = boost::program_options;
  po::options_description options;
  options.add_options()("out", po::value<std::string>()->required());
  po::variables_map values;
  po::store(po::parse_command_line(argc, argv, options), values);
  const std::string path = values["out"].as<std::string>();
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) return 1;
  H5Fclose(file);
  // matio: a compressed MATLAB v5 variable written and read back (zlib inflate included).
  const std::string mat_path = path + ".mat";
  unsigned char bytes[6] = {1, 2, 3, 4, 5, 6};
  size_t dims[2] = {2, 3};
  mat_t* mat = Mat_CreateVer(mat_path.c_str(), nullptr, MAT_FT_MAT5);
  if (mat == nullptr) return 1;
  matvar_t* written = Mat_VarCreate("X", MAT_C_UINT8, MAT_T_UINT8, 2, dims, bytes, 0);
  if (written == nullptr || Mat_VarWrite(mat, written, MAT_COMPRESSION_ZLIB) != 0) return 1;
  Mat_VarFree(written);
  Mat_Close(mat);
  mat = Mat_Open(mat_path.c_str(), MAT_ACC_RDONLY);
  matvar_t* read = mat ? Mat_VarRead(mat, "X") : nullptr;
  if (read == nullptr || read->nbytes != 6) return 1;
  const int mat_last = static_cast<const unsigned char*>(read->data)[5];
  Mat_VarFree(read);
  Mat_Close(mat);
  const char text[] = "clx";
  nlohmann::json json = {{"zlib", zlibVersion()}, {"xxh64", XXH64(text, 3, 0)}, {"hdf5", H5_VERS_INFO},
                         {"gtest", ::testing::UnitTest::GetInstance() != nullptr}, {"matio_last", mat_last}};
  std::cout << json.dump() << "\n";
  return 0;
}
EOF
if cmake -S "$WORK/probe" -B "$WORK/probe/build" -C "$PREFIX/prefix.cmake" -DCMAKE_BUILD_TYPE=Release \
     > "$WORK/probe.out" 2>&1 && cmake --build "$WORK/probe/build" >> "$WORK/probe.out" 2>&1; then
  outside=$(grep -- '-- probe ' "$WORK/probe.out" | grep -v "=$PREFIX/" || true)
  [ -z "$outside" ] && pass "cmake -C prefix.cmake: Boost, GTest, nlohmann-json, HDF5, matio, zlib, xxhash, szip all from the moved prefix" ||
    fail "found outside the prefix: $outside"
  if "$WORK/probe/build/probe" --out "$WORK/probe.h5" > "$WORK/probe.json" && grep -q '"hdf5":"HDF5 library version: 1.10' "$WORK/probe.json" &&
     grep -q '"matio_last":6' "$WORK/probe.json" &&
     ! ldd "$WORK/probe/build/probe" | grep -Eq 'boost|hdf5|libz\.|xxhash|gtest|libsz|libaec|matio'; then
    pass "the program links statically and runs: $(cat "$WORK/probe.json")"
  else
    fail "the probe program"; cat "$WORK/probe.json"; ldd "$WORK/probe/build/probe"
  fi
else
  fail "configure or build against the prefix"; tail -30 "$WORK/probe.out"
fi
finish
