// CaptionDecoder: config and presets, shapes and names, causality and image masking as
// invariances, the captioning loss against a hand-written one, gradients (gradcheck in f64 and
// every parameter reached), training lowers the loss, and decoding: greedy against a plain
// argmax loop, beam 1 = greedy, beam scores recomputed by teacher forcing, ranked best first,
// and equal to an exhaustive search when the beam holds every sequence.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/mmgrad.h"
#include "models/caption_decoder.h"
#include "models/objectives.h"
#include "tests/models/model_test_util.h"

using namespace mmg;
using namespace mmg::models;
using namespace mmg::test;

namespace {

// A very small decoder for exact checks: vocabulary of 7 (PAD 0, BOS 2, EOS 3).
CaptionDecoderConfig nano_config(bool tied = false) {
  CaptionDecoderConfig c;
  c.vocab_size = 7, c.max_len = 5, c.dim = 4, c.depth = 1, c.heads = 2, c.mlp_ratio = 1.0, c.memory_dim = 3;
  c.tie_word_embeddings = tied;
  return c;
}

Tensor ids(const std::vector<std::vector<int64_t>>& rows) {
  std::vector<int64_t> v;
  for (auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return from_vector(v, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

// log p(tokens | image) by teacher forcing: Σ_t log softmax(logits[t])[token t+1] over the
// sequence BOS, tokens..., computed with plain loops over the forward's logits.
double sequence_log_prob(const CaptionDecoder& dec, const Tensor& image, const std::vector<int64_t>& generated,
                         bool with_eos) {
  std::vector<int64_t> seq{dec.config.bos_id};
  seq.insert(seq.end(), generated.begin(), generated.end());
  if (with_eos) seq.push_back(dec.config.eos_id);
  std::vector<int64_t> input(seq.begin(), seq.end() - 1);
  NoGradGuard no_grad;
  Tensor logits = dec.forward(from_vector(input, {1, static_cast<int64_t>(input.size())}), image);
  const int64_t T = logits.size(1), V = logits.size(2);
  std::vector<double> l = logits.to_vector<double>();
  double total = 0;
  for (int64_t t = 0; t < T; ++t) {
    double mx = -1e300, z = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, l[t * V + v]);
    for (int64_t v = 0; v < V; ++v) z += std::exp(l[t * V + v] - mx);
    total += l[t * V + seq[t + 1]] - mx - std::log(z);
  }
  return total;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Config

TEST_CASE("CaptionDecoderConfig: presets, JSON round trip and errors") {
  for (const std::string& name : CaptionDecoderConfig::preset_names()) {
    CAPTURE(name);
    CaptionDecoderConfig c = CaptionDecoderConfig::preset(name);
    CaptionDecoderConfig back = CaptionDecoderConfig::from_json(c.to_json());
    CHECK(back.to_json() == c.to_json());
  }
  CHECK(CaptionDecoderConfig::preset("decoder-tiny").memory_dim == 128);
  CaptionDecoderConfig partial = CaptionDecoderConfig::from_json({{"dim", 64}, {"heads", 2}});
  CHECK(partial.dim == 64);
  CHECK(partial.vocab_size == CaptionDecoderConfig{}.vocab_size);  // absent keys keep their defaults
  CHECK_THROWS_WITH_AS(CaptionDecoderConfig::from_json({{"dims", 64}}), doctest::Contains("unknown key 'dims'"),
                       Error);
  CHECK_THROWS_WITH_AS(CaptionDecoderConfig::from_json({{"dim", "wide"}}), doctest::Contains("key 'dim' must be an integer, got string"), Error);
  CHECK_THROWS_WITH_AS(CaptionDecoderConfig::from_json({{"dim", 30}, {"heads", 4}}),
                       doctest::Contains("dim 30 is not divisible by heads 4"), Error);
  CHECK_THROWS_WITH_AS(CaptionDecoderConfig::from_json({{"eos_id", 5000}}),
                       doctest::Contains("eos_id 5000 is outside the vocabulary"), Error);
  CHECK_THROWS_WITH_AS(CaptionDecoderConfig::preset("decoder-huge"),
                       doctest::Contains("unknown preset 'decoder-huge' (known: decoder-tiny, decoder-micro)"), Error);
}

// ---------------------------------------------------------------------------------------------
// Forward

TEST_CASE("CaptionDecoder: parameter names and shapes, tied and untied") {
  manual_seed(1);
  CaptionDecoder dec(CaptionDecoderConfig::preset("decoder-micro"));
  auto sd = dec.state_dict();
  CHECK(sd.at("token_embedding.weight").shape() == Shape{50, 16});
  CHECK(sd.at("position_embedding.weight").shape() == Shape{8, 16});
  CHECK(sd.at("layers.0.cross_attn.k_proj.weight").shape() == Shape{16, 16});
  CHECK(sd.at("layers.0.self_attn.q_proj.weight").shape() == Shape{16, 16});
  CHECK(sd.count("layers.0.ln_3.weight") == 1);
  CHECK(sd.at("ln_f.weight").shape() == Shape{16});
  CHECK(sd.at("lm_head.weight").shape() == Shape{50, 16});
  CHECK(sd.at("lm_head.bias").shape() == Shape{50});

  CaptionDecoderConfig c = nano_config(/*tied=*/true);
  CaptionDecoder tied(c);
  CHECK(tied.state_dict().count("lm_head.weight") == 0);
  CHECK(tied.num_parameters() == CaptionDecoder(nano_config(false)).num_parameters() - 7 * 4 - 7);
  Tensor h = randn({2, 3, 4});
  CHECK(allclose(tied.project(h), matmul(h, tied.token_embedding->weight.transpose(0, 1)), 1e-6, 1e-6));
}

TEST_CASE("CaptionDecoder: logits shape, and the errors for bad inputs") {
  manual_seed(2);
  CaptionDecoder dec(CaptionDecoderConfig::preset("decoder-micro"));
  Tensor tokens = randint(0, 50, {3, 7});
  Tensor image = randn({3, 5, 16});
  CHECK(dec.forward(tokens, image).shape() == Shape{3, 7, 50});
  CHECK_THROWS_WITH_AS(dec.forward(tokens, randn({3, 5, 15})), doctest::Contains("image tokens [3,5,15] must be [B=3,N,16]"),
                       Error);
  CHECK_THROWS_WITH_AS(dec.forward(randint(0, 50, {3, 9}), image),
                       doctest::Contains("tokens [3,9] has 9 positions; max_len is 8"), Error);
  CHECK_THROWS_WITH_AS(dec.forward(randn({3, 7}), image), doctest::Contains("must be [B,T] i64"), Error);
  CHECK_THROWS_WITH_AS(dec.greedy_decode(image, 9), doctest::Contains("max_new 9 must be in [1, max_len 8]"),
                       Error);
  CHECK_THROWS_WITH_AS(dec.beam_search(image, 0), doctest::Contains("beam must be >= 1"), Error);
}

TEST_CASE("CaptionDecoder: position t sees tokens <= t only, and every image token not masked out") {
  manual_seed(3);
  CaptionDecoder dec(CaptionDecoderConfig::preset("decoder-micro"));
  Tensor image = randn({2, 4, 16});
  std::vector<std::vector<int64_t>> rows{{1, 5, 6, 7, 8, 9}, {1, 10, 11, 12, 13, 14}};
  Tensor base = dec.forward(ids(rows), image);
  rows[0][3] = 40;  // change token 3 of row 0
  rows[1][3] = 41;
  Tensor changed = dec.forward(ids(rows), image);
  CHECK(allclose(base.slice(1, 0, 3), changed.slice(1, 0, 3), 0, 0));  // bit-identical before position 3
  CHECK_FALSE(allclose(base.slice(1, 3, 6), changed.slice(1, 3, 6), 1e-4, 1e-4));

  // The image matters, but not the tokens a mask hides.
  Tensor mask = make_mask({{1, 1, 0, 0}, {1, 1, 1, 0}});
  Tensor other = image.clone();
  {
    NoGradGuard g;
    other.slice(1, 3, 4).copy_(randn({2, 1, 16}));  // hidden in both rows
    other.slice(0, 0, 1).slice(1, 2, 3).copy_(randn({1, 1, 16}));  // hidden in row 0 only
  }
  CHECK(allclose(dec.forward(ids(rows), image, mask).slice(0, 0, 1), dec.forward(ids(rows), other, mask).slice(0, 0, 1),
                 1e-6, 1e-6));
  CHECK(allclose(dec.forward(ids(rows), image, mask), dec.forward(ids(rows), other, mask), 1e-6, 1e-6));
  CHECK_FALSE(allclose(dec.forward(ids(rows), image), dec.forward(ids(rows), other), 1e-4, 1e-4));
}

// ---------------------------------------------------------------------------------------------
// Loss and gradients

TEST_CASE("caption_lm_loss: shifted cross-entropy ignoring PAD, against loops") {
  manual_seed(4);
  const int64_t B = 2, T = 5, V = 6, pad = 0;
  Tensor logits = randn({B, T, V});
  std::vector<std::vector<int64_t>> rows{{1, 3, 4, 2, 0}, {1, 5, 2, 0, 0}};
  double total = 0;
  int count = 0;
  std::vector<double> l = logits.to_vector<double>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) {
      const int64_t target = rows[b][t + 1];
      if (target == pad) continue;
      const double* x = &l[(b * T + t) * V];
      double mx = *std::max_element(x, x + V), z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(x[v] - mx);
      total += -(x[target] - mx - std::log(z));
      ++count;
    }
  CHECK(count == 5);
  CHECK(caption_lm_loss(logits, ids(rows), pad).item() == doctest::Approx(total / count).epsilon(1e-6));
  CHECK_THROWS_WITH_AS(caption_lm_loss(logits, ids({{1, 2, 3, 4}, {1, 2, 3, 4}}), pad),
                       doctest::Contains("caption_lm_loss: logits [2,5,6] must be [B,T,V] for tokens [2,4]"), Error);
}

TEST_CASE("gradcheck of a nano caption decoder over the image tokens and every parameter (f64)") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    manual_seed(5);
    CaptionDecoder dec(nano_config(tied));
    Tensor tokens = ids({{2, 4, 5, 6}, {2, 5, 3, 0}});
    Tensor mask = make_mask({{1, 1, 0}, {1, 1, 1}});
    std::vector<Tensor> inputs = inputs_and_parameters({randn({2, 3, 3})}, dec);
    auto fn = [&](const std::vector<Tensor>& a) {
      bind_parameters(dec, a, 1);
      return dec.forward(tokens, a[0], mask);
    };
    GradcheckResult r = gradcheck(fn, inputs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == 18 + dec.num_parameters());
    CHECK(dec.token_embedding->weight.dtype() == DType::f64);  // it really ran in f64
  }
}

TEST_CASE("CaptionDecoder: after one backward of the caption loss every parameter has a gradient") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    manual_seed(6);
    CaptionDecoderConfig c = CaptionDecoderConfig::preset("decoder-micro");
    c.tie_word_embeddings = tied;
    c.dropout = 0.1;
    CaptionDecoder dec(c);
    Tensor image = randn({3, 4, 16}).requires_grad_();
    Tensor tokens = ids({{2, 7, 8, 9, 3, 0}, {2, 10, 3, 0, 0, 0}, {2, 11, 12, 13, 14, 3}});
    caption_lm_loss(dec.forward(tokens, image), tokens, c.pad_id).backward();
    check_every_parameter_has_a_gradient(dec);
    REQUIRE(image.grad().defined());
    CHECK(abs(image.grad()).sum().item() > 0);
  }
}

TEST_CASE("CaptionDecoder: 20 Adam steps on a fixed batch lower the caption loss, and greedy then writes the captions") {
  manual_seed(7);
  CaptionDecoder dec(CaptionDecoderConfig::preset("decoder-micro"));
  // Three images, three different captions.
  Tensor image = randn({3, 4, 16});
  Tensor tokens = ids({{2, 7, 8, 9, 3, 0}, {2, 10, 3, 0, 0, 0}, {2, 11, 12, 13, 14, 3}});
  auto losses = train_losses(trainable(dec),
                             [&] { return caption_lm_loss(dec.forward(tokens, image), tokens, 0); }, 20, 1e-2);
  CHECK(losses.back() < 0.5 * losses.front());
  for (size_t i = 1; i < losses.size(); ++i) CHECK(std::isfinite(losses[i]));
  // A few more steps make the captions certain enough to be decoded back.
  train_losses(trainable(dec), [&] { return caption_lm_loss(dec.forward(tokens, image), tokens, 0); }, 40,
               1e-2);
  auto out = dec.greedy_decode(image);
  CHECK(out[0] == std::vector<int64_t>{7, 8, 9});
  CHECK(out[1] == std::vector<int64_t>{10});
  CHECK(out[2] == std::vector<int64_t>{11, 12, 13, 14});
  auto beams = dec.beam_search(image, 3);
  CHECK(beams[2][0].tokens == std::vector<int64_t>{11, 12, 13, 14});
  CHECK(beams[2][0].finished);
  CHECK(dec.is_training());  // decoding restored the mode
}

// ---------------------------------------------------------------------------------------------
// Decoding

TEST_CASE("greedy_decode equals a loop of forward + argmax, row by row") {
  manual_seed(8);
  CaptionDecoderConfig c = CaptionDecoderConfig::preset("decoder-micro");
  c.vocab_size = 8;  // EOS (3) wins now and then
  CaptionDecoder dec(c);
  dec.eval();
  Tensor image = randn({4, 3, 16}) * 3.0;
  const int64_t max_new = 6;
  auto out = dec.greedy_decode(image, max_new);
  REQUIRE(out.size() == 4);
  for (int64_t b = 0; b < 4; ++b) {
    CAPTURE(b);
    std::vector<int64_t> seq{c.bos_id}, expected;
    Tensor img = image.slice(0, b, b + 1);
    for (int64_t step = 0; step < max_new; ++step) {
      NoGradGuard g;
      Tensor logits = dec.forward(from_vector(seq, {1, static_cast<int64_t>(seq.size())}), img);
      const int64_t next = argmax(select(logits, 1, logits.size(1) - 1), -1).to_vector<int64_t>()[0];
      if (next == c.eos_id) break;
      seq.push_back(next);
      expected.push_back(next);
    }
    CHECK(out[b] == expected);
  }
}

TEST_CASE("beam search with beam 1 is greedy decoding, for every length penalty") {
  for (uint64_t seed : {9, 10, 11}) {
    manual_seed(seed);
    CaptionDecoderConfig c = CaptionDecoderConfig::preset("decoder-micro");
    c.vocab_size = 6;
    CaptionDecoder dec(c);
    Tensor image = randn({5, 3, 16}) * 3.0;
    auto greedy = dec.greedy_decode(image, 8);
    for (double lp : {0.0, 0.6, 1.0, 2.0}) {
      CAPTURE(lp);
      auto beams = dec.beam_search(image, 1, 8, lp);
      REQUIRE(beams.size() == 5);
      for (size_t b = 0; b < 5; ++b) {
        REQUIRE(beams[b].size() == 1);
        CHECK(beams[b][0].tokens == greedy[b]);
      }
    }
  }
}

TEST_CASE("beam search: scores recomputed by teacher forcing, ranked best first, at most `beam` hypotheses") {
  manual_seed(12);
  CaptionDecoderConfig c = CaptionDecoderConfig::preset("decoder-micro");
  c.vocab_size = 6;
  CaptionDecoder dec(c);
  dec.eval();
  Tensor image = randn({3, 3, 16}) * 3.0;
  for (double lp : {0.0, 1.0}) {
    auto beams = dec.beam_search(image, 4, 6, lp);
    for (size_t b = 0; b < beams.size(); ++b) {
      CAPTURE(b);
      REQUIRE(!beams[b].empty());
      CHECK(beams[b].size() <= 4);
      for (size_t k = 0; k < beams[b].size(); ++k) {
        const Hypothesis& h = beams[b][k];
        if (k > 0) CHECK(h.score <= beams[b][k - 1].score);
        const double lpsum = sequence_log_prob(dec, image.slice(0, b, b + 1), h.tokens, h.finished);
        CHECK(h.log_prob == doctest::Approx(lpsum).epsilon(1e-5));
        const double length = static_cast<double>(h.tokens.size() + (h.finished ? 1 : 0));
        CHECK(h.score == doctest::Approx(lpsum / std::pow(length, lp)).epsilon(1e-5));
        CHECK(std::find(h.tokens.begin(), h.tokens.end(), c.eos_id) == h.tokens.end());
        if (!h.finished) CHECK(h.tokens.size() == 6);
      }
    }
  }
}

TEST_CASE("beam search with a beam that holds every sequence is an exhaustive search") {
  // Vocabulary of 5 (EOS = 3), at most 3 tokens: 1 + 4 + 16 sequences end in EOS and 64 run out
  // of room, 85 in all. With beam 85 nothing is ever dropped, so the ranking must be the brute
  // force ranking of every sequence by log_prob / length^penalty.
  manual_seed(13);
  CaptionDecoderConfig c = nano_config();
  c.vocab_size = 5;
  c.max_len = 4;
  CaptionDecoder dec(c);
  Tensor image = randn({1, 3, 3}) * 2.0;
  const double lp = 1.0;
  std::vector<std::pair<double, std::vector<int64_t>>> all;  // (score, tokens; a trailing EOS marks finished)
  std::function<void(std::vector<int64_t>)> visit = [&](std::vector<int64_t> prefix) {
    // prefix ends here with EOS
    const double with_eos = sequence_log_prob(dec, image, prefix, true);
    auto finished = prefix;
    finished.push_back(c.eos_id);
    all.push_back({with_eos / std::pow(static_cast<double>(finished.size()), lp), finished});
    if (prefix.size() + 1 == 3) {  // or is extended by one last token and runs out of room
      for (int64_t v = 0; v < 5; ++v) {
        if (v == c.eos_id) continue;
        std::vector<int64_t> full(prefix.size() + 1, v);  // prefix, then v
        std::copy(prefix.begin(), prefix.end(), full.begin());
        all.push_back({sequence_log_prob(dec, image, full, false) / std::pow(3.0, lp), full});
      }
      return;
    }
    for (int64_t v = 0; v < 5; ++v)
      if (v != c.eos_id) {
        auto next = prefix;
        next.push_back(v);
        visit(next);
      }
  };
  visit({});
  REQUIRE(all.size() == 85);
  std::stable_sort(all.begin(), all.end(), [](auto& x, auto& y) { return x.first > y.first; });

  auto beams = dec.beam_search(image, 85, 3, lp);
  REQUIRE(beams[0].size() == 85);
  for (size_t k = 0; k < 10; ++k) {
    CAPTURE(k);
    std::vector<int64_t> got = beams[0][k].tokens;
    if (beams[0][k].finished) got.push_back(c.eos_id);
    CHECK(beams[0][k].score == doctest::Approx(all[k].first).epsilon(1e-5));
    if (k + 1 < all.size() && std::abs(all[k].first - all[k + 1].first) > 1e-6 &&
        (k == 0 || std::abs(all[k].first - all[k - 1].first) > 1e-6))
      CHECK(got == all[k].second);
  }
}
