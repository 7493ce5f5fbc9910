#pragma once
// SGD: one head over every class, plain training on each task in turn, no
// protection of earlier tasks (the lower bound in the paper's tables).
#include "runtime/strategy.h"

namespace clx {

class SgdStrategy final : public Strategy {
 public:
  std::string name() const override { return "sgd"; }
  HeadLayout default_heads() const override { return HeadLayout::Single; }
};

}  // namespace clx
