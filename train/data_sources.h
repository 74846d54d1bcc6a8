// Where a run's Dataset comes from: DataConfig::source names one of the built-in sources.
//
//   scenes          generated scenes (train/scenes.h), RGB, data.image_size pixels
//   fashion-scenes  2–4 Fashion-MNIST items on a 56×56 canvas (train/fashion_scenes.h)
//   fashion-mnist   Fashion-MNIST classification (train/fashion_mnist.h)
//   folder          the user's images with a captions.jsonl or .tsv (train/folder_dataset.h)
#pragma once
#include "train/dataset.h"
#include "train/run_config.h"
#include "train/scenes.h"

namespace mmg {

Dataset load_dataset(const DataConfig& config);

// Generated scenes as samples: every caption with its minimal-edit negatives, every question
// with its type, the held-out flag.
Dataset scenes_to_dataset(const SceneDataset& scenes);

}  // namespace mmg
