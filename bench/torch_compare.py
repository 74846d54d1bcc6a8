#!/usr/bin/env python3
"""mmgrad against PyTorch, on the same GPU, at the same shapes, timed the same way.

For each attention shape of mmg_bench (bench/cuda_attention.cpp) this times
torch.nn.functional.scaled_dot_product_attention, forward and forward + backward, in f32 and
bf16, with each backend PyTorch has (flash, cuDNN, memory-efficient, math; a backend that
refuses a shape or dtype is skipped with its reason), and the open_clip-style contrastive loss

    logits = exp(t) · img @ txt.T;   loss = (CE(logits, arange) + CE(logits.T, arange)) / 2

forward and forward + backward at N = 1k … 32k pairs of d = 512, with its peak memory. Then it
runs our `mmg_bench --json` on the same shapes and prints, per shape: PyTorch's best time and
backend, ours (the best of our versions: in bf16 that includes the tensor-core versions,
attention v3 and clip_loss v3, which mmg_bench skips in f32), and the ratio (PyTorch / ours:
above 1, ours is faster).

Timing as in mmg_bench (bench/cuda_timer.h): CUDA events on the current stream, warm-up, the
median of samples of several runs each, inputs rotated over sets whose total exceeds twice the
L2 size. f32 products run in true f32 (torch.backends.cuda.matmul.allow_tf32 stays False), as
the engine's f32 path does. For bf16, the loss's cross-entropies run on f32 logits, as under
torch.autocast.

Needs Python 3 and PyTorch with a usable GPU, nothing else:
    python3 bench/torch_compare.py [--bench build/mmg_bench] [--quick] [--kernel attention]
Exit status: 0; 1 when our bench failed or a result check failed; 2 without torch or a GPU.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import warnings

# ---- the shapes: the same as bench/cuda_attention.cpp and bench/cuda_clip_loss.cpp ----

# (what, B, H, Sq, Sk, D, causal, padded)
ATTENTION_CASES = [
    ("vit-b/16 self", 64, 12, 197, 197, 64, False, False),
    ("text S32 padded", 256, 12, 32, 32, 64, False, True),
    ("text S77 padded", 256, 12, 77, 77, 64, False, True),
    ("text->image cross", 64, 12, 64, 197, 64, False, False),
    ("long S1k", 16, 16, 1024, 1024, 128, False, False),
    ("long S1k causal", 16, 16, 1024, 1024, 128, True, False),
    ("long S4k", 4, 16, 4096, 4096, 128, False, False),
    ("long S4k causal", 4, 16, 4096, 4096, 128, True, False),
]
ATTENTION_CASES_QUICK = [
    ("vit-b/16 self", 8, 12, 197, 197, 64, False, False),
    ("text S77 padded", 32, 12, 77, 77, 64, False, True),
    ("text->image cross", 8, 12, 64, 197, 64, False, False),
    ("long S1k causal", 2, 16, 1024, 1024, 128, True, False),
]
CLIP_SIZES = [1024, 4096, 8192, 32768]
CLIP_SIZES_QUICK = [1024, 4096]
CLIP_DIM = 512


def padded_length(b, S):
    """Sequence b keeps its first L_b keys (bench/bench_math.h's padded_length)."""
    half = (S + 1) // 2
    return S - (7 * b) % half


def attention_flops(B, H, Sq, Sk, D, causal, direction):
    fwd = 4.0 * B * H * Sq * Sk * D * (0.5 if causal else 1.0)
    return {"fwd": fwd, "bwd": 2.5 * fwd, "fwd+bwd": 3.5 * fwd}[direction]


def clip_flops(N, d, direction):
    fwd = 2.0 * N * N * d
    return {"fwd": fwd, "bwd": 2 * fwd, "fwd+bwd": 3 * fwd}[direction]


# ---- timing: bench/cuda_timer.h's method ----

class Budget:
    def __init__(self, quick):
        self.warmup_ms = 20 if quick else 50
        self.sample_ms = 0.5 if quick else 1.0
        self.total_ms = 60 if quick else 300
        self.min_samples = 5 if quick else 10
        self.max_samples = 200


def rotation_count(set_bytes, l2_bytes, max_sets, memory_budget):
    """bench/bench_math.h's rotation_count."""
    if set_bytes <= 0:
        return 1
    wanted = 2.0 * l2_bytes / set_bytes
    n = max_sets if wanted >= max_sets else max(2, int(wanted) + 1)
    n = min(n, max_sets)
    if memory_budget / set_bytes < n:
        n = max(1, int(memory_budget / set_bytes))
    return n


def reps_per_sample(run_ms, target_ms, max_reps):
    if not run_ms > 0:
        return max_reps
    r = target_ms / run_ms
    return max_reps if r >= max_reps else max(1, math.ceil(r))


def time_on_device(torch, run, sets, budget):
    """Median milliseconds of one run(set), sets rotated, on the current stream."""
    state = {"next": 0}

    def once():
        run(state["next"])
        state["next"] = (state["next"] + 1) % max(1, sets)

    def measure(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(runs):
            once()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / runs

    once()  # the first run builds kernels and plans: kept out of every estimate
    torch.cuda.synchronize()
    run_ms = measure(2)
    warm = min(1000, int(budget.warmup_ms / max(run_ms, 1e-3)))
    if warm > 0:
        run_ms = measure(warm)
    reps = reps_per_sample(run_ms, budget.sample_ms, 1000)
    samples = int(budget.total_ms / max(run_ms * reps, 1e-3))
    samples = min(max(samples, budget.min_samples), budget.max_samples)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(samples)]
    stops = [torch.cuda.Event(enable_timing=True) for _ in range(samples)]
    for s in range(samples):
        starts[s].record()
        for _ in range(reps):
            once()
        stops[s].record()
    stops[-1].synchronize()
    return statistics.median(starts[s].elapsed_time(stops[s]) / reps for s in range(samples))


class Device:
    """The GPU's L2 size and free memory, for the rotation."""

    def __init__(self, torch, quick):
        self.torch = torch
        props = torch.cuda.get_device_properties(0)
        self.name = props.name
        self.l2_bytes = getattr(props, "L2_cache_size", 50 << 20)
        self.budget = Budget(quick)
        self.max_sets = 32 if quick else 256

    def sets_for(self, set_bytes):
        free, _ = self.torch.cuda.mem_get_info()
        return rotation_count(set_bytes, self.l2_bytes, self.max_sets, 0.4 * free)


def first_line(text):
    text = str(text).strip()
    return text.splitlines()[0] if text else "no reason given"


# ---- PyTorch: attention with each backend ----

def torch_attention(torch, dev, case, dtype_name):
    """{direction: {backend: ms or 'skipped: reason'}} for one case and dtype."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    what, B, H, Sq, Sk, D, causal, padded = case
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    q0 = torch.randn(B, H, Sq, D, device="cuda", dtype=dtype)
    k0 = torch.randn(B, H, Sk, D, device="cuda", dtype=dtype)
    v0 = torch.randn(B, H, Sk, D, device="cuda", dtype=dtype)
    g0 = torch.randn(B, H, Sq, D, device="cuda", dtype=dtype)
    mask = None
    if padded:
        keep = torch.tensor([padded_length(b, Sk) for b in range(B)], device="cuda")
        mask = (torch.arange(Sk, device="cuda")[None, :] < keep[:, None]).view(B, 1, 1, Sk)
    set_bytes = sum(t.numel() * t.element_size() for t in (q0, k0, v0, g0))
    n = dev.sets_for(set_bytes)
    sets = [(q0, k0, v0, g0)] + [tuple(t.clone() for t in (q0, k0, v0, g0)) for _ in range(n - 1)]
    leaves = [tuple(t.detach().requires_grad_() for t in s[:3]) + (s[3],) for s in sets]

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    def forward(s):
        with torch.no_grad():
            sdpa(*sets[s][:3])

    def forward_backward(s):
        q, k, v, g = leaves[s]
        torch.autograd.grad(sdpa(q, k, v), (q, k, v), g)

    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)]
    result = {"fwd": {}, "fwd+bwd": {}}
    reference = None
    for name, backend in backends:
        try:
            with sdpa_kernel(backend):
                # Once, untimed: a backend that refuses says why in its warnings.
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        out = sdpa(*sets[0][:3]).float()
                    except RuntimeError as e:
                        reasons = [first_line(w.message) for w in caught] or [first_line(e)]
                        raise RuntimeError("; ".join(reasons)) from None
                if not torch.isfinite(out).all():
                    raise RuntimeError("non-finite output")
                if reference is None:
                    reference = out
                else:  # the backends agree with the first that ran
                    rel = ((out - reference).norm() / reference.norm()).item()
                    if not rel < (2e-3 if dtype_name == "f32" else 3e-2):
                        raise RuntimeError(f"differs from the first backend by {rel:.2e}")
                del out
                result["fwd"][name] = time_on_device(torch, forward, n, dev.budget)
                result["fwd+bwd"][name] = time_on_device(torch, forward_backward, n, dev.budget)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
            result["fwd"].setdefault(name, "skipped: " + first_line(e))
            result["fwd+bwd"].setdefault(name, "skipped: " + first_line(e))
        torch.cuda.empty_cache()
    del sets, leaves
    torch.cuda.empty_cache()
    return result


# ---- PyTorch: the open_clip loss ----

def torch_clip(torch, dev, N, dtype_name):
    """{direction: (ms, peak bytes above inputs)} for one N and dtype."""
    import torch.nn.functional as F

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    unit = 1.0 / math.sqrt(CLIP_DIM)
    img0 = (torch.randn(N, CLIP_DIM, device="cuda") * unit).to(dtype)
    txt0 = (torch.randn(N, CLIP_DIM, device="cuda") * unit).to(dtype)
    t0 = torch.tensor(math.log(1 / 0.07), device="cuda")
    labels = torch.arange(N, device="cuda")
    n = dev.sets_for(2 * img0.numel() * img0.element_size())
    sets = [(img0, txt0, t0)] + [tuple(x.clone() for x in (img0, txt0, t0)) for _ in range(n - 1)]
    leaves = [tuple(x.detach().requires_grad_() for x in s) for s in sets]

    def loss_of(img, txt, t):
        logits = t.exp() * (img @ txt.t())
        if logits.dtype != torch.float32:
            logits = logits.float()  # autocast runs cross_entropy in f32
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

    def forward(s):
        with torch.no_grad():
            loss_of(*sets[s])

    def forward_backward(s):
        torch.autograd.grad(loss_of(*leaves[s]), leaves[s])

    def peak(fn):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(0)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

    result = {}
    for direction, fn in (("fwd", forward), ("fwd+bwd", forward_backward)):
        try:
            p = peak(fn)
            result[direction] = (time_on_device(torch, fn, n, dev.budget), p)
        except torch.cuda.OutOfMemoryError as e:
            result[direction] = ("skipped: " + first_line(e), None)
        torch.cuda.empty_cache()
    del sets, leaves
    torch.cuda.empty_cache()
    return result


# ---- ours: mmg_bench --json ----

def run_ours(bench, kernel, dtypes, quick):
    """(rows, error): our rows for `kernel`, or why there are none."""
    if not os.path.exists(bench):
        return [], f"{bench} not found (build it: cmake --build build --target mmg_bench)"
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ours.json")
        cmd = [bench, "--device", "cuda", "--kernel", kernel, "--dtype", dtypes, "--json", out]
        if quick:
            cmd.append("--quick")
        print("running:", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        error = None
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-5:])
            error = f"mmg_bench exited {proc.returncode}:\n{tail}"
        if not os.path.exists(out):
            return [], error or "mmg_bench wrote no JSON"
        with open(out) as f:
            return json.load(f)["rows"], error


def best_of_ours(rows, kernel, params, dtype, direction):
    """(ms, version, peak_bytes, check) of our fastest version, or None."""
    best = None
    for r in rows:
        if r.get("kernel") != kernel or r.get("dtype") != dtype or r.get("direction") != direction:
            continue
        if "skipped" in r or r.get("median_ms") is None:
            continue
        if any(r.get("params", {}).get(k) != v for k, v in params.items()):
            continue
        if best is None or r["median_ms"] < best[0]:
            best = (r["median_ms"], r["version"], r.get("peak_bytes"), r.get("check", ""))
    return best


# ---- the report ----

def fmt_ms(x):
    return f"{x:.4f}" if x < 1 else f"{x:.3f}" if x < 100 else f"{x:.1f}"


def print_table(header, rows, markdown):
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(str(c) for c in r) + " |")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--bench", default=os.path.join(root, "build", "mmg_bench"), help="our mmg_bench (default: build/mmg_bench)")
    ap.add_argument("--kernel", choices=["attention", "clip_loss", "all"], default="all")
    ap.add_argument("--dtype", choices=["f32", "bf16", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="the smaller shapes of mmg_bench --quick, shorter timing")
    ap.add_argument("--skip-ours", action="store_true", help="PyTorch only")
    ap.add_argument("--json", help="write every comparison to this file")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables (for bench/results/)")
    args = ap.parse_args()

    try:
        import torch
    except ImportError as e:
        print(f"torch_compare.py: PyTorch is not installed here ({e}); run it where torch is (the GPU machine)",
              file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"torch_compare.py: no usable GPU (torch {torch.__version__}, torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 2

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    dev = Device(torch, args.quick)
    dtypes = ["f32", "bf16"] if args.dtype == "all" else [args.dtype]
    print(f"PyTorch {torch.__version__} on {dev.name} (L2 {dev.l2_bytes / 2**20:.0f} MiB); "
          f"ratio = PyTorch's best / ours: above 1, ours is faster", flush=True)
    status = 0
    report = {"gpu": dev.name, "torch": torch.__version__, "attention": [], "clip_loss": []}

    if args.kernel in ("attention", "all"):
        ours, error = ([], "not run (--skip-ours)") if args.skip_ours else run_ours(args.bench, "attention", args.dtype, args.quick)
        if error:
            print("ours:", error, file=sys.stderr)
            status = 1 if not args.skip_ours else status
        table = []
        for case in ATTENTION_CASES_QUICK if args.quick else ATTENTION_CASES:
            what, B, H, Sq, Sk, D, causal, padded = case
            # dropout 0: our attention-dropout row of the same shape is not PyTorch's case
            params = {"B": B, "H": H, "Sq": Sq, "Sk": Sk, "D": D, "causal": causal, "padded": padded,
                      "dropout": 0.0}
            for dt in dtypes:
                print(f"timing PyTorch: attention {what} {dt}", flush=True)
                times = torch_attention(torch, dev, case, dt)
                for direction in ("fwd", "fwd+bwd"):
                    timed = {b: t for b, t in times[direction].items() if not isinstance(t, str)}
                    best_backend = min(timed, key=timed.get) if timed else None
                    mine = best_of_ours(ours, "attention", params, dt, direction)
                    if mine and mine[3].startswith("FAILED"):
                        status = 1
                    ratio = timed[best_backend] / mine[0] if (mine and best_backend) else None
                    table.append([what, dt, direction,
                                  f"{fmt_ms(timed[best_backend])} {best_backend}" if best_backend else "all skipped",
                                  f"{fmt_ms(mine[0])} v{mine[1]}" if mine else "-",
                                  f"{ratio:.2f}x" if ratio else "-",
                                  f"{attention_flops(B, H, Sq, Sk, D, causal, direction) / (mine[0] * 1e9):.1f}" if mine else "-",
                                  ", ".join(f"{b} {fmt_ms(t)}" if not isinstance(t, str) else f"{b} {t}"
                                            for b, t in times[direction].items())])
                    report["attention"].append({"case": what, "params": params, "dtype": dt, "direction": direction,
                                                "torch_ms": times[direction], "torch_best": best_backend,
                                                "ours_ms": mine[0] if mine else None,
                                                "ours_version": mine[1] if mine else None, "ratio": ratio})
        print()
        print_table(["attention", "dtype", "dir", "PyTorch best ms", "ours ms", "ratio", "ours TFLOP/s", "every backend (ms)"],
                    table, args.markdown)
        print()

    if args.kernel in ("clip_loss", "all"):
        ours, error = ([], "not run (--skip-ours)") if args.skip_ours else run_ours(args.bench, "clip_loss", args.dtype, args.quick)
        if error:
            print("ours:", error, file=sys.stderr)
            status = 1 if not args.skip_ours else status
        elif not args.skip_ours and not ours:
            print("ours: mmg_bench timed no clip_loss (is the 'clip_loss' kernel family registered?)", file=sys.stderr)
        table = []
        for N in CLIP_SIZES_QUICK if args.quick else CLIP_SIZES:
            params = {"N": N, "d": CLIP_DIM}
            for dt in dtypes:
                print(f"timing PyTorch: clip loss N {N} {dt}", flush=True)
                times = torch_clip(torch, dev, N, dt)
                for direction in ("fwd", "fwd+bwd"):
                    t, peak = times[direction]
                    mine = best_of_ours(ours, "clip_loss", params, dt, direction)
                    if mine and mine[3].startswith("FAILED"):
                        status = 1
                    ratio = t / mine[0] if (mine and not isinstance(t, str)) else None
                    mib = lambda b: f"{b / 2**20:.0f}" if b is not None else "-"
                    table.append([f"N {N} d {CLIP_DIM}", dt, direction,
                                  fmt_ms(t) if not isinstance(t, str) else t, mib(peak),
                                  f"{fmt_ms(mine[0])} v{mine[1]}" if mine else "-", mib(mine[2]) if mine else "-",
                                  f"{ratio:.2f}x" if ratio else "-"])
                    report["clip_loss"].append({"N": N, "d": CLIP_DIM, "dtype": dt, "direction": direction,
                                                "torch_ms": t, "torch_peak_bytes": peak,
                                                "ours_ms": mine[0] if mine else None,
                                                "ours_version": mine[1] if mine else None,
                                                "ours_peak_bytes": mine[2] if mine else None, "ratio": ratio})
        print()
        print_table(["clip loss", "dtype", "dir", "PyTorch ms", "PyTorch peak MiB", "ours ms", "ours peak MiB", "ratio"],
                    table, args.markdown)
        print()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return status


if __name__ == "__main__":
    sys.exit(main())
