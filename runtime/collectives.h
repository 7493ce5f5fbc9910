#pragma once
// Agreement helpers built on the Communicator's control plane. They turn
// "something failed on some rank" into one error that every rank throws, so
// the job stops everywhere with a single clear message instead of hanging.
#include <functional>
#include <string>

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

}  // namespace clx
