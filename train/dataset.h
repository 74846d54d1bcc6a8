// Image–text data sets as the trainer sees them: every source (generated scenes, fashion
// scenes, Fashion-MNIST, a folder of the user's images) becomes the same in-memory Dataset.
//
//   Sample   one image (decoded, 8-bit, at the size the source gives it) with what is known
//            about it: captions (captions[0] is the one a retrieval gallery uses), minimal-edit
//            negatives per caption, questions with answers and a type, a class label.
//   Dataset  three splits of samples, the names of the classes, and the source's name.
//
// The trainer tokenizes the texts and turns images into tensors itself (train/batching.h), so a
// source only has to decode and describe. Fields a source does not know stay empty / -1.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/image.h"

namespace mmg {

struct QuestionAnswer {
  std::string question, answer;
  std::string type;  // "colour", "count", ... (per-type accuracy); "" when the source has none
};

struct Sample {
  Image image;
  std::vector<std::string> captions;                // captions[0]: the gallery caption
  std::vector<std::vector<std::string>> negatives;  // negatives[i]: false edits of captions[i] (may be empty)
  // negative_edits[i][j]: what negatives[i][j] changed ("colour", "count", "relation"), for
  // accuracy per kind of edit; empty when the source does not say.
  std::vector<std::vector<std::string>> negative_edits;
  std::vector<QuestionAnswer> questions;
  int64_t label = -1;     // class id, -1 when unlabelled
  bool held_out = false;  // contains a combination kept out of training (scenes)
  std::string source;     // where it came from, for messages: "scene 17", "photos/cat.png"
};

struct Dataset {
  std::string name;  // "scenes", "fashion-scenes", "fashion-mnist", or the folder
  std::vector<Sample> train, val, test;
  std::vector<std::string> class_names;  // label i is class_names[i]; empty when unlabelled

  const std::vector<Sample>& split(const std::string& name) const;  // "train" | "val" | "test"
};

}  // namespace mmg
