// report: reads run folders (results.json of `train`) and prints, per method,
// FWT, BWT, ACC (and SMT) as mean +- standard deviation over the runs, as a
// Markdown table and optionally a CSV file, PNG plots (gnuplot) and a Markdown
// document with the table, the plots and the importance statistics read from
// the runs' checkpoints.
#include <boost/program_options.hpp>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <tuple>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "runtime/checkpoint.h"
#include "runtime/file_io.h"

namespace po = boost::program_options;
using clx::FileError;
using clx::read_text_file;
using clx::write_file_atomically;

namespace {

struct Samples {
  std::vector<double> acc, bwt, fwt_paper, fwt_gem, smt;
  std::vector<std::vector<std::vector<double>>> matrices;  // each run's accuracy matrix (stages x tasks)
  std::vector<std::string> run_dirs;
  std::vector<std::string> strategies;  // results.json's strategy of each run
};

using Matrix = std::vector<std::vector<double>>;

// Element-wise mean of the runs' matrices; empty when their shapes differ.
Matrix mean_matrix(const std::vector<Matrix>& matrices) {
  if (matrices.empty()) return {};
  Matrix mean = matrices[0];
  for (size_t r = 1; r < matrices.size(); ++r) {
    if (matrices[r].size() != mean.size()) return {};
    for (size_t j = 0; j < mean.size(); ++j) {
      if (matrices[r][j].size() != mean[j].size()) return {};
      for (size_t i = 0; i < mean[j].size(); ++i) mean[j][i] += matrices[r][j][i];
    }
  }
  for (auto& row : mean)
    for (double& value : row) value /= static_cast<double>(matrices.size());
  return mean;
}

std::string file_safe(const std::string& name) {
  std::string safe = name;
  for (char& c : safe)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return safe;
}

// The importance a method consolidates with, pooled over the shared (trunk)
// parameters of its runs, as found in each run's newest checkpoint.
struct Importance {
  std::string tensor;                 // which checkpoint tensors, in words
  std::vector<std::string> checkpoints;
  std::vector<float> log10_positive;  // log10 of every value > 0
  int64_t count = 0, zeros = 0;
  double sum = 0.0, max = 0.0, median = 0.0;
};

// omega.* is ANPyC's Omega(1:t) and SI's and MAS's omega; EWC keeps one
// fisher<k>.* set per task (or one decayed set when online), whose sum is the
// curvature its penalty applies.
std::optional<std::pair<std::string, std::vector<torch::Tensor>>> importance_tensors(const clx::NamedTensors& state) {
  std::vector<torch::Tensor> omega;
  std::map<std::string, torch::Tensor> fisher_sum;
  int64_t fisher_sets = 0;
  for (const auto& [name, tensor] : state) {
    if (name.rfind("omega.", 0) == 0) omega.push_back(tensor.to(torch::kFloat64));
    if (name.rfind("fisher", 0) == 0 && name.find('.') != std::string::npos) {
      const std::string set = name.substr(0, name.find('.')), parameter = name.substr(name.find('.') + 1);
      if (set.find_first_not_of("0123456789", 6) != std::string::npos || set.size() == 6) continue;
      fisher_sets = std::max<int64_t>(fisher_sets, std::stoll(set.substr(6)));
      auto& sum = fisher_sum[parameter];
      sum = sum.defined() ? sum + tensor.to(torch::kFloat64) : tensor.to(torch::kFloat64);
    }
  }
  if (!omega.empty()) return std::make_pair(std::string("omega (the accumulated importance Omega)"), omega);
  if (!fisher_sum.empty()) {
    std::vector<torch::Tensor> sums;
    for (auto& item : fisher_sum) sums.push_back(item.second);
    return std::make_pair(fisher_sets == 1 ? std::string("fisher1 (the Fisher information)")
                                           : "fisher1..fisher" + std::to_string(fisher_sets) +
                                                 " summed (the Fisher information of every task)",
                          sums);
  }
  return std::nullopt;
}

// Reads the newest complete checkpoint of every run (the runtime's reader);
// nothing when no run of the method holds importance tensors.
std::optional<Importance> read_importance(const std::string& method, const Samples& samples) {
  Importance importance;
  std::vector<double> positive;
  for (const std::string& run : samples.run_dirs) {
    const std::filesystem::path folder = std::filesystem::path(run) / "checkpoints";
    if (!std::filesystem::is_directory(folder)) continue;
    std::vector<std::string> problems;
    std::string path;
    const auto state = clx::CheckpointDirectory(folder.string(), 1).load_newest(&problems, &path);
    for (const std::string& problem : problems) std::cerr << "report: warning: " << problem << std::endl;
    if (!state) continue;
    const auto tensors = importance_tensors(state->strategy);
    if (!tensors) continue;
    if (!importance.tensor.empty() && importance.tensor != tensors->first)
      std::cerr << "report: warning: " << method << ": runs hold different importance tensors (" << importance.tensor
                << "; " << tensors->first << ")" << std::endl;
    importance.tensor = tensors->first;
    importance.checkpoints.push_back(path);
    for (const torch::Tensor& tensor : tensors->second) {
      const torch::Tensor flat = tensor.contiguous().view({-1});
      const double* values = flat.data_ptr<double>();
      for (int64_t k = 0; k < flat.numel(); ++k) {
        const double value = values[k];
        ++importance.count;
        importance.sum += value;
        importance.max = std::max(importance.max, value);
        if (value > 0) {
          positive.push_back(value);
          importance.log10_positive.push_back(static_cast<float>(std::log10(value)));
        } else {
          ++importance.zeros;
        }
      }
    }
  }
  if (importance.count == 0) return std::nullopt;
  // The median over every value, zeros included (they sort first).
  const int64_t middle = importance.count / 2;
  if (middle < importance.zeros) {
    importance.median = 0.0;
  } else {
    const auto nth = positive.begin() + (middle - importance.zeros);
    std::nth_element(positive.begin(), nth, positive.end());
    importance.median = *nth;
  }
  return importance;
}

std::string scientific(double value) {
  std::ostringstream text;
  text << std::scientific << std::setprecision(2) << value;
  return text.str();
}

// Histogram of log10(importance) per method, one step line each, as the
// percentage of the method's values in each tenth of a decade. Zeros cannot be
// drawn on a log axis: the key gives their share. Returns the PNG's path, or
// "" when no method has importance values.
std::string write_importance_plot(const std::filesystem::path& dir, const std::vector<std::string>& order,
                                  const std::map<std::string, Importance>& importances, std::ostringstream& script) {
  double low = 1e300, high = -1e300;
  for (const std::string& key : order) {
    if (!importances.count(key) || importances.at(key).log10_positive.empty()) continue;
    std::vector<float> values = importances.at(key).log10_positive;
    // The lowest 1% would stretch the axis over many nearly empty decades; the key gives their share.
    const auto low_quantile = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 100);
    std::nth_element(values.begin(), low_quantile, values.end());
    low = std::min(low, std::floor(static_cast<double>(*low_quantile)));
    high = std::max(high, std::ceil(static_cast<double>(*std::max_element(values.begin(), values.end())) + 1e-9));
  }
  if (low > high) return "";
  constexpr double kBinWidth = 0.1;  // decades
  const int bins = std::max(1, static_cast<int>(std::lround((high - low) / kBinWidth)));
  std::vector<std::pair<std::string, std::string>> curves;  // title, data file
  for (const std::string& key : order) {
    if (!importances.count(key)) continue;
    const Importance& importance = importances.at(key);
    std::vector<int64_t> counts(bins, 0);
    int64_t below = 0;
    for (float value : importance.log10_positive) {
      const int bin = static_cast<int>(std::floor((value - low) / kBinWidth));
      if (bin < 0) ++below;
      else ++counts[std::min(bin, bins - 1)];
    }
    const std::string data = (dir / "data" / (file_safe(key) + "_importance.dat")).string();
    std::ostringstream out;
    out << "# log10(importance) bin centre, percent of the " << importance.count << " values of " << key << "\n";
    for (int b = 0; b < bins; ++b)
      out << low + (b + 0.5) * kBinWidth << " " << 100.0 * static_cast<double>(counts[b]) / static_cast<double>(importance.count)
          << "\n";
    write_file_atomically(data, out.str());
    std::ostringstream title;
    title << key << " (" << std::fixed << std::setprecision(1)
          << 100.0 * static_cast<double>(importance.zeros) / static_cast<double>(importance.count) << "% exactly 0";
    if (below > 0) {
      const double share = 100.0 * static_cast<double>(below) / static_cast<double>(importance.count);
      title << ", ";
      if (share < 0.1) title << "<0.1%";
      else title << share << "%";
      title << " below 1e" << static_cast<int>(low);
    }
    title << ")";
    curves.emplace_back(title.str(), data);
  }
  const std::string png = (dir / "importance_distribution.png").string();
  script << "\nset output '" << png << "'\n"
         << "set title 'Importance of the shared weights after the last task (newest checkpoint of each run)'\n"
         << "set key inside top left\nset xlabel 'log10(importance)'\nset ylabel \"weights per 0.1 decade (% of each method's values)\"\n"
         << "set grid\nset xtics auto\nset xrange [" << low << ":" << high << "]\nset yrange [0:*]\nplot ";
  for (size_t k = 0; k < curves.size(); ++k)
    script << (k ? ", " : "") << "'" << curves[k].second << "' using 1:2 with steps lw 2 title '" << curves[k].first << "'";
  script << "\nunset grid\nunset xrange\nunset yrange\n";
  return png;
}

// Writes the data and a gnuplot script into `directory` and runs gnuplot:
// <method>_accuracy_matrix.png per method (mean over its runs), and
// acc_after_each_task.png / bwt_after_each_task.png with one line per
// sequential method (ACC over the tasks seen so far, BWT so far), and
// importance_distribution.png when runs hold importance tensors. `written`
// receives each PNG with a caption, in the order a reader wants them.
// What the plots draw: accuracy (a fraction, shown in percent, higher is
// better) or a generation run's FID (shown as is, lower is better: its
// heatmap's palette runs the other way, bright for good).
struct PlotScore {
  explicit PlotScore(const std::string& score)
      : accuracy(score == "accuracy"), scale(accuracy ? 100.0 : 1.0), name(accuracy ? "accuracy (%)" : score == "fid" ? "FID" : score),
        file(accuracy ? "accuracy" : score) {}
  bool accuracy;
  double scale;
  std::string name, file;
};

// One method's mean score matrix as a heatmap: its data file and the
// script's lines; returns (caption, png).
std::pair<std::string, std::string> heatmap(const std::filesystem::path& dir, const std::string& key, const Matrix& matrix,
                                            size_t runs, const PlotScore& score, std::ostringstream& script) {
  const size_t tasks = matrix[0].size();
  const std::string name = file_safe(key);
  const std::string data = (dir / "data" / (name + "_matrix.dat")).string();
  std::ostringstream out;
  double largest = 0.0;
  for (const auto& row : matrix) {
    for (size_t i = 0; i < row.size(); ++i) {
      out << (i ? " " : "") << std::fixed << std::setprecision(2) << score.scale * row[i];
      largest = std::max(largest, score.scale * row[i]);
    }
    out << "\n";
  }
  write_file_atomically(data, out.str());
  const bool sequential = matrix.size() == tasks;
  // Accuracy on [0, 100] with bright for high; FID on [0, largest] with bright for low.
  const double top = score.accuracy ? 100.0 : std::max(largest, 1.0);
  const std::string palette = score.accuracy ? "(0 '#440154', 50 '#21918c', 100 '#fde725')"
                                             : "(0 '#fde725', 50 '#21918c', 100 '#440154')";
  std::ostringstream bright;  // the values drawn on the palette's light end take black labels
  bright << std::fixed << std::setprecision(4) << (score.accuracy ? "$3 >= 60" : "$3 <= ");
  if (!score.accuracy) bright << 0.4 * top;
  const std::string png = (dir / (name + "_" + score.file + "_matrix.png")).string();
  script << "\nset output '" << png << "'\n"
         << "set title '" << key << ": " << score.name << " on task i after training " << (sequential ? "task j" : "all tasks")
         << " (mean of " << runs << " run(s))'\n"
         << "unset key\nset xlabel 'task evaluated (i)'\nset ylabel '" << (sequential ? "after training task (j)" : "")
         << "'\nset cbrange [0:" << top << "]\nset cblabel '" << score.name << "'\nset palette defined " << palette << "\n"
         << "set xrange [-0.5:" << tasks - 0.5 << "]\nset yrange [" << matrix.size() - 0.5 << ":-0.5]\n"
         << "set xtics ('1' 0";
  for (size_t i = 1; i < tasks; ++i) script << ", '" << i + 1 << "' " << i;
  script << ")\nset ytics (" << (sequential ? "'1' 0" : "'all' 0");
  for (size_t j = 1; j < matrix.size(); ++j) script << ", '" << j + 1 << "' " << j;
  // Boxes rather than `with image`, which draws nothing for a single row (a joint run's matrix).
  // Labels in black on the light end of the palette, white on the dark end.
  script << ")\nplot '" << data << "' matrix using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder fc palette, '"
         << data << "' matrix using 1:2:(" << bright.str() << " ? sprintf('%.1f', $3) : '') with labels tc rgb 'black' font ',9', '"
         << data << "' matrix using 1:2:(" << bright.str() << " ? '' : sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'\n"
         << "unset xrange\nunset yrange\nset xtics auto\nset ytics auto\n";
  return {key + ": " + score.name + " matrix", png};
}

// A sequential method's curves after each task (mean score over the tasks
// seen so far, BWT so far) as a data file; returns its path.
std::string task_curves(const std::filesystem::path& dir, const std::string& key, const Matrix& matrix,
                        const PlotScore& score) {
  const size_t tasks = matrix[0].size();
  const std::string curve = (dir / "data" / (file_safe(key) + "_curves.dat")).string();
  std::ostringstream curve_out;
  curve_out << "# task_j mean_" << score.file << "_so_far bwt_so_far (" << (score.accuracy ? "percent" : "as is") << ")\n";
  for (size_t j = 0; j < tasks; ++j) {
    double acc = 0.0, bwt = 0.0;
    for (size_t i = 0; i <= j; ++i) acc += matrix[j][i];
    for (size_t i = 0; i < j; ++i) bwt += matrix[j][i] - matrix[i][i];
    curve_out << j + 1 << " " << score.scale * acc / static_cast<double>(j + 1) << " ";
    if (j > 0) curve_out << score.scale * bwt / static_cast<double>(j);
    else curve_out << "NaN";
    curve_out << "\n";
  }
  write_file_atomically(curve, curve_out.str());
  return curve;
}

// The two line plots, one line per sequential method: (method, curve data file).
void curve_plots(const std::filesystem::path& dir, const std::vector<std::pair<std::string, std::string>>& curves,
                 const PlotScore& score, std::ostringstream& script, std::vector<std::pair<std::string, std::string>>& written) {
  using Figure = std::tuple<int, std::string, std::string>;  // data column, what, png
  const std::vector<Figure> figures =
      score.accuracy ? std::vector<Figure>{{2, "ACC over the tasks trained so far (%)", "acc_after_each_task.png"},
                                           {3, "BWT so far (%)", "bwt_after_each_task.png"}}
                     : std::vector<Figure>{
                           {2, "mean " + score.name + " over the tasks trained so far", score.file + "_after_each_task.png"},
                           {3, "BWT so far (" + score.name + "; positive: forgetting)", "bwt_after_each_task.png"}};
  for (const auto& [column, what, file] : figures) {
    script << "\nset output '" << (dir / file).string() << "'\nset title '" << what << ", after each task'\n"
           << "set key outside right\nset xlabel 'after training task'\nset ylabel '" << what << "'\nset grid\n"
           << "set xtics 1\nunset cbrange\nplot ";
    for (size_t k = 0; k < curves.size(); ++k)
      script << (k ? ", " : "") << "'" << curves[k].second << "' using 1:" << column << " with linespoints lw 2 title '"
             << curves[k].first << "'";
    script << "\nunset grid\n";
    written.emplace_back(what + ", after each task", (dir / file).string());
  }
}

// Runs gnuplot on the written script; 1 (with a message) if it cannot.
int run_gnuplot(const std::string& directory, const std::string& script_path) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    std::cerr << "report: error: --plots needs gnuplot (Debian: apt-get install gnuplot-nox); data and script are in "
              << directory << std::endl;
    return 1;
  }
  const std::string command = "gnuplot '" + script_path + "'";
  if (std::system(command.c_str()) != 0) {
    std::cerr << "report: error: gnuplot failed on " << script_path << std::endl;
    return 1;
  }
  return 0;
}

int write_plots(const std::string& directory, const std::vector<std::string>& order,
                const std::map<std::string, Samples>& groups, const std::map<std::string, Importance>& importances,
                const PlotScore& score, std::vector<std::pair<std::string, std::string>>& written) {
  std::vector<std::pair<std::string, std::string>> matrices;  // caption, png
  std::filesystem::create_directories(std::filesystem::path(directory) / "data");
  const std::filesystem::path dir(directory);
  std::ostringstream script;
  script << "# gnuplot script written by report; rerun with: gnuplot " << (dir / "plots.gp").string() << "\n"
         << "set terminal pngcairo size 900,600 font ',11'\nset encoding utf8\nset termoption noenhanced\n";
  std::vector<std::pair<std::string, std::string>> curves;  // method, data file
  for (const std::string& key : order) {
    const Matrix matrix = mean_matrix(groups.at(key).matrices);
    if (matrix.empty()) {
      std::cerr << "report: warning: runs of " << key << " have accuracy matrices of different shapes: no plot" << std::endl;
      continue;
    }
    matrices.push_back(heatmap(dir, key, matrix, groups.at(key).matrices.size(), score, script));
    const size_t tasks = matrix[0].size();
    if (matrix.size() == tasks && tasks >= 2) curves.emplace_back(key, task_curves(dir, key, matrix, score));
  }
  if (!curves.empty()) curve_plots(dir, curves, score, script, written);
  written.insert(written.end(), matrices.begin(), matrices.end());
  const std::string importance_png = write_importance_plot(dir, order, importances, script);
  if (!importance_png.empty()) written.emplace_back("importance of the shared weights", importance_png);
  const std::string script_path = (dir / "plots.gp").string();
  write_file_atomically(script_path, script.str());
  return run_gnuplot(directory, script_path);
}

void add(std::vector<double>& values, const nlohmann::json& value) {
  if (value.is_number()) values.push_back(value.get<double>());
}

struct MeanStd {
  bool defined = false;
  double mean = 0.0, std = 0.0;  // sample standard deviation (0 for one run)
};

MeanStd mean_std(const std::vector<double>& values, double scale) {
  MeanStd result;
  if (values.empty()) return result;
  result.defined = true;
  for (double v : values) result.mean += scale * v;
  result.mean /= static_cast<double>(values.size());
  double variance = 0.0;
  for (double v : values) variance += (scale * v - result.mean) * (scale * v - result.mean);
  result.std = values.size() > 1 ? std::sqrt(variance / static_cast<double>(values.size() - 1)) : 0.0;
  return result;
}

std::string format(const MeanStd& value, const char* separator) {
  if (!value.defined) return std::string("n/a") + (std::string(separator) == "," ? "," : "");
  std::ostringstream text;
  text << std::fixed << std::setprecision(2) << value.mean << separator << value.std;
  return text.str();
}

// The Markdown document: title, notes, the table, which runs each row
// averages, the importance statistics and the plots (linked relative to the
// document, so the folder can be moved or checked in as a whole).
void write_markdown(const std::string& path, const std::string& title, const std::string& notes,
                    const std::string& table, const std::vector<std::string>& order,
                    const std::map<std::string, Samples>& groups, const std::map<std::string, Importance>& importances,
                    const std::vector<std::pair<std::string, std::string>>& plots, const std::string& score) {
  const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
  std::ostringstream doc;
  doc << "# " << title << "\n\n";
  if (!notes.empty()) doc << notes << (notes.back() == '\n' ? "" : "\n") << "\n";
  doc << "## Results\n\nMean ± sample standard deviation over the runs of each method. ";
  if (score == "accuracy")
    doc << "FWT, BWT and ACC in percent, SMT in units of 1e-4 (definitions: DESIGN.md section 4.1; FWT (paper) needs "
           "a joint run's accuracies, FWT (GEM) compares with the untrained network).\n\n";
  else
    doc << "Generation runs: the metrics are DESIGN.md section 4.1's formulas over the " << score
        << " matrix (lower is better), so the mean final " << score
        << " stands for ACC and a positive BWT is forgetting; each run's PNG sample grids are in its samples/ "
           "folder (docs/generation.md).\n\n";
  doc << table << "\nRuns:\n\n";
  for (const std::string& key : order) {
    doc << "- " << key << ":";
    for (const std::string& run : groups.at(key).run_dirs) doc << " `" << run << "`";
    doc << "\n";
  }
  if (!importances.empty()) {
    doc << "\n## Importance\n\nThe importance each method consolidates with, over the shared (trunk) parameters, from "
           "the newest checkpoint of each run (after the last task), pooled over the runs:\n\n"
        << "| method | tensor | runs | values | exactly 0 | median | mean | max |\n|---|---|---|---|---|---|---|---|\n";
    for (const std::string& key : order) {
      if (!importances.count(key)) continue;
      const Importance& importance = importances.at(key);
      doc << "| " << key << " | " << importance.tensor << " | " << importance.checkpoints.size() << " | "
          << importance.count << " | " << std::fixed << std::setprecision(1)
          << 100.0 * static_cast<double>(importance.zeros) / static_cast<double>(importance.count) << "% | "
          << scientific(importance.median) << " | " << scientific(importance.sum / static_cast<double>(importance.count))
          << " | " << scientific(importance.max) << " |\n";
    }
    doc << "\nCheckpoints read:";
    for (const std::string& key : order)
      if (importances.count(key))
        for (const std::string& file : importances.at(key).checkpoints) doc << " `" << file << "`";
    doc << "\n";
  }
  if (!plots.empty()) {
    doc << "\n## Plots\n";
    for (const auto& [caption, png] : plots)
      doc << "\n" << caption << ":\n\n![" << caption << "](" << std::filesystem::absolute(png).lexically_relative(base).string()
          << ")\n";
  }
  write_file_atomically(path, doc.str());
}

}  // namespace

// What ends report with exit code `code`, printed as "report: error: <what>".
struct ReportFailure : std::runtime_error {
  ReportFailure(const std::string& what, int code) : std::runtime_error(what), code(code) {}
  int code;
};

// The runs read, grouped by method in the order they first appear; every run
// has the same score (accuracy | fid).
struct RunGroups {
  std::vector<std::string> order;
  std::map<std::string, Samples> groups;
  std::string score;
};

RunGroups read_runs(const std::vector<std::string>& runs, const std::string& group_by) {
  RunGroups read;
  for (const std::string& run : runs) {
    std::filesystem::path path(run);
    if (!std::filesystem::exists(path)) throw ReportFailure(run + ": no such run folder or results.json", 1);
    if (std::filesystem::is_directory(path)) path /= "results.json";
    std::ifstream file(path);
    if (!file) throw ReportFailure("cannot open " + path.string(), 1);
    try {
      const nlohmann::json results = nlohmann::json::parse(file);
      // Classification runs score accuracy; generation runs FID (results.json's "score").
      const std::string run_score =
          results.contains("score") ? results.at("score").at("name").get<std::string>() : std::string("accuracy");
      if (read.score.empty()) read.score = run_score;
      if (run_score != read.score)
        throw ReportFailure(path.string() + " is scored by " + run_score + ", the runs before it by " + read.score +
                                ": one report covers runs of one score",
                            1);
      const std::string key = group_by == "strategy" ? results.at("strategy").get<std::string>()
                                                     : path.parent_path().parent_path().filename().string();
      if (!read.groups.count(key)) read.order.push_back(key);
      Samples& samples = read.groups[key];
      const nlohmann::json& metrics = results.at("metrics");
      add(samples.acc, metrics.at("acc"));
      add(samples.bwt, metrics.at("bwt"));
      add(samples.fwt_paper, metrics.at("fwt_paper"));
      add(samples.fwt_gem, metrics.at("fwt_gem"));
      add(samples.smt, metrics.at("smt"));
      samples.run_dirs.push_back(path.parent_path().string());
      samples.strategies.push_back(results.at("strategy").get<std::string>());
      samples.matrices.push_back(results.at(read.score + "_matrix").at("stages").get<Matrix>());
    } catch (const nlohmann::json::exception& error) {
      throw ReportFailure(path.string() + " is not a results.json of train (" + error.what() + ")", 1);
    }
  }
  return read;
}

// The table of every method: mean ± sample standard deviation of each metric,
// as Markdown and as CSV. Accuracies are shown in percent; FID as it is (the
// metrics are the same formulas over the FID matrix: "mean FID" is ACC's, a
// positive BWT is forgetting).
struct SummaryTable {
  std::string markdown, csv;
};

SummaryTable summary_table(const RunGroups& read) {
  const std::string& score = read.score;
  const bool generation = score != "accuracy";
  const double scale = generation ? 1.0 : 100.0;
  std::ostringstream markdown, csv;
  if (generation)
    markdown << "| method | runs | FWT (paper) | FWT (GEM) | BWT (" << score << ", positive: forgetting) | mean final "
             << score << " | SMT |\n"
             << "|---|---|---|---|---|---|---|\n";
  else
    markdown << "| method | runs | FWT (paper) | FWT (GEM) | BWT | ACC | SMT (x1e-4) |\n"
             << "|---|---|---|---|---|---|---|\n";
  csv << "method,runs,fwt_paper_mean,fwt_paper_std,fwt_gem_mean,fwt_gem_std,bwt_mean,bwt_std,"
      << (generation ? "mean_" + score : std::string("acc")) << "_mean," << (generation ? "mean_" + score : std::string("acc"))
      << "_std,smt_mean,smt_std\n";
  for (const std::string& key : read.order) {
    const Samples& s = read.groups.at(key);
    const MeanStd cells[] = {mean_std(s.fwt_paper, scale), mean_std(s.fwt_gem, scale), mean_std(s.bwt, scale),
                             mean_std(s.acc, scale), mean_std(s.smt, generation ? 1.0 : 1e4)};
    markdown << "| " << key << " | " << s.acc.size();
    csv << key << "," << s.acc.size();
    for (const MeanStd& cell : cells) {
      markdown << " | " << format(cell, " ± ");
      csv << "," << format(cell, ",");
    }
    markdown << " |\n";
    csv << "\n";
  }
  return {markdown.str(), csv.str()};
}

int run_report(int argc, char** argv) {
  std::vector<std::string> runs;
  std::string csv_path, group_by, plots_dir, markdown_path, notes_path, title;
  po::options_description options(
      "Usage: report RUN_DIR... [--group-by strategy|folder] [--csv FILE] [--plots DIR] [--markdown FILE]\n\n"
      "Summarises runs of `train`: FWT (paper), FWT (GEM), BWT, ACC in percent and\n"
      "SMT (x1e-4) as mean ± sample standard deviation over the runs of each method,\n"
      "with --plots, PNG plots of the accuracy (or, for generation runs, FID) matrices, of ACC (mean FID)\n"
      "and BWT after each task and of the importance distribution (classification runs, from their newest\n"
      "checkpoints), and with --markdown a document\n"
      "with the table, the importance statistics and the plots.\n\nOptions");
  options.add_options()("help,h", "print this help and exit")(
      "csv", po::value<std::string>(&csv_path), "also write the table as CSV to FILE")(
      "plots", po::value<std::string>(&plots_dir),
      "write PNG plots (gnuplot) into DIR: each method's mean accuracy (or FID) matrix as a heatmap, ACC (or mean "
      "FID) and BWT after each task")(
      "markdown", po::value<std::string>(&markdown_path),
      "write a Markdown report to FILE: the table, the importance statistics, the plots of --plots")(
      "title", po::value<std::string>(&title)->default_value("Continual-learning report"), "the Markdown report's title")(
      "notes", po::value<std::string>(&notes_path), "Markdown text inserted under the report's title (e.g. how the runs were made)")(
      "group-by", po::value<std::string>(&group_by)->default_value("strategy"),
      "strategy (results.json's strategy) or folder (the run folder's parent name)")(
      "runs", po::value<std::vector<std::string>>(&runs), "run folders (or results.json files)");
  po::positional_options_description positional;
  positional.add("runs", -1);
  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).positional(positional).run(), values);
    po::notify(values);
  } catch (const po::error& error) {
    std::cerr << "report: error: " << error.what() << "\n(report --help)" << std::endl;
    return 2;
  }
  if (values.count("help") || runs.empty()) {
    std::cout << options << std::endl;
    return values.count("help") ? 0 : 2;
  }
  if (group_by != "strategy" && group_by != "folder") {
    std::cerr << "report: error: --group-by: '" << group_by << "' is not one of strategy, folder" << std::endl;
    return 2;
  }

  RunGroups read;
  SummaryTable table;
  try {
    read = read_runs(runs, group_by);
    table = summary_table(read);
  } catch (const ReportFailure& failure) {
    std::cerr << "report: error: " << failure.what() << std::endl;
    return failure.code;
  }
  const std::vector<std::string>& order = read.order;
  std::map<std::string, Samples>& groups = read.groups;
  const std::string& score = read.score;
  const bool generation = score != "accuracy";
  std::cout << table.markdown;
  if (!csv_path.empty()) {
    write_file_atomically(csv_path, table.csv);
  }
  // Importance: read only when a plot or a document will show it (checkpoints are large).
  std::map<std::string, Importance> importances;
  if (!generation && (!plots_dir.empty() || !markdown_path.empty()))
    for (const std::string& key : order) {
      try {
        if (auto importance = read_importance(key, groups[key])) importances[key] = std::move(*importance);
      } catch (const std::exception& error) {
        std::cerr << "report: warning: " << key << ": importance not read: " << error.what() << std::endl;
      }
    }
  std::vector<std::pair<std::string, std::string>> plots;
  if (!plots_dir.empty() && write_plots(plots_dir, order, groups, importances, PlotScore(score), plots) != 0) return 1;
  if (!markdown_path.empty()) {
    std::string notes;
    if (!notes_path.empty()) {
      try {
        notes = read_text_file(notes_path);
      } catch (const FileError& error) {
        std::cerr << "report: error: --notes: " << error.what() << std::endl;
        return 1;
      }
    }
    write_markdown(markdown_path, title, notes, table.markdown, order, groups, importances, plots, score);
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run_report(argc, argv);
  } catch (const std::exception& error) {
    // A file that cannot be written (full disk, read-only folder), named with the OS reason.
    std::cerr << "report: error: " << error.what() << std::endl;
    return 1;
  }
}
