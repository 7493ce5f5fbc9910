#include "algorithms/dgr.h"

#include <ATen/CPUGeneratorImpl.h>

#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

namespace {

constexpr uint64_t kReplayTag = 0xd64;

VaeNetImpl& vae_net(ContinualNet& model) {
  return as_vae_net(model, "train.algorithm: dgr replays a generator's own samples and needs model.arch=vae (DGR with "
                           "a solver for classifiers is not implemented)");
}

}  // namespace

void DgrStrategy::add_options(po::options_description& options) {
  options.add_options()("dgr.ratio", po::value<double>()->default_value(0.0),
                        "DGR: weight r of the new task's loss, r L_new + (1 - r) L_replay, in (0, 1]; 0: 1/t at task t");
}

DgrOptions DgrStrategy::read_options(const po::variables_map& values) {
  DgrOptions o;
  o.ratio = values["dgr.ratio"].as<double>();
  return o;
}

DgrStrategy::DgrStrategy(DgrOptions options) : options_(options) {
  if (!(options_.ratio >= 0.0 && options_.ratio <= 1.0))
    throw Error("dgr.ratio: must be in (0, 1] (0: 1/t), got " + std::to_string(options_.ratio));
}

double DgrStrategy::new_data_weight(int task) const {
  return options_.ratio > 0.0 ? options_.ratio : 1.0 / static_cast<double>(task + 1);
}

void DgrStrategy::before_task(StageContext& ctx) {
  VaeNetImpl& net = vae_net(ctx.model);
  if (ctx.tasks.front() == 0) return;
  torch::NoGradGuard no_grad;
  previous_.clear();
  for (const auto& item : net.named_parameters()) previous_.emplace_back(item.key(), item.value().detach().clone());
  replica_current_ = false;
}

void DgrStrategy::load_state(const NamedTensors& state) {
  previous_ = state;
  replica_current_ = false;
}

VaeNetImpl& DgrStrategy::previous_generator(const StageContext& ctx) {
  if (!replica_current_) {
    VaeNetImpl& net = vae_net(ctx.model);
    replica_ = VaeNet(net.vae->config());
    replica_->to(ctx.device);
    replica_->eval();
    torch::NoGradGuard no_grad;
    const auto parameters = replica_->named_parameters();
    if (parameters.size() != previous_.size())
      throw Error("dgr: the saved generator has " + std::to_string(previous_.size()) + " tensors, the VAE " +
                  std::to_string(parameters.size()));
    for (size_t k = 0; k < previous_.size(); ++k) parameters[k].value().copy_(previous_[k].second);
    replica_current_ = true;
  }
  return *replica_;
}

DgrStrategy::ReplayDraw DgrStrategy::replay_draw(uint64_t seed, int stage, int64_t step, const torch::Tensor& positions,
                                                 int64_t earlier_tasks, int64_t latent) {
  const torch::Tensor rows = positions.to(torch::kCPU).contiguous();
  const int64_t n = rows.size(0);
  ReplayDraw draw{torch::empty({n}, torch::kInt64), torch::empty({n, latent}, torch::kFloat32),
                  torch::empty({n, latent}, torch::kFloat32)};
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t sample_seed = mix_seed({seed, kReplayTag, static_cast<uint64_t>(stage), static_cast<uint64_t>(step),
                                           static_cast<uint64_t>(rows.data_ptr<int64_t>()[i])});
    draw.tasks[i] = static_cast<int64_t>(sample_seed % static_cast<uint64_t>(earlier_tasks));
    at::Generator generator = at::detail::createCPUGenerator(sample_seed);
    draw.z[i].copy_(torch::randn({latent}, generator, torch::kFloat32));
    draw.eps[i].copy_(torch::randn({latent}, generator, torch::kFloat32));
  }
  return draw;
}

double DgrStrategy::task_loss_weight(const StageContext& ctx) const {
  return ctx.tasks.front() == 0 ? 1.0 : new_data_weight(ctx.tasks.front());
}

torch::Tensor DgrStrategy::penalty_loss(StageContext& ctx) {
  const int task = ctx.tasks.front();
  if (task == 0 || !ctx.batch_positions.defined() || ctx.batch_positions.numel() == 0) return {};
  VaeNetImpl& current = vae_net(ctx.model);
  VaeNetImpl& previous = previous_generator(ctx);
  const int64_t latent = current.vae->config().latent;
  const ReplayDraw draw = replay_draw(ctx.seed, ctx.stage, ctx.step, ctx.batch_positions, task, latent);
  torch::Tensor replay_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(ctx.device));
  for (int64_t k = 0; k < task; ++k) {
    const torch::Tensor rows = draw.tasks.eq(k).nonzero().view({-1});
    if (rows.numel() == 0) continue;
    torch::Tensor images;
    {
      torch::NoGradGuard no_grad;
      images = previous.vae->decode(draw.z.index_select(0, rows).to(ctx.device), k);
    }
    const VaeLoss loss = current.vae->elbo_loss_with_noise(images, k, draw.eps.index_select(0, rows).to(ctx.device));
    replay_sum = replay_sum + loss.loss.to(torch::kFloat32) * static_cast<double>(rows.numel());
  }
  // Summed over this rank's replayed images and scaled like the task loss: the ranks' mean is the global mean.
  return (1.0 - new_data_weight(task)) * replay_sum * ctx.loss_scale;
}

}  // namespace clx
