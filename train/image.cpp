#include "train/image.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/io/atomic_file.h"

namespace mmg {

Image::Image(int w, int h, int c, uint8_t fill)
    : width(w), height(h), channels(c), data(static_cast<size_t>(w) * h * c, fill) {
  MMG_CHECK(w > 0 && h > 0 && c > 0, "Image: size {}x{}x{} must be positive", w, h, c);
}

// ---- decoding ----

Image decode_image(const std::string& bytes, const std::string& name, int channels) {
  MMG_CHECK(channels == 1 || channels == 3 || channels == 4, "load image {}: channels must be 1, 3 or 4, got {}",
            name, channels);
  MMG_CHECK(!bytes.empty(), "load image {}: the file is empty", name);
  int w = 0, h = 0, file_channels = 0;
  // stbi returns malloc'ed pixels (or null with a reason); own them until copied.
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), static_cast<int>(bytes.size()), &w,
                            &h, &file_channels, channels),
      stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    MMG_FAIL("load image {}: cannot decode ({}): not a PNG, JPEG, BMP, GIF, TGA, PSD, HDR or PNM image", name,
             reason ? reason : "unknown reason");
  }
  Image img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.data.assign(pixels.get(), pixels.get() + static_cast<size_t>(w) * h * channels);
  return img;
}

Image load_image(const std::string& path, int channels) {
  // Read the bytes ourselves (rather than stbi_load) so a missing file gets the OS's reason.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MMG_CHECK(f != nullptr, "load image {}: cannot open: {}", path, std::strerror(errno));
  std::fclose(f);
  return decode_image(read_file(path), path, channels);
}

// ---- encoding ----

std::string encode_png(const Image& image) {
  MMG_CHECK(!image.empty() && image.channels >= 1 && image.channels <= 4,
            "encode_png: image {}x{}x{} is empty or has an unsupported channel count", image.width, image.height,
            image.channels);
  std::string out;
  // stb hands us the encoded bytes in pieces through this callback.
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  int ok = stbi_write_png_to_func(append, &out, image.width, image.height, image.channels, image.data.data(),
                                  image.width * image.channels);
  MMG_CHECK(ok != 0, "encode_png: stb_image_write failed on a {}x{}x{} image", image.width, image.height,
            image.channels);
  return out;
}

void save_png(const Image& image, const std::string& path) {
  std::string bytes;
  try {
    bytes = encode_png(image);
  } catch (const Error& e) {
    MMG_FAIL("save png {}: {}", path, e.what());
  }
  write_file_atomic(path, bytes);
}

// ---- geometry ----

Image resize_bilinear(const Image& in, int width, int height) {
  MMG_CHECK(!in.empty(), "resize_bilinear: the input image is empty");
  MMG_CHECK(width > 0 && height > 0, "resize_bilinear: target size {}x{} must be positive", width, height);
  Image out(width, height, in.channels);
  // Source coordinate of output pixel i along an axis: its two neighbours and the weight
  // of the second one.
  struct Tap {
    int i0, i1;
    float w1;
  };
  auto taps = [](int out_size, int in_size) {
    std::vector<Tap> t(out_size);
    float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
    for (int i = 0; i < out_size; ++i) {
      float s = std::clamp((i + 0.5f) * scale - 0.5f, 0.0f, static_cast<float>(in_size - 1));
      int i0 = static_cast<int>(s);
      int i1 = std::min(i0 + 1, in_size - 1);
      t[i] = {i0, i1, s - static_cast<float>(i0)};
    }
    return t;
  };
  std::vector<Tap> tx = taps(width, in.width), ty = taps(height, in.height);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < in.channels; ++c) {
        const Tap &a = tx[x], &b = ty[y];
        float top = in.at(a.i0, b.i0, c) * (1 - a.w1) + in.at(a.i1, b.i0, c) * a.w1;
        float bottom = in.at(a.i0, b.i1, c) * (1 - a.w1) + in.at(a.i1, b.i1, c) * a.w1;
        float v = top * (1 - b.w1) + bottom * b.w1;
        out.at(x, y, c) = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0f, 255.0f)));
      }
  return out;
}

Image center_crop(const Image& in, int width, int height) {
  MMG_CHECK(width > 0 && height > 0 && width <= in.width && height <= in.height,
            "center_crop: cannot crop {}x{} out of a {}x{} image", width, height, in.width, in.height);
  Image out(width, height, in.channels);
  int x0 = (in.width - width) / 2, y0 = (in.height - height) / 2;
  const size_t row_bytes = static_cast<size_t>(width) * in.channels;
  for (int y = 0; y < height; ++y)
    std::memcpy(out.data.data() + y * row_bytes,
                in.data.data() + (static_cast<size_t>(y0 + y) * in.width + x0) * in.channels, row_bytes);
  return out;
}

Image resize_and_center_crop(const Image& in, int size) {
  MMG_CHECK(!in.empty() && size > 0, "resize_and_center_crop: size {} of a {}x{} image", size, in.width,
            in.height);
  // Scale so the shorter side becomes `size`; the longer side rounds, never below size.
  double scale = static_cast<double>(size) / std::min(in.width, in.height);
  int w = std::max(size, static_cast<int>(std::lround(in.width * scale)));
  int h = std::max(size, static_cast<int>(std::lround(in.height * scale)));
  Image resized = (w == in.width && h == in.height) ? in : resize_bilinear(in, w, h);
  return center_crop(resized, size, size);
}

// ---- tensors ----

namespace {

// One value per channel: a single given value applies to all channels.
std::vector<float> per_channel(const std::vector<float>& v, int channels, const char* op, const char* what) {
  MMG_CHECK(v.size() == 1 || static_cast<int>(v.size()) == channels,
            "{}: {} has {} values for an image of {} channels", op, what, v.size(), channels);
  return v.size() == 1 ? std::vector<float>(channels, v[0]) : v;
}

}  // namespace

Tensor image_to_tensor(const Image& image, const std::vector<float>& mean, const std::vector<float>& std) {
  MMG_CHECK(!image.empty(), "image_to_tensor: the image is empty");
  const int C = image.channels, H = image.height, W = image.width;
  std::vector<float> m = per_channel(mean, C, "image_to_tensor", "mean");
  std::vector<float> s = per_channel(std, C, "image_to_tensor", "std");
  for (float v : s) MMG_CHECK(v > 0, "image_to_tensor: std {} must be positive", v);
  std::vector<float> values(static_cast<size_t>(C) * H * W);
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x)
        values[(static_cast<size_t>(c) * H + y) * W + x] = (image.at(x, y, c) / 255.0f - m[c]) / s[c];
  return from_vector(values, {C, H, W});
}

Image tensor_to_image(const Tensor& t, const std::vector<float>& mean, const std::vector<float>& std) {
  MMG_CHECK(t.defined() && t.dim() == 3 && t.size(0) >= 1 && t.size(0) <= 4,
            "tensor_to_image: expected a [C,H,W] tensor with C in 1..4, got {}",
            t.defined() ? shape_str(t.shape()) : std::string("an undefined tensor"));
  const int C = static_cast<int>(t.size(0)), H = static_cast<int>(t.size(1)), W = static_cast<int>(t.size(2));
  std::vector<float> m = per_channel(mean, C, "tensor_to_image", "mean");
  std::vector<float> s = per_channel(std, C, "tensor_to_image", "std");
  std::vector<float> values = t.to_vector<float>();
  Image out(W, H, C);
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        float v = 255.0f * (values[(static_cast<size_t>(c) * H + y) * W + x] * s[c] + m[c]);
        out.at(x, y, c) = static_cast<uint8_t>(std::lround(std::clamp(v, 0.0f, 255.0f)));
      }
  return out;
}

}  // namespace mmg
