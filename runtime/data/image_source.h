#pragma once
// Image sources: where a task split's images come from.
//
// A source holds N labelled images and hands out any subset of them as one
// float32 batch [n, C, H, W] with values in [0, 1]. Two kinds exist:
//  - LabelledImages: the whole dataset as one tensor in memory (the IDX
//    readers; MNIST-scale data). It can live on the compute device.
//  - ImageFolderSource (image_folder.h): image files decoded on demand on
//    host worker threads, optionally cached as uint8.
//
// Augmentation is seeded per sample: sample `row` of a batch gathered with
// `augment_seed` != 0 draws its transform from
// SplitMix64(mix_seed({augment_seed, row})), so an image's augmentation does
// not depend on the batch it is in, the number of ranks or threads, or where
// a run was resumed. augment_seed 0 means no augmentation (evaluation,
// importance passes).
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace clx {

class ImageSource {
 public:
  virtual ~ImageSource() = default;

  torch::Tensor labels;  // int64 [N], values in [0, num_classes)
  int64_t num_classes = 0;
  std::string description;  // e.g. "fashion-mnist train (/usr/share/...)"
  // Names of the classes when the data has them (image folders: the folder names); else empty.
  std::vector<std::string> class_names;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  // {C, H, W} of every image.
  virtual std::vector<int64_t> image_shape() const = 0;
  // Images of `rows` (int64 [n], on storage_device()) as float32 [n, C, H, W]
  // in [0, 1] on storage_device(), augmented as the header says when
  // augment_seed != 0 and the source augments.
  virtual torch::Tensor gather(const torch::Tensor& rows, uint64_t augment_seed) const = 0;
  // Where gather() returns its batches and where index tensors into this source belong.
  virtual torch::Device storage_device() const = 0;
  // This source prepared for training on `compute_device`: in-memory data moves
  // there; decoded-on-demand data stays on the host (in pinned memory for a CUDA device).
  virtual std::shared_ptr<const ImageSource> placed_for(torch::Device compute_device) const = 0;
};

// A whole dataset held as one tensor (CPU or device memory).
class LabelledImages : public ImageSource {
 public:
  torch::Tensor images;  // float32 [N, C, H, W], values in [0, 1], on the same device as `labels`

  std::vector<int64_t> image_shape() const override { return images.sizes().slice(1).vec(); }
  // In-memory data is never augmented: augment_seed is ignored (data.augment is an image-folder option).
  torch::Tensor gather(const torch::Tensor& rows, uint64_t augment_seed) const override;
  torch::Device storage_device() const override { return images.device(); }
  // A copy whose images and labels are on `compute_device` (no copy of the data when already there).
  std::shared_ptr<const ImageSource> placed_for(torch::Device compute_device) const override;
};

}  // namespace clx
