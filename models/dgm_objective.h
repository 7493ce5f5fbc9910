#pragma once
// DGM's objective (Ostapenko et al. CVPR 2019; the reference
// SAP/machine-learning-dgm, MNIST settings; DESIGN.md §4.3): the model is
// DGM's masked generator (models/dgm_net.h), trained by the DGM strategy
// (algorithms/dgm.h); the objective owns the discriminator, a WGAN-GP critic
// with an auxiliary classifier (ConditionalCritic), whose classifier is what
// the run scores: class-incremental accuracy over every class seen so far.
//
// Per training step of task t, for this rank's real samples x of classes c at
// stage positions p (noise rows drawn per position, so 1 and 2 ranks follow
// the same trajectory and a resume is bit-identical):
//   replay      for every earlier task j, one generated image per position:
//               G(z_jp, class_j(p), task j) with j's binary masks (unchanged
//               since j was trained), z_jp drawn from (train.seed, t, j, p):
//               the same set for every epoch of the task, as the reference
//               generates it once before the task;
//   classifier  the t + 1 images of each position (real, and each earlier
//               task's replay) go to t + 1 chunks, image g of position p to
//               chunk (p + g) mod (t + 1): each chunk one image per position,
//               every class mixed; one Adam step per chunk on the auxiliary
//               cross-entropy (the reference's t + 1 classifier steps per batch,
//               replay entering no other loss);
//   critic      one step on L_D = D(G(z1_p, c, t)) - D(x) + gp (||dD(x^)/dx^|| - 1)^2
//               (x^ = e x + (1 - e) x', e ~ U(0, 1)), current classes only;
//   generator   L_G = -D(G(z2_p, c, t)) (the reference trains no class loss
//               into G on MNIST), which the trainer reduces and steps, with
//               the strategy's sparsity penalty.
// The critic's Adam (dgm.critic_lr, betas 0.5 and 0.999 as the reference's)
// starts afresh every task, and with dgm.reset_critic (the reference's
// reinit_D) the critic is redrawn before every task after the first, from
// (train.seed, task): its memory of earlier classes is the replay alone.
// Deviations, on purpose: the critic is this project's ConditionalCritic
// (4x4 convolutions without BatchNorm, a class-conditioned score), so the
// gradient penalty is per sample and any rank count trains the same critic.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/critic_training.h"
#include "models/dgm_net.h"
#include "models/generation_objective.h"
#include "models/generative.h"
#include "runtime/objective.h"

namespace clx {

struct DgmObjectiveConfig {
  double gradient_penalty = 1.0;  // dgm.gradient_penalty: the reference's lambda on MNIST
  double critic_lr = 0.002;       // dgm.critic_lr: the reference's on MNIST
  bool reset_critic = true;       // dgm.reset_critic
  uint64_t seed = 1;              // train.seed
  // When set, rank 0 writes <samples_dir>/after_task_<j>.png after each task
  // j (1-based): one row per class seen so far, sample_columns images of it
  // through its task's masks, from the same noise after every task.
  std::string samples_dir;
  int64_t sample_columns = 10;
  // With fid.fid_features set: after every task, FID of every task's classes
  // (fid.fid_samples images through the task's masks, against its real
  // evaluation images) and the feature classifier's generated accuracy, as
  // the tables fid_matrix and generated_accuracy (the score stays the
  // classifier's accuracy). fid.samples_dir is not used (the grid above is DGM's).
  GenerationConfig fid;
};

void validate_dgm_objective_config(const DgmObjectiveConfig& config);

class DgmObjective : public Objective {
 public:
  explicit DgmObjective(DgmObjectiveConfig config);

  std::string name() const override { return "dgm"; }
  ScoreKind score_kind() const override;
  void check(const ContinualNet& model, const TaskStream& stream, HeadLayout heads) const override;
  void prepare(const ContinualNet& model, const TaskStream& stream) override;
  void begin_stage(const ObjectiveStage& stage) override;
  void begin_epoch(uint64_t epoch_seed, int64_t stage_samples) override;
  LocalLoss local_loss(ContinualNet& model, const TrainingBatch& batch,
                       const std::function<int64_t(int)>& head_for) override;
  // Class-incremental accuracy of the critic's classifier on every task's
  // evaluation split, answering among the classes seen so far; and the sample grid.
  std::vector<double> evaluate(const EvaluationContext& context) override;
  // The FID rows (and generated accuracy) kept for a resume, and their tables.
  std::string state_text() const override;
  void load_state_text(const std::string& text) override;
  std::vector<ResultTable> result_tables() const override;
  NamedTensors trained_state() override;
  torch::Tensor optimizer_archive() const override { return critic_optimizer_.archive(); }
  void resume_optimizer(const torch::Tensor& archive) override { critic_optimizer_.resume(archive); }

  ConditionalCritic& critic() { return critic_; }
  // The classes of task `task`, ascending.
  const std::vector<int64_t>& task_classes(int task) const { return task_classes_.at(task); }
  // Replay of earlier task `task` at stage `stage` for positions p: images in
  // [-1, 1] from the generator under task's binary masks, and their classes
  // (task's classes, class k for position p: classes[p mod m]).
  struct Replay {
    torch::Tensor images, classes;
  };
  Replay replay(DgmNetImpl& generator, int stage, int task, const torch::Tensor& positions) const;
  // The classifier chunk of image g (0: real, j + 1: task j's replay) of position p among `chunks`.
  static torch::Tensor chunk_of(const torch::Tensor& positions, int64_t image, int64_t chunks);

 private:
  torch::Tensor classes_of(int task, const torch::Tensor& positions) const;
  void write_sample_grid(DgmNetImpl& generator, int trained_up_to) const;

  // FID of DGM's generator, through the generation objective's scoring.
  class FidScorer : public GenerationObjective {
   public:
    FidScorer(GenerationConfig config, const DgmObjective& owner);
    std::string name() const override { return "dgm-fid"; }
    ScoreKind score_kind() const override { return fid_score_kind("unused"); }
    LocalLoss local_loss(ContinualNet&, const TrainingBatch&, const std::function<int64_t(int)>&) override;
    torch::Tensor scoring_images(ContinualNet& model, const TaskStream& stream, int task, uint64_t seed) override;
    void check_shape(const TaskStream& stream) const { check_image_shape(stream); }

   private:
    const DgmObjective& owner_;
  };

  DgmObjectiveConfig config_;
  std::unique_ptr<FidScorer> fid_;
  std::map<int, std::vector<double>> fid_rows_;  // evaluation point (-1: before training) -> FID per task
  ConditionalCritic critic_{nullptr};
  std::vector<std::vector<int64_t>> task_classes_;
  ObjectiveStage stage_;
  CriticOptimizer critic_optimizer_;
  uint64_t epoch_seed_ = 0;
  int64_t stage_samples_ = 0;
  torch::Tensor critic_noise_, generator_noise_, mixing_;  // the epoch's draws, row p for stage position p
};

}  // namespace clx
