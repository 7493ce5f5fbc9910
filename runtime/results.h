#pragma once
// Writing a run's results: results.json (everything), accuracy_matrix.csv,
// metrics.csv, one <name>.csv per strategy table, and the table printed at the
// end of a run.
#include <string>

#include "runtime/metrics.h"
#include "runtime/trainer.h"

namespace clx {

struct RunDescription {
  std::string strategy;
  std::string stream;
  int world_size = 1;
  std::string backend;
  std::string effective_config;  // "key = value" lines
};

// Writes results.json, accuracy_matrix.csv, metrics.csv and the strategy's
// tables (RunResult::tables, as <name>.csv) into `directory`,
// each atomically with every write checked (runtime/file_io.h); throws
// FileError naming the file and the OS reason. Text that is not valid UTF-8
// is written to results.json with U+FFFD in place of the invalid bytes.
void write_results(const std::string& directory, const RunDescription& run, const RunResult& result,
                   const MetricSummary& metrics);

// The accuracy matrix (percent) and the metrics as a plain-text table.
std::string format_results_table(const RunResult& result, const MetricSummary& metrics);

}  // namespace clx
