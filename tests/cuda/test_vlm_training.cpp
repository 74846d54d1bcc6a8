// Training a vision-language model on CUDA: the VLM's losses for every objective and fusion
// family (itc, itm with edited captions and with mined negatives, mlm, vqa, cls, cap) and all
// their gradients equal the CPU's within 1e-4 relative; the trainer on CUDA follows the CPU run's
// losses, resumes exactly, writes checkpoints the CPU reads back, and evaluates to the CPU's
// metrics; `run_training` with device "cuda" names the GPU in metrics.json.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/vlm.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/temp_dir.h"
#include "tests/train/tiny_run.h"
#include "train/data_sources.h"
#include "train/evaluate.h"
#include "train/run.h"
#include "train/trainer.h"

using namespace mmg;
using namespace mmg::testing;
using nlohmann::json;

namespace {

// A batch for the micro presets (8×8 images, a vocabulary of 50): captions of 4 to 8 tokens with
// [CLS] = 2 and [SEP] = 3, one question per image, labels, answers; `edits`: each caption with
// its first word replaced (the known-false texts of itm / itc).
models::VLMBatch micro_batch(int64_t B, bool edits, Generator& g) {
  models::VLMBatch b;
  b.images = randn({B, 3, 8, 8}, {}, &g);
  const int64_t S = 8;
  auto texts = [&](std::vector<bool>& mask) {
    std::vector<int64_t> words = randint(5, 50, {B, S}, {.dtype = DType::i64}, &g).to_vector<int64_t>();
    std::vector<int64_t> ids(static_cast<size_t>(B * S), 0);
    mask.assign(static_cast<size_t>(B * S), false);
    for (int64_t i = 0; i < B; ++i) {
      const int64_t len = 4 + i % 5;
      for (int64_t t = 0; t < len; ++t) {
        ids[i * S + t] = t == 0 ? 2 : t == len - 1 ? 3 : words[i * S + t];
        mask[i * S + t] = true;
      }
    }
    return ids;
  };
  std::vector<bool> mask, qmask;
  std::vector<int64_t> ids = texts(mask), questions = texts(qmask);
  b.text_ids = from_vector(ids, {B, S});
  b.text_mask = from_vector(mask, {B, S});
  b.question_ids = from_vector(questions, {B, S});
  b.question_mask = from_vector(qmask, {B, S});
  b.class_ids = randint(0, 4, {B}, {.dtype = DType::i64}, &g);
  b.answer_ids = randint(0, 6, {B}, {.dtype = DType::i64}, &g);
  if (edits) {
    for (int64_t i = 0; i < B; ++i) ids[i * S + 1] = 5 + (ids[i * S + 1] - 5 + 17) % 45;
    b.negative_ids = from_vector(ids, {B, S});
    b.negative_mask = b.text_mask;
  }
  return b;
}

models::VLMConfig micro_config(const std::string& fusion, const json& objectives) {
  models::VLMConfig c = models::VLMConfig::preset("vlm-micro");
  if (fusion == "vision") {  // the image classifier of the fashion-vit preset, shrunk
    c = models::VLMConfig::from_json(
        {{"family", "vlm"},
         {"fusion",
          {{"family", "vision"},
           {"vision", {{"family", "vit"}, {"image_size", 8}, {"patch_size", 4}, {"channels", 3}, {"dim", 16},
                       {"depth", 1}, {"heads", 2}, {"pool", "mean"}, {"dropout", 0.1}}}}},
         {"objectives", objectives},
         {"num_classes", 4}});
    return c;
  }
  c.fusion = models::FusionModelConfig::preset(fusion);
  c.objectives = models::ObjectiveWeights::from_json(objectives);
  c.derive_decoder_fields();
  c.validate();
  return c;
}

// Gradients agree within 1e-4 of their own size: an element far below the tensor's largest is
// a difference of large terms, where the two devices' orders of summation show.
void check_gradients(const nn::Module& gpu, const nn::Module& cpu, const std::string& what) {
  nn::NamedTensors g = gpu.named_parameters(), c = cpu.named_parameters();
  REQUIRE(g.size() == c.size());
  for (size_t i = 0; i < g.size(); ++i) {
    REQUIRE(g[i].first == c[i].first);
    CHECK_MESSAGE(g[i].second.device() == kGpu, g[i].first);
    if (!c[i].second.grad().defined()) {
      CHECK_MESSAGE(!g[i].second.grad().defined(), (what + " " + g[i].first));
      continue;
    }
    REQUIRE_MESSAGE(g[i].second.grad().defined(), (what + " " + g[i].first));
    const Tensor want = c[i].second.grad();
    const double scale = max(abs(want)).item();
    check_parity(g[i].second.grad(), want, 1e-4, 1e-6 + 1e-4 * scale, what + " gradient of " + g[i].first);
  }
}

// The trainer tests' tiny run (tests/train/tiny_run.h) with captioning too, on `device`.
TrainConfig tiny_config(int64_t steps, const std::string& device) {
  json j = test::tiny_run_json(steps, 1);
  j["model"]["objectives"]["cap"] = 1;
  j["device"] = device;
  return TrainConfig::from_json(j);
}

std::vector<double> losses_of(const Trainer& t) {
  std::vector<double> v;
  for (const StepRecord& r : t.history()) v.push_back(r.loss);
  return v;
}

}  // namespace

TEST_CASE("cuda vlm: every objective's loss and every gradient equal the CPU's, for every fusion family") {
  require_gpu();
  struct Case {
    const char* fusion;
    json objectives;
    bool edits;
  };
  const json all = {{"itc", 1}, {"itm", 1}, {"mlm", 1}, {"vqa", 1}, {"cls", 1}, {"cap", 1}};
  for (const Case& k : {Case{"albef-micro", all, true},    // itm against the edited captions, itc with them
                        Case{"albef-micro", all, false},   // itm's negatives mined from the similarities
                        Case{"vilt-micro", {{"itm", 1}, {"mlm", 1}, {"vqa", 1}, {"cls", 1}, {"cap", 1}}, false},
                        Case{"vilt-micro", {{"itm", 1}, {"mlm", 1}, {"vqa", 1}}, true},
                        Case{"clip-micro", {{"itc", 1}, {"mlm", 1}, {"cls", 1}, {"cap", 1}}, true},
                        Case{"pooled-micro", {{"itm", 1}, {"mlm", 1}, {"vqa", 1}, {"cls", 1}, {"cap", 1}}, false},
                        Case{"vision", {{"cls", 1}}, false}}) {
    const std::string what = std::string(k.fusion) + (k.edits ? " with edits" : "");
    CAPTURE(what);
    const uint64_t seed = static_cast<uint64_t>(integers({1}, DType::i64, 0, int64_t(1) << 40).item());
    const models::VLMConfig config = micro_config(k.fusion, k.objectives);
    Generator init_cpu(seed), init_gpu(seed);  // twins: the same initial weights
    models::VLM cpu(config, &init_cpu), gpu(config, &init_gpu);
    gpu.to(kGpu);
    CHECK(gpu.device() == kGpu);
    Generator data(seed + 1);
    const models::VLMBatch batch = micro_batch(6, k.edits, data);
    const models::VLMBatch on_gpu = models::to_device(batch, kGpu);
    CHECK(on_gpu.images.device() == kGpu);
    CHECK(on_gpu.text_ids.device() == kGpu);

    // The masking and mined negatives come from twin generators, the dropout masks from the
    // global generator at the same state.
    Generator draws_cpu(seed + 2), draws_gpu(seed + 2);
    const uint64_t dseed = default_generator().seed(), doffset = default_generator().offset();
    models::Losses want = cpu.compute_losses(batch, &draws_cpu);
    default_generator().set_state(dseed, doffset);
    models::Losses got = gpu.compute_losses(on_gpu, &draws_gpu);
    CHECK(draws_gpu.offset() == draws_cpu.offset());  // the same number of host draws
    REQUIRE(got.items.size() == want.items.size());
    for (size_t i = 0; i < want.items.size(); ++i) {
      REQUIRE(got.items[i].first == want.items[i].first);
      CHECK(got.items[i].second.device() == kGpu);
      check_parity(got.items[i].second, want.items[i].second, 1e-4, 1e-6, what + " loss " + want.items[i].first);
    }
    check_parity(got.total, want.total, 1e-4, 1e-6, what + " total");
    want.total.backward();
    got.total.backward();
    check_gradients(gpu, cpu, what);
  }
}

TEST_CASE("cuda trainer: a tiny VLM trained on CUDA follows the CPU run, resumes exactly, checkpoints read on the CPU") {
  require_gpu();
  const TrainConfig on_cpu = tiny_config(6, "cpu"), on_gpu = tiny_config(6, "cuda");
  Dataset data = load_dataset(on_cpu.data);
  test::TempDir cpu_dir("mmg_cuda_run_cpu"), gpu_dir("mmg_cuda_run_gpu"), split_dir("mmg_cuda_run_split");

  Trainer cpu(on_cpu, data, {.out = cpu_dir.str(), .verbose = false});
  Trainer gpu(on_gpu, data, {.out = gpu_dir.str(), .verbose = false});
  CHECK(gpu.device() == kGpu);
  CHECK(gpu.model().device() == kGpu);
  // Built on the CPU from the same seed, then moved: the same initial weights.
  for (auto& [name, p] : gpu.model().named_parameters()) {
    CAPTURE(name);
    CHECK(allclose(p.to(Device::cpu()), cpu.model().state_dict().at(name), 0, 0));
  }
  cpu.train();
  gpu.train();
  const std::vector<double> a = losses_of(cpu), b = losses_of(gpu);
  REQUIRE(b.size() == 6);
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(b[i] == doctest::Approx(a[i]).epsilon(1e-3));  // six steps of float drift, no more
  }

  // 3 + 3 steps on the GPU are the 6 steps on the GPU, bit for bit.
  {
    Trainer first(on_gpu, data, {.out = split_dir.str(), .verbose = false, .stop_after = 3});
    first.train();
  }
  Trainer resumed(on_gpu, data, {.out = split_dir.str(), .resume = true, .verbose = false});
  CHECK(resumed.device() == kGpu);
  resumed.train();
  CHECK(losses_of(resumed) == b);

  // The checkpoint written from the GPU loads into a CPU model with the GPU's weights, exactly.
  LoadedRun back = load_run(gpu_dir.str());
  CHECK(back.model->device() == Device::cpu());
  for (auto& [name, p] : gpu.model().named_parameters()) {
    CAPTURE(name);
    CHECK(allclose(p.to(Device::cpu()), back.model->state_dict().at(name), 0, 0));
  }
  // ... and onto the GPU again, AdamW moments included.
  LoadedRun again = load_run(gpu_dir.str(), kGpu);
  CHECK(again.model->device() == kGpu);
  for (auto& [key, t] : again.optimizer->state_dict())
    if (t.dim() > 0) CHECK_MESSAGE(t.device() == kGpu, key);

  // Evaluation on the GPU gives the CPU's metrics for the same weights. The rates count
  // discrete outcomes (a rank, an argmax): they may differ only where two scores tie to within
  // the devices' rounding, at most one item of the 20 evaluated here.
  EvalReport on_device = evaluate_vlm({gpu.model(), gpu.tokenizer(), gpu.answers(), gpu.config()}, data, "test",
                                      {.gallery = 20, .max_samples = 20});
  EvalReport on_host = evaluate_vlm({*back.model, *back.tokenizer, back.answers, back.config}, data, "test",
                                    {.gallery = 20, .max_samples = 20});
  REQUIRE(on_device.metrics.size() == on_host.metrics.size());
  CHECK(on_device.metrics.contains("retrieval_i2t_r1"));
  CHECK(on_device.metrics.contains("vqa_accuracy"));
  CHECK(on_device.metrics.contains("caption_bleu4"));
  for (auto it = on_host.metrics.begin(); it != on_host.metrics.end(); ++it) {
    CAPTURE(it.key());
    REQUIRE(on_device.metrics.contains(it.key()));
    if (!it.value().is_number()) continue;
    CHECK(std::abs(on_device.metrics[it.key()].get<double>() - it.value().get<double>()) <= 0.051);
  }
}

TEST_CASE("cuda run_training: device cuda trains, evaluates, draws attention maps, and names the GPU") {
  require_gpu();
  test::TempDir dir("mmg_cuda_run_training");
  EvalReport r = run_training(tiny_config(3, "cpu"), {.out = dir.str(), .verbose = false, .device = "cuda"});
  CHECK(r.metrics.contains("vqa_accuracy"));
  std::ifstream in(dir.str() + "/metrics.json");
  const json m = json::parse(in);
  const std::string device = m.at("device").get<std::string>();
  CAPTURE(device);
  CHECK(device.rfind("cuda:0 (", 0) == 0);
  CHECK(device.find(cuda_device_name(0)) != std::string::npos);
  CHECK(std::filesystem::exists(dir.path / "attention" / "attention_00.png"));
}
