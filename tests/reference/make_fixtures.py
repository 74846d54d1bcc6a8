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
        for name, p in module.named_parameters():  # parameters held directly (cls_token, pos_embed)
            if "." not in name:
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


CASES = {
    "mha_self": case_mha_self,
    "mha_cross_causal": case_mha_cross_causal,
    "encoder_layer": case_encoder_layer,
    "encoder": case_encoder,
    "cross_attention_layer": case_cross_attention_layer,
    "decoder_layer": case_decoder_layer,
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
