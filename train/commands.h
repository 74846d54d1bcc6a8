// The subcommands of the `mmg` program, as functions (so tests can run them too).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mmg {

// `mmg demo`: generate scenes, train the demo model, evaluate it, print the table and write
// out/metrics.json, metrics.jsonl, loss_curve.png and attention maps.
struct DemoOptions {
  uint64_t seed = 0;
  int64_t steps = 0;            // > 0: override the preset's
  bool quick = false;           // the under-a-minute variant (preset demo-quick)
  bool resume = false;
  std::string out = "runs/demo";
  std::string device;           // cpu | cuda | cuda:N | auto; empty: the preset's (cpu)
  bool profile = false;         // time every op of the steps: out/profile.md
};
int run_demo(const DemoOptions& options);

// `mmg train`: a preset or a config file; the run directory defaults to runs/<name>.
struct TrainCommandOptions {
  std::string preset, config_path, out;
  int64_t steps = 0;       // > 0: override the config's
  int64_t stop_after = 0;  // > 0: stop after this step (resume later with --resume)
  bool resume = false;
  std::string device;      // cpu | cuda | cuda:N | auto; empty: the config's "device"
  bool profile = false;    // time every op of the steps: out/profile.md
};
int run_train_command(const TrainCommandOptions& options);

// `mmg eval`: a run directory (or one of its checkpoints) on a split of its data.
struct EvalCommandOptions {
  std::string checkpoint;
  std::string split = "test";
  int64_t gallery = 0;      // 0: the run's
  int64_t max_samples = 0;  // 0: all
  std::string json_out;     // also write the metrics here
  std::string device;       // cpu | cuda | cuda:N | auto; empty: the run config's "device"
};
int run_eval_command(const EvalCommandOptions& options);

// `mmg predict`: one image through a trained run: the answer to a question, a caption, or
// scores against texts.
struct PredictOptions {
  std::string checkpoint, image, question;
  std::vector<std::string> texts;
  bool caption = false;
  bool classify = false;  // the classifier's top classes (models trained with cls)
  int64_t top = 3;        // answers / classes shown
};
int run_predict_command(const PredictOptions& options);

// Runs the gradcheck battery (all cases, or those of `op`), one line per case; returns 0
// when every case passes, 1 otherwise (2 when `op` matches no case).
int run_gradcheck_command(const std::string& op, bool list_only);

// `mmg tokenizer train`: learns a WordPiece vocabulary from the texts of `input` (a .txt file
// with one text per line, or a .jsonl file whose lines name caption(s)/text/question/answer/
// label) and writes it as a Hugging Face vocab.txt.
struct TokenizerTrainOptions {
  std::string input;
  std::string out = "vocab.txt";
  int64_t vocab_size = 1000;
  int64_t min_frequency = 1;
};
int run_tokenizer_train(const TokenizerTrainOptions& options);
// The texts `mmg tokenizer train` learns from; errors name the file and line.
std::vector<std::string> read_tokenizer_corpus(const std::string& path);

// `mmg tokenizer encode`: prints the tokens, ids (and mask) of each text under a vocab.txt.
struct TokenizerEncodeOptions {
  std::string vocab;
  std::vector<std::string> texts;
  int64_t max_len = 512;
  bool pad = false;
};
int run_tokenizer_encode(const TokenizerEncodeOptions& options);

struct InspectOptions {
  std::string preset;       // a preset name (see `mmg inspect --list`)
  std::string config_path;  // or a JSON config file
  bool list = false;        // list the presets instead
};

// The text `mmg inspect` prints for a model config: the config as JSON, then one line per
// parameter (name, shape) and the parameter count.
std::string inspect_report(const std::string& title, const std::string& config_json);

// `mmg inspect`: prints inspect_report for a preset or a config file, or the preset list.
int run_inspect_command(const InspectOptions& options);
struct DataScenesOptions {
  std::string out;       // output folder (created if missing)
  int64_t n = 1000;      // scenes in all splits together
  uint64_t seed = 0;
  int size = 32;         // image side in pixels
  bool verbose = true;   // progress and a summary line
};

// `mmg data scenes`: writes the generated scenes as out/images/NNNNNN.png plus
// out/captions.jsonl (one JSON object per image: image file, split, held-out flag, objects,
// captions (strings), negatives (one list per caption), questions with answers and types) and out/dataset.json (the vocabulary and the
// held-out combinations). Returns the process exit code.
int run_data_scenes(const DataScenesOptions& options);

}  // namespace mmg
