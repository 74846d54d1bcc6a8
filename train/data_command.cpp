// `mmg data scenes`: the generated scenes as files a person (or another program) can read.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "train/commands.h"
#include "train/image.h"
#include "train/scenes.h"

namespace mmg {

namespace {

using json = nlohmann::ordered_json;  // keys in the order written: image, split, ...

json scene_json(const Scene& sc, const std::string& image_file) {
  json objects = json::array();
  for (const SceneObject& o : sc.objects)
    objects.push_back({{"shape", scene_shape_name(o.shape)},
                       {"colour", scene_colour_name(o.colour)},
                       {"size", scene_size_name(o.size)},
                       {"x", o.x},
                       {"y", o.y}});
  // Captions as plain strings (what other readers of captions.jsonl expect), and beside
  // them, caption by caption, the negatives.
  json captions = json::array(), negatives = json::array();
  for (const SceneCaption& c : sc.captions) {
    json negs = json::array();
    for (const CaptionNegative& n : c.negatives) negs.push_back({{"text", n.text}, {"edit", edit_name(n.edit)}});
    captions.push_back(c.text);
    negatives.push_back(negs);
  }
  json questions = json::array();
  for (const SceneQuestion& q : sc.questions)
    questions.push_back({{"question", q.text}, {"answer", q.answer}, {"type", question_type_name(q.type)}});
  return {{"image", image_file}, {"split", split_name(sc.split)}, {"held_out", sc.held_out}, {"objects", objects},
          {"captions", captions},  {"negatives", negatives},       {"questions", questions}};
}

json dataset_json(const SceneConfig& config, const SceneDataset& ds) {
  json shapes = json::array(), colours = json::array(), held_out = json::array(), answers = json::object();
  for (int s = 0; s < kSceneShapes; ++s) shapes.push_back(scene_shape_name(s));
  for (int c = 0; c < kSceneColours; ++c) colours.push_back(scene_colour_name(c));
  for (auto [s, c] : config.held_out)
    held_out.push_back(fmt::format("{} {}", scene_colour_name(c), scene_shape_name(s)));
  for (int t = 0; t < kQuestionTypes; ++t)
    answers[question_type_name(static_cast<QuestionType>(t))] = question_answers(static_cast<QuestionType>(t));
  return {{"generator", "mmg data scenes"},
          {"n", config.n},
          {"seed", config.seed},
          {"image_size", config.image_size},
          {"splits",
           {{"train", ds.split(Split::train).size()},
            {"val", ds.split(Split::val).size()},
            {"test", ds.split(Split::test).size()}}},
          {"shapes", shapes},
          {"colours", colours},
          {"held_out_combinations", held_out},
          {"answers", answers}};
}

}  // namespace

int run_data_scenes(const DataScenesOptions& options) {
  MMG_CHECK(!options.out.empty(), "data scenes: --out DIR is required");
  auto t0 = std::chrono::steady_clock::now();
  SceneConfig config;
  config.n = options.n;
  config.seed = options.seed;
  config.image_size = options.size;
  SceneDataset ds = generate_scenes(config);

  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(options.out) / "images", ec);
  MMG_CHECK(!ec, "data scenes: cannot create {}: {}", (fs::path(options.out) / "images").string(), ec.message());

  std::string lines;
  for (const Scene& sc : ds.scenes) {
    std::string file = fmt::format("images/{:06d}.png", sc.index);
    save_png(sc.image, (fs::path(options.out) / file).string());
    lines += scene_json(sc, file).dump() + "\n";
    if (options.verbose && ((sc.index + 1) % 1000 == 0 || sc.index + 1 == config.n)) {
      std::fprintf(stderr, "\rdata scenes: %lld / %lld images written", static_cast<long long>(sc.index + 1),
                   static_cast<long long>(config.n));
      std::fflush(stderr);
    }
  }
  write_file_atomic((fs::path(options.out) / "captions.jsonl").string(), lines);
  write_file_atomic((fs::path(options.out) / "dataset.json").string(), dataset_json(config, ds).dump(2) + "\n");
  if (!options.verbose) return 0;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "\n");
  std::printf("wrote %lld scenes (%zu train, %zu val, %zu test) of %dx%d pixels to %s in %.1f s\n",
              static_cast<long long>(config.n), ds.split(Split::train).size(), ds.split(Split::val).size(),
              ds.split(Split::test).size(), config.image_size, config.image_size, options.out.c_str(), secs);
  return 0;
}

}  // namespace mmg
