#include "runtime/objective.h"

#include <algorithm>

#include "runtime/communicator.h"
#include "runtime/continual_net.h"
#include "runtime/data/sampler.h"
#include "runtime/strategy.h"

namespace clx {

NamedTensors checkpointed_model_state(const ContinualNet& model, Objective* objective) {
  NamedTensors state = parameters_and_buffers(model);
  if (objective != nullptr)
    for (auto& [name, tensor] : objective->trained_state()) state.emplace_back("objective." + name, tensor);
  return state;
}

LocalLoss ClassificationObjective::local_loss(ContinualNet& model, const TrainingBatch& batch,
                                              const std::function<int64_t(int)>& head_for) {
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(batch.device);
  LocalLoss result{torch::zeros({}, options), torch::zeros({}, options), {}};
  if (!batch.inputs.defined()) return result;
  result.features = model.features(batch.inputs);
  int64_t offset = 0;
  for (size_t g = 0; g < batch.group_tasks.size(); ++g) {
    const torch::Tensor logits =
        model.head_forward(result.features.narrow(0, offset, batch.group_counts[g]), head_for(batch.group_tasks[g]));
    offset += batch.group_counts[g];
    result.loss_sum = result.loss_sum + torch::nn::functional::cross_entropy(
                                            logits, batch.labels[g],
                                            torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    result.statistic_sum = result.statistic_sum + logits.argmax(1).eq(batch.labels[g]).sum().to(torch::kFloat32);
  }
  return result;
}

std::vector<double> ClassificationObjective::evaluate(const EvaluationContext& context) {
  ContinualNet& model = context.model;
  const bool was_training = model.is_training();
  model.eval();
  const std::vector<double> accuracy = sharded_accuracy(
      context, [&](int task, const torch::Tensor& inputs) { return model.logits(inputs, context.head_for(task)); });
  if (was_training) model.train();
  return accuracy;
}

std::vector<double> sharded_accuracy(const EvaluationContext& context, const TaskLogits& answer) {
  torch::NoGradGuard no_grad;
  ContinualNet& model = context.model;
  const int T = static_cast<int>(context.stream.size());
  // Correct answers stay on the device until every task is done: one host
  // synchronisation for the whole evaluation.
  std::vector<torch::Tensor> correct;
  std::vector<int64_t> totals;
  for (int task = 0; task < T; ++task) {
    const TaskData& data = context.eval_data(task);
    const auto [offset, length] = shard_range(data.size(), context.comm.rank(), context.comm.size());
    torch::Tensor allowed;  // single head: only classes seen so far may be answered
    if (context.heads == HeadLayout::Single)
      allowed = torch::tensor(context.stream.classes_up_to(std::max(task, context.trained_up_to)), torch::kInt64)
                    .to(context.device);
    torch::Tensor task_correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(context.device));
    context.strategy.before_evaluate(model, task);
    for (int64_t start = offset; start < offset + length; start += context.batch_size) {
      const int64_t n = std::min(context.batch_size, offset + length - start);
      const torch::Tensor positions = torch::arange(start, start + n, torch::kInt64);
      torch::Tensor logits;
      {
        AutocastScope autocast(context.device, context.precision);
        logits = answer(task, data.inputs(positions).to(context.device, /*non_blocking=*/true));
      }
      const torch::Tensor labels = data.labels(positions, context.heads).to(context.device, /*non_blocking=*/true);
      torch::Tensor predicted;
      if (allowed.defined()) predicted = allowed.index_select(0, logits.index_select(1, allowed).argmax(1));
      else predicted = logits.argmax(1);
      task_correct.add_(predicted.eq(labels).sum());
    }
    context.strategy.after_evaluate(model, task);
    correct.push_back(task_correct);
    totals.push_back(length);
  }
  torch::Tensor counts =
      torch::stack({torch::stack(correct), torch::tensor(totals, torch::kInt64).to(context.device)}, 1)
          .contiguous();  // [T, 2]: correct, total
  context.comm.allreduce(counts, ReduceOp::Sum);
  counts = counts.to(torch::kCPU);
  std::vector<double> accuracy(T);
  for (int task = 0; task < T; ++task)
    accuracy[task] = static_cast<double>(counts[task][0].item<int64_t>()) /
                     static_cast<double>(std::max<int64_t>(counts[task][1].item<int64_t>(), 1));
  return accuracy;
}

}  // namespace clx
