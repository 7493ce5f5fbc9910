#pragma once
// Helpers built on the Communicator. The agreement helpers turn "something
// failed on some rank" into one error that every rank throws, so the job
// stops everywhere with a single clear message instead of hanging; the fused
// sum reduces a list of tensors in one collective.
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "runtime/communicator.h"

namespace clx {

// Runs `step` on every rank. If it throws on any rank, every rank throws a
// CollectiveError carrying the failing rank's message (prefixed by the rank
// number when the ranks disagree or only some failed).
void run_on_all_ranks(Communicator& comm, const std::function<void()>& step);

// Every rank passes its own `text` (e.g. the effective configuration, one
// "key = value" per line). If any rank's text differs from rank 0's, every
// rank throws a CollectiveError naming `what`, the ranks and the first line
// that differs.
void require_identical_across_ranks(Communicator& comm, const std::string& text, const std::string& what);

// Sums `tensors` (defined, one dtype and device) across ranks in a single
// all-reduce: they are copied into `flat`, allocated on first use and reused
// while it has the right size, and the sums come back as views of `flat`
// shaped like the inputs, valid until `flat` is used again.
std::vector<torch::Tensor> sum_across_ranks_fused(Communicator& comm, const std::vector<torch::Tensor>& tensors,
                                                  torch::Tensor& flat);

}  // namespace clx
