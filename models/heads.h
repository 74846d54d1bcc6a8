// Task heads: the small modules that turn an encoder's output into the logits of an objective
// (the losses themselves are in models/objectives.h).
//
//   head               input                          parameters (state-dict keys)
//   ITMHead            fused CLS [B,D]                weight [2,D], bias [2]
//   MLMHead            text tokens [B,S,D]            dense.{weight,bias} [D,D], layer_norm.{weight,bias} [D],
//                                                      decoder.{weight,bias} [V,D]
//   VQAHead            fused CLS [B,D]                fc1 [2D,D], layer_norm [2D], fc2 [A,2D]
//   ClassificationHead pooled image [B,D]             norm [D], fc [C,D]
//
// The contrastive objective needs no head here: its projections and logit scale belong to the
// dual encoder (models/fusion.h). Init as the encoders (models/init_weights.h): Linear weights
// ~ trunc_normal(0.02), biases 0, LayerNorms 1/0. Names follow the models they come from: ALBEF (itm_head a
// plain Linear), BERT's prediction head (cls.predictions.transform.dense →
// dense, transform.LayerNorm → layer_norm, decoder → decoder), ViLT's VQA classifier
// (Linear, LayerNorm, GELU, Linear) and timm's ViT head (fc_norm → norm, head → fc).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "nn/layers.h"

namespace mmg::models {

// Image–text matching (ALBEF): is this (image, text) pair a real pair? Two logits, class 1 = match.
class ITMHead : public nn::Linear {
 public:
  explicit ITMHead(int64_t dim, Generator* gen = nullptr);
  std::string type_name() const override { return "ITMHead"; }
};

// Masked language modelling (BERT): hidden [...,D] -> dense -> GELU -> layer_norm -> decoder
// -> logits [...,V].
class MLMHead : public nn::Module {
 public:
  MLMHead(int64_t dim, int64_t vocab_size, double eps = 1e-5, Generator* gen = nullptr);
  Tensor forward(const Tensor& hidden) const;
  std::string type_name() const override { return "MLMHead"; }

  std::shared_ptr<nn::Linear> dense, decoder;
  std::shared_ptr<nn::LayerNorm> layer_norm;
};

// VQA as classification over an answer vocabulary (ViLT): fused CLS [B,D] -> fc1 (D→2D) ->
// layer_norm -> GELU -> fc2 (2D→answers) -> logits [B,answers].
class VQAHead : public nn::Module {
 public:
  VQAHead(int64_t dim, int64_t num_answers, double eps = 1e-5, Generator* gen = nullptr);
  Tensor forward(const Tensor& fused_cls) const;
  std::string type_name() const override { return "VQAHead"; }

  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::LayerNorm> layer_norm;
};

// Image classification on a ViT's pooled output: norm (LayerNorm) -> fc -> logits [B,classes].
class ClassificationHead : public nn::Module {
 public:
  ClassificationHead(int64_t dim, int64_t num_classes, double eps = 1e-5, Generator* gen = nullptr);
  Tensor forward(const Tensor& pooled) const { return fc->forward(norm->forward(pooled)); }
  std::string type_name() const override { return "ClassificationHead"; }

  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> fc;
};

}  // namespace mmg::models
