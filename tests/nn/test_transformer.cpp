// Transformer building blocks: MultiHeadAttention against a reference composed from plain ops,
// masking and causality as invariances, PatchEmbedding against a per-patch loop, the
// sinusoidal tables against their formulas, gradchecks of tiny layers over inputs and
// parameters, gradients reaching every parameter, state-dict names and round trips.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "core/mmgrad.h"
#include "tests/nn/module_test_util.h"
#include "nn/attention.h"
#include "nn/embeddings.h"
#include "nn/transformer.h"

using namespace mmg;
using namespace mmg::nn;
using namespace mmg::test;

namespace {

// y = x·Wᵀ + b with matmul (not the linear op the module uses).
Tensor affine(const Linear& l, const Tensor& x) { return matmul(x, l.weight.transpose(0, 1)) + l.bias; }

// Multi-head attention written out with matmul and softmax; the mask is an additive table of
// 0 / −∞ filled by loops. `probs` (optional) receives P averaged over heads. Every query must
// see at least one key (a row of −∞ has no softmax).
Tensor reference_attention(const MultiHeadAttention& m, const Tensor& xq, const Tensor& xkv,
                           const std::vector<std::vector<int>>& mask, bool causal, Tensor* probs = nullptr) {
  const int64_t B = xq.size(0), Sq = xq.size(1), Sk = xkv.size(1), H = m.heads, d = m.head_dim;
  auto split = [&](const Tensor& t, int64_t S) { return t.reshape({B, S, H, d}).permute({0, 2, 1, 3}); };
  Tensor q = split(affine(*m.q_proj, xq), Sq);
  Tensor k = split(affine(*m.k_proj, xkv), Sk);
  Tensor v = split(affine(*m.v_proj, xkv), Sk);
  std::vector<double> add(static_cast<size_t>(B * Sq * Sk), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Sq; ++i)
      for (int64_t j = 0; j < Sk; ++j) {
        bool hidden = (!mask.empty() && !mask[b][j]) || (causal && j > i);
        if (hidden) add[(b * Sq + i) * Sk + j] = -std::numeric_limits<double>::infinity();
      }
  Tensor scores = matmul(q, k.transpose(2, 3)) / std::sqrt(static_cast<double>(d));
  Tensor p = softmax(scores + from_vector(add, {B, 1, Sq, Sk}).to(scores.dtype()), -1);
  if (probs) *probs = p.mean({1});
  Tensor o = matmul(p, v).permute({0, 2, 1, 3}).reshape({B, Sq, H * d});
  return affine(*m.out_proj, o);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// MultiHeadAttention

TEST_CASE("MultiHeadAttention: names, shapes and the dim % heads error") {
  MultiHeadAttention m(12, 3, 0.0, 5);
  CHECK(names_of(m) == std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                                "v_proj.weight", "v_proj.bias", "out_proj.weight", "out_proj.bias"});
  CHECK(m.k_proj->weight.shape() == Shape{12, 5});
  CHECK(m.q_proj->weight.shape() == Shape{12, 12});
  CHECK(m.head_dim == 4);
  CHECK(m.forward(randn({2, 7, 12}), randn({2, 4, 5})).shape() == Shape{2, 7, 12});
  CHECK(m.attention_weights(randn({2, 7, 12}), randn({2, 4, 5})).shape() == Shape{2, 7, 4});
  MultiHeadAttention nobias(8, 2, 0.0, 0, false);
  CHECK(nobias.num_parameters() == 4 * 64);
  CHECK_THROWS_WITH_AS(MultiHeadAttention(10, 4), doctest::Contains("dim 10 is not divisible by heads 4"), Error);
}

TEST_CASE("MultiHeadAttention equals attention composed from matmul and softmax") {
  manual_seed(3);
  struct Case {
    int64_t dim, heads, kv_dim, Sq, Sk;
    bool masked, causal;
  };
  for (Case c : {Case{8, 2, 8, 5, 5, false, false}, Case{8, 2, 8, 5, 5, true, false}, Case{8, 2, 8, 5, 5, true, true},
                 Case{8, 4, 6, 3, 5, true, false}, Case{8, 1, 6, 3, 5, true, true}, Case{12, 3, 4, 6, 2, false, true},
                 Case{12, 3, 12, 6, 4, true, true}}) {
    CAPTURE(c.dim);
    CAPTURE(c.heads);
    CAPTURE(c.kv_dim);
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    CAPTURE(c.masked);
    CAPTURE(c.causal);
    MultiHeadAttention m(c.dim, c.heads, 0.0, c.kv_dim);
    Tensor xq = randn({2, c.Sq, c.dim});
    Tensor xkv = c.kv_dim == c.dim && c.Sq == c.Sk ? xq : randn({2, c.Sk, c.kv_dim});
    std::vector<std::vector<int>> rows;
    if (c.masked) {  // key 0 always visible, so every query (also under causal) sees a key
      rows.assign(2, std::vector<int>(c.Sk, 1));
      rows[0][c.Sk - 1] = 0;
      rows[1][1] = 0;
      if (c.Sk > 3) rows[1][3] = 0;
    }
    Tensor mask = c.masked ? make_mask(rows) : Tensor();
    Tensor ref_p;
    Tensor ref = reference_attention(m, xq, xkv, rows, c.causal, &ref_p);
    auto got = m.forward_with_weights(xq, xkv, mask, c.causal);
    CHECK(allclose(got.out, ref, 1e-5, 1e-5));
    CHECK(allclose(m.forward(xq, xkv, mask, c.causal), ref, 1e-5, 1e-5));
    CHECK(allclose(got.weights, ref_p, 1e-5, 1e-6));
    // Probabilities: rows sum to one.
    CHECK(allclose(sum(got.weights, {-1}), ones({2, c.Sq}), 1e-5, 1e-5));
  }
}

TEST_CASE("MultiHeadAttention: a query that sees no key has zero weights and output bias only") {
  manual_seed(4);
  MultiHeadAttention m(8, 2);
  Tensor xq = randn({2, 3, 8}), xkv = randn({2, 4, 8});
  Tensor mask = make_mask({{1, 0, 1, 1}, {0, 0, 0, 0}});
  Tensor w = m.attention_weights(xq, xkv, mask);
  CHECK(allclose(w.slice(0, 1, 2), zeros({1, 3, 4}), 0, 0));
  for (float x : w.to_vector<float>()) CHECK(std::isfinite(x));
  CHECK(allclose(select(select(w, 0, 0), 1, 1), zeros({3}), 0, 0));  // masked key 1 of batch 0
  // The fused op gives zero head outputs there, so the layer gives out_proj's bias.
  Tensor out = m.forward(xq, xkv, mask);
  CHECK(allclose(select(out, 0, 1), m.out_proj->bias.view({1, 8}).expand({3, 8}), 0, 1e-6));
}

TEST_CASE("MultiHeadAttention: padding-masked keys have no influence") {
  manual_seed(5);
  MultiHeadAttention m(8, 2, 0.0, 6);
  Tensor xq = randn({2, 4, 8}), xkv = randn({2, 5, 6});
  Tensor mask = make_mask({{1, 1, 0, 1, 0}, {1, 0, 0, 0, 1}});
  Tensor out = m.forward(xq, xkv, mask);
  // Replace every masked key/value row with other numbers.
  Tensor keep = mask.view({2, 5, 1});
  Tensor changed = where(keep, xkv, randn({2, 5, 6}) * 10.0);
  CHECK(!allclose(changed, xkv));
  CHECK(allclose(m.forward(xq, changed, mask), out, 1e-6, 1e-6));
  CHECK(allclose(m.attention_weights(xq, changed, mask), m.attention_weights(xq, xkv, mask), 1e-6, 1e-7));
  // Without the mask the same change does matter (the test is not vacuous).
  CHECK(!allclose(m.forward(xq, changed), m.forward(xq, xkv), 1e-3, 1e-3));
}

TEST_CASE("MultiHeadAttention: causal output at position i ignores later tokens") {
  manual_seed(6);
  MultiHeadAttention m(8, 2);
  const int64_t S = 6;
  Tensor x = randn({2, S, 8});
  Tensor out = m.forward(x, x, Tensor(), true);
  for (int64_t i = 0; i < S - 1; ++i) {
    CAPTURE(i);
    Tensor x2 = cat({x.slice(1, 0, i + 1), randn({2, S - i - 1, 8})}, 1);
    Tensor out2 = m.forward(x2, x2, Tensor(), true);
    CHECK(allclose(out2.slice(1, 0, i + 1), out.slice(1, 0, i + 1), 1e-6, 1e-6));
    CHECK(!allclose(out2.slice(1, i + 1, S), out.slice(1, i + 1, S), 1e-3, 1e-3));
  }
}

TEST_CASE("MultiHeadAttention: dropout acts in training only, bad inputs are named") {
  manual_seed(7);
  MultiHeadAttention m(8, 2, 0.5);
  Tensor x = randn({2, 3, 8});
  std::vector<std::vector<int>> none;
  Tensor ref = reference_attention(m, x, x, none, false);
  CHECK(!allclose(m.forward(x, x), ref, 1e-3, 1e-3));
  m.eval();
  CHECK(allclose(m.forward(x, x), ref, 1e-5, 1e-5));
  CHECK_THROWS_WITH_AS(m.forward(randn({2, 3, 7}), x), doctest::Contains("x_q [2,3,7] must be [B,Sq,8]"), Error);
  CHECK_THROWS_WITH_AS(m.forward(x, randn({2, 3, 6})), doctest::Contains("x_kv [2,3,6] must be [B,Sk,8]"), Error);
  CHECK_THROWS_WITH_AS(m.forward(x, randn({3, 3, 8})), doctest::Contains("x_q's batch 2"), Error);
  CHECK_THROWS_WITH_AS(m.forward(x, x, make_mask({{1, 1}, {1, 1}})),
                       doctest::Contains("key_mask [2,2] must be [B,Sk] = [2,3]"), Error);
  CHECK_THROWS_WITH_AS(m.forward(x, x, ones({2, 3})), doctest::Contains("key_mask must be bool"), Error);
}

TEST_CASE("MultiHeadAttention: attn_dropout drops attention weights in training only, from the global generator") {
  manual_seed(21);
  MultiHeadAttention m(8, 2, 0.0, 6, true, nullptr, 0.5);
  CHECK(m.attn_dropout == 0.5);
  CHECK(m.num_parameters() == MultiHeadAttention(8, 2, 0.0, 6).num_parameters());  // no parameter of its own
  Tensor xq = randn({2, 5, 8}), xkv = randn({2, 7, 6});
  Tensor mask = make_mask({{1, 1, 1, 1, 1, 1, 0}, {1, 1, 1, 0, 0, 0, 0}});
  Tensor ref = reference_attention(m, xq, xkv, {{1, 1, 1, 1, 1, 1, 0}, {1, 1, 1, 0, 0, 0, 0}}, false);

  // Training: the fused op with dropout_p = 0.5, its mask drawn from the default generator.
  manual_seed(4);
  Tensor out = m.forward(xq, xkv, mask);
  CHECK(default_generator().offset() == 2 * 2 * 5 * 7);  // B·H·Sq·Sk counters
  CHECK(!allclose(out, ref, 1e-3, 1e-3));
  manual_seed(4);
  auto split = [](const Tensor& t) { return t.view({2, t.size(1), 2, 4}).permute({0, 2, 1, 3}); };
  Tensor o = scaled_dot_product_attention(split(m.q_proj->forward(xq)), split(m.k_proj->forward(xkv)),
                                          split(m.v_proj->forward(xkv)), mask, false, std::nullopt, 0.5);
  Tensor by_hand = m.out_proj->forward(reshape(o.permute({0, 2, 1, 3}), {2, 5, 8}));
  CHECK(out.to_vector<double>() == by_hand.to_vector<double>());

  // Eval: no dropout, nothing drawn.
  m.eval();
  const uint64_t before = default_generator().offset();
  CHECK(allclose(m.forward(xq, xkv, mask), ref, 1e-5, 1e-5));
  CHECK(default_generator().offset() == before);

  CHECK_THROWS_WITH_AS(MultiHeadAttention(8, 2, 0.0, 0, true, nullptr, 1.0),
                       doctest::Contains("MultiHeadAttention: attn_dropout must be in [0, 1), got 1"), Error);
  CHECK_THROWS_WITH_AS(MultiHeadAttention(8, 2, 0.0, 0, true, nullptr, -0.5),
                       doctest::Contains("MultiHeadAttention: attn_dropout must be in [0, 1), got -0.5"), Error);
}

TEST_CASE("TransformerOptions.attn_dropout reaches every attention of the layers") {
  TransformerOptions o{.dim = 8, .heads = 2, .attn_dropout = 0.25, .memory_dim = 6};
  TransformerEncoderLayer enc(o);
  CrossAttentionLayer cross(o);
  TransformerDecoderLayer dec(o);
  CHECK(enc.attn->attn_dropout == 0.25);
  CHECK(cross.self_attn->attn_dropout == 0.25);
  CHECK(cross.cross_attn->attn_dropout == 0.25);
  CHECK(dec.self_attn->attn_dropout == 0.25);
  CHECK(dec.cross_attn->attn_dropout == 0.25);
  CHECK(TransformerEncoderLayer({.dim = 8, .heads = 2}).attn->attn_dropout == 0.0);
}

// ---------------------------------------------------------------------------------------------
// Layers

TEST_CASE("TransformerEncoderLayer is pre-LN attention then MLP, with the documented names") {
  manual_seed(8);
  TransformerEncoderLayer layer({.dim = 8, .heads = 2, .mlp_ratio = 3.0, .activation = Activation::relu, .eps = 1e-6});
  CHECK(names_of(layer) == std::vector<std::string>{
                               "ln_1.weight", "ln_1.bias", "attn.q_proj.weight", "attn.q_proj.bias",
                               "attn.k_proj.weight", "attn.k_proj.bias", "attn.v_proj.weight", "attn.v_proj.bias",
                               "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
                               "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"});
  CHECK(layer.mlp->fc1->weight.shape() == Shape{24, 8});
  Tensor x = randn({2, 4, 8});
  Tensor mask = make_mask({{1, 1, 1, 0}, {1, 1, 0, 0}});
  // Re-compose the layer from its parts (attention checked above against plain ops).
  auto ln = [](const LayerNorm& n, const Tensor& t) { return layer_norm(t, {n.dim}, n.weight, n.bias, 1e-6); };
  Tensor h = ln(*layer.ln_1, x);
  Tensor y = x + layer.attn->forward(h, h, mask);
  Tensor expected = y + affine(*layer.mlp->fc2, relu(affine(*layer.mlp->fc1, ln(*layer.ln_2, y))));
  CHECK(allclose(layer.forward(x, mask), expected, 1e-5, 1e-5));
  auto with = layer.forward_with_weights(x, mask);
  CHECK(allclose(with.out, expected, 1e-5, 1e-5));
  CHECK(allclose(with.weights, layer.attn->attention_weights(h, h, mask), 1e-6, 1e-7));
  CHECK_THROWS_WITH_AS(TransformerEncoderLayer({.dim = 6, .heads = 4}),
                       doctest::Contains("dim 6 is not divisible by heads 4"), Error);
}

TEST_CASE("TransformerEncoder stacks layers.N and ln_f") {
  manual_seed(9);
  TransformerEncoder enc({.dim = 8, .heads = 2}, 3);
  auto names = names_of(enc);
  CHECK(names.size() == 3 * 16 + 2);
  CHECK(names.front() == "layers.0.ln_1.weight");
  CHECK(names[16] == "layers.1.ln_1.weight");
  CHECK(names.back() == "ln_f.bias");
  CHECK(enc.layers->size() == 3);
  Tensor x = randn({2, 5, 8});
  Tensor mask = make_mask({{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}});
  Tensor h = x;
  for (int i = 0; i < 3; ++i) h = (*enc.layers)[i].forward(h, mask);
  CHECK(allclose(enc.forward(x, mask), enc.ln_f->forward(h), 0, 0));
  auto with = enc.forward_with_weights(x, mask);
  CHECK(with.weights.size() == 3);
  CHECK(with.weights[2].shape() == Shape{2, 5, 5});
  CHECK(allclose(with.out, enc.forward(x, mask), 0, 0));
  TransformerEncoder bare({.dim = 8, .heads = 2}, 1, false);
  CHECK(bare.ln_f == nullptr);
  CHECK(names_of(bare).size() == 16);
}

TEST_CASE("CrossAttentionLayer and TransformerDecoderLayer: names, composition, masks and causality") {
  manual_seed(10);
  TransformerOptions o{.dim = 8, .heads = 2, .mlp_ratio = 2.0, .memory_dim = 6};
  CrossAttentionLayer fusion(o);
  TransformerDecoderLayer dec(o);
  CHECK(!fusion.causal);
  CHECK(dec.causal);
  auto names = names_of(dec);
  CHECK(names.size() == 2 + 8 + 2 + 8 + 2 + 4);
  CHECK(names[0] == "ln_1.weight");
  CHECK(names[2] == "self_attn.q_proj.weight");
  CHECK(names[10] == "ln_2.weight");
  CHECK(names[12] == "cross_attn.q_proj.weight");
  CHECK(names[20] == "ln_3.weight");
  CHECK(names[22] == "mlp.fc1.weight");
  CHECK(dec.cross_attn->k_proj->weight.shape() == Shape{8, 6});

  Tensor x = randn({2, 5, 8}), memory = randn({2, 4, 6});
  Tensor x_mask = make_mask({{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}});
  Tensor m_mask = make_mask({{1, 1, 0, 1}, {1, 0, 1, 1}});
  for (CrossAttentionLayer* layer : {&fusion, static_cast<CrossAttentionLayer*>(&dec)}) {
    CAPTURE(layer->type_name());
    Tensor h = layer->ln_1->forward(x);
    Tensor y = x + layer->self_attn->forward(h, h, x_mask, layer->causal);
    y = y + layer->cross_attn->forward(layer->ln_2->forward(y), memory, m_mask);
    Tensor expected = y + layer->mlp->forward(layer->ln_3->forward(y));
    Tensor out = layer->forward(x, memory, x_mask, m_mask);
    CHECK(out.shape() == Shape{2, 5, 8});
    CHECK(allclose(out, expected, 1e-6, 1e-6));
    auto with = layer->forward_with_weights(x, memory, x_mask, m_mask);
    CHECK(allclose(with.out, out, 0, 0));
    CHECK(with.weights.shape() == Shape{2, 5, 4});
    // Masked memory tokens do not matter.
    Tensor changed = where(m_mask.view({2, 4, 1}), memory, randn({2, 4, 6}) * 10.0);
    CHECK(allclose(layer->forward(x, changed, x_mask, m_mask), out, 1e-5, 1e-5));
  }
  // Causal decoder: output at i is unchanged when tokens after i change; the fusion layer's is not.
  Tensor x2 = cat({x.slice(1, 0, 2), randn({2, 3, 8})}, 1);
  CHECK(allclose(dec.forward(x2, memory).slice(1, 0, 2), dec.forward(x, memory).slice(1, 0, 2), 1e-5, 1e-5));
  CHECK(!allclose(fusion.forward(x2, memory).slice(1, 0, 2), fusion.forward(x, memory).slice(1, 0, 2), 1e-3, 1e-3));
}

// ---------------------------------------------------------------------------------------------
// Embeddings

TEST_CASE("PatchEmbedding equals a per-patch loop over the Conv2d-layout weight") {
  manual_seed(11);
  const int64_t B = 2, C = 3, P = 4, H = 8, W = 12, D = 5;
  PatchEmbedding pe(8, P, C, D);
  CHECK(names_of(pe) == std::vector<std::string>{"proj.weight", "proj.bias"});
  CHECK(pe.proj->weight.shape() == Shape{D, C, P, P});
  CHECK(pe.num_patches == 4);
  Tensor img = randn({B, C, H, W});
  Tensor out = pe.forward(img);
  const int64_t gh = H / P, gw = W / P;
  REQUIRE(out.shape() == Shape{B, gh * gw, D});
  auto x = img.to_vector<double>(), w = pe.proj->weight.to_vector<double>(), b = pe.proj->bias.to_vector<double>();
  std::vector<double> expected;
  for (int64_t n = 0; n < B; ++n)
    for (int64_t r = 0; r < gh; ++r)
      for (int64_t c = 0; c < gw; ++c)
        for (int64_t d = 0; d < D; ++d) {
          double acc = b[d];
          for (int64_t ch = 0; ch < C; ++ch)
            for (int64_t py = 0; py < P; ++py)
              for (int64_t px = 0; px < P; ++px)
                acc += w[((d * C + ch) * P + py) * P + px] * x[((n * C + ch) * H + r * P + py) * W + c * P + px];
          expected.push_back(acc);
        }
  CHECK(allclose(out, from_vector(expected, out.shape()).to(DType::f32), 1e-5, 1e-5));
  // A non-contiguous image (a transposed view) gives the same tokens as its contiguous copy.
  Tensor t = randn({B, C, W, H}).transpose(2, 3);
  CHECK(allclose(pe.forward(t), pe.forward(t.contiguous()), 0, 0));
  CHECK_THROWS_WITH_AS(pe.forward(randn({B, C, 8, 10})), doctest::Contains("8x10 of [2,3,8,10] is not divisible by patch_size 4"),
                       Error);
  CHECK_THROWS_WITH_AS(pe.forward(randn({B, 1, 8, 8})), doctest::Contains("images [2,1,8,8] must be [B,3,H,W]"), Error);
  CHECK_THROWS_WITH_AS(PatchEmbedding(10, 4, 3, 8), doctest::Contains("image_size 10 is not divisible by patch_size 4"),
                       Error);
}

TEST_CASE("LearnedPositionalEmbedding adds rows start..start+S of its table") {
  manual_seed(12);
  LearnedPositionalEmbedding pos(6, 4);
  CHECK(names_of(pos) == std::vector<std::string>{"weight"});
  for (float v : pos.weight.to_vector<float>()) CHECK(std::abs(v) <= 0.04f + 1e-6f);  // trunc_normal(0.02): ±2σ
  CHECK(pos.weight.to_vector<float>() != std::vector<float>(24, 0.0f));
  Tensor x = randn({2, 3, 4});
  CHECK(allclose(pos.forward(x, 2), x + pos.weight.slice(0, 2, 5), 0, 0));
  CHECK_THROWS_WITH_AS(pos.forward(randn({2, 5, 4}), 2), doctest::Contains("positions 2..6 of x [2,5,4] exceed max_len 6"),
                       Error);
}

TEST_CASE("sinusoidal_1d and sinusoidal_2d follow their formulas") {
  for (int64_t dim : {8, 7}) {
    CAPTURE(dim);
    const int64_t len = 11;
    Tensor pe = sinusoidal_1d(len, dim, DType::f64);
    REQUIRE(pe.shape() == Shape{len, dim});
    auto v = pe.to_vector<double>();
    for (int64_t pos = 0; pos < len; ++pos)
      for (int64_t i = 0; 2 * i < dim; ++i) {
        double angle = pos * std::exp(-std::log(10000.0) * (2.0 * i) / dim);
        CHECK(v[pos * dim + 2 * i] == doctest::Approx(std::sin(angle)).epsilon(1e-12));
        if (2 * i + 1 < dim) CHECK(v[pos * dim + 2 * i + 1] == doctest::Approx(std::cos(angle)).epsilon(1e-12));
      }
  }
  CHECK(sinusoidal_1d(3, 4).dtype() == DType::f32);
  CHECK(!sinusoidal_1d(3, 4).requires_grad());

  const int64_t gh = 3, gw = 5, dim = 12, half = 6;
  Tensor pe2 = sinusoidal_2d(gh, gw, dim, DType::f64);
  REQUIRE(pe2.shape() == Shape{gh * gw, dim});
  auto v = pe2.to_vector<double>();
  auto formula = [&](int64_t pos, int64_t c) {  // the 1-D formula with dim/2 channels
    double angle = pos / std::pow(10000.0, static_cast<double>(c - c % 2) / half);
    return c % 2 == 0 ? std::sin(angle) : std::cos(angle);
  };
  for (int64_t r = 0; r < gh; ++r)
    for (int64_t c = 0; c < gw; ++c)
      for (int64_t k = 0; k < dim; ++k) {
        double expected = k < half ? formula(r, k) : formula(c, k - half);
        CHECK(v[(r * gw + c) * dim + k] == doctest::Approx(expected).epsilon(1e-12));
      }
  CHECK_THROWS_WITH_AS(sinusoidal_2d(2, 2, 6 + 1), doctest::Contains("dim 7 must be positive and even"), Error);
}

// ---------------------------------------------------------------------------------------------
// Gradients

TEST_CASE("gradcheck of a tiny encoder layer over its input and every parameter (f64)") {
  manual_seed(13);
  TransformerEncoderLayer layer({.dim = 4, .heads = 2, .mlp_ratio = 2.0});
  Tensor mask = make_mask({{1, 1, 1}, {1, 1, 0}});
  std::vector<Tensor> inputs = inputs_and_parameters({randn({2, 3, 4})}, layer);
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(layer, a, 1);
    return layer.forward(a[0], mask);
  };
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 24 + layer.num_parameters());
  CHECK(layer.attn->q_proj->weight.dtype() == DType::f64);  // it really ran in f64
}

TEST_CASE("gated MLP (GEGLU): fc1 makes halves [a, g], the block is fc2(a * act(g))") {
  manual_seed(15);
  MLP mlp(6, 5, Activation::gelu, 0.0, nullptr, /*gated=*/true);
  CHECK(mlp.fc1->weight.shape() == Shape{10, 6});
  CHECK(mlp.fc2->weight.shape() == Shape{6, 5});
  Tensor x = randn({2, 3, 6});
  Tensor h = affine(*mlp.fc1, x);
  Tensor a = h.slice(-1, 0, 5), g = h.slice(-1, 5, 10);
  CHECK(allclose(mlp.forward(x), affine(*mlp.fc2, a * gelu(g)), 1e-5, 1e-6));
  // TransformerOptions.gated_mlp reaches the layers' MLPs; the hidden width is per half.
  CrossAttentionLayer layer({.dim = 8, .heads = 2, .mlp_ratio = 2.0, .gated_mlp = true});
  CHECK(layer.mlp->gated);
  CHECK(layer.mlp->fc1->weight.shape() == Shape{32, 8});
  CHECK(layer.mlp->fc2->weight.shape() == Shape{8, 16});
  CHECK_FALSE(CrossAttentionLayer({.dim = 8, .heads = 2}).mlp->gated);
}

TEST_CASE("gradcheck of a tiny gated-MLP fusion layer over inputs, memory and every parameter (f64)") {
  manual_seed(16);
  CrossAttentionLayer layer({.dim = 4, .heads = 2, .mlp_ratio = 1.5, .gated_mlp = true, .memory_dim = 3});
  Tensor x_mask = make_mask({{1, 1, 0}, {1, 1, 1}});
  std::vector<Tensor> inputs = inputs_and_parameters({randn({2, 3, 4}), randn({2, 4, 3})}, layer);
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(layer, a, 2);
    return layer.forward(a[0], a[1], x_mask);
  };
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 24 + 24 + layer.num_parameters());
  CHECK(layer.mlp->fc1->weight.dtype() == DType::f64);
}

TEST_CASE("gradcheck of a tiny decoder layer over inputs, memory and every parameter (f64)") {
  manual_seed(14);
  TransformerDecoderLayer layer({.dim = 4, .heads = 2, .mlp_ratio = 1.5, .activation = Activation::gelu_tanh,
                                 .memory_dim = 3});
  Tensor m_mask = make_mask({{1, 0, 1, 1}, {1, 1, 1, 0}});
  std::vector<Tensor> inputs = inputs_and_parameters({randn({2, 3, 4}), randn({2, 4, 3})}, layer);
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(layer, a, 2);
    return layer.forward(a[0], a[1], Tensor(), m_mask);
  };
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 24 + 24 + layer.num_parameters());
}

TEST_CASE("after one backward every parameter has a finite, non-zero gradient") {
  manual_seed(15);
  TransformerOptions o{.dim = 8, .heads = 2, .dropout = 0.1, .memory_dim = 6};
  PatchEmbedding patches(8, 4, 3, 6);
  LearnedPositionalEmbedding pos(4, 6);
  TransformerEncoder image_encoder({.dim = 6, .heads = 3, .dropout = 0.1}, 2);
  LearnedPositionalEmbedding text_pos(5, 8);
  TransformerEncoder text_encoder(o, 1);
  CrossAttentionLayer fusion(o);
  TransformerDecoderLayer decoder(o);

  Tensor img = image_encoder.forward(pos.forward(patches.forward(randn({2, 3, 8, 8}))));
  Tensor mask = make_mask({{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}});
  Tensor txt = text_encoder.forward(text_pos.forward(randn({2, 5, 8})), mask);
  Tensor fused = fusion.forward(txt, img, mask);
  Tensor out = decoder.forward(fused, img, mask);
  // A random projection: the sum of a LayerNorm's output alone has zero gradient.
  sum(out * randn(out.shape())).backward();
  for (const Module* m : std::vector<const Module*>{&patches, &pos, &image_encoder, &text_pos, &text_encoder, &fusion,
                                                    &decoder})
    check_every_parameter_has_a_gradient(*m);
}

TEST_CASE("state_dict round trip: keys, shapes, identical outputs") {
  TransformerOptions o{.dim = 8, .heads = 2, .memory_dim = 6};
  manual_seed(16);
  TransformerEncoder a(o, 2);
  CrossAttentionLayer fa(o);
  PatchEmbedding pa(8, 4, 3, 6);
  manual_seed(17);
  TransformerEncoder b(o, 2);
  CrossAttentionLayer fb(o);
  PatchEmbedding pb(8, 4, 3, 6);

  StateDict sd = a.state_dict();
  CHECK(sd.size() == 2 * 16 + 2);
  CHECK(sd.count("layers.1.attn.out_proj.weight"));
  CHECK(sd.at("layers.0.mlp.fc1.weight").shape() == Shape{32, 8});
  CHECK(fa.state_dict().at("cross_attn.v_proj.weight").shape() == Shape{8, 6});
  CHECK(pa.state_dict().at("proj.weight").shape() == Shape{6, 3, 4, 4});

  Tensor x = randn({2, 5, 8}), memory = randn({2, 4, 6}), img = randn({1, 3, 8, 8});
  Tensor mask = make_mask({{1, 1, 1, 1, 0}, {1, 1, 0, 0, 0}});
  CHECK(!allclose(a.forward(x, mask), b.forward(x, mask)));
  CHECK(b.load_state_dict(sd).ok());
  CHECK(fb.load_state_dict(fa.state_dict()).ok());
  CHECK(pb.load_state_dict(pa.state_dict()).ok());
  CHECK(allclose(a.forward(x, mask), b.forward(x, mask), 0, 0));
  CHECK(allclose(fa.forward(x, memory, mask), fb.forward(x, memory, mask), 0, 0));
  CHECK(allclose(pa.forward(img), pb.forward(img), 0, 0));
  // An encoder of another depth does not load silently.
  TransformerEncoder shallow(o, 1);
  CHECK_THROWS_WITH_AS(shallow.load_state_dict(sd), doctest::Contains("unexpected keys: layers.1."), Error);
}
