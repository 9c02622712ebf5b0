"""Per-op timing of the C++ CPU kernels (torch.ops.distilbert_fast) against their PyTorch references.

DistilBERT-base shapes: N = 4096 tokens, D = 768, FFN 3072, 12 heads x 64. Attention on 32 x 128 (full),
32 sequences of mixed lengths (the reference runs them padded to 128, as the torch backend does; the
C++ op runs them packed) and 8 x 512. Median of several runs; GB/s (bytes that must move: inputs read
once + output written once) for the memory-bound ops, GFLOP/s (4 * sum L^2 * D) for attention.
Each rate is also given as a % of a ceiling measured in the same run: for memory-bound ops, the GB/s of a
plain same-size tensor copy (read + write, same dtype); for attention, the GFLOP/s of a prepacked oneDNN GEMM
of DistilBERT's QKV shape in that dtype (the best this CPU does on dense math).
Prints a markdown table (and writes it with --output). Calls cpp.keep_freed_memory() first (glibc otherwise mmaps and page-faults every
output above 32 MiB on every call, which hides the kernels; --default-malloc shows that cost).

    python bench/bench_ops.py [--runs 20] [--dtype float32 bfloat16] [--threads N] [--only OP ...]
                              [--output bench/RESULTS_ops.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from distilbert_fast.ops import cpp  # noqa: E402
from distilbert_fast.ops import reference as R  # noqa: E402
from distilbert_fast.packing import Layout  # noqa: E402


def machine() -> str:
    info = common.machine_info()
    return f"{info['cpu_model']} ({info['usable_cpus']} usable CPUs; {' '.join(info.get('cpu_flags', []))})"


def bench(fn, runs: int, warmup: int = 3) -> float:
    """Median wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    return common.median([common.time_call(fn) for _ in range(runs)])


def padded_reference_attention(q, k, v, lens, n_heads, seq_len):
    """What the torch backend runs: pad the packed rows to (B*S, D), masked attention, re-pack."""
    B = len(lens)
    mask = torch.zeros(B, seq_len, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, :n] = 1
    layout = Layout.packed_from_mask(B, seq_len, mask, q.device)
    padded = Layout.padded(B, seq_len, mask)

    def run():
        qp, kp, vp = (layout.unpack(t).reshape(B * seq_len, -1) for t in (q, k, v))
        ctx, _ = R.attention(qp, kp, vp, padded, n_heads)
        return layout.pack(ctx.view(B, seq_len, -1))

    return run


def sdpa_padded(q, k, v, lens, n_heads, seq_len):
    """HF's default path: F.scaled_dot_product_attention on the padded batch with a boolean key mask."""
    B = len(lens)
    mask = torch.zeros(B, seq_len, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, :n] = 1
    layout = Layout.packed_from_mask(B, seq_len, mask, q.device)
    hd = q.shape[1] // n_heads
    keep = mask.bool()[:, None, None, :]

    def run():
        qp, kp, vp = (layout.unpack(t).view(B, seq_len, n_heads, hd).transpose(1, 2) for t in (q, k, v))
        ctx = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=keep)
        return layout.pack(ctx.transpose(1, 2).reshape(B, seq_len, -1))

    return run


_COPY_CEILING: dict[tuple, float] = {}


def copy_ceiling(shape: tuple[int, int], dt: torch.dtype, runs: int) -> float:
    """GB/s of a plain copy (read + write) of a tensor of the op's output shape: the same working set, so the
    same cache level the op runs from."""
    key = (shape, dt)
    if key not in _COPY_CEILING:
        src, dst = torch.randn(*shape).to(dt), torch.empty(*shape, dtype=dt)
        _COPY_CEILING[key] = 2 * src.numel() * src.element_size() / bench(lambda: dst.copy_(src), runs) / 1e9
    return _COPY_CEILING[key]


def gemm_ceiling(dt: torch.dtype, runs: int, N: int = 4096, D: int = 768) -> float:
    """GFLOP/s of a prepacked oneDNN GEMM of DistilBERT's fused-QKV shape: the dense-math ceiling."""
    x, w = torch.randn(N, D).to(dt), (torch.randn(3 * D, D) * 0.05).to(dt)
    wp = torch.ops.mkldnn._reorder_linear_weight(w, N)
    return (
        2
        * N
        * D
        * 3
        * D
        / bench(lambda: torch.ops.mkldnn._linear_pointwise(x, wp, None, "none", [], None), runs)
        / 1e9
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="op names to run (default: all)")
    ap.add_argument("--output", default=None, help="also write the markdown report to this file")
    ap.add_argument(
        "--default-malloc",
        action="store_true",
        help="skip cpp.keep_freed_memory(): every >32 MiB output is then page-faulted per call",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not cpp.AVAILABLE:
        raise SystemExit(f"C++ extension not available: {cpp.IMPORT_ERROR}")
    malloc = (
        "glibc default"
        if args.default_malloc
        else ("cpp.keep_freed_memory()" if cpp.keep_freed_memory() else "default (not glibc)")
    )
    torch.manual_seed(0)
    N, D, FF, H = 4096, 768, 3072, 12
    rows, ceil = [], {}

    def add(op, dtype, shape, t_cpp, t_ref, amount, unit, ref_name="torch ref"):
        rate = amount / t_cpp / 1e9
        if unit == "GB/s":
            dims = tuple(int(d) for d in shape.split("x"))
            ceiling = copy_ceiling(dims, getattr(torch, dtype), args.runs)
        else:
            ceiling = ceil[dtype]
        rows.append(
            (
                op,
                dtype,
                shape,
                ref_name,
                t_cpp * 1e3,
                t_ref * 1e3,
                t_ref / t_cpp,
                rate,
                amount / t_ref / 1e9,
                unit,
                100.0 * rate / ceiling,
            )
        )

    want = (lambda name: True) if not args.only else (lambda name: name in args.only)
    with torch.inference_mode():
        for dname in args.dtype:
            dt = getattr(torch, dname)
            es = torch.finfo(dt).bits // 8
            ceil[dname] = gemm_ceiling(dt, args.runs)
            x, r = torch.randn(N, D, dtype=dt), torch.randn(N, D, dtype=dt)  # shared by both LayerNorm ops
            w, b = torch.randn(D, dtype=dt), torch.randn(D, dtype=dt)
            if want("add_layer_norm"):
                tc = bench(lambda: cpp.add_layer_norm(x, r, w, b), args.runs)
                tr = bench(lambda: R.add_layer_norm(x, r, w, b), args.runs)
                add("add_layer_norm", dname, f"{N}x{D}", tc, tr, 3 * N * D * es, "GB/s")
            if want("layer_norm"):
                tc = bench(lambda: cpp.layer_norm(x, w, b), args.runs)
                tr = bench(lambda: R.layer_norm(x, w, b), args.runs)
                add("layer_norm", dname, f"{N}x{D}", tc, tr, 2 * N * D * es, "GB/s")
            if want("bias_act"):
                xf, bf = torch.randn(N, FF, dtype=dt), torch.randn(FF, dtype=dt)
                for act in ("gelu", "gelu_new"):
                    tc = bench(lambda: cpp.bias_act(xf, bf, act), args.runs)
                    tr = bench(lambda: R.activation(xf + bf, act), args.runs)
                    add(f"bias_act {act}", dname, f"{N}x{FF}", tc, tr, 2 * N * FF * es, "GB/s")
            if want("embeddings"):
                V, P = 30522, 512
                ww, pw = torch.randn(V, D, dtype=dt), torch.randn(P, D, dtype=dt)
                lw, lb = torch.randn(D, dtype=dt), torch.randn(D, dtype=dt)
                ids = torch.randint(0, V, (N,))
                pos = torch.arange(128).repeat(N // 128)
                tc = bench(lambda: cpp.embeddings(ids, pos, ww, pw, lw, lb), args.runs)
                tr = bench(lambda: R.embeddings(ids, None, pos, ww, pw, lw, lb), args.runs)
                add("embeddings", dname, f"{N}x{D}", tc, tr, 3 * N * D * es + 2 * N * 8, "GB/s")
            if want("varlen_attention"):
                g = torch.Generator().manual_seed(1)
                cases = [
                    ("32x128", [128] * 32, 128),
                    ("32 mixed 8..128", torch.randint(8, 129, (32,), generator=g).tolist(), 128),
                    ("8x512", [512] * 8, 512),
                ]
                for label, lens, S in cases:
                    n = sum(lens)
                    qkv = torch.randn(n, 3 * D, dtype=dt)
                    q, k, v = (
                        qkv[:, :D],
                        qkv[:, D : 2 * D],
                        qkv[:, 2 * D :],
                    )  # strided views, like a fused QKV
                    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
                    cu[1:] = torch.tensor(lens).cumsum(0)
                    flops = 4.0 * sum(L * L for L in lens) * D
                    tc = bench(lambda: cpp.varlen_attention(q, k, v, cu, max(lens), H, 64**-0.5), args.runs)
                    shape = f"{label} (N={n})"
                    tr = bench(padded_reference_attention(q, k, v, lens, H, S), args.runs)
                    add("varlen_attention", dname, shape, tc, tr, flops, "GFLOP/s", "torch ref (padded)")
                    ts = bench(sdpa_padded(q, k, v, lens, H, S), args.runs)
                    add("varlen_attention", dname, shape, tc, ts, flops, "GFLOP/s", "torch SDPA (padded)")

    lines = [
        f"machine: {machine()}",
        f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
        f"median of {args.runs} runs, malloc: {malloc}, date {time.strftime('%Y-%m-%d')}",
        "measured ceilings: oneDNN GEMM "
        + ", ".join(f"{d} {c:.0f} GFLOP/s" for d, c in ceil.items())
        + "; copy (same shape as the op's output): "
        + ", ".join(f"{s[0]}x{s[1]} {str(d)[6:]} {v:.0f} GB/s" for (s, d), v in _COPY_CEILING.items()),
        "",
        "| op | dtype | shape | baseline | C++ ms | baseline ms | speedup | C++ rate | % of ceiling | baseline rate |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op, dname, shape, ref, tc, tr, sp, rc, rr, unit, pct in rows:
        lines.append(
            f"| {op} | {dname} | {shape} | {ref} | {tc:.3f} | {tr:.3f} | {sp:.2f}x | {rc:.1f} {unit} | "
            f"{pct:.0f}% | {rr:.1f} {unit} |"
        )
    lines += ["", "Attention rates count useful FLOPs only (4 * sum L^2 * D); padded baselines do more work."]
    print("\n".join(lines))
    if args.output:
        with open(args.output, "w") as f:
            f.write(
                "# distilbert_fast per-op CPU benchmark (`python bench/bench_ops.py`)\n\n"
                + "\n".join(lines)
                + "\n"
            )


if __name__ == "__main__":
    main()
