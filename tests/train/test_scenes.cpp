// The generated scenes, checked from the outside: the pictures are re-measured from their
// pixels and the captions, negatives and questions are parsed back from their words and
// judged against the object positions by a reader written here, independently of the
// generator's own caption_true().
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "core/io/atomic_file.h"
#include "core/mmgrad.h"
#include "train/commands.h"
#include "train/data_sources.h"
#include "train/scenes.h"

using namespace mmg;

namespace {

// ---- a reader for the scenes' English ----

std::vector<std::string> words_of(std::string text) {
  for (char& ch : text)
    if (ch == ',' || ch == ':' || ch == '?') ch = ' ';
  std::istringstream in(text);
  std::vector<std::string> w;
  for (std::string s; in >> s;) w.push_back(s);
  return w;
}

int index_of(const std::string& word, const char* (*name)(int), int n) {
  for (int i = 0; i < n; ++i)
    if (word == name(i)) return i;
  return -1;
}
int colour_of(const std::string& w) { return index_of(w, scene_colour_name, kSceneColours); }
int shape_of(const std::string& w) { return index_of(w, scene_shape_name, kSceneShapes); }
int size_of(const std::string& w) { return index_of(w, scene_size_name, kSceneSizes); }
bool is_colour(const std::string& w) { return colour_of(w) >= 0; }

struct Said {  // an object as the words describe it
  int shape = -1, colour = -1, size = -1;  // -1: not said
  bool fits(const SceneObject& o) const {
    return (shape < 0 || o.shape == shape) && (colour < 0 || o.colour == colour) && (size < 0 || o.size == size);
  }
};

// Reads "[small|large] [colour] [shape]" at w[i]; advances i.
Said read_object(const std::vector<std::string>& w, size_t& i) {
  Said s;
  if (i < w.size() && size_of(w[i]) >= 0) s.size = size_of(w[i++]);
  if (i < w.size() && colour_of(w[i]) >= 0) s.colour = colour_of(w[i++]);
  if (i < w.size() && shape_of(w[i]) >= 0) s.shape = shape_of(w[i++]);
  return s;
}

bool expect_word(const std::vector<std::string>& w, size_t& i, const std::string& word) {
  if (i < w.size() && w[i] == word) return ++i, true;
  return false;
}

// "a X, a Y and a Z" (the reader's list grammar).
std::vector<Said> read_list(const std::vector<std::string>& w, size_t& i) {
  std::vector<Said> list;
  while (expect_word(w, i, "a")) {
    list.push_back(read_object(w, i));
    expect_word(w, i, "and");
  }
  return list;
}

int count_word(const std::string& w) {
  const char* words[] = {"zero", "one", "two", "three", "four", "five"};
  for (int n = 0; n < 6; ++n)
    if (w == words[n]) return n;
  return -1;
}

// The documented relations: a clear 0.1 of the image side along the axis.
bool holds(const std::string& rel, const SceneObject& a, const SceneObject& b) {
  if (rel == "left") return b.x - a.x >= 0.1;
  if (rel == "right") return a.x - b.x >= 0.1;
  if (rel == "above") return b.y - a.y >= 0.1;
  if (rel == "below") return a.y - b.y >= 0.1;
  FAIL("unknown relation " << rel);
  return false;
}

// "left of" / "to the left of" / "above" ... at w[i] → "left", "right", "above", "below".
std::string read_relation(const std::vector<std::string>& w, size_t& i) {
  if (expect_word(w, i, "to")) {
    if (!expect_word(w, i, "the")) return "";
  }
  if (i < w.size() && (w[i] == "above" || w[i] == "below")) return w[i++];
  if (i + 1 < w.size() && (w[i] == "left" || w[i] == "right") && w[i + 1] == "of") {
    std::string r = w[i];
    i += 2;
    return r;
  }
  return "";
}

// Can the descriptions be given to distinct objects?
bool distinct_fit(const std::vector<Said>& said, const std::vector<SceneObject>& objs) {
  std::vector<int> perm(objs.size());
  std::iota(perm.begin(), perm.end(), 0);
  do {
    bool ok = true;
    for (size_t i = 0; i < said.size() && ok; ++i) ok = said[i].fits(objs[perm[i]]);
    if (ok) return true;
  } while (std::next_permutation(perm.begin(), perm.end()));
  return false;
}

// Whether the caption is true of the objects; nullopt when the reader cannot parse it.
std::optional<bool> read_caption(const std::string& text, const std::vector<SceneObject>& objs) {
  std::vector<std::string> w = words_of(text);
  size_t i = 0;
  if (w.empty()) return std::nullopt;
  int n = count_word(w[0]);
  if (n >= 1) {  // "three objects, including ..." / "one object: ..." / "three objects from left to right: ..."
    i = 2;
    if (expect_word(w, i, "from")) {
      bool ltr = w.size() > i + 2 && w[i] == "left";
      if (!(w.size() > i + 2 && w[i + 1] == "to")) return std::nullopt;
      i += 3;
      std::vector<Said> list = read_list(w, i);
      if (i != w.size() || list.size() != objs.size()) return i == w.size() ? std::optional<bool>(false) : std::nullopt;
      if (n != static_cast<int>(objs.size())) return false;
      std::vector<SceneObject> sorted = objs;
      std::sort(sorted.begin(), sorted.end(), [&](auto& a, auto& b) { return ltr ? a.x < b.x : a.x > b.x; });
      for (size_t k = 0; k < list.size(); ++k)
        if (!list[k].fits(sorted[k])) return false;
      return true;
    }
    expect_word(w, i, "including");
    std::vector<Said> list = read_list(w, i);
    if (i != w.size() || list.empty()) return std::nullopt;
    return n == static_cast<int>(objs.size()) && list.size() <= objs.size() && distinct_fit(list, objs);
  }
  bool there_is = expect_word(w, i, "there") && expect_word(w, i, "is");
  if (!expect_word(w, i, "a")) return std::nullopt;
  Said a = read_object(w, i);
  if (a.shape < 0 || a.colour < 0) return std::nullopt;
  // A place: "in the top left", "at the bottom", "on the left", "in the centre".
  if (!there_is && i < w.size() && (w[i] == "in" || w[i] == "at" || w[i] == "on")) {
    i += 2;  // "in the"
    int row = 1, col = 1;
    for (; i < w.size(); ++i) {
      if (w[i] == "top") row = 0;
      else if (w[i] == "bottom") row = 2;
      else if (w[i] == "left") col = 0;
      else if (w[i] == "right") col = 2;
      else if (w[i] != "centre") return std::nullopt;
    }
    for (const SceneObject& o : objs) {
      int r = o.y < 0.4 ? 0 : o.y > 0.6 ? 2 : 1, c = o.x < 0.4 ? 0 : o.x > 0.6 ? 2 : 1;
      if (a.fits(o) && r == row && c == col) return true;
    }
    return false;
  }
  std::string rel = read_relation(w, i);
  if (rel.empty() || !expect_word(w, i, "a")) return std::nullopt;
  Said b = read_object(w, i);
  if (i != w.size() || b.shape < 0 || b.colour < 0) return std::nullopt;
  for (size_t p = 0; p < objs.size(); ++p)
    for (size_t q = 0; q < objs.size(); ++q)
      if (p != q && a.fits(objs[p]) && b.fits(objs[q]) && holds(rel, objs[p], objs[q])) return true;
  return false;
}

// The one object that answers to a description, or nullopt (none, or several).
std::optional<SceneObject> the_one(const Said& s, const std::vector<SceneObject>& objs) {
  std::optional<SceneObject> found;
  for (const SceneObject& o : objs)
    if (s.fits(o)) {
      if (found) return std::nullopt;
      found = o;
    }
  return found;
}

// The answer to a question, worked out from the objects; "" when the reader finds the
// question unparseable or ambiguous.
std::string answer_of(const std::string& text, const std::vector<SceneObject>& objs) {
  std::vector<std::string> w = words_of(text);
  size_t i = 0;
  if (w.size() >= 3 && w[0] == "what") {
    bool colour_q = (w[1] == "colour") || (w[1] == "is" && w[3] == "colour");
    i = w[1] == "is" ? 5 : 3;  // "what is the colour of the X" / "what colour is the X"
    if (!expect_word(w, i, "the")) return "";
    Said s = read_object(w, i);
    if (!colour_q) expect_word(w, i, "object");
    if (i != w.size()) return "";
    auto o = the_one(s, objs);
    if (!o) return "";
    return colour_q ? scene_colour_name(o->colour) : scene_shape_name(o->shape);
  }
  if (w.size() >= 3 && w[0] == "how" && w[1] == "many" && w[2] == "objects") return std::to_string(objs.size());
  if (w.size() >= 2 && w[0] == "is" && w[1] == "there") {
    i = 2;
    if (!expect_word(w, i, "a")) return "";
    Said s = read_object(w, i);
    if (i != w.size() || s.shape < 0 || s.colour < 0) return "";
    return std::any_of(objs.begin(), objs.end(), [&](auto& o) { return s.fits(o); }) ? "yes" : "no";
  }
  if (w.size() >= 2 && w[0] == "is" && w[1] == "the") {
    i = 2;
    Said a = read_object(w, i);
    std::string rel = read_relation(w, i);
    if (rel.empty() || !expect_word(w, i, "the")) return "";
    Said b = read_object(w, i);
    if (i != w.size()) return "";
    auto oa = the_one(a, objs), ob = the_one(b, objs);
    if (!oa || !ob) return "";
    const std::map<std::string, std::string> opposite = {
        {"left", "right"}, {"right", "left"}, {"above", "below"}, {"below", "above"}};
    if (holds(rel, *oa, *ob)) return "yes";
    if (holds(opposite.at(rel), *oa, *ob)) return "no";
    return "";  // not clear either way: a question that should not have been asked
  }
  if (w.size() >= 3 && w[0] == "where") {  // "where is the X" / "where in the image is the X"
    i = w[1] == "in" ? 5 : 2;
    if (!expect_word(w, i, "the")) return "";
    Said s = read_object(w, i);
    if (i != w.size()) return "";
    auto o = the_one(s, objs);
    if (!o) return "";
    // The 3×3 grid cut at 0.4 and 0.6 (y grows downwards); a centre within 0.04 of a cut has
    // no honest answer, so such a question should not have been asked.
    auto third = [](double v) { return v < 0.4 ? 0 : v > 0.6 ? 2 : 1; };
    auto near_cut = [](double v) { return std::abs(v - 0.4) < 0.04 || std::abs(v - 0.6) < 0.04; };
    if (near_cut(o->x) || near_cut(o->y)) return "";
    const char* rows[3] = {"top", "", "bottom"};
    const char* cols[3] = {"left", "", "right"};
    const int r = third(o->y), c = third(o->x);
    if (r == 1 && c == 1) return "centre";
    if (r == 1) return cols[c];
    if (c == 1) return rows[r];
    return std::string(rows[r]) + " " + cols[c];
  }
  return "";
}

std::string object_words(const SceneObject& o) {
  return fmt::format("{} {} {}", scene_size_name(o.size), scene_colour_name(o.colour), scene_shape_name(o.shape));
}

// The generated set most tests share (built once).
const SceneDataset& shared_scenes() {
  static const SceneDataset ds = [] {
    SceneConfig c;
    c.n = 3000;
    c.seed = 11;
    return generate_scenes(c);
  }();
  return ds;
}

}  // namespace

TEST_CASE("scenes: the same seed gives the same scenes, another seed other ones") {
  SceneConfig c;
  c.n = 120;
  c.seed = 5;
  SceneDataset a = generate_scenes(c), b = generate_scenes(c);
  c.seed = 6;
  SceneDataset other = generate_scenes(c);
  REQUIRE(a.scenes.size() == 120);
  int same_as_other = 0;
  for (size_t i = 0; i < a.scenes.size(); ++i) {
    const Scene &x = a.scenes[i], &y = b.scenes[i];
    CHECK(x.image.data == y.image.data);
    REQUIRE(x.captions.size() == y.captions.size());
    for (size_t k = 0; k < x.captions.size(); ++k) {
      CHECK(x.captions[k].text == y.captions[k].text);
      REQUIRE(x.captions[k].negatives.size() == y.captions[k].negatives.size());
      for (size_t m = 0; m < x.captions[k].negatives.size(); ++m)
        CHECK(x.captions[k].negatives[m].text == y.captions[k].negatives[m].text);
    }
    REQUIRE(x.questions.size() == y.questions.size());
    for (size_t k = 0; k < x.questions.size(); ++k)
      CHECK((x.questions[k].text == y.questions[k].text && x.questions[k].answer == y.questions[k].answer));
    same_as_other += x.image.data == other.scenes[i].image.data;
  }
  CHECK(same_as_other == 0);
}

TEST_CASE("scenes: 1 to 4 objects, inside the picture, apart, every count used") {
  const SceneDataset& ds = shared_scenes();
  std::map<size_t, int> counts;
  for (const Scene& sc : ds.scenes) {
    ++counts[sc.objects.size()];
    for (size_t i = 0; i < sc.objects.size(); ++i) {
      const SceneObject& o = sc.objects[i];
      CHECK(o.x - o.radius >= 0);
      CHECK(o.x + o.radius <= 1);
      CHECK(o.y - o.radius >= 0);
      CHECK(o.y + o.radius <= 1);
      for (size_t j = 0; j < i; ++j)
        CHECK(std::hypot(o.x - sc.objects[j].x, o.y - sc.objects[j].y) >= o.radius + sc.objects[j].radius);
    }
    CHECK(sc.image.width == 32);
    CHECK(sc.image.height == 32);
    CHECK(sc.image.channels == 3);
  }
  CHECK(counts.size() == 4);
  for (auto [k, n] : counts) {
    CHECK(k >= 1);
    CHECK(k <= 4);
    CHECK(n > 3000 / 4 * 0.8);  // about uniform
  }
}

TEST_CASE("scenes: each object's colour is at its centre and its shape where the geometry says") {
  const SceneDataset& ds = shared_scenes();
  // The pixel under each object's centre has its colour: the nearest palette colour.
  auto nearest = [](const Image& img, int x, int y) {
    int best = -1;
    double best_d = 1e9;
    for (int c = 0; c < kSceneColours; ++c) {
      Rgb p = scene_colour_rgb(c);
      double d = std::pow(img.at(x, y, 0) - p.r, 2) + std::pow(img.at(x, y, 1) - p.g, 2) + std::pow(img.at(x, y, 2) - p.b, 2);
      if (d < best_d) best_d = d, best = c;
    }
    return best;
  };
  for (const Scene& sc : ds.scenes)
    for (const SceneObject& o : sc.objects) CHECK(nearest(sc.image, int(o.x * 32), int(o.y * 32)) == o.colour);

  // At 64 pixels, pixels clearly inside a shape (by the documented geometry, written here as
  // polygons) are fully its colour, and pixels clearly outside every shape are background.
  SceneConfig c;
  c.n = 60;
  c.seed = 3;
  c.image_size = 64;
  SceneDataset big = generate_scenes(c);
  using Pt = std::pair<double, double>;
  const double h = std::sqrt(3.0) / 2;
  const std::map<int, std::vector<Pt>> polygons = {
      {1, {{-0.7, -0.7}, {0.7, -0.7}, {0.7, 0.7}, {-0.7, 0.7}}},
      {2, {{0, -1}, {h, 0.5}, {-h, 0.5}}},
      {3, {{1, 0}, {0, 1}, {-1, 0}, {0, -1}}},
      {4, {{-0.25, -0.95}, {0.25, -0.95}, {0.25, -0.25}, {0.95, -0.25}, {0.95, 0.25}, {0.25, 0.25}, {0.25, 0.95},
           {-0.25, 0.95}, {-0.25, 0.25}, {-0.95, 0.25}, {-0.95, -0.25}, {-0.25, -0.25}}}};
  // Signed distance to the outline (negative inside), in units of the radius.
  auto signed_distance = [&](int shape, double u, double v) {
    if (shape == 0) return std::hypot(u, v) - 1;
    const std::vector<Pt>& p = polygons.at(shape);
    double d = 1e9;
    bool inside = false;
    for (size_t i = 0, j = p.size() - 1; i < p.size(); j = i++) {
      auto [xi, yi] = p[i];
      auto [xj, yj] = p[j];
      if ((yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi) inside = !inside;
      double ex = xj - xi, ey = yj - yi;
      double t = std::clamp(((u - xi) * ex + (v - yi) * ey) / (ex * ex + ey * ey), 0.0, 1.0);
      d = std::min(d, std::hypot(xi + t * ex - u, yi + t * ey - v));
    }
    return inside ? -d : d;
  };
  const Rgb bg = scene_background_rgb();
  int checked_in = 0, checked_out = 0;
  for (const Scene& sc : big.scenes)
    for (int py = 0; py < 64; ++py)
      for (int px = 0; px < 64; ++px) {
        // The pixel's centre, and whether it is more than 0.75 pixel from every outline.
        int owner = -1;
        bool clear = true;
        for (size_t k = 0; k < sc.objects.size(); ++k) {
          const SceneObject& o = sc.objects[k];
          double u = ((px + 0.5) / 64 - o.x) / o.radius, v = ((py + 0.5) / 64 - o.y) / o.radius;
          double d = signed_distance(o.shape, u, v) * o.radius * 64;  // in pixels
          if (std::abs(d) < 0.75) clear = false;
          if (d < 0) owner = static_cast<int>(k);
        }
        if (!clear) continue;
        Rgb want = owner < 0 ? bg : scene_colour_rgb(sc.objects[owner].colour);
        CHECK(std::abs(sc.image.at(px, py, 0) - want.r) <= 1);
        CHECK(std::abs(sc.image.at(px, py, 1) - want.g) <= 1);
        CHECK(std::abs(sc.image.at(px, py, 2) - want.b) <= 1);
        (owner < 0 ? checked_out : checked_in)++;
      }
  CHECK(checked_in > 5000);
  CHECK(checked_out > 50000);
}

TEST_CASE("scenes: captions mention every object and are true of the positions") {
  const SceneDataset& ds = shared_scenes();
  std::set<std::string> starts;
  int relations = 0, places = 0, ordered = 0, counts = 0;
  for (const Scene& sc : ds.scenes) {
    REQUIRE(sc.captions.size() >= 3);
    // The first caption names every object with its size (as often as it occurs).
    const std::string& first = sc.captions[0].text;
    for (const SceneObject& o : sc.objects) {
      std::string name = object_words(o);
      size_t occurs = 0;
      for (size_t at = first.find(name); at != std::string::npos; at = first.find(name, at + 1)) ++occurs;
      size_t same = std::count_if(sc.objects.begin(), sc.objects.end(), [&](auto& p) { return object_words(p) == name; });
      CHECK_MESSAGE(occurs >= same, first << " misses " << name);
    }
    for (const SceneCaption& c : sc.captions) {
      CAPTURE(c.text);
      std::optional<bool> truth = read_caption(c.text, sc.objects);
      REQUIRE(truth.has_value());
      CHECK(*truth);
      CHECK(c.text == caption_text(c.spec));
      std::vector<std::string> w = words_of(c.text);
      relations += std::count_if(w.begin(), w.end(), [](auto& s) { return s == "above" || s == "below" || s == "of"; }) > 0;
      places += c.spec.form == CaptionForm::place;
      ordered += c.spec.form == CaptionForm::ordered_list;
      counts += c.spec.form == CaptionForm::count_list;
      starts.insert(w[0] == "there" || w[0] == "a" ? w[0] : "count");
    }
  }
  CHECK(relations > 2000);
  CHECK(places > 500);
  CHECK(ordered > 1000);
  CHECK(counts > 2000);
  CHECK(starts == std::set<std::string>{"a", "count", "there"});
}

TEST_CASE("scenes: every negative is false and differs from its caption only in the edited attribute") {
  const SceneDataset& ds = shared_scenes();
  std::map<EditKind, int> kinds;
  int same_words = 0;
  for (const Scene& sc : ds.scenes)
    for (const SceneCaption& c : sc.captions)
      for (const CaptionNegative& n : c.negatives) {
        CAPTURE(c.text);
        CAPTURE(n.text);
        ++kinds[n.edit];
        std::optional<bool> truth = read_caption(n.text, sc.objects);
        REQUIRE(truth.has_value());
        CHECK_FALSE(*truth);
        std::vector<std::string> a = words_of(c.text), b = words_of(n.text);
        switch (n.edit) {
          case EditKind::colour: {
            // Same words in the same places, except colour words; the same colours at all
            // when two were swapped.
            REQUIRE(a.size() == b.size());
            int diffs = 0;
            for (size_t i = 0; i < a.size(); ++i)
              if (a[i] != b[i]) {
                ++diffs;
                CHECK(is_colour(a[i]));
                CHECK(is_colour(b[i]));
              }
            CHECK(diffs >= 1);
            std::vector<std::string> sa = a, sb = b;
            std::sort(sa.begin(), sa.end()), std::sort(sb.begin(), sb.end());
            same_words += sa == sb;
            break;
          }
          case EditKind::relation: {
            REQUIRE(a.size() == b.size());
            const std::set<std::string> spatial = {"left", "right", "above", "below", "top", "bottom"};
            int diffs = 0;
            for (size_t i = 0; i < a.size(); ++i)
              if (a[i] != b[i]) {
                ++diffs;
                CHECK(spatial.count(a[i]) == 1);
                CHECK(spatial.count(b[i]) == 1);
              }
            CHECK(diffs >= 1);
            CHECK(diffs <= 2);  // "from left to right" → "from right to left"
            break;
          }
          case EditKind::count: {
            // The count word moves by one; the objects named stay the same.
            CHECK(std::abs(count_word(a[0]) - count_word(b[0])) == 1);
            auto list_part = [](const std::string& t) { return t.substr(t.find(" a ")); };
            CHECK(list_part(c.text) == list_part(n.text));
            break;
          }
        }
      }
  CHECK(kinds[EditKind::colour] > 5000);
  CHECK(kinds[EditKind::relation] > 4000);
  CHECK(kinds[EditKind::count] > 1500);
  CHECK(same_words > 2000);  // colour swaps: a bag of words cannot tell them apart
}

TEST_CASE("scenes: answers are right and uniform within each question type") {
  const SceneDataset& ds = shared_scenes();
  for (Split split : {Split::train, Split::test}) {
    std::vector<const Scene*> scenes = ds.split(split);
    std::map<QuestionType, std::map<std::string, int>> answers;
    for (const Scene* sc : scenes)
      for (const SceneQuestion& q : sc->questions) {
        CAPTURE(q.text);
        CHECK(answer_of(q.text, sc->objects) == q.answer);
        ++answers[q.type][q.answer];
      }
    for (int t = 0; t < kQuestionTypes; ++t) {
      QuestionType type = static_cast<QuestionType>(t);
      CAPTURE(question_type_name(type));
      CAPTURE(split_name(split));
      std::vector<std::string> possible = question_answers(type);
      int total = 0;
      for (auto& [a, n] : answers[type]) {
        CHECK(std::find(possible.begin(), possible.end(), a) != possible.end());
        total += n;
      }
      // Most scenes get a question of every type.
      CHECK(total > static_cast<int>(scenes.size()) / 3);
      // Pearson's chi-square against the uniform distribution, below its 0.1% critical
      // value for K − 1 degrees of freedom (K = 2: 10.83, 4: 16.27, 5: 18.47, 8: 24.32, 9: 26.12).
      const std::map<size_t, double> critical = {{2, 10.83}, {4, 16.27}, {5, 18.47}, {8, 24.32}, {9, 26.12}};
      double expected = static_cast<double>(total) / possible.size(), chi2 = 0;
      for (const std::string& a : possible) chi2 += std::pow(answers[type][a] - expected, 2) / expected;
      CHECK(chi2 < critical.at(possible.size()));
    }
  }
}

TEST_CASE("scenes: splits share no picture and the test gallery's captions are unique") {
  const SceneDataset& ds = shared_scenes();
  CHECK(ds.split(Split::train).size() == 2400);
  CHECK(ds.split(Split::val).size() == 300);
  CHECK(ds.split(Split::test).size() == 300);
  std::map<std::vector<uint8_t>, Split> pictures;
  for (const Scene& sc : ds.scenes) {
    auto [it, fresh] = pictures.emplace(sc.image.data, sc.split);
    CHECK_MESSAGE(fresh, "scene " << sc.index << " repeats a picture of the " << split_name(it->second) << " split");
  }
  for (Split split : {Split::val, Split::test}) {
    std::set<std::string> texts;
    for (const Scene* sc : ds.split(split)) CHECK(texts.insert(sc->captions[0].text).second);
  }
  // Many one-object scenes, whose captions can coincide, still come out unique.
  SceneConfig c;
  c.n = 600;
  c.seed = 2;
  c.test_fraction = 0.5;
  c.max_objects = 1;
  c.render = false;
  SceneDataset ones = generate_scenes(c);
  std::set<std::string> texts;
  for (const Scene* sc : ones.split(Split::test)) CHECK(texts.insert(sc->captions[0].text).second);
  CHECK(texts.size() == 300);
}

TEST_CASE("scenes: held-out combinations never appear in training, and are flagged elsewhere") {
  const SceneDataset& ds = shared_scenes();
  std::vector<std::string> held;  // "yellow circle", ...
  for (auto [s, c] : ds.config.held_out) held.push_back(fmt::format("{} {}", scene_colour_name(c), scene_shape_name(s)));
  REQUIRE(held.size() == 5);
  auto mentions_held = [&](const std::string& text) {
    // "a small yellow circle" and "the yellow circle" both mention "yellow circle"
    for (const std::string& h : held)
      if (text.find(h) != std::string::npos) return true;
    return false;
  };
  auto is_held = [&](const SceneObject& o) {
    return std::find(held.begin(), held.end(),
                     fmt::format("{} {}", scene_colour_name(o.colour), scene_shape_name(o.shape))) != held.end();
  };
  int flagged = 0, flagged_test = 0;
  for (const Scene& sc : ds.scenes) {
    bool any = std::any_of(sc.objects.begin(), sc.objects.end(), is_held);
    CHECK(sc.held_out == any);
    flagged += any;
    flagged_test += any && sc.split == Split::test;
    if (sc.split != Split::train) continue;
    CHECK_FALSE(any);
    for (const SceneCaption& c : sc.captions) {
      CHECK_FALSE(mentions_held(c.text));
      for (const CaptionNegative& n : c.negatives) CHECK_FALSE(mentions_held(n.text));
    }
    // (Colour and shape questions ask about objects in the picture, so their answers
    // cannot name a held-out pair either.)
    for (const SceneQuestion& q : sc.questions) CHECK_FALSE(mentions_held(q.text));
  }
  CHECK(flagged_test > 30);  // about a quarter of the test scenes
  CHECK(flagged > 100);
}

TEST_CASE("scenes: a bad configuration is an error naming the setting") {
  SceneConfig c;
  c.n = 0;
  CHECK_THROWS_WITH_AS(generate_scenes(c), doctest::Contains("n = 0"), Error);
  c.n = 10;
  c.image_size = 8;
  CHECK_THROWS_WITH_AS(generate_scenes(c), doctest::Contains("image size 8"), Error);
  c.image_size = 32;
  c.max_objects = 5;
  CHECK_THROWS_WITH_AS(generate_scenes(c), doctest::Contains("1..5"), Error);
  c.max_objects = 4;
  c.held_out = {{9, 0}};
  CHECK_THROWS_WITH_AS(generate_scenes(c), doctest::Contains("shape 9"), Error);
}

TEST_CASE("scenes: mmg data scenes writes the PNGs and one JSON line per image") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / fmt::format("mmg_data_scenes_{}", static_cast<long>(::getpid()));
  fs::remove_all(dir);
  DataScenesOptions opt;
  opt.out = dir.string();
  opt.n = 30;
  opt.seed = 9;
  opt.size = 64;
  opt.verbose = false;
  REQUIRE(run_data_scenes(opt) == 0);
  SceneConfig c;
  c.n = 30;
  c.seed = 9;
  c.image_size = 64;
  SceneDataset ds = generate_scenes(c);  // what the files must hold
  std::ifstream in(dir / "captions.jsonl");
  std::string line;
  size_t i = 0;
  for (; std::getline(in, line); ++i) {
    REQUIRE(i < ds.scenes.size());
    const Scene& sc = ds.scenes[i];
    nlohmann::json j = nlohmann::json::parse(line);
    CHECK(j["split"] == split_name(sc.split));
    CHECK(j["held_out"] == sc.held_out);
    CHECK(load_image((dir / j["image"].get<std::string>()).string()).data == sc.image.data);
    REQUIRE(j["captions"].size() == sc.captions.size());
    REQUIRE(j["negatives"].size() == sc.captions.size());
    for (size_t k = 0; k < sc.captions.size(); ++k) {
      CHECK(j["captions"][k] == sc.captions[k].text);
      REQUIRE(j["negatives"][k].size() == sc.captions[k].negatives.size());
      for (size_t m = 0; m < sc.captions[k].negatives.size(); ++m) {
        CHECK(j["negatives"][k][m]["text"] == sc.captions[k].negatives[m].text);
        CHECK(j["negatives"][k][m]["edit"] == edit_name(sc.captions[k].negatives[m].edit));
      }
    }
    REQUIRE(j["questions"].size() == sc.questions.size());
    for (size_t k = 0; k < sc.questions.size(); ++k) {
      CHECK(j["questions"][k]["question"] == sc.questions[k].text);
      CHECK(j["questions"][k]["answer"] == sc.questions[k].answer);
      CHECK(j["questions"][k]["type"] == question_type_name(sc.questions[k].type));
    }
    REQUIRE(j["objects"].size() == sc.objects.size());
    CHECK(j["objects"][0]["shape"] == scene_shape_name(sc.objects[0].shape));
  }
  CHECK(i == 30);
  nlohmann::json meta = nlohmann::json::parse(read_file((dir / "dataset.json").string()));
  CHECK(meta["held_out_combinations"].size() == c.held_out.size());
  CHECK(meta["splits"]["train"] == ds.split(Split::train).size());
  fs::remove_all(dir);
}

TEST_CASE("load_dataset: question_types keeps only the questions of those types, images and captions stay") {
  DataConfig config;
  config.n = 200;
  const Dataset all = load_dataset(config);
  config.question_types = {"relation", "count"};
  const Dataset some = load_dataset(config);
  REQUIRE(some.train.size() == all.train.size());
  int64_t kept = 0, expected = 0;
  for (size_t i = 0; i < all.train.size(); ++i) {
    CHECK(some.train[i].captions == all.train[i].captions);
    CHECK(some.train[i].image.data == all.train[i].image.data);
    for (const QuestionAnswer& q : all.train[i].questions) expected += q.type == "relation" || q.type == "count";
    for (const QuestionAnswer& q : some.train[i].questions) {
      CHECK((q.type == "relation" || q.type == "count"));
      ++kept;
    }
  }
  CHECK(kept == expected);
  CHECK(kept > 0);
  CHECK(kept < [&] {
    int64_t n = 0;
    for (const Sample& s : all.train) n += static_cast<int64_t>(s.questions.size());
    return n;
  }());

  // Through JSON, and a type no question has is an error naming it and the types there are.
  nlohmann::json j = config.to_json();
  CHECK(DataConfig::from_json(j).question_types == config.question_types);
  CHECK_FALSE(DataConfig().to_json().contains("question_types"));
  config.question_types = {"relations"};
  CHECK_THROWS_WITH_AS(load_dataset(config), doctest::Contains("'relations', which no question has (types: colour, count"),
                       Error);
  j["question_types"] = "relation";
  CHECK_THROWS_WITH_AS(DataConfig::from_json(j), doctest::Contains("'question_types' must be a list"), Error);
}
