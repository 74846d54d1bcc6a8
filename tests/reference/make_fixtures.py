#!/usr/bin/env python3
"""Parity fixtures: mmgrad's layers and models rebuilt in PyTorch, with their answers.

For every case this script builds, in PyTorch, the same tiny architecture as mmgrad (same math,
same parameter names as mmgrad's named_parameters()), gives it fixed random weights and inputs,
runs the forward pass, a scalar loss and the backward pass, and writes everything the C++ test
(tests/models/test_parity.cpp) needs into tests/reference/fixtures/<case>.safetensors:

    param.<name>        the weights, by mmgrad's parameter name           (f32)
    input.<name>        the inputs (f32 activations, i64 ids, bool masks)
    loss_weight.<out>   the fixed random tensor R_out of the loss (weighted-sum cases)
    output.<out>        the forward outputs                               (f32)
    loss                the scalar loss, shape []                         (f32)
    grad.<name>         d loss / d param.<name>, for every parameter      (f32)
    input_grad.<name>   d loss / d input.<name>, for the float inputs     (f32)

and in "__metadata__" (strings): "kind" (which mmgrad module to build), "config" (a JSON object
the test builds it from), "call" (a JSON object of forward-call options such as "causal"),
"loss" ("weighted_sum": Σ_out Σ output·R_out, or "caption_lm": the decoder's cross-entropy),
"description" and "torch".

Weights and inputs are drawn in f32 (so they are exactly what mmgrad loads); the forward and
backward then run in float64 on those very values and the results are rounded to f32 once. The
references are thus the exact answers to f32 precision, and the test measures only mmgrad's own
f32 error.

The files are written with json + struct (no safetensors package): 8 bytes of header length
(little-endian u64), the JSON header padded with spaces to a multiple of 8 bytes, then the raw
little-endian data of each tensor, back to back in header order.

Run from the repository root:  python3 tests/reference/make_fixtures.py [case ...]
(Debian's python3 with python3-torch; on a machine whose `python3` is another interpreter, use
/usr/bin/python3.) The test suite itself never needs torch.
"""

import copy
import json
import math
import os
import struct
import sys

import torch
import torch.nn as tnn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


# ---------------------------------------------------------------------------------------------
# safetensors, by hand

_DTYPES = {torch.float32: ("F32", "f"), torch.float64: ("F64", "d"), torch.int64: ("I64", "q"),
           torch.int32: ("I32", "i"), torch.bool: ("BOOL", "?")}


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    name, code = _DTYPES[t.dtype]
    values = t.flatten().tolist()
    return name, struct.pack("<%d%s" % (len(values), code), *values)


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) in file order; metadata: dict of str -> str."""
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name, t in tensors:
        dtype, data = tensor_bytes(t)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data buffer starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
    os.replace(tmp, path)


def read_safetensors(path):
    """The inverse of write_safetensors (used to check what was written)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    codes = {v[0]: (k, v[1]) for k, v in _DTYPES.items()}
    out = {}
    for name, e in header.items():
        dtype, code = codes[e["dtype"]]
        b, end = e["data_offsets"]
        count = math.prod(e["shape"])
        values = struct.unpack("<%d%s" % (count, code), data[b:end])
        out[name] = torch.tensor(values, dtype=dtype).reshape(e["shape"])
    return out, meta


# ---------------------------------------------------------------------------------------------
# The mmgrad architectures in PyTorch. Attribute names are mmgrad's, so named_parameters() gives
# mmgrad's dotted names. Every formula follows the C++ source cited.

class MLP(tnn.Module):
    """nn/layers.h MLP: fc2(act(fc1(x))), act one of gelu (erf form), gelu_tanh, relu."""

    def __init__(self, dim, hidden, activation="gelu"):
        super().__init__()
        self.fc1 = tnn.Linear(dim, hidden)
        self.fc2 = tnn.Linear(hidden, dim)
        self.activation = activation

    def forward(self, x):
        h = self.fc1(x)
        if self.activation == "gelu":
            h = F.gelu(h)  # 0.5·x·(1 + erf(x/√2))
        elif self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        elif self.activation == "relu":
            h = F.relu(h)
        else:
            raise ValueError(self.activation)
        return self.fc2(h)


class MultiHeadAttention(tnn.Module):
    """nn/attention.h: O_h = softmax(Q_h K_hᵀ/√(D/H) + mask) V_h; out = concat_h(O_h)·W_oᵀ + b_o.
    key_mask [B,Sk] bool, true = attend; causal: query i sees keys j <= i (top-left aligned)."""

    def __init__(self, dim, heads, kv_dim=None, bias=True):
        super().__init__()
        kv_dim = kv_dim or dim
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.q_proj = tnn.Linear(dim, dim, bias=bias)
        self.k_proj = tnn.Linear(kv_dim, dim, bias=bias)
        self.v_proj = tnn.Linear(kv_dim, dim, bias=bias)
        self.out_proj = tnn.Linear(dim, dim, bias=bias)

    def forward(self, xq, xkv, key_mask=None, causal=False):
        B, Sq, Sk, H, d = xq.shape[0], xq.shape[1], xkv.shape[1], self.heads, self.head_dim
        q = self.q_proj(xq).view(B, Sq, H, d).transpose(1, 2)
        k = self.k_proj(xkv).view(B, Sk, H, d).transpose(1, 2)
        v = self.v_proj(xkv).view(B, Sk, H, d).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        visible = torch.ones(B, 1, Sq, Sk, dtype=torch.bool)
        if key_mask is not None:
            visible = visible & key_mask.view(B, 1, 1, Sk)
        if causal:
            visible = visible & torch.ones(Sq, Sk, dtype=torch.bool).tril()
        # mmgrad gives a zero output to a query that sees no key, PyTorch NaN: keep fixtures clear of it.
        assert bool(visible.any(-1).all()), "a query sees no key"
        p = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, Sq, self.dim)
        return self.out_proj(o)


class TransformerEncoderLayer(tnn.Module):
    """nn/transformer.h, pre-LN: y = x + attn(ln_1(x)); out = y + mlp(ln_2(y))."""

    def __init__(self, dim, heads, mlp_ratio=4.0, eps=1e-5, activation="gelu"):
        super().__init__()
        hidden = round(dim * mlp_ratio)
        self.ln_1 = tnn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadAttention(dim, heads)
        self.ln_2 = tnn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, hidden, activation)

    def forward(self, x, key_mask=None, causal=False):
        h = self.ln_1(x)
        y = x + self.attn(h, h, key_mask, causal)
        return y + self.mlp(self.ln_2(y))


class TransformerEncoder(tnn.Module):
    """nn/transformer.h: layers.0 … layers.{depth-1}, then ln_f when final_norm."""

    def __init__(self, dim, heads, depth, mlp_ratio=4.0, eps=1e-5, activation="gelu", final_norm=True):
        super().__init__()
        self.layers = tnn.ModuleList(
            [TransformerEncoderLayer(dim, heads, mlp_ratio, eps, activation) for _ in range(depth)])
        self.ln_f = tnn.LayerNorm(dim, eps=eps) if final_norm else None

    def forward(self, x, key_mask=None, causal=False):
        for layer in self.layers:
            x = layer(x, key_mask, causal)
        return self.ln_f(x) if self.ln_f is not None else x


class CrossAttentionLayer(tnn.Module):
    """nn/transformer.h CrossAttentionLayer (TransformerDecoderLayer when causal):
    y = x + self_attn(ln_1(x), x_mask, causal); y = y + cross_attn(ln_2(y), memory, memory_mask);
    out = y + mlp(ln_3(y)). The memory is not normalised."""

    def __init__(self, dim, heads, memory_dim=None, mlp_ratio=4.0, eps=1e-5, activation="gelu", causal=False):
        super().__init__()
        hidden = round(dim * mlp_ratio)
        self.causal = causal
        self.ln_1 = tnn.LayerNorm(dim, eps=eps)
        self.self_attn = MultiHeadAttention(dim, heads)
        self.ln_2 = tnn.LayerNorm(dim, eps=eps)
        self.cross_attn = MultiHeadAttention(dim, heads, kv_dim=memory_dim or dim)
        self.ln_3 = tnn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, hidden, activation)

    def forward(self, x, memory, x_mask=None, memory_mask=None):
        h = self.ln_1(x)
        y = x + self.self_attn(h, h, x_mask, self.causal)
        y = y + self.cross_attn(self.ln_2(y), memory, memory_mask)
        return y + self.mlp(self.ln_3(y))



# ---- models (models/*.h) ----

def sinusoidal_1d(length, dim):
    """nn/embeddings.h: PE[pos, 2i] = sin(pos·ω_i), PE[pos, 2i+1] = cos(pos·ω_i), ω_i = 10000^(−2i/dim)."""
    pe = torch.zeros(length, dim, dtype=torch.float64)
    for pos in range(length):
        for c in range(dim):
            angle = pos / 10000.0 ** ((c - c % 2) / dim)
            pe[pos, c] = math.sin(angle) if c % 2 == 0 else math.cos(angle)
    return pe


def sinusoidal_2d(grid_h, grid_w, dim):
    """nn/embeddings.h: [patch's row table | patch's column table], patches in row-major order."""
    rows = sinusoidal_1d(grid_h, dim // 2)
    cols = sinusoidal_1d(grid_w, dim // 2)
    return torch.cat([rows.repeat_interleave(grid_w, 0), cols.repeat(grid_h, 1)], 1)


class PatchEmbedding(tnn.Module):
    """nn/embeddings.h: a stride-P "convolution" of kernel P, patches in row-major order. Here it is
    PyTorch's Conv2d itself (mmgrad computes it as reshape/permute + linear)."""

    def __init__(self, channels, patch_size, dim):
        super().__init__()
        self.proj = tnn.Conv2d(channels, dim, patch_size, stride=patch_size)

    def forward(self, images):
        return self.proj(images).flatten(2).transpose(1, 2)  # [B,D,gh,gw] -> [B,N,D]


class ViT(tnn.Module):
    """models/vit.h: x = [cls_token ; patch_embed(images)] + pos_embed; tokens = encoder(x) (pre-LN
    layers, final LayerNorm); pooled = tokens[:,0] ("cls") or the mean of tokens[:,1:] ("mean").
    pos "learned": pos_embed a parameter; "sincos": a buffer, a zero CLS row then sinusoidal_2d."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        D, g = c["dim"], c["image_size"] // c["patch_size"]
        self.patch_embed = PatchEmbedding(c["channels"], c["patch_size"], D)
        self.cls_token = tnn.Parameter(torch.zeros(1, 1, D))
        if c["pos"] == "learned":
            self.pos_embed = tnn.Parameter(torch.zeros(1, 1 + g * g, D))
        else:
            table = torch.cat([torch.zeros(1, D, dtype=torch.float64), sinusoidal_2d(g, g, D)]).float()
            self.register_buffer("pos_embed", table.view(1, 1 + g * g, D))
        self.encoder = TransformerEncoder(D, c["heads"], c["depth"], c["mlp_ratio"], c["eps"])

    def forward(self, images):
        patches = self.patch_embed(images)
        B, D = patches.shape[0], self.c["dim"]
        x = torch.cat([self.cls_token.expand(B, 1, D), patches], 1) + self.pos_embed
        tokens = self.encoder(x)
        pooled = tokens[:, 0] if self.c["pool"] == "cls" else tokens[:, 1:].mean(1)
        return {"tokens": tokens, "pooled": pooled}


class TextEncoder(tnn.Module):
    """models/text_encoder.h: x = embeddings_ln(word[ids] + position[0..S) + token_type[types]);
    tokens = encoder(x, key mask = attention_mask) (pre-LN, final LayerNorm); pooled = tokens[:,0]."""

    def __init__(self, c):
        super().__init__()
        D = c["dim"]
        self.word_embeddings = tnn.Embedding(c["vocab_size"], D)
        self.position_embeddings = tnn.Embedding(c["max_len"], D)
        self.token_type_embeddings = tnn.Embedding(c["type_vocab_size"], D)
        self.embeddings_ln = tnn.LayerNorm(D, eps=c["eps"])
        self.encoder = TransformerEncoder(D, c["heads"], c["depth"], c["mlp_ratio"], c["eps"])

    def forward(self, ids, attention_mask, token_type_ids):
        S = ids.shape[1]
        x = self.word_embeddings(ids) + self.position_embeddings(torch.arange(S)) + \
            self.token_type_embeddings(token_type_ids)
        tokens = self.encoder(self.embeddings_ln(x), attention_mask)
        return {"tokens": tokens, "pooled": tokens[:, 0]}


class CrossAttentionFusion(tnn.Module):
    """models/fusion.h (ALBEF): layers.{i} = CrossAttentionLayer(text, image tokens), then ln_f;
    pooled = the fused [CLS], tokens[:,0]."""

    def __init__(self, c):
        super().__init__()
        self.layers = tnn.ModuleList([CrossAttentionLayer(c["dim"], c["heads"], c["image_dim"], c["mlp_ratio"], c["eps"])
                                      for _ in range(c["depth"])])
        self.ln_f = tnn.LayerNorm(c["dim"], eps=c["eps"])

    def forward(self, text_tokens, text_mask, image_tokens, image_mask):
        h = text_tokens
        for layer in self.layers:
            h = layer(h, image_tokens, text_mask, image_mask)
        tokens = self.ln_f(h)
        return {"tokens": tokens, "pooled": tokens[:, 0]}


class LearnedPositionalEmbedding(tnn.Module):
    """nn/embeddings.h: x + weight[start : start+S]."""

    def __init__(self, max_len, dim):
        super().__init__()
        self.weight = tnn.Parameter(torch.zeros(max_len, dim))

    def forward(self, x):
        return x + self.weight[:x.shape[1]]


class CaptionDecoder(tnn.Module):
    """models/caption_decoder.h: x = token_embedding[tokens] + position_embedding[0..T);
    x = layers.{l}(x, image_tokens, memory mask = image_mask) (causal self-attention, cross-attention,
    MLP; LayerNorm eps 1e-5); logits = lm_head(ln_f(x)), or ln_f(x)·token_embedding.weightᵀ when tied."""

    def __init__(self, c):
        super().__init__()
        D = c["dim"]
        self.tied = c["tie_word_embeddings"]
        self.token_embedding = tnn.Embedding(c["vocab_size"], D)
        self.position_embedding = LearnedPositionalEmbedding(c["max_len"], D)
        self.layers = tnn.ModuleList([CrossAttentionLayer(D, c["heads"], c["memory_dim"], c["mlp_ratio"], 1e-5,
                                                          causal=True) for _ in range(c["depth"])])
        self.ln_f = tnn.LayerNorm(D, eps=1e-5)
        self.lm_head = None if self.tied else tnn.Linear(D, c["vocab_size"])

    def forward(self, tokens, image_tokens, image_mask):
        x = self.position_embedding(self.token_embedding(tokens))
        for layer in self.layers:
            x = layer(x, image_tokens, None, image_mask)
        h = self.ln_f(x)
        logits = F.linear(h, self.token_embedding.weight) if self.tied else self.lm_head(h)
        return {"logits": logits}


def caption_lm_loss(logits, tokens, pad_id):
    """models/objectives.h: position t predicts token t+1; mean cross-entropy, PAD ignored."""
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1), ignore_index=pad_id)


# ---------------------------------------------------------------------------------------------
# The classes above are written out so they carry mmgrad's names; before trusting them, check
# them against PyTorch's own modules (pre-LN = norm_first=True) on the same weights, in float64.

def check_against_torch_modules():
    gen = torch.Generator().manual_seed(99)
    D, H, B, S, M, hidden = 8, 2, 2, 5, 4, 16
    x = torch.randn(B, S, D, generator=gen, dtype=torch.float64)
    mem = torch.randn(B, M, D, generator=gen, dtype=torch.float64)
    key_mask = mask_from([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    causal_ignore = torch.ones(S, S, dtype=torch.bool).triu(1)  # torch: True = may not attend

    def load_attention(theirs, mine):
        with torch.no_grad():
            theirs.in_proj_weight.copy_(torch.cat([mine.q_proj.weight, mine.k_proj.weight, mine.v_proj.weight]))
            theirs.in_proj_bias.copy_(torch.cat([mine.q_proj.bias, mine.k_proj.bias, mine.v_proj.bias]))
            theirs.out_proj.weight.copy_(mine.out_proj.weight)
            theirs.out_proj.bias.copy_(mine.out_proj.bias)

    def load_block(theirs, mine, attn_pairs, norm_pairs):
        for t_name, m_name in attn_pairs:
            load_attention(getattr(theirs, t_name), getattr(mine, m_name))
        with torch.no_grad():
            for t_name, m_name in norm_pairs + [("linear1", "mlp.fc1"), ("linear2", "mlp.fc2")]:
                t_mod, m_mod = theirs.get_submodule(t_name), mine.get_submodule(m_name)
                t_mod.weight.copy_(m_mod.weight)
                t_mod.bias.copy_(m_mod.bias)

    def close(a, b, what):
        err = (a - b).abs().max().item()
        assert err < 1e-10, "%s differs from PyTorch's module by %g" % (what, err)

    # Attention: padding mask, then causal.
    mine = MultiHeadAttention(D, H).double()
    randomize(mine, gen)
    theirs = tnn.MultiheadAttention(D, H, batch_first=True).double()
    load_attention(theirs, mine)
    close(mine(x, x, key_mask), theirs(x, x, x, key_padding_mask=~key_mask, need_weights=False)[0], "attention")
    close(mine(x, x, causal=True), theirs(x, x, x, attn_mask=causal_ignore, need_weights=False)[0],
          "causal attention")

    # Encoder layer (train mode with dropout 0 keeps PyTorch off its fused fast path).
    mine = TransformerEncoderLayer(D, H, mlp_ratio=hidden / D, eps=1e-5).double()
    randomize(mine, gen)
    theirs = tnn.TransformerEncoderLayer(D, H, hidden, dropout=0.0, activation="gelu", layer_norm_eps=1e-5,
                                         batch_first=True, norm_first=True).double()
    load_block(theirs, mine, [("self_attn", "attn")], [("norm1", "ln_1"), ("norm2", "ln_2")])
    close(mine(x, key_mask), theirs(x, src_key_padding_mask=~key_mask), "encoder layer")

    # Decoder layer: causal self-attention, cross-attention, MLP.
    mine = CrossAttentionLayer(D, H, memory_dim=D, mlp_ratio=hidden / D, eps=1e-5, causal=True).double()
    randomize(mine, gen)
    theirs = tnn.TransformerDecoderLayer(D, H, hidden, dropout=0.0, activation="gelu", layer_norm_eps=1e-5,
                                         batch_first=True, norm_first=True).double()
    load_block(theirs, mine, [("self_attn", "self_attn"), ("multihead_attn", "cross_attn")],
               [("norm1", "ln_1"), ("norm2", "ln_2"), ("norm3", "ln_3")])
    close(mine(x, mem), theirs(x, mem, tgt_mask=causal_ignore), "decoder layer")


# ---------------------------------------------------------------------------------------------
# Fixed random weights: every parameter gets values of a sensible scale (LayerNorm weights near
# 1, biases and LayerNorm shifts non-zero so their gradients are exercised, Linear weights with
# std 1/√in so activations stay O(1) and no softmax saturates).

def randomize(module, gen):
    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    done = set()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, tnn.LayerNorm):
                m.weight.copy_(1.0 + 0.2 * randn(*m.weight.shape))
                m.bias.copy_(0.2 * randn(*m.bias.shape))
            elif isinstance(m, (tnn.Linear, tnn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(randn(*m.weight.shape) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(0.2 * randn(*m.bias.shape))
            elif isinstance(m, tnn.Embedding):
                m.weight.copy_(randn(*m.weight.shape))
            else:
                continue
            done.update(id(p) for p in m.parameters(recurse=False))
        for name, p in module.named_parameters():  # held directly: cls_token, position tables
            if id(p) not in done:
                p.copy_(0.5 * randn(*p.shape))


# ---------------------------------------------------------------------------------------------
# Running a case: forward + loss + backward in float64 on the f32 weights and inputs.

def run_case(name, kind, description, config, module, inputs, forward, call=None, loss="weighted_sum",
             loss_fn=None, seed=0):
    """module: built in f32 and randomised; inputs: dict name -> tensor (f32 / i64 / bool);
    forward(module, inputs) -> dict of named outputs; loss_fn(outputs, inputs) -> scalar (for a
    loss other than the weighted sum)."""
    gen = torch.Generator().manual_seed(seed + 1000)
    params = [(n, p.detach().clone()) for n, p in module.named_parameters()]
    buffers = [(n, b.detach().clone()) for n, b in module.named_buffers()]

    m64 = copy.deepcopy(module).double()
    m64.eval()
    x64 = {}
    for k, v in inputs.items():
        if v.is_floating_point():
            x64[k] = v.double().requires_grad_(True)
        else:
            x64[k] = v
    outputs = forward(m64, x64)

    loss_weights = {}
    if loss == "weighted_sum":
        total = 0.0
        for k, out in outputs.items():
            w = torch.randn(*out.shape, generator=gen)  # f32, stored as is
            loss_weights[k] = w
            total = total + (out * w.double()).sum()
    else:
        total = loss_fn(outputs, x64)
    total.backward()

    tensors = [("param." + n, p) for n, p in params]
    tensors += [("buffer." + n, b) for n, b in buffers]
    tensors += [("input." + k, v) for k, v in inputs.items()]
    tensors += [("loss_weight." + k, w) for k, w in loss_weights.items()]
    tensors += [("output." + k, v.detach().float()) for k, v in outputs.items()]
    tensors.append(("loss", total.detach().float().reshape([])))
    grads = dict(m64.named_parameters())
    for n, _ in params:
        g = grads[n].grad
        assert g is not None, "%s: no gradient reaches %s" % (name, n)
        tensors.append(("grad." + n, g.float()))
    for k, v in x64.items():
        if v.is_floating_point():
            tensors.append(("input_grad." + k, v.grad.float()))

    metadata = {"kind": kind, "config": json.dumps(config), "call": json.dumps(call or {}), "loss": loss,
                "description": description, "torch": torch.__version__}
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, name + ".safetensors")
    write_safetensors(path, tensors, metadata)

    back, meta = read_safetensors(path)  # what was written reads back bit for bit
    assert meta == metadata and list(back) == [n for n, _ in tensors]
    for n, t in tensors:
        assert torch.equal(back[n], t.detach()), n
    print("%-28s %6d bytes  %3d tensors  loss %.6f" % (name + ".safetensors", os.path.getsize(path),
                                                      len(tensors), float(total)))


def mask_from(rows):
    return torch.tensor(rows, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------
# nn-level cases

def case_mha_self():
    gen = torch.Generator().manual_seed(1)
    cfg = {"dim": 8, "heads": 2}
    m = MultiHeadAttention(8, 2)
    randomize(m, gen)
    inputs = {"x": torch.randn(2, 5, 8, generator=gen),
              "key_mask": mask_from([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}
    run_case("mha_self", "mha", "MultiHeadAttention self-attention with a key-padding mask", cfg, m, inputs,
             lambda m, x: {"out": m(x["x"], x["x"], x["key_mask"])}, seed=1)


def case_mha_cross_causal():
    gen = torch.Generator().manual_seed(2)
    cfg = {"dim": 8, "heads": 2, "kv_dim": 6}
    m = MultiHeadAttention(8, 2, kv_dim=6)
    randomize(m, gen)
    inputs = {"x": torch.randn(2, 4, 8, generator=gen), "memory": torch.randn(2, 6, 6, generator=gen),
              "key_mask": mask_from([[1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0]])}
    run_case("mha_cross_causal", "mha",
             "MultiHeadAttention cross-attention (kv_dim 6 != dim 8, Sq 4 != Sk 6), key-padding mask and the "
             "top-left-aligned causal option", cfg, m, inputs,
             lambda m, x: {"out": m(x["x"], x["memory"], x["key_mask"], causal=True)}, call={"causal": True}, seed=2)


def case_encoder_layer():
    gen = torch.Generator().manual_seed(3)
    cfg = {"dim": 8, "heads": 2, "mlp_ratio": 2.0, "eps": 1e-5, "activation": "gelu"}
    m = TransformerEncoderLayer(8, 2, mlp_ratio=2.0, eps=1e-5, activation="gelu")
    randomize(m, gen)
    inputs = {"x": torch.randn(2, 5, 8, generator=gen),
              "key_mask": mask_from([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])}
    run_case("encoder_layer", "encoder_layer", "pre-LN TransformerEncoderLayer (GELU erf form), key-padding mask",
             cfg, m, inputs, lambda m, x: {"out": m(x["x"], x["key_mask"])}, seed=3)


def case_encoder():
    gen = torch.Generator().manual_seed(4)
    cfg = {"dim": 12, "heads": 3, "depth": 2, "mlp_ratio": 1.5, "eps": 1e-6, "activation": "gelu_tanh",
           "final_norm": True}
    m = TransformerEncoder(12, 3, 2, mlp_ratio=1.5, eps=1e-6, activation="gelu_tanh", final_norm=True)
    randomize(m, gen)
    inputs = {"x": torch.randn(2, 4, 12, generator=gen)}
    run_case("encoder", "encoder",
             "TransformerEncoder of 2 layers with the final LayerNorm, causal self-attention, tanh GELU, eps 1e-6",
             cfg, m, inputs, lambda m, x: {"out": m(x["x"], causal=True)}, call={"causal": True}, seed=4)


def case_cross_attention_layer():
    gen = torch.Generator().manual_seed(5)
    cfg = {"dim": 8, "heads": 2, "memory_dim": 12, "mlp_ratio": 2.0, "eps": 1e-5, "activation": "gelu"}
    m = CrossAttentionLayer(8, 2, memory_dim=12, mlp_ratio=2.0, eps=1e-5, causal=False)
    randomize(m, gen)
    # x: text tokens, memory: image tokens.
    inputs = {"x": torch.randn(2, 5, 8, generator=gen), "memory": torch.randn(2, 7, 12, generator=gen),
              "x_mask": mask_from([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
              "memory_mask": mask_from([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])}
    run_case("cross_attention_layer", "cross_attention_layer",
             "ALBEF-style fusion layer (nn CrossAttentionLayer): text tokens (width 8, padding mask) attend to "
             "themselves, then to image tokens (width 12, padding mask), then the MLP",
             cfg, m, inputs, lambda m, x: {"out": m(x["x"], x["memory"], x["x_mask"], x["memory_mask"])}, seed=5)


def case_decoder_layer():
    gen = torch.Generator().manual_seed(6)
    cfg = {"dim": 8, "heads": 2, "memory_dim": 6, "mlp_ratio": 2.0, "eps": 1e-5, "activation": "gelu"}
    m = CrossAttentionLayer(8, 2, memory_dim=6, mlp_ratio=2.0, eps=1e-5, causal=True)
    randomize(m, gen)
    inputs = {"x": torch.randn(2, 5, 8, generator=gen), "memory": torch.randn(2, 4, 6, generator=gen)}
    run_case("decoder_layer", "decoder_layer",
             "TransformerDecoderLayer: causal self-attention, cross-attention to a memory of width 6, MLP",
             cfg, m, inputs, lambda m, x: {"out": m(x["x"], x["memory"])}, seed=6)


# ---------------------------------------------------------------------------------------------
# model-level cases: configs are the models' own to_json(), so the test builds them with from_json

VIT_CONFIG = {"family": "vit", "image_size": 8, "patch_size": 4, "channels": 3, "dim": 16, "depth": 2, "heads": 2,
              "mlp_ratio": 2.0, "dropout": 0.0, "pool": "cls", "pos": "learned", "eps": 1e-6}


def case_vit():
    gen = torch.Generator().manual_seed(11)
    cfg = dict(VIT_CONFIG)
    m = ViT(cfg)
    randomize(m, gen)
    inputs = {"images": torch.randn(2, 3, 8, 8, generator=gen)}
    run_case("vit", "vit", "ViT: 8x8 images, 4x4 patches, CLS token, learned positions, 2 pre-LN layers, final "
             "LayerNorm (eps 1e-6), CLS pooling; loss over tokens and pooled", cfg, m, inputs,
             lambda m, x: m(x["images"]), seed=11)


def case_vit_mean_sincos():
    gen = torch.Generator().manual_seed(12)
    cfg = dict(VIT_CONFIG, image_size=12, depth=1, pool="mean", pos="sincos")
    m = ViT(cfg)
    randomize(m, gen)
    inputs = {"images": torch.randn(2, 3, 12, 12, generator=gen)}
    run_case("vit_mean_sincos", "vit", "ViT: 12x12 images (3x3 patches), fixed 2-D sinusoidal positions (a buffer), "
             "mean pooling over the patches", cfg, m, inputs, lambda m, x: m(x["images"]), seed=12)


def case_text_encoder():
    gen = torch.Generator().manual_seed(13)
    cfg = {"family": "text", "vocab_size": 20, "max_len": 8, "type_vocab_size": 2, "dim": 16, "depth": 2, "heads": 2,
           "mlp_ratio": 2.0, "dropout": 0.0, "eps": 1e-12, "pad_id": 0}
    m = TextEncoder(cfg)
    randomize(m, gen)
    ids = torch.randint(1, 20, (2, 6), generator=gen)
    ids[1, 4:] = 0  # padding
    inputs = {"ids": ids, "attention_mask": ids != 0,
              "token_type_ids": torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]])}
    run_case("text_encoder", "text_encoder", "BERT-style text encoder, pre-LN: word + position + token-type "
             "embeddings, embeddings LayerNorm (eps 1e-12), 2 layers, final LayerNorm, padding mask, [CLS] pooling",
             cfg, m, inputs, lambda m, x: m(x["ids"], x["attention_mask"], x["token_type_ids"]), seed=13)


def case_cross_fusion():
    gen = torch.Generator().manual_seed(14)
    cfg = {"dim": 8, "image_dim": 12, "depth": 2, "heads": 2, "mlp_ratio": 2.0, "dropout": 0.0, "eps": 1e-6}
    m = CrossAttentionFusion(cfg)
    randomize(m, gen)
    inputs = {"text_tokens": torch.randn(2, 5, 8, generator=gen),
              "text_mask": mask_from([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]),
              "image_tokens": torch.randn(2, 6, 12, generator=gen),
              "image_mask": mask_from([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])}
    run_case("cross_fusion", "cross_fusion", "ALBEF cross-attention fusion encoder (models CrossAttentionFusion): 2 "
             "CrossAttentionLayers over text (width 8) and image tokens (width 12), both padded, final LayerNorm",
             cfg, m, inputs,
             lambda m, x: m(x["text_tokens"], x["text_mask"], x["image_tokens"], x["image_mask"]), seed=14)


DECODER_CONFIG = {"family": "decoder", "vocab_size": 24, "max_len": 8, "dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 2.0,
                  "dropout": 0.0, "memory_dim": 12, "bos_id": 1, "eos_id": 2, "pad_id": 0,
                  "tie_word_embeddings": False}


def decoder_case(name, cfg, seed, description):
    gen = torch.Generator().manual_seed(seed)
    m = CaptionDecoder(cfg)
    randomize(m, gen)
    tokens = torch.randint(3, cfg["vocab_size"], (2, 7), generator=gen)
    tokens[:, 0] = cfg["bos_id"]
    tokens[0, 6] = cfg["eos_id"]
    tokens[1, 4] = cfg["eos_id"]
    tokens[1, 5:] = cfg["pad_id"]
    inputs = {"tokens": tokens, "image_tokens": torch.randn(2, 5, cfg["memory_dim"], generator=gen),
              "image_mask": mask_from([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}
    run_case(name, "caption_decoder", description, cfg, m, inputs,
             lambda m, x: m(x["tokens"], x["image_tokens"], x["image_mask"]), loss="caption_lm",
             loss_fn=lambda out, x: caption_lm_loss(out["logits"], x["tokens"], cfg["pad_id"]), seed=seed)


def case_caption_decoder():
    decoder_case("caption_decoder", dict(DECODER_CONFIG), 15,
                 "caption decoder: token + learned position embeddings, 2 decoder layers (causal self-attention, "
                 "cross-attention to padded image tokens of width 12, MLP), ln_f, untied lm_head; loss: next-token "
                 "cross-entropy with PAD ignored (caption_lm_loss)")


def case_caption_decoder_tied():
    decoder_case("caption_decoder_tied", dict(DECODER_CONFIG, depth=1, tie_word_embeddings=True), 16,
                 "caption decoder with the output projection tied to token_embedding.weight (no lm_head), 1 layer; "
                 "caption_lm_loss")


CASES = {
    "mha_self": case_mha_self,
    "mha_cross_causal": case_mha_cross_causal,
    "encoder_layer": case_encoder_layer,
    "encoder": case_encoder,
    "cross_attention_layer": case_cross_attention_layer,
    "decoder_layer": case_decoder_layer,
    "vit": case_vit,
    "vit_mean_sincos": case_vit_mean_sincos,
    "text_encoder": case_text_encoder,
    "cross_fusion": case_cross_fusion,
    "caption_decoder": case_caption_decoder,
    "caption_decoder_tied": case_caption_decoder_tied,
}


def main(argv):
    torch.set_num_threads(1)
    torch.manual_seed(0)  # default inits are overwritten by randomize(); this only pins the rest
    check_against_torch_modules()
    names = argv or list(CASES)
    for n in names:
        if n not in CASES:
            sys.exit("unknown case '%s' (cases: %s)" % (n, ", ".join(CASES)))
        CASES[n]()


if __name__ == "__main__":
    main(sys.argv[1:])
