#pragma once
// Fine-tuning: one head per task; the shared trunk keeps training on each new
// task with no regularisation.
#include "runtime/strategy.h"

namespace clx {

class FinetuneStrategy final : public Strategy {
 public:
  std::string name() const override { return "finetune"; }
  HeadLayout default_heads() const override { return HeadLayout::Multi; }
};

}  // namespace clx
