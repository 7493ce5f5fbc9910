#include "runtime/data/digits.h"

#include <cmath>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "runtime/data/idx.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {
namespace {

constexpr int64_t kSide = 8;
constexpr int64_t kPixels = kSide * kSide;
constexpr int64_t kClasses = 10;
constexpr double kMaxPixel = 16.0;
// The real file is 0.5 MB unpacked; anything far larger is not this data set.
constexpr int64_t kMaxBytes = 64 << 20;

// A whole number in [low, high] written as an integer or a float ("3", "3.0"); throws naming the place.
int64_t whole_number(const std::string& text, int64_t low, int64_t high, const std::string& where) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || *end != '\0' || !std::isfinite(value) || value != std::floor(value) ||
      value < static_cast<double>(low) || value > static_cast<double>(high))
    throw Error(where + ": '" + text + "' is not a whole number in " + std::to_string(low) + ".." +
                std::to_string(high));
  return static_cast<int64_t>(value);
}

}  // namespace

LabelledImages load_sklearn_digits(const std::string& path) {
  const std::string content = read_plain_or_gzip_file(path, kMaxBytes);
  std::vector<float> pixels;
  std::vector<int64_t> labels;
  std::istringstream lines(content);
  std::string line;
  int64_t line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<std::string> fields;
    std::istringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) fields.push_back(cell);
    if (!line.empty() && line.back() == ',') fields.push_back("");
    const std::string where = path + ", line " + std::to_string(line_number);
    if (static_cast<int64_t>(fields.size()) != kPixels + 1)
      throw Error(where + ": " + std::to_string(fields.size()) + " values, expected " + std::to_string(kPixels) +
                  " pixels and a label");
    for (int64_t k = 0; k < kPixels; ++k)
      pixels.push_back(
          static_cast<float>(whole_number(fields[k], 0, 16, where + ", pixel " + std::to_string(k + 1)) / kMaxPixel));
    labels.push_back(whole_number(fields[kPixels], 0, kClasses - 1, where + ", label"));
  }
  if (labels.empty()) throw Error(path + ": no images (expected scikit-learn's digits.csv.gz)");
  const auto count = static_cast<int64_t>(labels.size());
  LabelledImages data;
  data.images = torch::from_blob(pixels.data(), {count, 1, kSide, kSide}, torch::kFloat32).clone();
  data.labels = torch::from_blob(labels.data(), {count}, torch::kInt64).clone();
  data.num_classes = kClasses;
  data.description = "digits (" + path + ")";
  return data;
}

LabelledSplit split_labelled_per_class(const LabelledImages& data, double test_fraction, uint64_t seed) {
  std::vector<torch::Tensor> train_rows, test_rows;
  for (int64_t c = 0; c < data.num_classes; ++c) {
    torch::Tensor rows = torch::nonzero(data.labels.eq(c)).reshape({-1});
    rows = rows.index_select(0, seeded_permutation(rows.size(0), mix_seed({seed, 0xd161, static_cast<uint64_t>(c)})));
    const int64_t test_count = std::llround(test_fraction * static_cast<double>(rows.size(0)));
    test_rows.push_back(rows.narrow(0, 0, test_count));
    train_rows.push_back(rows.narrow(0, test_count, rows.size(0) - test_count));
  }
  auto take = [&](const std::vector<torch::Tensor>& parts, const std::string& name) {
    const torch::Tensor rows = std::get<0>(torch::sort(torch::cat(parts)));
    LabelledImages part;
    part.images = data.images.index_select(0, rows);
    part.labels = data.labels.index_select(0, rows);
    part.num_classes = data.num_classes;
    part.class_names = data.class_names;
    part.description = data.description + " " + name;
    return part;
  };
  return {take(train_rows, "train"), take(test_rows, "test")};
}

}  // namespace clx
