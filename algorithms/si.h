#pragma once
// Synaptic Intelligence (Zenke et al. 2017): the path integral of the task
// loss w += -g_task * delta_theta along training, turned into importance
// Omega += max(0, w / ((theta_end - theta_start)^2 + xi)) after each task
// (clamped: a negative Omega would push weights away); penalty
// c * sum Omega (theta - theta*)^2. DESIGN.md 4.3.
#include <boost/program_options.hpp>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

struct SiOptions {
  double c = 0.1;
  double xi = 0.1;
  PenaltyStep penalty_step = PenaltyStep::Explicit;
};

class SiStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static SiOptions read_options(const boost::program_options::variables_map& values);
  explicit SiStrategy(SiOptions options);
  std::string name() const override { return "si"; }
  void before_task(StageContext& ctx) override;
  void after_backward(StageContext& ctx) override;
  void after_step(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  const NamedTensors& omega() const { return omega_; }
  const NamedTensors& path_integral() const { return path_; }

 private:
  std::vector<QuadraticTerm> penalty_terms() const;

  SiOptions options_;
  NamedTensors omega_, anchor_;          // accumulated importance, theta* (end of the previous task)
  NamedTensors path_, start_, previous_;  // w, theta at task start, theta before the current step
  std::vector<torch::Tensor> task_gradient_;  // all-reduced task-loss gradient of the current step
};

}  // namespace clx
