// make-five-datasets: writes the five datasets of configs/five_datasets_vgg9.ini
// (MNIST, notMNIST, SVHN, STL-10, CIFAR-10) as small synthetic stand-ins in
// the real files' formats and layout, so that the five-dataset sequence can
// be tried end to end on a machine that cannot download them. The images
// are learnable class patterns (runtime/data/format_writers.h), not the real
// datasets: accuracies on them say nothing about the paper's figures.
#include <boost/program_options.hpp>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "runtime/data/format_writers.h"
#include "runtime/data/sampler.h"
#include "runtime/file_io.h"

namespace po = boost::program_options;

namespace {

struct Counts {
  int64_t train_per_class = 60;
  int64_t test_per_class = 20;
  uint64_t seed = 1;
  bool damaged_file = true;
};

// Images of the dataset with style `style` for the train (part 0) or test (part 1) split.
clx::SyntheticClassImages images_for(const Counts& counts, int64_t style, int part, int64_t channels, int64_t side) {
  const int64_t per_class = part == 0 ? counts.train_per_class : counts.test_per_class;
  return clx::synthetic_class_images(per_class, 10, channels, side, style,
                                     clx::mix_seed({counts.seed, static_cast<uint64_t>(part)}));
}

// The rows of `data` in a seeded order (the real CIFAR-10 batches mix classes).
clx::SyntheticClassImages shuffled(const clx::SyntheticClassImages& data, uint64_t seed) {
  torch::manual_seed(seed);
  const torch::Tensor order = torch::randperm(data.labels.size(0), torch::kInt64);
  return {data.images.index_select(0, order), data.labels.index_select(0, order)};
}

int64_t write_all(const std::string& root, const Counts& counts) {
  namespace fs = std::filesystem;
  const auto at = [&](const std::string& relative) { return (fs::path(root) / relative).string(); };
  int64_t files = 0;

  // MNIST: gzipped IDX files, 1 x 28 x 28.
  const char* mnist_prefixes[2] = {"train", "t10k"};
  for (int part = 0; part < 2; ++part) {
    const clx::SyntheticClassImages data = images_for(counts, 0, part, 1, 28);
    const std::string prefix = std::string("mnist/") + mnist_prefixes[part];
    clx::write_idx_file(at(prefix + "-images-idx3-ubyte.gz"), data.images.squeeze(1));
    clx::write_idx_file(at(prefix + "-labels-idx1-ubyte.gz"), data.labels.to(torch::kUInt8));
    files += 2;
  }

  // notMNIST_small: one folder of grey 28 x 28 PNG files per letter, no split
  // of its own (the config splits each letter 7:3), and, as in the real
  // archive, a file that is no readable image.
  {
    const clx::SyntheticClassImages train = images_for(counts, 1, 0, 1, 28), test = images_for(counts, 1, 1, 1, 28);
    const std::vector<std::string> letters = {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J"};
    files += clx::write_png_class_folders(at("notMNIST_small"), letters, train.images, train.labels, "a");
    files += clx::write_png_class_folders(at("notMNIST_small"), letters, test.images, test.labels, "b");
    if (counts.damaged_file) {
      clx::write_file_atomically(at("notMNIST_small/A/damaged.png"), "this file is no PNG image\n");
      ++files;
    }
  }

  // SVHN: MATLAB files, 3 x 32 x 32.
  const char* svhn_files[2] = {"svhn/train_32x32.mat", "svhn/test_32x32.mat"};
  for (int part = 0; part < 2; ++part) {
    const clx::SyntheticClassImages data = images_for(counts, 2, part, 3, 32);
    clx::write_svhn_mat(at(svhn_files[part]), data.images, data.labels);
    ++files;
  }

  // STL-10: binary files, 3 x 96 x 96.
  const char* stl10_parts[2] = {"train", "test"};
  for (int part = 0; part < 2; ++part) {
    const clx::SyntheticClassImages data = images_for(counts, 3, part, 3, 96);
    clx::write_stl10_split(at("stl10_binary"), stl10_parts[part], data.images, data.labels);
    files += 2;
  }

  // CIFAR-10: five training batches of mixed classes and a test batch, 3 x 32 x 32.
  {
    const clx::SyntheticClassImages train = shuffled(images_for(counts, 4, 0, 3, 32), counts.seed);
    const int64_t n = train.labels.size(0);
    for (int64_t b = 0; b < 5; ++b) {
      const int64_t first = n * b / 5, last = n * (b + 1) / 5;
      clx::write_cifar10_batch(at("cifar-10-batches-bin/data_batch_" + std::to_string(b + 1) + ".bin"),
                               train.images.slice(0, first, last), train.labels.slice(0, first, last));
    }
    const clx::SyntheticClassImages test = images_for(counts, 4, 1, 3, 32);
    clx::write_cifar10_batch(at("cifar-10-batches-bin/test_batch.bin"), test.images, test.labels);
    files += 6;
  }
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  std::string root;
  Counts counts;
  bool no_damaged_file = false;
  po::options_description description(
      "make-five-datasets: writes synthetic stand-ins of MNIST, notMNIST, SVHN, STL-10 and CIFAR-10\n"
      "in the real files' formats, laid out as configs/five_datasets_vgg9.ini expects them:\n"
      "  ROOT/mnist/  ROOT/notMNIST_small/A..J/  ROOT/svhn/  ROOT/stl10_binary/  ROOT/cifar-10-batches-bin/\n"
      "Each dataset has 10 classes of learnable patterns (a different pattern style per dataset);\n"
      "they exercise the loaders and the sequence, not the real datasets' difficulty.\n\n"
      "Usage: make-five-datasets ROOT [options]\n"
      "  then: mpirun -np 2 build/train --config configs/five_datasets_vgg9.ini --data.datasets=...\n"
      "  (with ROOT = data/five_datasets the config's own paths apply)\n\nOptions");
  description.add_options()
      ("help,h", "show this help")
      ("root", po::value<std::string>(&root), "folder to write (created; must be empty or missing)")
      ("train-per-class", po::value<int64_t>(&counts.train_per_class)->default_value(60),
       "training images per class of each dataset (notMNIST: all its images are train+test per class)")
      ("test-per-class", po::value<int64_t>(&counts.test_per_class)->default_value(20), "test images per class")
      ("seed", po::value<uint64_t>(&counts.seed)->default_value(1), "seed of every pixel")
      ("no-damaged-file", po::bool_switch(&no_damaged_file),
       "leave out notMNIST_small/A/damaged.png (the unreadable file the real archive also has)");
  po::positional_options_description positional;
  positional.add("root", 1);
  try {
    po::variables_map values;
    po::store(po::command_line_parser(argc, argv).options(description).positional(positional).run(), values);
    if (values.count("help")) {
      std::cout << description << "\n";
      return 0;
    }
    po::notify(values);
    if (root.empty()) throw po::error("the folder to write (ROOT) is missing");
    if (counts.train_per_class < 2 || counts.test_per_class < 1)
      throw po::error("--train-per-class must be at least 2 and --test-per-class at least 1");
  } catch (const po::error& error) {
    std::cerr << "make-five-datasets: error: " << error.what() << " (see --help)\n";
    return 2;
  }
  counts.damaged_file = !no_damaged_file;
  try {
    if (std::filesystem::exists(root) && !std::filesystem::is_empty(root))
      throw std::runtime_error(root + " exists and is not empty; choose a new folder");
    const int64_t files = write_all(root, counts);
    std::cout << "make-five-datasets: wrote " << files << " files under " << root << " ("
              << counts.train_per_class << " training and " << counts.test_per_class
              << " test images per class and dataset)\n";
    std::cout << "data.datasets = idx:" << root << "/mnist, image_folder:" << root << "/notMNIST_small, svhn:" << root
              << "/svhn, stl10:" << root << "/stl10_binary, cifar10:" << root << "/cifar-10-batches-bin\n";
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "make-five-datasets: error: " << error.what() << "\n";
    return 1;
  }
}
