#include "algorithms/dgr.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "models/gan_net.h"
#include "runtime/collectives.h"
#include "runtime/communicator.h"
#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {

namespace po = boost::program_options;

namespace {

constexpr uint64_t kReplayTag = 0xd64;

VaeNetImpl& vae_net(ContinualNet& model) {
  return as_vae_net(model, "train.algorithm: dgr's generation form needs model.arch=vae");
}

// The classifier form's generator: an unconditional VAE for the stream's images.
VaeConfig generator_config(const StageContext& ctx) {
  const std::vector<int64_t>& shape = ctx.stream.input_shape;
  if (shape.size() != 3 || shape[1] != shape[2] || (shape[1] != 28 && shape[1] != 32) || (shape[0] != 1 && shape[0] != 3))
    throw Error("train.algorithm: dgr's generator (a VAE) takes 1 or 3 x 28 x 28 or 32 x 32 images, the data's are " +
                c10::str(c10::IntArrayRef(shape)));
  VaeConfig config;
  config.channels = shape[0];
  config.image_size = shape[1];
  config.tasks = 1;
  config.seed = ctx.seed;
  return config;
}

void copy_into(const NamedTensors& from, const torch::OrderedDict<std::string, torch::Tensor>& to, const std::string& what) {
  if (from.size() != to.size())
    throw Error("dgr: the saved " + what + " has " + std::to_string(from.size()) + " tensors, the network " +
                std::to_string(to.size()));
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < from.size(); ++k) to[k].value().copy_(from[k].second);
}

NamedTensors clone_of(const torch::OrderedDict<std::string, torch::Tensor>& parameters) {
  NamedTensors copy;
  for (const auto& item : parameters) copy.emplace_back(item.key(), item.value().detach().clone());
  return copy;
}

}  // namespace

void DgrStrategy::add_options(po::options_description& options) {
  options.add_options()("dgr.ratio", po::value<double>()->default_value(0.0),
                        "DGR: weight r of the new task's loss, r L_new + (1 - r) L_replay, in (0, 1]; 0: 1/t at task t")(
      "dgr.generator_lr", po::value<double>()->default_value(1e-3),
      "DGR on a classifier: Adam learning rate of the VAE trained beside it to replay the earlier tasks");
}

DgrOptions DgrStrategy::read_options(const po::variables_map& values) {
  DgrOptions o;
  o.ratio = values["dgr.ratio"].as<double>();
  o.generator_lr = values["dgr.generator_lr"].as<double>();
  return o;
}

DgrStrategy::DgrStrategy(DgrOptions options) : options_(options) {
  if (!(options_.ratio >= 0.0 && options_.ratio <= 1.0))
    throw Error("dgr.ratio: must be in (0, 1] (0: 1/t), got " + std::to_string(options_.ratio));
  if (!(options_.generator_lr > 0.0) || !std::isfinite(options_.generator_lr))
    throw Error("dgr.generator_lr: must be a finite value > 0, got " + std::to_string(options_.generator_lr));
}

double DgrStrategy::new_data_weight(int task) const {
  return options_.ratio > 0.0 ? options_.ratio : 1.0 / static_cast<double>(task + 1);
}

bool DgrStrategy::classifier_form(const StageContext& ctx) const {
  return dynamic_cast<VaeNetImpl*>(&ctx.model) == nullptr && !gan_form(ctx);
}

bool DgrStrategy::gan_form(const StageContext& ctx) const { return dynamic_cast<GanNetImpl*>(&ctx.model) != nullptr; }

void DgrStrategy::before_task(StageContext& ctx) {
  if (gan_form(ctx)) return;  // the GAN objective replays (GanObjectiveConfig::replay)
  if (!classifier_form(ctx)) {
    VaeNetImpl& net = vae_net(ctx.model);
    if (ctx.tasks.front() == 0) return;
    previous_ = clone_of(net.named_parameters());
    replica_current_ = false;
    return;
  }
  if (ctx.heads != HeadLayout::Single)
    throw Error("model.heads: dgr on a classifier replays images without a task, so it needs one head over every "
                "class (model.heads=single); got " + to_string(ctx.heads));
  const bool fresh = !generator_ && pending_.empty();
  ensure_generator(ctx);
  // Every rank starts from rank 0's generator (its shared layers come from each rank's default generator).
  if (fresh) {
    torch::NoGradGuard no_grad;
    for (auto& parameter : generator_->parameters()) ctx.comm.broadcast(parameter, 0);
  }
  if (ctx.tasks.front() == 0) return;
  previous_ = clone_of(generator_->named_parameters());
  previous_solver_ = clone_of(ctx.model.named_parameters());
  replica_current_ = false;
}

void DgrStrategy::ensure_generator(const StageContext& ctx) {
  if (!generator_) {
    generator_ = VaeNet(generator_config(ctx));
    generator_->to(ctx.device);
    if (!pending_.empty()) {
      copy_into(with_prefix(pending_, "generator"), generator_->named_parameters(), "generator");
      previous_ = with_prefix(pending_, "previous_generator");
      previous_solver_ = with_prefix(pending_, "previous_solver");
      for (auto& item : previous_) item.second = item.second.to(ctx.device);
      for (auto& item : previous_solver_) item.second = item.second.to(ctx.device);
    }
  }
  if (!generator_optimizer_) {
    generator_optimizer_ =
        std::make_unique<torch::optim::Adam>(generator_->parameters(), torch::optim::AdamOptions(options_.generator_lr));
    for (const auto& [name, tensor] : pending_)
      if (name == "generator_optimizer") load_optimizer_state_bytes(*generator_optimizer_, tensor, ctx.device);
    generator_reducer_ = std::make_unique<GradientReducer>(ctx.comm, generator_->parameters());
  }
  pending_.clear();
}

void DgrStrategy::before_forward(StageContext& ctx) {
  replay_images_ = replay_labels_ = torch::Tensor();
  if (!classifier_form(ctx)) return;
  ensure_generator(ctx);
  const torch::Tensor positions =
      ctx.batch_positions.defined() ? ctx.batch_positions : torch::empty({0}, torch::kInt64);
  const ReplayDraw draw =
      replay_draw(ctx.seed, ctx.stage, ctx.step, positions, 1, generator_->vae->config().latent);
  if (ctx.tasks.front() > 0 && positions.numel() > 0) {
    torch::NoGradGuard no_grad;
    replay_images_ = previous_generator(ctx).vae->decode(draw.z.to(ctx.device), 0);
    label_replay(ctx);
  }
  generator_step(ctx, draw);  // a collective: every rank, with samples or not
}

void DgrStrategy::generator_step(StageContext& ctx, const ReplayDraw& draw) {
  const int task = ctx.tasks.front();
  const double r = task == 0 ? 1.0 : new_data_weight(task);
  TaskVaeImpl& vae = *generator_->vae;
  generator_->train();
  for (auto& parameter : generator_->parameters()) parameter.mutable_grad() = torch::Tensor();
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(ctx.device));
  const int64_t n = draw.z.size(0);
  if (n > 0) {
    const torch::Tensor real = ctx.inputs(ctx.stream.tasks[task].train, ctx.batch_positions);
    // elbo_loss_* gives batch means; sums over this rank's samples, scaled like the solver's loss.
    loss_sum = r * vae.elbo_loss_with_noise(real, 0, draw.real_eps.to(ctx.device)).loss.to(torch::kFloat32) * n;
    if (replay_images_.defined())
      loss_sum = loss_sum + (1.0 - r) *
                                vae.elbo_loss_with_noise(replay_images_, 0, draw.eps.to(ctx.device)).loss.to(torch::kFloat32) * n;
    (loss_sum * ctx.loss_scale).backward();
  }
  torch::Tensor side = loss_sum.detach().view({1}).clone();
  generator_reducer_->reduce(side);
  const double mean = side.item<double>() * ctx.loss_scale / static_cast<double>(ctx.comm.size());
  if (!std::isfinite(mean))
    throw CollectiveError("non-finite loss of dgr's generator (" + std::to_string(mean) + ") at step " +
                          std::to_string(ctx.step + 1) + ": lower dgr.generator_lr or check the data");
  generator_optimizer_->step();
}

void DgrStrategy::label_replay(StageContext& ctx) {
  // The classes the earlier tasks answer (single head: the stream's global labels).
  std::vector<int64_t> earlier;
  for (int k = 0; k < ctx.tasks.front(); ++k) {
    const torch::Tensor labels = std::get<0>(torch::_unique(ctx.stream.tasks[k].train.global_labels.to(torch::kCPU)));
    earlier.insert(earlier.end(), labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
  }
  // The previous solver: its parameters swapped in (no graph exists before the forward pass), then restored.
  const auto parameters = ctx.model.named_parameters();
  const NamedTensors current = clone_of(parameters);
  const bool was_training = ctx.model.is_training();
  copy_into(previous_solver_, parameters, "solver");
  ctx.model.eval();
  const torch::Tensor logits = ctx.model.logits(replay_images_, 0).to(torch::kFloat32);
  torch::Tensor allowed = torch::full({logits.size(1)}, -std::numeric_limits<float>::infinity(), logits.options());
  allowed.index_fill_(0, torch::tensor(earlier, torch::kInt64).to(logits.device()), 0.0);
  replay_labels_ = (logits + allowed).argmax(1);
  copy_into(current, parameters, "solver");
  if (was_training) ctx.model.train();
}

void DgrStrategy::after_task(StageContext&) {
  // A fresh generator optimizer each task (as the trainer's): nothing of it between tasks.
  generator_optimizer_.reset();
  generator_reducer_.reset();
}

NamedTensors DgrStrategy::state() const {
  if (!generator_) return pending_.empty() ? previous_ : pending_;
  NamedTensors state;
  for (const auto& item : generator_->named_parameters()) state.emplace_back("generator." + item.key(), item.value());
  for (const auto& [name, tensor] : previous_) state.emplace_back("previous_generator." + name, tensor);
  for (const auto& [name, tensor] : previous_solver_) state.emplace_back("previous_solver." + name, tensor);
  if (generator_optimizer_) state.emplace_back("generator_optimizer", optimizer_state_bytes(*generator_optimizer_));
  return state;
}

void DgrStrategy::load_state(const NamedTensors& state) {
  replica_current_ = false;
  const bool classifier = std::any_of(state.begin(), state.end(), [](const auto& item) {
    return item.first.rfind("generator.", 0) == 0;
  });
  if (!classifier) {
    previous_ = state;
    return;
  }
  // Applied when the generator is built for this run's stream (the next before_task or step).
  generator_ = nullptr;
  generator_optimizer_.reset();
  generator_reducer_.reset();
  pending_ = state;
}

VaeNetImpl& DgrStrategy::previous_generator(const StageContext& ctx) {
  if (!replica_current_) {
    replica_ = VaeNet(generator_ ? generator_->vae->config() : vae_net(ctx.model).vae->config());
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
                  torch::empty({n, latent}, torch::kFloat32), torch::empty({n, latent}, torch::kFloat32)};
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t sample_seed = mix_seed({seed, kReplayTag, static_cast<uint64_t>(stage), static_cast<uint64_t>(step),
                                           static_cast<uint64_t>(rows.data_ptr<int64_t>()[i])});
    draw.tasks[i] = static_cast<int64_t>(sample_seed % static_cast<uint64_t>(earlier_tasks));
    at::Generator generator = at::detail::createCPUGenerator(sample_seed);
    draw.z[i].copy_(torch::randn({latent}, generator, torch::kFloat32));
    draw.eps[i].copy_(torch::randn({latent}, generator, torch::kFloat32));
    draw.real_eps[i].copy_(torch::randn({latent}, generator, torch::kFloat32));
  }
  return draw;
}

double DgrStrategy::task_loss_weight(const StageContext& ctx) const {
  if (gan_form(ctx)) return 1.0;  // the GAN objective weighs its new and replayed rows itself
  return ctx.tasks.front() == 0 ? 1.0 : new_data_weight(ctx.tasks.front());
}

torch::Tensor DgrStrategy::penalty_loss(StageContext& ctx) {
  const int task = ctx.tasks.front();
  if (task == 0 || gan_form(ctx) || !ctx.batch_positions.defined() || ctx.batch_positions.numel() == 0) return {};
  if (classifier_form(ctx)) {
    // The solver on the replayed images, labelled by the previous solver; summed and scaled like the task loss.
    const torch::Tensor logits = ctx.model.logits(replay_images_, 0).to(torch::kFloat32);
    const torch::Tensor replay_sum = torch::nn::functional::cross_entropy(
        logits, replay_labels_, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    return (1.0 - new_data_weight(task)) * replay_sum * ctx.loss_scale;
  }
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
