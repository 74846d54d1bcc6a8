// Fashion scenes: the generated-scenes idea (train/scenes.h) with real pictures. Each scene
// is a 56×56 grey canvas holding 2–4 Fashion-MNIST items, each scaled to 20–28 pixels and
// placed in its own cell of a 2×2 grid (with a random offset inside the cell), combined by
// the brighter pixel (max) on a black background. From the items we write
//   captions   captions[0], the gallery caption, names every item with its place, left
//              column first, top before bottom:
//                "a sneaker in the top left, a bag in the bottom left and a shirt in the top right"
//              then a count caption ("three items, including a bag and a shirt") and up to
//              two relation captions ("a sneaker left of a shirt",
//              "there is a bag below a sneaker");
//   negatives  for each caption, minimal edits that make it false: an item's class
//              swapped for another, left/right (or top/bottom) flipped, the count changed;
//   questions  at most one per type, answers balanced within each type by rejection:
//                class     "what is left of the bag?", "what is in the top right?"  -> "shirt"
//                count     "how many items are there?"                               -> "3"
//                exist     "is there a sneaker?"                                     -> yes / no
//                relation  "is the shirt left of the bag?"                           -> yes / no
// Relations are stated only when they are clear: "a left of b" holds when b's centre is at
// least a quarter of the canvas to the right of a's. With item sides above a quarter of the
// canvas, items in different grid columns always are, and items in one column never are.
//
// Split hygiene: train scenes use only items of the fashion train split, val scenes only
// val items, test scenes only test items (Sample::source lists them, and `layouts` gives
// them with their positions). captions[0] is unique within the val and the test split, so
// a retrieval gallery has one right answer per query. Everything is deterministic from the
// seed: scene i (counting train, val, test in order) draws from its own Philox stream.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/dataset.h"

namespace mmg {

struct FashionScenesConfig {
  int64_t n_train = 5000, n_val = 500, n_test = 1000;
  uint64_t seed = 0;
  int canvas = 56;                             // pixels per side
  int min_items = 2, max_items = 4;            // items per scene, within 1..4 (the grid's cells)
  int min_item_size = 20, max_item_size = 28;  // an item's side in pixels, within (canvas/4, canvas/2]
};

// One item on the canvas.
struct PlacedItem {
  int64_t item = 0;            // index into the fashion split of the scene's own split
  int label = 0;               // its class
  int x = 0, y = 0, size = 0;  // top-left corner and side, pixels
  int row = 0, col = 0;        // its grid cell: 0 top / 1 bottom, 0 left / 1 right
};

// The items of every scene: train[i] belongs to the returned dataset's train[i], and so on.
struct FashionSceneLayouts {
  std::vector<std::vector<PlacedItem>> train, val, test;
};

// Builds the scenes from a loaded Fashion-MNIST data set (load_fashion_mnist, or any data set
// of 1-channel labelled pictures with class names). The result's samples have label −1 and
// source "fashion scene 17: test #12, #345, #9" (the items, in layout order).
Dataset generate_fashion_scenes(const Dataset& fashion, const FashionScenesConfig& config,
                                FashionSceneLayouts* layouts = nullptr);

// The clear relations: a's centre at least canvas/4 left of (above) b's.
bool fashion_left_of(const PlacedItem& a, const PlacedItem& b, int canvas);
bool fashion_above(const PlacedItem& a, const PlacedItem& b, int canvas);

// The question types and their possible answers; `class_names` gives the class answers and
// the item range the count answers.
inline const std::vector<std::string> kFashionQuestionTypes = {"class", "count", "exist", "relation"};
std::vector<std::string> fashion_question_answers(const std::string& type, const std::vector<std::string>& class_names,
                                                  int min_items, int max_items);

}  // namespace mmg
