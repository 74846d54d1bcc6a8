#include "train/data_sources.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "train/fashion_mnist.h"
#include "train/fashion_scenes.h"
#include "train/folder_dataset.h"

namespace mmg {

Dataset scenes_to_dataset(const SceneDataset& scenes) {
  Dataset d;
  d.name = "scenes";
  for (const Scene& scene : scenes.scenes) {
    Sample s;
    s.image = scene.image;
    for (const SceneCaption& c : scene.captions) {
      s.captions.push_back(c.text);
      std::vector<std::string> negatives, edits;
      for (const CaptionNegative& n : c.negatives) {
        negatives.push_back(n.text);
        edits.push_back(edit_name(n.edit));
      }
      s.negatives.push_back(std::move(negatives));
      s.negative_edits.push_back(std::move(edits));
    }
    for (const SceneQuestion& q : scene.questions) s.questions.push_back({q.text, q.answer, question_type_name(q.type)});
    s.held_out = scene.held_out;
    s.source = "scene " + std::to_string(scene.index);
    (scene.split == Split::train ? d.train : scene.split == Split::val ? d.val : d.test).push_back(std::move(s));
  }
  return d;
}

namespace {

Dataset load_source(const DataConfig& config) {
  if (config.source == "scenes") {
    SceneConfig sc;
    sc.n = config.n;
    sc.seed = static_cast<uint64_t>(config.seed);
    sc.image_size = static_cast<int>(config.image_size);
    return scenes_to_dataset(generate_scenes(sc));
  }
  const std::string fashion_dir = config.path.empty() ? kFashionMnistDir : config.path;
  if (config.source == "fashion-mnist" || config.source == "fashion-scenes") {
    MMG_CHECK(fashion_mnist_available(fashion_dir),
              "load_dataset: source '{}' needs Fashion-MNIST in {} (Debian package dataset-fashion-mnist; "
              "scripts/install-deps.sh installs it)", config.source, fashion_dir);
    Dataset fashion = load_fashion_mnist(fashion_dir);
    if (config.source == "fashion-mnist") return fashion;
    FashionScenesConfig fc;
    fc.n_train = config.n;
    fc.n_val = std::max<int64_t>(1, config.n / 10);
    fc.n_test = std::max<int64_t>(config.gallery, config.n / 10);
    fc.seed = static_cast<uint64_t>(config.seed);
    return generate_fashion_scenes(fashion, fc);
  }
  if (config.source == "folder") {
    FolderOptions fo;
    fo.image_size = static_cast<int>(config.image_size);
    fo.seed = static_cast<uint64_t>(config.seed);
    return load_image_text_folder(config.path, fo);
  }
  MMG_FAIL("load_dataset: unknown source '{}'", config.source);
}

}  // namespace

namespace {

// Every question type that `key` names must be one the data's questions have.
void check_question_types_exist(const Dataset& data, const std::vector<std::string>& types, const char* key) {
  std::set<std::string> present;
  for (const std::vector<Sample>* split : {&data.train, &data.val, &data.test})
    for (const Sample& s : *split)
      for (const QuestionAnswer& q : s.questions) present.insert(q.type);
  for (const std::string& t : types)
    MMG_CHECK(present.count(t), "load_dataset ({}): {} names '{}', which no question has (types: {})", data.name, key,
              t, present.empty() ? std::string("none") : fmt::format("{}", fmt::join(present, ", ")));
}

}  // namespace

void keep_question_types(Dataset& data, const std::vector<std::string>& types) {
  if (types.empty()) return;
  check_question_types_exist(data, types, "question_types");
  const std::set<std::string> keep(types.begin(), types.end());
  for (std::vector<Sample>* split : {&data.train, &data.val, &data.test})
    for (Sample& s : *split)
      std::erase_if(s.questions, [&](const QuestionAnswer& q) { return !keep.count(q.type); });
}

Dataset load_dataset(const DataConfig& config) {
  Dataset data = load_source(config);
  keep_question_types(data, config.question_types);
  std::vector<std::string> weighted;
  for (const auto& [type, weight] : config.question_weights) weighted.push_back(type);
  check_question_types_exist(data, weighted, "question_weights");
  return data;
}

}  // namespace mmg
