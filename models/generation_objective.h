#pragma once
// What every generation objective shares (DESIGN.md §4.4): the FID feature
// file, the score of a task (FID between the images the generator makes for it
// and the task's real images of the evaluation split, with the project's LeNet
// feature classifier: FID[j][i] after stage j, lower is better), the generated
// accuracy (the classifier's answers on those images), the PNG sample grids,
// and the per-position noise draws that keep a run the same on any rank count.
// The VAE objective (models/vae_objective.h) and the GAN objective
// (models/gan_objective.h) differ only in how they train and what images they
// make for a task (scoring_images).
//
// The FID is computed on rank 0 and broadcast (features of generated and real
// images are not sharded): every rank gets rank 0's row.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/fid_features.h"
#include "runtime/objective.h"

namespace clx {

struct GenerationConfig {
  std::string fid_features;         // the feature file (generation.fid_features)
  std::string fid_checksum;         // the checksum the run pins ("" pins nothing)
  int64_t fid_samples = 1000;       // generated images per task for its FID
  // When set, rank 0 writes <samples_dir>/after_task_<j>.png after each stage
  // j (1-based): one row per task trained so far, the first sample_columns of
  // that task's FID images (so every grid shows the same latent draws).
  std::string samples_dir;
  int64_t sample_columns = 10;
  // With samples_dir: rank 0 also writes every task's FID images of the
  // latest evaluation, <samples_dir>/fid_images/task_<i>.npy (float32
  // [fid_samples, C, H, W] in [0, 1], i 1-based), and after_task.txt naming
  // that evaluation (0: before training, j: after task j), so the last row
  // of the FID matrix can be recomputed without the framework
  // (scripts/recompute_fid.py).
  bool save_images = false;
};

// Throws clx::Error naming the option when a value is impossible.
void validate_generation_config(const GenerationConfig& config);

// Rows of per-task values kept per evaluation point (-1: before training,
// else the last task trained): as text a checkpoint keeps ("<point> <value>..."
// per line, exact hexadecimal floats), read back, and as a result table
// (columns after, task_1, ...; rows "initial", "task_<j>").
using RowsByPoint = std::map<int, std::vector<double>>;
std::string rows_by_point_text(const RowsByPoint& rows, const std::string& line_prefix = "");
// Lines of `text` that start with `line_prefix` (the rest are left out).
RowsByPoint parse_rows_by_point(const std::string& text, const std::string& line_prefix = "");
ResultTable rows_by_point_table(const std::string& name, const RowsByPoint& rows);

class GenerationObjective : public Objective {
 public:
  // Loads and verifies the feature file (FidFeatureError naming it).
  explicit GenerationObjective(GenerationConfig config);

  // What the feature file records (path, checksum, dataset, accuracies).
  const FidFeatureInfo& feature_info() const { return features_.info; }
  // Every rank calls it and gets rank 0's row; also records the generated
  // accuracy and writes the sample grid.
  std::vector<double> evaluate(const EvaluationContext& context) override;
  // Generated accuracy: after each evaluation, for every task, the fraction of
  // its FID images that the feature classifier assigns to one of the task's
  // classes. Kept per evaluation point (-1: before training, else the last
  // task trained) and reported as the table "generated_accuracy".
  std::string state_text() const override;
  void load_state_text(const std::string& text) override;
  std::vector<ResultTable> result_tables() const override;
  const std::map<int, std::vector<double>>& generated_accuracy() const { return generated_accuracy_; }

  // The images task `task` is scored on after every stage (the same draws
  // every time: a function of train.seed and the task), [fid_samples, C, S, S]
  // in [0, 1]. Called on rank 0 with gradients off and the model in eval mode.
  virtual torch::Tensor scoring_images(ContinualNet& model, const TaskStream& stream, int task, uint64_t seed) = 0;

  // [positions, dim] float32 on the CPU: row k from a generator seeded by
  // (seed, tag, task, positions[k]), so a position's draw is the same on
  // every rank and in every pass.
  static torch::Tensor per_position_noise(uint64_t seed, uint64_t tag, int task, const torch::Tensor& positions,
                                          int64_t dim);

 protected:
  // FID's score kind; `statistic` names the epoch line's second figure.
  static ScoreKind fid_score_kind(const std::string& statistic);
  // The stream's images must be the feature classifier's shape.
  void check_image_shape(const TaskStream& stream) const;
  // The feature classifier's logits (every class) on flattened images in [0, 1]:
  // a fixed function that gradients flow through, not into.
  torch::Tensor feature_logits(const torch::Tensor& flat_images);

  GenerationConfig config_;
  FidFeatureNet features_;

 private:
  std::map<int, std::vector<double>> generated_accuracy_;
  // Real statistics of each task's evaluation images, computed once.
  std::vector<std::optional<GaussianStatistics>> real_statistics_;
};

}  // namespace clx
