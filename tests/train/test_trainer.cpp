// The trainer: run configs (presets, JSON, errors), batches (deterministic per step, one caption
// and one question per image), answers, the blind baseline, checkpoints and exact resumption,
// and the files a run leaves behind.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "core/io/atomic_file.h"
#include "core/mmgrad.h"
#include "train/batching.h"
#include "train/data_sources.h"
#include "train/evaluate.h"
#include "train/run.h"
#include "train/trainer.h"
#include "tests/train/tiny_run.h"

using namespace mmg;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

TrainConfig tiny_config(int64_t steps) { return test::tiny_run_config(steps); }

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mmg_trainer_test_" + name);
  fs::remove_all(p);
  return p.string();
}

bool same_ids(const Tensor& a, const Tensor& b) { return a.to_vector<int64_t>() == b.to_vector<int64_t>(); }

// Every parameter of two models equal, element for element.
void check_same_weights(const nn::Module& a, const nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    CHECK(pa[i].first == pb[i].first);
    CHECK(allclose(pa[i].second, pb[i].second, 0, 0));
  }
}

std::vector<double> losses_of(const std::vector<StepRecord>& history) {
  std::vector<double> v;
  for (const StepRecord& r : history) v.push_back(r.loss);
  return v;
}

}  // namespace

TEST_CASE("demo preset: all four losses, then matching and VQA, matching at weight 2 in both, then contrastive and VQA") {
  TrainConfig c = TrainConfig::preset("demo");
  c.validate();
  REQUIRE(c.phases.size() == 3);
  CHECK(c.phases.back().until == c.steps);
  const auto& first = c.objectives_at(0);
  for (const char* name : {"itc", "itm", "mlm", "vqa"}) CHECK_MESSAGE(first.enabled(name), name);
  CHECK(first.weight("itm") == 2.0);
  CHECK(c.phases[0].until < c.phases[1].until);
  const auto& matching = c.objectives_at(c.phases[0].until);
  for (const char* name : {"itc", "itm", "vqa"}) CHECK_MESSAGE(matching.enabled(name), name);
  CHECK_FALSE(matching.enabled("mlm"));
  CHECK(matching.weight("itm") == 2.0);
  const auto& last = c.objectives_at(c.steps - 1);
  CHECK(last.enabled("itc"));
  CHECK(last.enabled("vqa"));
  CHECK_FALSE(last.enabled("itm"));
  CHECK_FALSE(last.enabled("mlm"));
  CHECK(c.objectives_at(c.phases[1].until).weights == last.weights);
  // The fusion of the demo (and of demo-quick, its short test): 8 heads, GEGLU blocks, causal
  // self-attention, weights drawn at 1/sqrt(64).
  for (const std::string name : {"demo", "demo-quick"}) {
    CAPTURE(name);
    const auto& fusion = TrainConfig::preset(name).model.fusion.fusion;
    CHECK(fusion.heads == 8);
    CHECK(fusion.gated_mlp);
    CHECK(fusion.causal);
    CHECK(fusion.init_std == 0.125);
    CHECK(fusion.qk_init_std == 0);
  }
  const auto& full = TrainConfig::preset("scenes-full").model.fusion.fusion;
  CHECK_FALSE(full.gated_mlp);
  CHECK_FALSE(full.causal);
  CHECK(full.init_std == 0);
}

TEST_CASE("loss_series: running means of the total and of each loss over its own steps, broken at gaps") {
  // itm trains in steps 1-3 and 6-7 (a phase turns it off in between); itc in every step.
  std::vector<StepRecord> h;
  const std::vector<double> itc{4, 2, 6, 8, 2, 4, 6}, itm{0, 1, 3, 5, 0, 0, 2, 4};
  for (int64_t step = 1; step <= 7; ++step) {
    StepRecord r;
    r.step = step;
    r.losses["itc"] = itc[step - 1];
    if (step <= 3 || step >= 6) r.losses["itm"] = itm[step];
    r.loss = 10.0 * static_cast<double>(step);
    h.push_back(r);
  }
  std::vector<PlotSeries> s = loss_series(h, 2);
  REQUIRE(s.size() == 3);
  CHECK(s[0].name == "total");
  CHECK(s[1].name == "itc");  // names in the order they first appear (a map's order within a step)
  CHECK(s[2].name == "itm");
  CHECK(s[0].x == std::vector<double>{2, 3, 4, 5, 6, 7});
  CHECK(s[0].y == std::vector<double>{15, 25, 35, 45, 55, 65});
  CHECK(s[1].y == std::vector<double>{3, 4, 7, 5, 3, 5});
  // itm: means of (1,3) at 2 and (3,5) at 3; the gap at step 4 breaks the line; after it the
  // window starts afresh, so the first point is the mean of steps 6 and 7.
  REQUIRE(s[2].x == std::vector<double>{2, 3, 4, 7});
  CHECK(s[2].y[0] == 2.0);
  CHECK(s[2].y[1] == 4.0);
  CHECK(std::isnan(s[2].y[2]));
  CHECK(s[2].y[3] == 3.0);
  CHECK(s[1].colour != s[2].colour);
  CHECK_THROWS_WITH_AS(loss_series(h, 0), doctest::Contains("window must be at least 1"), Error);
}

TEST_CASE("TrainConfig: presets validate and round-trip through JSON, errors name the key or the file") {
  for (const std::string& name : TrainConfig::preset_names()) {
    CAPTURE(name);
    TrainConfig c = TrainConfig::preset(name);
    TrainConfig back = TrainConfig::from_json(c.to_json());
    CHECK(back.to_json() == c.to_json());
  }
  json off = tiny_config(4).to_json();
  off["data"]["edit_negatives"] = false;
  CHECK_FALSE(TrainConfig::from_json(off).data.edit_negatives);
  CHECK(tiny_config(4).data.edit_negatives);  // on unless a config turns it off
  CHECK_THROWS_WITH_AS(TrainConfig::preset("nope"), doctest::Contains("unknown preset 'nope'"), Error);
  json j = tiny_config(4).to_json();
  j["stepz"] = 3;
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("unknown key 'stepz'"), Error);
  j = tiny_config(4).to_json();
  j["data"]["source"] = "webcam";
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("source must be one of"), Error);
  j = tiny_config(4).to_json();
  j["phases"] = json::array({{{"until", 2}, {"objectives", {{"cls", 1}}}}});
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("uses objective 'cls'"), Error);
  j = tiny_config(4).to_json();
  j["precision"] = "fp8";
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("precision 'fp8' is not one of f32, bf16, f16"),
                       Error);
  j = tiny_config(4).to_json();
  j["warmup"] = 10;
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("warmup (10) must be in [0, steps=4)"), Error);

  const std::string dir = temp_dir("config");
  fs::create_directories(dir);
  write_file_atomic(dir + "/bad.json", "{\"steps\": 3,");
  CHECK_THROWS_WITH_AS(TrainConfig::load(dir + "/bad.json"), doctest::Contains((dir + "/bad.json").c_str()), Error);
  write_file_atomic(dir + "/typo.json", "{\"batch_sise\": 3}");
  CHECK_THROWS_WITH_AS(TrainConfig::load(dir + "/typo.json"), doctest::Contains("typo.json: TrainConfig: unknown key"),
                       Error);
  CHECK_THROWS_WITH_AS(TrainConfig::load(dir + "/missing.json"), doctest::Contains("missing.json"), Error);
}

TEST_CASE("TrainConfig: phases choose the objectives of each step") {
  TrainConfig c = tiny_config(10);
  c.phases = {{.until = 4, .objectives = models::ObjectiveWeights::from_json({{"itc", 1}, {"mlm", 1}})}};
  c.validate();
  CHECK(c.objectives_at(0).enabled("mlm"));
  CHECK_FALSE(c.objectives_at(3).enabled("vqa"));
  CHECK(c.objectives_at(4).enabled("vqa"));
  CHECK(c.objectives_at(9).weights == c.model.objectives.weights);
}

TEST_CASE("AnswerVocab and the blind baseline on hand-made questions") {
  std::vector<Sample> train(3);
  train[0].questions = {{"what colour is it?", "red", "colour"}, {"is there a cat?", "yes", "exist"}};
  train[1].questions = {{"what colour is it?", "red", "colour"}, {"is there a cat?", "no", "exist"}};
  train[2].questions = {{"what colour is it?", "blue", "colour"}, {"is there a dog?", "no", "exist"}};
  AnswerVocab v = AnswerVocab::from_samples(train);
  CHECK(v.answers == std::vector<std::string>{"blue", "no", "red", "yes"});
  CHECK(v.id("red") == 2);
  CHECK(v.id("green") == -1);
  CHECK(v.by_type.at("colour") == std::vector<int64_t>{0, 2});
  CHECK(v.by_type.at("exist") == std::vector<int64_t>{1, 3});
  CHECK(AnswerVocab::from_json(v.to_json()).answers == v.answers);

  BlindBaseline blind(train);
  CHECK(blind.answer({"what colour is it?", "?", "colour"}) == "red");  // 2 of 3
  CHECK(blind.answer({"is there a dog?", "?", "exist"}) == "no");
  // A tie (one yes, one no) goes to the first in byte order.
  CHECK(blind.answer({"is there a cat?", "?", "exist"}) == "no");
  // An unseen question falls back to its type's most frequent answer.
  CHECK(blind.answer({"what colour is the sky?", "?", "colour"}) == "red");
}

TEST_CASE("BatchMaker: a batch is a function of its step, one caption and one question per image") {
  Dataset d = load_dataset(tiny_config(4).data);
  WordPieceTokenizer tok = train_wordpiece(texts_of(d.train), 120);
  AnswerVocab answers = AnswerVocab::from_samples(d.train);
  BatchMaker maker(d.train, tok, answers, 32, {}, 7, /*with_questions=*/true, /*with_labels=*/false);
  std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5};
  models::VLMBatch a = maker.make(idx, 3), b = maker.make(idx, 3), c = maker.make(idx, 4);
  CHECK(allclose(a.images, b.images, 0, 0));
  CHECK(same_ids(a.text_ids, b.text_ids));
  CHECK(same_ids(a.question_ids, b.question_ids));
  CHECK(a.images.shape() == Shape{6, 3, 16, 16});
  // Padded to the batch's longest text (at most max_len = 32), which one of the rows fills.
  const int64_t S = a.text_ids.size(1), Q = a.question_ids.size(1);
  CHECK(S <= 32);
  std::vector<uint8_t> last = select(a.text_mask, 1, S - 1).to(DType::u8).to_vector<uint8_t>();
  CHECK(std::count(last.begin(), last.end(), 1) >= 1);
  // Another step draws other captions / questions for at least one of six images.
  CHECK_FALSE((same_ids(a.text_ids, c.text_ids) && same_ids(a.question_ids, c.question_ids)));
  // Each image's caption is one of its own, and each answer id is its question's answer.
  std::vector<int64_t> ids = a.text_ids.to_vector<int64_t>(), qids = a.question_ids.to_vector<int64_t>();
  std::vector<int64_t> ans = a.answer_ids.to_vector<int64_t>();
  for (size_t i = 0; i < idx.size(); ++i) {
    const Sample& s = d.train[idx[i]];
    std::vector<int64_t> row(ids.begin() + i * S, ids.begin() + (i + 1) * S);
    std::string caption = tok.decode(row);
    bool own = false;
    for (const std::string& c2 : s.captions) own = own || tok.decode(tok.encode(c2, 32).ids) == caption;
    CHECK(own);
    std::vector<int64_t> qrow(qids.begin() + i * Q, qids.begin() + (i + 1) * Q);
    std::string question = tok.decode(qrow);
    bool matched = false;
    for (const QuestionAnswer& qa : s.questions)
      if (tok.decode(tok.encode(qa.question, 32).ids) == question) matched = matched || answers.id(qa.answer) == ans[i];
    CHECK(matched);
  }
  // Pixels: (v/255 − 0.5)/0.5, in [−1, 1].
  for (float v : a.images.to_vector<float>()) CHECK((v >= -1.0f && v <= 1.0f));
  const Image& im = d.train[0].image;
  CHECK(a.images.to_vector<float>()[0] == doctest::Approx(im.data[0] / 127.5 - 1.0));
}

TEST_CASE("BatchMaker: with negatives, each image's caption comes with one of that caption's own edits") {
  Dataset d = load_dataset(tiny_config(4).data);
  WordPieceTokenizer tok = train_wordpiece(texts_of(d.train), 120);
  AnswerVocab answers = AnswerVocab::from_samples(d.train);
  BatchMaker maker(d.train, tok, answers, 32, {}, 7, /*with_questions=*/false, /*with_labels=*/false,
                   /*with_negatives=*/true);
  std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5, 6};
  models::VLMBatch a = maker.make(idx, 5), b = maker.make(idx, 5);
  REQUIRE(a.negative_ids.defined());
  CHECK(a.negative_ids.shape() == a.text_ids.shape());  // padded alike
  CHECK(a.negative_mask.shape() == a.text_ids.shape());
  CHECK(same_ids(a.negative_ids, b.negative_ids));
  const int64_t S = a.text_ids.size(1);
  std::vector<int64_t> ids = a.text_ids.to_vector<int64_t>(), neg = a.negative_ids.to_vector<int64_t>();
  auto decoded = [&](const std::string& text) { return tok.decode(tok.encode(text, 32).ids); };
  for (size_t i = 0; i < idx.size(); ++i) {
    CAPTURE(i);
    const Sample& s = d.train[idx[i]];
    const std::string caption = tok.decode(std::vector<int64_t>(ids.begin() + i * S, ids.begin() + (i + 1) * S));
    const std::string edit = tok.decode(std::vector<int64_t>(neg.begin() + i * S, neg.begin() + (i + 1) * S));
    CHECK(edit != caption);
    bool found = false;
    for (size_t c = 0; c < s.captions.size(); ++c) {
      if (decoded(s.captions[c]) != caption) continue;
      for (const std::string& e : s.negatives[c]) found = found || decoded(e) == edit;
    }
    CHECK(found);
  }
  // Without negatives for one caption of the batch, the batch has none (itm then mines them).
  std::vector<Sample> bare(d.train.begin(), d.train.begin() + 7);
  bare[3].negatives.clear();
  BatchMaker partial(bare, tok, answers, 32, {}, 7, false, false, /*with_negatives=*/true);
  CHECK_FALSE(partial.make(idx, 5).negative_ids.defined());
  BatchMaker off(d.train, tok, answers, 32, {}, 7, false, false, /*with_negatives=*/false);
  CHECK_FALSE(off.make(idx, 5).negative_ids.defined());
}

TEST_CASE("BatchMaker: question_weights draw each image's questions in proportion to their types' weights") {
  Dataset d = load_dataset(tiny_config(4).data);
  WordPieceTokenizer tok = train_wordpiece(texts_of(d.train), 120);
  AnswerVocab answers = AnswerVocab::from_samples(d.train);
  const std::vector<QuestionAnswer> qs = {{"q0", "a", "colour"}, {"q1", "a", "place"}, {"q2", "a", "count"}};
  // No weights: question ⌊u·n⌋, the uniform pick the batches always made.
  BatchMaker uniform(d.train, tok, answers, 32, {}, 7, true, false);
  for (double u : {0.0, 0.2, 0.34, 0.5, 0.7, 0.999}) CHECK(uniform.pick_question(qs, u) == static_cast<size_t>(u * 3));
  // place 3, the others 1 (count not named): shares 1/5, 3/5, 1/5 of [0,1).
  BatchMaker weighted(d.train, tok, answers, 32, {}, 7, true, false, false, {}, {{"place", 3.0}, {"colour", 1.0}});
  CHECK(weighted.pick_question(qs, 0.0) == 0);
  CHECK(weighted.pick_question(qs, 0.19) == 0);
  CHECK(weighted.pick_question(qs, 0.21) == 1);
  CHECK(weighted.pick_question(qs, 0.79) == 1);
  CHECK(weighted.pick_question(qs, 0.81) == 2);
  CHECK(weighted.pick_question(qs, 0.9999) == 2);
  // Over many batches of the scene data, the drawn types follow the weights: an image's place
  // question (where it has one) three times as often as each of its other questions.
  BatchMaker place3(d.train, tok, answers, 32, {}, 7, true, false, false, {}, {{"place", 3.0}});
  std::vector<int64_t> idx(d.train.size());
  std::iota(idx.begin(), idx.end(), 0);
  double expected = 0;
  for (const Sample& s : d.train) {
    double place = 0, others = 0;  // the image's weights
    for (const QuestionAnswer& q : s.questions) (q.type == "place" ? place : others) += q.type == "place" ? 3.0 : 1.0;
    if (place > 0) expected += place / (place + others);  // its chance of a place question per batch
  }
  REQUIRE(expected > 1.0);
  int64_t drawn = 0;
  const int steps = 400;
  for (int step = 0; step < steps; ++step) {
    models::VLMBatch b = place3.make(idx, step);
    const int64_t Q = b.question_ids.size(1);
    std::vector<int64_t> qids = b.question_ids.to_vector<int64_t>();
    for (size_t i = 0; i < idx.size(); ++i) {
      const std::string q = tok.decode(std::vector<int64_t>(qids.begin() + i * Q, qids.begin() + (i + 1) * Q));
      drawn += q.find("where") != std::string::npos;  // only place questions ask "where"
    }
  }
  CHECK(static_cast<double>(drawn) / steps == doctest::Approx(expected).epsilon(0.05));
  // Weights must be positive; through the run config too, and a type no question has is an error.
  CHECK_THROWS_WITH_AS(BatchMaker(d.train, tok, answers, 32, {}, 7, true, false, false, {}, {{"place", 0.0}}),
                       doctest::Contains("question_weights['place'] must be positive"), Error);
  json j = tiny_config(4).data.to_json();
  CHECK_FALSE(j.contains("question_weights"));
  j["question_weights"] = {{"place", 3.0}};
  DataConfig c = DataConfig::from_json(j);
  CHECK(c.question_weights == std::map<std::string, double>{{"place", 3.0}});
  CHECK(DataConfig::from_json(c.to_json()).question_weights == c.question_weights);
  j["question_weights"] = {{"place", -1.0}};
  CHECK_THROWS_WITH_AS(DataConfig::from_json(j), doctest::Contains("question_weights['place'] must be a positive number"),
                       Error);
  j["question_weights"] = json::array({"place"});
  CHECK_THROWS_WITH_AS(DataConfig::from_json(j), doctest::Contains("'question_weights' must map question types"), Error);
  c.question_weights = {{"places", 2.0}};
  CHECK_THROWS_WITH_AS(load_dataset(c), doctest::Contains("question_weights names 'places', which no question has"),
                       Error);
}

TEST_CASE("Trainer: lr_scales train parameters named by a prefix at a scaled rate, and survive a reload") {
  json j = test::tiny_run_json(2, /*warmup=*/1);
  j["lr_scales"] = {{"model.fusion.", 0.25}, {"vqa_head.", 0.5}};
  const TrainConfig config = TrainConfig::from_json(j);
  CHECK(TrainConfig::from_json(config.to_json()).lr_scales == config.lr_scales);
  Dataset data = load_dataset(config.data);
  const std::string dir = temp_dir("lr_scales");
  Trainer trainer(config, data, {.out = dir, .verbose = false});
  CHECK(trainer.train() == 2);

  LoadedRun run = load_run(dir);
  std::map<std::string, double> scale_of;  // parameter -> its group's lr_scale
  for (const nn::ParamGroup& g : run.optimizer->param_groups())
    for (const auto& [name, p] : g.params) scale_of[name] = g.lr_scale;
  CHECK(scale_of.at("model.fusion.layers.0.cross_attn.q_proj.weight") == 0.25);
  CHECK(scale_of.at("model.fusion.ln_f.bias") == 0.25);
  CHECK(scale_of.at("vqa_head.fc1.weight") == 0.5);
  CHECK(scale_of.at("model.text.word_embeddings.weight") == 1.0);
  CHECK(scale_of.size() == run.model->named_parameters().size());  // every parameter trained once

  j["lr_scales"] = {{"model.fusoin.", 0.25}};  // a misspelt prefix is an error, not a silent no-op
  const TrainConfig misspelt = TrainConfig::from_json(j);
  CHECK_THROWS_WITH_AS(Trainer(misspelt, data, {.out = temp_dir("lr_scales_bad"), .verbose = false}),
                       doctest::Contains("'model.fusoin.'"), Error);
  j["lr_scales"] = {{"model.fusion.", -1.0}};
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(j), doctest::Contains("lr_scales"), Error);
}

TEST_CASE("Trainer: a resumed run repeats the uninterrupted run's losses exactly") {
  const TrainConfig config = tiny_config(6);
  Dataset data = load_dataset(config.data);

  const std::string full_dir = temp_dir("full");
  Trainer full(config, data, {.out = full_dir, .verbose = false});
  CHECK(full.train() == 6);

  const std::string split_dir = temp_dir("split");
  {
    Trainer first(config, data, {.out = split_dir, .verbose = false, .stop_after = 3});
    CHECK(first.train() == 3);  // and checkpoints step 3, where it stopped
  }
  Trainer resumed(config, data, {.out = split_dir, .resume = true, .verbose = false});
  CHECK(resumed.step() == 3);
  CHECK(resumed.train() == 3);
  REQUIRE(resumed.history().size() == 6);
  CHECK(losses_of(resumed.history()) == losses_of(full.history()));  // bit for bit
  check_same_weights(full.model(), resumed.model());
  // The log keeps one line per step: the interrupted run's lines after the checkpoint are gone.
  std::ifstream log(split_dir + "/metrics.jsonl");
  std::vector<int64_t> steps;
  for (std::string line; std::getline(log, line);) steps.push_back(json::parse(line)["step"].get<int64_t>());
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("Trainer: bf16 and f16 runs train f32 weights close to the f32 run, and f16 resumes with its loss scale") {
  TrainConfig f32 = tiny_config(12);
  Dataset data = load_dataset(f32.data);
  Trainer reference(f32, data, {.out = temp_dir("prec_f32"), .verbose = false});
  reference.train();
  const std::vector<double> ref = losses_of(reference.history());
  for (const std::string precision : {"bf16", "f16"}) {
    CAPTURE(precision);
    TrainConfig c = f32;
    c.precision = precision;
    const std::string dir = temp_dir("prec_" + precision);
    Trainer t(c, data, {.out = dir, .verbose = false});
    CHECK(t.train() == 12);
    const std::vector<double> got = losses_of(t.history());
    REQUIRE(got.size() == ref.size());
    // The first step sees the same weights: only the products' rounding differs.
    CHECK(std::abs(got[0] - ref[0]) < 2e-2 * ref[0]);
    CHECK(got != ref);  // and it does differ: the products really ran in 16 bits
    // It learns: the last three steps' mean loss is below the first three's, as in f32.
    const double first = (got[0] + got[1] + got[2]) / 3, last = (got[9] + got[10] + got[11]) / 3;
    CHECK(last < first);
    for (const auto& [name, p] : t.model().named_parameters()) {
      CAPTURE(name);
      CHECK(p.dtype() == DType::f32);
    }
    json state = json::parse(read_file(dir + "/checkpoints/step-000012/trainer.json"));
    CHECK(state.contains("grad_scaler") == (precision == "f16"));
  }

  // f16 stopped and resumed: the same losses bit for bit, the loss scale carried over.
  TrainConfig c = tiny_config(6);
  c.precision = "f16";
  Trainer full(c, data, {.out = temp_dir("f16_full"), .verbose = false});
  full.train();
  const std::string split_dir = temp_dir("f16_split");
  {
    Trainer first(c, data, {.out = split_dir, .verbose = false, .stop_after = 3});
    first.train();
  }
  Trainer resumed(c, data, {.out = split_dir, .resume = true, .verbose = false});
  resumed.train();
  CHECK(losses_of(resumed.history()) == losses_of(full.history()));
  check_same_weights(full.model(), resumed.model());
}

TEST_CASE("Trainer: checkpoints are whole folders named by `latest`, errors for a missing checkpoint") {
  TrainConfig config = tiny_config(8);
  config.checkpoint_every = 2;
  Dataset data = load_dataset(config.data);
  const std::string dir = temp_dir("checkpoints");
  Trainer t(config, data, {.out = dir, .verbose = false});
  t.train();
  CHECK(read_file(dir + "/checkpoints/latest") == "step-000008");
  std::vector<std::string> kept;
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints"))
    if (e.is_directory()) kept.push_back(e.path().filename().string());
  std::sort(kept.begin(), kept.end());
  CHECK(kept == std::vector<std::string>{"step-000004", "step-000006", "step-000008"});
  for (const std::string& k : kept) {
    CHECK(fs::exists(dir + "/checkpoints/" + k + "/state.safetensors"));
    CHECK(fs::exists(dir + "/checkpoints/" + k + "/trainer.json"));
  }
  for (const char* f : {"config.json", "vocab.txt", "answers.json", "classes.json", "metrics.jsonl", "loss_curve.png"})
    CHECK_MESSAGE(fs::exists(dir + "/" + f), f);

  // load_run reads the run back: the same weights as the trainer's.
  LoadedRun run = load_run(dir);
  CHECK(run.step == 8);
  check_same_weights(t.model(), *run.model);
  LoadedRun older = load_run(dir + "/checkpoints/step-000004");
  CHECK(older.step == 4);
  // `latest` edited by hand, with the newline an editor adds, names the same checkpoint.
  write_file_atomic(dir + "/checkpoints/latest", "step-000006\n");
  CHECK(load_run(dir).step == 6);
  write_file_atomic(dir + "/checkpoints/latest", "\n");
  CHECK_THROWS_WITH_AS(load_run(dir), doctest::Contains("is empty"), Error);

  const std::string empty = temp_dir("empty");
  CHECK_THROWS_WITH_AS(Trainer(config, data, {.out = empty, .resume = true, .verbose = false}),
                       doctest::Contains("cannot resume"), Error);
  CHECK_THROWS_WITH_AS(load_run(empty), doctest::Contains("is not a run directory"), Error);
}

TEST_CASE("evaluate_vlm: a captioning model reports BLEU-4, every reported value is a rate in [0, 1]") {
  TrainConfig config = tiny_config(4);
  config.model.objectives = models::ObjectiveWeights::from_json({{"itc", 1}, {"vqa", 1}, {"cap", 1}});
  config.validate();
  Dataset data = load_dataset(config.data);
  Trainer t(config, data, {.out = temp_dir("captions"), .verbose = false});
  t.train();
  EvalReport r = evaluate_vlm({t.model(), t.tokenizer(), t.answers(), t.config()}, data, "test", {.gallery = 12});
  REQUIRE(r.metrics.contains("caption_bleu4"));
  for (const MetricRow& row : r.rows) {
    CAPTURE(row.name);
    CHECK(row.value >= 0.0);
    CHECK(row.value <= 1.0);
  }
  CHECK(r.metrics["gallery_size"].get<int64_t>() == 12);
  CHECK(r.metrics.contains("vqa_accuracy_count"));
}

TEST_CASE("Trainer: with profile, profile.md says where the steps' time went and the losses are unchanged") {
  const TrainConfig config = tiny_config(3);
  Dataset data = load_dataset(config.data);
  Trainer plain(config, data, {.out = temp_dir("unprofiled"), .verbose = false});
  plain.train();
  CHECK(plain.profile_report().empty());

  const std::string dir = temp_dir("profiled");
  Trainer profiled(config, data, {.out = dir, .verbose = false, .profile = true});
  CHECK(profiled.train() == 3);
  CHECK(losses_of(profiled.history()) == losses_of(plain.history()));
  CHECK_FALSE(profile::active());  // stopped at the end of train()
  std::ifstream in(dir + "/profile.md");
  const std::string md((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(md == profiled.profile_report());
  CHECK(md.find("# Op profile of " + config.name + " (steps 1 to 3, cpu)") == 0);
  CHECK(md.find("3 steps in") != std::string::npos);
  CHECK(md.find("| phase | op | calls |") != std::string::npos);
  std::map<std::pair<std::string, std::string>, int64_t> calls;  // the rows, top 25 or not
  for (const profile::Entry& e : profile::entries()) calls[{e.phase, e.name}] = e.calls;
  CHECK(calls[{"forward", "linear"}] > 0);
  CHECK(calls[{"backward", "linear"}] > 0);  // at most one per forward call: a Node no gradient reaches is not run
  CHECK(calls[{"backward", "linear"}] <= calls[{"forward", "linear"}]);
  CHECK(calls[{"optimizer", "adamw"}] == 3);
  CHECK(calls[{"optimizer", "zero_grad"}] == 3);
  CHECK(calls[{"optimizer", "clip_grad_norm"}] == 3);
  CHECK(calls[{"data", "wait for the loader"}] == 3);
}
