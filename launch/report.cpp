// report: reads run folders (results.json of `train`) and prints, per method,
// FWT, BWT, ACC (and SMT) as mean +- standard deviation over the runs, as a
// Markdown table and optionally a CSV file.
#include <boost/program_options.hpp>
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
};

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
  std::string csv_path, group_by;
  po::options_description options(
      "Usage: report RUN_DIR... [--csv FILE] [--group-by strategy|folder]\n\n"
      "Summarises runs of `train`: FWT (paper), FWT (GEM), BWT, ACC in percent and\n"
      "SMT (x1e-4) as mean ± sample standard deviation over the runs of each method.\n\nOptions");
  options.add_options()("help,h", "print this help and exit")(
      "csv", po::value<std::string>(&csv_path), "also write the table as CSV to FILE")(
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
  return 0;
}
