// train: trains one network on a sequence of tasks with a continual-learning
// algorithm, data-parallel over MPI ranks, and reports the accuracy matrix
// with ACC, BWT and FWT. See README.md and docs/.
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <sstream>
#include <thread>

#include "algorithms/registry.h"
#include "launch/options.h"
#include "models/model_factory.h"
#include "models/dgm_objective.h"
#include "models/gan_objective.h"
#include "models/vae_objective.h"
#include "runtime/collectives.h"
#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/file_io.h"
#include "runtime/folder_lock.h"
#include "runtime/logging.h"
#include "runtime/named_tensors.h"
#include "runtime/results.h"
#include "runtime/text.h"
#include "runtime/trainer.h"

namespace {

using namespace clx;

// Exit codes: 0 done, 1 error, 2 bad command line or config, 3 stopped by
// SIGUSR1/SIGTERM, after writing a checkpoint or before training started (a
// batch script requeues on 3).
constexpr int kExitPreempted = 3;

// Raised by SIGUSR1 or SIGTERM: the ranks agree at the next training step,
// write a checkpoint and exit with kExitPreempted. A second signal exits at once.
std::atomic<int> stop_signals{0};

extern "C" void on_stop_signal(int signal_number) {
  if (stop_signals.fetch_add(1) > 0) std::_Exit(128 + signal_number);
}

// Installs the handlers, then unblocks the signals: the `train` launcher
// (launch/train_launcher.cpp) starts this program with them blocked, so a
// signal that arrived while LibTorch was loading is pending and is handled
// now, as a stop before training.
void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  // Installed before MPI starts: its system calls restart rather than fail with EINTR.
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGUSR1);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &stop, nullptr);
}

// Done before the shared libraries' static initialisers run (.preinit_array:
// right after the dynamic loader has relocated them): LibTorch's take about a
// second on a busy node, a window where a signal would otherwise stay pending
// (or, when train-main is run without the launcher, kill the process). Only
// system calls, which need nothing initialised.
extern "C" void install_stop_handlers_early(int, char**, char**) { install_stop_handlers(); }
__attribute__((section(".preinit_array"), used)) void (*const preinit_stop_handlers)(int, char**, char**) =
    install_stop_handlers_early;

int choose_threads(int64_t requested, int local_ranks) {
  if (requested > 0) return static_cast<int>(requested);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, local_ranks));
}

// Where this job computes and which communicator carries its tensors,
// decided alike on every rank (DESIGN.md §5): CUDA tensors go over NCCL (one
// rank on one GPU needs no mpirun), CPU tensors over MPI or, for one
// process, nowhere.
struct Placement {
  torch::Device device = torch::kCPU;
  std::unique_ptr<Communicator> nccl;  // set when NCCL carries the tensors
  Communicator* data = nullptr;        // the communicator of the tensors
  std::string warning;                 // for the log, which does not exist yet
};

Placement place_on_device(const TrainOptions& options, Communicator& control) {
  Placement placement;
  torch::DeviceType type = torch::kCPU;
  bool use_nccl = false;
  run_on_all_ranks(control, [&] {
    if (options.backend == "nccl" && !nccl_compiled()) make_nccl_communicator(control);  // throws: no NCCL here
    type = resolve_device_type(options.device);
    const bool several_ranks = control.size() > 1;
    // Whether the chosen backend can carry CUDA tensors between this job's ranks.
    const bool carries_cuda = options.backend == "nccl" || options.backend == "single" ||
                              (options.backend == "auto" && (nccl_compiled() || !several_ranks));
    if (options.device == "auto" && type == torch::kCUDA && !carries_cuda) {
      if (options.backend != "mpi")
        placement.warning = "run.device=auto: a GPU is visible, but this build has no NCCL to carry CUDA tensors "
                            "between ranks; training on the CPU";
      type = torch::kCPU;
    }
    if (type == torch::kCUDA) {
      if (options.backend == "mpi")
        throw Error("run.backend=mpi carries CPU tensors only; with run.device=cuda use run.backend=nccl (or auto)");
      if (!carries_cuda)
        throw Error("run.device=cuda with " + std::to_string(control.size()) +
                    " ranks needs the NCCL backend, which this build lacks (CMake found no CUDA toolkit with NCCL)");
      use_nccl = options.backend == "nccl" || (options.backend == "auto" && nccl_compiled());
    } else if (options.backend == "nccl") {
      throw Error("run.backend=nccl carries CUDA tensors only; it needs run.device=cuda (or auto with a visible GPU)");
    }
  });
  require_identical_across_ranks(control, torch::Device(type).str(), "the device type (run.device=" + options.device + ")");
  if (use_nccl) {
    placement.nccl = make_nccl_communicator(control);
    placement.data = placement.nccl.get();
    placement.device = placement.nccl->device();
  } else {
    placement.data = &control;
    placement.device = type == torch::kCUDA ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
  return placement;
}

// The ranks agreed to stop before training started: nothing has been written
// into the run folder, so the same command starts the run again.
class StoppedBeforeTrainingError : public PreemptedError {
 public:
  using PreemptedError::PreemptedError;
};

// A stop (SIGUSR1/SIGTERM) that arrived before training: every rank takes
// part (a signal may reach the ranks at slightly different times), and the
// run ends with the requeue code.
void stop_if_requested(Communicator& comm, const std::string& when) {
  bool stop = stop_signals.load() > 0;
  if (comm.size() > 1)
    for (const std::string& flag : comm.allgather_strings(stop ? "1" : "0")) stop = stop || flag == "1";
  if (stop)
    throw StoppedBeforeTrainingError("stopped by a signal " + when + ", before training started; nothing was "
                                     "written: run the same command again to start");
}

// The checks that need no data, on every rank.
void check_run_options(const TrainOptions& options, int world_size) {
  validate_trainer_config(options.trainer, world_size);
  if (options.threads < 0 || options.threads > 65536)
    throw Error("run.threads: must be in [0, 65536] (0: automatic), got " + std::to_string(options.threads));
  if (options.checkpoint_every_steps < 0) throw Error("run.checkpoint_every_steps: must be >= 0 (0: between tasks only)");
  if (options.keep_checkpoints < 1 || options.keep_checkpoints > std::numeric_limits<int>::max())
    throw Error("run.keep_checkpoints: must be in [1, " + std::to_string(std::numeric_limits<int>::max()) + "], got " +
                std::to_string(options.keep_checkpoints));
  if (!(options.collective_timeout >= 0) || options.collective_timeout > 1e9)
    throw Error("run.collective_timeout: must be in [0, 1e9] seconds (0: never)");
  if (!(options.trainer.progress_seconds > 0)) throw Error("run.progress_seconds: must be positive");
  if (options.progress != "auto" && options.progress != "redraw" && options.progress != "lines" && options.progress != "off")
    throw Error("run.progress: '" + options.progress + "' is not one of auto, redraw, lines, off");
}

// The trainer counts samples, batches and steps in 64-bit integers: options
// whose sums and products with the data sizes would overflow them (and wrap
// around to zero or negative step counts) are refused before the first step.
void check_counts_fit(const TrainerConfig& config, const TaskStream& stream) {
  int64_t train_samples = 0, eval_samples = 0, sum = 0, product = 0;
  for (const Task& task : stream.tasks) {
    train_samples += task.train.size();
    eval_samples = std::max({eval_samples, task.test.size(), task.validation.size()});
  }
  if (__builtin_add_overflow(train_samples, config.batch_size, &sum))
    throw Error("train.batch_size: " + std::to_string(config.batch_size) + " overflows 64-bit sample counts with the " +
                std::to_string(train_samples) + " training samples of this stream");
  if (__builtin_add_overflow(eval_samples, config.eval_batch_size, &sum))
    throw Error("eval.batch_size: " + std::to_string(config.eval_batch_size) +
                " overflows 64-bit sample counts with the " + std::to_string(eval_samples) + " samples of a task");
  if (__builtin_mul_overflow(config.epochs, train_samples, &product))
    throw Error("train.epochs: " + std::to_string(config.epochs) + " epochs of " + std::to_string(train_samples) +
                " samples overflow a 64-bit sample count");
}

// Rank 0 locks the run folder before anything is written into it; a second
// run into the same folder stops here with the holder's name.
FolderLock lock_run_folder(const TrainOptions& options, int world_size) {
  const std::string option = options.resume_dir.empty() ? "--output " : "--resume ";
  std::error_code error;
  std::filesystem::create_directories(options.output_dir, error);
  if (error) throw Error(option + options.output_dir + ": cannot create the run folder: " + error.message());
  const std::string lock_path = (std::filesystem::path(options.output_dir) / ".lock").string();
  try {
    return FolderLock(lock_path, "train (" + std::to_string(world_size) + " rank(s))");
  } catch (const FolderLockedError& locked) {
    throw Error(option + options.output_dir + ": the run folder is in use by " + locked.holder() + " (lock " +
                lock_path + "); a run folder belongs to one run at a time: wait for that run to end, or give this "
                "one another --output");
  }
}

// The checkpoint --resume continues from: the newest one that reads, has
// this run's configuration and fits the model; std::nullopt when the folder
// has none yet. A damaged or unfitting file is skipped (and logged); another
// configuration refuses the resume.
std::optional<CheckpointState> load_resume_checkpoint(const TrainOptions& options, const std::string& checkpoint_dir,
                                                      Communicator& comm, Logger& log, ContinualNet& model,
                                                      Objective* objective, int64_t stages, int64_t tasks,
                                                      std::string* path) {
  auto check = [&](const std::string& file, const CheckpointState& state) {
    // A network that grows (DGM) takes the saved shapes first; their values come with the restore.
    model.prepare_for_saved_state(state.model);
    const NamedTensors live = checkpointed_model_state(model, objective);
    if (const auto difference = first_differing_line(state.config_text, options.experiment_config))
      throw Error("--resume: " + file + ": /config: the checkpoint was written with a different configuration "
                  "(checkpoint '" + difference->first + "' vs now '" + difference->second + "')");
    check_tensors_match(file, "/model", state.model, live);
    if (state.world_size == comm.size() && static_cast<int64_t>(state.rank_states.size()) != state.world_size)
      throw CheckpointError(file, "/ranks", "holds " + std::to_string(state.rank_states.size()) +
                                                " rank states, world_size is " + std::to_string(state.world_size));
    bool rows_fit = state.stage <= stages && static_cast<int64_t>(state.accuracy_stages.size()) == state.stage &&
                    static_cast<int64_t>(state.accuracy_initial.size()) == tasks;
    for (const auto& row : state.accuracy_stages) rows_fit = rows_fit && static_cast<int64_t>(row.size()) == tasks;
    if (!rows_fit)
      throw CheckpointError(file, "/accuracy", "does not fit stage " + std::to_string(state.stage) + " of a run of " +
                                                   std::to_string(stages) + " stage(s) over " + std::to_string(tasks) +
                                                   " task(s)");
  };
  std::optional<CheckpointState> checkpoint;
  std::vector<std::string> problems;
  run_on_all_ranks(comm, [&] {
    CheckpointDirectory directory(checkpoint_dir, static_cast<int>(options.keep_checkpoints));
    checkpoint = directory.load_newest(&problems, path, check);
    if (!checkpoint && !problems.empty()) {
      std::string reasons;
      for (const auto& problem : problems) reasons += "\n  " + problem;
      throw Error("--resume: no usable checkpoint in " + checkpoint_dir + ":" + reasons);
    }
  });
  for (const auto& problem : problems) log.warn("--resume: skipped an unusable checkpoint: " + problem);
  if (!checkpoint) log.info("--resume: no checkpoint in " + checkpoint_dir + " yet; starting from the beginning");
  return checkpoint;
}

// The start is accepted: only now is the run folder written. Rank 0 removes
// temporary files that killed writers left (only under the folder's lock,
// which every writer holds: then no live writer owns them), writes
// config.ini and opens train.log.
void accept_start(const TrainOptions& options, const std::string& checkpoint_dir, Communicator& comm, Logger& log) {
  run_on_all_ranks(comm, [&] {
    if (!comm.is_root()) return;
    const std::filesystem::path dir(options.output_dir);
    std::error_code error;
    std::filesystem::create_directories(dir, error);  // done with the lock, unless run.lock=false
    if (error) throw Error("--output " + options.output_dir + ": cannot create the run folder: " + error.message());
    if (options.lock_output)
      for (const std::string& folder : {options.output_dir, checkpoint_dir})
        for (const std::string& removed : remove_stale_temporaries(folder))
          log.info("removed a stale temporary file in " + folder + ": " + removed);
    write_file_atomically((dir / "config.ini").string(),
                          "# effective configuration of this run (train --config this-file reproduces it)\n" +
                              options.effective_config);
    log.write_to_file((dir / "train.log").string());
  });
}

// The objective of a generation run (model.arch = vae or gan), after the
// checks of what the algorithm can do on a generator.
std::unique_ptr<Objective> make_generation_objective(const TrainOptions& options, ModelArch model_arch) {
  const std::string arch = to_string(model_arch);
  if (!strategy_trains_generators(options.algorithm))
    throw Error("train.algorithm: " + options.algorithm + " needs a classifier; a generation run (model.arch=" + arch +
                ") takes " + generation_strategy_names());
  // Pruning frees the weights a task does not use, and at task 1 every weight of importance 0: on a
  // generator that is much of the network (the passes differentiate what it generates).
  if (options.algorithm == "anpyc" && options.values["anpyc.prune"].as<bool>())
    throw Error("anpyc.prune: pruning is not defined for a generator (model.arch=" + arch +
                "): use anpyc.prune=false (consolidation only)");
  // SGD-F freezes the shared trunk after task 1, and the GAN's generator is all trunk (its class
  // slots are input columns, not heads): from task 2 on nothing would train.
  if (options.algorithm == "sgdf" && model_arch == ModelArch::Gan)
    throw Error("train.algorithm: sgdf freezes the shared trunk after task 1, and the GAN's generator has no per-task "
                "head (model.arch=gan): from task 2 on nothing would train; use sgdf with model.arch=vae, whose "
                "latent layers are per task");
  // True labels name real images; a generator's Fisher is taken on generated ones.
  if (options.algorithm == "ewc" && options.values["ewc.labels"].as<std::string>() != "sampled")
    throw Error("ewc.labels: a generator's Fisher draws its labels from a classifier's prediction on the generated "
                "images: use ewc.labels=sampled");
  GenerationConfig generation;
  generation.fid_features = options.values["generation.fid_features"].as<std::string>();
  generation.fid_checksum = options.values["generation.fid_checksum"].as<std::string>();
  generation.fid_samples = options.values["generation.fid_samples"].as<int64_t>();
  generation.samples_dir = (std::filesystem::path(options.output_dir) / "samples").string();
  generation.sample_columns = options.values["generation.sample_columns"].as<int64_t>();
  generation.save_images = options.values["generation.save_images"].as<bool>();
  if (model_arch == ModelArch::Vae) return std::make_unique<VaeObjective>(generation);
  GanObjectiveConfig gan;
  gan.generation = generation;
  gan.gradient_penalty = options.values["generation.gradient_penalty"].as<double>();
  gan.aux_weight = options.values["generation.aux_weight"].as<double>();
  gan.critic_lr = options.values["generation.critic_lr"].as<double>();
  // DGR on the GAN: the objective replays (the critic trains on the replayed images too).
  gan.replay = options.algorithm == "dgr";
  gan.replay_ratio = options.values["dgr.ratio"].as<double>();
  return std::make_unique<GanObjective>(gan);
}

ModelConfig read_model_config(const TrainOptions& options) {
  ModelConfig config;
  config.arch = parse_model_arch(options.values["model.arch"].as<std::string>());
  config.hidden = parse_layer_sizes(options.hidden_layers, "model.hidden");
  config.dropout = options.dropout;
  config.width = options.values["model.width"].as<double>();
  config.stem = options.values["model.stem"].as<std::string>();
  config.init = parse_model_init(options.values["model.init"].as<std::string>());
  config.vae_hidden = options.values["model.vae_hidden"].as<int64_t>();
  config.vae_latent = options.values["model.vae_latent"].as<int64_t>();
  config.seed = options.trainer.seed;
  config.gan_noise = options.values["model.gan_noise"].as<int64_t>();
  config.dgm_masks = options.values["dgm.masks"].as<std::string>();
  config.dgm_width = options.values["dgm.width"].as<int64_t>();
  validate_model_config(config);
  return config;
}

std::unique_ptr<Objective> make_dgm_objective(const TrainOptions& options) {
  DgmObjectiveConfig dgm;
  dgm.gradient_penalty = options.values["dgm.gradient_penalty"].as<double>();
  dgm.critic_lr = options.values["dgm.critic_lr"].as<double>();
  dgm.reset_critic = options.values["dgm.reset_critic"].as<bool>();
  dgm.seed = options.trainer.seed;
  dgm.samples_dir = (std::filesystem::path(options.output_dir) / "samples").string();
  dgm.sample_columns = options.values["generation.sample_columns"].as<int64_t>();
  // FID when a feature file is named (generation.fid_features): a table beside the accuracy matrix.
  dgm.fid.fid_features = options.values["generation.fid_features"].as<std::string>();
  dgm.fid.fid_checksum = options.values["generation.fid_checksum"].as<std::string>();
  dgm.fid.fid_samples = options.values["generation.fid_samples"].as<int64_t>();
  return std::make_unique<DgmObjective>(dgm);
}

// What the configuration alone decides, before any data is read.
struct RunPlan {
  std::unique_ptr<Strategy> strategy;
  HeadLayout heads = HeadLayout::Multi;
  ModelConfig model_config;
  std::unique_ptr<Objective> objective;  // none: classification
  std::vector<double> joint_accuracies;
};

// The cheap checks, on every rank alike: the strategy, head layout, model and
// objective agree with each other, and the stream and run options are valid.
RunPlan plan_run(TrainOptions& options, int ranks) {
  RunPlan plan;
  plan.strategy = make_strategy(options.algorithm, options.values);
  plan.heads = options.heads == "auto" ? plan.strategy->default_heads() : parse_head_layout(options.heads);
  plan.model_config = read_model_config(options);
  const ModelArch arch = plan.model_config.arch;
  // DGM's generator and its strategy only make sense together.
  if ((arch == ModelArch::Dgm) != (options.algorithm == "dgm"))
    throw Error(arch == ModelArch::Dgm
                    ? "train.algorithm: model.arch=dgm is trained by train.algorithm=dgm only, got " + options.algorithm
                    : "model.arch: train.algorithm=dgm trains DGM's generator, model.arch=dgm; got " + to_string(arch));
  if (arch == ModelArch::Dgm) plan.objective = make_dgm_objective(options);
  const bool generator = arch == ModelArch::Vae || arch == ModelArch::Gan;
  if (!generator && strategy_trains_generators_only(options.algorithm))
    throw Error("train.algorithm: " + options.algorithm + " trains generators only and needs model.arch=vae");
  // Replayed images carry no task: a classifier answers them with one head over every class.
  if (!generator && options.algorithm == "dgr" && plan.heads != HeadLayout::Single)
    throw Error("model.heads: dgr on a classifier replays images without a task, so it needs one head over every "
                "class (model.heads=single); got " + to_string(plan.heads));
  if (generator) {
    // The VAE has one set of latent layers per task, the GAN one class slot per class of the stream,
    // whatever the algorithm's usual layout.
    if (options.heads == "auto") plan.heads = arch == ModelArch::Vae ? HeadLayout::Multi : HeadLayout::Single;
    plan.objective = make_generation_objective(options, arch);
  }
  options.trainer.heads = plan.heads;
  validate_stream_options(options.stream);
  check_run_options(options, ranks);
  if (!options.joint_results.empty()) plan.joint_accuracies = read_final_accuracies(options.joint_results);
  return plan;
}

void log_start(const TrainOptions& options, const Communicator& comm, const Communicator& tensors_comm,
               const Placement& placement, int threads, const Objective* objective, Logger& log) {
  if (!placement.warning.empty()) log.warn(placement.warning);
  log.info("train: " + options.algorithm + " on " + to_string(options.stream.kind) + " " + options.stream.dataset + ", " +
           std::to_string(comm.size()) + " rank(s) over " + tensors_comm.backend() + " on " + placement.device.str() +
           (options.trainer.precision == Precision::Bf16 ? " (bf16 autocast)" : "") + ", " + std::to_string(threads) +
           " thread(s) per rank, output " + options.output_dir);
  if (const auto* generation = dynamic_cast<const GenerationObjective*>(objective)) {
    const FidFeatureInfo& info = generation->feature_info();
    std::ostringstream line;
    line << "FID features: " << info.path << ", checksum " << info.checksum << " (" << info.dataset
         << " LeNet, test accuracy " << info.test_accuracy << "); " << options.values["generation.fid_samples"].as<int64_t>()
         << " generated images per task";
    log.info(line.str());
  }
}

// The task stream, loaded and checked on every rank (the same on every rank,
// or every rank stops), then moved to the compute device: in-memory datasets
// whole (one index_select per batch there); image folders stay on the host
// and send each decoded batch.
TaskStream load_checked_stream(const TrainOptions& options, Communicator& comm, const RunPlan& plan, Logger& log) {
  TaskStream stream;
  run_on_all_ranks(comm, [&] {
    stream = load_task_stream(options.stream);
    check_counts_fit(options.trainer, stream);
    plan.strategy->check_stream(stream);
  });
  require_identical_across_ranks(comm, stream.summary(), "the dataset (task sizes)");
  if (!plan.joint_accuracies.empty() && static_cast<int64_t>(plan.joint_accuracies.size()) != stream.size())
    throw CollectiveError("metrics.joint_results: " + options.joint_results + " has " +
                          std::to_string(plan.joint_accuracies.size()) + " tasks, this stream has " +
                          std::to_string(stream.size()));
  for (const std::string& warning : stream.warnings) log.warn(warning);
  log.info(stream.description + "; " + std::to_string(stream.tasks[0].train.size()) + " training samples in task 1");
  stream.to(options.trainer.device);
  return stream;
}

void write_run_results(const TrainOptions& options, Communicator& comm, const Communicator& tensors_comm,
                       const TaskStream& stream, const RunResult& result, const MetricSummary& metrics,
                       const FolderLock& run_folder_lock, Logger& log) {
  run_on_all_ranks(comm, [&] {
    if (!comm.is_root()) return;
    run_folder_lock.check_in_place();
    RunDescription description{options.algorithm, stream.description, comm.size(), tensors_comm.backend(),
                               options.effective_config};
    write_results(options.output_dir, description, result, metrics);
    std::string written = options.output_dir + "/results.json, " + result.score.name + "_matrix.csv, metrics.csv";
    for (const ResultTable& table : result.tables) written += ", " + table.name + ".csv";
    log.info("results written to " + written);
  });
  if (comm.is_root()) std::cout << "\n" << format_results_table(result, metrics);
}

int run(TrainOptions& options, Communicator& control) {
  Communicator& comm = control;  // until the tensors' communicator is chosen
  RunPlan plan;
  // Cheap checks first, on every rank, before any data is read.
  run_on_all_ranks(comm, [&] { plan = plan_run(options, comm.size()); });
  require_identical_across_ranks(comm, options.effective_config, "the configuration");
  comm.set_collective_timeout(options.collective_timeout);
  // Deterministic algorithms must be chosen before the first CUDA kernel.
  set_deterministic(options.deterministic);
  // Before anything is written to the run folder: a job that cannot run there changes nothing.
  Placement placement = place_on_device(options, control);
  Communicator& tensors_comm = *placement.data;
  if (placement.nccl) placement.nccl->set_collective_timeout(options.collective_timeout);
  options.trainer.device = placement.device;

  const int threads = choose_threads(options.threads, comm.local_size());
  torch::set_num_threads(threads);

  FolderLock run_folder_lock;  // held until the process ends
  run_on_all_ranks(comm, [&] {
    if (comm.is_root() && options.lock_output) run_folder_lock = lock_run_folder(options, comm.size());
  });
  // A run folder deleted under the run must not get a second run's files beside this one's.
  if (run_folder_lock.held()) options.trainer.before_checkpoint = [&run_folder_lock] { run_folder_lock.check_in_place(); };
  stop_if_requested(comm, "while starting");
  Logger log(comm.rank(), "", options.progress);
  log.keep_lines_for_file();
  log_start(options, comm, tensors_comm, placement, threads, plan.objective.get(), log);
  TaskStream stream = load_checked_stream(options, comm, plan, log);

  torch::manual_seed(options.trainer.seed);
  std::shared_ptr<ContinualNet> model;
  // The input shape is known only now; a network that does not fit it fails on every rank alike.
  run_on_all_ranks(comm, [&] {
    plan.model_config.tasks = static_cast<int64_t>(stream.size());
    model = make_continual_net(plan.model_config, stream.input_shape, head_sizes_for(stream, plan.heads));
    model->to(placement.device);
    if (plan.objective) {
      plan.objective->check(*model, stream, plan.heads);
      plan.objective->prepare(*model, stream);
    }
  });
  // Dropout masks differ per rank, as in any data-parallel run.
  torch::manual_seed(mix_seed({options.trainer.seed, 0xd0, static_cast<uint64_t>(comm.rank())}));

  const std::string checkpoint_dir = (std::filesystem::path(options.output_dir) / "checkpoints").string();
  if (options.checkpoints) {
    options.trainer.checkpoint_dir = checkpoint_dir;
    options.trainer.checkpoint_every_steps = options.checkpoint_every_steps;
    options.trainer.keep_checkpoints = options.keep_checkpoints;
  }
  options.trainer.config_text = options.experiment_config;

  std::optional<CheckpointState> resume_from;
  std::string resume_path;
  if (!options.resume_dir.empty())
    resume_from = load_resume_checkpoint(
        options, checkpoint_dir, comm, log, *model, plan.objective.get(),
        static_cast<int64_t>(plan.strategy->stages(static_cast<int>(stream.size())).size()), stream.size(), &resume_path);
  stop_if_requested(comm, "while loading the data");
  accept_start(options, checkpoint_dir, comm, log);

  Trainer trainer(options.trainer, tensors_comm, stream, model, *plan.strategy, log, plan.objective.get());
  trainer.set_stop_flag(&stop_signals);
  RunResult result = trainer.run(resume_from ? &*resume_from : nullptr, resume_path);
  write_run_results(options, comm, tensors_comm, stream, result, summarise(result.matrix, plan.joint_accuracies),
                    run_folder_lock, log);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Already done from .preinit_array; again in case a linker ignored it. A
  // SIGUSR1/SIGTERM during start-up (MPI start, data loading) must end with
  // the requeue code, not kill the process with 128 + signal.
  install_stop_handlers();
  clx::TrainOptions options;
  std::exception_ptr usage_error;
  try {
    options = clx::parse_train_options(argc, argv);
  } catch (...) {
    usage_error = std::current_exception();
  }

  std::unique_ptr<clx::Communicator> comm;
  try {
    // The host-side communicator; CUDA tensors get an NCCL communicator over it in run().
    const bool explicit_host_backend = !usage_error && (options.backend == "mpi" || options.backend == "single");
    comm = explicit_host_backend ? clx::make_communicator(options.backend) : clx::make_control_communicator();
  } catch (const std::exception& error) {
    std::cerr << "train: error: " << error.what() << std::endl;
    return 1;
  }

  bool in_usage_phase = true;
  try {
    clx::run_on_all_ranks(*comm, [&] {
      if (usage_error) std::rethrow_exception(usage_error);
    });
    if (options.help) {
      if (comm->is_root()) std::cout << options.help_text << std::endl;
      return 0;
    }
    in_usage_phase = false;
    return run(options, *comm);
  } catch (const StoppedBeforeTrainingError& error) {
    if (comm->is_root()) std::cerr << "train: " << error.what() << std::endl;
    return kExitPreempted;
  } catch (const clx::PreemptedError& error) {
    if (comm->is_root()) std::cerr << "train: " << error.what() << "; resume with --resume " << options.output_dir << std::endl;
    return kExitPreempted;
  } catch (const clx::CollectiveError& error) {
    // Every rank threw the same error: one message, clean exit everywhere.
    if (comm->is_root()) {
      std::cerr << "train: error: " << error.what() << std::endl;
      if (in_usage_phase) std::cerr << "(train --help lists every option)" << std::endl;
    }
    return in_usage_phase ? 2 : 1;
  } catch (const std::exception& error) {
    // Only this rank failed; the others may be inside a collective, so stop the whole job.
    std::cerr << "train: error on rank " << comm->rank() << " of " << comm->size() << ": " << error.what()
              << std::endl;
    if (comm->size() > 1) comm->abort(1);
    return 1;
  }
}
