#include "train/fashion_scenes.h"

#include <algorithm>
#include <numeric>
#include <unordered_set>

#include "core/error.h"
#include "kernels/cpu/parallel.h"
#include "train/draws.h"
#include "train/fashion_mnist.h"

namespace mmg {

bool fashion_left_of(const PlacedItem& a, const PlacedItem& b, int canvas) {
  return (b.x + b.size / 2.0) - (a.x + a.size / 2.0) >= canvas / 4.0;
}
bool fashion_above(const PlacedItem& a, const PlacedItem& b, int canvas) {
  return (b.y + b.size / 2.0) - (a.y + a.size / 2.0) >= canvas / 4.0;
}

std::vector<std::string> fashion_question_answers(const std::string& type, const std::vector<std::string>& class_names,
                                                  int min_items, int max_items) {
  if (type == "class") return class_names;
  if (type == "count") {
    std::vector<std::string> a;
    for (int k = min_items; k <= max_items; ++k) a.push_back(std::to_string(k));
    return a;
  }
  if (type == "exist" || type == "relation") return {"yes", "no"};
  MMG_FAIL("fashion_question_answers: unknown question type '{}' (valid: class, count, exist, relation)", type);
}

namespace {

constexpr const char* kPlaceWords[2][2] = {{"in the top left", "in the top right"},
                                           {"in the bottom left", "in the bottom right"}};
constexpr const char* kCountWords[] = {"zero", "one", "two", "three", "four"};

// ---- relations ----

enum class Rel { left_of, right_of, above, below };
constexpr Rel kRelations[] = {Rel::left_of, Rel::right_of, Rel::above, Rel::below};

const char* relation_words(Rel r) {
  switch (r) {
    case Rel::left_of: return "left of";
    case Rel::right_of: return "right of";
    case Rel::above: return "above";
    case Rel::below: return "below";
  }
  return "?";
}
const char* there_is_words(Rel r) {  // "there is a bag to the left of a shirt"
  return r == Rel::left_of ? "to the left of" : r == Rel::right_of ? "to the right of" : relation_words(r);
}
Rel opposite(Rel r) {
  switch (r) {
    case Rel::left_of: return Rel::right_of;
    case Rel::right_of: return Rel::left_of;
    case Rel::above: return Rel::below;
    case Rel::below: return Rel::above;
  }
  return r;
}

struct Scene {
  std::vector<PlacedItem> items;
  int canvas = 56;
  bool holds(Rel r, size_t a, size_t b) const {
    switch (r) {
      case Rel::left_of: return fashion_left_of(items[a], items[b], canvas);
      case Rel::right_of: return fashion_left_of(items[b], items[a], canvas);
      case Rel::above: return fashion_above(items[a], items[b], canvas);
      case Rel::below: return fashion_above(items[b], items[a], canvas);
    }
    return false;
  }
  int count_class(int c) const {
    return static_cast<int>(std::count_if(items.begin(), items.end(), [&](const PlacedItem& p) { return p.label == c; }));
  }
};

// ---- captions as data ----

enum class Form { gallery, count_list, relation, there_is };

struct Spec {
  Form form = Form::gallery;
  std::vector<int> classes;                // the named items' classes, in the order named
  std::vector<std::pair<int, int>> cells;  // gallery: each named item's (row, col)
  Rel relation = Rel::left_of;             // relation, there_is: classes[0] <relation> classes[1]
  int count = 0;                           // count_list: the number stated
};

std::string list_text(const std::vector<std::string>& parts) {  // "A", "A and B", "A, B and C"
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) s += i + 1 == parts.size() ? " and " : ", ";
    s += parts[i];
  }
  return s;
}

std::string spec_text(const Spec& s, const std::vector<std::string>& names) {
  auto item = [&](size_t i) { return with_article(names[s.classes[i]]); };
  switch (s.form) {
    case Form::gallery: {
      std::vector<std::string> parts;
      for (size_t i = 0; i < s.classes.size(); ++i)
        parts.push_back(item(i) + " " + kPlaceWords[s.cells[i].first][s.cells[i].second]);
      return list_text(parts);
    }
    case Form::count_list: {  // "one item: a bag", "three items, including a bag and a shirt"
      std::vector<std::string> parts;
      for (size_t i = 0; i < s.classes.size(); ++i) parts.push_back(item(i));
      return fmt::format("{} {}{} {}", kCountWords[s.count], s.count == 1 ? "item" : "items",
                         s.count == 1 ? ":" : ", including", list_text(parts));
    }
    case Form::relation: return fmt::format("{} {} {}", item(0), relation_words(s.relation), item(1));
    case Form::there_is: return fmt::format("there is {} {} {}", item(0), there_is_words(s.relation), item(1));
  }
  return {};
}

// Whether the classes can be given to distinct items (a multiset inclusion).
bool classes_present(const std::vector<int>& classes, const Scene& sc) {
  for (int c : classes)
    if (std::count(classes.begin(), classes.end(), c) > sc.count_class(c)) return false;
  return true;
}

bool spec_true(const Spec& s, const Scene& sc) {
  switch (s.form) {
    case Form::gallery:  // every item named, each in its cell
      if (s.classes.size() != sc.items.size()) return false;
      for (size_t i = 0; i < s.classes.size(); ++i) {
        bool found = false;
        for (const PlacedItem& p : sc.items)
          found |= p.row == s.cells[i].first && p.col == s.cells[i].second && p.label == s.classes[i];
        if (!found) return false;
      }
      return true;
    case Form::count_list: return s.count == static_cast<int>(sc.items.size()) && classes_present(s.classes, sc);
    case Form::relation:
    case Form::there_is:
      for (size_t a = 0; a < sc.items.size(); ++a)
        for (size_t b = 0; b < sc.items.size(); ++b)
          if (a != b && sc.items[a].label == s.classes[0] && sc.items[b].label == s.classes[1] &&
              sc.holds(s.relation, a, b))
            return true;
      return false;
  }
  return false;
}

// A gallery caption names its items left column first, top before bottom — its negatives
// too, so that the order of the words never gives a flipped caption away.
void sort_gallery(Spec& s) {
  std::vector<size_t> order(s.classes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(s.cells[a].second, s.cells[a].first) < std::pair(s.cells[b].second, s.cells[b].first);
  });
  Spec sorted = s;
  for (size_t i = 0; i < order.size(); ++i) sorted.classes[i] = s.classes[order[i]], sorted.cells[i] = s.cells[order[i]];
  s = sorted;
}

// The captions' specs: the gallery caption, a count caption and up to two relations.
std::vector<Spec> make_specs(const Scene& sc, Draws& d) {
  const int k = static_cast<int>(sc.items.size());
  std::vector<Spec> specs;
  Spec gallery;
  for (const PlacedItem& p : sc.items) {
    gallery.classes.push_back(p.label);
    gallery.cells.emplace_back(p.row, p.col);
  }
  sort_gallery(gallery);
  specs.push_back(gallery);
  std::vector<size_t> order(k);
  std::iota(order.begin(), order.end(), size_t{0});

  Spec count;  // one or two of the items, so a count changed by one is not visible in the words
  count.form = Form::count_list;
  count.count = k;
  d.shuffle(order);
  const int listed = 1 + d.below(std::min(k, 2));
  for (int i = 0; i < listed; ++i) count.classes.push_back(sc.items[order[i]].label);
  specs.push_back(count);

  std::vector<std::pair<size_t, size_t>> pairs;
  for (int a = 0; a < k; ++a)
    for (int b = a + 1; b < k; ++b) pairs.emplace_back(a, b);
  d.shuffle(pairs);
  for (size_t p = 0; p < pairs.size() && p < 2; ++p) {
    auto [a, b] = pairs[p];
    if (d.coin()) std::swap(a, b);
    std::vector<Rel> clear;
    for (Rel r : kRelations)
      if (sc.holds(r, a, b)) clear.push_back(r);
    if (clear.empty()) continue;  // cannot happen on the grid: two cells differ in row or column
    Spec rel;
    rel.form = d.coin() ? Form::relation : Form::there_is;
    rel.classes = {sc.items[a].label, sc.items[b].label};
    rel.relation = clear[d.below(static_cast<int>(clear.size()))];
    specs.push_back(rel);
  }
  return specs;
}

// Minimal edits that make the caption false: at most one per kind (class, relation, count).
std::vector<Spec> make_negatives(const Spec& s, const Scene& sc, int n_classes, int min_items, int max_items, Draws& d) {
  std::vector<Spec> negs;
  // Class: one named item becomes another class; edits tried in random order.
  std::vector<std::pair<size_t, int>> edits;
  for (size_t i = 0; i < s.classes.size(); ++i)
    for (int c = 0; c < n_classes; ++c)
      if (c != s.classes[i]) edits.emplace_back(i, c);
  d.shuffle(edits);
  for (auto [i, c] : edits) {
    Spec e = s;
    e.classes[i] = c;
    if (!spec_true(e, sc)) {
      negs.push_back(e);
      break;
    }
  }
  // Relation: left ↔ right (the gallery: mirrored, or else upside down), above ↔ below.
  if (s.form == Form::gallery) {
    Spec mirrored = s, flipped = s;
    for (auto& cell : mirrored.cells) cell.second = 1 - cell.second;
    for (auto& cell : flipped.cells) cell.first = 1 - cell.first;
    sort_gallery(mirrored);
    sort_gallery(flipped);
    if (!spec_true(mirrored, sc)) negs.push_back(mirrored);
    else if (!spec_true(flipped, sc)) negs.push_back(flipped);
  } else if (s.form == Form::relation || s.form == Form::there_is) {
    Spec flipped = s;
    flipped.relation = opposite(s.relation);
    if (!spec_true(flipped, sc)) negs.push_back(flipped);
  }
  // Count: one more or one fewer, within the counts scenes have and not below the items listed.
  if (s.form == Form::count_list) {
    std::vector<int> counts;
    if (s.count - 1 >= std::max(min_items, static_cast<int>(s.classes.size()))) counts.push_back(s.count - 1);
    if (s.count + 1 <= max_items) counts.push_back(s.count + 1);
    if (!counts.empty()) {
      Spec e = s;
      e.count = counts[d.below(static_cast<int>(counts.size()))];
      negs.push_back(e);
    }
  }
  return negs;
}

// ---- questions ----

// "what is left of the bag?" about item i, or "what is in the top right?".
bool class_question(const Scene& sc, size_t i, bool relational, const std::vector<std::string>& names, Draws& d,
                    std::string& text) {
  if (!relational) {
    text = fmt::format("what is {}?", kPlaceWords[sc.items[i].row][sc.items[i].col]);
    return true;
  }
  std::vector<size_t> anchors(sc.items.size());
  std::iota(anchors.begin(), anchors.end(), size_t{0});
  d.shuffle(anchors);
  for (size_t j : anchors) {
    if (j == i || sc.count_class(sc.items[j].label) != 1) continue;  // the anchor is named by its class
    std::vector<Rel> rels(std::begin(kRelations), std::end(kRelations));
    d.shuffle(rels);
    for (Rel r : rels) {
      int matching = 0;  // i must be the only item in relation r to the anchor
      for (size_t x = 0; x < sc.items.size(); ++x) matching += x != j && sc.holds(r, x, j);
      if (sc.holds(r, i, j) && matching == 1) {
        text = fmt::format("what is {} the {}?", relation_words(r), names[sc.items[j].label]);
        return true;
      }
    }
  }
  return false;
}

bool make_question(const std::string& type, const std::string& answer, const Scene& sc,
                   const std::vector<std::string>& names, Draws& d, QuestionAnswer& q) {
  q.type = type;
  q.answer = answer;
  std::vector<size_t> order(sc.items.size());
  std::iota(order.begin(), order.end(), size_t{0});
  d.shuffle(order);
  if (type == "class") {
    const bool relational_first = d.coin();
    for (bool relational : {relational_first, !relational_first})
      for (size_t i : order)
        if (names[sc.items[i].label] == answer && class_question(sc, i, relational, names, d, q.question)) return true;
    return false;
  }
  if (type == "count") {
    if (std::to_string(sc.items.size()) != answer) return false;
    q.question = d.coin() ? "how many items are there?" : "how many items are in the picture?";
    return true;
  }
  if (type == "exist") {
    std::vector<int> candidates;
    for (int c = 0; c < static_cast<int>(names.size()); ++c)
      if ((sc.count_class(c) > 0) == (answer == "yes")) candidates.push_back(c);
    if (candidates.empty()) return false;
    q.question = fmt::format("is there {}?", with_article(names[candidates[d.below(static_cast<int>(candidates.size()))]]));
    return true;
  }
  // relation: "is the shirt left of the bag?" — both named by a class that occurs once
  for (size_t a : order)
    for (size_t b : order) {
      if (a == b || sc.count_class(sc.items[a].label) != 1 || sc.count_class(sc.items[b].label) != 1) continue;
      std::vector<Rel> clear;
      for (Rel r : kRelations)
        if (sc.holds(r, a, b)) clear.push_back(r);
      if (clear.empty()) continue;
      Rel r = clear[d.below(static_cast<int>(clear.size()))];
      if (answer == "no") r = opposite(r);
      q.question = fmt::format("is the {} {} the {}?", names[sc.items[a].label],
                               d.coin() ? relation_words(r) : there_is_words(r), names[sc.items[b].label]);
      return true;
    }
  return false;
}

// Answer counts per split and type; a question is asked only with an answer at most kSlack
// above the rarest one of its type, so every type's answers stay uniform (as scenes.cpp).
constexpr int kSlack = 2;

struct AnswerBalance {
  std::vector<std::vector<std::string>> answers;  // [type][answer]
  std::vector<std::vector<int64_t>> counts[3];    // [split][type][answer]
};

std::vector<QuestionAnswer> make_questions(const Scene& sc, const std::vector<std::string>& names,
                                           AnswerBalance& balance, int split, Draws& d) {
  std::vector<QuestionAnswer> questions;
  for (size_t t = 0; t < kFashionQuestionTypes.size(); ++t) {
    const std::vector<std::string>& answers = balance.answers[t];
    std::vector<int64_t>& counts = balance.counts[split][t];
    std::vector<size_t> order(answers.size());  // the rarest answers first, ties in random order
    std::iota(order.begin(), order.end(), size_t{0});
    d.shuffle(order);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return counts[a] < counts[b]; });
    const int64_t rarest = counts[order[0]];
    for (size_t a : order) {
      if (counts[a] > rarest + kSlack) break;
      QuestionAnswer q;
      if (make_question(kFashionQuestionTypes[t], answers[a], sc, names, d, q)) {
        questions.push_back(q);
        ++counts[a];
        break;
      }
    }
  }
  return questions;
}

// ---- layout and rendering ----

Scene draw_scene(const std::vector<Sample>& pool, const FashionScenesConfig& cfg, Draws& d) {
  Scene sc;
  sc.canvas = cfg.canvas;
  const int cell = cfg.canvas / 2;
  const int k = cfg.min_items + d.below(cfg.max_items - cfg.min_items + 1);
  std::vector<int> cells = {0, 1, 2, 3};  // row·2 + col
  d.shuffle(cells);
  for (int i = 0; i < k; ++i) {
    PlacedItem p;
    p.item = d.below(static_cast<int>(pool.size()));
    p.label = static_cast<int>(pool[p.item].label);
    p.size = cfg.min_item_size + d.below(cfg.max_item_size - cfg.min_item_size + 1);
    p.row = cells[i] / 2, p.col = cells[i] % 2;
    p.x = p.col * cell + d.below(cell - p.size + 1);
    p.y = p.row * cell + d.below(cell - p.size + 1);
    sc.items.push_back(p);
  }
  return sc;
}

Image render(const std::vector<PlacedItem>& items, const std::vector<Sample>& pool, int canvas) {
  Image img(canvas, canvas, 1);
  for (const PlacedItem& p : items) {
    const Image& src = pool[p.item].image;
    const Image scaled = src.width == p.size && src.height == p.size ? src : resize_bilinear(src, p.size, p.size);
    for (int y = 0; y < p.size; ++y)
      for (int x = 0; x < p.size; ++x) {
        uint8_t& v = img.at(p.x + x, p.y + y, 0);
        v = std::max(v, scaled.at(x, y, 0));
      }
  }
  return img;
}

void check_config(const Dataset& fashion, const FashionScenesConfig& c) {
  MMG_CHECK(c.n_train >= 0 && c.n_val >= 0 && c.n_test >= 0,
            "generate_fashion_scenes: scene counts train {}, val {}, test {} must be non-negative", c.n_train,
            c.n_val, c.n_test);
  MMG_CHECK(c.min_items >= 1 && c.min_items <= c.max_items && c.max_items <= 4,
            "generate_fashion_scenes: items per scene {}..{} must lie within 1..4", c.min_items, c.max_items);
  MMG_CHECK(c.min_item_size <= c.max_item_size && 4 * c.min_item_size > c.canvas && 2 * c.max_item_size <= c.canvas,
            "generate_fashion_scenes: item sizes {}..{} must lie above a quarter ({}) and within half ({}) of the "
            "canvas {}", c.min_item_size, c.max_item_size, c.canvas / 4.0, c.canvas / 2, c.canvas);
  MMG_CHECK(fashion.class_names.size() >= 2, "generate_fashion_scenes: data set '{}' has {} class names (needs 2+)",
            fashion.name, fashion.class_names.size());
  const std::pair<const char*, int64_t> wanted[3] = {{"train", c.n_train}, {"val", c.n_val}, {"test", c.n_test}};
  for (auto [split, n] : wanted) {
    const std::vector<Sample>& pool = fashion.split(split);
    MMG_CHECK(n == 0 || !pool.empty(), "generate_fashion_scenes: {} {} scenes wanted but the {} split of '{}' is empty",
              n, split, split, fashion.name);
    MMG_CHECK(pool.size() < (size_t{1} << 31), "generate_fashion_scenes: the {} split is too large", split);
    for (size_t i = 0; i < pool.size(); ++i) {
      const Sample& s = pool[i];
      MMG_CHECK(s.image.channels == 1 && !s.image.empty(),
                "generate_fashion_scenes: {} item {} ({}) has {} channels; items must be grey pictures", split, i,
                s.source, s.image.channels);
      MMG_CHECK(s.label >= 0 && s.label < static_cast<int64_t>(fashion.class_names.size()),
                "generate_fashion_scenes: {} item {} ({}) has label {}, outside 0..{}", split, i, s.source, s.label,
                fashion.class_names.size() - 1);
    }
  }
}

}  // namespace

Dataset generate_fashion_scenes(const Dataset& fashion, const FashionScenesConfig& cfg, FashionSceneLayouts* layouts) {
  check_config(fashion, cfg);
  const std::vector<std::string>& names = fashion.class_names;
  const int n_classes = static_cast<int>(names.size());
  AnswerBalance balance;
  for (const std::string& type : kFashionQuestionTypes)
    balance.answers.push_back(fashion_question_answers(type, names, cfg.min_items, cfg.max_items));
  for (auto& per_split : balance.counts)
    for (const auto& answers : balance.answers) per_split.emplace_back(answers.size(), 0);

  Dataset ds;
  ds.name = "fashion-scenes";
  FashionSceneLayouts local;
  FashionSceneLayouts& out_layouts = layouts ? *layouts : local;
  out_layouts = {};
  const char* split_names[3] = {"train", "val", "test"};
  std::vector<Sample>* splits[3] = {&ds.train, &ds.val, &ds.test};
  std::vector<std::vector<PlacedItem>>* split_layouts[3] = {&out_layouts.train, &out_layouts.val, &out_layouts.test};
  const int64_t sizes[3] = {cfg.n_train, cfg.n_val, cfg.n_test};
  uint64_t stream = 0;  // scene index over all splits: its Philox stream

  for (int split = 0; split < 3; ++split) {
    const std::vector<Sample>& pool = fashion.split(split_names[split]);
    std::unordered_set<std::string> gallery;  // captions[0] of this split (val, test: kept unique)
    const bool unique_gallery = split != 0;
    for (int64_t i = 0; i < sizes[split]; ++i, ++stream) {
      Draws d(cfg.seed, stream);
      Scene sc;
      std::vector<Spec> specs;
      for (int attempt = 0;; ++attempt) {
        MMG_CHECK(attempt < 2000,
                  "generate_fashion_scenes: cannot find a {} scene {} with a caption unlike the others; lower the "
                  "number of {} scenes ({})", split_names[split], i, split_names[split], sizes[split]);
        sc = draw_scene(pool, cfg, d);
        specs = make_specs(sc, d);
        if (!unique_gallery || gallery.insert(spec_text(specs[0], names)).second) break;
      }
      Sample s;
      for (const Spec& spec : specs) {
        MMG_CHECK(spec_true(spec, sc), "generate_fashion_scenes: internal error: caption '{}' is false for its scene",
                  spec_text(spec, names));
        s.captions.push_back(spec_text(spec, names));
        s.negatives.emplace_back();
        for (const Spec& neg : make_negatives(spec, sc, n_classes, cfg.min_items, cfg.max_items, d))
          s.negatives.back().push_back(spec_text(neg, names));
      }
      s.questions = make_questions(sc, names, balance, split, d);
      std::vector<std::string> item_ids;
      for (const PlacedItem& p : sc.items) item_ids.push_back(fmt::format("#{}", p.item));
      s.source = fmt::format("fashion scene {} {}: {} items {}", split_names[split], i, split_names[split],
                             fmt::join(item_ids, ", "));
      splits[split]->push_back(std::move(s));
      split_layouts[split]->push_back(std::move(sc.items));
    }
    std::vector<Sample>& samples = *splits[split];
    const std::vector<std::vector<PlacedItem>>& placed = *split_layouts[split];
    cpu::parallel_for(static_cast<int64_t>(samples.size()), 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) samples[i].image = render(placed[i], pool, cfg.canvas);
    });
  }
  return ds;
}

}  // namespace mmg
