#include "launch/sweep_plan.h"

#include "runtime/file_io.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <iomanip>
#include <sstream>

namespace clx {
namespace {

namespace fs = std::filesystem;

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

bool is_option_name(const std::string& name) {
  const auto dot = name.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == name.size()) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; });
}

// Method names become folder names and table rows.
bool is_method_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; });
}

// Options the sweep sets itself on every run; a config must not set them too.
const std::map<std::string, std::string>& sweep_owned_options() {
  static const std::map<std::string, std::string> owned = {
      {"train.seed", "sweep.seeds and grid.seed"},
      {"data.seed", "sweep.seeds and grid.seed"},
      {"eval.split", "the sweep (validation for grid runs, test otherwise)"},
      {"data.validation_fraction", "grid.validation_fraction (grid runs; a method may set it for its test runs)"},
      {"metrics.joint_results", "the sweep (the joint run of the same seed)"},
      {"run.threads", "sweep.threads"},
      {"run.checkpoints", "the sweep (checkpoints are what lets it resume an interrupted run)"},
  };
  return owned;
}

// A method (allow_method_options) may set train.algorithm, and
// data.validation_fraction for a method that needs validation data in its
// test runs too (CLNP chooses its pruning threshold on it).
void check_not_owned(const OptionList& options, const std::string& where, bool allow_method_options) {
  for (const auto& setting : options) {
    if (allow_method_options && setting.option == "data.validation_fraction") continue;
    const auto owned = sweep_owned_options().find(setting.option);
    if (owned != sweep_owned_options().end())
      throw Error(where + ": " + setting.option + " is set by " + owned->second + " for every run");
    if (!allow_method_options && setting.option == "train.algorithm")
      throw Error(where + ": train.algorithm is set by the method (define a variant under [methods] instead)");
  }
}

int parse_int(const std::string& text, const std::string& where, int minimum) {
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < minimum)
    throw Error(where + ": '" + text + "' is not an integer >= " + std::to_string(minimum));
  return value;
}

bool parse_bool(const std::string& text, const std::string& where) {
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "true" || lower == "yes" || lower == "on" || lower == "1") return true;
  if (lower == "false" || lower == "no" || lower == "off" || lower == "0") return false;
  throw Error(where + ": '" + text + "' is not true or false");
}

}  // namespace

std::vector<std::string> to_arguments(const OptionList& options) {
  std::vector<std::string> arguments;
  for (const auto& setting : options) arguments.push_back("--" + setting.option + "=" + setting.value);
  return arguments;
}

std::vector<IniEntry> read_ini_file(const std::string& path) {
  std::string text;
  try {
    text = read_text_file(path);
  } catch (const FileError& error) {
    throw Error(error.what());  // a file that cannot be read is bad input, not a failed write
  }
  std::istringstream file(text);
  std::vector<IniEntry> entries;
  std::string section, raw;
  for (int line = 1; std::getline(file, raw); ++line) {
    const std::string where = path + ":" + std::to_string(line);
    std::string text = trim(raw.substr(0, raw.find('#')));
    if (text.empty()) continue;
    if (text.front() == '[') {
      if (text.back() != ']') throw Error(where + ": a section header must end with ']'");
      section = trim(text.substr(1, text.size() - 2));
      if (section.empty()) throw Error(where + ": empty section name");
      continue;
    }
    const auto equals = text.find('=');
    if (equals == std::string::npos) throw Error(where + ": expected 'key = value', got '" + text + "'");
    IniEntry entry{section, trim(text.substr(0, equals)), trim(text.substr(equals + 1)), line};
    if (entry.key.empty()) throw Error(where + ": a key is missing before '='");
    if (section.empty()) throw Error(where + ": '" + entry.key + "' comes before any [section]");
    entries.push_back(entry);
  }
  return entries;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::string current;
  for (char c : text + ",") {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c))) {
      if (!current.empty()) items.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  return items;
}

OptionList parse_option_list(const std::string& text, const std::string& where) {
  OptionList options;
  std::istringstream words(text);
  for (std::string word; words >> word;) {
    std::string setting = word.rfind("--", 0) == 0 ? word.substr(2) : word;
    const auto equals = setting.find('=');
    if (equals == std::string::npos || equals + 1 == setting.size())
      throw Error(where + ": '" + word + "' is not section.option=value");
    OptionSetting parsed{setting.substr(0, equals), setting.substr(equals + 1)};
    if (!is_option_name(parsed.option))
      throw Error(where + ": '" + parsed.option + "' is not an option name of the form section.option");
    for (const auto& earlier : options)
      if (earlier.option == parsed.option) throw Error(where + ": " + parsed.option + " is set twice");
    options.push_back(parsed);
  }
  return options;
}

std::vector<uint64_t> parse_seed_list(const std::string& text, const std::string& where) {
  std::vector<uint64_t> seeds;
  for (const std::string& item : split_list(text)) {
    size_t used = 0;
    uint64_t seed = 0;
    try {
      if (item.front() != '-') seed = std::stoull(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size()) throw Error(where + ": '" + item + "' is not a non-negative integer seed");
    if (std::find(seeds.begin(), seeds.end(), seed) != seeds.end())
      throw Error(where + ": seed " + item + " is listed twice");
    seeds.push_back(seed);
  }
  if (seeds.empty()) throw Error(where + ": no seeds given");
  return seeds;
}

std::vector<GridAxis> parse_grid(const std::string& text, const std::string& where) {
  std::vector<GridAxis> axes;
  std::istringstream parts(text);
  for (std::string part; std::getline(parts, part, ';');) {
    part = trim(part);
    if (part.empty()) continue;
    const auto colon = part.find(':');
    if (colon == std::string::npos)
      throw Error(where + ": '" + part + "' is not 'section.option: value, value, ...'");
    GridAxis axis{trim(part.substr(0, colon)), {}};
    if (!is_option_name(axis.option))
      throw Error(where + ": '" + axis.option + "' is not an option name of the form section.option");
    for (const auto& earlier : axes)
      if (earlier.option == axis.option) throw Error(where + ": " + axis.option + " has two lists of values");
    std::istringstream values(part.substr(colon + 1));
    for (std::string value; std::getline(values, value, ',');) {
      value = trim(value);
      if (value.empty()) throw Error(where + ": " + axis.option + ": an empty value in the list");
      if (value.find_first_of(" \t/=") != std::string::npos)
        throw Error(where + ": " + axis.option + ": value '" + value + "' contains a space, '/' or '='");
      if (std::find(axis.values.begin(), axis.values.end(), value) != axis.values.end())
        throw Error(where + ": " + axis.option + ": value " + value + " is listed twice");
      axis.values.push_back(value);
    }
    if (axis.values.empty()) throw Error(where + ": " + axis.option + " has no values");
    axes.push_back(axis);
  }
  if (axes.empty()) throw Error(where + ": an empty grid");
  return axes;
}

std::vector<OptionList> grid_points(const std::vector<GridAxis>& axes) {
  std::vector<OptionList> points{{}};
  for (const GridAxis& axis : axes) {
    std::vector<OptionList> extended;
    for (const OptionList& point : points)
      for (const std::string& value : axis.values) {
        OptionList longer = point;
        longer.push_back({axis.option, value});
        extended.push_back(longer);
      }
    points = extended;
  }
  return points;
}

std::string grid_point_name(const OptionList& point) {
  std::string name;
  for (const auto& setting : point) name += (name.empty() ? "" : ",") + setting.option + "=" + setting.value;
  return name;
}

std::string test_run_folder(const std::string& method, uint64_t seed) {
  return "runs/" + method + "/seed" + std::to_string(seed);
}

std::optional<uint64_t> test_run_seed(const std::string& folder_name) {
  const std::string prefix = "seed";
  if (folder_name.size() <= prefix.size() || folder_name.compare(0, prefix.size(), prefix) != 0 ||
      folder_name.find_first_not_of("0123456789", prefix.size()) != std::string::npos ||
      folder_name.size() - prefix.size() > 19)  // more digits than a uint64_t holds
    return std::nullopt;
  return std::stoull(folder_name.substr(prefix.size()));
}

// The sweep file's entries by section: [sweep] by key, [methods] and [grid] in file order.
struct SweepFileSections {
  std::string path;
  std::map<std::string, IniEntry> sweep;
  std::vector<IniEntry> grids, method_definitions;

  // "file:line: sweep.key" (or "file: sweep.key" when the key is not set): where a value's error points.
  std::string where_of(const std::string& key) const {
    return sweep.count(key) ? path + ":" + std::to_string(sweep.at(key).line) + ": sweep." + key
                            : path + ": sweep." + key;
  }
  std::optional<std::string> value_of(const std::string& key) const {
    if (!sweep.count(key)) return std::nullopt;
    return sweep.at(key).value;
  }
};

SweepFileSections read_sweep_sections(const std::string& path) {
  SweepFileSections file;
  file.path = path;
  std::map<std::string, IniEntry>& sweep = file.sweep;
  std::vector<IniEntry>& grids = file.grids;
  std::vector<IniEntry>& method_definitions = file.method_definitions;
  static const std::set<std::string> sweep_keys = {"train_config", "output", "methods", "seeds", "ranks",
                                                   "threads", "joint", "options", "mpirun_args"};
  for (const IniEntry& entry : read_ini_file(path)) {
    const std::string where = path + ":" + std::to_string(entry.line);
    if (entry.section == "sweep") {
      if (!sweep_keys.count(entry.key))
        throw Error(where + ": unknown key sweep." + entry.key +
                    " (known: train_config, output, methods, seeds, ranks, threads, joint, options, mpirun_args)");
      if (sweep.count(entry.key)) throw Error(where + ": sweep." + entry.key + " is set twice");
      sweep[entry.key] = entry;
    } else if (entry.section == "grid") {
      for (const auto& earlier : grids)
        if (earlier.key == entry.key) throw Error(where + ": grid." + entry.key + " is set twice");
      grids.push_back(entry);
    } else if (entry.section == "methods") {
      for (const auto& earlier : method_definitions)
        if (earlier.key == entry.key) throw Error(where + ": methods." + entry.key + " is defined twice");
      method_definitions.push_back(entry);
    } else {
      throw Error(where + ": unknown section [" + entry.section + "] (known: [sweep], [methods], [grid])");
    }
  }
  return file;
}

// The methods listed (--methods or sweep.methods), each with its [methods]
// definition's options; joint is not a method here (the sweep adds a joint run
// per seed). Returns whether joint was listed.
bool read_methods(const SweepFileSections& file, const SweepOverrides& overrides, SweepConfig& config) {
  const std::string& path = file.path;
  const std::string methods_where = overrides.methods ? std::string("--methods") : file.where_of("methods");
  const auto methods_text = overrides.methods ? overrides.methods : file.value_of("methods");
  if (!methods_text || split_list(*methods_text).empty())
    throw Error(methods_where + ": no methods given (e.g. methods = finetune, ewc, anpyc)");
  std::set<std::string> listed;
  for (const std::string& name : split_list(*methods_text)) {
    if (!is_method_name(name)) throw Error(methods_where + ": '" + name + "' is not a usable method name (letters, digits, . _ -)");
    if (!listed.insert(name).second) throw Error(methods_where + ": " + name + " is listed twice");
    if (name == "joint") {
      // Listing joint asks for the joint runs, which the sweep then makes once per seed.
      continue;
    }
    SweepMethod method{name, {{"train.algorithm", name}}, {}};
    for (const IniEntry& definition : file.method_definitions)
      if (definition.key == name) {
        const std::string where = path + ":" + std::to_string(definition.line) + ": methods." + name;
        method.options = parse_option_list(definition.value, where);
        check_not_owned(method.options, where, true);
        if (std::none_of(method.options.begin(), method.options.end(),
                         [](const OptionSetting& s) { return s.option == "train.algorithm"; }))
          throw Error(where + ": a method definition needs train.algorithm=<algorithm>");
      }
    config.methods.push_back(method);
  }

  return listed.count("joint") > 0;
}

// [grid]: the validation seed and fraction, and each method's axes (a grid of
// a method this sweep does not run is ignored: the file may serve other sweeps).
void read_grids(const SweepFileSections& file, SweepConfig& config) {
  const std::string& path = file.path;
  for (const IniEntry& entry : file.grids) {
    const std::string where = path + ":" + std::to_string(entry.line) + ": grid." + entry.key;
    if (entry.key == "seed") {
      config.grid_seed = parse_seed_list(entry.value, where).at(0);
    } else if (entry.key == "validation_fraction") {
      size_t used = 0;
      try {
        config.validation_fraction = std::stod(entry.value, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != entry.value.size() || !(config.validation_fraction > 0.0 && config.validation_fraction < 1.0))
        throw Error(where + ": '" + entry.value + "' is not a fraction in (0, 1)");
    } else {
      const std::vector<GridAxis> axes = parse_grid(entry.value, where);
      for (const GridAxis& axis : axes) {
        OptionList as_options{{axis.option, axis.values.front()}};
        check_not_owned(as_options, where, false);
      }
      // A grid for a method this sweep does not run is kept in the file for other sweeps: ignored.
      for (SweepMethod& method : config.methods)
        if (method.name == entry.key) method.grid = axes;
    }
  }
}

SweepConfig load_sweep_config(const std::string& path, const SweepOverrides& overrides) {
  SweepConfig config;
  config.path = path;
  const SweepFileSections file = read_sweep_sections(path);
  auto where_of = [&](const std::string& key) { return file.where_of(key); };
  auto value_of = [&](const std::string& key) { return file.value_of(key); };

  // The base config, relative to the sweep file's folder.
  const auto train_config = value_of("train_config");
  if (!train_config || train_config->empty()) throw Error(path + ": sweep.train_config is required (the base train config)");
  fs::path base = *train_config;
  if (base.is_relative()) base = fs::path(path).parent_path() / base;
  config.train_config = base.lexically_normal().string();
  if (!fs::is_regular_file(config.train_config))
    throw Error(where_of("train_config") + ": " + config.train_config +
                " not found (a relative path is taken from the sweep file's folder)");

  if (overrides.output) {
    config.output = *overrides.output;
  } else if (const auto output = value_of("output"); output && !output->empty()) {
    config.output = *output;
  } else {
    config.output = "runs/" + fs::path(path).stem().string();
  }

  const bool joint_listed = read_methods(file, overrides, config);
  const auto seeds_text = overrides.seeds ? overrides.seeds : value_of("seeds");
  config.seeds = parse_seed_list(seeds_text.value_or("1"), overrides.seeds ? "--seeds" : where_of("seeds"));
  if (overrides.ranks) config.ranks = *overrides.ranks;
  else if (const auto ranks = value_of("ranks")) config.ranks = parse_int(*ranks, where_of("ranks"), 1);
  if (config.ranks < 1) throw Error("--ranks: must be at least 1");
  if (overrides.threads) config.threads = *overrides.threads;
  else if (const auto threads = value_of("threads")) config.threads = parse_int(*threads, where_of("threads"), 0);
  if (config.threads < 0) throw Error("--threads: must be >= 0 (0: automatic)");
  config.joint = joint_listed || parse_bool(value_of("joint").value_or("true"), where_of("joint"));

  config.options = parse_option_list(value_of("options").value_or(""), where_of("options"));
  for (const OptionSetting& setting : overrides.options) {
    auto same = std::find_if(config.options.begin(), config.options.end(),
                             [&](const OptionSetting& s) { return s.option == setting.option; });
    if (same != config.options.end()) same->value = setting.value;  // the command line wins
    else config.options.push_back(setting);
  }
  check_not_owned(config.options, "sweep.options and --set", false);
  std::istringstream mpirun_words(value_of("mpirun_args").value_or(""));
  for (std::string word; mpirun_words >> word;) config.mpirun_args.push_back(word);

  read_grids(file, config);
  return config;
}

std::vector<PlannedRun> plan_runs(const SweepConfig& config) {
  std::vector<PlannedRun> runs;
  for (const SweepMethod& method : config.methods) {
    if (method.grid.empty()) continue;
    for (const OptionList& point : grid_points(method.grid)) {
      PlannedRun run;
      run.kind = RunKind::Grid;
      run.method = method.name;
      run.seed = config.grid_seed;
      run.grid_point = point;
      run.folder = "grid/" + method.name + "/" + grid_point_name(point);
      run.label = "grid " + method.name + " " + grid_point_name(point);
      runs.push_back(run);
    }
  }
  for (uint64_t seed : config.seeds) {
    if (config.joint) {
      PlannedRun run;
      run.kind = RunKind::Joint;
      run.method = "joint";
      run.seed = seed;
      run.folder = test_run_folder("joint", seed);
      run.label = "joint seed " + std::to_string(seed);
      runs.push_back(run);
    }
    for (const SweepMethod& method : config.methods) {
      PlannedRun run;
      run.kind = RunKind::Method;
      run.method = method.name;
      run.seed = seed;
      run.folder = test_run_folder(method.name, seed);
      run.label = method.name + " seed " + std::to_string(seed);
      runs.push_back(run);
    }
  }
  return runs;
}

OptionList run_settings(const SweepConfig& config, const PlannedRun& run, const OptionList& chosen,
                        const std::string& joint_results) {
  struct Source {
    OptionList options;
    std::string name;
  };
  std::vector<Source> sources;
  sources.push_back({config.options, "sweep.options"});
  if (run.kind == RunKind::Joint) {
    sources.push_back({{{"train.algorithm", "joint"}}, "the joint run"});
  } else {
    const auto method = std::find_if(config.methods.begin(), config.methods.end(),
                                     [&](const SweepMethod& m) { return m.name == run.method; });
    if (method == config.methods.end()) throw Error("sweep: no method " + run.method + " in this sweep");
    OptionList method_options = method->options;
    if (run.kind == RunKind::Grid) {
      // The grid scores on grid.validation_fraction: a method's own fraction must agree with it.
      const auto own = std::find_if(method_options.begin(), method_options.end(),
                                    [](const OptionSetting& s) { return s.option == "data.validation_fraction"; });
      if (own != method_options.end()) {
        if (std::stod(own->value) != config.validation_fraction)
          throw Error(run.label + ": methods." + run.method + " sets data.validation_fraction=" + own->value +
                      ", but the grid holds out grid.validation_fraction=" + std::to_string(config.validation_fraction) +
                      ": use one value");
        method_options.erase(own);
      }
    }
    sources.push_back({method_options, "methods." + run.method});
    sources.push_back({run.kind == RunKind::Grid ? run.grid_point : chosen, "grid." + run.method});
  }
  const std::string seed = std::to_string(run.seed);
  OptionList sweep_owned{{"train.seed", seed}, {"data.seed", seed}};
  if (run.kind == RunKind::Grid) {
    std::ostringstream fraction;
    fraction << config.validation_fraction;
    sweep_owned.push_back({"data.validation_fraction", fraction.str()});
    sweep_owned.push_back({"eval.split", "validation"});
  } else {
    sweep_owned.push_back({"eval.split", "test"});
    if (!joint_results.empty()) sweep_owned.push_back({"metrics.joint_results", joint_results});
  }
  sources.push_back({sweep_owned, "the sweep"});

  OptionList settings;
  std::map<std::string, std::string> set_by;
  for (const Source& source : sources)
    for (const OptionSetting& setting : source.options) {
      if (set_by.count(setting.option))
        throw Error(run.label + ": " + setting.option + " is set both by " + set_by[setting.option] + " and by " +
                    source.name);
      set_by[setting.option] = source.name;
      settings.push_back(setting);
    }
  return settings;
}

std::string score_value_text(const RunScore& score) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(2);
  if (score.name == "accuracy") text << 100.0 * score.value << "%";
  else text << score.value;
  return text.str();
}

std::string score_text(const RunScore& score, bool validation) {
  std::string label = "ACC";
  if (score.name != "accuracy") {
    label = "mean ";
    for (char c : score.name) label += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return (validation ? "validation " : "") + label + " " + score_value_text(score);
}

std::optional<size_t> choose_best(const std::vector<GridOutcome>& outcomes) {
  std::optional<size_t> best;
  for (size_t k = 0; k < outcomes.size(); ++k) {
    if (!outcomes[k].validation) continue;
    const RunScore& score = *outcomes[k].validation;
    if (!best) {
      best = k;
      continue;
    }
    const double incumbent = outcomes[*best].validation->value;
    if (score.higher_is_better ? score.value > incumbent : score.value < incumbent) best = k;
  }
  return best;
}

std::optional<RunScore> finished_run_score(const std::string& run_dir) {
  std::ifstream file(fs::path(run_dir) / "results.json");
  if (!file) return std::nullopt;
  try {
    const nlohmann::json results = nlohmann::json::parse(file);
    RunScore score;
    if (results.contains("score")) {
      score.name = results.at("score").at("name").get<std::string>();
      score.higher_is_better = results.at("score").at("higher_is_better").get<bool>();
    }
    const nlohmann::json& acc = results.at("metrics").at("acc");
    if (!acc.is_number() || results.at(score.name + "_matrix").at("stages").empty()) return std::nullopt;
    score.value = acc.get<double>();
    return score;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

std::optional<double> finished_run_seconds(const std::string& run_dir) {
  std::ifstream file(fs::path(run_dir) / "results.json");
  if (!file) return std::nullopt;
  try {
    const nlohmann::json seconds = nlohmann::json::parse(file).at("total_seconds");
    if (!seconds.is_number()) return std::nullopt;
    return seconds.get<double>();
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace clx
