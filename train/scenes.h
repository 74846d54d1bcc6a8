// Generated scenes: the built-in image–text data set of the demo.
//
// Each scene is a small RGB picture (32×32, or 64×64) of 1–4 flat objects on a dark
// background: a shape (circle, square, triangle, diamond, cross), one of eight named
// colours and one of two sizes, placed without overlap. From the objects we write
//   captions   in several phrasings, with spatial relations and counts
//              ("a small red circle left of a large blue square",
//               "there is a blue square to the right of a small red circle",
//               "three objects from left to right: ...", "two objects, including ...");
//   negatives  for each caption: minimal edits that make it false — colours swapped,
//              left/right (or above/below) flipped, the count changed by one — so a model
//              that only counts words cannot tell them apart;
//   questions  with answers, of six types: colour, shape, count, existence (yes/no),
//              relation (yes/no) and place (one of 9 grid cells). Answers are balanced within each type by rejection, so a
//              model that ignores the image scores chance.
// Compositional generalisation: a few colour+shape combinations never appear in the train
// split (not in images, not in any text); scenes of the other splits that contain one are
// flagged `held_out` so they can be reported separately.
//
// Everything is deterministic from the seed: scene i draws from its own Philox stream
// (key = seed, counters i·2^32 + k), and the few choices that depend on earlier scenes
// (unique captions, balanced answers) are made in index order.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "train/image.h"

namespace mmg {

// ---- the vocabulary of the scenes ----

inline constexpr int kSceneShapes = 5, kSceneColours = 8, kSceneSizes = 2;
const char* scene_shape_name(int shape);    // "circle", "square", "triangle", "diamond", "cross"
const char* scene_colour_name(int colour);  // "red", "yellow", "green", "cyan", "blue", "purple", "pink", "white"
const char* scene_size_name(int size);      // "small", "large"
Rgb scene_colour_rgb(int colour);
Rgb scene_background_rgb();

enum class Split { train, val, test };
const char* split_name(Split split);  // "train", "val", "test"

// ---- objects, captions, questions ----

struct SceneObject {
  int shape = 0, colour = 0, size = 0;
  double x = 0.5, y = 0.5;  // centre, as a fraction of the image side (y grows downwards)
  double radius = 0.1;      // radius of the object's bounding circle, same unit
};

// How object a lies relative to object b. "left of" holds when a's centre is at least
// kClearSeparation (a fraction of the image side) left of b's, and so on: relations that
// are not clear hold neither way, and no caption or question states them.
enum class Relation { left_of, right_of, above, below };
inline constexpr double kClearSeparation = 0.1;
const char* relation_words(Relation r);  // "left of", "right of", "above", "below"
Relation opposite(Relation r);
bool relation_holds(Relation r, const SceneObject& a, const SceneObject& b);

// An object as a caption names it: "a small red circle". size < 0: the size is not said.
struct ObjectDesc {
  int shape = 0, colour = 0, size = -1;
  bool matches(const SceneObject& o) const;
  bool operator==(const ObjectDesc&) const = default;
};

enum class CaptionForm {
  place,         // "a small red circle in the top left"            (one-object scenes)
  relation,      // "a small red circle left of a large blue square"
  there_is,      // "there is a large blue square to the right of a small red circle"
  count_list,    // "three objects, including a small red circle and a blue square" (1 or 2
                 // objects named, so a count changed by one is not visible in the words);
                 // "one object: a red circle"
  ordered_list,  // "three objects from left to right: A, B and C" (or right to left)
};

// A caption as data; caption_text() writes it and caption_true() checks it on a scene.
struct CaptionSpec {
  CaptionForm form = CaptionForm::place;
  std::vector<ObjectDesc> objects;        // in the order the caption names them
  Relation relation = Relation::left_of;  // relation, there_is: objects[0] <relation> objects[1]
  int row = 1, col = 1;                   // place: 0 top / 1 middle / 2 bottom, 0 left / 1 centre / 2 right
  int count = 1;                          // count_list, ordered_list: the number stated
  bool left_to_right = true;              // ordered_list: the order the objects are listed in
  bool operator==(const CaptionSpec&) const = default;
};

std::string caption_text(const CaptionSpec& spec);
// Whether the caption describes the scene: the objects it names exist (distinct ones),
// with the stated relation / place / order, and a stated count equals the object count.
bool caption_true(const CaptionSpec& spec, const std::vector<SceneObject>& objects);
// The place grid cell of an object: row and column by thirds of the image (0.4 / 0.6 cuts).
int place_row(const SceneObject& o);
int place_col(const SceneObject& o);

// A minimal edit of a caption that makes it false for its scene.
enum class EditKind { colour, relation, count };
const char* edit_name(EditKind e);  // "colour", "relation", "count"

struct CaptionNegative {
  EditKind edit = EditKind::colour;
  CaptionSpec spec;
  std::string text;
};

struct SceneCaption {
  CaptionSpec spec;
  std::string text;
  std::vector<CaptionNegative> negatives;  // at most one per edit kind
};

// place: "where is the red circle?" → one of the 9 cells of the captions' 3×3 place grid ("top
// left", ..., "centre", ..., "bottom right"): where one named object is, a first-order target
// that a relation question ("is A left of B?", which compares two such places) builds on.
enum class QuestionType { colour, shape, count, exist, relation, place };
inline constexpr int kQuestionTypes = 6;
// "colour", "shape", "count", "exist", "relation", "place"
const char* question_type_name(QuestionType t);
// Every possible answer of a type, e.g. {"yes", "no"}; the answer of a question is one of these.
std::vector<std::string> question_answers(QuestionType t);

struct SceneQuestion {
  QuestionType type = QuestionType::colour;
  std::string text, answer;
};

struct Scene {
  int64_t index = 0;
  Split split = Split::train;
  std::vector<SceneObject> objects;
  // captions[0] is the scene's full description (every object, with sizes), unique within
  // the val and test splits (also after normalising its direction: "B right of A" counts
  // as "A left of B"): the one a retrieval gallery uses.
  std::vector<SceneCaption> captions;
  std::vector<SceneQuestion> questions;  // at most one per type
  bool held_out = false;                 // contains a held-out colour+shape combination
  Image image;                           // when SceneConfig::render is set
};

struct SceneConfig {
  int64_t n = 1000;  // scenes in all splits together
  uint64_t seed = 0;
  int image_size = 32;  // pixels per side (32 or 64 suggested; any size from 16 works)
  // Split sizes. A val or test split of more than about 2800 scenes runs out of distinct
  // one-object first captions (9 places × 80 objects); it then holds fewer one-object
  // scenes and, answers being balanced, fewer count questions.
  double val_fraction = 0.1, test_fraction = 0.1;
  int min_objects = 1, max_objects = 4;
  // (shape, colour) pairs kept out of the train split.
  std::vector<std::pair<int, int>> held_out = default_held_out();
  bool render = true;  // render images (else only the descriptions; see render_scene)

  // Five combinations, one per shape and each with a different colour.
  static std::vector<std::pair<int, int>> default_held_out();
};

struct SceneDataset {
  SceneConfig config;
  std::vector<Scene> scenes;  // train first, then val, then test (by index)
  std::vector<const Scene*> split(Split s) const;
};

SceneDataset generate_scenes(const SceneConfig& config);

// Anti-aliased rendering: each pixel's colour is the background blended with each object
// by the fraction of a 4×4 grid of sample points inside the object.
Image render_scene(const std::vector<SceneObject>& objects, int image_size);
// Whether point (u, v) — relative to the object's centre, in units of its radius, v down —
// is inside the shape. Every shape fits in the unit disc (the object's "radius" is that of
// its bounding circle, which placement keeps apart):
//   circle    u² + v² ≤ 1
//   square    |u| ≤ 0.7 and |v| ≤ 0.7
//   triangle  apex up, corners (0, −1), (±√3/2, 1/2)
//   diamond   |u| + |v| ≤ 1
//   cross     two bars |u| ≤ 0.25, |v| ≤ 0.95 and |v| ≤ 0.25, |u| ≤ 0.95
bool inside_shape(int shape, double u, double v);

}  // namespace mmg
