// bench: measures the framework against what it must beat, side by side in
// one run, and prints each comparison as a table (ours, the reference, the
// ratio, the target). docs/benchmarks.md keeps the tables and the commands.
//
//   mpirun -np 2 build/bench                       every suite
//   mpirun -np 2 build/bench --suite allreduce     one suite
//   build/bench --suite overhead,passes --device cuda --precision bf16 --models mlp,resnet18
//   build/bench --suite overhead --device cuda --backend nccl   (adds the one-rank NCCL overhead)
//   build/bench --help
//
// Suites that compare against one rank (overhead, passes, checkpoint, loader) run on
// rank 0 while the other ranks wait; scaling and allreduce use every rank, and so
// does generation for its scaling table (its other two tables are rank 0's).
// On a GPU every timed interval starts and ends with torch::cuda::synchronize(),
// so the clocks read finished work, not queued kernels.
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "algorithms/finetune.h"
#include "algorithms/importance.h"
#include "models/model_factory.h"
#include "models/vae_net.h"
#include "models/gan_objective.h"
#include "models/vae_objective.h"
#include "runtime/fid.h"
#include "runtime/checkpoint.h"
#include "runtime/communicator.h"
#include "runtime/data/image_folder.h"
#include "runtime/data/synthetic_images.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/gradient_reducer.h"
#include "runtime/logging.h"
#include "runtime/trainer.h"
#ifdef CLX_HAVE_MPI
#include "runtime/mpi_communicator.h"
#endif

namespace po = boost::program_options;
using clx::Communicator;

namespace {

const char* const kSuites = "overhead,scaling,allreduce,passes,checkpoint,loader,generation";

struct BenchOptions {
  std::vector<std::string> suites;
  std::vector<std::string> models;
  torch::Device device = torch::kCPU;  // overhead and passes: where models, data and the loops run
  std::string precision = "fp32";      // fp32 | bf16 (autocast for the forward pass)
  std::string backend = "auto";        // the communicator of scaling, allreduce and the NCCL overhead row
  double width = 1.0;                  // vgg9, resnet18: channel multiplier
  std::string data_root = "/usr/share/datasets/fashion-mnist";
  int64_t batch = 128;  // per rank
  int64_t mlp_steps = 300, conv_steps = 12;
  int repeats = 3;
  int threads = 1;
  std::string scratch = "/tmp";
  std::string json_path, ddp_json;
  double lr = 0.01, momentum = 0.9;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0.0 : values[values.size() / 2];
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');)
    if (!item.empty()) items.push_back(item);
  return items;
}

// One line of a comparison table.
struct Row {
  std::string measure;
  double ours = 0, reference = 0;
  std::string unit;
  std::string target;  // e.g. ">= 0.97"; empty: reported only
  double target_ratio = 0;
  bool higher_is_better = true;  // of the ratio ours / reference
};

struct Table {
  std::string title, ours_label, reference_label;
  std::vector<Row> rows;
};

std::string fixed(double value, int digits) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(digits) << value;
  return text.str();
}

std::string digits_for(double value) { return fixed(value, value >= 100 ? 0 : value >= 10 ? 1 : 2); }

void print_table(const Table& table) {
  std::cout << "\n### " << table.title << "\n\n| measure | " << table.ours_label << " | " << table.reference_label
            << " | ratio | target | met |\n|---|---:|---:|---:|---|---|\n";
  for (const Row& row : table.rows) {
    const double ratio = row.reference > 0 ? row.ours / row.reference : 0.0;
    std::string met = "";
    if (!row.target.empty())
      met = (row.higher_is_better ? ratio >= row.target_ratio : ratio <= row.target_ratio) ? "yes" : "**no**";
    std::cout << "| " << row.measure << " | " << digits_for(row.ours) << " " << row.unit << " | "
              << digits_for(row.reference) << " " << row.unit << " | " << fixed(ratio, 3) << " | " << row.target
              << " | " << met << " |\n";
  }
  std::cout.flush();
}

nlohmann::json to_json(const Table& table) {
  nlohmann::json rows = nlohmann::json::array();
  for (const Row& row : table.rows)
    rows.push_back({{"measure", row.measure},
                    {"ours", row.ours},
                    {"reference", row.reference},
                    {"unit", row.unit},
                    {"ratio", row.reference > 0 ? row.ours / row.reference : 0.0},
                    {"target", row.target}});
  return {{"title", table.title}, {"ours", table.ours_label}, {"reference", table.reference_label}, {"rows", rows}};
}

// ---- data and models ---------------------------------------------------------

struct Data {
  std::shared_ptr<const clx::LabelledImages> train, test;
};

// One task holding every class, with `samples` training images: a plain
// classification problem, the same for the framework and the bare loop.
clx::TaskStream one_task_stream(const Data& data, int64_t samples) {
  clx::StreamConfig config;
  config.kind = clx::StreamKind::Split;
  config.num_tasks = 1;
  config.classes_per_task = 10;
  config.train_samples_per_task = std::min<int64_t>(samples, data.train->size());
  config.test_samples_per_task = 1000;
  return clx::build_task_stream(config, data.train, data.test);
}

// The model on the benchmark's device; vgg9 and resnet18 at --width.
clx::MultiHeadModel bench_model(const std::string& arch, const clx::TaskStream& stream, const BenchOptions& options,
                                uint64_t seed) {
  torch::manual_seed(seed);
  clx::ModelConfig config;
  config.arch = clx::parse_model_arch(arch);
  if (arch != "mlp") config.width = options.width;
  clx::MultiHeadModel model =
      clx::make_model(config, stream.input_shape, clx::head_sizes_for(stream, clx::HeadLayout::Multi));
  model->to(options.device);
  return model;
}

// Waits for the device's queued work, so that a clock read after it measures finished work.
void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

int64_t steps_for(const BenchOptions& options, const std::string& arch) {
  return arch == "mlp" ? options.mlp_steps : options.conv_steps;
}

// ---- the two training loops ----------------------------------------------------

clx::TrainerConfig trainer_config(const BenchOptions& options, int64_t global_batch) {
  clx::TrainerConfig config;
  config.device = options.device;
  config.precision = clx::parse_precision(options.precision);
  config.epochs = 1;
  config.batch_size = global_batch;
  config.lr = options.lr;
  config.momentum = options.momentum;
  config.progress_seconds = 1e9;
  config.check_consistency = false;
  return config;
}

// Seconds the framework's trainer takes for one stage of one epoch over the
// stream's task, by its own clock (which ends after the epoch's last loss has
// been read back from the device).
double framework_epoch_seconds(Communicator& comm, const clx::TaskStream& stream, const std::string& arch,
                               const clx::TrainerConfig& config, const BenchOptions& options) {
  clx::Logger silent(1, "", "off");
  clx::FinetuneStrategy strategy;
  clx::MultiHeadModel model = bench_model(arch, stream, options, 1);
  clx::Trainer trainer(config, comm, stream, model.ptr(), strategy, silent);
  synchronize(options.device);
  return trainer.train_stage(0, {0}).train_seconds;
}

// The loop a user would write by hand with LibTorch: same model, optimizer,
// batches drawn from the same in-memory data, no framework.
// The data on the device, as the trainer keeps MNIST-scale data there.
double bare_epoch_seconds(const clx::TaskStream& stream, const std::string& arch, const BenchOptions& options,
                          int64_t batch) {
  clx::MultiHeadModel model = bench_model(arch, stream, options, 1);
  model->train();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(options.lr).momentum(options.momentum));
  const clx::TaskData& data = stream.tasks[0].train;
  const torch::Tensor images = data.inputs(torch::arange(data.size(), torch::kInt64)).to(options.device);
  const torch::Tensor labels = data.local_labels.to(options.device);
  const torch::Tensor order = torch::randperm(data.size(), torch::TensorOptions(torch::kInt64).device(options.device));
  const int64_t steps = data.size() / batch;
  synchronize(options.device);
  const auto start = Clock::now();
  for (int64_t step = 0; step < steps; ++step) {
    const torch::Tensor positions = order.narrow(0, step * batch, batch);
    optimizer.zero_grad();
    torch::Tensor loss;
    {
      clx::AutocastScope autocast(options.device, clx::parse_precision(options.precision));
      loss = torch::nn::functional::cross_entropy(model->logits(images.index_select(0, positions), 0),
                                                  labels.index_select(0, positions));
    }
    loss.backward();
    optimizer.step();
  }
  synchronize(options.device);
  return seconds_since(start);
}

// Runs `work` on rank 0 alone while the other ranks wait, so that it has a core to itself.
template <typename Fn>
void on_root_alone(Communicator& comm, Fn&& work) {
  if (comm.is_root()) {
    try {
      work();
    } catch (...) {
      comm.barrier();
      throw;
    }
  }
  comm.barrier();
}

// ---- suites -------------------------------------------------------------------------

// "cpu, fp32, 1 thread" or "cuda:0, bf16": where and how the one-rank suites run.
std::string device_text(const BenchOptions& options) {
  std::string text = options.device.str() + ", " + options.precision;
  if (options.device.is_cpu()) text += ", " + std::to_string(options.threads) + " thread";
  return text;
}

// The framework against the bare loop on one rank; with comm on the NCCL
// backend (one rank, --backend nccl), also the framework over NCCL against
// the framework over the single-process communicator.
std::vector<Table> overhead_suite(Communicator& comm, const Data& data, const BenchOptions& options) {
  const std::string setting = device_text(options) + ", batch " + std::to_string(options.batch) +
                              ", steps/s (median of " + std::to_string(options.repeats) + ")";
  Table table{"Framework overhead: one rank, " + setting, "framework", "bare LibTorch loop", {}};
  const bool nccl_row = comm.backend() == "nccl" && comm.size() == 1;
  Table nccl{"One-rank NCCL overhead: framework over NCCL vs single-process, " + setting, "nccl (1 rank)",
             "single", {}};
  // The CPU target is this project's own (97% of the bare loop); on a GPU the
  // issue's target is 95% of PyTorch eager (scripts/gpu_check.sh compares), and
  // the bare LibTorch loop is held to the same 95%.
  const double target = options.device.is_cpu() ? 0.97 : 0.95;
  const std::string target_text = options.device.is_cpu() ? ">= 0.97" : ">= 0.95";
  on_root_alone(comm, [&] {
    clx::SingleCommunicator single;
    for (const std::string& arch : options.models) {
      const int64_t steps = steps_for(options, arch);
      const clx::TaskStream stream = one_task_stream(data, steps * options.batch);
      const auto config = trainer_config(options, options.batch);
      std::vector<double> ours, bare, over_nccl;
      bare_epoch_seconds(stream, arch, options, options.batch);  // warm-up: allocator, BLAS buffers, cuDNN plans
      for (int r = 0; r < options.repeats; ++r) {
        bare.push_back(steps / bare_epoch_seconds(stream, arch, options, options.batch));
        ours.push_back(steps / framework_epoch_seconds(single, stream, arch, config, options));
        if (nccl_row) over_nccl.push_back(steps / framework_epoch_seconds(comm, stream, arch, config, options));
      }
      table.rows.push_back({arch, median(ours), median(bare), "steps/s", target_text, target, true});
      if (nccl_row) nccl.rows.push_back({arch, median(over_nccl), median(ours), "steps/s", ">= 0.97", 0.97, true});
    }
  });
  if (!nccl_row) return {table};
  return {table, nccl};
}

// Samples/s of the framework on every rank of `comm` with `per_rank_batch` each.
double framework_samples_per_second(Communicator& comm, const Data& data, const std::string& arch,
                                    const BenchOptions& options, int64_t steps, bool overlap, double bucket_mb) {
  const int64_t global_batch = options.batch * comm.size();
  const clx::TaskStream stream = one_task_stream(data, steps * global_batch);
  auto config = trainer_config(options, global_batch);
  config.overlap_allreduce = overlap;
  config.bucket_bytes = static_cast<int64_t>(bucket_mb * (1 << 20));
  std::vector<double> rates;
  for (int r = 0; r < options.repeats; ++r)
    rates.push_back(static_cast<double>(steps * global_batch) / framework_epoch_seconds(comm, stream, arch, config, options));
  return median(rates);
}

std::vector<Table> scaling_suite(Communicator& comm, const Data& data, const BenchOptions& options,
                                 std::map<std::string, double>* steps_per_second) {
  const int n = comm.size();
  Table scaling{"Scaling: " + std::to_string(n) + " ranks x " + std::to_string(options.threads) +
                    " thread vs 1 rank, batch " + std::to_string(options.batch) + " per rank, samples/s",
                std::to_string(n) + " ranks", std::to_string(n) + " x 1 rank", {}};
  Table variants{"All-reduce overlap and bucket size: " + std::to_string(n) + " ranks, MLP, samples/s",
                 "variant", "default (overlap on, 25 MiB)", {}};
  for (const std::string& arch : options.models) {
    const int64_t steps = steps_for(options, arch);
    double one_rank = 0;
    on_root_alone(comm, [&] {
      clx::SingleCommunicator single;
      one_rank = framework_samples_per_second(single, data, arch, options, steps, true, 25);
    });
    torch::Tensor shared = torch::tensor({one_rank}, torch::kFloat64);
    comm.broadcast(shared, 0);
    one_rank = shared.item<double>();
    const double many = framework_samples_per_second(comm, data, arch, options, steps, true, 25);
    (*steps_per_second)[arch] = many / (options.batch * n);
    scaling.rows.push_back({arch, many, n * one_rank, "samples/s", n > 1 ? ">= 0.95" : "", 0.95, true});
    if (arch == "mlp" && n > 1) {
      for (auto [overlap, mb] : std::vector<std::pair<bool, double>>{{false, 25}, {true, 1}, {true, 5}, {true, 100}}) {
        const double rate = framework_samples_per_second(comm, data, arch, options, steps, overlap, mb);
        variants.rows.push_back({std::string(overlap ? "overlap on" : "overlap off") + ", " + fixed(mb, 0) + " MiB",
                                 rate, many, "samples/s", "", 0, true});
      }
    }
  }
  if (variants.rows.empty()) return {scaling};
  return {scaling, variants};
}

Table allreduce_suite(Communicator& comm, const BenchOptions& options) {
  const int n = comm.size();
  Table table{"All-reduce bus bandwidth: " + std::to_string(n) + " ranks, float32, busbw = 2(n-1)/n x bytes / time, GB/s",
              "GradientReducer", "raw MPI_Allreduce", {}};
  if (n < 2) return table;
#ifdef CLX_HAVE_MPI
  auto* mpi = dynamic_cast<clx::MpiCommunicator*>(&comm);
  if (mpi == nullptr) return table;
  const double bus_factor = 2.0 * (n - 1) / n;
  for (int64_t megabytes : {1, 25, 100}) {
    const int64_t bytes = megabytes << 20, elements = bytes / 4;
    // The same iteration count on every rank, by size: a collective loop must not decide per rank.
    const int iterations = static_cast<int>(std::clamp<int64_t>((2048LL << 20) / bytes, 8, 400));
    auto timed = [&](const std::function<void()>& once) {
      once();  // warm-up: MPI's shared-memory segments, page faults
      std::vector<double> times;
      for (int r = 0; r < options.repeats; ++r) {
        comm.barrier();
        const auto start = Clock::now();
        for (int k = 0; k < iterations; ++k) once();
        torch::Tensor elapsed = torch::tensor({seconds_since(start) / iterations}, torch::kFloat64);
        comm.allreduce(elapsed, clx::ReduceOp::Max);  // the slowest rank decides
        times.push_back(elapsed.item<double>());
      }
      return bus_factor * static_cast<double>(bytes) / median(times) / 1e9;
    };
    torch::Tensor raw = torch::ones({elements});
    const double raw_busbw = timed([&] {
      MPI_Allreduce(MPI_IN_PLACE, raw.data_ptr(), static_cast<int>(elements), MPI_FLOAT, MPI_SUM, mpi->comm());
    });
    // What overlapping costs on this backend: the non-blocking collective on its own.
    const double nonblocking_busbw = timed([&] {
      MPI_Request request;
      MPI_Iallreduce(MPI_IN_PLACE, raw.data_ptr(), static_cast<int>(elements), MPI_FLOAT, MPI_SUM, mpi->comm(), &request);
      MPI_Wait(&request, MPI_STATUS_IGNORE);
    });
    // Gradients of layer-sized tensors (at most 1 Mi elements each), handed to
    // the reducer as backward hands them over: fresh tensors, not its buckets.
    std::vector<torch::Tensor> parameters, gradients;
    for (int64_t left = elements; left > 0; left -= std::min<int64_t>(left, 1 << 20)) {
      parameters.push_back(torch::zeros({std::min<int64_t>(left, 1 << 20)}));
      gradients.push_back(torch::ones({std::min<int64_t>(left, 1 << 20)}));
    }
    clx::GradientReducer reducer(comm, parameters);
    const double reducer_busbw = timed([&] {
      for (size_t k = 0; k < parameters.size(); ++k) parameters[k].mutable_grad() = gradients[k];
      reducer.reduce();
    });
    table.rows.push_back({std::to_string(megabytes) + " MB (" + std::to_string(reducer.bucket_count()) + " bucket" +
                              (reducer.bucket_count() > 1 ? "s" : "") + ")",
                          reducer_busbw, raw_busbw, "GB/s", ">= 0.90", 0.90, true});
    table.rows.push_back({std::to_string(megabytes) + " MB, raw MPI_Iallreduce + MPI_Wait (non-blocking, not used)",
                          nonblocking_busbw, raw_busbw, "GB/s", "", 0, true});
  }
#endif
  return table;
}

std::vector<Table> passes_suite(Communicator& comm, const Data& data, const BenchOptions& options) {
  Table importance{"ANPyC importance pass vs one training epoch over the same data (1 rank, " + device_text(options) +
                       ", batch " + std::to_string(options.batch) + "), seconds",
                   "importance pass", "training epoch", {}};
  Table fisher{"EWC per-sample Fisher on 1000 samples vs one training epoch over 1000 samples (1 rank, " +
                   device_text(options) + "), seconds",
               "Fisher", "training epoch", {}};
  on_root_alone(comm, [&] {
    clx::SingleCommunicator single;
    clx::Logger silent(1, "", "off");
    for (const std::string& arch : options.models) {
      const clx::TaskStream stream = one_task_stream(data, steps_for(options, arch) * options.batch);
      const clx::TaskStream thousand = one_task_stream(data, 1000);
      const auto config = trainer_config(options, options.batch);
      clx::MultiHeadModel model = bench_model(arch, stream, options, 1);
      auto context_for = [&](const clx::TaskStream& s) {
        clx::StageContext context{*model, single, s, silent, clx::HeadLayout::Multi, 0, {0}};
        context.batch_size = options.batch;
        context.seed = 1;
        return context;
      };
      std::vector<double> epoch, pass, epoch_1000, fisher_1000;
      // A timed pass: the device's queue empty at the start and drained at the end.
      auto timed = [&](const std::function<void()>& pass_once) {
        synchronize(options.device);
        const auto start = Clock::now();
        pass_once();
        synchronize(options.device);
        return seconds_since(start);
      };
      for (int r = 0; r < options.repeats; ++r) {
        epoch.push_back(framework_epoch_seconds(single, stream, arch, config, options));
        auto context = context_for(stream);
        pass.push_back(timed([&] { clx::entropy_taylor_importance(context, 0, clx::EntropyTaylorSettings{options.batch}); }));
        epoch_1000.push_back(framework_epoch_seconds(single, thousand, arch, config, options));
        auto context_1000 = context_for(thousand);
        fisher_1000.push_back(timed([&] { clx::fisher_diagonal(context_1000, 0, 1000, true); }));
      }
      importance.rows.push_back({arch, median(pass), median(epoch), "s", "<= 1.0", 1.0, false});
      fisher.rows.push_back({arch, median(fisher_1000), median(epoch_1000), "s", "< 3.0", 3.0, false});
    }
  });
  return {importance, fisher};
}

// ---- continual generation -----------------------------------------------------------

// The VAE of configs/generation_vae_fmnist.ini (hidden 256, latent 32), one task.
clx::VaeNet bench_vae(const BenchOptions& options, uint64_t seed) {
  torch::manual_seed(seed);
  clx::VaeConfig config;
  config.tasks = 1;
  config.seed = seed;
  clx::VaeNet vae(config);
  vae->to(options.device);
  return vae;
}

// The conditional GAN of configs/generation_gan_fmnist.ini without BatchNorm
// (as a data-parallel run trains it), with a class slot per class of the stream.
clx::GanNet bench_gan(const BenchOptions& options, int64_t classes) {
  torch::manual_seed(7);
  clx::GanConfig gan;
  gan.classes = classes;
  gan.batch_norm = false;
  clx::GanNet net(gan);
  net->to(options.device);
  return net;
}

// Seconds the trainer takes for task 1 of `stream` (fine-tuning) on `comm`,
// training `model` under `objective`.
double generator_stage_seconds(Communicator& comm, const clx::TrainerConfig& config, const clx::TaskStream& stream,
                               std::shared_ptr<clx::ContinualNet> model, clx::Objective& objective,
                               torch::Device device) {
  clx::Logger silent(1, "", "off");  // rank 1's logger prints nothing: the timed epochs stay quiet
  clx::FinetuneStrategy strategy;
  clx::Trainer trainer(config, comm, stream, std::move(model), strategy, silent, &objective);
  synchronize(device);
  return trainer.train_stage(0, {0}).train_seconds;
}

// Samples/s of the trainer on the VAE or the GAN ("vae" | "gan") over every
// rank of `comm`, options.batch samples per rank, one task of `steps` global
// batches, median of options.repeats; `feature_file` is the FID feature file
// the objectives load (training does not read it).
double generator_samples_per_second(Communicator& comm, const Data& data, const BenchOptions& options,
                                    const std::string& generator, int64_t steps, const std::string& feature_file) {
  const int64_t global_batch = options.batch * comm.size();
  const clx::TaskStream stream = one_task_stream(data, steps * global_batch);
  clx::TrainerConfig config = trainer_config(options, global_batch);
  config.optimizer = clx::OptimizerKind::Adam;
  clx::GenerationConfig generation;
  generation.fid_features = feature_file;
  std::vector<double> rates;
  for (int r = 0; r < options.repeats; ++r) {
    double seconds = 0;
    if (generator == "vae") {
      config.lr = 1e-3;
      clx::VaeNet vae = bench_vae(options, 1);
      clx::VaeObjective objective(generation);
      seconds = generator_stage_seconds(comm, config, stream, vae.ptr(), objective, options.device);
    } else {
      config.lr = 2e-4;
      config.heads = clx::HeadLayout::Single;
      clx::GanNet net = bench_gan(options, stream.num_classes);
      clx::GanObjectiveConfig gan;
      gan.generation = generation;
      clx::GanObjective objective(gan);
      seconds = generator_stage_seconds(comm, config, stream, net.ptr(), objective, options.device);
    }
    rates.push_back(static_cast<double>(steps * global_batch) / seconds);
  }
  return median(rates);
}

// What the generation suite measures of one generator on one rank (medians):
// training steps/s by the trainer and by a hand-written loop, the seconds of
// the FID of 10,000 generated images, and of one epoch of a one-class task
// (6,000 images) at the trainer's speed.
struct GeneratorTimings {
  double framework_steps = 0, bare_steps = 0, fid_seconds = 0, epoch_seconds = 0;
};

// What both generators' timings share: the one-task stream and its images on
// the device, the trainer's settings, the FID feature network and file, and
// the real test images' statistics the FID is computed against.
struct GenerationBench {
  const BenchOptions& options;
  int64_t batch, steps;
  clx::TaskStream stream;
  torch::Tensor images, labels;  // the task's training images and classes, on the device
  clx::TrainerConfig config;
  clx::GenerationConfig objective;  // names the feature file
  clx::FidFeatureNet& features;
  clx::GaussianStatistics real;

  template <typename Bare, typename Framework, typename Fid>
  GeneratorTimings time(Bare&& bare_seconds, Framework&& framework_seconds, Fid&& fid_seconds) const {
    bare_seconds();  // warm-up: allocator, BLAS buffers
    std::vector<double> ours, bare, fid, epochs;
    const double batches_per_epoch = static_cast<double>((6000 + batch - 1) / batch);
    for (int r = 0; r < options.repeats; ++r) {
      bare.push_back(steps / bare_seconds());
      ours.push_back(steps / framework_seconds());
      fid.push_back(fid_seconds());
      epochs.push_back(batches_per_epoch / ours.back());
    }
    return {median(ours), median(bare), median(fid), median(epochs)};
  }
};

// The VAE by the trainer (VAE objective, Adam 1e-3) against the ELBO, backward
// and Adam step written out; the FID of 10,000 samples of the untrained VAE.
GeneratorTimings time_vae(const GenerationBench& bench) {
  const BenchOptions& options = bench.options;
  clx::TrainerConfig config = bench.config;
  config.lr = 1e-3;
  auto bare_seconds = [&] {
    clx::VaeNet vae = bench_vae(options, 1);
    torch::optim::Adam adam(vae->parameters(), torch::optim::AdamOptions(1e-3));
    const torch::Tensor order =
        torch::randperm(bench.images.size(0), torch::TensorOptions(torch::kInt64).device(options.device));
    synchronize(options.device);
    const auto start = Clock::now();
    for (int64_t step = 0; step < bench.steps; ++step) {
      adam.zero_grad();
      vae->vae->elbo_loss(bench.images.index_select(0, order.narrow(0, step * bench.batch, bench.batch)), 0)
          .loss.backward();
      adam.step();
    }
    synchronize(options.device);
    return seconds_since(start);
  };
  auto framework_seconds = [&] {
    clx::SingleCommunicator single;
    clx::VaeObjective objective(bench.objective);
    return generator_stage_seconds(single, config, bench.stream, bench_vae(options, 1).ptr(), objective, options.device);
  };
  auto fid_seconds = [&] {
    clx::VaeNet vae = bench_vae(options, 1);
    vae->eval();
    synchronize(options.device);
    const auto start = Clock::now();
    const double value = clx::frechet_distance(bench.features.statistics(vae->vae->sample(10000, 0, 7)), bench.real);
    synchronize(options.device);
    if (!std::isfinite(value)) throw clx::Error("bench: the FID of the untrained VAE is not finite");
    return seconds_since(start);
  };
  return bench.time(bare_seconds, framework_seconds, fid_seconds);
}

// The conditional GAN by the trainer (GAN objective: WGAN-GP critic step, then
// the generator's, both Adam 2e-4) against the two steps written out; the FID
// of 10,000 images of the untrained GAN through the objective's scoring.
GeneratorTimings time_gan(const GenerationBench& bench) {
  const BenchOptions& options = bench.options;
  const int64_t batch = bench.batch;
  clx::TrainerConfig config = bench.config;
  config.heads = clx::HeadLayout::Single;
  config.lr = 2e-4;
  clx::GanObjectiveConfig gan_objective;
  gan_objective.generation = bench.objective;
  gan_objective.generation.fid_samples = 10000;
  auto bare_seconds = [&] {
    clx::GanNet net = bench_gan(options, bench.stream.num_classes);
    clx::ConditionalCritic critic(net->config());
    critic->to(options.device);
    torch::optim::Adam generator_adam(net->parameters(), torch::optim::AdamOptions(2e-4));
    torch::optim::Adam critic_adam(critic->parameters(), torch::optim::AdamOptions(2e-4).betas({0.5, 0.9}));
    const auto on_device = torch::TensorOptions().device(options.device);
    const torch::Tensor order = torch::randperm(bench.images.size(0), on_device.dtype(torch::kInt64));
    synchronize(options.device);
    const auto start = Clock::now();
    for (int64_t step = 0; step < bench.steps; ++step) {
      const torch::Tensor rows = order.narrow(0, step * batch, batch);
      const torch::Tensor real = bench.images.index_select(0, rows) * 2 - 1, classes = bench.labels.index_select(0, rows);
      critic_adam.zero_grad();
      torch::Tensor fake;
      {
        torch::NoGradGuard no_grad;
        fake = net->generator->forward(torch::randn({batch, net->config().noise_dim}, on_device), classes);
      }
      const torch::Tensor e = torch::rand({batch, 1, 1, 1}, on_device);
      const torch::Tensor mixed = (e * real + (1 - e) * fake).requires_grad_(true);
      const torch::Tensor slope =
          torch::autograd::grad({critic->forward(mixed, classes).score.sum()}, {mixed}, {}, true, true)[0];
      const auto on_real = critic->forward(real, classes), on_fake = critic->forward(fake, classes);
      ((on_fake.score - on_real.score).mean() + 10 * (slope.flatten(1).norm(2, 1) - 1).pow(2).mean() +
       torch::nn::functional::cross_entropy(on_real.aux_logits, classes))
          .backward();
      critic_adam.step();
      generator_adam.zero_grad();
      const auto judged = critic->forward(
          net->generator->forward(torch::randn({batch, net->config().noise_dim}, on_device), classes), classes);
      (-judged.score.mean() + torch::nn::functional::cross_entropy(judged.aux_logits, classes)).backward();
      generator_adam.step();
    }
    synchronize(options.device);
    return seconds_since(start);
  };
  auto framework_seconds = [&] {
    clx::SingleCommunicator single;
    clx::GanObjective objective(gan_objective);
    return generator_stage_seconds(single, config, bench.stream, bench_gan(options, bench.stream.num_classes).ptr(),
                                   objective, options.device);
  };
  auto fid_seconds = [&] {
    clx::GanNet net = bench_gan(options, bench.stream.num_classes);
    clx::GanObjective objective(gan_objective);
    objective.prepare(*net, bench.stream);
    torch::NoGradGuard no_grad;
    synchronize(options.device);
    const auto start = Clock::now();
    const double value =
        clx::frechet_distance(bench.features.statistics(objective.scoring_images(*net, bench.stream, 0, 7)), bench.real);
    synchronize(options.device);
    if (!std::isfinite(value)) throw clx::Error("bench: the FID of the untrained GAN is not finite");
    return seconds_since(start);
  };
  return bench.time(bare_seconds, framework_seconds, fid_seconds);
}

// n ranks against n times one rank alone, as the scaling suite does for
// classifiers, for the VAE and the GAN by the trainer.
Table generator_scaling(Communicator& comm, const Data& data, const BenchOptions& options, int64_t steps) {
  const int n = comm.size();
  Table scaling{"Generator scaling: " + std::to_string(n) + " ranks x " + std::to_string(options.threads) +
                    " thread vs 1 rank, batch " + std::to_string(options.batch) + " per rank, samples/s",
                std::to_string(n) + " ranks", std::to_string(n) + " x 1 rank", {}};
  // Every rank writes its own copy of the same seeded feature file: no shared folder is assumed.
  const std::string feature_file = (std::filesystem::path(options.scratch) /
                                    ("clx_bench_fid_scaling_" + std::to_string(::getpid()) + ".h5")).string();
  torch::manual_seed(3);
  clx::FidFeatureNet features({1, 28, 28}, 10);
  clx::save_fid_features(feature_file, features);
  for (const std::string generator : {"vae", "gan"}) {
    double one_rank = 0;
    on_root_alone(comm, [&] {
      clx::SingleCommunicator single;
      one_rank = generator_samples_per_second(single, data, options, generator, steps, feature_file);
    });
    torch::Tensor shared = torch::tensor({one_rank}, torch::kFloat64);
    comm.broadcast(shared, 0);
    const double many = generator_samples_per_second(comm, data, options, generator, steps, feature_file);
    scaling.rows.push_back({generator, many, n * shared.item<double>(), "samples/s", ">= 0.95", 0.95, true});
  }
  std::filesystem::remove(feature_file);
  return scaling;
}

// The VAE of configs/generation_vae_fmnist.ini and the conditional GAN of
// configs/generation_gan_fmnist.ini on one rank: the trainer's steps against
// the same steps written by hand, and the FID of 10,000 generated images
// (generation, features, statistics, distance against real statistics
// computed beforehand, as a run does) against one training epoch of a
// one-class task (6,000 images) at the framework's speed; with several ranks
// also both generators' scaling.
std::vector<Table> generation_suite(Communicator& comm, const Data& data, const BenchOptions& options) {
  const int64_t batch = options.batch, steps = options.conv_steps * 4;
  const std::string setting = device_text(options) + ", batch " + std::to_string(batch);
  Table speed{"Generator training steps: one rank, " + setting + ", Adam, steps/s (median of " +
                  std::to_string(options.repeats) + ")",
              "framework", "bare LibTorch loop", {}};
  Table fid{"FID of 10,000 generated images vs one generator training epoch on 6,000 images (" + setting + "), seconds",
            "FID", "epoch", {}};
  on_root_alone(comm, [&] {
    // An untrained, seeded feature classifier: FID's cost does not depend on its weights.
    const std::string feature_file =
        (std::filesystem::path(options.scratch) / ("clx_bench_fid_" + std::to_string(::getpid()) + ".h5")).string();
    torch::manual_seed(3);
    clx::FidFeatureNet features({1, 28, 28}, 10);
    clx::save_fid_features(feature_file, features);
    features.to(options.device);
    clx::TaskStream stream = one_task_stream(data, steps * batch);
    const clx::TaskData& train = stream.tasks[0].train;
    const torch::Tensor all = torch::arange(train.size(), torch::kInt64);
    GenerationBench bench{options,
                          batch,
                          steps,
                          stream,
                          train.inputs(all).to(options.device),
                          train.labels(all, clx::HeadLayout::Single).to(options.device),
                          trainer_config(options, batch),
                          {},
                          features,
                          features.statistics(data.test->images)};
    bench.config.optimizer = clx::OptimizerKind::Adam;
    bench.objective.fid_features = feature_file;
    const GeneratorTimings vae = time_vae(bench), gan = time_gan(bench);
    std::filesystem::remove(feature_file);
    speed.rows.push_back({"vae", vae.framework_steps, vae.bare_steps, "steps/s", ">= 0.95", 0.95, true});
    speed.rows.push_back({"gan (WGAN-GP critic step + generator step)", gan.framework_steps, gan.bare_steps, "steps/s",
                          ">= 0.95", 0.95, true});
    fid.rows.push_back({"vae", vae.fid_seconds, vae.epoch_seconds, "s", "<= 0.25", 0.25, false});
    fid.rows.push_back({"gan", gan.fid_seconds, gan.epoch_seconds, "s", "<= 0.25", 0.25, false});
  });
  if (comm.size() == 1) return {speed, fid};
  return {speed, fid, generator_scaling(comm, data, options, steps)};
}

int64_t file_bytes(const std::string& path) { return static_cast<int64_t>(std::filesystem::file_size(path)); }

Table checkpoint_suite(Communicator& comm, const Data& data, const BenchOptions& options) {
  Table table{"Checkpoints: ResNet-18 with ANPyC's state (parameters, buffers, momentum, theta_old, omega, masks)",
              "measured", "reference", {}};
  on_root_alone(comm, [&] {
    clx::TaskStream stream = one_task_stream(data, 1280);
    clx::ModelConfig config;
    config.arch = clx::ModelArch::ResNet18;
    torch::manual_seed(1);
    clx::MultiHeadModel model = clx::make_model(config, stream.input_shape, clx::head_sizes_for(stream, clx::HeadLayout::Multi));
    clx::CheckpointState state;
    state.config_text = "bench = checkpoint\n";
    state.phase = "training";
    for (const auto& item : model->named_parameters()) {
      state.model.emplace_back(item.key(), item.value().detach());
      state.optimizer.emplace_back("momentum." + item.key(), torch::randn_like(item.value()));
    }
    for (const auto& item : model->named_buffers()) state.model.emplace_back(item.key(), item.value());
    for (const auto& [name, tensor] : model->named_shared_parameters()) {
      state.strategy.emplace_back("theta_old." + name, tensor.detach().clone());
      state.strategy.emplace_back("omega." + name, torch::rand_like(tensor));
      state.strategy.emplace_back("mask." + name, torch::rand_like(tensor).gt(0.5).to(torch::kUInt8));
    }
    const std::string directory = options.scratch + "/clx-bench-" + std::to_string(::getpid());
    std::filesystem::create_directories(directory);
    std::vector<double> write_rates, read_rates, read_seconds;
    int64_t bytes = 0;
    for (int r = 0; r < options.repeats; ++r) {
      const std::string path = directory + "/ckpt-" + std::to_string(r) + ".h5";
      auto start = Clock::now();
      clx::write_checkpoint(path, state);
      const double write_seconds = seconds_since(start);
      bytes = file_bytes(path);
      start = Clock::now();
      const clx::CheckpointState loaded = clx::read_checkpoint(path);
      // Resume = read + verify + copy into the live model.
      {
        torch::NoGradGuard no_grad;
        auto live = model->named_parameters();
        for (const auto& [name, tensor] : loaded.model)
          if (auto* parameter = live.find(name)) parameter->copy_(tensor);
      }
      read_seconds.push_back(seconds_since(start));
      write_rates.push_back(bytes / write_seconds / 1e6);
      read_rates.push_back(bytes / read_seconds.back() / 1e6);
      std::filesystem::remove(path);
    }
    std::filesystem::remove_all(directory);
    const std::string size = fixed(bytes / 1e6, 0) + " MB file";
    table.rows.push_back({"write (fsync included), " + size, median(write_rates), 500, "MB/s", ">= 1.0", 1.0, true});
    table.rows.push_back({"read + verify + load, " + size, median(read_rates), 500, "MB/s", "", 0, true});

    // What resuming costs against the task it resumes: one task of split
    // Fashion-MNIST (12000 images, 5 epochs, batch 128) at ResNet-18's measured step time.
    const clx::TaskStream steps_stream = one_task_stream(data, 4 * options.batch);
    clx::SingleCommunicator single;
    std::vector<double> step_seconds;
    auto step_config = trainer_config(options, options.batch);
    BenchOptions resnet_options = options;
    resnet_options.width = 1.0;
    for (int r = 0; r < 2; ++r)
      step_seconds.push_back(framework_epoch_seconds(single, steps_stream, "resnet18", step_config, resnet_options) / 4);
    const double task_seconds = median(step_seconds) * (12000 / options.batch) * 5;
    table.rows.push_back({"resume cost as a share of one task (ResNet-18, " + fixed(task_seconds, 0) + " s task)",
                          median(read_seconds), task_seconds, "s", "< 0.05", 0.05, false});
  });
  return table;
}

// Images/s one ResNet-18 training rank consumes on `side`-pixel RGB batches of
// options.batch: forward, backward and an SGD step (median of options.repeats
// steps after one warm-up step).
double resnet18_images_per_second(const BenchOptions& options, int64_t side) {
  torch::manual_seed(1);
  clx::ModelConfig config;
  config.arch = clx::ModelArch::ResNet18;
  clx::MultiHeadModel model = clx::make_model(config, {3, side, side}, {10});
  model->train();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(options.lr).momentum(options.momentum));
  const torch::Tensor images = torch::rand({options.batch, 3, side, side});
  const torch::Tensor labels = torch::randint(10, {options.batch}, torch::kInt64);
  std::vector<double> rates;
  for (int step = 0; step <= options.repeats; ++step) {
    const auto start = Clock::now();
    optimizer.zero_grad();
    torch::nn::functional::cross_entropy(model->logits(images, 0), labels).backward();
    optimizer.step();
    if (step > 0) rates.push_back(options.batch / seconds_since(start));
  }
  return median(rates);
}

// Images/s `source` delivers in batches of `batch` over all its rows, augmented (median of `repeats` passes).
double loader_images_per_second(const clx::ImageSource& source, int64_t batch, int repeats) {
  std::vector<double> rates;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    for (int64_t first = 0; first < source.size(); first += batch)
      source.gather(torch::arange(first, std::min(first + batch, source.size()), torch::kInt64), r + 1);
    rates.push_back(source.size() / seconds_since(start));
  }
  return median(rates);
}

// Batches of at most 32 images: ResNet-18 at 64 px takes seconds per image on one CPU thread.
Table loader_suite(Communicator& comm, const BenchOptions& options) {
  constexpr int64_t kSide = 64;
  BenchOptions loader_options = options;
  loader_options.batch = std::min<int64_t>(options.batch, 32);
  Table table{"Image-folder loader against one training rank: 64-px images/s, batch " +
                  std::to_string(loader_options.batch) + ", " + std::to_string(options.threads) +
                  " training thread(s) (median of " + std::to_string(options.repeats) + ")",
              "loader", "ResNet-18 training", {}};
  on_root_alone(comm, [&] {
    if (!clx::image_folders_supported()) throw clx::Error("--suite loader: this build has no OpenCV (install libopencv-dev)");
    // Caltech-101's images are about 300 x 200 pixels: sides of 160..320 pixels here, JPEG and PNG.
    const std::string root = options.scratch + "/clx-bench-images-" + std::to_string(::getpid());
    std::filesystem::remove_all(root);
    const int64_t files = clx::write_synthetic_image_folder(root, 8, 24, 160, 1);
    const double training = resnet18_images_per_second(loader_options, kSide);
    for (const auto& [workers, cache] : std::vector<std::pair<int, bool>>{{1, false}, {2, false}, {1, true}}) {
      clx::ImageFolderOptions folder;
      folder.image_size = kSide;
      folder.augment = "flip_crop";
      folder.workers = workers;
      folder.cache = cache;
      const auto start = Clock::now();
      const clx::ImageFolderData data = clx::load_image_folder(root, "bench", folder, 1);
      const double scan_rate = files / seconds_since(start);
      if (workers == 1 && !cache)
        table.rows.push_back({"scan: header + 1/8-size decode of every file, 1 worker", scan_rate, training, "images/s",
                              "", 0.0, true});
      if (cache) loader_images_per_second(*data.train, loader_options.batch, 1);  // fills the cache
      const double rate = loader_images_per_second(*data.train, loader_options.batch, options.repeats);
      const std::string measure = cache ? "flip_crop from the uint8 cache, 1 worker"
                                        : "decode + resize + flip_crop, " + std::to_string(workers) + " worker(s)";
      const bool target = workers == 1 && !cache;
      table.rows.push_back({measure, rate, training, "images/s", target ? ">= 1.0" : "", target ? 1.0 : 0.0, true});
    }
    std::filesystem::remove_all(root);
  });
  return table;
}

nlohmann::json read_ddp_results(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw clx::Error("--ddp-json: cannot open '" + path + "'");
  nlohmann::json ddp;
  try {
    file >> ddp;
    for (const auto& entry : ddp.at("results")) {
      entry.at("model").get<std::string>();
      entry.at("ranks").get<int>();
      entry.at("per_rank_batch").get<int64_t>();
      entry.at("steps_per_second").get<double>();
    }
  } catch (const std::exception& error) {
    throw clx::Error("--ddp-json: '" + path + "' is not the output of scripts/bench_ddp.py: " + error.what());
  }
  return ddp;
}

Table ddp_table(const BenchOptions& options, const std::map<std::string, double>& ours_steps_per_second, int ranks) {
  const nlohmann::json ddp = read_ddp_results(options.ddp_json);
  Table table{"Against PyTorch DDP (gloo), same model, batches, ranks and threads: steps/s", "framework", "PyTorch DDP", {}};
  for (const auto& entry : ddp.at("results")) {
    const std::string arch = entry.at("model").get<std::string>();
    if (entry.at("ranks").get<int>() != ranks || entry.at("per_rank_batch").get<int64_t>() != options.batch) continue;
    const auto ours = ours_steps_per_second.find(arch);
    if (ours == ours_steps_per_second.end()) continue;
    table.rows.push_back({arch + ", " + std::to_string(ranks) + " ranks", ours->second,
                          entry.at("steps_per_second").get<double>(), "steps/s", ">= 2.0", 2.0, true});
  }
  return table;
}

int run(const BenchOptions& options, Communicator& comm) {
  torch::set_num_threads(options.threads);
  Data data;
  auto train = std::make_shared<clx::LabelledImages>(clx::load_mnist_split(options.data_root, "train"));
  auto test = std::make_shared<clx::LabelledImages>(clx::load_mnist_split(options.data_root, "t10k"));
  data.train = train;
  data.test = test;
  if (comm.is_root())
    std::cout << "bench: " << comm.size() << " rank(s) over " << comm.backend() << ", " << options.threads
              << " thread(s) per rank, " << std::thread::hardware_concurrency() << " cores, LibTorch "
              << TORCH_VERSION << ", device " << options.device.str() << ", " << options.precision << ", data "
              << options.data_root << std::endl;
  std::vector<Table> tables;
  std::map<std::string, double> steps_per_second;
  auto emit = [&](const Table& table) {
    if (comm.is_root()) print_table(table);
    tables.push_back(table);
  };
  for (const std::string& suite : options.suites) {
    if (comm.is_root()) std::cout << "\n[" << suite << "]" << std::endl;
    if (suite == "overhead") for (const Table& t : overhead_suite(comm, data, options)) emit(t);
    else if (suite == "scaling") for (const Table& t : scaling_suite(comm, data, options, &steps_per_second)) emit(t);
    else if (suite == "allreduce") {
      if (comm.size() < 2 && comm.is_root()) std::cout << "(allreduce needs at least 2 ranks: run under mpirun -np 2)\n";
      emit(allreduce_suite(comm, options));
    } else if (suite == "passes") for (const Table& t : passes_suite(comm, data, options)) emit(t);
    else if (suite == "checkpoint") emit(checkpoint_suite(comm, data, options));
    else if (suite == "loader") emit(loader_suite(comm, options));
    else if (suite == "generation") for (const Table& t : generation_suite(comm, data, options)) emit(t);
  }
  if (!options.ddp_json.empty() && comm.is_root()) emit(ddp_table(options, steps_per_second, comm.size()));
  if (!options.json_path.empty() && comm.is_root()) {
    nlohmann::json out = {{"ranks", comm.size()}, {"threads", options.threads}, {"batch_per_rank", options.batch},
                          {"device", options.device.str()}, {"precision", options.precision},
                          {"backend", comm.backend()}, {"width", options.width}, {"torch", TORCH_VERSION},
                          {"tables", nlohmann::json::array()}};
    for (const Table& table : tables) out["tables"].push_back(to_json(table));
    std::ofstream file(options.json_path);
    if (!file) throw clx::Error("--json: cannot write '" + options.json_path + "'");
    file << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions options;
  std::string suites = kSuites, models = "mlp,vgg9", device = "cpu";
  po::options_description description(
      "bench: the framework against a bare LibTorch loop, raw MPI_Allreduce and PyTorch DDP\n\n"
      "Usage: mpirun -np 2 bench [options]   (scaling and allreduce need 2+ ranks)\n\nOptions");
  description.add_options()
      ("help,h", "show this help")
      ("suite", po::value<std::string>(&suites)->default_value(kSuites), "comma-separated suites: overhead, scaling, allreduce, passes, checkpoint, loader, generation")
      ("models", po::value<std::string>(&models)->default_value("mlp,vgg9"), "models for overhead, scaling and passes: mlp, vgg9, resnet18")
      ("width", po::value<double>(&options.width)->default_value(1.0), "vgg9, resnet18: channel multiplier")
      ("device", po::value<std::string>(&device)->default_value("cpu"), "overhead and passes run on: cpu | cuda")
      ("precision", po::value<std::string>(&options.precision)->default_value("fp32"),
       "fp32 | bf16 (autocast for the forward pass; importance passes stay fp32)")
      ("backend", po::value<std::string>(&options.backend)->default_value("auto"),
       "communicator: auto | single | mpi | nccl (nccl on one rank adds the one-rank NCCL overhead table)")
      ("batch", po::value<int64_t>(&options.batch)->default_value(128), "batch size per rank")
      ("mlp-steps", po::value<int64_t>(&options.mlp_steps)->default_value(300), "timed steps per repetition for the MLP")
      ("conv-steps", po::value<int64_t>(&options.conv_steps)->default_value(12), "timed steps per repetition for VGG-9 and ResNet-18")
      ("repeats", po::value<int>(&options.repeats)->default_value(3), "repetitions; tables show the median")
      ("threads", po::value<int>(&options.threads)->default_value(1), "intra-op threads per rank (ranks x threads <= cores)")
      ("data", po::value<std::string>(&options.data_root)->default_value(options.data_root), "Fashion-MNIST folder (IDX files)")
      ("scratch", po::value<std::string>(&options.scratch)->default_value("/tmp"),
       "folder for checkpoint files and the loader's image tree (removed afterwards)")
      ("json", po::value<std::string>(&options.json_path), "also write every table to this JSON file")
      ("ddp-json", po::value<std::string>(&options.ddp_json), "results of scripts/bench_ddp.py to compare against (needs the scaling suite)");
  std::unique_ptr<Communicator> comm;
  try {
    po::variables_map values;
    po::store(po::parse_command_line(argc, argv, description), values);
    if (values.count("help")) {
      std::cout << description << "\n";
      return 0;
    }
    po::notify(values);
    if (device != "cpu" && device != "cuda") throw clx::Error("--device: '" + device + "' is not one of cpu, cuda");
    if (device == "cuda" && !torch::cuda::is_available())
      throw clx::Error("--device cuda: no CUDA device is visible to this LibTorch (" TORCH_VERSION ")");
    options.device = device == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
    if (options.precision != "fp32" && options.precision != "bf16")
      throw clx::Error("--precision: '" + options.precision + "' is not one of fp32, bf16");
    if (!(options.width > 0.0)) throw clx::Error("--width: must be a positive channel multiplier");
    comm = clx::make_communicator(options.backend);
    options.suites = split_list(suites);
    options.models = split_list(models);
    for (const auto& suite : options.suites)
      if (std::string(",") .append(kSuites).append(",").find("," + suite + ",") == std::string::npos)
        throw clx::Error("--suite: '" + suite + "' is not one of " + kSuites);
    for (const auto& model : options.models)
      if (model != "mlp" && model != "vgg9" && model != "resnet18")
        throw clx::Error("--models: '" + model + "' is not one of mlp, vgg9, resnet18");
    if (options.batch < 1 || options.repeats < 1 || options.threads < 1 || options.mlp_steps < 1 || options.conv_steps < 1)
      throw clx::Error("--batch, --repeats, --threads, --mlp-steps and --conv-steps must be positive");
    // Checked up front on every rank alike, so a bad file or a setting this
    // build's trainer lacks costs no benchmark time.
    if (!options.ddp_json.empty()) read_ddp_results(options.ddp_json);
    trainer_config(options, options.batch);
  } catch (const po::error& error) {
    std::cerr << "bench: error: " << error.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& error) {
    // The same on every rank: one message, from rank 0.
    if (!comm || comm->is_root()) std::cerr << "bench: error: " << error.what() << "\n";
    return 2;
  }
  try {
    return run(options, *comm);
  } catch (const std::exception& error) {
    std::cerr << "bench: error" << (comm ? " on rank " + std::to_string(comm->rank()) : "") << ": " << error.what() << "\n";
    if (comm && comm->size() > 1) comm->abort(1);
    return 1;
  }
}
