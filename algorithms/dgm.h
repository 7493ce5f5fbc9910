#pragma once
// DGM's mask training on its generator (Ostapenko et al. CVPR 2019; every
// constant as the authors' reference SAP/machine-learning-dgm, MNIST
// settings; DESIGN.md §4.3). The masks, heads and growth live in the network
// (models/dgm_net.h); the critic, replay and class-incremental scoring in the
// DGM objective (models/dgm_objective.h). This strategy does what HAT does
// for a classifier, with DGM's schedule:
//   scale    epoch e of E: s_e = 1/s_max + (s_max - 1/s_max) (e + 1) / E (the
//            largest scale rises over the epochs); DGMw anneals within the
//            epoch from 1/s_e to s_e (hat_annealed_scale), DGMa holds s_e;
//   gradient task t's embedding gradients compensated as HAT's with s_e as the
//            largest scale (no clamp of the embeddings: the reference has none);
//            weight gradients times 1 - reserved (DGMw: the union of earlier
//            tasks' binary weight masks; DGMa: min of the input and output units');
//   penalty  lambda (sum of widths / sum of initial widths) sum m (1 - r) / sum (1 - r)
//            over the hidden layers: m the task's gates, r the reserved masks;
//   growth   after every task but the last, each hidden layer grows by the
//            channels that keep the free capacity constant (dgm_growth),
//            refused beyond dgm.max_units.
// Deviation from the reference, on purpose: its first epoch's scale runs from
// s_max down to 1/s_max (its epoch counter starts at 0); here epoch e uses
// (e + 1) / E, as the reference's ImageNet variant does, so the last epoch
// reaches s_max.
#include <boost/program_options.hpp>

#include "models/dgm_net.h"
#include "runtime/strategy.h"

namespace clx {

struct DgmOptions {
  DgmMasks masks = DgmMasks::Weights;
  double smax = 0.0;       // 0: the reference's (1e4 for weights, 1e5 for units)
  double sparsity = -1.0;  // negative: the reference's (0.08 for weights, 0.01 for units)
  int64_t max_units = 4096;
  bool expand = true;
};

// The largest scale of epoch `epoch` (0-based) of `epochs`.
double dgm_epoch_scale(double smax, int64_t epoch, int64_t epochs);
// The options with the reference's values filled in for the mask kind.
DgmOptions resolved_dgm_options(DgmOptions options);

class DgmStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static DgmOptions read_options(const boost::program_options::variables_map& values);
  explicit DgmStrategy(DgmOptions options);
  std::string name() const override { return "dgm"; }
  // One classifier (the critic's) over every class: class-incremental.
  HeadLayout default_heads() const override { return HeadLayout::Single; }
  void check_stream(const TaskStream& stream) const override;

  void before_task(StageContext& ctx) override;
  void before_forward(StageContext& ctx) override;
  torch::Tensor penalty_loss(StageContext& ctx) override;
  void after_backward(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  // dgm_generator: per task and hidden layer, the width the task trained,
  // the entries the masks reserve after it and the generator's parameters.
  std::vector<ResultTable> result_tables(int tasks_trained) const override;

  const DgmOptions& options() const { return options_; }

 private:
  void reserve_for(StageContext& ctx);

  DgmOptions options_;
  // This task's reserved masks (earlier tasks' union) and their weight view.
  std::vector<torch::Tensor> reserved_, reserved_weights_;
  double scale_ = 0.0, epoch_scale_ = 0.0;
  // One row per finished task: per layer (width, reserved entries, entries), then parameters.
  // [tasks, 3 * layers + 1], created at the first task.
  torch::Tensor sizes_;
};

}  // namespace clx
