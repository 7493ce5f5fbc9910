// report: reads run folders (results.json of `train`) and prints, per method,
// FWT, BWT, ACC (and SMT) as mean +- standard deviation over the runs, as a
// Markdown table and optionally a CSV file.
#include <boost/program_options.hpp>
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
#include <sstream>

namespace po = boost::program_options;

namespace {

struct Samples {
  std::vector<double> acc, bwt, fwt_paper, fwt_gem, smt;
  std::vector<std::vector<std::vector<double>>> matrices;  // each run's accuracy matrix (stages x tasks)
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

// Writes the data and a gnuplot script into `directory` and runs gnuplot:
// <method>_accuracy_matrix.png per method (mean over its runs), and
// acc_after_each_task.png / bwt_after_each_task.png with one line per
// sequential method (ACC over the tasks seen so far, BWT so far).
int write_plots(const std::string& directory, const std::vector<std::string>& order,
                const std::map<std::string, Samples>& groups) {
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
    const size_t tasks = matrix[0].size();
    const std::string name = file_safe(key);
    const std::string data = (dir / "data" / (name + "_matrix.dat")).string();
    std::ofstream out(data);
    for (const auto& row : matrix) {
      for (size_t i = 0; i < row.size(); ++i) out << (i ? " " : "") << std::fixed << std::setprecision(2) << 100 * row[i];
      out << "\n";
    }
    const bool sequential = matrix.size() == tasks;
    script << "\nset output '" << (dir / (name + "_accuracy_matrix.png")).string() << "'\n"
           << "set title '" << key << ": accuracy (%) on task i after training " << (sequential ? "task j" : "all tasks")
           << " (mean of " << groups.at(key).matrices.size() << " run(s))'\n"
           << "unset key\nset xlabel 'task evaluated (i)'\nset ylabel '" << (sequential ? "after training task (j)" : "")
           << "'\nset cbrange [0:100]\nset cblabel 'accuracy (%)'\nset palette defined (0 '#440154', 50 '#21918c', 100 '#fde725')\n"
           << "set xrange [-0.5:" << tasks - 0.5 << "]\nset yrange [" << matrix.size() - 0.5 << ":-0.5]\n"
           << "set xtics ('1' 0";
    for (size_t i = 1; i < tasks; ++i) script << ", '" << i + 1 << "' " << i;
    script << ")\nset ytics (" << (sequential ? "'1' 0" : "'all' 0");
    for (size_t j = 1; j < matrix.size(); ++j) script << ", '" << j + 1 << "' " << j;
    script << ")\nplot '" << data << "' matrix with image, '" << data
           << "' matrix using 1:2:(sprintf('%.1f', $3)) with labels tc rgb 'white' font ',9'\n"
           << "unset xrange\nunset yrange\nset xtics auto\nset ytics auto\n";
    if (!sequential || tasks < 2) continue;
    const std::string curve = (dir / "data" / (name + "_curves.dat")).string();
    std::ofstream curve_out(curve);
    curve_out << "# task_j acc_so_far_percent bwt_so_far_percent\n";
    for (size_t j = 0; j < tasks; ++j) {
      double acc = 0.0, bwt = 0.0;
      for (size_t i = 0; i <= j; ++i) acc += matrix[j][i];
      for (size_t i = 0; i < j; ++i) bwt += matrix[j][i] - matrix[i][i];
      curve_out << j + 1 << " " << 100 * acc / static_cast<double>(j + 1) << " ";
      if (j > 0) curve_out << 100 * bwt / static_cast<double>(j);
      else curve_out << "NaN";
      curve_out << "\n";
    }
    curves.emplace_back(key, curve);
  }
  if (!curves.empty()) {
    for (const auto& [column, what, file] :
         {std::tuple<int, std::string, std::string>{2, "ACC over the tasks trained so far (%)", "acc_after_each_task.png"},
          std::tuple<int, std::string, std::string>{3, "BWT so far (%)", "bwt_after_each_task.png"}}) {
      script << "\nset output '" << (dir / file).string() << "'\nset title '" << what << ", after each task'\n"
             << "set key outside right\nset xlabel 'after training task'\nset ylabel '" << what << "'\nset grid\n"
             << "set xtics 1\nunset cbrange\nplot ";
      for (size_t k = 0; k < curves.size(); ++k)
        script << (k ? ", " : "") << "'" << curves[k].second << "' using 1:" << column << " with linespoints lw 2 title '"
               << curves[k].first << "'";
      script << "\nunset grid\n";
    }
  }
  const std::string script_path = (dir / "plots.gp").string();
  std::ofstream(script_path) << script.str();
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

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> runs;
  std::string csv_path, group_by, plots_dir;
  po::options_description options(
      "Usage: report RUN_DIR... [--csv FILE] [--group-by strategy|folder]\n\n"
      "Summarises runs of `train`: FWT (paper), FWT (GEM), BWT, ACC in percent and\n"
      "SMT (x1e-4) as mean ± sample standard deviation over the runs of each method,\n"
      "and with --plots, PNG plots of the accuracy matrices and of ACC and BWT after each task.\n\nOptions");
  options.add_options()("help,h", "print this help and exit")(
      "csv", po::value<std::string>(&csv_path), "also write the table as CSV to FILE")(
      "plots", po::value<std::string>(&plots_dir),
      "write PNG plots (gnuplot) into DIR: each method's mean accuracy matrix as a heatmap, ACC and BWT after each task")(
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

  std::vector<std::string> order;
  std::map<std::string, Samples> groups;
  for (const std::string& run : runs) {
    std::filesystem::path path(run);
    if (!std::filesystem::exists(path)) {
      std::cerr << "report: error: " << run << ": no such run folder or results.json" << std::endl;
      return 1;
    }
    if (std::filesystem::is_directory(path)) path /= "results.json";
    std::ifstream file(path);
    if (!file) {
      std::cerr << "report: error: cannot open " << path.string() << std::endl;
      return 1;
    }
    nlohmann::json results;
    try {
      results = nlohmann::json::parse(file);
      const std::string key = group_by == "strategy" ? results.at("strategy").get<std::string>()
                                                     : path.parent_path().parent_path().filename().string();
      if (!groups.count(key)) order.push_back(key);
      Samples& samples = groups[key];
      const nlohmann::json& metrics = results.at("metrics");
      add(samples.acc, metrics.at("acc"));
      add(samples.bwt, metrics.at("bwt"));
      add(samples.fwt_paper, metrics.at("fwt_paper"));
      add(samples.fwt_gem, metrics.at("fwt_gem"));
      add(samples.smt, metrics.at("smt"));
      samples.matrices.push_back(results.at("accuracy_matrix").at("stages").get<Matrix>());
    } catch (const nlohmann::json::exception& error) {
      std::cerr << "report: error: " << path.string() << " is not a results.json of train (" << error.what() << ")"
                << std::endl;
      return 1;
    }
  }

  std::ostringstream markdown, csv;
  markdown << "| method | runs | FWT (paper) | FWT (GEM) | BWT | ACC | SMT (x1e-4) |\n"
           << "|---|---|---|---|---|---|---|\n";
  csv << "method,runs,fwt_paper_mean,fwt_paper_std,fwt_gem_mean,fwt_gem_std,bwt_mean,bwt_std,acc_mean,acc_std,"
         "smt_mean,smt_std\n";
  for (const std::string& key : order) {
    const Samples& s = groups[key];
    const MeanStd cells[] = {mean_std(s.fwt_paper, 100), mean_std(s.fwt_gem, 100), mean_std(s.bwt, 100),
                             mean_std(s.acc, 100), mean_std(s.smt, 1e4)};
    markdown << "| " << key << " | " << s.acc.size();
    csv << key << "," << s.acc.size();
    for (const MeanStd& cell : cells) {
      markdown << " | " << format(cell, " ± ");
      csv << "," << format(cell, ",");
    }
    markdown << " |\n";
    csv << "\n";
  }
  std::cout << markdown.str();
  if (!csv_path.empty()) {
    std::ofstream out(csv_path);
    out << csv.str();
    if (!out) {
      std::cerr << "report: error: cannot write " << csv_path << std::endl;
      return 1;
    }
  }
  if (!plots_dir.empty()) return write_plots(plots_dir, order, groups);
  return 0;
}
