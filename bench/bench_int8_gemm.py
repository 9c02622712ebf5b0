"""int8 GEMM rates on this CPU (DistilBERT-base shapes), interleaved rounds, best-of:

fp32 oneDNN prepacked  mkldnn::_linear_pointwise (the cpp backend's fp32 GEMM)
u8s8 oneDNN            onednn::qlinear_pointwise as ops/int8/cpp.py calls it (x scale 1, zero point 128,
                       per-channel w scales, fp32 out): the int8 ceiling this path can reach
u8s8 + epilogue        the same plus the epilogue (x scale, bias, GELU, re-quantize) as the model runs it on
                       oneDNN (ops/int8/cpp.py gemm_epilogue, kind "onednn": row chunks of CHUNK_ROWS above
                       2 * CHUNK_ROWS rows)
VNNI fused             our AVX-512 VNNI GEMM with the same epilogue fused (csrc/int8_gemm.cpp, kind "vnni",
                       the default without AMX-INT8); "-" where this build has no VNNI kernel
FBGEMM dynamic int8    torch.ao quantize_dynamic's nn.Linear (quantizes its input per call)

  .venv/bin/python bench/bench_int8_gemm.py [--rounds 5] [--m 4096]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--m", type=int, default=4096)
    args = ap.parse_args(argv)
    from distilbert_fast.ops import cpp
    from distilbert_fast.ops.int8 import cpp as C
    from distilbert_fast.ops.int8 import reference as R

    # as the cpp backend runs (ops._cpp_prepare): without it every (M, N) fp32 output is page-faulted anew
    cpp.keep_freed_memory()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    vnni = C.vnni_available()
    print(
        "| M x K x N | fp32 oneDNN | u8s8 oneDNN | u8s8 oneDNN + epilogue | VNNI fused (ours) | FBGEMM dynamic int8 "
        "| u8s8 / fp32 | VNNI fused / oneDNN + epilogue |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for K, N, act in ((768, 2304, None), (768, 3072, "gelu"), (3072, 768, None)):
        torch.manual_seed(0)
        M = args.m
        x = torch.randn(M, K)
        lin = torch.nn.Linear(K, N)
        q_w, s_w = R.quantize_weight(lin.weight)
        lin.register_buffer("weight_int8", q_w)
        lin.register_buffer("weight_scale", s_w)
        packed = C.PackedInt8([lin], kind="onednn")
        packed_vnni = C.PackedInt8([lin], kind="vnni") if vnni else None
        w32 = torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach(), 512)
        qx, xs = C.quantize_rows(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dyn = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
            )
        b = lin.bias.detach()
        fns = {
            "fp32": lambda: torch.ops.mkldnn._linear_pointwise(x, w32, b, "none", [], None),
            "u8s8": lambda: packed.gemm(qx),
            "u8s8+epi": lambda: C.gemm_epilogue(packed, qx, xs, act, torch.float32, act is not None),
            "vnni": lambda: C.gemm_epilogue(packed_vnni, qx, xs, act, torch.float32, act is not None),
            "fbgemm": lambda: dyn(x),
        }
        if not vnni:
            del fns["vnni"]
        best = dict.fromkeys(fns, float("inf"))
        with torch.inference_mode():
            for f in fns.values():
                f()
            for _ in range(args.rounds):
                for k, f in fns.items():
                    t = time.perf_counter()
                    f()
                    best[k] = min(best[k], time.perf_counter() - t)
        gop = 2 * M * K * N / 1e9
        r = {k: gop / v for k, v in best.items()}
        v_rate = f"{r['vnni']:.0f}" if vnni else "-"
        v_ratio = f"{r['vnni'] / r['u8s8+epi']:.2f}x" if vnni else "-"
        print(
            f"| {M}x{K}x{N} | {r['fp32']:.0f} | {r['u8s8']:.0f} | {r['u8s8+epi']:.0f} | {v_rate} | {r['fbgemm']:.0f} | "
            f"{r['u8s8'] / r['fp32']:.2f}x | {v_ratio} |",
            flush=True,
        )
    print("(GOP/s: 2*M*K*N per call / best time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
