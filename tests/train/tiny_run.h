// The run the trainer tests share: 16×16 scenes, one-layer ViT / text encoder / fusion of width
// 16, batches of 8 — small enough for a test, with every objective of a pre-training run.
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

#include "train/run_config.h"

namespace mmg::test {

inline nlohmann::json tiny_run_json(int64_t steps, int64_t warmup = 2) {
  using nlohmann::json;
  return {{"name", "tiny"},
          {"data", {{"source", "scenes"}, {"n", 300}, {"image_size", 16}, {"seed", 3}, {"gallery", 20}}},
          {"tokenizer", {{"vocab_size", 120}, {"max_len", 32}}},
          {"model",
           {{"family", "vlm"},
            {"fusion",
             {{"family", "cross"},
              {"embed_dim", 16},
              {"vision", {{"family", "vit"}, {"image_size", 16}, {"patch_size", 8}, {"dim", 16}, {"depth", 1}, {"heads", 2}}},
              {"text", {{"family", "text"}, {"max_len", 32}, {"dim", 16}, {"depth", 1}, {"heads", 2}}},
              {"fusion", {{"depth", 1}, {"heads", 2}}}}},
            {"objectives", {{"itc", 1}, {"itm", 1}, {"mlm", 1}, {"vqa", 1}}}}},
          {"steps", steps},
          {"batch_size", 8},
          {"lr", 1e-3},
          {"warmup", warmup},
          {"log_every", 1},
          {"seed", 5}};
}

inline TrainConfig tiny_run_config(int64_t steps, int64_t warmup = 2) {
  return TrainConfig::from_json(tiny_run_json(steps, warmup));
}

}  // namespace mmg::test
