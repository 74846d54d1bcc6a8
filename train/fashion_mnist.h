// Fashion-MNIST: 70 000 grey 28×28 pictures of clothes in ten classes (Xiao et al., 2017),
// a drop-in harder replacement for MNIST, read from the gzipped IDX files that Debian's
// `dataset-fashion-mnist` package installs (no download at run time).
//
// The IDX format (LeCun's MNIST format) is a big-endian header and then raw bytes:
//   magic number  0x00000803 for images (unsigned bytes, 3 dimensions),
//                 0x00000801 for labels (unsigned bytes, 1 dimension)
//   dimensions    one 32-bit count per dimension: images n, rows, cols; labels n
//   data          n·rows·cols pixels (row by row, 0 = background, 255 = ink) or n labels
// Every error names the file and what is wrong with it: a missing file, a wrong magic
// number, fewer bytes than the header promises, image and label counts that differ, or a
// label outside 0..9.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/dataset.h"
#include "train/image.h"

namespace mmg {

inline const std::string kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
inline constexpr int kFashionClasses = 10;

// "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
// "bag", "ankle boot": label i is the i-th name (the order of the original data set).
const std::vector<std::string>& fashion_class_names();

// The pictures of a (gzipped or plain) IDX image file, as 1-channel images rows × cols.
std::vector<Image> read_idx_images(const std::string& path);
// The labels of an IDX label file, one byte each.
std::vector<uint8_t> read_idx_labels(const std::string& path);

// Whether all four files are in `dir`.
bool fashion_mnist_available(const std::string& dir = kFashionMnistDir);

// The data set: train = the first 60000 − val_size training pictures, val = the last
// val_size of them, test = the 10 000 t10k pictures. Each sample has its label, its
// picture, the caption "a photo of a <class>" (the prompt zero-shot classification
// compares against) and its source, e.g. "train-images-idx3-ubyte.gz #123" (the index in
// that file).
Dataset load_fashion_mnist(const std::string& dir = kFashionMnistDir, int64_t val_size = 5000);

// "a" or "an" and the class name: "a sneaker", "an ankle boot".
std::string with_article(const std::string& noun);

}  // namespace mmg
