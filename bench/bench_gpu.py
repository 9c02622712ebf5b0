#!/usr/bin/env python
"""GPU benchmark of the Triton backend (distilbert_fast/ops/triton): per op and end to end.

    python bench/bench_gpu.py                       # full run on a CUDA machine (fp16), ~5 min with compile
    python bench/bench_gpu.py --dtype bfloat16 --no-compile --json bench/_work/gpu.json
    TRITON_INTERPRET=1 python bench/bench_gpu.py --smoke   # CPU: exercises every code path on tiny shapes

Without CUDA (and without --smoke) it prints "skipped: no CUDA" and exits 0.

Per op (DistilBERT-base shapes, N = 4096 tokens = 32 x 128 and N = 128 = 1 x 128): the Triton kernel against
its torch reference, median time from triton.testing.do_bench, TFLOP/s for GEMMs and attention, GB/s (bytes
that must move: inputs read once + output written once) for the memory-bound ops, and the max abs diff.

End to end (random-weight DistilBERT-base, created once under bench/_work/): real tokens / s on 1 x 128,
32 x 128 and a mixed-length batch (64 sequences, ~38% of the padded slots real), for HF eager and HF sdpa in
the chosen dtype, HF sdpa + torch.compile, distilbert_fast triton (eager, packed) and triton + CUDA graphs.
Every engine's output on the real tokens is checked against HF sdpa in fp32 (max abs diff, min cosine).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))  # the source tree, if not installed
import common  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import WORK_DIR, log  # noqa: E402

MODEL_DIR = WORK_DIR / "distilbert-base-gpu"
MODEL_SEED = 0
MIXED_SEED = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


# ----------------------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------------------
class Timer:
    """Median milliseconds per call: triton.testing.do_bench on CUDA, a plain wall clock in --smoke mode."""

    def __init__(self, smoke: bool, warmup_ms: int = 25, rep_ms: int = 100):
        self.smoke, self.warmup_ms, self.rep_ms = smoke, warmup_ms, rep_ms

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.smoke:
            fn()
            samples = []
            for _ in range(2):
                t0 = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t0) * 1e3)
            return common.median(samples)
        import triton.testing

        ms = triton.testing.do_bench(fn, warmup=self.warmup_ms, rep=self.rep_ms, return_mode="median")
        return float(ms)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


# ----------------------------------------------------------------------------------------------------------
# per-op benchmarks
# ----------------------------------------------------------------------------------------------------------
def op_benchmarks(args, timer: Timer, device: str, dtype: torch.dtype) -> list[dict[str, Any]]:
    import distilbert_fast.ops.triton as T
    from distilbert_fast.ops import reference as R
    from distilbert_fast.packing import Layout

    D, Fdim, H, V, P = (64, 128, 2, 101, 64) if args.smoke else (768, 3072, 12, 30522, 512)
    hd = D // H
    es = torch.tensor([], dtype=dtype).element_size()
    token_counts = (32, 8) if args.smoke else (4096, 128)
    g = torch.Generator().manual_seed(0)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    rows: list[dict[str, Any]] = []

    def record(op, shape, t_ms, ref_ms, flops=None, nbytes=None, diff=None, ref_name="torch"):
        row = {
            "op": op,
            "shape": shape,
            "triton_ms": t_ms,
            "torch_ms": ref_ms,
            "reference": ref_name,
            "speedup": ref_ms / t_ms if t_ms and ref_ms else None,
            "max_abs_diff": diff,
        }
        if flops:
            row["triton_tflops"] = flops / (t_ms * 1e-3) / 1e12
            row["torch_tflops"] = flops / (ref_ms * 1e-3) / 1e12 if ref_ms else None
        if nbytes:
            row["triton_gbps"] = nbytes / (t_ms * 1e-3) / 1e9
            row["torch_gbps"] = nbytes / (ref_ms * 1e-3) / 1e9 if ref_ms else None
        rows.append(row)
        log(f"  {op:<16} {shape:<22} triton {t_ms:8.4f} ms   torch {ref_ms:8.4f} ms   diff {diff:.2e}")

    with torch.inference_mode():
        for N in token_counts:
            x = rnd(N, D)
            # GEMMs: fused QKV, attention output, FFN in (+GELU), FFN out
            for name, K, Nout, act in (
                ("linear qkv", D, 3 * D, None),
                ("linear out", D, D, None),
                ("linear ffn1+gelu", D, Fdim, "gelu"),
                ("linear ffn2", Fdim, D, None),
            ):
                xin = x if K == D else rnd(N, K)
                w, b = rnd(Nout, K, scale=K**-0.5), rnd(Nout, scale=0.1)
                ours = lambda: T.linear_fused(xin, w, b, act)  # noqa: E731
                ref = lambda: R.linear(xin, w, b, act)  # noqa: E731  (F.linear, then F.gelu)
                record(
                    name,
                    f"{N}x{K} -> {Nout}",
                    timer(ours),
                    timer(ref),
                    flops=2 * N * K * Nout,
                    nbytes=(N * K + Nout * K + N * Nout) * es,
                    diff=max_diff(ours(), ref()),
                )
            # residual add + LayerNorm, as HF runs it in half precision: F.layer_norm(x + r)
            r, lw, lb = rnd(N, D), 1 + rnd(D, scale=0.1), rnd(D, scale=0.1)
            ours = lambda: T.add_layer_norm_rows(x, r, lw, lb)  # noqa: E731
            ref = lambda: F.layer_norm(x + r, (D,), lw, lb, 1e-12)  # noqa: E731
            record(
                "add_layer_norm",
                f"{N}x{D}",
                timer(ours),
                timer(ref),
                nbytes=3 * N * D * es,
                diff=max_diff(ours(), R.add_layer_norm(x, r, lw, lb)),
            )
            # embeddings: gather word + position rows, add, LayerNorm
            word, pos = rnd(V, D), rnd(P, D)
            ids = torch.randint(0, V, (N,), generator=g).to(device)
            pids = (torch.arange(N) % min(P, 128)).to(device)
            ours = lambda: T.embeddings_rows(ids, None, pids, word, pos, lw, lb)  # noqa: E731
            ref = lambda: F.layer_norm(word[ids] + pos[pids], (D,), lw, lb, 1e-12)  # noqa: E731
            record(
                "embeddings",
                f"{N}x{D}",
                timer(ours),
                timer(ref),
                nbytes=3 * N * D * es + 16 * N,
                diff=max_diff(ours(), R.embeddings(ids, None, pids, word, pos, lw, lb)),
            )

        # attention: packed varlen kernel vs SDPA on the padded batch (what HF sdpa runs)
        S = 16 if args.smoke else 128
        lens_mixed = _mixed_lengths(8 if args.smoke else 64, S)
        for label, lengths in (
            ("attn 1xS", [S]),
            ("attn 32xS", [S] * (4 if args.smoke else 32)),
            ("attn mixed", lens_mixed),
        ):
            B = len(lengths)
            mask = (torch.arange(S)[None] < torch.tensor(lengths)[:, None]).long().to(device)
            qkv_pad = rnd(B * S, 3 * D)
            layout = Layout.packed_from_mask(B, S, mask, device)
            q, k, v = layout.pack(qkv_pad.view(B, S, 3 * D)).chunk(3, dim=1)  # strided views, as in the model
            ours = lambda: T.attention(q, k, v, layout, H, None, 0.0, False)[0]  # noqa: E731
            qh, kh, vh = (
                t.view(B, S, H, hd).transpose(1, 2) for t in qkv_pad.view(B, S, 3 * D).chunk(3, dim=-1)
            )
            bias = torch.zeros(B, 1, 1, S, device=device, dtype=dtype)
            bias = bias.masked_fill(mask[:, None, None, :] == 0, torch.finfo(dtype).min)
            ref = lambda: F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias)  # noqa: E731
            expected = ref().transpose(1, 2).reshape(B * S, D)[mask.reshape(-1).bool()]
            flops = 4 * sum(L * L for L in lengths) * D  # useful work: QK^T and PV on real tokens only
            nbytes = 4 * sum(lengths) * D * es
            record(
                label,
                f"B={B} S={S} real={sum(lengths)}",
                timer(ours),
                timer(ref),
                flops=flops,
                nbytes=nbytes,
                diff=max_diff(ours(), expected),
                ref_name="sdpa (padded)",
            )
    return rows


def _mixed_lengths(n: int, S: int) -> list[int]:
    """Right-padded lengths, ~38% of the padded slots real (the CPU anchors' mixed batch), one full row."""
    g = torch.Generator().manual_seed(MIXED_SEED)
    lengths = torch.randint(max(2, S // 16), max(3, (S * 11) // 16), (n,), generator=g)
    lengths[0] = S
    return [int(L) for L in lengths]


# ----------------------------------------------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------------------------------------------
def ensure_model(args) -> Path:
    import transformers

    cfg = (
        dict(vocab_size=101, dim=64, n_heads=2, n_layers=2, hidden_dim=128, max_position_embeddings=64)
        if args.smoke
        else {}
    )
    model_dir = (WORK_DIR / "distilbert-gpu-smoke") if args.smoke else MODEL_DIR
    if (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors")):
        return model_dir
    log(f"[setup] creating random-weight DistilBERT in {model_dir} (seed {MODEL_SEED})")
    torch.manual_seed(MODEL_SEED)
    transformers.DistilBertModel(transformers.DistilBertConfig(**cfg)).save_pretrained(model_dir)
    return model_dir


def workloads(args, vocab: int, device: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    S = 16 if args.smoke else 128
    g = torch.Generator().manual_seed(2)
    out = {}
    for name, lengths in (
        ("1x128", [S]),
        ("32x128", [S] * (4 if args.smoke else 32)),
        ("mixed", _mixed_lengths(8 if args.smoke else 64, S)),
    ):
        B = len(lengths)
        ids = torch.randint(1000 if vocab > 2000 else 1, vocab, (B, S), generator=g)
        mask = (torch.arange(S)[None] < torch.tensor(lengths)[:, None]).long()
        ids[:, 0] = 101 if vocab > 2000 else 1
        ids[mask == 0] = 0
        out[name] = (ids.to(device), mask.to(device))
    return out


def e2e_benchmarks(args, timer: Timer, device: str, dtype: torch.dtype) -> list[dict[str, Any]]:
    import transformers

    import distilbert_fast as dbf
    from distilbert_fast.cuda_graphs import CudaGraphRunner

    model_dir = ensure_model(args)
    wls = workloads(args, transformers.DistilBertConfig.from_pretrained(model_dir).vocab_size, device)

    def hf(attn, dt):
        m = transformers.DistilBertModel.from_pretrained(model_dir, attn_implementation=attn, dtype=dt)
        return m.to(device).eval()

    ref_model = hf("sdpa", torch.float32)
    engines: dict[str, Callable] = {}
    errors: dict[str, str] = {}

    def add(key, make):
        try:
            engines[key] = make()
        except Exception as e:  # noqa: BLE001 - one engine failing must not take the run down
            errors[key] = f"{type(e).__name__}: {e}"
            log(f"[setup] {key} unavailable: {errors[key]}")

    dname = str(dtype).replace("torch.", "")

    def hidden_of(m):
        return lambda ids, mask: m(ids, attention_mask=mask).last_hidden_state

    add(f"hf-eager {dname}", lambda: hidden_of(hf("eager", dtype)))
    add(f"hf-sdpa {dname}", lambda: hidden_of(hf("sdpa", dtype)))
    if not args.no_compile and not args.smoke:
        add(f"hf-sdpa {dname} + torch.compile", lambda: hidden_of(torch.compile(hf("sdpa", dtype))))

    def ours():
        m = dbf.DistilBertModel.from_pretrained(model_dir, backend="torch", dtype=dtype).to(device).eval()
        m.set_backend("triton")  # raises with the reason when the kernels cannot run here
        return m

    add(f"distilbert_fast triton {dname}", lambda: hidden_of(ours()))
    if not args.smoke:
        buckets = sorted({tuple(ids.shape) for ids, _ in wls.values()})
        add(
            f"distilbert_fast triton {dname} + CUDA graphs",
            lambda: hidden_of(CudaGraphRunner(ours(), buckets=buckets)),
        )

    rows = []
    with torch.inference_mode():
        for wname, (ids, mask) in wls.items():
            real = mask.bool()
            n_real = int(real.sum())
            expected = ref_model(ids, attention_mask=mask).last_hidden_state[real]
            for key, fn in engines.items():
                try:
                    got = fn(ids, mask)[real].float()  # first call: compiles / captures
                    ms = timer(lambda: fn(ids, mask))
                except Exception as e:  # noqa: BLE001
                    errors[f"{key} @ {wname}"] = f"{type(e).__name__}: {e}"
                    log(f"  {wname:<7} {key:<45} FAILED: {errors[f'{key} @ {wname}']}")
                    if args.verbose:
                        traceback.print_exc()
                    continue
                cos = F.cosine_similarity(got, expected, dim=-1).min().item()
                row = {
                    "workload": wname,
                    "engine": key,
                    "batch": tuple(ids.shape),
                    "real_tokens": n_real,
                    "ms": ms,
                    "tokens_per_s": n_real / (ms * 1e-3),
                    "max_abs_diff": max_diff(got, expected),
                    "min_cosine": cos,
                }
                rows.append(row)
                log(
                    f"  {wname:<7} {key:<45} {ms:9.3f} ms  {row['tokens_per_s']:>12,.0f} tok/s  "
                    f"diff {row['max_abs_diff']:.2e}  cos {cos:.5f}"
                )
    for key, err in errors.items():
        rows.append({"workload": "-", "engine": key, "error": err})
    return rows


# ----------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------
def render(op_rows, e2e_rows, meta) -> str:
    f = lambda x, p=3: "-" if x is None else f"{x:.{p}f}"  # noqa: E731
    out = [
        f"# Triton backend on {meta['device']} ({meta['dtype']})",
        "",
        f"torch {meta['versions'].get('torch')}, triton {meta['versions'].get('triton')}, "
        f"transformers {meta['versions'].get('transformers')}; git {meta.get('git_sha')}; "
        f"{meta['date']}",
        "",
    ]
    if op_rows:
        out += [
            "## Ops (median of triton.testing.do_bench)",
            "",
            common.markdown_table(
                [
                    "op",
                    "shape",
                    "triton ms",
                    "torch ms",
                    "speedup",
                    "triton TFLOP/s",
                    "torch TFLOP/s",
                    "triton GB/s",
                    "torch GB/s",
                    "max |diff|",
                    "torch reference",
                ],
                [
                    [
                        r["op"],
                        r["shape"],
                        f(r["triton_ms"], 4),
                        f(r["torch_ms"], 4),
                        f(r["speedup"], 2),
                        f(r.get("triton_tflops"), 1),
                        f(r.get("torch_tflops"), 1),
                        f(r.get("triton_gbps"), 0),
                        f(r.get("torch_gbps"), 0),
                        f"{r['max_abs_diff']:.1e}",
                        r["reference"],
                    ]
                    for r in op_rows
                ],
                align="llrrrrrrrrl",
            ),
            "",
        ]
    if e2e_rows:
        ok = [r for r in e2e_rows if "error" not in r]
        out += [
            "## End to end (real tokens / s; diff vs HF sdpa fp32 on real tokens)",
            "",
            common.markdown_table(
                ["workload", "engine", "batch", "ms", "tokens/s", "max |diff|", "min cos"],
                [
                    [
                        r["workload"],
                        r["engine"],
                        "x".join(map(str, r["batch"])),
                        f(r["ms"]),
                        common.fmt_rate(r["tokens_per_s"]),
                        f"{r['max_abs_diff']:.1e}",
                        f(r["min_cosine"], 5),
                    ]
                    for r in ok
                ],
                align="lllrrrr",
            ),
            "",
        ]
        for r in e2e_rows:
            if "error" in r:
                out.append(f"- {r['engine']}: {r['error']}")
    return "\n".join(out) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=list(DTYPES), default="float16")
    p.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile engine (slow to compile)"
    )
    p.add_argument("--ops-only", action="store_true")
    p.add_argument("--e2e-only", action="store_true")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes and a wall-clock timer; runs on CPU under TRITON_INTERPRET=1 (code-path check)",
    )
    p.add_argument("--json", default=None, help="default bench/_work/gpu_results[.smoke].json")
    p.add_argument("--output", default=None, help="also write the markdown report here")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
            print("skipped: --smoke without CUDA needs TRITON_INTERPRET=1")
            return 0
    elif not torch.cuda.is_available():
        print(
            "skipped: no CUDA (torch.cuda.is_available() is False); "
            "use TRITON_INTERPRET=1 ... --smoke for a CPU code-path check"
        )
        return 0
    import distilbert_fast.ops.triton as T

    if not T.AVAILABLE:
        print(f"skipped: triton backend unavailable: {T.IMPORT_ERROR}")
        return 0
    device = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
    dtype = DTYPES[args.dtype] if device == "cuda" else torch.float32
    timer = Timer(smoke=args.smoke or device == "cpu")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    meta = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "CPU (Triton interpreter)",
        "dtype": str(dtype).replace("torch.", ""),
        "date": common.now_iso(),
        "git_sha": common.git_sha(),
        "versions": common.versions(
            [("torch", "torch"), ("triton", "triton"), ("transformers", "transformers")]
        ),
        "machine": common.machine_info(),
        "smoke": args.smoke,
    }
    log(f"[bench_gpu] {meta['device']}, {meta['dtype']}")
    op_rows = [] if args.e2e_only else op_benchmarks(args, timer, device, dtype)
    e2e_rows = [] if args.ops_only else e2e_benchmarks(args, timer, device, dtype)
    report = render(op_rows, e2e_rows, meta)
    print(report)
    args.json = args.json or str(WORK_DIR / ("gpu_results.smoke.json" if args.smoke else "gpu_results.json"))
    common.write_json(args.json, {"meta": meta, "ops": op_rows, "e2e": e2e_rows})
    if args.output:
        common.write_text(args.output, report)
    log(f"[bench_gpu] JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
