#pragma once
// What the file-format fuzz targets share: each input is written to a
// temporary file and handed to the reader under test, which must either
// succeed or throw clx::Error; any other exception, crash, sanitizer report
// or runaway allocation is a bug. CLX_FUZZ_WRITE_SEEDS=<dir> writes the
// target's seed files into <dir> and exits.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "runtime/error.h"

namespace clx::fuzz {

// LLVMFuzzerInitialize's body: writes seeds and exits when asked to.
template <typename WriteSeeds>
int initialize(WriteSeeds&& write_seeds) {
  if (const char* dir = std::getenv("CLX_FUZZ_WRITE_SEEDS")) {
    write_seeds(std::string(dir));
    std::exit(0);
  }
  return 0;
}

// LLVMFuzzerTestOneInput's body: the input as the file `read` opens.
template <typename Read>
int test_file_input(const uint8_t* data, size_t size, const char* file_stem, Read&& read) {
  static const std::string path = [file_stem] {
    const char* tmp = std::getenv("TMPDIR");
    static std::string name = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + file_stem + std::to_string(::getpid());
    std::atexit([] { std::remove(name.c_str()); });
    return name;
  }();
  {
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!file) {
      std::cerr << "cannot write " << path << "\n";
      std::abort();
    }
  }
  try {
    read(path);
  } catch (const clx::Error&) {
    // Expected for damaged input.
  }
  return 0;
}

}  // namespace clx::fuzz
