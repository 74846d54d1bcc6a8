// Image: 8-bit pixels in memory, and the few operations a vision pipeline needs.
//
// Pixels are stored row by row, channels interleaved (HWC): the value of channel c at
// column x, row y is data[(y·width + x)·channels + c]. Decoding (PNG, JPEG, BMP, ...) and
// PNG encoding use stb_image / stb_image_write (Debian's libstb). Files are written
// atomically (core/io/atomic_file.h), and every error names the file at fault.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mmg {

// An 8-bit RGB colour.
struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> data;  // height·width·channels values, HWC

  Image() = default;
  Image(int width, int height, int channels, uint8_t fill = 0);

  bool empty() const { return data.empty(); }
  uint8_t& at(int x, int y, int c) { return data[(static_cast<size_t>(y) * width + x) * channels + c]; }
  uint8_t at(int x, int y, int c) const { return data[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

// Decodes an image file. `channels` (1, 3 or 4) is the number wanted: stb converts grey to
// RGB and back as needed. Throws naming the path when the file is missing or undecodable.
Image load_image(const std::string& path, int channels = 3);
// Decodes encoded bytes; `name` is used in error messages (a path, or "<memory>").
Image decode_image(const std::string& bytes, const std::string& name, int channels = 3);

// PNG bytes of the image (lossless), and an atomic write of them to `path`.
std::string encode_png(const Image& image);
void save_png(const Image& image, const std::string& path);

// Bilinear resampling to width × height, pixel centres aligned ("half-pixel" convention,
// as PyTorch's align_corners=False): output pixel x samples the input at
// (x + 0.5)·(in_w / out_w) − 0.5, clamped to the image, and blends its two neighbours.
Image resize_bilinear(const Image& image, int width, int height);
// The width × height window in the middle of the image (offsets rounded down).
Image center_crop(const Image& image, int width, int height);
// Resizes so that the shorter side is `size` (keeping the aspect ratio), then centre-crops
// to size × size: the usual way to bring an arbitrary photo to a square model input.
Image resize_and_center_crop(const Image& image, int size);

// A [C,H,W] f32 tensor with x = (v / 255 − mean[c]) / std[c]. mean and std have one value
// per channel (or a single value used for every channel).
Tensor image_to_tensor(const Image& image, const std::vector<float>& mean, const std::vector<float>& std);
// The inverse: v = round(255 · (x · std[c] + mean[c])), clamped to [0, 255]. t is [C,H,W].
Image tensor_to_image(const Tensor& t, const std::vector<float>& mean, const std::vector<float>& std);

}  // namespace mmg
