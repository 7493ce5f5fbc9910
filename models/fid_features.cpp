#include "models/fid_features.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>
#include <system_error>
#include <utility>

#include "models/conv_nets.h"
#include "runtime/checkpoint.h"
#include "runtime/fingerprint.h"
#include "runtime/named_tensors.h"
#include "runtime/text.h"

namespace clx {
namespace {

// The root attribute `phase` of a feature file: what tells it from a training checkpoint.
constexpr const char* kFidFeaturesPhase = "fid_features";

std::string how_to_make(const std::string& path) {
  return "make one with: fid-features --data.root DIR --output " + path + " (fid-features --help)";
}

// Puts a module in eval mode for a scope and restores its mode afterwards.
class EvalScope {
 public:
  explicit EvalScope(torch::nn::Module& module) : module_(module), was_training_(module.is_training()) {
    module_.eval();
  }
  ~EvalScope() { module_.train(was_training_); }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

std::string number_text(double value) {
  std::ostringstream text;
  text.precision(17);
  text << value;
  return text.str();
}

std::vector<std::pair<std::string, std::string>> metadata_entries(const FidFeatureInfo& info) {
  return {{"dataset", info.dataset},
          {"image_shape", sizes_text(info.image_shape)},
          {"num_classes", std::to_string(info.num_classes)},
          {"feature_size", std::to_string(FidFeatureNet::kFeatureSize)},
          {"train_accuracy", number_text(info.train_accuracy)},
          {"test_accuracy", number_text(info.test_accuracy)},
          {"train_samples", std::to_string(info.train_samples)},
          {"test_samples", std::to_string(info.test_samples)},
          {"epochs", std::to_string(info.epochs)},
          {"seed", std::to_string(info.seed)},
          {"checksum", info.checksum}};
}

// Reads the metadata of a feature file's /strategy_text group.
class MetadataReader {
 public:
  MetadataReader(std::string path, const std::vector<std::pair<std::string, std::string>>& entries)
      : path_(std::move(path)), entries_(entries) {}

  [[noreturn]] void fail(const std::string& name, const std::string& reason) const {
    throw FidFeatureError("FID feature file " + path_ + ": /strategy_text/" + name + ": " + reason);
  }
  std::string text(const std::string& name) const {
    for (const auto& [key, value] : entries_)
      if (key == name) return value;
    fail(name, "missing");
  }
  int64_t integer(const std::string& name) const {
    const std::string value = text(name);
    size_t used = 0;
    long long number = 0;
    try {
      number = std::stoll(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (value.empty() || used != value.size()) fail(name, "'" + value + "' is not an integer");
    return number;
  }
  double real(const std::string& name) const {
    const std::string value = text(name);
    size_t used = 0;
    double number = 0;
    try {
      number = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (value.empty() || used != value.size()) fail(name, "'" + value + "' is not a number");
    return number;
  }
  // "1x28x28" -> {1, 28, 28}.
  std::vector<int64_t> shape(const std::string& name) const {
    const std::string value = text(name);
    std::vector<int64_t> sizes;
    std::stringstream stream(value);
    for (std::string item; std::getline(stream, item, 'x');) {
      size_t used = 0;
      long long size = 0;
      try {
        size = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (item.empty() || used != item.size() || size < 1) fail(name, "'" + value + "' is not an image shape CxHxW");
      sizes.push_back(size);
    }
    if (sizes.size() != 3) fail(name, "'" + value + "' is not an image shape CxHxW");
    return sizes;
  }

 private:
  std::string path_;
  const std::vector<std::pair<std::string, std::string>>& entries_;
};

FidFeatureInfo read_metadata(const std::string& path, const CheckpointState& state) {
  const MetadataReader reader(path, state.strategy_text);
  FidFeatureInfo info;
  info.dataset = reader.text("dataset");
  info.image_shape = reader.shape("image_shape");
  info.num_classes = reader.integer("num_classes");
  if (info.num_classes < 2) reader.fail("num_classes", "must be at least 2, got " + std::to_string(info.num_classes));
  const int64_t feature_size = reader.integer("feature_size");
  if (feature_size != FidFeatureNet::kFeatureSize)
    reader.fail("feature_size", std::to_string(feature_size) + ", this build's feature classifier has " +
                                    std::to_string(FidFeatureNet::kFeatureSize));
  info.train_accuracy = reader.real("train_accuracy");
  info.test_accuracy = reader.real("test_accuracy");
  info.train_samples = reader.integer("train_samples");
  info.test_samples = reader.integer("test_samples");
  info.epochs = reader.integer("epochs");
  info.seed = reader.integer("seed");
  info.checksum = reader.text("checksum");
  info.options = state.config_text;
  info.path = path;
  return info;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

}  // namespace

// ---------------------------------------------------------------- network

FidFeatureNet::FidFeatureNet(const std::vector<int64_t>& image_shape, int64_t num_classes)
    : model_(make_lenet(image_shape, LeNetConfig{}, {num_classes})) {
  info.image_shape = image_shape;
  info.num_classes = num_classes;
}

torch::Device FidFeatureNet::device() const { return model_->parameters().front().device(); }

void FidFeatureNet::to(torch::Device device) { model_->to(device); }

void FidFeatureNet::check_images(const torch::Tensor& images) const {
  const bool fits = images.dim() == 4 && images.sizes().slice(1).vec() == info.image_shape;
  if (!fits)
    throw FidFeatureError("FID features: images of shape " + sizes_text(images.sizes().vec()) +
                          ", the feature classifier" + (info.path.empty() ? "" : " of " + info.path) +
                          " takes n x " + sizes_text(info.image_shape) +
                          (info.dataset.empty() ? std::string() : " (" + info.dataset + ")"));
}

void FidFeatureNet::for_each_batch(const torch::Tensor& images, int64_t batch_size,
                                  const std::function<void(const torch::Tensor& batch)>& visit) {
  check_images(images);
  torch::NoGradGuard no_grad;
  EvalScope eval(*model_);
  const torch::Device target = device();
  const int64_t n = images.size(0), batch = std::max<int64_t>(1, batch_size);
  for (int64_t start = 0; start < n; start += batch)
    visit(images.slice(0, start, std::min(n, start + batch)).to(target, torch::kFloat32));
}

torch::Tensor FidFeatureNet::features(const torch::Tensor& images, int64_t batch_size) {
  std::vector<torch::Tensor> parts;
  for_each_batch(images, batch_size, [&](const torch::Tensor& batch) { parts.push_back(model_->features(batch)); });
  if (parts.empty()) return torch::empty({0, kFeatureSize}, torch::TensorOptions().device(device()));
  return torch::cat(parts);
}

torch::Tensor FidFeatureNet::predict(const torch::Tensor& images, int64_t batch_size) {
  std::vector<torch::Tensor> parts;
  for_each_batch(images, batch_size,
                 [&](const torch::Tensor& batch) { parts.push_back(model_->logits(batch, 0).argmax(1)); });
  if (parts.empty()) return torch::empty({0}, torch::TensorOptions().device(device()).dtype(torch::kInt64));
  return torch::cat(parts);
}

GaussianStatistics FidFeatureNet::statistics(const torch::Tensor& images, int64_t batch_size) {
  StatisticsAccumulator accumulator;
  for_each_batch(images, batch_size, [&](const torch::Tensor& batch) { accumulator.add(model_->features(batch)); });
  return accumulator.statistics();
}

std::string FidFeatureNet::checksum() const {
  Fingerprint fingerprint;
  for (const auto& [name, tensor] : parameters_and_buffers(*model_)) fingerprint.add(std::string_view(name)).add(tensor);
  return fingerprint.hex();
}

// ---------------------------------------------------------------- file

void save_fid_features(const std::string& path, FidFeatureNet& net) {
  net.info.checksum = net.checksum();
  CheckpointState state;
  state.phase = kFidFeaturesPhase;
  state.config_text = net.info.options;
  state.model = parameters_and_buffers(*net.model());
  state.strategy_text = metadata_entries(net.info);
  try {
    write_checkpoint(path, state);
  } catch (const CheckpointError& error) {
    throw FidFeatureError("cannot write FID feature file " + path + ": " + error.object() + ": " + error.reason());
  } catch (const Error& error) {
    throw FidFeatureError("cannot write FID feature file " + path + ": " + error.what());
  }
  net.info.path = path;
}

FidFeatureNet load_fid_features(const std::string& path, const std::string& expected_checksum) {
  const std::string file = "FID feature file " + path;
  std::error_code ignored;
  if (!std::filesystem::exists(path, ignored)) throw FidFeatureError(file + " does not exist; " + how_to_make(path));
  CheckpointState state;
  try {
    state = read_checkpoint(path);
  } catch (const CheckpointError& error) {
    throw FidFeatureError(file + ": " + error.object() + ": " + error.reason());
  }
  if (state.phase != kFidFeaturesPhase)
    throw FidFeatureError(file + ": not an FID feature file (an HDF5 checkpoint of phase '" + state.phase + "'); " +
                          how_to_make(path));
  const FidFeatureInfo info = read_metadata(path, state);

  FidFeatureNet net(info.image_shape, info.num_classes);
  net.info = info;
  const NamedTensors live = parameters_and_buffers(*net.model());
  try {
    check_tensors_match(path, "/model", state.model, live);
  } catch (const CheckpointError& error) {
    throw FidFeatureError(file + ": " + error.object() + ": " + error.reason());
  }
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, tensor] : live) tensor.copy_(named(state.model, name));
  }
  const std::string actual = net.checksum();
  if (actual != info.checksum)
    throw FidFeatureError(file + ": checksum mismatch: the file records " + info.checksum + ", its parameters give " +
                          actual + " (they were changed after fid-features wrote the file; make a new one)");
  if (!expected_checksum.empty() && lower(expected_checksum) != info.checksum)
    throw FidFeatureError(file + ": checksum " + info.checksum + ", the run expects " + lower(expected_checksum) +
                          " (another feature classifier: FID values from different feature files are not comparable)");
  return net;
}

// ---------------------------------------------------------------- scores

std::vector<GaussianStatistics> class_statistics(FidFeatureNet& net, const std::vector<torch::Tensor>& images_by_class) {
  std::vector<GaussianStatistics> statistics;
  for (size_t c = 0; c < images_by_class.size(); ++c) {
    if (images_by_class[c].dim() >= 1 && images_by_class[c].size(0) < 2)
      throw Error("FID statistics of class " + std::to_string(c) + ": " + std::to_string(images_by_class[c].size(0)) +
                  " image(s), a covariance needs at least 2");
    statistics.push_back(net.statistics(images_by_class[c]));
  }
  return statistics;
}

std::vector<double> fid_per_class(FidFeatureNet& net, const std::vector<torch::Tensor>& generated_by_class,
                                  const std::vector<GaussianStatistics>& real_statistics) {
  if (generated_by_class.size() != real_statistics.size())
    throw Error("fid_per_class: " + std::to_string(generated_by_class.size()) + " classes of generated images, " +
                std::to_string(real_statistics.size()) + " of real ones");
  const std::vector<GaussianStatistics> generated = class_statistics(net, generated_by_class);
  std::vector<double> distances;
  for (size_t c = 0; c < generated.size(); ++c) distances.push_back(frechet_distance(generated[c], real_statistics[c]));
  return distances;
}

std::vector<double> fid_per_class(FidFeatureNet& net, const std::vector<torch::Tensor>& generated_by_class,
                                  const std::vector<torch::Tensor>& real_by_class) {
  if (generated_by_class.size() != real_by_class.size())
    throw Error("fid_per_class: " + std::to_string(generated_by_class.size()) + " classes of generated images, " +
                std::to_string(real_by_class.size()) + " of real ones");
  return fid_per_class(net, generated_by_class, class_statistics(net, real_by_class));
}

double generated_accuracy(FidFeatureNet& net, const torch::Tensor& images, const torch::Tensor& labels) {
  if (labels.dim() != 1 || images.dim() < 1 || labels.size(0) != images.size(0))
    throw Error("generated_accuracy: labels of shape " + sizes_text(labels.sizes().vec()) + " for images of shape " +
                sizes_text(images.sizes().vec()) + " (one label per image)");
  if (labels.size(0) == 0) return 0.0;
  const torch::Tensor predicted = net.predict(images);
  return predicted.eq(labels.to(predicted.device(), torch::kInt64)).to(torch::kFloat64).mean().item<double>();
}

}  // namespace clx
