#include "models/vae_objective.h"

#include <ATen/CPUGeneratorImpl.h>


#include "models/vae_net.h"
#include "runtime/error.h"
#include "runtime/data/sampler.h"

namespace clx {
namespace {

constexpr uint64_t kEpochNoiseTag = 0x7ae0;
constexpr uint64_t kFidSampleTag = 0xf1d5;
constexpr uint64_t kImportanceNoiseTag = 0x1a9c;

TaskVaeImpl& vae_of(ContinualNet& model) { return *as_vae_net(model, "the VAE objective trains model.arch=vae only").vae; }

}  // namespace

void VaeObjective::check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const {
  const auto* net = dynamic_cast<const VaeNetImpl*>(&model);
  if (net == nullptr) throw Error("model.arch: the VAE objective trains model.arch=vae only");
  if (heads != HeadLayout::Multi)
    throw Error("model.heads: the VAE has one set of latent layers per task (multi); got " + to_string(heads));
  if (net->vae->tasks() != stream.size())
    throw Error("model: the VAE has latent layers for " + std::to_string(net->vae->tasks()) + " tasks, the stream has " +
                std::to_string(stream.size()));
  check_image_shape(stream);
}

void VaeObjective::begin_epoch(uint64_t epoch_seed, int64_t stage_samples) {
  epoch_seed_ = epoch_seed;
  stage_samples_ = stage_samples;
  epoch_noise_ = torch::Tensor();
}

LocalLoss VaeObjective::local_loss(ContinualNet& model, const TrainingBatch& batch,
                                   const std::function<int64_t(int)>& head_for) {
  TaskVaeImpl& vae = vae_of(model);
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(batch.device);
  LocalLoss result{torch::zeros({}, options), torch::zeros({}, options), {}};
  if (!batch.inputs.defined()) return result;
  if (!epoch_noise_.defined()) {
    epoch_noise_ = epoch_noise(epoch_seed_, stage_samples_, vae.config().latent).to(batch.device);
  }
  int64_t offset = 0;
  for (size_t g = 0; g < batch.group_tasks.size(); ++g) {
    const int64_t n = batch.group_counts[g];
    const torch::Tensor images = batch.inputs.narrow(0, offset, n);
    const torch::Tensor eps =
        epoch_noise_.index_select(0, batch.input_positions.narrow(0, offset, n).to(batch.device));
    offset += n;
    const VaeLoss loss = vae.elbo_loss_with_noise(images, head_for(batch.group_tasks[g]), eps);
    // elbo_loss_* gives batch means; the trainer wants sums over this rank's samples.
    result.loss_sum = result.loss_sum + loss.loss.to(torch::kFloat32) * static_cast<double>(n);
    result.statistic_sum = result.statistic_sum + loss.kl.detach().to(torch::kFloat32) * static_cast<double>(n);
  }
  return result;
}

torch::Tensor VaeObjective::epoch_noise(uint64_t epoch_seed, int64_t samples, int64_t latent) {
  // One draw per training sample of the stage: sample p's noise is row p on any rank.
  at::Generator generator = at::detail::createCPUGenerator(mix_seed({epoch_seed, kEpochNoiseTag}));
  return torch::randn({samples, latent}, generator, torch::kFloat32);
}

torch::Tensor VaeObjective::importance_noise(uint64_t seed, int task, const torch::Tensor& positions, int64_t latent) {
  return per_position_noise(seed, kImportanceNoiseTag, task, positions, latent);
}

Objective::GeneratedForward VaeObjective::generated_output(ContinualNet& model, uint64_t seed) {
  return [&model, seed](int task, const torch::Tensor& positions) {
    TaskVaeImpl& vae = vae_of(model);
    const torch::Tensor z = importance_noise(seed, task, positions, vae.config().latent);
    return vae.decode(z.to(vae.parameters().front().options()), task).flatten(1);
  };
}

Objective::GeneratedForward VaeObjective::generated_logits(ContinualNet& model, uint64_t seed) {
  const GeneratedForward images = generated_output(model, seed);
  return [this, images](int task, const torch::Tensor& positions) { return feature_logits(images(task, positions)); };
}

torch::Tensor VaeObjective::fid_images(ContinualNet& model, int task, uint64_t seed) {
  TaskVaeImpl& vae = vae_of(model);
  return vae.sample(config_.fid_samples, task, mix_seed({seed, kFidSampleTag, static_cast<uint64_t>(task)}));
}

}  // namespace clx
