// Fashion-MNIST reading: small IDX files written here byte by byte (gzipped with zlib) are
// read back, every malformed file is an error naming the file and the fault, and — where
// Debian's dataset-fashion-mnist is installed — the real files have the published counts,
// first label and mean pixel value.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>

#include "core/mmgrad.h"
#include "train/fashion_mnist.h"
#include "tests/temp_dir.h"

using namespace mmg;
namespace fs = std::filesystem;

namespace {

// A temp folder named after this file's tests.
struct FashionTempDir : test::TempDir {
  FashionTempDir() : test::TempDir("mmg_fashion") {}
};

void put_be32(std::string& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<char>((v >> shift) & 0xff));
}

// An IDX file: magic, the dimension sizes, then the payload, gzipped with zlib.
void write_idx_gz(const std::string& path, uint32_t magic, const std::vector<uint32_t>& dims,
                  const std::vector<uint8_t>& payload) {
  std::string b;
  put_be32(b, magic);
  for (uint32_t d : dims) put_be32(b, d);
  b.append(payload.begin(), payload.end());
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  gzclose(f);
}

// n pictures rows×cols whose pixel (x, y) of picture i is (i·50 + y·cols + x) mod 256.
std::vector<uint8_t> pixels(uint32_t n, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> p;
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t k = 0; k < rows * cols; ++k) p.push_back(static_cast<uint8_t>((i * 50 + k) % 256));
  return p;
}

// A fake Fashion-MNIST folder: n_train and n_test 28×28 pictures, label of item i = i mod 10.
void write_fake_fashion(const FashionTempDir& dir, uint32_t n_train, uint32_t n_test) {
  auto labels = [](uint32_t n) {
    std::vector<uint8_t> l;
    for (uint32_t i = 0; i < n; ++i) l.push_back(static_cast<uint8_t>(i % 10));
    return l;
  };
  write_idx_gz(dir.file("train-images-idx3-ubyte.gz"), 0x803, {n_train, 28, 28}, pixels(n_train, 28, 28));
  write_idx_gz(dir.file("train-labels-idx1-ubyte.gz"), 0x801, {n_train}, labels(n_train));
  write_idx_gz(dir.file("t10k-images-idx3-ubyte.gz"), 0x803, {n_test, 28, 28}, pixels(n_test, 28, 28));
  write_idx_gz(dir.file("t10k-labels-idx1-ubyte.gz"), 0x801, {n_test}, labels(n_test));
}

doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

}  // namespace

TEST_CASE("fashion: IDX images and labels written by hand read back byte for byte") {
  FashionTempDir dir;
  write_idx_gz(dir.file("img.gz"), 0x803, {3, 2, 4}, pixels(3, 2, 4));
  write_idx_gz(dir.file("lab.gz"), 0x801, {5}, {9, 0, 3, 7, 1});
  std::vector<Image> images = read_idx_images(dir.file("img.gz"));
  REQUIRE(images.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(images[i].width == 4);
    CHECK(images[i].height == 2);
    CHECK(images[i].channels == 1);
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 4; ++x) CHECK(images[i].at(x, y, 0) == (i * 50 + y * 4 + x) % 256);
  }
  CHECK(read_idx_labels(dir.file("lab.gz")) == std::vector<uint8_t>{9, 0, 3, 7, 1});
}

TEST_CASE("fashion: a folder of IDX files becomes train, val and test splits with captions") {
  FashionTempDir dir;
  write_fake_fashion(dir, 12, 4);
  CHECK(fashion_mnist_available(dir.path.string()));
  Dataset ds = load_fashion_mnist(dir.path.string(), 3);
  CHECK(ds.name == "fashion-mnist");
  REQUIRE(ds.class_names.size() == 10);
  CHECK(ds.class_names[0] == "t-shirt/top");
  CHECK(ds.class_names[7] == "sneaker");
  CHECK(ds.class_names[9] == "ankle boot");
  REQUIRE(ds.train.size() == 9);
  REQUIRE(ds.val.size() == 3);
  REQUIRE(ds.test.size() == 4);
  // Val is the end of the training file: items 9, 10, 11.
  for (size_t i = 0; i < ds.val.size(); ++i) {
    const Sample& s = ds.val[i];
    CHECK(s.label == static_cast<int64_t>((9 + i) % 10));
    CHECK(s.source == fmt::format("train-images-idx3-ubyte.gz #{}", 9 + i));
    CHECK(s.image.at(0, 0, 0) == ((9 + i) * 50) % 256);
  }
  CHECK(ds.train[7].captions == std::vector<std::string>{"a photo of a sneaker"});
  CHECK(ds.test[3].source == "t10k-images-idx3-ubyte.gz #3");
  CHECK(ds.test[3].captions[0] == "a photo of a dress");
  CHECK(ds.val[0].captions[0] == "a photo of an ankle boot");
}

TEST_CASE("fashion: malformed files are errors naming the file and the fault") {
  FashionTempDir dir;
  const std::string img = dir.file("img.gz"), lab = dir.file("lab.gz");

  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(read_idx_images(dir.file("nope.gz")), contains("nope.gz' not found"), Error);
    CHECK_FALSE(fashion_mnist_available(dir.path.string()));
    CHECK_THROWS_WITH_AS(load_fashion_mnist(dir.path.string()), contains("train-images-idx3-ubyte.gz' not found"),
                         Error);
  }
  SUBCASE("a label file where images are expected, and the other way round") {
    write_idx_gz(lab, 0x801, {2}, {1, 2});
    CHECK_THROWS_WITH_AS(read_idx_images(lab), contains("lab.gz': bad magic number 0x00000801 (expected 0x00000803)"),
                         Error);
    write_idx_gz(img, 0x803, {1, 1, 1}, {0});
    CHECK_THROWS_WITH_AS(read_idx_labels(img), contains("img.gz': bad magic number 0x00000803 (expected 0x00000801)"),
                         Error);
  }
  SUBCASE("fewer pixels or labels than the header promises") {
    write_idx_gz(img, 0x803, {3, 2, 2}, pixels(2, 2, 2));
    CHECK_THROWS_WITH_AS(read_idx_images(img), contains("img.gz' is truncated: the header promises 3 images of 2x2 (12 pixels) but 8 follow"),
                         Error);
    write_idx_gz(lab, 0x801, {4}, {1, 2});
    CHECK_THROWS_WITH_AS(read_idx_labels(lab), contains("lab.gz' is truncated: the header promises 4 labels but 2 follow"),
                         Error);
    write_idx_gz(lab, 0x801, {}, {});
    CHECK_THROWS_WITH_AS(read_idx_labels(lab), contains("lab.gz' is truncated: 4 bytes, the header alone needs 8"),
                         Error);
  }
  SUBCASE("images and labels disagree in number") {
    write_fake_fashion(dir, 12, 4);
    write_idx_gz(dir.file("t10k-labels-idx1-ubyte.gz"), 0x801, {3}, {1, 2, 3});
    CHECK_THROWS_WITH_AS(load_fashion_mnist(dir.path.string(), 2),
                         contains("t10k-images-idx3-ubyte.gz' holds 4 images but"), Error);
    CHECK_THROWS_WITH_AS(load_fashion_mnist(dir.path.string(), 2), contains("t10k-labels-idx1-ubyte.gz' holds 3 labels"),
                         Error);
  }
  SUBCASE("a label outside 0..9") {
    write_fake_fashion(dir, 12, 4);
    write_idx_gz(dir.file("train-labels-idx1-ubyte.gz"), 0x801, {12}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0});
    CHECK_THROWS_WITH_AS(load_fashion_mnist(dir.path.string(), 2),
                         contains("train-labels-idx1-ubyte.gz': label 10 of item 10 is out of range 0..9"), Error);
  }
  SUBCASE("a val split as large as the training file") {
    write_fake_fashion(dir, 12, 4);
    CHECK_THROWS_WITH_AS(load_fashion_mnist(dir.path.string(), 12), contains("val size 12 must lie within 0..11"),
                         Error);
  }
}

TEST_CASE("fashion: the installed data set has the published counts, labels and pixel mean") {
  if (!fashion_mnist_available()) {
    MESSAGE("skipped: Fashion-MNIST is not installed in " << kFashionMnistDir
                                                          << " (apt-get install dataset-fashion-mnist)");
    return;
  }
  Dataset ds = load_fashion_mnist();
  CHECK(ds.train.size() == 55000);
  CHECK(ds.val.size() == 5000);
  CHECK(ds.test.size() == 10000);
  // The first training picture is an ankle boot (label 9), as in the original paper's files.
  CHECK(ds.train[0].label == 9);
  CHECK(ds.train[0].captions[0] == "a photo of an ankle boot");
  std::vector<int64_t> per_class(10, 0);
  double sum = 0;
  int64_t n_pixels = 0;
  for (const std::vector<Sample>* split : {&ds.train, &ds.val, &ds.test})
    for (const Sample& s : *split) {
      REQUIRE(s.label >= 0);
      REQUIRE(s.label <= 9);
      ++per_class[s.label];
      REQUIRE(s.image.width == 28);
      REQUIRE(s.image.height == 28);
      REQUIRE(s.image.channels == 1);
    }
  // The mean pixel of the 60000 training pictures (train + val) is 72.94 of 255 (0.2860).
  for (const std::vector<Sample>* split : {&ds.train, &ds.val})
    for (const Sample& s : *split) {
      for (uint8_t v : s.image.data) sum += v;
      n_pixels += static_cast<int64_t>(s.image.data.size());
    }
  CHECK(std::abs(sum / static_cast<double>(n_pixels) - 72.94) < 0.5);
  // Fashion-MNIST is balanced: 7000 pictures per class over both files.
  for (int c = 0; c < 10; ++c) CHECK(per_class[c] == 7000);
}
