#include "algorithms/dgm.h"

#include <cmath>
#include <iomanip>
#include <set>
#include <sstream>

#include "algorithms/hat.h"
#include "runtime/error.h"
#include "runtime/logging.h"

namespace clx {

namespace po = boost::program_options;

namespace {

const char* const kLayerNames[kDgmLayers] = {"conv1", "conv2", "conv3"};

DgmNetImpl& dgm_of(ContinualNet& model) {
  return as_dgm_net(model, "train.algorithm=dgm: needs DGM's generator (model.arch=dgm)");
}

int64_t total(const DgmWidths& widths) { return widths[0] + widths[1] + widths[2]; }

}  // namespace

double dgm_epoch_scale(double smax, int64_t epoch, int64_t epochs) {
  const double progress = static_cast<double>(epoch + 1) / static_cast<double>(std::max<int64_t>(epochs, 1));
  return 1.0 / smax + (smax - 1.0 / smax) * std::min(progress, 1.0);
}

DgmOptions resolved_dgm_options(DgmOptions options) {
  const bool weights = options.masks == DgmMasks::Weights;
  if (options.smax == 0.0) options.smax = weights ? 1e4 : 1e5;
  if (options.sparsity < 0.0) options.sparsity = weights ? 0.08 : 0.01;
  return options;
}

void DgmStrategy::add_options(po::options_description& options) {
  const DgmOptions d;
  options.add_options()
      ("dgm.masks", po::value<std::string>()->default_value("weights"),
       "DGM's masks on the generator: weights (DGMw, one per weight) | units (DGMa, one per output channel)")
      ("dgm.smax", po::value<double>()->default_value(d.smax),
       "DGM's largest gate scale s_max (0: the reference's, 1e4 for weights, 1e5 for units)")
      ("dgm.sparsity", po::value<double>()->default_value(d.sparsity),
       "DGM's sparsity weight lambda (negative: the reference's, 0.08 for weights, 0.01 for units), scaled by the "
       "generator's width over its initial width")
      ("dgm.width", po::value<int64_t>()->default_value(0),
       "DGM generator's base width n (hidden layers 4n, 2n, n; 0: the reference's, 6 for weights, 20 for units)")
      ("dgm.max_units", po::value<int64_t>()->default_value(d.max_units),
       "the most output channels a generator layer may grow to (a run that needs more stops with the sizes)")
      ("dgm.expand", po::value<bool>()->default_value(d.expand),
       "grow the generator after every task by what the task reserved (false: fixed size)")
      ("dgm.gradient_penalty", po::value<double>()->default_value(1.0),
       "the critic's WGAN-GP gradient-penalty weight (the reference's 1 on MNIST)")
      ("dgm.critic_lr", po::value<double>()->default_value(0.002),
       "the critic's Adam learning rate (betas 0.5, 0.999; the generator follows train.lr and train.adam_betas)")
      ("dgm.reset_critic", po::value<bool>()->default_value(true),
       "redraw the critic before every task after the first (the reference's reinit_D): its classifier then "
       "remembers earlier classes through the replay alone");
}

DgmOptions DgmStrategy::read_options(const po::variables_map& values) {
  DgmOptions options;
  options.masks = parse_dgm_masks(values["dgm.masks"].as<std::string>());
  options.smax = values["dgm.smax"].as<double>();
  options.sparsity = values["dgm.sparsity"].as<double>();
  options.max_units = values["dgm.max_units"].as<int64_t>();
  options.expand = values["dgm.expand"].as<bool>();
  return options;
}

DgmStrategy::DgmStrategy(DgmOptions options) : options_(resolved_dgm_options(options)) {
  if (!(options_.smax > 0.0) || !std::isfinite(options_.smax))
    throw Error("dgm.smax: must be positive (0: the reference's), got " + std::to_string(options_.smax));
  if (!std::isfinite(options_.sparsity)) throw Error("dgm.sparsity: must be finite");
  if (options_.max_units < 1) throw Error("dgm.max_units: must be positive, got " + std::to_string(options_.max_units));
}

void DgmStrategy::check_stream(const TaskStream& stream) const {
  // Class-incremental: every class belongs to one task (a permuted stream repeats them).
  std::set<int64_t> seen;
  for (const Task& task : stream.tasks) {
    const torch::Tensor classes = std::get<0>(torch::_unique(task.train.global_labels.to(torch::kCPU)));
    for (int64_t k = 0; k < classes.numel(); ++k)
      if (!seen.insert(classes[k].item<int64_t>()).second)
        throw Error("train.algorithm=dgm: class-incremental only (each class in one task), but class " +
                    std::to_string(classes[k].item<int64_t>()) + " is in task " + std::to_string(task.index + 1) +
                    " and an earlier one (" + task.name + "): use data.stream=split");
  }
}

void DgmStrategy::before_task(StageContext& ctx) {
  dgm_of(ctx.model);
  if (ctx.tasks.size() != 1) throw Error("train.algorithm=dgm: trains one task per stage");
  reserve_for(ctx);
}

void DgmStrategy::reserve_for(StageContext& ctx) {
  // Derived from the network, so a stage resumed from a checkpoint (where before_task does not run again) has them too.
  if (!sizes_.defined())
    sizes_ = torch::zeros({static_cast<int64_t>(ctx.stream.size()), 3 * kDgmLayers + 1}, torch::kFloat64);
  if (!reserved_.empty()) return;
  DgmNetImpl& net = dgm_of(ctx.model);
  torch::NoGradGuard no_grad;
  reserved_ = net.reserved_masks(ctx.tasks.at(0) - 1);
  for (auto& mask : reserved_) mask = mask.to(ctx.device);
  reserved_weights_ = net.reserved_weights(reserved_);
}

void DgmStrategy::before_forward(StageContext& ctx) {
  reserve_for(ctx);
  epoch_scale_ = dgm_epoch_scale(options_.smax, ctx.epoch, ctx.epochs_in_call);
  scale_ = options_.masks == DgmMasks::Weights ? hat_annealed_scale(epoch_scale_, ctx.batch, ctx.batches_per_epoch)
                                               : epoch_scale_;
  dgm_of(ctx.model).set_training_scale(ctx.tasks.at(0), scale_);
}

torch::Tensor DgmStrategy::penalty_loss(StageContext& ctx) {
  DgmNetImpl& net = dgm_of(ctx.model);
  if (options_.sparsity == 0.0) return {};
  std::vector<torch::Tensor> gates;
  for (const torch::Tensor& embedding : net.embeddings(ctx.tasks.at(0))) gates.push_back(torch::sigmoid(scale_ * embedding));
  const double size = static_cast<double>(total(net.widths())) / static_cast<double>(total(net.initial_widths()));
  return hat_regulariser(gates, reserved_, options_.sparsity * size);
}

void DgmStrategy::after_backward(StageContext& ctx) {
  DgmNetImpl& net = dgm_of(ctx.model);
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> weights = net.weights();
  for (int l = 0; l < kDgmLayers; ++l)
    if (weights[l].grad().defined()) weights[l].mutable_grad().mul_(1.0 - reserved_weights_[l]);
  for (torch::Tensor embedding : net.embeddings(ctx.tasks.at(0))) {
    if (!embedding.grad().defined()) continue;
    torch::Tensor gradient = embedding.mutable_grad();
    hat_compensate_gradient(gradient, embedding.detach(), scale_, epoch_scale_);
  }
}

void DgmStrategy::after_task(StageContext& ctx) {
  DgmNetImpl& net = dgm_of(ctx.model);
  net.clear_training_scale();
  reserve_for(ctx);
  const int task = ctx.tasks.at(0);
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> reserved = net.reserved_masks(task);
  DgmWidths newly{};
  std::vector<double> row;
  std::ostringstream report;
  report << "dgm: after task " << task + 1 << ", the masks reserve (per layer: reserved / entries, width)";
  for (int l = 0; l < kDgmLayers; ++l) {
    const int64_t now = reserved[l].sum().item<int64_t>();
    newly[l] = now - reserved_[l].sum().item<int64_t>();
    row.insert(row.end(), {static_cast<double>(net.widths()[l]), static_cast<double>(now),
                           static_cast<double>(reserved[l].numel())});
    report << "\n  " << kLayerNames[l] << ": " << now << " / " << reserved[l].numel() << " (" << std::fixed
           << std::setprecision(1) << 100.0 * static_cast<double>(now) / static_cast<double>(reserved[l].numel())
           << "%), width " << net.widths()[l] << ", " << newly[l] << " newly reserved";
  }
  int64_t parameters = 0;
  for (const auto& parameter : net.parameters()) parameters += parameter.numel();
  row.push_back(static_cast<double>(parameters));
  sizes_[task].copy_(torch::tensor(row, torch::kFloat64));
  ctx.log.info(report.str());
  reserved_.clear();
  reserved_weights_.clear();
  if (!options_.expand || task + 1 >= static_cast<int>(ctx.stream.size())) return;
  const DgmWidths added = dgm_growth(options_.masks, newly, net.widths(), net.config().noise_dim, net.kernels());
  std::ostringstream grown;
  grown << "dgm: the generator grows by";
  for (int l = 0; l < kDgmLayers; ++l) {
    const int64_t width = net.widths()[l] + added[l];
    if (width > options_.max_units)
      // Every rank grows alike (the masks are identical), so every rank stops here with this message.
      throw CollectiveError("dgm.max_units: after task " + std::to_string(task + 1) + " " + kLayerNames[l] + " would grow from " +
                  std::to_string(net.widths()[l]) + " to " + std::to_string(width) + " output channels, above the " +
                  std::to_string(options_.max_units) + " allowed: raise dgm.max_units or dgm.sparsity");
    grown << " " << kLayerNames[l] << " +" << added[l] << " -> " << width;
  }
  net.expand(added, task, task);
  ctx.log.info(grown.str());
}

NamedTensors DgmStrategy::state() const {
  if (!sizes_.defined()) return {};
  return {{"generator_sizes", sizes_}};
}

void DgmStrategy::load_state(const NamedTensors& state) {
  sizes_ = torch::Tensor();
  for (const auto& [name, tensor] : state)
    if (name == "generator_sizes") sizes_ = tensor.to(torch::kCPU, torch::kFloat64).clone();
}

std::vector<ResultTable> DgmStrategy::result_tables(int tasks_trained) const {
  ResultTable table;
  table.name = "dgm_generator";
  table.columns = {"task", "layer", "width", "reserved", "entries", "reserved_percent", "generator_parameters"};
  const int64_t rows = sizes_.defined() ? std::min<int64_t>(tasks_trained, sizes_.size(0)) : 0;
  for (int64_t t = 0; t < rows; ++t) {
    const torch::Tensor row = sizes_[t];
    for (int l = 0; l < kDgmLayers; ++l) {
      const double reserved = row[3 * l + 1].item<double>(), entries = row[3 * l + 2].item<double>();
      table.rows.push_back({t + 1, std::string(kLayerNames[l]), static_cast<int64_t>(row[3 * l].item<double>()),
                            static_cast<int64_t>(reserved), static_cast<int64_t>(entries), 100.0 * reserved / entries,
                            static_cast<int64_t>(row[3 * kDgmLayers].item<double>())});
    }
  }
  return {table};
}

}  // namespace clx
