#include "train/data_sources.h"

#include "core/error.h"

namespace mmg {

Dataset scenes_to_dataset(const SceneDataset& scenes) {
  Dataset d;
  d.name = "scenes";
  for (const Scene& scene : scenes.scenes) {
    Sample s;
    s.image = scene.image;
    for (const SceneCaption& c : scene.captions) {
      s.captions.push_back(c.text);
      std::vector<std::string> negatives;
      for (const CaptionNegative& n : c.negatives) negatives.push_back(n.text);
      s.negatives.push_back(std::move(negatives));
    }
    for (const SceneQuestion& q : scene.questions) s.questions.push_back({q.text, q.answer, question_type_name(q.type)});
    s.held_out = scene.held_out;
    s.source = "scene " + std::to_string(scene.index);
    (scene.split == Split::train ? d.train : scene.split == Split::val ? d.val : d.test).push_back(std::move(s));
  }
  return d;
}

Dataset load_dataset(const DataConfig& config) {
  if (config.source == "scenes") {
    SceneConfig sc;
    sc.n = config.n;
    sc.seed = static_cast<uint64_t>(config.seed);
    sc.image_size = static_cast<int>(config.image_size);
    return scenes_to_dataset(generate_scenes(sc));
  }
  MMG_FAIL("load_dataset: unknown source '{}'", config.source);
}

}  // namespace mmg
