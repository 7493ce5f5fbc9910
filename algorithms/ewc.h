#pragma once
// EWC (Kirkpatrick et al. 2017): penalty (lambda/2) sum F (theta - theta*)^2
// with the diagonal Fisher from per-sample gradients, one term per task
// (separate) or a single gamma-decayed term (online). DESIGN.md 4.3.
#include <boost/program_options.hpp>

#include "algorithms/parameter_tensors.h"
#include "runtime/strategy.h"

namespace clx {

// y in log p(y|x): drawn from the model (the true Fisher) or the true label (empirical Fisher).
enum class FisherLabels { Sampled, True };
// One penalty term per task, or one online term F = gamma F + F_t.
enum class EwcMode { Separate, Online };

struct EwcOptions {
  double lambda = 100.0;
  int64_t fisher_samples = 1000;  // per task; <= 0: all
  FisherLabels labels = FisherLabels::Sampled;
  EwcMode mode = EwcMode::Separate;
  double gamma = 1.0;  // online: F = gamma * F + F_t
  PenaltyStep penalty_step = PenaltyStep::Explicit;
};

class EwcStrategy final : public Strategy {
 public:
  static void add_options(boost::program_options::options_description& options);
  static EwcOptions read_options(const boost::program_options::variables_map& values);
  explicit EwcStrategy(EwcOptions options);
  std::string name() const override { return "ewc"; }
  void after_backward(StageContext& ctx) override;
  void after_step(StageContext& ctx) override;
  void after_task(StageContext& ctx) override;
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;

  const std::vector<NamedTensors>& fishers() const { return fishers_; }

 private:
  std::vector<QuadraticTerm> penalty_terms() const;

  EwcOptions options_;
  std::vector<NamedTensors> fishers_, anchors_;  // one per task (separate) or one (online)
};

}  // namespace clx
