// `mmg predict`: one image through a trained run.
//   --question Q     the answers the VQA head ranks highest, with their probabilities
//   --texts A B ...  the contrastive similarity of the image with each text (and the matching
//                    head's probability, for models that have one), best first
//   --caption        the caption decoder's caption (models trained with the cap objective)
//   --classify       the classifier's most likely classes (models trained with cls)
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "core/autograd.h"
#include "core/error.h"
#include "train/batching.h"
#include "train/commands.h"
#include "train/trainer.h"

namespace mmg {

namespace {

Tensor load_model_image(const std::string& path, const TrainConfig& config) {
  const auto& v = config.model.fusion.family == "single" ? config.model.fusion.single.image_size
                                                          : config.model.fusion.dual.vision.image_size;
  const int channels = static_cast<int>(config.model.fusion.family == "single" ? config.model.fusion.single.channels
                                                                              : config.model.fusion.dual.vision.channels);
  Image image = load_image(path, channels);
  if (image.width != v || image.height != v) image = resize_and_center_crop(image, static_cast<int>(v));
  return images_to_tensor(std::vector<const Image*>{&image}, {config.data.mean, config.data.std}, path);
}

}  // namespace

int run_predict_command(const PredictOptions& options) {
  MMG_CHECK(!options.image.empty(), "mmg predict: --image is required");
  MMG_CHECK(!options.question.empty() || !options.texts.empty() || options.caption || options.classify,
            "mmg predict: give --question, --texts, --caption or --classify");
  LoadedRun run = load_run(options.checkpoint);
  models::VLM& model = *run.model;
  model.eval();
  NoGradGuard no_grad;
  Tensor image = load_model_image(options.image, run.config);
  const int64_t max_len = run.config.max_len;

  if (!options.question.empty()) {
    MMG_CHECK(model.vqa_head != nullptr, "mmg predict: the model in {} was not trained to answer questions (no vqa)",
              options.checkpoint);
    TokenBatch q = encode_texts(*run.tokenizer, {options.question}, max_len);
    std::vector<float> p = softmax(model.answer_logits(image, q.ids, q.attention_mask), 1).to_vector<float>();
    std::vector<size_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    std::printf("question: %s\n", options.question.c_str());
    for (int64_t i = 0; i < std::min<int64_t>(options.top, order.size()); ++i)
      std::printf("  %-12s %.3f\n", order[i] < run.answers.answers.size() ? run.answers.answers[order[i]].c_str() : "?",
                  p[order[i]]);
  }
  if (!options.texts.empty()) {
    MMG_CHECK(model.model->dual != nullptr, "mmg predict: --texts needs a model with contrastive embeddings");
    const auto& dual = model.model->dual;
    TokenBatch t = encode_texts(*run.tokenizer, options.texts, max_len);
    Tensor image_emb = dual->embed_image(dual->vision->forward(image));
    Tensor text_emb = dual->embed_text(dual->text->forward(t.ids, t.attention_mask));
    // exp(0)·cosine: the logit scale left out, so the numbers are cosine similarities.
    std::vector<float> sim =
        models::similarity_logits(image_emb, text_emb, scalar_like(image_emb, 0.0)).contiguous().to_vector<float>();
    std::vector<float> match;
    if (model.itm_head) {
      const int64_t n = static_cast<int64_t>(options.texts.size());
      Tensor images = expand(image, {n, image.size(1), image.size(2), image.size(3)}).contiguous();
      match = select(softmax(model.match_logits(images, t.ids, t.attention_mask), 1), 1, 1).contiguous().to_vector<float>();
    }
    std::vector<size_t> order(sim.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sim[a] > sim[b]; });
    std::printf("%-10s %-8s text\n", "cosine", match.empty() ? "" : "match p");
    for (size_t i : order)
      std::printf("%-10.4f %-8s %s\n", sim[i], match.empty() ? "" : fmt::format("{:.3f}", match[i]).c_str(),
                  options.texts[i].c_str());
  }
  if (options.classify) {
    MMG_CHECK(model.cls_head != nullptr, "mmg predict: the model in {} has no classifier (no cls objective)",
              options.checkpoint);
    std::vector<float> p = softmax(model.class_logits(image), 1).to_vector<float>();
    std::vector<size_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    for (int64_t i = 0; i < std::min<int64_t>(options.top, order.size()); ++i)
      std::printf("  %-14s %.3f\n",
                  order[i] < run.class_names.size() ? run.class_names[order[i]].c_str() : fmt::format("class {}", order[i]).c_str(),
                  p[order[i]]);
  }
  if (options.caption) {
    MMG_CHECK(model.caption_decoder != nullptr, "mmg predict: the model in {} has no caption decoder (no cap objective)",
              options.checkpoint);
    std::vector<std::vector<int64_t>> captions = model.caption(image, /*beam=*/3);
    std::printf("caption: %s\n", run.tokenizer->decode(captions.at(0)).c_str());
  }
  return 0;
}

}  // namespace mmg
