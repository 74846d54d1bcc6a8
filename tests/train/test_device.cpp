// Choosing the device of a run, on any machine: the config's "device" key (JSON round trip,
// errors), "cuda" without a usable GPU failing clearly and early, "auto" falling back to the CPU,
// moving a batch (the identity on the CPU), and how metrics.json names the device. The runs on a
// GPU themselves are in tests/cuda/test_vlm_training.cpp.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/mmgrad.h"
#include "kernels/cpu/parallel.h"
#include "models/vlm.h"
#include "tests/temp_dir.h"
#include "tests/train/tiny_run.h"
#include "train/data_sources.h"
#include "train/run.h"
#include "train/trainer.h"

using namespace mmg;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The trainer tests' tiny run (tests/train/tiny_run.h), one warm-up step: some runs here are 2 steps.
TrainConfig tiny_config(int64_t steps) { return test::tiny_run_config(steps, 1); }

bool gpu_usable() { return device_unusable_reason(Device::cuda(0)).empty(); }

// A GPU no machine has: the one after the last (cuda:0 where there is none).
std::string missing_gpu() { return "cuda:" + std::to_string(cuda_device_count()); }

}  // namespace

TEST_CASE("TrainConfig device: cpu by default, every form round-trips through JSON, others are errors") {
  CHECK(TrainConfig().device == "cpu");
  for (const std::string& name : TrainConfig::preset_names()) {
    CAPTURE(name);
    CHECK(TrainConfig::preset(name).device == "cpu");
    CHECK(TrainConfig::preset(name).to_json().at("device") == "cpu");
  }
  for (const char* device : {"cpu", "cuda", "cuda:0", "cuda:3", "auto"}) {
    CAPTURE(device);
    json j = tiny_config(4).to_json();
    j["device"] = device;
    TrainConfig c = TrainConfig::from_json(j);  // valid on any machine: usability is checked when a run starts
    CHECK(c.device == device);
    CHECK(TrainConfig::from_json(c.to_json()).to_json() == c.to_json());
  }
  json j = tiny_config(4).to_json();
  j.erase("device");
  CHECK(TrainConfig::from_json(j).device == "cpu");  // a config written before the key existed
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "CPU", ""}) {
    CAPTURE(bad);
    j["device"] = bad;
    CHECK_THROWS_WITH_AS(TrainConfig::from_json(j),
                         doctest::Contains(fmt::format("TrainConfig 'tiny': device '{}' is not one of", bad).c_str()),
                         Error);
  }
  j["device"] = 0;
  CHECK_THROWS_AS(TrainConfig::from_json(j), Error);  // a string, not a number
}

TEST_CASE("TrainConfig::resolve_device: cpu is the CPU, auto takes a usable GPU or the CPU, cuda needs a GPU") {
  TrainConfig c = tiny_config(4);
  CHECK(c.resolve_device() == Device::cpu());
  c.device = "auto";
  CHECK(c.resolve_device() == (gpu_usable() ? Device::cuda(0) : Device::cpu()));
  c.device = "cuda";
  if (gpu_usable()) {
    CHECK(c.resolve_device() == Device::cuda(0));
  } else {
    // The message names the run and the device asked for, says why the GPU is unusable (the
    // runtime's own words, or that the build has no CUDA) and what to do instead.
    CHECK_THROWS_WITH_AS(c.resolve_device(), doctest::Contains("TrainConfig 'tiny': cannot train on device 'cuda'"),
                         Error);
    CHECK_THROWS_WITH_AS(c.resolve_device(), doctest::Contains(cuda_status().c_str()), Error);
    CHECK_THROWS_WITH_AS(c.resolve_device(), doctest::Contains("--device cpu"), Error);
  }
  c.device = missing_gpu();
  CHECK_THROWS_WITH_AS(c.resolve_device(), doctest::Contains(fmt::format("cannot train on device '{}'", c.device).c_str()),
                       Error);
}

TEST_CASE("Trainer: a device that is not usable fails before the run directory gets any file") {
  const std::string missing = missing_gpu();
  const TrainConfig config = [&] {
    TrainConfig c = tiny_config(2);
    c.device = missing;
    return c;
  }();
  Dataset data = load_dataset(config.data);
  test::TempDir dir("mmg_device_refused");
  CHECK_THROWS_WITH_AS(Trainer(config, data, {.out = dir.str(), .verbose = false}),
                       doctest::Contains(fmt::format("TrainConfig 'tiny': cannot train on device '{}'", missing).c_str()),
                       Error);
  CHECK_FALSE(fs::exists(dir.path / "config.json"));
  CHECK_FALSE(fs::exists(dir.path / "checkpoints"));
  // run_training (mmg train / mmg demo) refuses it before making the data, --device too.
  TrainConfig cpu = tiny_config(2);
  test::TempDir out("mmg_device_refused_run");
  CHECK_THROWS_WITH_AS(run_training(cpu, {.out = out.str(), .verbose = false, .device = missing}),
                       doctest::Contains(fmt::format("cannot train on device '{}'", missing).c_str()), Error);
  CHECK_FALSE(fs::exists(out.path / "config.json"));
}

TEST_CASE("Trainer: device auto without a GPU trains on the CPU, the same run as device cpu") {
  if (gpu_usable()) {
    MESSAGE("skipped: a GPU is usable here, so auto means cuda:0 (tests/cuda/test_vlm_training.cpp covers it)");
    return;
  }
  TrainConfig config = tiny_config(2);
  Dataset data = load_dataset(config.data);
  test::TempDir a("mmg_device_cpu"), b("mmg_device_auto");
  Trainer on_cpu(config, data, {.out = a.str(), .verbose = false});
  config.device = "auto";
  Trainer on_auto(config, data, {.out = b.str(), .verbose = false});
  CHECK(on_cpu.device() == Device::cpu());
  CHECK(on_auto.device() == Device::cpu());
  CHECK(on_auto.model().device() == Device::cpu());
  on_cpu.train();
  on_auto.train();
  REQUIRE(on_auto.history().size() == 2);
  for (size_t i = 0; i < 2; ++i) CHECK(on_auto.history()[i].loss == on_cpu.history()[i].loss);  // bit for bit
  // The saved config keeps what was asked for; the run's device is resolved where it runs.
  CHECK(load_run_config(b.str() + "/config.json").device == "auto");
  // A resumed run takes the device of the config it is given (mmg train --resume --device ...).
  TrainConfig resume = config;
  resume.device = "cpu";
  Trainer again(resume, data, {.out = b.str(), .resume = true, .verbose = false});
  CHECK(again.device() == Device::cpu());
  CHECK(again.config().device == "cpu");
  CHECK(again.step() == 2);
}

TEST_CASE("to_device: on the CPU every tensor of the batch is the same tensor, undefined ones stay undefined") {
  models::VLMBatch b;
  b.images = randn({2, 3, 4, 4});
  b.text_ids = from_vector(std::vector<int64_t>{2, 7, 3, 2, 8, 3}, {2, 3});
  b.answer_ids = from_vector(std::vector<int64_t>{1, 0});
  models::VLMBatch moved = models::to_device(b, Device::cpu());
  CHECK(moved.images.impl() == b.images.impl());
  CHECK(moved.text_ids.impl() == b.text_ids.impl());
  CHECK(moved.answer_ids.impl() == b.answer_ids.impl());
  for (const Tensor* t : {&moved.text_mask, &moved.class_ids, &moved.caption_ids, &moved.question_ids,
                          &moved.question_mask, &moved.negative_ids, &moved.negative_mask})
    CHECK_FALSE(t->defined());
}

TEST_CASE("Module::device and device_description name where a model runs") {
  models::VLM vlm(models::VLMConfig::preset("vlm-micro"));
  CHECK(vlm.device() == Device::cpu());
  nn::Module empty;
  CHECK(empty.device() == Device::cpu());
  CHECK(device_description(Device::cpu()) == fmt::format("cpu ({} threads)", cpu::num_threads()));
  // A GPU is named by its index and, where the driver says, its name; never run here.
  const std::string gpu = device_description(Device::cuda(0));
  CHECK(gpu.rfind("cuda:0", 0) == 0);
  if (!gpu_usable()) CHECK(gpu == "cuda:0");  // no driver to ask for a name
}
