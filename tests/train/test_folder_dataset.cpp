// Image–text folders: small PNGs and captions files written here, read back as a Dataset.
// The JSONL and TSV forms of the same descriptions give the same data set, repeated images
// merge, the seeded split is deterministic and every error names the file and line.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/mmgrad.h"
#include "train/folder_dataset.h"
#include "tests/temp_dir.h"

using namespace mmg;
namespace fs = std::filesystem;

namespace {

struct FolderTempDir : test::TempDir {
  FolderTempDir() : test::TempDir("mmg_folder") {}
  void write(const std::string& name, const std::string& text) const {
    fs::create_directories((path / name).parent_path());
    std::ofstream(path / name, std::ios::binary) << text;
  }
  // A w×h RGB picture whose values come from `seed`, saved as PNG; returns it.
  Image png(const std::string& name, int seed, int w = 6, int h = 4) const {
    Image img(w, h, 3);
    for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = static_cast<uint8_t>((seed * 31 + i * 7) % 256);
    fs::create_directories((path / name).parent_path());
    save_png(img, (path / name).string());
    return img;
  }
};

FolderOptions keep_size() {
  FolderOptions o;
  o.image_size = 0;
  return o;
}

doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

const Sample* find(const std::vector<Sample>& split, const std::string& source) {
  for (const Sample& s : split)
    if (s.source == source) return &s;
  return nullptr;
}

}  // namespace

TEST_CASE("folder: captions.jsonl gives captions, questions, labels and splits, repeated images merge") {
  FolderTempDir dir;
  Image a = dir.png("cats/a.png", 1), b = dir.png("b.png", 2), c = dir.png("c.png", 3);
  dir.write("captions.jsonl",
            R"({"image": "cats/a.png", "caption": "a cat", "label": "cat", "split": "train"})" "\n"
            R"({"image": "b.png", "captions": ["a dog", "a brown dog"], "question": "what is it?", "answer": "dog", "type": "class", "label": "dog", "split": "test"})" "\n"
            "\n"
            R"({"image": "cats/a.png", "captions": ["a sleeping cat"], "questions": [{"question": "is it asleep?", "answer": "yes"}]})" "\n"
            R"({"image": "c.png", "caption": "an owl", "label": "bird", "split": "val"})" "\n");
  Dataset ds = load_image_text_folder(dir.str(), keep_size());
  CHECK(ds.name == dir.str());
  CHECK(ds.class_names == std::vector<std::string>{"bird", "cat", "dog"});  // sorted names
  REQUIRE(ds.train.size() == 1);
  REQUIRE(ds.val.size() == 1);
  REQUIRE(ds.test.size() == 1);
  const Sample& sa = ds.train[0];
  CHECK(sa.source == "cats/a.png");
  CHECK(sa.captions == std::vector<std::string>{"a cat", "a sleeping cat"});
  CHECK(sa.negatives.size() == 2);
  REQUIRE(sa.questions.size() == 1);
  CHECK(sa.questions[0].question == "is it asleep?");
  CHECK(sa.questions[0].answer == "yes");
  CHECK(sa.questions[0].type == "");
  CHECK(sa.label == 1);
  CHECK(sa.image.data == a.data);
  const Sample& sb = ds.test[0];
  CHECK(sb.captions == std::vector<std::string>{"a dog", "a brown dog"});
  REQUIRE(sb.questions.size() == 1);
  CHECK(sb.questions[0].type == "class");
  CHECK(sb.label == 2);
  CHECK(sb.image.data == b.data);
  CHECK(ds.val[0].label == 0);
  CHECK(ds.val[0].image.data == c.data);
  // image_size resizes and centre-crops to a square; channels = 1 decodes grey.
  FolderOptions small;
  small.image_size = 4;
  small.channels = 1;
  Dataset sq = load_image_text_folder(dir.str(), small);
  CHECK(sq.train[0].image.width == 4);
  CHECK(sq.train[0].image.height == 4);
  CHECK(sq.train[0].image.data == resize_and_center_crop(load_image(dir.str() + "/cats/a.png", 1), 4).data);
}

TEST_CASE("folder: captions.tsv describing the same images gives the same data set as captions.jsonl") {
  FolderTempDir jdir, tdir;
  for (const FolderTempDir* d : {&jdir, &tdir}) {
    d->png("x.png", 5);
    d->png("sub/y.png", 6);
    d->png("z.png", 7);
  }
  jdir.write("captions.jsonl",
             R"({"image": "x.png", "caption": "a red thing", "label": "red"})" "\n"
             R"({"image": "sub/y.png", "caption": "a blue thing", "question": "what colour?", "answer": "blue", "type": "colour", "label": "blue", "split": "val"})" "\n"
             R"({"image": "x.png", "caption": "something red", "split": "train"})" "\n"
             R"({"image": "z.png", "question": "how many?", "answer": "2"})" "\n");
  tdir.write("captions.tsv",
             "image\tcaption\tquestion\tanswer\ttype\tlabel\tsplit\r\n"
             "x.png\ta red thing\t\t\t\tred\t\r\n"
             "sub/y.png\ta blue thing\twhat colour?\tblue\tcolour\tblue\tval\n"
             "x.png\tsomething red\t\t\t\t\ttrain\n"
             "z.png\t\thow many?\t2\t\t\t\n");
  FolderOptions o;
  o.image_size = 4;
  Dataset j = load_image_text_folder(jdir.str(), o), t = load_image_text_folder(tdir.str(), o);
  CHECK(j.class_names == std::vector<std::string>{"blue", "red"});
  CHECK(t.class_names == j.class_names);
  for (const char* split : {"train", "val", "test"}) {
    CAPTURE(split);
    const std::vector<Sample>&js = j.split(split), &ts = t.split(split);
    REQUIRE(js.size() == ts.size());
    for (size_t i = 0; i < js.size(); ++i) {
      CHECK(js[i].source == ts[i].source);
      CHECK(js[i].captions == ts[i].captions);
      CHECK(js[i].label == ts[i].label);
      CHECK(js[i].image.data == ts[i].image.data);
      REQUIRE(js[i].questions.size() == ts[i].questions.size());
      for (size_t q = 0; q < js[i].questions.size(); ++q) {
        CHECK(js[i].questions[q].question == ts[i].questions[q].question);
        CHECK(js[i].questions[q].answer == ts[i].questions[q].answer);
        CHECK(js[i].questions[q].type == ts[i].questions[q].type);
      }
    }
  }
  const Sample* x = find(j.train, "x.png");
  REQUIRE(x != nullptr);
  CHECK(x->captions == std::vector<std::string>{"a red thing", "something red"});
  CHECK(x->label == 1);
  int64_t unlabelled = 0;
  for (const char* split : {"train", "val", "test"})
    for (const Sample& s : j.split(split)) unlabelled += s.source == "z.png" && s.label == -1;
  CHECK(unlabelled == 1);
}

TEST_CASE("folder: images without a split are spread over all three by a seeded hash of their names") {
  FolderTempDir dir;
  std::string lines, reversed;
  for (int i = 0; i < 100; ++i) {
    dir.png(fmt::format("img{:03d}.png", i), i, 2, 2);
    std::string line = fmt::format(R"({{"image": "img{:03d}.png", "caption": "picture {}"}})", i, i) + "\n";
    lines += line;
    reversed = line + reversed;
  }
  dir.write("captions.jsonl", lines);
  FolderOptions o;
  o.image_size = 2;
  o.seed = 17;
  auto assignment = [&](const FolderOptions& opt) {
    Dataset ds = load_image_text_folder(dir.str(), opt);
    std::map<std::string, std::string> where;
    for (const char* split : {"train", "val", "test"})
      for (const Sample& s : ds.split(split)) where[s.source] = split;
    return where;
  };
  std::map<std::string, std::string> first = assignment(o);
  REQUIRE(first.size() == 100);
  CHECK(assignment(o) == first);
  std::map<std::string, int> per_split;
  for (const auto& [name, split] : first) {
    ++per_split[split];
    CHECK(split == assign_split(name, 17, 0.1, 0.1));
  }
  CHECK(per_split["train"] >= 65);  // 80 expected
  CHECK(per_split["val"] >= 3);     // 10 expected
  CHECK(per_split["test"] >= 3);
  // The order of the lines does not matter; the seed does.
  dir.write("captions.jsonl", reversed);
  CHECK(assignment(o) == first);
  o.seed = 18;
  CHECK(assignment(o) != first);
}

TEST_CASE("folder: every error names the file and line, or the folder") {
  FolderTempDir dir;
  dir.png("a.png", 1);
  dir.write("broken.png", "this is not a picture");
  auto jsonl = [&](const std::string& second_line) {
    dir.write("captions.jsonl", R"({"image": "a.png", "caption": "fine"})" "\n" + second_line + "\n");
  };
  const std::string file = dir.str() + "/captions.jsonl";
  auto fails = [&](const std::string& message) {
    CHECK_THROWS_WITH_AS(load_image_text_folder(dir.str()), contains(message), Error);
  };

  SUBCASE("no folder, an empty folder, no entries, two captions files") {
    CHECK_THROWS_WITH_AS(load_image_text_folder(dir.str() + "/nope"), contains("folder '" + dir.str() + "/nope' does not exist"),
                         Error);
    FolderTempDir empty;
    CHECK_THROWS_WITH_AS(load_image_text_folder(empty.str()),
                         contains("folder '" + empty.str() + "' has no captions.jsonl or captions.tsv"), Error);
    dir.write("captions.jsonl", "\n\n");
    fails("'" + file + "' names no images (folder '" + dir.str() + "')");
    dir.write("captions.tsv", "image\n");
    fails("has both captions.jsonl and captions.tsv");
  }
  SUBCASE("a missing or undecodable image") {
    jsonl(R"({"image": "cats/a.png"})");
    fails(file + ":2: image 'cats/a.png' not found");
    jsonl(R"({"image": "broken.png"})");
    fails(file + ":2: image 'broken.png' cannot be decoded");
  }
  SUBCASE("bad JSON, a missing image key, an unknown key") {
    jsonl(R"({"image": "a.png", "caption": )");
    fails(file + ":2: bad JSON line");
    jsonl(R"(["a.png"])");
    fails(file + ":2: a line must be a JSON object, not array");
    jsonl(R"({"caption": "no image"})");
    fails(file + ":2: missing the \"image\" key");
    jsonl(R"({"image": "a.png", "captoin": "typo"})");
    fails(file + ":2: unknown key 'captoin'");
  }
  SUBCASE("values of the wrong type") {
    jsonl(R"({"image": 7})");
    fails(file + ":2: \"image\" must be a string, not number");
    jsonl(R"({"image": "a.png", "caption": ["x"]})");
    fails(file + ":2: \"caption\" must be a string, not array");
    jsonl(R"({"image": "a.png", "captions": "x"})");
    fails(file + ":2: \"captions\" must be a list of strings, not string");
    jsonl(R"({"image": "a.png", "captions": ["x", 3]})");
    fails(file + ":2: \"captions\" must be a string, not number");
    jsonl(R"({"image": "a.png", "label": 3})");
    fails(file + ":2: \"label\" must be a string, not number");
    jsonl(R"({"image": "a.png", "questions": [{"question": "q?"}]})");
    fails(file + ":2: a question needs both \"question\" and \"answer\"");
    jsonl(R"({"image": "a.png", "answer": "yes"})");
    fails(file + ":2: a question needs both \"question\" and \"answer\"");
    jsonl(R"({"image": "/etc/a.png"})");
    fails(file + ":2: image '/etc/a.png' must be a path relative to the folder");
  }
  SUBCASE("an unknown split, and lines about one image that disagree") {
    jsonl(R"({"image": "a.png", "split": "dev"})");
    fails(file + ":2: unknown split 'dev' (valid: train, val, test)");
    dir.write("captions.jsonl", R"({"image": "a.png", "label": "cat", "split": "val"})" "\n"
                                R"({"image": "a.png", "label": "dog"})" "\n");
    fails(file + ":2: image 'a.png' has label 'dog' here but 'cat' at " + file + ":1");
    dir.write("captions.jsonl", R"({"image": "a.png", "label": "cat", "split": "val"})" "\n"
                                R"({"image": "a.png", "split": "test"})" "\n");
    fails(file + ":2: image 'a.png' is in split 'test' here but 'val' at " + file + ":1");
  }
  SUBCASE("TSV: an unknown column, no image column, a row with the wrong number of fields") {
    const std::string tsv = dir.str() + "/captions.tsv";
    dir.write("captions.tsv", "image\tcaption\tcolour\n");
    fails(tsv + ":1: unknown column 'colour' in the header");
    dir.write("captions.tsv", "caption\n");
    fails(tsv + ":1: the header has no 'image' column");
    dir.write("captions.tsv", "image\tcaption\na.png\tfine\na.png\tone\ttoo many\n");
    fails(tsv + ":3: 3 tab-separated fields, but the header names 2 columns");
    dir.write("captions.tsv", "image\tcaption\tsplit\na.png\tfine\ttraining\n");
    fails(tsv + ":2: unknown split 'training'");
    dir.write("captions.tsv", "image\tquestion\na.png\twhat?\n");
    fails(tsv + ":2: a question needs both a question and an answer");
  }
}
