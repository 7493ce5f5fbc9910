#pragma once
// MAS (Aljundi et al. 2018): Omega = mean over batches of
// |d mean ||f(x)||_2^2 / d theta|, summed over tasks; penalty
// lambda * sum Omega (theta - theta*)^2. DESIGN.md 4.3.
#include <boost/program_options.hpp>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

class MasStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  explicit MasStrategy(double lambda);
  std::string name() const override { return "mas"; }
  void after_backward(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  const NamedTensors& omega() const { return omega_; }

 private:
  double lambda_;
  NamedTensors omega_, anchor_;
};

}  // namespace clx
