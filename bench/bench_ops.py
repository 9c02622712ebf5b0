"""Per-op timing of the C++ CPU kernels (torch.ops.distilbert_fast) against their PyTorch references.

DistilBERT-base shapes: N = 4096 tokens, D = 768, FFN 3072, 12 heads x 64. Attention on 32 x 128 (full),
32 sequences of mixed lengths (the reference runs them padded to 128, as the torch backend does; the
C++ op runs them packed) and 8 x 512. Median of several runs; GB/s (bytes that must move: inputs read
once + output written once) for the memory-bound ops, GFLOP/s (4 * sum L^2 * D) for attention.
Prints a markdown table. Calls cpp.keep_freed_memory() first (glibc otherwise mmaps and page-faults every
output above 32 MiB on every call, which hides the kernels; --default-malloc shows that cost).

    python bench/bench_ops.py [--runs 20] [--dtype float32 bfloat16] [--threads N] [--only OP ...]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from distilbert_fast.ops import cpp
from distilbert_fast.ops import reference as R
from distilbert_fast.packing import Layout


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
        name += f" ({os.cpu_count()} logical CPUs; {' '.join(isa)})"
    except OSError:
        pass
    return name


def bench(fn, runs: int, warmup: int = 3) -> float:
    """Median wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="op names to run (default: all)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="skip cpp.keep_freed_memory(): every >32 MiB output is then page-faulted per call")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not cpp.AVAILABLE:
        raise SystemExit(f"C++ extension not available: {cpp.IMPORT_ERROR}")
    malloc = "glibc default" if args.default_malloc else (
        "cpp.keep_freed_memory()" if cpp.keep_freed_memory() else "default (not glibc)")
    torch.manual_seed(0)
    N, D, FF, H = 4096, 768, 3072, 12
    rows = []

    def add(op, dtype, shape, t_cpp, t_ref, amount, unit, ref_name="torch ref"):
        rows.append((op, dtype, shape, ref_name, t_cpp * 1e3, t_ref * 1e3, t_ref / t_cpp,
                     amount / t_cpp / 1e9, amount / t_ref / 1e9, unit))

    want = (lambda name: True) if not args.only else (lambda name: name in args.only)
    with torch.inference_mode():
        for dname in args.dtype:
            dt = getattr(torch, dname)
            es = torch.finfo(dt).bits // 8
            if want("add_layer_norm"):
                x, r = torch.randn(N, D, dtype=dt), torch.randn(N, D, dtype=dt)
                w, b = torch.randn(D, dtype=dt), torch.randn(D, dtype=dt)
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
                cases = [("32x128", [128] * 32, 128),
                         ("32 mixed 8..128", torch.randint(8, 129, (32,), generator=g).tolist(), 128),
                         ("8x512", [512] * 8, 512)]
                for label, lens, S in cases:
                    n = sum(lens)
                    qkv = torch.randn(n, 3 * D, dtype=dt)
                    q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]  # strided views, like a fused QKV
                    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
                    cu[1:] = torch.tensor(lens).cumsum(0)
                    flops = 4.0 * sum(L * L for L in lens) * D
                    tc = bench(lambda: cpp.varlen_attention(q, k, v, cu, max(lens), H, 64 ** -0.5), args.runs)
                    shape = f"{label} (N={n})"
                    tr = bench(padded_reference_attention(q, k, v, lens, H, S), args.runs)
                    add("varlen_attention", dname, shape, tc, tr, flops, "GFLOP/s", "torch ref (padded)")
                    ts = bench(sdpa_padded(q, k, v, lens, H, S), args.runs)
                    add("varlen_attention", dname, shape, tc, ts, flops, "GFLOP/s", "torch SDPA (padded)")

    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
          f"median of {args.runs} runs, malloc: {malloc}")
    print()
    print("| op | dtype | shape | baseline | C++ ms | baseline ms | speedup | C++ rate | baseline rate |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for op, dname, shape, ref, tc, tr, sp, rc, rr, unit in rows:
        print(f"| {op} | {dname} | {shape} | {ref} | {tc:.3f} | {tr:.3f} | {sp:.2f}x | {rc:.1f} {unit} | "
              f"{rr:.1f} {unit} |")
    print()
    print("Attention rates count useful FLOPs only (4 * sum L^2 * D); padded baselines do more work.")


if __name__ == "__main__":
    main()
