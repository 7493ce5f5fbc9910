// train: trains one network on a sequence of tasks with a continual-learning
// algorithm, data-parallel over MPI ranks, and reports the accuracy matrix
// with ACC, BWT and FWT. See README.md and docs/.
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "algorithms/strategy.h"
#include "launch/options.h"
#include "models/model_factory.h"
#include "runtime/collectives.h"
#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/logging.h"
#include "runtime/results.h"
#include "runtime/trainer.h"

namespace {

using namespace clx;

// Exit codes: 0 done, 1 error, 2 bad command line or config, 3 stopped by
// SIGUSR1/SIGTERM after writing a checkpoint (a batch script requeues on 3).
constexpr int kExitPreempted = 3;

// Raised by SIGUSR1 or SIGTERM: the ranks agree at the next training step,
// write a checkpoint and exit with kExitPreempted. A second signal exits at once.
std::atomic<int> stop_signals{0};

extern "C" void on_stop_signal(int signal_number) {
  if (stop_signals.fetch_add(1) > 0) std::_Exit(128 + signal_number);
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

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

int run(TrainOptions& options, Communicator& control) {
  Communicator& comm = control;  // until the tensors' communicator is chosen
  std::unique_ptr<Strategy> strategy;
  HeadLayout heads = HeadLayout::Multi;
  ModelConfig model_config;
  std::vector<double> joint_accuracies;
  // Cheap checks first, on every rank, before any data is read.
  run_on_all_ranks(comm, [&] {
    strategy = make_strategy(options.algorithm, options.values);
    heads = options.heads == "auto" ? strategy->default_heads() : parse_head_layout(options.heads);
    options.trainer.heads = heads;
    model_config.arch = options.values["model.arch"].as<std::string>();
    model_config.hidden = parse_layer_sizes(options.hidden_layers, "model.hidden");
    model_config.dropout = options.dropout;
    model_config.width = options.values["model.width"].as<double>();
    model_config.stem = options.values["model.stem"].as<std::string>();
    model_config.init = options.values["model.init"].as<std::string>();
    validate_model_config(model_config);
    validate_stream_options(options.stream);
    validate_trainer_config(options.trainer, comm.size());
    if (options.threads < 0) throw Error("run.threads: must be >= 0 (0: automatic)");
    if (options.checkpoint_every_steps < 0) throw Error("run.checkpoint_every_steps: must be >= 0 (0: between tasks only)");
    if (options.keep_checkpoints < 1) throw Error("run.keep_checkpoints: must be at least 1");
    if (options.collective_timeout < 0) throw Error("run.collective_timeout: must be >= 0 (0: never)");
    if (!(options.trainer.progress_seconds > 0)) throw Error("run.progress_seconds: must be positive");
    if (options.progress != "auto" && options.progress != "redraw" && options.progress != "lines" && options.progress != "off")
      throw Error("run.progress: '" + options.progress + "' is not one of auto, redraw, lines, off");
    if (!options.joint_results.empty()) joint_accuracies = read_final_accuracies(options.joint_results);
  });
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

  run_on_all_ranks(comm, [&] {
    if (comm.is_root()) {
      std::filesystem::create_directories(options.output_dir);
      std::ofstream config(std::filesystem::path(options.output_dir) / "config.ini");
      config << "# effective configuration of this run (train --config this-file reproduces it)\n"
             << options.effective_config;
      if (!config) throw Error("--output: cannot write " + options.output_dir + "/config.ini");
    }
  });
  Logger log(comm.rank(), (std::filesystem::path(options.output_dir) / "train.log").string(), options.progress);
  if (!placement.warning.empty()) log.warn(placement.warning);
  log.info("train: " + options.algorithm + " on " + options.stream.kind + " " + options.stream.dataset + ", " +
           std::to_string(comm.size()) + " rank(s) over " + tensors_comm.backend() + " on " + placement.device.str() +
           (options.trainer.precision == Precision::Bf16 ? " (bf16 autocast)" : "") + ", " + std::to_string(threads) +
           " thread(s) per rank, output " + options.output_dir);

  TaskStream stream;
  run_on_all_ranks(comm, [&] { stream = load_task_stream(options.stream); });
  require_identical_across_ranks(comm, stream.summary(), "the dataset (task sizes)");
  if (!joint_accuracies.empty() && static_cast<int64_t>(joint_accuracies.size()) != stream.size())
    throw CollectiveError("metrics.joint_results: " + options.joint_results + " has " +
                          std::to_string(joint_accuracies.size()) + " tasks, this stream has " +
                          std::to_string(stream.size()));
  for (const std::string& warning : stream.warnings) log.warn(warning);
  log.info(stream.description + "; " + std::to_string(stream.tasks[0].train.size()) + " training samples in task 1");
  // In-memory datasets move to the compute device whole (one index_select per
  // batch there); image folders stay on the host and send each decoded batch.
  stream.to(options.trainer.device);

  torch::manual_seed(options.trainer.seed);
  MultiHeadModel model{nullptr};
  // The input shape is known only now; a network that does not fit it fails on every rank alike.
  run_on_all_ranks(comm, [&] {
    model = make_model(model_config, stream.input_shape, head_sizes_for(stream, heads));
    model->to(placement.device);
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
  if (!options.resume_dir.empty()) {
    std::vector<std::string> problems;
    run_on_all_ranks(comm, [&] {
      CheckpointDirectory directory(checkpoint_dir, static_cast<int>(options.keep_checkpoints));
      resume_from = directory.load_newest(&problems, &resume_path);
      if (!resume_from && !directory.files().empty()) {
        std::string reasons;
        for (const auto& problem : problems) reasons += "\n  " + problem;
        throw Error("--resume: no usable checkpoint in " + checkpoint_dir + ":" + reasons);
      }
    });
    for (const auto& problem : problems) log.warn("skipped a damaged checkpoint: " + problem);
    if (!resume_from) log.info("--resume: no checkpoint in " + checkpoint_dir + " yet; starting from the beginning");
  }

  Trainer trainer(options.trainer, tensors_comm, stream, model.ptr(), *strategy, log);
  trainer.set_stop_flag(&stop_signals);
  RunResult result = trainer.run(resume_from ? &*resume_from : nullptr, resume_path);
  const MetricSummary metrics = summarise(result.matrix, joint_accuracies);

  run_on_all_ranks(comm, [&] {
    if (!comm.is_root()) return;
    RunDescription description{options.algorithm, stream.description, comm.size(), tensors_comm.backend(),
                               options.effective_config};
    write_results(options.output_dir, description, result, metrics);
  });
  if (comm.is_root()) {
    std::cout << "\n" << format_results_table(result, metrics);
    log.info("results written to " + options.output_dir + "/results.json, accuracy_matrix.csv, metrics.csv");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
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
    install_stop_handlers();
    return run(options, *comm);
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
