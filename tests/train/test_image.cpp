// Image I/O and transforms: PNG round trips, bilinear resize and centre crop against values
// worked out by hand, the normalisation round trip, and errors that name the file.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/mmgrad.h"
#include "train/image.h"
#include "tests/temp_dir.h"

using namespace mmg;
namespace fs = std::filesystem;

namespace {

// A temp folder named after this file's tests.
struct ImageTempDir : test::TempDir {
  ImageTempDir() : test::TempDir("mmg_image") {}
};

// A w×h image whose every value differs from its neighbours (a fixed formula, so any
// swapped channel, row or column shows).
Image pattern(int w, int h, int c) {
  Image img(w, h, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) img.at(x, y, k) = static_cast<uint8_t>((x * 37 + y * 101 + k * 59 + x * y * 13) % 256);
  return img;
}

doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

}  // namespace

TEST_CASE("image: a PNG saved and loaded again has the same pixels") {
  ImageTempDir dir;
  for (int channels : {1, 3, 4}) {
    CAPTURE(channels);
    Image img = pattern(7, 5, channels);
    std::string path = dir.file(fmt::format("round_{}.png", channels));
    save_png(img, path);
    Image back = load_image(path, channels);
    CHECK(back.width == 7);
    CHECK(back.height == 5);
    CHECK(back.channels == channels);
    CHECK(back.data == img.data);
  }
  // A grey file loaded as RGB repeats the grey value in every channel.
  Image grey = pattern(4, 3, 1);
  save_png(grey, dir.file("grey.png"));
  Image rgb = load_image(dir.file("grey.png"), 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) CHECK(rgb.at(x, y, c) == grey.at(x, y, 0));
  // The save is atomic: no temporary file is left beside the images.
  for (const auto& e : fs::directory_iterator(dir.path)) CHECK(e.path().extension() == ".png");
}

TEST_CASE("image: PNG bytes decode from memory") {
  Image img = pattern(3, 9, 3);
  std::string bytes = encode_png(img);
  REQUIRE(bytes.size() > 8);
  CHECK(bytes.substr(1, 3) == "PNG");  // the PNG signature: \x89 P N G
  CHECK(decode_image(bytes, "<memory>", 3).data == img.data);
}

TEST_CASE("image: bilinear resize matches values worked out by hand") {
  // Halving: output pixel i samples the input at 2i + 0.5, the mean of pixels 2i and 2i+1,
  // so each output pixel is the mean of a 2×2 block.
  Image in(4, 2, 1);
  const uint8_t v[2][4] = {{10, 30, 100, 200}, {50, 70, 0, 60}};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) in.at(x, y, 0) = v[y][x];
  Image half = resize_bilinear(in, 2, 1);
  REQUIRE(half.width == 2);
  REQUIRE(half.height == 1);
  CHECK(half.at(0, 0, 0) == (10 + 30 + 50 + 70) / 4);  // 40
  CHECK(half.at(1, 0, 0) == (100 + 200 + 0 + 60) / 4);  // 90

  // Doubling [0, 200]: output x samples at (x + 0.5)/2 − 0.5 = −0.25 (clamped to 0), 0.25,
  // 0.75 and 1.25 (clamped to 1): 0, 0.25·200 = 50, 0.75·200 = 150, 200.
  Image pair(2, 1, 3);
  for (int c = 0; c < 3; ++c) pair.at(0, 0, c) = 0, pair.at(1, 0, c) = 200;
  Image dbl = resize_bilinear(pair, 4, 1);
  const int expect[4] = {0, 50, 150, 200};
  for (int x = 0; x < 4; ++x)
    for (int c = 0; c < 3; ++c) CHECK(dbl.at(x, 0, c) == expect[x]);

  // Same size: the identity.
  Image p = pattern(6, 5, 3);
  CHECK(resize_bilinear(p, 6, 5).data == p.data);
  CHECK_THROWS_WITH_AS(resize_bilinear(p, 0, 5), doctest::Contains("target size 0x5"), Error);
}

TEST_CASE("image: centre crop takes the middle window") {
  Image in(5, 4, 1);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x) in.at(x, y, 0) = static_cast<uint8_t>(10 * y + x);
  Image crop = center_crop(in, 3, 2);  // offsets ((5-3)/2, (4-2)/2) = (1, 1)
  REQUIRE(crop.width == 3);
  REQUIRE(crop.height == 2);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) CHECK(crop.at(x, y, 0) == 10 * (y + 1) + (x + 1));
  CHECK_THROWS_WITH_AS(center_crop(in, 6, 2), doctest::Contains("cannot crop 6x2 out of a 5x4 image"), Error);

  // Resize-then-crop of an 8×4 image to 2: halved to 4×2, then columns 1..2 kept.
  Image wide(8, 4, 1);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) wide.at(x, y, 0) = static_cast<uint8_t>(20 * x);
  Image sq = resize_and_center_crop(wide, 2);
  REQUIRE(sq.width == 2);
  REQUIRE(sq.height == 2);
  // Half-size column j averages input columns 2j and 2j+1: 20·(4j + 1)/2 = 40j + 10.
  for (int y = 0; y < 2; ++y) {
    CHECK(sq.at(0, y, 0) == 50);
    CHECK(sq.at(1, y, 0) == 90);
  }
}

TEST_CASE("image: conversion to a normalised [C,H,W] tensor and back") {
  Image img = pattern(6, 4, 3);
  const std::vector<float> mean = {0.5f, 0.4f, 0.3f}, std = {0.25f, 0.2f, 0.1f};
  Tensor t = image_to_tensor(img, mean, std);
  REQUIRE(t.shape() == Shape{3, 4, 6});
  CHECK(t.dtype() == DType::f32);
  std::vector<float> v = t.to_vector<float>();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 6; ++x) {
        float expected = (img.at(x, y, c) / 255.0f - mean[c]) / std[c];
        CHECK(v[(c * 4 + y) * 6 + x] == doctest::Approx(expected).epsilon(1e-6));
      }
  CHECK(tensor_to_image(t, mean, std).data == img.data);
  // One value for every channel.
  Tensor u = image_to_tensor(img, {0.5f}, {0.5f});
  CHECK(tensor_to_image(u, {0.5f}, {0.5f}).data == img.data);
  CHECK(u.to_vector<float>()[0] == doctest::Approx(img.at(0, 0, 0) / 127.5f - 1.0f));
  CHECK_THROWS_WITH_AS(image_to_tensor(img, {0.5f, 0.5f}, {1.0f}),
                       doctest::Contains("mean has 2 values for an image of 3 channels"), Error);
  CHECK_THROWS_WITH_AS(tensor_to_image(zeros({4, 5}), {0.f}, {1.f}), doctest::Contains("[4,5]"), Error);
}

TEST_CASE("image: a missing or undecodable file is an error naming it") {
  ImageTempDir dir;
  std::string missing = dir.file("no_such_image.png");
  CHECK_THROWS_WITH_AS(load_image(missing), contains("load image " + missing + ": cannot open"), Error);

  std::string garbage = dir.file("garbage.png");
  std::ofstream(garbage, std::ios::binary) << "this is not an image at all";
  CHECK_THROWS_WITH_AS(load_image(garbage), contains("load image " + garbage + ": cannot decode"), Error);

  // A PNG cut short after its header.
  std::string truncated = dir.file("truncated.png");
  std::string png = encode_png(pattern(16, 16, 3));
  std::ofstream(truncated, std::ios::binary) << png.substr(0, 40);
  CHECK_THROWS_WITH_AS(load_image(truncated), contains("load image " + truncated + ": cannot decode"), Error);

  std::string empty = dir.file("empty.jpg");
  std::ofstream(empty, std::ios::binary).flush();
  CHECK_THROWS_WITH_AS(load_image(empty), contains("load image " + empty + ": the file is empty"), Error);

  // Saving into a folder that does not exist names the target.
  std::string nowhere = dir.file("missing_dir/out.png");
  CHECK_THROWS_WITH_AS(save_png(pattern(2, 2, 3), nowhere), contains("write " + nowhere), Error);
}
