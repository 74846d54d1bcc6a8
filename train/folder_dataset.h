// Image–text folders a user brings: a directory of pictures (PNG, JPEG, BMP — whatever
// train/image.h decodes) and one file that describes them, captions.jsonl or captions.tsv.
//
// captions.jsonl: one JSON object per line (empty lines are skipped):
//   "image"      the picture's path relative to the folder (required)
//   "caption"    a string, and/or "captions": a list of strings
//   "question" + "answer" (+ "type"), and/or "questions": [{"question", "answer", "type"}]
//   "label"      a class name (a string); class ids follow the sorted order of the names
//   "split"      "train", "val" or "test"
// captions.tsv: a header line naming columns among image, caption, question, answer, type,
// label, split (image required), then one tab-separated row per line; an empty field says
// nothing.
//
// Several lines may name the same image: they are merged into one sample (captions and
// questions appended; a label or split given twice must agree). An image without a split
// is assigned one by hashing its name with the seed — the same image always lands in the
// same split for a given seed, whatever the order of the lines or the other images.
// Unknown JSON keys and TSV columns are errors (a misspelt "captoin" would otherwise be lost
// without a word). Every error names the file and line at fault, e.g.
//   photos/captions.jsonl:7: image 'cats/a.png' not found
#pragma once
#include <cstdint>
#include <string>

#include "train/dataset.h"

namespace mmg {

struct FolderOptions {
  int image_size = 64;  // resize_and_center_crop to this square; 0 keeps the decoded size
  int channels = 3;     // 1 (grey), 3 (RGB) or 4 (RGBA)
  uint64_t seed = 0;    // for the split of images that do not name one
  double val_fraction = 0.1, test_fraction = 0.1;
};

Dataset load_image_text_folder(const std::string& dir, const FolderOptions& options = {});

// The split an image without a "split" field goes to: u = philox(seed, FNV-1a(name)) in
// [0, 1) is compared with the fractions (test below test_fraction, then val, then train).
std::string assign_split(const std::string& image_name, uint64_t seed, double val_fraction, double test_fraction);

}  // namespace mmg
