#!/usr/bin/env python
"""Block-config sweep of the Triton GEMM and attention kernels on a CUDA GPU (DistilBERT-base shapes), for
choosing the fixed tables in ops/triton/linear.py and attention.py. Each config is timed twice, in two
passes over the whole list (so drift shows as a gap between the passes), median of triton.testing.do_bench.

    TRITON_INTERPRET=0 python bench/gpu_sweep.py [--dtype float16] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parent.parent))

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=list(DTYPES), default="float16")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("skipped: no CUDA")
        return 0
    import triton
    import triton.testing

    import distilbert_fast.ops.triton as T

    # the modules (the package re-exports functions under the same names)
    A = importlib.import_module("distilbert_fast.ops.triton.attention")
    L = importlib.import_module("distilbert_fast.ops.triton.linear")

    dtype, dev = DTYPES[args.dtype], "cuda"
    g = torch.Generator(device=dev).manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, device=dev).to(dtype)

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")

    cases = []  # (name, config, fn)
    for M in (128, 4096):
        for name, K, N in (("qkv", 768, 2304), ("out", 768, 768), ("ffn1", 768, 3072), ("ffn2", 3072, 768)):
            x, w, b = rnd(M, K), rnd(N, K) * K**-0.5, rnd(N)
            act = "gelu" if name == "ffn1" else None
            cases.append(
                (
                    f"cublas {name} M={M}",
                    None,
                    lambda x=x, w=w, b=b: torch.nn.functional.linear(x, w, b),
                )
            )
            default = L._config(M, N, K, dtype, act)
            cases.append(
                (
                    f"triton {name} M={M} default",
                    default,
                    lambda x=x, w=w, b=b, act=act: T.linear_fused(x, w, b, act),
                )
            )
            if M == 128:
                grid = itertools.product((16, 32, 64), (32, 64, 128), (128,), (4,), (4,))
            else:
                grid = itertools.product((64, 128), (128, 256), (64,), (4, 8), (3, 4))
            for bm, bn, bk, w_, s_ in grid:
                cfg = dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, num_warps=w_, num_stages=s_)
                if cfg == default or (M == 4096 and bm * bn >= 128 * 256 and w_ == 4):
                    continue
                cases.append(
                    (
                        f"triton {name} M={M} {bm}x{bn}x{bk} w{w_} s{s_}",
                        cfg,
                        lambda x=x, w=w, b=b, act=act, cfg=cfg: T.linear_fused(x, w, b, act, config=cfg),
                    )
                )
    for B in (1, 32):
        S, H, D = 128, 12, 768
        q, k, v = rnd(B * S, D), rnd(B * S, D), rnd(B * S, D)
        cu = torch.arange(0, (B + 1) * S, S, device=dev, dtype=torch.int32)
        cases.append(
            (
                f"attn {B}x{S} default",
                A._config(B, H, S, 64, dtype),
                lambda q=q, k=k, v=v, cu=cu: T.varlen_attention(q, k, v, cu, S, H),
            )
        )
        qp, kp, vp = (t.view(B, S, H, 64).transpose(1, 2) for t in (q, k, v))
        cases.append(
            (
                f"sdpa {B}x{S}",
                None,
                lambda qp=qp, kp=kp, vp=vp: torch.nn.functional.scaled_dot_product_attention(qp, kp, vp),
            )
        )
        for bm, bn in itertools.product((32, 64, 128), (32, 64, 128)):
            cases.append(
                (
                    f"attn {B}x{S} {bm}x{bn}",
                    dict(BLOCK_M=bm, BLOCK_N=bn),
                    lambda q=q, k=k, v=v, cu=cu, bm=bm, bn=bn: T.varlen_attention(
                        q, k, v, cu, S, H, block_m=bm, block_n=bn
                    ),
                )
            )
    results = {}
    for pass_ in range(2):
        for name, _cfg, fn in cases:
            try:
                ms = bench(fn)
            except Exception as e:  # a config that does not compile (shared memory, registers)
                ms = float("nan")
                if pass_ == 0:
                    print(f"{name}: {type(e).__name__}: {str(e)[:120]}")
            results.setdefault(name, []).append(ms)
    best = {}
    for name, (a, b_) in results.items():
        print(f"{name:<44} {a * 1e3:9.1f} us {b_ * 1e3:9.1f} us")
        if name.startswith("triton") or name.startswith("attn"):
            grp = " ".join(name.split()[:3]) if name.startswith("triton") else " ".join(name.split()[:2])
            m = min(a, b_)
            if m == m and (grp not in best or m < best[grp][1]):
                best[grp] = (name, m)
    print("\nbest per group (us):")
    for grp, (name, m) in best.items():
        print(f"  {grp:<24} {name:<44} {m * 1e3:8.1f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"dtype": args.dtype, "device": torch.cuda.get_device_name(), "results": results}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
