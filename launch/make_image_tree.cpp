// make_image_tree: writes a synthetic one-folder-per-class image tree (JPEG and
// PNG files of several sizes) for trying data.format=image_folder without a
// download, e.g. with configs/image_folder_synthetic.ini. See docs/usage.md.
#include <boost/program_options.hpp>

#include <filesystem>
#include <iostream>

#include "runtime/data/synthetic_images.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  std::string root;
  int64_t classes = 10, images = 100, side = 32;
  uint64_t seed = 1;
  po::options_description description(
      "make_image_tree: writes ROOT/class_00 ... with synthetic JPEG and PNG images\n\n"
      "Usage: make_image_tree ROOT [options]\n\nOptions");
  description.add_options()
      ("help,h", "show this help")
      ("root", po::value<std::string>(&root), "folder to write (created; must not hold a tree already)")
      ("classes", po::value<int64_t>(&classes)->default_value(10), "number of class folders")
      ("images", po::value<int64_t>(&images)->default_value(100), "images per class (class k gets k % 3 more)")
      ("side", po::value<int64_t>(&side)->default_value(32), "each image is side..2*side pixels wide and high")
      ("seed", po::value<uint64_t>(&seed)->default_value(1), "seed of every pixel");
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
    if (classes < 1 || images < 2 || side < 4) throw po::error("--classes >= 1, --images >= 2 and --side >= 4 are needed");
  } catch (const po::error& error) {
    std::cerr << "make_image_tree: error: " << error.what() << " (see --help)\n";
    return 2;
  }
  try {
    if (std::filesystem::exists(root) && !std::filesystem::is_empty(root))
      throw std::runtime_error(root + " exists and is not empty; choose a new folder");
    const int64_t written = clx::write_synthetic_image_folder(root, classes, images, side, seed);
    std::cout << "make_image_tree: wrote " << written << " images in " << classes << " class folders under " << root
              << "\n";
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "make_image_tree: error: " << error.what() << "\n";
    return 1;
  }
}
