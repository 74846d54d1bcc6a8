// The main job, shortened: `mmg demo --quick` (preset demo-quick) trains the demo's model on
// generated scenes for under a minute on 2 cores (400 steps of 64); retrieval and VQA (counting
// first) must be well above chance on the held-out test split, and the run must write the files
// a person looks at.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "core/io/atomic_file.h"
#include "core/mmgrad.h"
#include "train/run.h"

using namespace mmg;
namespace fs = std::filesystem;

TEST_CASE("demo-quick: retrieval and VQA well above chance on held-out scenes, and the run's files written") {
  const std::string out = (fs::temp_directory_path() / "mmg_demo_quick_test").string();
  fs::remove_all(out);
  TrainConfig config = TrainConfig::preset("demo-quick");
  TrainRunOptions options;
  options.out = out;
  options.verbose = false;
  EvalReport report = run_training(config, options);
  const nlohmann::json& m = report.metrics;
  MESSAGE("demo-quick metrics: " << m.dump());

  // Retrieval over a gallery of 300 captions: chance R@1 = 1/300, R@5 = 5/300. Over seeds 0-2
  // the 400 steps reached R@1 0.38 to 0.54, R@5 0.70 to 0.91 and held-out R@1 0.43 to 0.71
  // (chance 1/93). The bounds say "learned to retrieve" with room for other draws and other
  // rounding (another CPU's vector width): about a third of the lowest value measured.
  CHECK(m["gallery_size"].get<int64_t>() == 300);
  auto chance = [&](const char* key) { return m[std::string(key) + "_chance"].get<double>(); };
  for (const char* key : {"retrieval_i2t_r1", "retrieval_t2i_r1"})
    CHECK_MESSAGE(m[key].get<double>() > 40 * chance(key), key);  // > 0.13
  for (const char* key : {"retrieval_i2t_r5", "retrieval_t2i_r5"})
    CHECK_MESSAGE(m[key].get<double>() > 15 * chance(key), key);  // > 0.25
  for (const char* key : {"retrieval_held_out_i2t_r1", "retrieval_held_out_t2i_r1"})
    CHECK_MESSAGE(m[key].get<double>() > 12 * chance(key), key);  // > 0.13
  // The caption-vs-edit scores (592 pairs) are within a few standard deviations of a coin after 400
  // steps; the full demo reports them. Here: present and in range.
  // Per kind of edit too; the overall rate is their pair-weighted mean, so it lies between them.
  for (const std::string key : {"negatives_itc_accuracy", "negatives_itm_accuracy"}) {
    CAPTURE(key);
    CHECK(m[key].get<double>() >= 0.0);
    CHECK(m[key].get<double>() <= 1.0);
    // The gallery captions' edits: colours swapped and relations flipped (count edits belong
    // to the counting captions, which are not gallery captions).
    CHECK(m.contains(key + "_colour"));
    CHECK(m.contains(key + "_relation"));
    double lo = 1, hi = 0;
    for (const char* kind : {"colour", "count", "relation"}) {
      CAPTURE(kind);
      if (!m.contains(key + "_" + kind)) continue;
      const double v = m[key + "_" + kind].get<double>();
      CHECK(m[key + "_" + kind + "_chance"].get<double>() == 0.5);
      lo = std::min(lo, v), hi = std::max(hi, v);
    }
    CHECK(m[key].get<double>() >= lo - 1e-12);
    CHECK(m[key].get<double>() <= hi + 1e-12);
  }
  // VQA: the short run leaves the answer-prior plateau and learns to count first. Over seeds 0-2:
  // VQA 0.37 to 0.41 against a question-only 0.29, counting 0.72 to 0.81 against 0.24 (2898 and
  // 459 questions; one standard error 0.01 and 0.02); with the causal fusion drawn at 1/sqrt(64),
  // seed 0 on an AVX2 machine: VQA 0.43, counting 0.82 to 0.86, R@1 0.47 to 0.50 both ways over
  // three builds that round differently (2026-12-07). The other types are still at chance here;
  // the full demo reports them.
  CHECK(m["vqa_accuracy"].get<double>() > m["vqa_blind_accuracy"].get<double>() + 0.04);
  CHECK(m["vqa_accuracy_count"].get<double>() > m["vqa_blind_accuracy_count"].get<double>() + 0.25);
  CHECK(m["vqa_accuracy"].get<double>() <= 1.0);
  CHECK(m["vqa_blind_accuracy"].get<double>() < m["vqa_accuracy_chance"].get<double>() + 0.05);  // balanced answers
  for (const char* type : {"colour", "shape", "count", "exist", "relation", "place"}) {
    CAPTURE(type);
    CHECK(m.contains(std::string("vqa_accuracy_") + type));
    CHECK(m.contains(std::string("vqa_blind_accuracy_") + type));
  }
  // What a person opens.
  for (const char* f : {"metrics.json", "metrics.jsonl", "loss_curve.png", "attention/attention_00.png",
                        "checkpoints/latest", "config.json", "vocab.txt"})
    CHECK_MESSAGE(fs::exists(out + "/" + f), f);
  const nlohmann::json saved = nlohmann::json::parse(read_file(out + "/metrics.json"));
  for (const char* key : {"vqa_accuracy", "vqa_blind_accuracy", "retrieval_i2t_r1", "retrieval_t2i_r1",
                          "retrieval_i2t_r5", "retrieval_t2i_r5", "gallery_size", "train_seconds", "device"})
    CHECK_MESSAGE(saved.contains(key), key);
}
