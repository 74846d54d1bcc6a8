#include "train/scenes.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

#include "core/error.h"
#include "kernels/cpu/parallel.h"
#include "train/draws.h"

namespace mmg {

// ---- vocabulary ----

namespace {

constexpr const char* kShapeNames[kSceneShapes] = {"circle", "square", "triangle", "diamond", "cross"};
constexpr const char* kColourNames[kSceneColours] = {"red", "yellow", "green", "cyan", "blue", "purple", "pink", "white"};
constexpr Rgb kColourRgb[kSceneColours] = {{225, 45, 45},  {240, 215, 40},  {45, 175, 65},   {40, 210, 225},
                                           {50, 90, 240},  {140, 60, 200},  {250, 140, 200}, {240, 240, 240}};
constexpr const char* kSizeNames[kSceneSizes] = {"small", "large"};
constexpr double kRadius[kSceneSizes] = {0.11, 0.17};  // fraction of the image side
constexpr double kEdgeMargin = 0.02;   // objects stay this far inside the image
constexpr double kGap = 0.03;          // empty space between two objects' discs, at least
constexpr double kMinDx = 0.08;        // centres differ this much in x, so "left to right" is clear
constexpr double kPlaceQuestionMargin = 0.04;  // a place question's object is this far from the cuts
constexpr const char* kCountWords[] = {"zero", "one", "two", "three", "four", "five", "six"};
constexpr int kMaxCount = 4;           // objects in a scene, at most

}  // namespace

const char* scene_shape_name(int s) {
  MMG_CHECK(s >= 0 && s < kSceneShapes, "scene_shape_name: shape {} out of range [0, {})", s, kSceneShapes);
  return kShapeNames[s];
}
const char* scene_colour_name(int c) {
  MMG_CHECK(c >= 0 && c < kSceneColours, "scene_colour_name: colour {} out of range [0, {})", c, kSceneColours);
  return kColourNames[c];
}
const char* scene_size_name(int s) {
  MMG_CHECK(s >= 0 && s < kSceneSizes, "scene_size_name: size {} out of range [0, {})", s, kSceneSizes);
  return kSizeNames[s];
}
Rgb scene_colour_rgb(int c) {
  MMG_CHECK(c >= 0 && c < kSceneColours, "scene_colour_rgb: colour {} out of range [0, {})", c, kSceneColours);
  return kColourRgb[c];
}
Rgb scene_background_rgb() { return {28, 28, 36}; }

const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::val: return "val";
    case Split::test: return "test";
  }
  return "?";
}

// ---- relations and descriptions ----

const char* relation_words(Relation r) {
  switch (r) {
    case Relation::left_of: return "left of";
    case Relation::right_of: return "right of";
    case Relation::above: return "above";
    case Relation::below: return "below";
  }
  return "?";
}

Relation opposite(Relation r) {
  switch (r) {
    case Relation::left_of: return Relation::right_of;
    case Relation::right_of: return Relation::left_of;
    case Relation::above: return Relation::below;
    case Relation::below: return Relation::above;
  }
  return r;
}

bool relation_holds(Relation r, const SceneObject& a, const SceneObject& b) {
  switch (r) {
    case Relation::left_of: return b.x - a.x >= kClearSeparation;
    case Relation::right_of: return a.x - b.x >= kClearSeparation;
    case Relation::above: return b.y - a.y >= kClearSeparation;  // y grows downwards
    case Relation::below: return a.y - b.y >= kClearSeparation;
  }
  return false;
}

bool ObjectDesc::matches(const SceneObject& o) const {
  return shape == o.shape && colour == o.colour && (size < 0 || size == o.size);
}

int place_row(const SceneObject& o) { return o.y < 0.4 ? 0 : o.y > 0.6 ? 2 : 1; }
int place_col(const SceneObject& o) { return o.x < 0.4 ? 0 : o.x > 0.6 ? 2 : 1; }
// Whether o's centre is at least `margin` from the grid's cuts at 0.4 and 0.6 on both axes.
bool clear_of_cuts(const SceneObject& o, double margin) {
  auto clear = [&](double v) { return std::abs(v - 0.4) >= margin && std::abs(v - 0.6) >= margin; };
  return clear(o.x) && clear(o.y);
}

const char* edit_name(EditKind e) {
  switch (e) {
    case EditKind::colour: return "colour";
    case EditKind::relation: return "relation";
    case EditKind::count: return "count";
  }
  return "?";
}

const char* question_type_name(QuestionType t) {
  switch (t) {
    case QuestionType::colour: return "colour";
    case QuestionType::shape: return "shape";
    case QuestionType::count: return "count";
    case QuestionType::exist: return "exist";
    case QuestionType::relation: return "relation";
    case QuestionType::place: return "place";
  }
  return "?";
}

std::vector<std::string> question_answers(QuestionType t) {
  MMG_CHECK(static_cast<int>(t) >= 0 && static_cast<int>(t) < kQuestionTypes, "question_answers: type {} out of range",
            static_cast<int>(t));
  switch (t) {
    case QuestionType::colour: return {kColourNames, kColourNames + kSceneColours};
    case QuestionType::shape: return {kShapeNames, kShapeNames + kSceneShapes};
    case QuestionType::count: return {"1", "2", "3", "4"};
    case QuestionType::exist:
    case QuestionType::relation: return {"yes", "no"};
    case QuestionType::place:
      return {"top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"};
  }
  return {};
}

// ---- caption text ----

namespace {

// "a small red circle" / "a red circle"
std::string desc_text(const ObjectDesc& d) {
  return d.size >= 0 ? fmt::format("a {} {} {}", kSizeNames[d.size], kColourNames[d.colour], kShapeNames[d.shape])
                     : fmt::format("a {} {}", kColourNames[d.colour], kShapeNames[d.shape]);
}

// "A", "A and B", "A, B and C"
std::string list_text(const std::vector<ObjectDesc>& ds) {
  std::string s;
  for (size_t i = 0; i < ds.size(); ++i) {
    if (i > 0) s += i + 1 == ds.size() ? " and " : ", ";
    s += desc_text(ds[i]);
  }
  return s;
}

std::string count_text(int n) {
  std::string word = n >= 0 && n <= 6 ? kCountWords[n] : std::to_string(n);
  return word + (n == 1 ? " object" : " objects");
}

const char* kPlaceWords[3][3] = {{"in the top left", "at the top", "in the top right"},
                                 {"on the left", "in the centre", "on the right"},
                                 {"in the bottom left", "at the bottom", "in the bottom right"}};

const char* there_is_words(Relation r) {
  switch (r) {
    case Relation::left_of: return "to the left of";
    case Relation::right_of: return "to the right of";
    default: return relation_words(r);
  }
}

}  // namespace

std::string caption_text(const CaptionSpec& c) {
  switch (c.form) {
    case CaptionForm::place:
      return desc_text(c.objects.at(0)) + " " + kPlaceWords[c.row][c.col];
    case CaptionForm::relation:
      return fmt::format("{} {} {}", desc_text(c.objects.at(0)), relation_words(c.relation), desc_text(c.objects.at(1)));
    case CaptionForm::there_is:
      return fmt::format("there is {} {} {}", desc_text(c.objects.at(0)), there_is_words(c.relation),
                         desc_text(c.objects.at(1)));
    case CaptionForm::count_list:  // "one object: A", "three objects, including A and B"
      return fmt::format("{}{} {}", count_text(c.count), c.count == 1 ? ":" : ", including", list_text(c.objects));
    case CaptionForm::ordered_list:
      return fmt::format("{} from {}: {}", count_text(c.count), c.left_to_right ? "left to right" : "right to left",
                         list_text(c.objects));
  }
  return {};
}

// ---- truth of a caption ----

namespace {

// Whether the descriptions can be given to distinct objects, each matching its own.
bool distinct_match(const std::vector<ObjectDesc>& ds, const std::vector<SceneObject>& objs, size_t i,
                    std::vector<bool>& used) {
  if (i == ds.size()) return true;
  for (size_t j = 0; j < objs.size(); ++j)
    if (!used[j] && ds[i].matches(objs[j])) {
      used[j] = true;
      bool ok = distinct_match(ds, objs, i + 1, used);
      used[j] = false;
      if (ok) return true;
    }
  return false;
}

std::vector<size_t> order_by_x(const std::vector<SceneObject>& objs) {
  std::vector<size_t> order(objs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return objs[a].x < objs[b].x; });
  return order;
}

}  // namespace

bool caption_true(const CaptionSpec& c, const std::vector<SceneObject>& objs) {
  switch (c.form) {
    case CaptionForm::place:
      for (const SceneObject& o : objs)
        if (c.objects.at(0).matches(o) && place_row(o) == c.row && place_col(o) == c.col) return true;
      return false;
    case CaptionForm::relation:
    case CaptionForm::there_is:
      for (size_t i = 0; i < objs.size(); ++i)
        for (size_t j = 0; j < objs.size(); ++j)
          if (i != j && c.objects.at(0).matches(objs[i]) && c.objects.at(1).matches(objs[j]) &&
              relation_holds(c.relation, objs[i], objs[j]))
            return true;
      return false;
    case CaptionForm::count_list: {
      if (c.count != static_cast<int>(objs.size()) || c.objects.size() > objs.size()) return false;
      std::vector<bool> used(objs.size(), false);
      return distinct_match(c.objects, objs, 0, used);
    }
    case CaptionForm::ordered_list: {
      if (c.count != static_cast<int>(objs.size()) || c.objects.size() != objs.size()) return false;
      std::vector<size_t> order = order_by_x(objs);
      if (!c.left_to_right) std::reverse(order.begin(), order.end());
      for (size_t i = 0; i < order.size(); ++i)
        if (!c.objects[i].matches(objs[order[i]])) return false;
      return true;
    }
  }
  return false;
}

// ---- rendering ----

bool inside_shape(int shape, double u, double v) {
  double au = std::abs(u), av = std::abs(v);
  switch (shape) {
    case 0: return u * u + v * v <= 1.0;                                        // circle
    case 1: return au <= 0.7 && av <= 0.7;                                      // square
    case 2: return v <= 0.5 && au <= (v + 1.0) / std::sqrt(3.0);               // triangle, apex up
    case 3: return au + av <= 1.0;                                              // diamond
    case 4: return (au <= 0.25 && av <= 0.95) || (av <= 0.25 && au <= 0.95);  // cross
  }
  return false;
}

Image render_scene(const std::vector<SceneObject>& objects, int S) {
  MMG_CHECK(S >= 8, "render_scene: image size {} is too small (min 8)", S);
  Image img(S, S, 3);
  const Rgb bg = scene_background_rgb();
  for (size_t i = 0; i < img.data.size(); i += 3) img.data[i] = bg.r, img.data[i + 1] = bg.g, img.data[i + 2] = bg.b;
  constexpr int kSub = 4;  // kSub × kSub samples per pixel
  for (const SceneObject& o : objects) {
    const Rgb c = kColourRgb[o.colour];
    int x0 = std::max(0, static_cast<int>(std::floor((o.x - o.radius) * S)));
    int x1 = std::min(S - 1, static_cast<int>(std::ceil((o.x + o.radius) * S)));
    int y0 = std::max(0, static_cast<int>(std::floor((o.y - o.radius) * S)));
    int y1 = std::min(S - 1, static_cast<int>(std::ceil((o.y + o.radius) * S)));
    // Shortcuts that give the same counts: every shape lies inside the unit disc and
    // contains the disc of radius kInner around its centre, and a pixel's samples are all
    // within half a diagonal (√2/2 pixel) of its centre. So pixels far enough out have no
    // hits and pixels far enough in have all of them; only those near the outline are sampled.
    static constexpr double kInner[kSceneShapes] = {1.0, 0.7, 0.5, 0.7071, 0.25};
    const double r_px = o.radius * S, reach = 0.7072;
    const double outside = (r_px + reach) * (r_px + reach);
    const double inner = std::max(0.0, kInner[o.shape] * r_px - reach), inside = inner * inner;
    for (int py = y0; py <= y1; ++py)
      for (int px = x0; px <= x1; ++px) {
        const double dx = px + 0.5 - o.x * S, dy = py + 0.5 - o.y * S, d2 = dx * dx + dy * dy;
        if (d2 >= outside) continue;
        int hits = kSub * kSub;
        if (d2 >= inside) {
          hits = 0;
          for (int sy = 0; sy < kSub; ++sy)
            for (int sx = 0; sx < kSub; ++sx) {
              double u = ((px + (sx + 0.5) / kSub) / S - o.x) / o.radius;
              double v = ((py + (sy + 0.5) / kSub) / S - o.y) / o.radius;
              hits += inside_shape(o.shape, u, v);
            }
        }
        if (hits == 0) continue;
        float a = static_cast<float>(hits) / (kSub * kSub);
        const uint8_t rgb[3] = {c.r, c.g, c.b};
        for (int k = 0; k < 3; ++k) {
          uint8_t& p = img.at(px, py, k);
          p = static_cast<uint8_t>(std::lround((1 - a) * p + a * rgb[k]));
        }
      }
  }
  return img;
}

// ---- generation ----

std::vector<std::pair<int, int>> SceneConfig::default_held_out() {
  // One per shape, each with a different colour: (shape s, colour 3s+1 mod 8).
  std::vector<std::pair<int, int>> h;
  for (int s = 0; s < kSceneShapes; ++s) h.emplace_back(s, (3 * s + 1) % kSceneColours);
  return h;
}

std::vector<const Scene*> SceneDataset::split(Split s) const {
  std::vector<const Scene*> out;
  for (const Scene& sc : scenes)
    if (sc.split == s) out.push_back(&sc);
  return out;
}

namespace {

ObjectDesc full_desc(const SceneObject& o) { return {o.shape, o.colour, o.size}; }

// Which colour+shape combinations each split may show and name.
struct Vocabulary {
  std::vector<std::pair<int, int>> held_out;
  bool is_held_out(int shape, int colour) const {
    return std::find(held_out.begin(), held_out.end(), std::make_pair(shape, colour)) != held_out.end();
  }
  // Whether a text may name this combination in this split (train never names held-out ones).
  bool allowed(Split split, int shape, int colour) const { return split != Split::train || !is_held_out(shape, colour); }
};

// k objects without overlap. In a one-object scene the object sits clearly inside one
// cell of the 3×3 place grid (so "in the top left" is never borderline); with more, every
// pair is apart by kGap and by kMinDx in x.
bool place_objects(std::vector<SceneObject>& objs, Draws& d) {
  if (objs.size() == 1) {
    SceneObject& o = objs[0];
    const double lo = o.radius + kEdgeMargin, hi = 1 - o.radius - kEdgeMargin;
    auto in_band = [&](int cell) {  // cell centres 0.25, 0.5, 0.75; ±0.08 keeps clear of the 0.4 / 0.6 cuts
      double c = 0.25 * (cell + 1);
      return d.uniform(std::max(lo, c - 0.08), std::min(hi, c + 0.08));
    };
    o.x = in_band(d.below(3));
    o.y = in_band(d.below(3));
    return true;
  }
  for (size_t i = 0; i < objs.size(); ++i) {
    SceneObject& o = objs[i];
    bool placed = false;
    for (int attempt = 0; attempt < 200 && !placed; ++attempt) {
      o.x = d.uniform(o.radius + kEdgeMargin, 1 - o.radius - kEdgeMargin);
      o.y = d.uniform(o.radius + kEdgeMargin, 1 - o.radius - kEdgeMargin);
      placed = true;
      for (size_t j = 0; j < i && placed; ++j) {
        double dist = std::hypot(o.x - objs[j].x, o.y - objs[j].y);
        placed = dist >= o.radius + objs[j].radius + kGap && std::abs(o.x - objs[j].x) >= kMinDx;
      }
    }
    if (!placed) return false;
  }
  return true;
}

std::vector<SceneObject> draw_objects(int k, Split split, const Vocabulary& vocab, Draws& d) {
  std::vector<std::pair<int, int>> combos;
  for (int s = 0; s < kSceneShapes; ++s)
    for (int c = 0; c < kSceneColours; ++c)
      if (vocab.allowed(split, s, c)) combos.emplace_back(s, c);
  for (;;) {
    std::vector<SceneObject> objs(k);
    for (SceneObject& o : objs) {
      auto [s, c] = combos[d.below(static_cast<int>(combos.size()))];
      o.shape = s, o.colour = c, o.size = d.below(kSceneSizes), o.radius = kRadius[o.size];
    }
    // Crowded draws (four large objects) may need several layouts; after 20, redraw.
    for (int layout = 0; layout < 20; ++layout)
      if (place_objects(objs, d)) return objs;
  }
}

// The relation that holds between a and b along the axis where they are further apart.
Relation main_relation(const SceneObject& a, const SceneObject& b) {
  if (std::abs(a.x - b.x) >= std::abs(a.y - b.y)) return a.x < b.x ? Relation::left_of : Relation::right_of;
  return a.y < b.y ? Relation::above : Relation::below;
}

// ---- captions and their negatives ----

bool names_allowed(const CaptionSpec& c, Split split, const Vocabulary& vocab) {
  for (const ObjectDesc& o : c.objects)
    if (!vocab.allowed(split, o.shape, o.colour)) return false;
  return true;
}

std::vector<CaptionNegative> make_negatives(const CaptionSpec& spec, const std::vector<SceneObject>& objs,
                                            Split split, const Vocabulary& vocab, Draws& d) {
  std::vector<CaptionNegative> negs;
  auto add = [&](EditKind kind, const CaptionSpec& s) { negs.push_back({kind, s, caption_text(s)}); };
  const int n = static_cast<int>(spec.objects.size());

  // Colour: swap the colours of two named objects (the words stay the same, only their
  // order changes); if no swap makes it false, give one object another colour. Edits are
  // tried in random order; (i, j) is a swap, (i, -1 - c) gives object i colour c.
  std::vector<std::pair<int, int>> swaps, recolours;
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j)
      if (spec.objects[i].colour != spec.objects[j].colour) swaps.emplace_back(i, j);
    for (int c = 0; c < kSceneColours; ++c)
      if (c != spec.objects[i].colour) recolours.emplace_back(i, -1 - c);
  }
  d.shuffle(swaps);
  d.shuffle(recolours);
  swaps.insert(swaps.end(), recolours.begin(), recolours.end());
  CaptionSpec edited = spec;
  for (auto [i, j] : swaps) {
    if (j >= 0) std::swap(edited.objects[i].colour, edited.objects[j].colour);
    else edited.objects[i].colour = -1 - j;
    if (!caption_true(edited, objs) && names_allowed(edited, split, vocab)) {
      add(EditKind::colour, edited);
      break;
    }
    edited.objects[i].colour = spec.objects[i].colour;
    if (j >= 0) edited.objects[j].colour = spec.objects[j].colour;
  }

  // Relation: left ↔ right (or above ↔ below, top ↔ bottom), or the list order reversed.
  CaptionSpec flipped = spec;
  bool can_flip = true;
  switch (spec.form) {
    case CaptionForm::relation:
    case CaptionForm::there_is: flipped.relation = opposite(spec.relation); break;
    case CaptionForm::place:
      if (spec.col != 1) flipped.col = 2 - spec.col;
      else if (spec.row != 1) flipped.row = 2 - spec.row;
      else can_flip = false;  // "in the centre" has no mirror image
      break;
    case CaptionForm::ordered_list: flipped.left_to_right = !spec.left_to_right; break;
    case CaptionForm::count_list: can_flip = false; break;
  }
  if (can_flip && !caption_true(flipped, objs)) add(EditKind::relation, flipped);

  // Count: one more or one fewer, when the words cannot give it away — a count caption
  // lists only some objects, so "three objects, including A and B" may be true or false;
  // an ordered list names every object, so its count is not edited.
  if (spec.form == CaptionForm::count_list) {
    const int listed = n;
    std::vector<int> counts;
    if (spec.count - 1 >= std::max(1, listed)) counts.push_back(spec.count - 1);
    if (spec.count + 1 <= kMaxCount) counts.push_back(spec.count + 1);
    if (!counts.empty()) {
      CaptionSpec s = spec;
      s.count = counts[d.below(static_cast<int>(counts.size()))];
      if (!caption_true(s, objs)) add(EditKind::count, s);
    }
  }
  return negs;
}

// The captions of a scene; captions[0] names every object with its size. Directions are
// drawn at random ("A left of B" or "B right of A", "from left to right" or "from right to
// left"), so that a flipped negative is not given away by its words alone.
std::vector<CaptionSpec> make_caption_specs(const std::vector<SceneObject>& objs, Draws& d) {
  const int k = static_cast<int>(objs.size());
  auto desc = [&](const SceneObject& o, bool full) {  // without `full`, the size is said half of the time
    ObjectDesc r = full_desc(o);
    if (!full && d.coin()) r.size = -1;
    return r;
  };
  std::vector<CaptionSpec> specs;
  auto relation_caption = [&](size_t i, size_t j, CaptionForm form, bool full) {
    CaptionSpec c;
    c.form = form;
    c.objects = {desc(objs[i], full), desc(objs[j], full)};
    c.relation = main_relation(objs[i], objs[j]);
    return c;
  };
  auto ordered_caption = [&](bool full) {  // every object, in x order, either direction
    CaptionSpec c;
    c.form = CaptionForm::ordered_list;
    c.count = k;
    c.left_to_right = d.coin();
    std::vector<size_t> order = order_by_x(objs);
    if (!c.left_to_right) std::reverse(order.begin(), order.end());
    for (size_t i : order) c.objects.push_back(desc(objs[i], full));
    return c;
  };
  auto count_caption = [&]() {  // the count and one or two of the objects
    CaptionSpec c;
    c.form = CaptionForm::count_list;
    c.count = k;
    std::vector<size_t> order(k);
    std::iota(order.begin(), order.end(), size_t{0});
    d.shuffle(order);
    int listed = 1 + d.below(std::min(k, 2));
    for (int i = 0; i < listed; ++i) c.objects.push_back(desc(objs[order[i]], false));
    return c;
  };

  if (k == 1) {
    CaptionSpec place;
    place.form = CaptionForm::place;
    place.objects = {full_desc(objs[0])};
    place.row = place_row(objs[0]), place.col = place_col(objs[0]);
    specs.push_back(place);
    specs.push_back(count_caption());
    place.objects[0].size = -1;
    specs.push_back(place);
  } else if (k == 2) {
    size_t a = d.below(2), b = 1 - a;
    specs.push_back(relation_caption(a, b, CaptionForm::relation, true));
    specs.push_back(relation_caption(b, a, CaptionForm::there_is, false));
    specs.push_back(count_caption());
    specs.push_back(ordered_caption(false));
  } else {
    specs.push_back(ordered_caption(true));
    specs.push_back(count_caption());
    // Relations within two different pairs of objects, each pair named in either order.
    std::vector<std::pair<size_t, size_t>> pairs;
    for (int i = 0; i < k; ++i)
      for (int j = i + 1; j < k; ++j) pairs.emplace_back(i, j);
    d.shuffle(pairs);
    for (int p = 0; p < 2; ++p) {
      auto [i, j] = pairs[p];
      if (d.coin()) std::swap(i, j);
      specs.push_back(relation_caption(i, j, d.coin() ? CaptionForm::relation : CaptionForm::there_is, false));
    }
  }

  return specs;
}

// The captions' texts and negatives.
std::vector<SceneCaption> make_captions(const std::vector<CaptionSpec>& specs, const std::vector<SceneObject>& objs,
                                        Split split, const Vocabulary& vocab, Draws& d) {
  std::vector<SceneCaption> captions;
  for (const CaptionSpec& s : specs) {
    MMG_CHECK(caption_true(s, objs), "generate_scenes: internal error: caption '{}' is false for its scene",
              caption_text(s));
    captions.push_back({s, caption_text(s), make_negatives(s, objs, split, vocab, d)});
  }
  return captions;
}

// The text of a caption with its direction normalised ("B right of A" → "A left of B",
// right-to-left lists reversed): two scenes whose first captions have the same key look
// alike, so a retrieval gallery keeps keys unique.
std::string gallery_key(CaptionSpec c) {
  if ((c.form == CaptionForm::relation || c.form == CaptionForm::there_is) &&
      (c.relation == Relation::right_of || c.relation == Relation::below)) {
    std::swap(c.objects[0], c.objects[1]);
    c.relation = opposite(c.relation);
  }
  if (c.form == CaptionForm::ordered_list && !c.left_to_right) {
    std::reverse(c.objects.begin(), c.objects.end());
    c.left_to_right = true;
  }
  return caption_text(c);
}

// ---- questions ----

// How to name object i so that exactly one object answers to the name, using only the
// attributes in `use` ("shape", "colour", with the size added when needed); empty when
// even that is ambiguous.
struct Naming {
  bool shape, colour;
};

std::string unique_name(const std::vector<SceneObject>& objs, size_t i, Naming use) {
  auto count_like = [&](bool with_size) {
    int n = 0;
    for (const SceneObject& o : objs)
      n += (!use.shape || o.shape == objs[i].shape) && (!use.colour || o.colour == objs[i].colour) &&
           (!with_size || o.size == objs[i].size);
    return n;
  };
  std::string size = count_like(false) == 1 ? "" : count_like(true) == 1 ? std::string(kSizeNames[objs[i].size]) + " " : "?";
  if (size == "?") return {};
  std::string name = "the " + size;
  if (use.colour) name += std::string(kColourNames[objs[i].colour]) + (use.shape ? " " : "");
  name += use.shape ? kShapeNames[objs[i].shape] : " object";
  return name;
}

// A question of `type` whose answer is `answer` about this scene, if there is one.
bool make_question(QuestionType type, const std::string& answer, const std::vector<SceneObject>& objs, Split split,
                   const Vocabulary& vocab, Draws& d, SceneQuestion& q) {
  q.type = type;
  q.answer = answer;
  std::vector<size_t> order(objs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  d.shuffle(order);
  switch (type) {
    case QuestionType::colour:  // "what colour is the circle?" — the object named by its shape
      for (size_t i : order) {
        if (kColourNames[objs[i].colour] != answer) continue;
        std::string name = unique_name(objs, i, {true, false});
        if (name.empty()) continue;
        q.text = d.coin() ? fmt::format("what colour is {}?", name) : fmt::format("what is the colour of {}?", name);
        return true;
      }
      return false;
    case QuestionType::shape:  // "what shape is the red object?" — named by its colour
      for (size_t i : order) {
        if (kShapeNames[objs[i].shape] != answer) continue;
        std::string name = unique_name(objs, i, {false, true});
        if (name.empty()) continue;
        q.text = d.coin() ? fmt::format("what shape is {}?", name) : fmt::format("what is the shape of {}?", name);
        return true;
      }
      return false;
    case QuestionType::count:
      if (std::to_string(objs.size()) != answer) return false;
      q.text = d.coin() ? "how many objects are there?" : "how many objects are in the image?";
      return true;
    case QuestionType::exist: {  // "is there a (small) green triangle?"
      ObjectDesc desc;
      bool with_size = d.coin();
      if (answer == "yes") {
        desc = full_desc(objs[order[0]]);
      } else {
        // A minimal edit of a present object: another colour, shape or (when said) size,
        // such that no object matches.
        std::vector<ObjectDesc> edits;
        for (size_t i : order) {
          ObjectDesc base = full_desc(objs[i]);
          for (int c = 0; c < kSceneColours; ++c) edits.push_back({base.shape, c, base.size});
          for (int s = 0; s < kSceneShapes; ++s) edits.push_back({s, base.colour, base.size});
          if (with_size) edits.push_back({base.shape, base.colour, 1 - base.size});
        }
        d.shuffle(edits);
        bool found = false;
        for (ObjectDesc e : edits) {
          if (!with_size) e.size = -1;
          bool present = std::any_of(objs.begin(), objs.end(), [&](const SceneObject& o) { return e.matches(o); });
          if (!present && vocab.allowed(split, e.shape, e.colour)) {
            desc = e, found = true;
            break;
          }
        }
        if (!found) return false;
      }
      if (!with_size) desc.size = -1;
      q.text = fmt::format("is there {}?", desc_text(desc));
      return true;
    }
    case QuestionType::relation: {  // "is the red circle left of the blue square?"
      std::vector<std::string> names(objs.size());
      for (size_t i = 0; i < objs.size(); ++i) names[i] = unique_name(objs, i, {true, true});
      for (size_t i : order)
        for (size_t j : order) {
          if (i == j) continue;
          const std::string &a = names[i], &b = names[j];
          if (a.empty() || b.empty()) continue;
          std::vector<Relation> clear;
          for (Relation r : {Relation::left_of, Relation::right_of, Relation::above, Relation::below})
            if (relation_holds(r, objs[i], objs[j])) clear.push_back(r);
          if (clear.empty()) continue;
          Relation r = clear[d.below(static_cast<int>(clear.size()))];
          if (answer == "no") r = opposite(r);
          const char* words = d.coin() ? relation_words(r) : there_is_words(r);
          q.text = fmt::format("is {} {} {}?", a, words, b);
          return true;
        }
      return false;
    }
    case QuestionType::place: {  // "where is the red circle?" → "top left"
      const std::vector<std::string> cells = question_answers(QuestionType::place);
      for (size_t i : order) {
        const SceneObject& o = objs[i];
        // Only objects clearly inside their cell: a centre near a cut has no honest answer.
        if (!clear_of_cuts(o, kPlaceQuestionMargin) || cells[3 * place_row(o) + place_col(o)] != answer) continue;
        std::string name = unique_name(objs, i, {true, true});
        if (name.empty()) continue;
        q.text = d.coin() ? fmt::format("where is {}?", name) : fmt::format("where in the image is {}?", name);
        return true;
      }
      return false;
    }
  }
  return false;
}

// Answer counts per split and question type; a question is asked only with an answer at
// most kSlack above the rarest one, so every type's answers stay uniform.
constexpr int kSlack = 2;

struct AnswerBalance {
  std::vector<std::string> answers[kQuestionTypes];
  std::vector<std::vector<int64_t>> counts[3];  // [split][type][answer]
  AnswerBalance() {
    for (int t = 0; t < kQuestionTypes; ++t) answers[t] = question_answers(static_cast<QuestionType>(t));
    for (auto& per_split : counts)
      for (int t = 0; t < kQuestionTypes; ++t) per_split.emplace_back(answers[t].size(), 0);
  }
};

std::vector<SceneQuestion> make_questions(const std::vector<SceneObject>& objs, Split split, const Vocabulary& vocab,
                                          AnswerBalance& balance, Draws& d) {
  std::vector<SceneQuestion> questions;
  for (int t = 0; t < kQuestionTypes; ++t) {
    const QuestionType type = static_cast<QuestionType>(t);
    const std::vector<std::string>& answers = balance.answers[t];
    std::vector<int64_t>& counts = balance.counts[static_cast<int>(split)][t];
    // Try answers from the rarest up (ties in random order), within the slack.
    std::vector<size_t> order(answers.size());
    std::iota(order.begin(), order.end(), size_t{0});
    d.shuffle(order);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return counts[a] < counts[b]; });
    const int64_t rarest = counts[order[0]];
    for (size_t a : order) {
      if (counts[a] > rarest + kSlack) break;
      SceneQuestion q;
      if (make_question(type, answers[a], objs, split, vocab, d, q)) {
        questions.push_back(q);
        ++counts[a];
        break;
      }
    }
  }
  return questions;
}

// A key identifying the picture (objects sorted, positions to 1/1000 of the side).
std::string scene_key(std::vector<SceneObject> objs) {
  std::sort(objs.begin(), objs.end(), [](const SceneObject& a, const SceneObject& b) { return a.x < b.x; });
  std::string key;
  for (const SceneObject& o : objs)
    key += fmt::format("{}{}{}:{}:{};", o.shape, o.colour, o.size, std::lround(o.x * 1000), std::lround(o.y * 1000));
  return key;
}

}  // namespace

SceneDataset generate_scenes(const SceneConfig& config) {
  MMG_CHECK(config.n >= 1, "generate_scenes: n = {} must be at least 1", config.n);
  MMG_CHECK(config.image_size >= 16, "generate_scenes: image size {} is too small (min 16)", config.image_size);
  MMG_CHECK(config.val_fraction >= 0 && config.test_fraction >= 0 && config.val_fraction + config.test_fraction < 1,
            "generate_scenes: val fraction {} and test fraction {} must be non-negative and sum below 1",
            config.val_fraction, config.test_fraction);
  MMG_CHECK(config.min_objects >= 1 && config.min_objects <= config.max_objects && config.max_objects <= kMaxCount,
            "generate_scenes: objects per scene {}..{} must lie within 1..4", config.min_objects, config.max_objects);
  for (auto [s, c] : config.held_out)
    MMG_CHECK(s >= 0 && s < kSceneShapes && c >= 0 && c < kSceneColours,
              "generate_scenes: held-out combination (shape {}, colour {}) is out of range", s, c);
  MMG_CHECK(static_cast<int>(config.held_out.size()) < kSceneShapes * kSceneColours,
            "generate_scenes: {} held-out combinations leave none for training", config.held_out.size());

  const int64_t n_test = std::llround(config.n * config.test_fraction);
  const int64_t n_val = std::llround(config.n * config.val_fraction);
  const int64_t n_train = config.n - n_val - n_test;
  const Vocabulary vocab{config.held_out};

  SceneDataset ds;
  ds.config = config;
  ds.scenes.resize(config.n);
  std::unordered_set<std::string> seen_pictures;
  std::unordered_set<std::string> gallery[3];  // captions[0] texts per split (val, test kept unique)
  AnswerBalance balance;
  const int k_range = config.max_objects - config.min_objects + 1;

  for (int64_t i = 0; i < config.n; ++i) {
    Scene& sc = ds.scenes[i];
    sc.index = i;
    sc.split = i < n_train ? Split::train : i < n_train + n_val ? Split::val : Split::test;
    Draws d(config.seed, static_cast<uint64_t>(i));
    int k = config.min_objects + d.below(k_range);
    const bool unique_gallery = sc.split != Split::train;
    std::vector<CaptionSpec> specs;
    std::string picture, key;
    for (int attempt = 0;; ++attempt) {
      MMG_CHECK(attempt < 20000,
                "generate_scenes: cannot find a new scene with a unique caption for scene {} ({} split); "
                "lower n or the val/test fractions",
                i, split_name(sc.split));
      // A split runs out of distinct one-object captions (9 places × 80 objects) first:
      // after a few tries, draw another object count.
      if (attempt > 0 && attempt % 20 == 0) k = config.min_objects + d.below(k_range);
      sc.objects = draw_objects(k, sc.split, vocab, d);
      picture = scene_key(sc.objects);
      if (seen_pictures.count(picture)) continue;
      specs = make_caption_specs(sc.objects, d);
      key = gallery_key(specs[0]);
      if (unique_gallery && gallery[static_cast<int>(sc.split)].count(key)) continue;
      break;
    }
    seen_pictures.insert(std::move(picture));
    if (unique_gallery) gallery[static_cast<int>(sc.split)].insert(std::move(key));
    sc.captions = make_captions(specs, sc.objects, sc.split, vocab, d);
    sc.held_out = std::any_of(sc.objects.begin(), sc.objects.end(),
                              [&](const SceneObject& o) { return vocab.is_held_out(o.shape, o.colour); });
    sc.questions = make_questions(sc.objects, sc.split, vocab, balance, d);
  }

  if (config.render)
    cpu::parallel_for(config.n, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ds.scenes[i].image = render_scene(ds.scenes[i].objects, config.image_size);
    });
  return ds;
}

}  // namespace mmg
