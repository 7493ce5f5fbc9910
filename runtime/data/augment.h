#pragma once
// Training-time image augmentation, seeded per sample (see image_source.h):
// a random crop of the image padded by `padding` zero pixels on every side,
// then a random horizontal flip, as torchvision's
// RandomCrop(size, padding) + RandomHorizontalFlip.
#include <cstdint>
#include <string>

namespace clx {

enum class Augment { None, FlipCrop };

// "none" | "flip_crop"; throws clx::Error naming data.augment otherwise.
Augment parse_augment(const std::string& text);
std::string to_string(Augment augment);

// One sample's draw: the crop's top-left corner in the padded image
// (dy, dx in [0, 2 * padding]) and whether the crop is mirrored.
struct FlipCrop {
  int64_t dy = 0, dx = 0;
  bool flip = false;
};

// Drawn from SplitMix64(mix_seed({augment_seed, row})) in the order dy, dx, flip.
FlipCrop draw_flip_crop(uint64_t augment_seed, int64_t row, int64_t padding);

// Converts one interleaved uint8 image hwc[height][width][channels] to planar
// float out[channels][height][width] = value / 255. With `transform`, output
// pixel (y, x) reads input (y + dy - padding, xs + dx - padding) with
// xs = width - 1 - x when flipped, else x; outside the image it is 0.
void to_planar_float(const uint8_t* hwc, int64_t height, int64_t width, int64_t channels, const FlipCrop* transform,
                     int64_t padding, float* out);

}  // namespace clx
