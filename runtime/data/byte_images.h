#pragma once
// What the readers of datasets stored as raw uint8 pixels share (IDX, CIFAR-10,
// STL-10, SVHN): finding a dataset's files in its folder, reading a binary
// file whole, checking labels, and turning uint8 pixels into the float
// LabelledImages every stream takes.
#include <torch/torch.h>

#include <string>

#include "runtime/data/image_source.h"

namespace clx {

// The official training or test part of a dataset that ships both.
enum class OfficialSplit { Train, Test };

// `folder`/`name`, or a clx::Error "<folder>/<name> does not exist (<layout>)"
// when it is missing; `layout` says which files the dataset's folder holds.
std::string dataset_file(const std::string& folder, const std::string& name, const std::string& layout);

// The whole content of `path` (plain or gzipped, as read_plain_or_gzip_file)
// as uint8 [bytes]. Throws clx::Error naming the file when it cannot be read
// or holds more than `max_bytes`.
torch::Tensor read_byte_file(const std::string& path, int64_t max_bytes);

// Throws clx::Error "<where>: label V of image I (of N) is outside LOW..HIGH"
// (or "is not a whole number" for a fractional floating-point label) for the
// first label not in [low, high]; I counts from 1. Any real dtype.
void check_label_range(const torch::Tensor& labels, int64_t low, int64_t high, const std::string& where);

// Images float32 [N, C, H, W] = pixels / 255, contiguous, and labels int64 [N].
// `pixels` (uint8 [N, C, H, W], any strides) and `labels` may view memory
// that the caller frees afterwards: the result holds copies.
LabelledImages labelled_images_from_bytes(const torch::Tensor& pixels, const torch::Tensor& labels,
                                          int64_t num_classes, std::string description);

}  // namespace clx
