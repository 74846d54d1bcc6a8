#include "train/fashion_mnist.h"

#include <zlib.h>

#include <filesystem>

#include "core/error.h"

namespace mmg {

namespace {

constexpr uint32_t kImageMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kLabelMagic = 0x00000801;  // unsigned bytes, 1 dimension

// The whole (decompressed) content of a file. gzread passes plain files through
// unchanged, so an uncompressed IDX file reads too.
std::string read_gz(const std::string& path) {
  MMG_CHECK(std::filesystem::is_regular_file(path), "fashion-mnist: file '{}' not found", path);
  gzFile f = gzopen(path.c_str(), "rb");
  MMG_CHECK(f != nullptr, "fashion-mnist: cannot open '{}'", path);
  std::string bytes;
  char buffer[1 << 16];
  for (;;) {
    int n = gzread(f, buffer, sizeof buffer);
    if (n < 0) {
      int code = 0;
      std::string why = gzerror(f, &code);
      gzclose(f);
      MMG_FAIL("fashion-mnist: '{}' is not readable gzip data ({})", path, why);
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
  }
  gzclose(f);
  return bytes;
}

// The big-endian 32-bit word at byte offset `at`.
uint32_t be32(const std::string& b, size_t at) {
  auto u = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(b[at + i])); };
  return (u(0) << 24) | (u(1) << 16) | (u(2) << 8) | u(3);
}

// Checks the magic number and reads `dims` dimension sizes after it.
std::vector<uint32_t> read_header(const std::string& b, const std::string& path, uint32_t magic, int dims) {
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  MMG_CHECK(b.size() >= 4, "fashion-mnist: '{}' is truncated: {} bytes, too short for a magic number", path,
            b.size());
  MMG_CHECK(be32(b, 0) == magic, "fashion-mnist: '{}': bad magic number 0x{:08x} (expected 0x{:08x})", path,
            be32(b, 0), magic);
  MMG_CHECK(b.size() >= header, "fashion-mnist: '{}' is truncated: {} bytes, the header alone needs {}", path,
            b.size(), header);
  std::vector<uint32_t> d(dims);
  for (int i = 0; i < dims; ++i) d[i] = be32(b, 4 + 4 * i);
  return d;
}

const char* kTrainImages = "train-images-idx3-ubyte.gz";
const char* kTrainLabels = "train-labels-idx1-ubyte.gz";
const char* kTestImages = "t10k-images-idx3-ubyte.gz";
const char* kTestLabels = "t10k-labels-idx1-ubyte.gz";

// The samples of one pair of files, checked against each other.
std::vector<Sample> read_pair(const std::string& dir, const char* images_file, const char* labels_file) {
  const std::string images_path = dir + "/" + images_file, labels_path = dir + "/" + labels_file;
  std::vector<Image> images = read_idx_images(images_path);
  std::vector<uint8_t> labels = read_idx_labels(labels_path);
  MMG_CHECK(images.size() == labels.size(), "fashion-mnist: '{}' holds {} images but '{}' holds {} labels",
            images_path, images.size(), labels_path, labels.size());
  const std::vector<std::string>& names = fashion_class_names();
  std::vector<Sample> samples(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    MMG_CHECK(labels[i] < kFashionClasses, "fashion-mnist: '{}': label {} of item {} is out of range 0..{}",
              labels_path, labels[i], i, kFashionClasses - 1);
    Sample& s = samples[i];
    s.image = std::move(images[i]);
    s.label = labels[i];
    s.captions = {"a photo of " + with_article(names[labels[i]])};
    s.negatives.resize(1);  // one (empty) list per caption: other classes are the zero-shot prompts
    s.source = fmt::format("{} #{}", images_file, i);
  }
  return samples;
}

}  // namespace

const std::vector<std::string>& fashion_class_names() {
  static const std::vector<std::string> names = {"t-shirt/top", "trouser", "pullover", "dress", "coat",
                                                 "sandal",      "shirt",   "sneaker",  "bag",   "ankle boot"};
  return names;
}

std::string with_article(const std::string& noun) {
  const bool vowel = !noun.empty() && std::string("aeiou").find(noun[0]) != std::string::npos;
  return (vowel ? "an " : "a ") + noun;
}

std::vector<Image> read_idx_images(const std::string& path) {
  const std::string b = read_gz(path);
  std::vector<uint32_t> d = read_header(b, path, kImageMagic, 3);
  const uint64_t n = d[0], rows = d[1], cols = d[2];
  MMG_CHECK(rows >= 1 && cols >= 1 && rows <= 65536 && cols <= 65536,
            "fashion-mnist: '{}': image size {}x{} is not a picture", path, rows, cols);
  const uint64_t per_image = rows * cols, expected = n * per_image, have = b.size() - 16;
  MMG_CHECK(have >= expected,
            "fashion-mnist: '{}' is truncated: the header promises {} images of {}x{} ({} pixels) but {} follow",
            path, n, rows, cols, expected, have);
  std::vector<Image> images(n);
  for (uint64_t i = 0; i < n; ++i) {
    Image& img = images[i];
    img.width = static_cast<int>(cols), img.height = static_cast<int>(rows), img.channels = 1;
    const char* first = b.data() + 16 + i * per_image;
    img.data.assign(first, first + per_image);
  }
  return images;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  const std::string b = read_gz(path);
  const uint64_t n = read_header(b, path, kLabelMagic, 1)[0], have = b.size() - 8;
  MMG_CHECK(have >= n, "fashion-mnist: '{}' is truncated: the header promises {} labels but {} follow", path, n,
            have);
  return std::vector<uint8_t>(b.begin() + 8, b.begin() + 8 + static_cast<std::ptrdiff_t>(n));
}

bool fashion_mnist_available(const std::string& dir) {
  for (const char* f : {kTrainImages, kTrainLabels, kTestImages, kTestLabels})
    if (!std::filesystem::is_regular_file(dir + "/" + f)) return false;
  return true;
}

Dataset load_fashion_mnist(const std::string& dir, int64_t val_size) {
  std::vector<Sample> train = read_pair(dir, kTrainImages, kTrainLabels);
  MMG_CHECK(val_size >= 0 && val_size < static_cast<int64_t>(train.size()),
            "fashion-mnist: val size {} must lie within 0..{} (the training file holds {} items)", val_size,
            train.size() - 1, train.size());
  Dataset ds;
  ds.name = "fashion-mnist";
  ds.class_names = fashion_class_names();
  ds.test = read_pair(dir, kTestImages, kTestLabels);
  const auto cut = train.end() - val_size;
  ds.val.assign(std::make_move_iterator(cut), std::make_move_iterator(train.end()));
  train.erase(cut, train.end());
  ds.train = std::move(train);
  return ds;
}

}  // namespace mmg
