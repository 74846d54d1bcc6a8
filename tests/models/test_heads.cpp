// Heads and objectives: head shapes and names against plain-op references; the loss report
// (weights from JSON, weighted total); contrastive losses against loops; BERT masking
// statistics; hard-negative sampling (never the positive, follows the masked softmax);
// the ITM batch and its labels; MLM loss against loops; each head's loss falls with training.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/mmgrad.h"
#include "models/heads.h"
#include "models/objectives.h"
#include "tests/models/model_test_util.h"

using namespace mmg;
using namespace mmg::models;
using namespace mmg::test;

namespace {

// Mean cross-entropy of rows of `logits` [N,C] against `target`, skipping `ignore`, by loops.
double reference_cross_entropy(const Tensor& logits, const std::vector<int64_t>& target, int64_t ignore = -100) {
  const int64_t C = logits.size(-1);
  std::vector<double> l = logits.to_vector<double>();
  double total = 0;
  int64_t count = 0;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == ignore) continue;
    const double* x = &l[i * C];
    const double mx = *std::max_element(x, x + C);
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(x[c] - mx);
    total += -(x[target[i]] - mx - std::log(z));
    ++count;
  }
  return count ? total / static_cast<double>(count) : 0.0;
}

// LayerNorm over the last dim written with reductions (no layer_norm op).
Tensor reference_layer_norm(const Tensor& x, const nn::LayerNorm& ln) {
  Tensor mu = x.mean({-1}, true);
  Tensor var = ((x - mu) * (x - mu)).mean({-1}, true);
  return (x - mu) / sqrt(var + ln.eps) * ln.weight + ln.bias;
}

Tensor affine(const nn::Linear& l, const Tensor& x) { return matmul(x, l.weight.transpose(0, 1)) + l.bias; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Heads

TEST_CASE("heads: parameter names, shapes, and outputs against plain-op references") {
  manual_seed(1);
  ITMHead itm(8);
  CHECK(names_of(itm) == std::vector<std::string>{"weight", "bias"});
  CHECK(itm.weight.shape() == Shape{2, 8});

  MLMHead mlm(8, 11);
  CHECK(names_of(mlm) == std::vector<std::string>{"dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias",
                                                  "decoder.weight", "decoder.bias"});
  Tensor h = randn({2, 3, 8});
  Tensor expected = affine(*mlm.decoder, reference_layer_norm(gelu(affine(*mlm.dense, h)), *mlm.layer_norm));
  CHECK(mlm.forward(h).shape() == Shape{2, 3, 11});
  CHECK(allclose(mlm.forward(h), expected, 1e-5, 1e-5));

  VQAHead vqa(8, 5);
  CHECK(names_of(vqa) == std::vector<std::string>{"fc1.weight", "fc1.bias", "layer_norm.weight", "layer_norm.bias",
                                                  "fc2.weight", "fc2.bias"});
  CHECK(vqa.fc1->weight.shape() == Shape{16, 8});
  Tensor cls = randn({4, 8});
  CHECK(allclose(vqa.forward(cls), affine(*vqa.fc2, gelu(reference_layer_norm(affine(*vqa.fc1, cls), *vqa.layer_norm))),
                 1e-5, 1e-5));
  CHECK(vqa.forward(cls).shape() == Shape{4, 5});

  ClassificationHead head(8, 3);
  CHECK(names_of(head) == std::vector<std::string>{"norm.weight", "norm.bias", "fc.weight", "fc.bias"});
  CHECK(allclose(head.forward(cls), affine(*head.fc, reference_layer_norm(cls, *head.norm)), 1e-5, 1e-5));
}

// ---------------------------------------------------------------------------------------------
// Reporting

TEST_CASE("ObjectiveWeights from JSON, and Losses: each loss by name and the weighted total") {
  ObjectiveWeights w = ObjectiveWeights::from_json({{"itc", 1.0}, {"itm", 0.5}, {"mlm", 2}});
  CHECK(w.weight("itm") == 0.5);
  CHECK(w.weight("cap") == 0.0);
  CHECK(w.enabled("mlm"));
  CHECK_FALSE(w.enabled("vqa"));
  CHECK(ObjectiveWeights::from_json(w.to_json()).weights == w.weights);
  CHECK_THROWS_WITH_AS(ObjectiveWeights::from_json({{"itx", 1}}),
                       doctest::Contains("unknown objective 'itx' (known: itc, itm, mlm, vqa, cls, cap)"), Error);
  CHECK_THROWS_WITH_AS(ObjectiveWeights::from_json({{"itc", -1}}), doctest::Contains("must be finite and >= 0"), Error);
  CHECK_THROWS_WITH_AS(ObjectiveWeights::from_json({{"itc", "one"}}), doctest::Contains("must be a number"), Error);

  Tensor a = tensor({1.5}).requires_grad_(), b = scalar_tensor(2.0).requires_grad_(), c = scalar_tensor(4.0);
  Losses losses;
  losses.add("itc", a * 2.0);  // a one-element [1] tensor is reported 0-d
  losses.add("itm", b * 1.0);
  losses.add("mlm", c * 1.0);
  CHECK(losses.get("itc").dim() == 0);
  CHECK(losses.weigh(w).item() == doctest::Approx(1.0 * 3.0 + 0.5 * 2.0 + 2.0 * 4.0));
  CHECK(losses.total.dim() == 0);
  auto v = losses.values();
  CHECK(v.at("itc") == 3.0);
  CHECK(v.at("total") == doctest::Approx(12.0));
  losses.total.backward();
  CHECK(a.grad().item() == doctest::Approx(2.0));  // d total / d a = weight 1 · 2
  CHECK(b.grad().item() == doctest::Approx(0.5));
  CHECK_THROWS_WITH_AS(losses.add("itc", a), doctest::Contains("'itc' was added twice"), Error);
  CHECK_THROWS_WITH_AS(losses.add("cap", randn({2})), doctest::Contains("loss 'cap' must hold one value, got [2]"), Error);
  CHECK_THROWS_WITH_AS(losses.get("cap"), doctest::Contains("no loss named 'cap' (have: itc, itm, mlm)"), Error);
  CHECK_THROWS_WITH_AS(Losses().weigh(w), doctest::Contains("nothing to weigh"), Error);
}

// ---------------------------------------------------------------------------------------------
// Contrastive

TEST_CASE("contrastive_loss: clip and hinge on rows normalised by hand, similarity_logits by loops") {
  manual_seed(2);
  const int64_t B = 4, E = 6;
  Tensor img = randn({B, E}) * 3.0, txt = randn({B, E}) * 0.5;
  Tensor scale = scalar_tensor(std::log(10.0));
  auto normalised = [&](const Tensor& x) {
    std::vector<double> v = x.to_vector<double>();
    for (int64_t i = 0; i < B; ++i) {
      double s = 0;
      for (int64_t e = 0; e < E; ++e) s += v[i * E + e] * v[i * E + e];
      for (int64_t e = 0; e < E; ++e) v[i * E + e] /= std::sqrt(s);
    }
    return from_vector(v, {B, E}).to(DType::f32);
  };
  Tensor ni = normalised(img), nt = normalised(txt);
  CHECK(contrastive_loss(img, txt, scale).item() == doctest::Approx(clip_loss(ni, nt, scale).item()).epsilon(1e-5));
  ContrastiveOptions hinge{.kind = ContrastiveOptions::Kind::hinge, .margin = 0.3};
  CHECK(contrastive_loss(img, txt, scale, hinge).item() ==
        doctest::Approx(hinge_ranking_loss(ni, nt, 0.3).item()).epsilon(1e-5));

  Tensor sim = similarity_logits(img, txt, scale);
  std::vector<double> a = ni.to_vector<double>(), b = nt.to_vector<double>(), s = sim.to_vector<double>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) {
      double dot = 0;
      for (int64_t e = 0; e < E; ++e) dot += a[i * E + e] * b[j * E + e];
      CHECK(s[i * B + j] == doctest::Approx(10.0 * dot).epsilon(1e-5));
    }
  CHECK_THROWS_WITH_AS(contrastive_loss(img, randn({B, E + 1}), scale),
                       doctest::Contains("image embeddings [4,6] and text embeddings [4,7]"), Error);
}

TEST_CASE("contrastive_loss_with_negatives: NegCLIP and the hinge with edits, against loops") {
  manual_seed(12);
  const int64_t B = 5, E = 4;
  Tensor img = randn({B, E}) * 2.0, txt = randn({B, E}), neg = randn({B, E}) * 0.7;
  const double log_scale = std::log(7.0);
  Tensor scale = scalar_tensor(log_scale);
  auto unit = [&](const Tensor& x) {
    std::vector<double> v = x.to_vector<double>();
    for (int64_t i = 0; i < B; ++i) {
      double n = 0;
      for (int64_t e = 0; e < E; ++e) n += v[i * E + e] * v[i * E + e];
      for (int64_t e = 0; e < E; ++e) v[i * E + e] /= std::sqrt(n);
    }
    return v;
  };
  const std::vector<double> a = unit(img), t = unit(txt), n = unit(neg);
  auto dot = [&](const std::vector<double>& x, int64_t i, const std::vector<double>& y, int64_t j) {
    double d = 0;
    for (int64_t e = 0; e < E; ++e) d += x[i * E + e] * y[j * E + e];
    return d;
  };
  // clip: image i against the B texts and the B edits; text j against the B images.
  double i2t = 0, t2i = 0;
  for (int64_t i = 0; i < B; ++i) {
    double z = 0;
    for (int64_t j = 0; j < B; ++j) z += std::exp(7.0 * dot(a, i, t, j)) + std::exp(7.0 * dot(a, i, n, j));
    i2t += std::log(z) - 7.0 * dot(a, i, t, i);
    double w = 0;
    for (int64_t k = 0; k < B; ++k) w += std::exp(7.0 * dot(t, i, a, k));
    t2i += std::log(w) - 7.0 * dot(t, i, a, i);
  }
  const double clip = 0.5 * (i2t + t2i) / B;
  CHECK(contrastive_loss_with_negatives(img, txt, neg, scale).item() == doctest::Approx(clip).epsilon(1e-5));
  // hinge: the ranking loss over the batch, plus each edit against its own image.
  const double m = 0.3;
  double hinge = 0;
  for (int64_t i = 0; i < B; ++i) {
    for (int64_t j = 0; j < B; ++j)
      if (j != i)
        hinge += std::max(0.0, m - dot(a, i, t, i) + dot(a, i, t, j)) + std::max(0.0, m - dot(a, i, t, i) + dot(a, j, t, i));
    hinge += std::max(0.0, m - dot(a, i, t, i) + dot(a, i, n, i));
  }
  ContrastiveOptions h{.kind = ContrastiveOptions::Kind::hinge, .margin = m};
  CHECK(contrastive_loss_with_negatives(img, txt, neg, scale, h).item() == doctest::Approx(hinge / B).epsilon(1e-5));

  CHECK_THROWS_WITH_AS(contrastive_loss_with_negatives(img, txt, randn({B - 1, E}), scale),
                       doctest::Contains("5 images, 5 texts and 4 negatives must be as many"), Error);
  CHECK_THROWS_WITH_AS(contrastive_loss_with_negatives(img, txt, randn({B, E + 2}), scale),
                       doctest::Contains("image embeddings [5,4] and text embeddings [5,6]"), Error);
}

TEST_CASE("contrastive_loss falls over 20 AdamW steps (projections of fixed features)") {
  for (auto kind : {ContrastiveOptions::Kind::clip, ContrastiveOptions::Kind::hinge}) {
    manual_seed(3);
    nn::Linear image_proj(10, 8), text_proj(12, 8);
    Tensor scale = scalar_tensor(std::log(1 / 0.07)).requires_grad_();
    Tensor fi = randn({6, 10}), ft = randn({6, 12});
    nn::NamedTensors params = trainable(image_proj);
    for (auto& p : trainable(text_proj)) params.emplace_back("text." + p.first, p.second);
    params.emplace_back("logit_scale", scale);
    auto losses = train_losses(params, [&] {
      return contrastive_loss(image_proj.forward(fi), text_proj.forward(ft), scale, {.kind = kind});
    });
    CAPTURE(losses.front());
    CAPTURE(losses.back());
    CHECK(losses.front() > 0);
    CHECK(losses.back() < 0.5 * losses.front());
  }
}

// ---------------------------------------------------------------------------------------------
// Masked language modelling

TEST_CASE("mask_tokens: 15% of real non-special tokens, split 80/10/10, padding and specials never, per seed") {
  const int64_t B = 128, S = 128, V = 1000, PAD = 0, UNK = 1, CLS = 2, SEP = 3, MASK = 4;
  const std::vector<int64_t> special{PAD, UNK, CLS, SEP, MASK};
  Generator data(7);
  std::vector<int64_t> raw = randint(5, V, {B, S}, {.dtype = DType::i64}, &data).to_vector<int64_t>();
  std::vector<int64_t> lengths = randint(8, S + 1, {B}, {.dtype = DType::i64}, &data).to_vector<int64_t>();
  std::vector<bool> real(static_cast<size_t>(B * S));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = lengths[b];
    raw[b * S] = CLS;
    raw[b * S + L - 1] = SEP;
    raw[b * S + L / 2] = UNK;  // a special token inside the text
    for (int64_t t = 0; t < S; ++t) {
      real[b * S + t] = t < L;
      if (t >= L && b % 2 == 0) raw[b * S + t] = PAD;  // odd rows keep ordinary ids under the mask
    }
  }
  Tensor ids = from_vector(raw, {B, S}), mask = from_vector(real, {B, S});
  Generator gen(42);
  MaskedTokens m = mask_tokens(ids, mask, V, MASK, special, 0.15, &gen);
  REQUIRE(m.input_ids.shape() == ids.shape());
  REQUIRE(m.labels.shape() == ids.shape());
  std::vector<int64_t> in = m.input_ids.to_vector<int64_t>(), lab = m.labels.to_vector<int64_t>();

  int64_t eligible = 0, selected = 0, masked = 0, randomised = 0, kept = 0;
  bool specials_untouched = true, padding_untouched = true, labels_right = true, random_ordinary = true;
  for (int64_t k = 0; k < B * S; ++k) {
    const bool is_special = std::count(special.begin(), special.end(), raw[k]) > 0;
    if (!real[k]) padding_untouched = padding_untouched && lab[k] == kIgnoreIndex && in[k] == raw[k];
    if (real[k] && is_special) specials_untouched = specials_untouched && lab[k] == kIgnoreIndex && in[k] == raw[k];
    if (!real[k] || is_special) continue;
    ++eligible;
    if (lab[k] == kIgnoreIndex) {
      labels_right = labels_right && in[k] == raw[k];
      continue;
    }
    ++selected;
    labels_right = labels_right && lab[k] == raw[k];
    if (in[k] == MASK) {
      ++masked;
    } else if (in[k] != raw[k]) {
      ++randomised;
      random_ordinary = random_ordinary && in[k] >= 5 && in[k] < V;
    } else {
      ++kept;  // (includes the rare random draw of the token itself: rate 0.1/995)
    }
  }
  CHECK(padding_untouched);
  CHECK(specials_untouched);
  CHECK(labels_right);
  CHECK(random_ordinary);
  // Binomial bounds at 5 standard deviations.
  auto within = [](double count, double n, double p) {
    return std::abs(count / n - p) <= 5.0 * std::sqrt(p * (1 - p) / n);
  };
  REQUIRE(eligible > 5000);
  CAPTURE(eligible);
  CAPTURE(selected);
  CHECK(within(selected, eligible, 0.15));
  CHECK(within(masked, selected, 0.8));
  CHECK(within(randomised, selected, 0.1));
  CHECK(within(kept, selected, 0.1));

  Generator again(42), other(43);
  MaskedTokens m2 = mask_tokens(ids, mask, V, MASK, special, 0.15, &again);
  MaskedTokens m3 = mask_tokens(ids, mask, V, MASK, special, 0.15, &other);
  CHECK(m2.input_ids.to_vector<int64_t>() == in);
  CHECK(m2.labels.to_vector<int64_t>() == lab);
  CHECK(m3.labels.to_vector<int64_t>() != lab);

  // Without a mask every position counts as real; prob 1 selects every non-special token.
  Generator g1(1);
  MaskedTokens all = mask_tokens(ids, Tensor(), V, MASK, special, 1.0, &g1);
  std::vector<int64_t> lab_all = all.labels.to_vector<int64_t>();
  for (int64_t k = 0; k < B * S; ++k) {
    const bool is_special = std::count(special.begin(), special.end(), raw[k]) > 0;
    if ((lab_all[k] != kIgnoreIndex) == is_special) {
      FAIL("position ", k, " id ", raw[k], " label ", lab_all[k]);
      break;
    }
  }
}

TEST_CASE("mask_tokens: errors") {
  Tensor ids = from_vector(std::vector<int64_t>{2, 7, 3, 0}, {1, 4});
  CHECK_THROWS_WITH_AS(mask_tokens(ids, Tensor(), 10, 12, {0}), doctest::Contains("mask_id 12 is outside the vocabulary [0,10)"),
                       Error);
  CHECK_THROWS_WITH_AS(mask_tokens(ids, make_mask({{1, 1, 1}}), 10, 4, {0}),
                       doctest::Contains("attention mask [1,3] must match ids [1,4]"), Error);
  CHECK_THROWS_WITH_AS(mask_tokens(ids, Tensor(), 5, 4, {0}),
                       doctest::Contains("id 7 at position 1 is outside the vocabulary [0,5)"), Error);
  CHECK_THROWS_WITH_AS(mask_tokens(ids, Tensor(), 10, 4, {0}, 1.5), doctest::Contains("prob must be in [0,1]"), Error);
  CHECK_THROWS_WITH_AS(mask_tokens(randn({1, 4}), Tensor(), 10, 4, {0}), doctest::Contains("must be [B,S] of integers"),
                       Error);
}

TEST_CASE("mlm_loss: cross-entropy over the selected tokens only, against loops") {
  manual_seed(4);
  Tensor logits = randn({2, 4, 9});
  std::vector<int64_t> labels{-100, 3, -100, 8, 0, -100, -100, 5};
  CHECK(mlm_loss(logits, from_vector(labels, {2, 4})).item() ==
        doctest::Approx(reference_cross_entropy(logits.reshape({8, 9}), labels)).epsilon(1e-6));
  std::vector<int64_t> none(8, -100);
  CHECK(mlm_loss(logits, from_vector(none, {2, 4})).item() == 0.0);
}

TEST_CASE("MLMHead + mlm_loss falls over 20 AdamW steps on a fixed batch") {
  manual_seed(5);
  const int64_t V = 30;
  MLMHead head(16, V);
  Tensor hidden = randn({4, 8, 16});
  Tensor ids = randint(5, V, {4, 8});
  Generator gen(3);
  MaskedTokens m = mask_tokens(ids, Tensor(), V, 4, {0, 1, 2, 3, 4}, 0.5, &gen);
  auto losses = train_losses(trainable(head), [&] { return mlm_loss(head.forward(hidden), m.labels); });
  CHECK(losses.back() < 0.5 * losses.front());
}

// ---------------------------------------------------------------------------------------------
// Image–text matching

TEST_CASE("sample_hard_negatives never picks the positive and follows the masked softmax") {
  // Row 0 of sim is image 0 against texts 0..4; column 1 is text 1 against images 0..4.
  Tensor sim = tensor({{5.0, 1.0, 0.0, -1.0, 2.0},
                       {0.5, 9.0, 0.0, 1.5, -0.5},
                       {1.0, -2.0, 3.0, 0.0, 0.0},
                       {0.0, 0.7, 0.0, 4.0, 1.0},
                       {2.0, 0.0, 1.0, 0.0, 8.0}});
  std::vector<double> s = sim.to_vector<double>();
  const int64_t B = 5, draws = 20000;
  Generator gen(11);
  std::vector<int64_t> row_counts(B, 0), col_counts(B, 0);
  bool never_positive = true;
  for (int64_t n = 0; n < draws; ++n) {
    HardNegatives neg = sample_hard_negatives(sim, &gen);
    std::vector<int64_t> t = neg.text_for_image.to_vector<int64_t>(), im = neg.image_for_text.to_vector<int64_t>();
    for (int64_t i = 0; i < B; ++i) never_positive = never_positive && t[i] != i && im[i] != i;
    ++row_counts[t[0]];
    ++col_counts[im[1]];
  }
  CHECK(never_positive);
  // Pearson's χ² against p(j) ∝ exp(sim) over the 4 others: 3 degrees of freedom, whose
  // 99.99% quantile is 21.1.
  auto chi2 = [&](const std::vector<int64_t>& counts, auto value, int64_t skip) {
    double z = 0, stat = 0;
    for (int64_t k = 0; k < B; ++k)
      if (k != skip) z += std::exp(value(k));
    for (int64_t k = 0; k < B; ++k) {
      if (k == skip) {
        CHECK(counts[k] == 0);
        continue;
      }
      const double expected = draws * std::exp(value(k)) / z;
      stat += (counts[k] - expected) * (counts[k] - expected) / expected;
    }
    return stat;
  };
  const double row_stat = chi2(row_counts, [&](int64_t j) { return s[0 * B + j]; }, 0);
  const double col_stat = chi2(col_counts, [&](int64_t i) { return s[i * B + 1]; }, 1);
  CAPTURE(row_stat);
  CAPTURE(col_stat);
  CHECK(row_stat < 21.1);
  CHECK(col_stat < 21.1);

  // A seed fixes the draws.
  Generator a(5), b(5);
  CHECK(sample_hard_negatives(sim, &a).text_for_image.to_vector<int64_t>() ==
        sample_hard_negatives(sim, &b).text_for_image.to_vector<int64_t>());
  // Rows of −∞ (nothing to prefer) fall back to a uniform choice, still never the positive.
  Tensor flat = full({3, 3}, -std::numeric_limits<double>::infinity());
  HardNegatives f = sample_hard_negatives(flat, &a);
  for (int64_t i = 0; i < 3; ++i) CHECK(f.text_for_image.to_vector<int64_t>()[i] != i);

  CHECK_THROWS_WITH_AS(sample_hard_negatives(randn({1, 1})), doctest::Contains("a batch of 1 has no negative pair"),
                       Error);
  CHECK_THROWS_WITH_AS(sample_hard_negatives(randn({2, 3})), doctest::Contains("[2,3] must be a square"), Error);
  Tensor bad = sim.clone();
  {
    NoGradGuard g;
    bad.slice(0, 2, 3).fill_(std::nan(""));
  }
  CHECK_THROWS_WITH_AS(sample_hard_negatives(bad), doctest::Contains("the similarity of image 2 holds NaN"), Error);
}

TEST_CASE("itm_loss: B positives then 2B hard negatives, labels 1/0, the loss against loops") {
  manual_seed(6);
  const int64_t B = 4, D = 6;
  Tensor fi = randn({B, D}), ft = randn({B, D});
  ITMHead head(D);
  int calls = 0;
  FusePairs fuse = [&](const Tensor& ii, const Tensor& ti) {
    ++calls;
    return index_select(fi, 0, ii) * index_select(ft, 0, ti);
  };
  Tensor sim = matmul(fi, ft.transpose(0, 1));
  Generator gen(8);
  ITMResult r = itm_loss(fuse, head, sim, &gen);
  CHECK(calls == 1);
  std::vector<int64_t> ii = r.image_index.to_vector<int64_t>(), ti = r.text_index.to_vector<int64_t>(),
                       labels = r.labels.to_vector<int64_t>();
  REQUIRE(ii.size() == 12);
  for (int64_t k = 0; k < 3 * B; ++k) {
    CAPTURE(k);
    CHECK(labels[k] == (k < B ? 1 : 0));
    CHECK((ii[k] == ti[k]) == (k < B));  // a negative pair is never a positive one
    if (k < B) CHECK(ii[k] == k);
    if (k >= B && k < 2 * B) CHECK(ii[k] == k - B);  // each image with a hard negative text
    if (k >= 2 * B) CHECK(ti[k] == k - 2 * B);       // each text with a hard negative image
  }
  Generator same(8);
  HardNegatives neg = sample_hard_negatives(sim, &same);
  CHECK(std::vector<int64_t>(ti.begin() + B, ti.begin() + 2 * B) == neg.text_for_image.to_vector<int64_t>());
  CHECK(std::vector<int64_t>(ii.begin() + 2 * B, ii.end()) == neg.image_for_text.to_vector<int64_t>());
  CHECK(r.logits.shape() == Shape{12, 2});
  CHECK(r.loss.item() == doctest::Approx(reference_cross_entropy(r.logits, labels)).epsilon(1e-6));

  FusePairs wrong = [&](const Tensor& a, const Tensor&) { return randn({a.size(0), D + 1}); };
  CHECK_THROWS_WITH_AS(itm_loss(wrong, head, sim, &gen),
                       doctest::Contains("the fusion returned [12,7] for 12 pairs; expected [12,6]"), Error);
}

TEST_CASE("itm_loss_edits: B positives then each image with its edit (text B+i), the loss against loops") {
  manual_seed(13);
  const int64_t B = 5, D = 6;
  Tensor fi = randn({B, D}), ft = randn({2 * B, D});  // texts 0..B−1, then their edits
  ITMHead head(D);
  int calls = 0;
  FusePairs fuse = [&](const Tensor& ii, const Tensor& ti) {
    ++calls;
    return index_select(fi, 0, ii) * index_select(ft, 0, ti);
  };
  ITMResult r = itm_loss_edits(fuse, head, B);
  CHECK(calls == 1);
  std::vector<int64_t> ii = r.image_index.to_vector<int64_t>(), ti = r.text_index.to_vector<int64_t>(),
                       labels = r.labels.to_vector<int64_t>();
  REQUIRE(ii.size() == 2 * B);
  for (int64_t k = 0; k < 2 * B; ++k) {
    CAPTURE(k);
    CHECK(ii[k] == k % B);
    CHECK(ti[k] == k);  // the caption (k < B), then image k−B with the edit of its caption
    CHECK(labels[k] == (k < B ? 1 : 0));
  }
  CHECK(r.logits.shape() == Shape{2 * B, 2});
  CHECK(r.loss.item() == doctest::Approx(reference_cross_entropy(r.logits, labels)).epsilon(1e-6));
  FusePairs wrong = [&](const Tensor& a, const Tensor&) { return randn({a.size(0) + 1, D}); };
  CHECK_THROWS_WITH_AS(itm_loss_edits(wrong, head, B),
                       doctest::Contains("the fusion returned [11,6] for 10 pairs; expected [10,6]"), Error);
  // The first 3 samples only: images 0..2 with their captions 0..2, then with their edits B..B+2.
  ITMResult some = itm_loss_edits(fuse, head, B, 3);
  CHECK(some.image_index.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 0, 1, 2});
  CHECK(some.text_index.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 5, 6, 7});
  CHECK(some.labels.to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1, 0, 0, 0});
  CHECK(some.logits.shape() == Shape{6, 2});
  CHECK(some.loss.item() ==
        doctest::Approx(reference_cross_entropy(some.logits, some.labels.to_vector<int64_t>())).epsilon(1e-6));
  CHECK(itm_loss_edits(fuse, head, B, B).loss.item() == r.loss.item());
  CHECK_THROWS_WITH_AS(itm_loss_edits(fuse, head, B, B + 1),
                       doctest::Contains("itm_loss_edits: samples 6 must be in [1,5]"), Error);
  CHECK_THROWS_WITH_AS(itm_loss_edits(fuse, head, B, -1),
                       doctest::Contains("itm_loss_edits: samples -1 must be in [1,5]"), Error);
}

TEST_CASE("itm_loss falls over 20 AdamW steps on a fixed batch") {
  manual_seed(7);
  const int64_t B = 6, D = 8;
  nn::Linear fuse_proj(2 * D, D);
  ITMHead head(D);
  Tensor fi = randn({B, D}), ft = randn({B, D});
  Tensor sim = randn({B, B});
  FusePairs fuse = [&](const Tensor& ii, const Tensor& ti) {
    return tanh(fuse_proj.forward(cat({index_select(fi, 0, ii), index_select(ft, 0, ti)}, 1)));
  };
  nn::NamedTensors params = trainable(head);
  for (auto& p : trainable(fuse_proj)) params.emplace_back("fuse." + p.first, p.second);
  auto losses = train_losses(params, [&] {
    Generator gen(1);  // the same negatives at every step: a fixed batch
    return itm_loss(fuse, head, sim, &gen).loss;
  }, 20, 3e-2);
  CAPTURE(losses.front());
  CAPTURE(losses.back());
  // Below what always answering "no match" (2/3 of the pairs) can reach: 0.637.
  CHECK(losses.back() < 0.5 * losses.front());
}

TEST_CASE("VQA and classification heads: cross-entropy falls over 20 AdamW steps") {
  manual_seed(8);
  Tensor cls = randn({8, 12});
  Tensor answers = randint(0, 10, {8});
  VQAHead vqa(12, 10);
  auto v = train_losses(trainable(vqa), [&] { return cross_entropy(vqa.forward(cls), answers); });
  CHECK(v.back() < 0.5 * v.front());
  ClassificationHead head(12, 5);
  Tensor classes = randint(0, 5, {8});
  auto c = train_losses(trainable(head), [&] { return cross_entropy(head.forward(cls), classes); });
  CHECK(c.back() < 0.5 * c.front());
}

// ---------------------------------------------------------------------------------------------
// Gradients

TEST_CASE("gradcheck (f64) of each head with its loss, over its inputs and every parameter") {
  manual_seed(9);
  SUBCASE("MLMHead + mlm_loss") {
    MLMHead head(4, 7);
    Tensor labels = from_vector(std::vector<int64_t>{-100, 3, 6, -100, 0, 2}, {2, 3});
    auto inputs = inputs_and_parameters({randn({2, 3, 4})}, head);
    auto r = gradcheck([&](const std::vector<Tensor>& a) {
      bind_parameters(head, a, 1);
      return mlm_loss(head.forward(a[0]), labels);
    }, inputs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == 24 + head.num_parameters());
  }
  SUBCASE("VQAHead + cross_entropy") {
    VQAHead vqa(3, 5);
    Tensor answers = from_vector(std::vector<int64_t>{4, 0, 2}, {3});
    auto inputs = inputs_and_parameters({randn({3, 3})}, vqa);
    auto r = gradcheck([&](const std::vector<Tensor>& a) {
      bind_parameters(vqa, a, 1);
      return cross_entropy(vqa.forward(a[0]), answers);
    }, inputs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == 9 + vqa.num_parameters());
  }
  SUBCASE("ClassificationHead + cross_entropy") {
    ClassificationHead cls(3, 4);
    Tensor classes = from_vector(std::vector<int64_t>{3, 0, 2}, {3});
    auto inputs = inputs_and_parameters({randn({3, 3})}, cls);
    auto r = gradcheck([&](const std::vector<Tensor>& a) {
      bind_parameters(cls, a, 1);
      return cross_entropy(cls.forward(a[0]), classes);
    }, inputs);
    INFO(r.message);
    CHECK(r.ok);
  }
  SUBCASE("ITMHead + itm_loss through a fusion of the pair's features") {
    ITMHead head(3);
    Tensor sim = randn({4, 4});
    auto inputs = inputs_and_parameters({randn({4, 3}), randn({4, 3})}, head);
    auto r = gradcheck([&](const std::vector<Tensor>& a) {
      bind_parameters(head, a, 2);
      FusePairs fuse = [&](const Tensor& ii, const Tensor& ti) {
        return tanh(index_select(a[0], 0, ii) + index_select(a[1], 0, ti));
      };
      Generator gen(2);  // the same negatives at every evaluation
      return itm_loss(fuse, head, sim, &gen).loss;
    }, inputs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == 24 + head.num_parameters());
  }
  SUBCASE("contrastive_loss_with_negatives, clip and hinge") {
    for (auto kind : {ContrastiveOptions::Kind::clip, ContrastiveOptions::Kind::hinge}) {
      auto r = gradcheck([&](const std::vector<Tensor>& a) {
        return contrastive_loss_with_negatives(a[0], a[1], a[2], a[3], {.kind = kind, .margin = 0.5});
      }, {randn({4, 3}), randn({4, 3}), randn({4, 3}), scalar_tensor(1.3)});
      INFO(r.message);
      CHECK(r.ok);
      CHECK(r.elements_checked == 37);
    }
  }
  SUBCASE("contrastive_loss, clip and hinge, through the normalisation and the logit scale") {
    for (auto kind : {ContrastiveOptions::Kind::clip, ContrastiveOptions::Kind::hinge}) {
      auto r = gradcheck([&](const std::vector<Tensor>& a) {
        return contrastive_loss(a[0], a[1], a[2], {.kind = kind, .margin = 0.5});
      }, {randn({4, 3}), randn({4, 3}), scalar_tensor(1.3)});
      INFO(r.message);
      CHECK(r.ok);
    }
  }
}
