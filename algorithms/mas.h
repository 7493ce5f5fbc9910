#pragma once
// MAS (Aljundi et al. 2018): Omega_t = mean over samples of
// |d ||f(x)||_2^2 / d theta| (per-sample gradients; a batch form as an
// option), summed over tasks; penalty lambda * sum Omega (theta - theta*)^2.
// DESIGN.md 4.3.
#include <boost/program_options.hpp>

#include "algorithms/importance.h"
#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

struct MasOptions {
  double lambda = 1.0;
  MasForm importance = MasForm::PerSample;
  PenaltyStep penalty_step = PenaltyStep::Explicit;
};

class MasStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static MasOptions read_options(const boost::program_options::variables_map& values);
  explicit MasStrategy(MasOptions options);
  std::string name() const override { return "mas"; }
  void after_backward(StageContext& ctx) override;
  void after_step(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  const NamedTensors& omega() const { return omega_; }

 private:
  std::vector<QuadraticTerm> penalty_terms() const;

  MasOptions options_;
  NamedTensors omega_, anchor_;
};

}  // namespace clx
