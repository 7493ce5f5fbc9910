#pragma once
// Hidden units as the unit-masking strategies (HAT, CLNP; DESIGN.md §4.3) see
// a network: one hook per masked layer, not a copy of the model.
//
// A model that exposes its units builds every hidden activation as a
// GatedReLU (a ReLU that can multiply its output by a per-unit gate and keep
// what it computed), and describes which units each shared parameter
// connects (ParameterUnits). A unit is a feature of a fully connected layer or
// a channel of a convolution. Without a gate set, a GatedReLU is a plain ReLU:
// every other strategy sees the same network as before.
#include <torch/torch.h>

#include <string>
#include <vector>

namespace clx {

class GatedReLUImpl : public torch::nn::Module {
 public:
  explicit GatedReLUImpl(int64_t units);
  // relu(input), times the gate along dimension 1 when one is set.
  torch::Tensor forward(const torch::Tensor& input);

  int64_t units() const { return units_; }
  // A [units] tensor (it may carry a graph: HAT trains its embeddings through
  // it); an undefined tensor removes the gate.
  void set_gate(const torch::Tensor& gate);
  const torch::Tensor& gate() const { return gate_; }
  // While on, every forward keeps its output before the gate (with graph),
  // for CLNP's activation penalty and activation statistics.
  void keep_activations(bool keep);
  const torch::Tensor& kept_activations() const { return kept_; }

 private:
  int64_t units_;
  torch::Tensor gate_;
  bool keep_ = false;
  torch::Tensor kept_;
};
TORCH_MODULE(GatedReLU);

// Which units a shared parameter connects. Its output units (dimension 0;
// every entry of a 1-D bias or BatchNorm parameter) belong to hidden layer
// `out`; the inputs of a weight (dimension 1) come from hidden layer `in`, or
// from the network's input when in < 0. `in_repeat` consecutive inputs share
// one unit: a fully connected layer after flattening C x H x W reads H * W
// features per channel.
struct ParameterUnits {
  std::string parameter;  // as in ContinualNet::named_shared_parameters()
  int out = -1;
  int in = -1;
  int64_t in_repeat = 1;
};

struct HiddenUnits {
  std::vector<std::string> names;  // one per hidden layer, for logs ("trunk.2")
  std::vector<GatedReLU> layers;
  std::vector<ParameterUnits> parameters;
  // What makes units meet other than through weights (BatchNorm statistics,
  // identity shortcuts), if anything: CLNP's exact isolation of old units needs none.
  std::string isolation_broken_by;

  bool empty() const { return layers.empty(); }
  // Appends a hidden layer; returns its index.
  int add_layer(const std::string& name, const GatedReLU& layer);
  // Records every parameter of `module` under "<prefix>.<name>" as connecting
  // `in` to `out`.
  void connect(const std::string& prefix, const torch::nn::Module& module, int out, int in, int64_t in_repeat = 1);
  void clear_gates() const;
  // The units `parameter` connects (a name from named_shared_parameters()),
  // or nullptr when the model does not say.
  const ParameterUnits* wiring(const std::string& parameter) const;
  // What a unit-masking strategy checks first: units exist and every shared
  // parameter is wired. Throws an Error that names `algorithm`, the first
  // unwired parameter, and the models that qualify (`models`, e.g. "mlp, lenet or vgg9").
  void require_wired(const std::vector<std::pair<std::string, torch::Tensor>>& shared_parameters,
                     const std::string& algorithm, const std::string& models) const;
};

// Per-unit values (one [units] tensor per hidden layer) laid out to broadcast
// against `parameter`: the output layer's values along dimension 0, and, for
// a weight whose inputs are hidden units, the input layer's values along
// dimension 1 (undefined otherwise).
torch::Tensor output_units_view(const ParameterUnits& wiring, const torch::Tensor& parameter,
                                const std::vector<torch::Tensor>& per_layer);
torch::Tensor input_units_view(const ParameterUnits& wiring, const torch::Tensor& parameter,
                               const std::vector<torch::Tensor>& per_layer);

}  // namespace clx
