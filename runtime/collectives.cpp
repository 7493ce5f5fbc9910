#include "runtime/collectives.h"

#include <sstream>
#include <vector>

#include "runtime/error.h"

namespace clx {
namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}

std::string first_difference(const std::string& reference, const std::string& other) {
  const auto a = split_lines(reference), b = split_lines(other);
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string left = i < a.size() ? a[i] : "<missing>";
    const std::string right = i < b.size() ? b[i] : "<missing>";
    if (left != right) return "'" + left + "' vs '" + right + "'";
  }
  return "(texts differ)";
}

}  // namespace

void run_on_all_ranks(Communicator& comm, const std::function<void()>& step) {
  std::string failure;
  try {
    step();
  } catch (const std::exception& error) {
    failure = error.what();
    if (failure.empty()) failure = "unknown error";
  }
  if (comm.size() == 1) {
    if (!failure.empty()) throw CollectiveError(failure);
    return;
  }
  const std::vector<std::string> failures = comm.allgather_strings(failure);
  int first = -1, count = 0;
  bool same_message = true;
  for (int r = 0; r < comm.size(); ++r) {
    if (failures[r].empty()) continue;
    if (first < 0) first = r;
    else if (failures[r] != failures[first]) same_message = false;
    ++count;
  }
  if (first < 0) return;
  if (count == comm.size() && same_message) throw CollectiveError(failures[first]);
  std::string message = "rank " + std::to_string(first) + ": " + failures[first];
  if (count > 1) message += " (" + std::to_string(count - 1) + " other rank(s) failed too)";
  throw CollectiveError(message);
}

void require_identical_across_ranks(Communicator& comm, const std::string& text, const std::string& what) {
  if (comm.size() == 1) return;
  const std::vector<std::string> texts = comm.allgather_strings(text);
  std::string differing;
  int first = -1;
  for (int r = 1; r < comm.size(); ++r) {
    if (texts[r] == texts[0]) continue;
    if (first < 0) first = r;
    differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  }
  if (first < 0) return;
  throw CollectiveError(what + " differs between ranks: rank(s) " + differing + " differ from rank 0; first difference (rank 0 vs rank " +
                        std::to_string(first) + "): " + first_difference(texts[0], texts[first]));
}

std::vector<torch::Tensor> sum_across_ranks_fused(Communicator& comm, const std::vector<torch::Tensor>& tensors,
                                                  torch::Tensor& flat) {
  torch::NoGradGuard no_grad;
  int64_t total = 0;
  for (const auto& tensor : tensors) total += tensor.numel();
  if (tensors.empty()) return {};
  if (!flat.defined() || flat.numel() != total || flat.scalar_type() != tensors[0].scalar_type())
    flat = torch::empty({total}, tensors[0].options().requires_grad(false));
  std::vector<torch::Tensor> sums;
  int64_t offset = 0;
  for (const auto& tensor : tensors) {
    torch::Tensor slot = flat.narrow(0, offset, tensor.numel());
    slot.copy_(tensor.reshape({-1}));
    sums.push_back(slot.view(tensor.sizes()));
    offset += tensor.numel();
  }
  comm.allreduce(flat, ReduceOp::Sum);
  return sums;
}

}  // namespace clx
