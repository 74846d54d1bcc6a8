// Where a run's Dataset comes from: DataConfig::source names one of the built-in sources.
//
//   scenes          generated scenes (train/scenes.h), RGB, data.image_size pixels
//   fashion-scenes  2–4 Fashion-MNIST items on a 56×56 canvas (train/fashion_scenes.h)
//   fashion-mnist   Fashion-MNIST classification (train/fashion_mnist.h)
//   folder          the user's images with a captions.jsonl or .tsv (train/folder_dataset.h)
#pragma once
#include <string>
#include <vector>

#include "train/dataset.h"
#include "train/run_config.h"
#include "train/scenes.h"

namespace mmg {

// The source's dataset, with only the questions of config.question_types when it names some.
Dataset load_dataset(const DataConfig& config);

// Drops every question whose type is not in `types` (empty: keeps all), in every split; an
// Error when a type names no question of the data (a typo would otherwise train on nothing).
void keep_question_types(Dataset& data, const std::vector<std::string>& types);

// Generated scenes as samples: every caption with its minimal-edit negatives, every question
// with its type, the held-out flag.
Dataset scenes_to_dataset(const SceneDataset& scenes);

}  // namespace mmg
