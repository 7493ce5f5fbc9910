#include "runtime/data/augment.h"

#include "runtime/data/sampler.h"
#include "runtime/error.h"

namespace clx {

Augment parse_augment(const std::string& text) {
  if (text == "none") return Augment::None;
  if (text == "flip_crop") return Augment::FlipCrop;
  throw Error("data.augment: '" + text + "' is not one of none, flip_crop");
}

std::string to_string(Augment augment) { return augment == Augment::None ? "none" : "flip_crop"; }

FlipCrop draw_flip_crop(uint64_t augment_seed, int64_t row, int64_t padding) {
  SplitMix64 generator(mix_seed({augment_seed, static_cast<uint64_t>(row)}));
  const uint64_t offsets = static_cast<uint64_t>(2 * padding + 1);
  FlipCrop draw;
  draw.dy = static_cast<int64_t>(generator.below(offsets));
  draw.dx = static_cast<int64_t>(generator.below(offsets));
  draw.flip = generator.below(2) == 1;
  return draw;
}

void to_planar_float(const uint8_t* hwc, int64_t height, int64_t width, int64_t channels, const FlipCrop* transform,
                     int64_t padding, float* out) {
  const int64_t plane = height * width;
  if (transform == nullptr) {
    for (int64_t p = 0; p < plane; ++p)
      for (int64_t c = 0; c < channels; ++c) out[c * plane + p] = static_cast<float>(hwc[p * channels + c]) / 255.0f;
    return;
  }
  for (int64_t y = 0; y < height; ++y) {
    const int64_t source_y = y + transform->dy - padding;
    for (int64_t x = 0; x < width; ++x) {
      const int64_t source_x = (transform->flip ? width - 1 - x : x) + transform->dx - padding;
      const bool inside = source_y >= 0 && source_y < height && source_x >= 0 && source_x < width;
      const uint8_t* pixel = inside ? hwc + (source_y * width + source_x) * channels : nullptr;
      for (int64_t c = 0; c < channels; ++c)
        out[c * plane + y * width + x] = inside ? static_cast<float>(pixel[c]) / 255.0f : 0.0f;
    }
  }
}

}  // namespace clx
