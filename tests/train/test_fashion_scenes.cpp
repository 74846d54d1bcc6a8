// Fashion scenes, checked from the outside: each picture is composed again here from the
// items its layout names (which must come from the scene's own split), and every caption,
// negative and question is read back from its words and judged on the items' boxes by a
// reader written here — "left of" means the whole box lies left of the other's.
// A synthetic Fashion-MNIST (items whose pixels say which split they come from) keeps these
// tests independent of the installed package; one test uses the real data when present.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "core/mmgrad.h"
#include "train/fashion_mnist.h"
#include "train/fashion_scenes.h"

using namespace mmg;

namespace {

// n items per split, label i mod 10, a blob whose brightness is split-specific (train
// 40–79, val 120–159, test 200–239), so a picture built from another split's items differs.
Dataset synthetic_fashion(int n_train = 300, int n_val = 60, int n_test = 80) {
  Dataset ds;
  ds.name = "synthetic fashion";
  ds.class_names = fashion_class_names();
  const int sizes[3] = {n_train, n_val, n_test}, base[3] = {40, 120, 200};
  std::vector<Sample>* splits[3] = {&ds.train, &ds.val, &ds.test};
  for (int s = 0; s < 3; ++s)
    for (int i = 0; i < sizes[s]; ++i) {
      Sample smp;
      smp.label = i % 10;
      smp.image = Image(28, 28, 1);
      for (int y = 3; y < 25; ++y)
        for (int x = 2 + i % 5; x < 26; ++x) smp.image.at(x, y, 0) = static_cast<uint8_t>(base[s] + (i + x + y) % 40);
      splits[s]->push_back(std::move(smp));
    }
  return ds;
}

FashionScenesConfig small_config(int64_t n_train = 400, int64_t n_val = 100, int64_t n_test = 200) {
  FashionScenesConfig c;
  c.n_train = n_train, c.n_val = n_val, c.n_test = n_test;
  c.seed = 42;
  return c;
}

const char* kSplits[3] = {"train", "val", "test"};

const std::vector<std::vector<PlacedItem>>& layouts_of(const FashionSceneLayouts& l, int s) {
  return s == 0 ? l.train : s == 1 ? l.val : l.test;
}

// ---- the reader's geometry: boxes, quadrants, relations ----

struct Box {
  int label, x0, y0, x1, y1;  // [x0, x1) × [y0, y1)
};
std::vector<Box> boxes_of(const std::vector<PlacedItem>& items) {
  std::vector<Box> b;
  for (const PlacedItem& p : items) b.push_back({p.label, p.x, p.y, p.x + p.size, p.y + p.size});
  return b;
}
bool in_quadrant(const Box& b, bool bottom, bool right, int canvas) {
  const int half = canvas / 2;
  return (right ? b.x0 >= half : b.x1 <= half) && (bottom ? b.y0 >= half : b.y1 <= half);
}
bool related(const std::string& rel, const Box& a, const Box& b) {
  if (rel == "left of") return a.x1 <= b.x0;
  if (rel == "right of") return b.x1 <= a.x0;
  if (rel == "above") return a.y1 <= b.y0;
  if (rel == "below") return b.y1 <= a.y0;
  FAIL("unknown relation '" << rel << "'");
  return false;
}
int count_label(const std::vector<Box>& bs, int label) {
  return static_cast<int>(std::count_if(bs.begin(), bs.end(), [&](const Box& b) { return b.label == label; }));
}

// ---- the reader's grammar ----

struct Reader {
  std::string text;
  size_t at = 0;
  bool eat(const std::string& word) {
    if (text.compare(at, word.size(), word) != 0) return false;
    at += word.size();
    return true;
  }
  bool done() const { return at == text.size(); }
  // "a sneaker" / "an ankle boot" / "the bag" / "bag": the class, by its longest name here.
  int item(bool article = true) {
    if (article && !eat("a ") && !eat("an ") && !eat("the ")) return -1;
    int best = -1;
    const std::vector<std::string>& names = fashion_class_names();
    for (int c = 0; c < static_cast<int>(names.size()); ++c)
      if (text.compare(at, names[c].size(), names[c]) == 0 && (best < 0 || names[c].size() > names[best].size()))
        best = c;
    if (best >= 0) at += names[best].size();
    return best;
  }
  std::string relation() {
    for (const char* r : {"to the left of", "to the right of"})
      if (eat(r)) return std::string(r).substr(7);
    for (const char* r : {"left of", "right of", "above", "below"})
      if (eat(r)) return r;
    return "";
  }
};

int count_word(Reader& r) {
  const char* words[] = {"one", "two", "three", "four"};
  for (int i = 0; i < 4; ++i)
    if (r.eat(words[i])) return i + 1;
  return -1;
}

// Judges a caption (or a negative) on the boxes; fails when the words do not parse.
bool judge_caption(const std::string& text, const std::vector<Box>& bs, int canvas) {
  Reader r{text};
  // "three items, including A and B" / "one item: A"
  if (int n = count_word(r); n > 0) {
    REQUIRE((r.eat(" items, including ") || r.eat(" item: ")));
    std::vector<int> listed;
    do listed.push_back(r.item()); while (r.eat(" and "));
    REQUIRE(r.done());
    for (int c : listed) REQUIRE(c >= 0);
    for (int c : listed)
      if (std::count(listed.begin(), listed.end(), c) > count_label(bs, c)) return false;
    return n == static_cast<int>(bs.size());
  }
  // "there is A <rel> B" / "A <rel> B"
  const bool there_is = r.eat("there is ");
  const size_t start = r.at;
  int a = r.item();
  REQUIRE(a >= 0);
  if (r.eat(" in the ")) {  // the gallery: "A in the top left, B in the bottom left and C in the top right"
    REQUIRE_FALSE(there_is);
    r.at = start;
    std::vector<bool> used(bs.size(), false);
    int named = 0;
    bool all_true = true;
    do {
      int c = r.item();
      REQUIRE(c >= 0);
      REQUIRE(r.eat(" in the "));
      bool bottom = r.eat("bottom ");
      if (!bottom) REQUIRE(r.eat("top "));
      bool right = r.eat("right");
      if (!right) REQUIRE(r.eat("left"));
      ++named;
      bool found = false;
      for (size_t i = 0; i < bs.size(); ++i)
        if (!used[i] && bs[i].label == c && in_quadrant(bs[i], bottom, right, canvas)) used[i] = found = true;
      all_true &= found;
    } while (r.eat(", ") || r.eat(" and "));
    REQUIRE(r.done());
    return all_true && named == static_cast<int>(bs.size());
  }
  REQUIRE(r.eat(" "));
  std::string rel = r.relation();
  REQUIRE(rel != "");
  REQUIRE(r.eat(" "));
  int b = r.item();
  REQUIRE(b >= 0);
  REQUIRE(r.done());
  for (size_t i = 0; i < bs.size(); ++i)
    for (size_t j = 0; j < bs.size(); ++j)
      if (i != j && bs[i].label == a && bs[j].label == b && related(rel, bs[i], bs[j])) return true;
  return false;
}

// The right answer to a question about the boxes, by the reader's own reckoning ("" when the
// question has none, e.g. its referent is ambiguous).
std::string judge_question(const std::string& text, const std::vector<Box>& bs, int canvas) {
  const std::vector<std::string>& names = fashion_class_names();
  Reader r{text};
  if (r.eat("how many items are ")) {
    REQUIRE((r.eat("there?") || r.eat("in the picture?")));
    return std::to_string(bs.size());
  }
  if (r.eat("is there ")) {
    int c = r.item();
    REQUIRE(c >= 0);
    REQUIRE(r.eat("?"));
    return count_label(bs, c) > 0 ? "yes" : "no";
  }
  if (r.eat("what is in the ")) {
    bool bottom = r.eat("bottom ");
    if (!bottom) REQUIRE(r.eat("top "));
    bool right = r.eat("right?");
    if (!right) REQUIRE(r.eat("left?"));
    std::vector<int> there;
    for (const Box& b : bs)
      if (in_quadrant(b, bottom, right, canvas)) there.push_back(b.label);
    return there.size() == 1 ? names[there[0]] : "";
  }
  if (r.eat("what is ")) {  // "what is left of the bag?"
    std::string rel = r.relation();
    REQUIRE(rel != "");
    REQUIRE(r.eat(" "));
    int anchor = r.item();
    REQUIRE(anchor >= 0);
    REQUIRE(r.eat("?"));
    if (count_label(bs, anchor) != 1) return "";
    const Box& a = *std::find_if(bs.begin(), bs.end(), [&](const Box& b) { return b.label == anchor; });
    std::vector<int> there;
    for (const Box& b : bs)
      if (&b != &a && related(rel, b, a)) there.push_back(b.label);
    return there.size() == 1 ? names[there[0]] : "";
  }
  REQUIRE(r.eat("is "));  // "is the shirt left of the bag?"
  int a = r.item();
  REQUIRE(r.eat(" "));
  std::string rel = r.relation();
  REQUIRE(r.eat(" "));
  int b = r.item();
  REQUIRE(r.eat("?"));
  REQUIRE(r.done());
  REQUIRE(a >= 0);
  REQUIRE(b >= 0);
  if (count_label(bs, a) != 1 || count_label(bs, b) != 1) return "";
  const Box& ba = *std::find_if(bs.begin(), bs.end(), [&](const Box& x) { return x.label == a; });
  const Box& bb = *std::find_if(bs.begin(), bs.end(), [&](const Box& x) { return x.label == b; });
  return related(rel, ba, bb) ? "yes" : "no";
}

// The picture composed again: each item's picture resized to its side and laid on black
// with the brighter value kept.
Image compose(const std::vector<PlacedItem>& items, const std::vector<Sample>& pool, int canvas) {
  Image img(canvas, canvas, 1);
  for (const PlacedItem& p : items) {
    Image scaled = resize_bilinear(pool.at(p.item).image, p.size, p.size);
    for (int y = 0; y < p.size; ++y)
      for (int x = 0; x < p.size; ++x) img.at(p.x + x, p.y + y, 0) = std::max(img.at(p.x + x, p.y + y, 0), scaled.at(x, y, 0));
  }
  return img;
}

doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

}  // namespace

TEST_CASE("fashion scenes: the same seed gives the same scenes, another seed other ones") {
  Dataset fashion = synthetic_fashion();
  FashionScenesConfig c = small_config(60, 20, 20);
  Dataset a = generate_fashion_scenes(fashion, c), b = generate_fashion_scenes(fashion, c);
  c.seed = 43;
  Dataset other = generate_fashion_scenes(fashion, c);
  CHECK(a.name == "fashion-scenes");
  int differ = 0;
  for (int s = 0; s < 3; ++s) {
    const std::vector<Sample>&sa = a.split(kSplits[s]), &sb = b.split(kSplits[s]), &so = other.split(kSplits[s]);
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      CHECK(sa[i].image.data == sb[i].image.data);
      CHECK(sa[i].captions == sb[i].captions);
      CHECK(sa[i].negatives == sb[i].negatives);
      CHECK(sa[i].source == sb[i].source);
      REQUIRE(sa[i].questions.size() == sb[i].questions.size());
      for (size_t q = 0; q < sa[i].questions.size(); ++q) CHECK(sa[i].questions[q].question == sb[i].questions[q].question);
      differ += sa[i].captions[0] != so[i].captions[0];
    }
  }
  CHECK(differ > 80);  // of 100 scenes
}

TEST_CASE("fashion scenes: pictures are made of their own split's items, placed apart on the grid") {
  Dataset fashion = synthetic_fashion();
  FashionScenesConfig c = small_config();
  FashionSceneLayouts layouts;
  Dataset ds = generate_fashion_scenes(fashion, c, &layouts);
  std::map<size_t, int> counts;
  for (int s = 0; s < 3; ++s) {
    const std::vector<Sample>& samples = ds.split(kSplits[s]);
    const std::vector<Sample>& pool = fashion.split(kSplits[s]);
    const auto& layout = layouts_of(layouts, s);
    REQUIRE(samples.size() == static_cast<size_t>(s == 0 ? c.n_train : s == 1 ? c.n_val : c.n_test));
    REQUIRE(layout.size() == samples.size());
    for (size_t i = 0; i < samples.size(); ++i) {
      const std::vector<PlacedItem>& items = layout[i];
      ++counts[items.size()];
      std::string ids;
      for (const PlacedItem& p : items) {
        REQUIRE(p.item >= 0);
        REQUIRE(p.item < static_cast<int64_t>(pool.size()));
        CHECK(p.label == pool[p.item].label);
        CHECK(p.size >= 20);
        CHECK(p.size <= 28);
        CHECK(p.x >= 0);
        CHECK(p.y >= 0);
        CHECK(p.x + p.size <= 56);
        CHECK(p.y + p.size <= 56);
        ids += (ids.empty() ? "#" : ", #") + std::to_string(p.item);
      }
      CHECK(samples[i].source == fmt::format("fashion scene {} {}: {} items {}", kSplits[s], i, kSplits[s], ids));
      std::vector<Box> bs = boxes_of(items);
      for (size_t a = 0; a < bs.size(); ++a)
        for (size_t b = a + 1; b < bs.size(); ++b) {
          const bool apart = bs[a].x1 <= bs[b].x0 || bs[b].x1 <= bs[a].x0 || bs[a].y1 <= bs[b].y0 || bs[b].y1 <= bs[a].y0;
          CHECK(apart);
        }
      REQUIRE(samples[i].image.width == 56);
      REQUIRE(samples[i].image.channels == 1);
      CHECK(samples[i].label == -1);
      // The split's own items make exactly this picture; every lit pixel is a split-coloured
      // one (the synthetic items of each split have their own brightness band, and bilinear
      // edges only blend with black).
      CHECK(samples[i].image.data == compose(items, pool, 56).data);
      const int lo = s == 0 ? 40 : s == 1 ? 120 : 200;
      int out_of_band = 0;
      for (uint8_t v : samples[i].image.data) out_of_band += v > lo + 39;
      CHECK(out_of_band == 0);
    }
  }
  CHECK(counts.size() == 3);  // 2, 3 and 4 items all occur
  CHECK(counts.begin()->first == 2);
  CHECK(counts.rbegin()->first == 4);
}

TEST_CASE("fashion scenes: captions are true of the placed items and every negative is false") {
  Dataset fashion = synthetic_fashion();
  FashionSceneLayouts layouts;
  Dataset ds = generate_fashion_scenes(fashion, small_config(), &layouts);
  std::map<std::string, int> negative_kinds;
  for (int s = 0; s < 3; ++s) {
    const std::vector<Sample>& samples = ds.split(kSplits[s]);
    for (size_t i = 0; i < samples.size(); ++i) {
      const Sample& smp = samples[i];
      const std::vector<Box> bs = boxes_of(layouts_of(layouts, s)[i]);
      REQUIRE(smp.captions.size() >= 2);
      REQUIRE(smp.negatives.size() == smp.captions.size());
      for (size_t k = 0; k < smp.captions.size(); ++k) {
        CAPTURE(smp.captions[k]);
        CHECK(judge_caption(smp.captions[k], bs, 56));
        for (const std::string& neg : smp.negatives[k]) {
          CAPTURE(neg);
          CHECK_FALSE(judge_caption(neg, bs, 56));
          CHECK(neg != smp.captions[k]);
          // A minimal edit: the same number of words, or one count word changed.
          ++negative_kinds[neg.find(" in the ") != std::string::npos ? "gallery" : neg.find("item") != std::string::npos ? "count" : "relation"];
        }
      }
      // The gallery caption and its negatives name the items left column first, top before
      // bottom: the order of the words cannot tell a mirrored negative from the caption.
      std::vector<std::string> galleries = smp.negatives[0];
      galleries.push_back(smp.captions[0]);
      for (const std::string& g : galleries) {
        CAPTURE(g);
        std::vector<int> places;  // col·2 + row, in the order named
        for (size_t at = g.find(" in the "); at != std::string::npos; at = g.find(" in the ", at + 1)) {
          const std::string rest = g.substr(at + 8);
          places.push_back((rest.rfind("top right", 0) == 0 || rest.rfind("bottom right", 0) == 0) * 2 +
                           (rest.rfind("bottom", 0) == 0));
        }
        CHECK(places.size() == bs.size());
        CHECK(std::is_sorted(places.begin(), places.end()));
      }
      CHECK(!smp.negatives[0].empty());
    }
  }
  CHECK(negative_kinds["gallery"] > 0);
  CHECK(negative_kinds["count"] > 0);
  CHECK(negative_kinds["relation"] > 0);
}

TEST_CASE("fashion scenes: answers are right and uniform within each question type") {
  Dataset fashion = synthetic_fashion();
  FashionSceneLayouts layouts;
  Dataset ds = generate_fashion_scenes(fashion, small_config(3000, 100, 200), &layouts);
  std::map<std::string, std::map<std::string, int64_t>> answers;  // [type][answer]
  std::set<std::string> forms;
  for (size_t i = 0; i < ds.train.size(); ++i) {
    const std::vector<Box> bs = boxes_of(layouts.train[i]);
    std::set<std::string> types;
    for (const QuestionAnswer& q : ds.train[i].questions) {
      CAPTURE(q.question);
      CHECK(types.insert(q.type).second);  // one question per type
      CHECK(judge_question(q.question, bs, 56) == q.answer);
      ++answers[q.type][q.answer];
      forms.insert(q.question.substr(0, 10));
    }
  }
  CHECK(forms.count("what is in") == 1);
  CHECK(forms.count("what is le") + forms.count("what is ri") + forms.count("what is ab") + forms.count("what is be") > 0);
  const std::map<std::string, size_t> n_answers = {{"class", 10}, {"count", 3}, {"exist", 2}, {"relation", 2}};
  for (const auto& [type, n] : n_answers) {
    CAPTURE(type);
    REQUIRE(answers[type].size() == n);
    int64_t total = 0;
    for (const auto& [answer, count] : answers[type]) total += count;
    CHECK(total > 1000);
    for (const auto& [answer, count] : answers[type]) {
      CAPTURE(answer);
      CHECK(std::abs(static_cast<double>(count) / total - 1.0 / n) <= 0.05);
    }
  }
}

TEST_CASE("fashion scenes: the val and test galleries have unique captions") {
  Dataset fashion = synthetic_fashion();
  Dataset ds = generate_fashion_scenes(fashion, small_config(100, 500, 1500));
  for (const std::vector<Sample>* split : {&ds.val, &ds.test}) {
    std::set<std::string> seen;
    for (const Sample& s : *split) CHECK(seen.insert(s.captions[0]).second);
  }
}

TEST_CASE("fashion scenes: a bad configuration or data set is an error naming the setting") {
  Dataset fashion = synthetic_fashion(30, 10, 10);
  FashionScenesConfig c = small_config(10, 5, 5);
  c.max_items = 5;
  CHECK_THROWS_WITH_AS(generate_fashion_scenes(fashion, c), contains("items per scene 2..5 must lie within 1..4"), Error);
  c = small_config(10, 5, 5);
  c.min_item_size = 14;
  CHECK_THROWS_WITH_AS(generate_fashion_scenes(fashion, c), contains("item sizes 14..28 must lie above a quarter (14)"),
                       Error);
  c = small_config(10, 5, 5);
  Dataset no_val = fashion;
  no_val.val.clear();
  CHECK_THROWS_WITH_AS(generate_fashion_scenes(no_val, c), contains("5 val scenes wanted but the val split"), Error);
  Dataset rgb = fashion;
  rgb.test[3].image = Image(28, 28, 3);
  CHECK_THROWS_WITH_AS(generate_fashion_scenes(rgb, c), contains("test item 3 () has 3 channels"), Error);
  // Too many test scenes for unique captions: one item per scene and two classes leave 8.
  Dataset two = synthetic_fashion(30, 10, 10);
  two.class_names.resize(2);
  for (std::vector<Sample>* split : {&two.train, &two.val, &two.test})
    for (Sample& s : *split) s.label %= 2;
  c.min_items = c.max_items = 1;
  c.n_test = 9;
  CHECK_THROWS_WITH_AS(generate_fashion_scenes(two, c), contains("cannot find a test scene 8 with a caption unlike"),
                       Error);
}

TEST_CASE("fashion scenes: built from the installed Fashion-MNIST, test scenes use test pictures only") {
  if (!fashion_mnist_available()) {
    MESSAGE("skipped: Fashion-MNIST is not installed in " << kFashionMnistDir
                                                          << " (apt-get install dataset-fashion-mnist)");
    return;
  }
  Dataset fashion = load_fashion_mnist();
  FashionSceneLayouts layouts;
  Dataset ds = generate_fashion_scenes(fashion, small_config(200, 50, 100), &layouts);
  for (int s = 0; s < 3; ++s) {
    const std::vector<Sample>& pool = fashion.split(kSplits[s]);
    for (size_t i = 0; i < ds.split(kSplits[s]).size(); ++i) {
      for (const PlacedItem& p : layouts_of(layouts, s)[i]) {
        REQUIRE(p.item < static_cast<int64_t>(pool.size()));
        CHECK(p.label == pool[p.item].label);
      }
      CHECK(ds.split(kSplits[s])[i].image.data == compose(layouts_of(layouts, s)[i], pool, 56).data);
    }
  }
  // Test scenes' items come from the t10k file, val scenes' from the end of the training file.
  CHECK(fashion.test[layouts.test[0][0].item].source.rfind("t10k-images-idx3-ubyte.gz #", 0) == 0);
  const std::string val_source = fashion.val[layouts.val[0][0].item].source;
  CHECK(std::stoll(val_source.substr(val_source.find('#') + 1)) >= 55000);
}
