#include "launch/options.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "algorithms/registry.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/text.h"

namespace clx {

namespace po = boost::program_options;

namespace {

std::string value_text(const po::variable_value& value) {
  const boost::any& any = value.value();
  if (any.type() == typeid(std::string)) return boost::any_cast<std::string>(any);
  if (any.type() == typeid(int64_t)) return std::to_string(boost::any_cast<int64_t>(any));
  if (any.type() == typeid(uint64_t)) return std::to_string(boost::any_cast<uint64_t>(any));
  if (any.type() == typeid(bool)) return boost::any_cast<bool>(any) ? "true" : "false";
  if (any.type() == typeid(double)) {
    std::ostringstream text;
    text.precision(17);
    text << boost::any_cast<double>(any);
    return text.str();
  }
  return "?";
}

// Reads the INI file at `path` into `values`; `option` names where the path
// came from ("--config") in errors, `hint` is added to an unreadable file's.
void store_config_file(const std::string& path, const std::string& option, const std::string& hint,
                       const po::options_description& file_options, po::variables_map& values) {
  std::string text;
  try {
    text = read_text_file(path);
  } catch (const FileError& error) {
    throw UsageError(option + ": " + error.what() + hint);
  }
  std::istringstream file(text);
  try {
    po::store(po::parse_config_file(file, file_options, false), values);
  } catch (const po::error& error) {
    throw UsageError(path + ": " + error.what());
  }
}

// The values of the config sections ("section.name") end up in config.ini
// (one line each), in checkpoints (text without NUL bytes) and in
// results.json (UTF-8): a value that cannot is refused now, naming the
// option, rather than after the run. (--output, --config and --resume are
// paths used as they are.)
void check_text_values(const po::variables_map& values) {
  for (const auto& [name, value] : values) {
    if (name.find('.') == std::string::npos) continue;
    if (value.empty() || value.value().type() != typeid(std::string)) continue;
    const std::string& text = boost::any_cast<const std::string&>(value.value());
    size_t offset = 0;
    if (!is_valid_utf8(text, &offset))
      throw UsageError("--" + name + ": the value is not valid UTF-8 text (byte " + std::to_string(offset + 1) +
                       " of " + std::to_string(text.size()) + ")");
    for (size_t i = 0; i < text.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        throw UsageError("--" + name + ": the value holds a control character (byte " + std::to_string(i + 1) +
                         " is " + std::to_string(c) + "); values are single lines of text");
    }
  }
}

// The option groups of `train --help`, each bound to the fields of `options` it fills.
po::options_description general_options(TrainOptions& options) {
  po::options_description general("General");
  general.add_options()
      ("help,h", "print this help and exit")
      ("config,c", po::value<std::string>(&options.config_path), "INI config file (see configs/); command-line options override it")
      ("output,o", po::value<std::string>(&options.output_dir)->default_value(""),
       "run folder for results.json, CSVs, train.log, config.ini and checkpoints/ (default: runs/<config name>)")
      ("resume", po::value<std::string>(&options.resume_dir),
       "continue the run in folder DIR from its newest complete checkpoint (config: DIR/config.ini unless --config "
       "is given); with no checkpoint there yet, start it from the beginning (so a batch script can always pass it)");
  return general;
}

// exclude_classes: data.exclude_classes, a list parsed after notify.
po::options_description data_options(TrainOptions& options, std::string& exclude_classes) {
  po::options_description data("Data [data]");
  ImageFolderOptions& folder = options.stream.folder;
  data.add_options()
      ("data.format", po::value<std::string>()->default_value("idx"),
       "idx (MNIST-format files) | image_folder (one sub-folder of images per class, decoded with OpenCV)")
      ("data.stream", po::value<std::string>()->default_value("split"),
       "task stream: split | class_incremental | permuted | multi_dataset (one dataset per task, see data.datasets)")
      ("data.dataset", po::value<std::string>(&options.stream.dataset)->default_value("fashion-mnist"), "dataset name used in logs and results")
      ("data.root", po::value<std::string>(&options.stream.root)->default_value("/usr/share/datasets/fashion-mnist"),
       "idx: folder with train-/t10k- images and labels (plain or .gz; MNIST works the same way); "
       "image_folder: the folder holding one sub-folder per class (e.g. Caltech-101's 101_ObjectCategories)")
      ("data.tasks", po::value<int64_t>(&options.stream.num_tasks)->default_value(5), "number of tasks")
      ("data.datasets", po::value<std::string>(&options.stream.datasets)->default_value(""),
       "multi_dataset: one FORMAT:PATH per task, comma-separated; FORMAT is idx (MNIST-format folder), digits "
       "(scikit-learn's digits.csv.gz), image_folder, svhn (folder of train_32x32.mat, test_32x32.mat), stl10 "
       "(folder of STL-10's binary files) or cifar10 (folder of CIFAR-10's binary batches); every dataset is "
       "resized to data.image_size and data.channels")
      ("data.classes_per_task", po::value<int64_t>(&options.stream.classes_per_task)->default_value(2), "split: classes in each task")
      ("data.task_classes", po::value<std::string>(&options.stream.task_classes)->default_value(""),
       "class_incremental: classes of each task, comma-separated (e.g. 30,25,25,22); empty: all classes split as "
       "evenly as possible over data.tasks")
      ("data.class_order", po::value<std::string>()->default_value("natural"),
       "split, class_incremental: natural (0,1 | 2,3 | ...) or shuffled (seeded by data.seed)")
      ("data.permute_first", po::value<bool>(&options.stream.permute_first)->default_value(false), "permuted: permute task 1 too")
      ("data.seed", po::value<uint64_t>(&options.stream.seed)->default_value(1),
       "seed of permutations, class order, subsets, validation split and an image folder's train/test split")
      ("data.train_samples_per_task", po::value<int64_t>(&options.stream.train_samples_per_task)->default_value(0),
       "use at most this many training samples per task (0: all)")
      ("data.test_samples_per_task", po::value<int64_t>(&options.stream.test_samples_per_task)->default_value(0),
       "evaluate on at most this many test samples per task (0: all)")
      ("data.validation_fraction", po::value<double>(&options.stream.validation_fraction)->default_value(0.0),
       "fraction of each task's training data held out for validation (for tuning; see eval.split)")
      ("data.image_size", po::value<int64_t>(&folder.image_size)->default_value(64),
       "image_folder, multi_dataset: images are resized to this many pixels square")
      ("data.channels", po::value<int64_t>(&folder.channels)->default_value(3), "image_folder, multi_dataset: 1 (grey) or 3 (RGB)")
      ("data.augment", po::value<std::string>(&folder.augment)->default_value("none"),
       "image_folder: none | flip_crop (random horizontal flip and random crop of the zero-padded image, seeded "
       "per sample, the same on any number of ranks and after a resume)")
      ("data.crop_padding", po::value<int64_t>(&folder.crop_padding)->default_value(4), "image_folder: flip_crop's zero padding in pixels")
      ("data.workers", po::value<int64_t>(&folder.workers)->default_value(0),
       "image_folder: decoding threads per rank (0: decode on the training thread)")
      ("data.cache", po::value<bool>(&folder.cache)->default_value(false),
       "image_folder: keep decoded images (uint8, data.image_size) in memory after their first use")
      ("data.prefetch", po::value<bool>(&options.trainer.prefetch)->default_value(true),
       "image_folder: read the next batch (decode, augment, copy to the device) on a helper thread while the "
       "current step trains")
      ("data.bad_images", po::value<std::string>(&folder.bad_images)->default_value("error"),
       "image_folder: a file that is no readable image stops the run (error) or is left out with a warning (skip)")
      ("data.test_fraction", po::value<double>(&folder.test_fraction)->default_value(0.3),
       "image_folder, and digits in multi_dataset: share of each class's images held out as test data (seeded by "
       "data.seed)")
      ("data.exclude_classes", po::value<std::string>(&exclude_classes)->default_value(""),
       "image_folder: class folders to leave out, comma-separated (e.g. BACKGROUND_Google)");
  return data;
}

po::options_description model_options(TrainOptions& options) {
  po::options_description model("Model [model]");
  model.add_options()
      ("model.arch", po::value<std::string>()->default_value("mlp"),
       "network: mlp | lenet (2 conv 5x5 + fc 512, 256) | vgg9 (6 conv + 2 fc layers) | resnet18 (BatchNorm; see "
       "docs/usage.md)")
      ("model.hidden", po::value<std::string>(&options.hidden_layers)->default_value("512,256"), "MLP hidden layer sizes, comma-separated")
      ("model.dropout", po::value<double>(&options.dropout)->default_value(0.0),
       "dropout after each hidden layer (mlp) or fully connected layer (vgg9), in [0, 1)")
      ("model.width", po::value<double>()->default_value(1.0),
       "vgg9, resnet18, gan: channel multiplier (0.25: a quarter of every layer's channels)")
      ("model.stem", po::value<std::string>()->default_value("auto"),
       "resnet18 input stem: small (3x3 conv, for 28-32 px) | imagenet (7x7/2 conv + max-pool, for 224 px) | "
       "auto (imagenet when both sides are at least 128 px)")
      ("model.init", po::value<std::string>()->default_value("default"),
       "initial weights: default (LibTorch's) | truncated_normal (Linear and Conv2d weights N(0, 0.1^2) cut at 2 std, "
       "biases 0.1: the released ANPyC code)")
      ("model.heads", po::value<std::string>(&options.heads)->default_value("auto"),
       "auto (the algorithm's choice) | multi (one head per task) | single (one head over all classes)")
      ("model.vae_hidden", po::value<int64_t>()->default_value(256), "vae: width of the encoder's and decoder's fc layer")
      ("model.vae_latent", po::value<int64_t>()->default_value(32), "vae: latent dimensions of each task's latent layers")
      ("model.gan_noise", po::value<int64_t>()->default_value(100), "gan, dgm: the generator's noise dimensions (dgm writes the one-hot class over its first entries)");
  return model;
}

po::options_description generation_options() {
  po::options_description generation("Generation [generation] (model.arch=vae or gan: docs/generation.md)");
  generation.add_options()
      ("generation.fid_features", po::value<std::string>()->default_value(""),
       "the FID feature classifier file (made by fid-features); required by a generation run")
      ("generation.fid_checksum", po::value<std::string>()->default_value(""),
       "the feature file's checksum this run pins (fid-features prints it); empty: any verified file")
      ("generation.fid_samples", po::value<int64_t>()->default_value(1000),
       "images generated per task for its FID after every stage (the same latent draws every time)")
      ("generation.sample_columns", po::value<int64_t>()->default_value(10),
       "samples per task in the grid written after every stage (<output>/samples/after_task_<j>.png)")
      ("generation.save_images", po::value<bool>()->default_value(false),
       "also write every task's FID images of the latest evaluation to <output>/samples/fid_images/task_<i>.npy "
       "(float32, fid_samples x C x H x W each; scripts/recompute_fid.py recomputes the last FID row from them)")
      ("generation.gradient_penalty", po::value<double>()->default_value(10.0),
       "gan: the WGAN-GP critic's gradient-penalty weight")
      ("generation.aux_weight", po::value<double>()->default_value(1.0),
       "gan: weight of the auxiliary classifier's class loss in the critic's and generator's losses")
      ("generation.critic_lr", po::value<double>()->default_value(2e-4),
       "gan: the critic's Adam learning rate (betas 0.5, 0.9; the generator follows train.optimizer and train.lr)");
  return generation;
}

po::options_description training_options(TrainOptions& options) {
  po::options_description train("Training [train]");
  train.add_options()
      ("train.algorithm", po::value<std::string>(&options.algorithm)->default_value("finetune"),
       ("continual-learning algorithm: " + strategy_names()).c_str())
      ("train.epochs", po::value<int64_t>(&options.trainer.epochs)->default_value(1), "epochs per task")
      ("train.batch_size", po::value<int64_t>(&options.trainer.batch_size)->default_value(128),
       "global batch size, split evenly over the ranks (so any number of ranks follows the same trajectory)")
      ("train.optimizer", po::value<std::string>()->default_value("sgd"), "sgd | adam (fresh state for every task)")
      ("train.lr", po::value<double>(&options.trainer.lr)->default_value(0.01), "learning rate")
      ("train.lr_decay", po::value<double>(&options.trainer.lr_decay)->default_value(1.0),
       "staircase decay of the learning rate within each task: lr * lr_decay^floor(epoch / lr_decay_epochs), epochs "
       "counted over the task's training and any retraining, reset at each task; in (0, 1], 1: constant")
      ("train.lr_decay_epochs", po::value<int64_t>(&options.trainer.lr_decay_epochs)->default_value(1),
       "epochs per step of train.lr_decay")
      ("train.adam_betas", po::value<std::string>()->default_value("0.9,0.999"),
       "Adam's beta1,beta2 (train.optimizer=adam), each in [0, 1); GANs usually take 0.5,0.9 or 0.5,0.999")
      ("train.momentum", po::value<double>(&options.trainer.momentum)->default_value(0.0), "SGD momentum")
      ("train.weight_decay", po::value<double>(&options.trainer.weight_decay)->default_value(0.0), "L2 weight decay")
      ("train.seed", po::value<uint64_t>(&options.trainer.seed)->default_value(1), "seed of initial weights and of the sampling order")
      ("train.bucket_mb", po::value<double>()->default_value(25.0), "gradient all-reduce bucket size in MiB")
      ("train.precision", po::value<std::string>()->default_value("fp32"),
       "fp32 | bf16 (the forward pass under autocast; gradients, optimizer state, importance, masks and penalties stay fp32)")
      ("train.overlap_allreduce", po::value<bool>(&options.trainer.overlap_allreduce)->default_value(true),
       "all-reduce gradient buckets while backward is still running (false: after backward)");
  return train;
}

po::options_description evaluation_options(TrainOptions& options) {
  po::options_description eval("Evaluation [eval]");
  eval.add_options()
      ("eval.split", po::value<std::string>()->default_value("test"),
       "test | validation (tune hyperparameters on validation, never on test)")
      ("eval.batch_size", po::value<int64_t>(&options.trainer.eval_batch_size)->default_value(1024), "evaluation batch size per rank");
  return eval;
}

po::options_description metrics_options(TrainOptions& options) {
  po::options_description metrics("Metrics [metrics]");
  metrics.add_options()
      ("metrics.joint_results", po::value<std::string>(&options.joint_results)->default_value(""),
       "results.json of a joint run on the same stream: its accuracies are m_i of the paper's FWT");
  return metrics;
}

po::options_description run_options(TrainOptions& options) {
  po::options_description run("Run [run]");
  run.add_options()
      ("run.backend", po::value<std::string>(&options.backend)->default_value("auto"),
       "communicator: auto (nccl on GPUs, else mpi under mpirun/srun, else single) | mpi | nccl | single")
      ("run.device", po::value<std::string>(&options.device)->default_value("auto"),
       "auto (cuda when a GPU is visible and usable by this build) | cpu | cuda (one GPU per rank: GPU local_rank)")
      ("run.deterministic", po::value<bool>(&options.deterministic)->default_value(false),
       "deterministic algorithms (cuDNN, cuBLAS): a resumed GPU run equals an uninterrupted one bit for bit (slower)")
      ("run.threads", po::value<int64_t>(&options.threads)->default_value(0),
       "intra-op threads per rank (0: cores of the node / ranks on the node)")
      ("run.progress", po::value<std::string>(&options.progress)->default_value("auto"),
       "progress display: auto (redraw on a terminal; plain lines under mpirun/srun or when redirected) | redraw | lines | off")
      ("run.progress_seconds", po::value<double>(&options.trainer.progress_seconds)->default_value(10.0),
       "seconds between progress lines when output is not a terminal")
      ("run.checkpoints", po::value<bool>(&options.checkpoints)->default_value(true),
       "write HDF5 checkpoints to <output>/checkpoints after every task")
      ("run.checkpoint_every_steps", po::value<int64_t>(&options.checkpoint_every_steps)->default_value(0),
       "also checkpoint every N optimizer steps (0: between tasks only)")
      ("run.keep_checkpoints", po::value<int64_t>(&options.keep_checkpoints)->default_value(3),
       "checkpoints kept (the oldest are deleted)")
      ("run.collective_timeout", po::value<double>(&options.collective_timeout)->default_value(300.0),
       "seconds a collective may wait for the other ranks before the job is ended (a rank died or hangs); 0: never")
      ("run.check_consistency", po::value<bool>(&options.trainer.check_consistency)->default_value(true),
       "compare parameter and strategy-state fingerprints across ranks after every task")
      ("run.lock", po::value<bool>(&options.lock_output)->default_value(true),
       "hold an exclusive lock on the output folder (<output>/.lock) while the run lasts, so that a second run "
       "into it stops at once; false only on file systems without fcntl locks (see cluster/README.md)");
  return run;
}

// Command line first, then the resumed folder's config.ini or --config: Program_options
// keeps the first value stored, so the command line overrides the files.
// Returns false when --help was asked for.
bool store_values(int argc, const char* const* argv, const po::options_description& all,
                  const po::options_description& file_options, TrainOptions& options) {
  try {
    po::store(po::parse_command_line(argc, argv, all), options.values);
    if (options.values.count("help")) {
      po::notify(options.values);
      return false;
    }
    if (options.values.count("resume") && !options.values.count("config")) {
      // A resumed run reads the configuration its first start wrote.
      const std::string path = options.values["resume"].as<std::string>() + "/config.ini";
      store_config_file(path, "--resume", " (is it a run folder of train?)", file_options, options.values);
    }
    if (options.values.count("config"))
      store_config_file(options.values["config"].as<std::string>(), "--config", "", file_options, options.values);
    po::notify(options.values);
  } catch (const po::error& error) {
    throw UsageError(error.what());
  }
  check_text_values(options.values);
  return true;
}

// The run folder: --resume's, --output, or runs/<config name>.
void resolve_output_dir(TrainOptions& options) {
  if (!options.resume_dir.empty()) {
    if (!options.output_dir.empty() && options.output_dir != options.resume_dir)
      throw UsageError("--resume " + options.resume_dir + " and --output " + options.output_dir +
                       " name different folders: a resumed run continues in its own folder");
    options.output_dir = options.resume_dir;
  }
  if (options.output_dir.empty()) {
    std::string stem = "default";
    if (!options.config_path.empty()) {
      stem = options.config_path.substr(options.config_path.find_last_of('/') + 1);
      stem = stem.substr(0, stem.find_last_of('.'));
    }
    options.output_dir = "runs/" + stem;
  }
}

// Options whose values are parsed further: the bucket size, Adam's betas, the optimizer, the evaluation
// split, the precision, the data's format, stream and class order.
void parse_option_values(TrainOptions& options) {
  const double bucket_mb = options.values["train.bucket_mb"].as<double>();
  if (!(bucket_mb > 0.0) || bucket_mb > 1 << 20) {
    std::ostringstream got;
    got << bucket_mb;
    throw UsageError("train.bucket_mb: must be a positive number of MiB, at most 1048576 (1 TiB), got " + got.str());
  }
  options.trainer.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * (1 << 20)));
  {
    const std::vector<std::string> betas = parse_name_list(options.values["train.adam_betas"].as<std::string>());
    char* end = nullptr;
    double parsed[2] = {0, 0};
    bool ok = betas.size() == 2;
    for (size_t k = 0; ok && k < 2; ++k) {
      parsed[k] = std::strtod(betas[k].c_str(), &end);
      ok = end != betas[k].c_str() && *end == '\0';
    }
    if (!ok)
      throw UsageError("train.adam_betas: expected two numbers \"beta1,beta2\" (e.g. 0.5,0.999), got '" +
                       options.values["train.adam_betas"].as<std::string>() + "'");
    options.trainer.adam_beta1 = parsed[0];
    options.trainer.adam_beta2 = parsed[1];
  }
  try {
    options.trainer.optimizer = parse_optimizer_kind(options.values["train.optimizer"].as<std::string>());
    options.trainer.eval_split = parse_eval_split(options.values["eval.split"].as<std::string>());
    options.trainer.precision = parse_precision(options.values["train.precision"].as<std::string>());
    options.stream.format = parse_source_format(options.values["data.format"].as<std::string>());
    options.stream.kind = parse_stream_kind(options.values["data.stream"].as<std::string>());
    options.stream.class_order = parse_class_order(options.values["data.class_order"].as<std::string>());
  } catch (const Error& error) {
    throw UsageError(error.what());
  }
}

// The configuration as a run records it (effective: every file option) and as
// ranks and resumes must agree on it (experiment: without run.* and speed-only options).
void record_config_texts(const po::options_description& file_options, TrainOptions& options) {
  std::ostringstream effective, experiment;
  for (const auto& option : file_options.options()) {
    const std::string& name = option->long_name();
    // Threads, progress display and the timeout are properties of each node, not of the experiment.
    if (name == "run.threads" || name == "run.progress" || name == "run.collective_timeout") continue;
    const std::string line = name + " = " + value_text(options.values[name]) + "\n";
    effective << line;
    // Decoding threads, the image cache and prefetching change speed, not results: a resume may change them.
    const bool speed_only = name == "data.workers" || name == "data.cache" || name == "data.prefetch";
    if (name.compare(0, 4, "run.") != 0 && !speed_only) experiment << line;
  }
  options.effective_config = effective.str();
  options.experiment_config = experiment.str();
}

}  // namespace

TrainOptions parse_train_options(int argc, const char* const* argv) {
  TrainOptions options;
  std::string exclude_classes;
  const po::options_description general = general_options(options);
  po::options_description algorithms("Algorithms [anpyc] [ewc] [si] [mas] [lwf] [hat] [clnp]");
  add_strategy_options(algorithms);
  po::options_description file_options;
  file_options.add(data_options(options, exclude_classes))
      .add(model_options(options))
      .add(generation_options())
      .add(training_options(options))
      .add(algorithms)
      .add(evaluation_options(options))
      .add(metrics_options(options))
      .add(run_options(options));
  po::options_description all("Options (config-file sections in brackets)");
  all.add(general).add(file_options);
  std::ostringstream help;
  help << "Usage: train --config FILE [--output DIR] [--section.option=value ...]\n"
          "       mpirun -np N train --config FILE ...\n\n"
          "Trains one network on a sequence of tasks with a continual-learning algorithm,\n"
          "data-parallel over the ranks, and writes the accuracy matrix with ACC, BWT and\n"
          "FWT to the run folder (results.json, accuracy_matrix.csv, metrics.csv, train.log).\n\n"
       << all;
  options.help_text = help.str();

  if (!store_values(argc, argv, all, file_options, options)) {
    options.help = true;
    return options;
  }
  check_text_values(options.values);
  resolve_output_dir(options);
  parse_option_values(options);
  options.stream.folder.exclude_classes = parse_name_list(exclude_classes);
  record_config_texts(file_options, options);
  return options;
}

}  // namespace clx
