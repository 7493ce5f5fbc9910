#pragma once
// SGD-F: trains the whole network on task 1, then only each new task's head
// (the shared trunk is frozen). DESIGN.md 4.3.
#include "runtime/strategy.h"

namespace clx {

class SgdfStrategy final : public Strategy {
 public:
  std::string name() const override { return "sgdf"; }
  bool trains_shared_parameters(int stage) const override { return stage == 0; }
};

}  // namespace clx
