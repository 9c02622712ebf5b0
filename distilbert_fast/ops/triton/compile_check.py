"""Compile every Triton kernel, with the exact block configs the launchers pick, for real GPU targets, on a
machine without a GPU. Triton's wheel ships ptxas, so `triton.compile` can go source -> TTIR -> TTGIR -> PTX
-> cubin for sm_90 (H100) / sm_80 (A100) anywhere. That proves what the interpreter cannot: the kernels lower
for the hardware (tl.dot shapes, layouts, wgmma / mma), the shared memory of the chosen pipelining depth fits,
and ptxas allocates registers without spilling.

    python -m distilbert_fast.ops.triton.compile_check                # DistilBERT-base shapes, sm_90
    python -m distilbert_fast.ops.triton.compile_check --arch 90 80 --quick

Must run WITHOUT TRITON_INTERPRET=1 (the kernels must be JIT functions, not interpreted ones). How it works:
each launcher runs on meta tensors (shapes and dtypes only) with its kernel swapped for a recorder; the
recorded arguments become the kernel signature (pointer dtypes, int / float scalars, constexprs) plus the
16-divisibility hints the JIT would derive from real 16-byte-aligned allocations, and are compiled.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import torch

_SMEM_LIMIT = {90: 232448, 80: 166912, 89: 101376, 86: 101376}  # bytes of dynamic shared memory per block
_TL_DTYPE = {
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float32: "fp32",
    torch.int32: "i32",
    torch.int64: "i64",
}


class _Recorder:
    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append((grid, args, kwargs))

        return launch


def _record(module, kernel_name: str, call):
    """Run call() with module.<kernel_name> replaced by a recorder; return the recorded launches."""
    kernel = getattr(module, kernel_name)
    rec = _Recorder(kernel)
    setattr(module, kernel_name, rec)
    try:
        call()
    finally:
        setattr(module, kernel_name, kernel)
    return kernel, rec.calls


def _compile(kernel, args, kwargs, arch: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(kernel.arg_names)
    options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
    signature, constexprs, attrs = {}, {}, {}
    values = dict(zip(names, args))
    values.update(kwargs)
    for i, name in enumerate(names):
        v = values[name]
        if name in kwargs:  # constexpr (all keyword arguments of our launchers are)
            signature[name] = "constexpr"
            constexprs[(i,)] = v
        elif isinstance(v, torch.Tensor):
            signature[name] = "*" + _TL_DTYPE[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]  # caching allocator: 512-byte aligned
        elif isinstance(v, bool):
            signature[name] = "i1"
        elif isinstance(v, int):
            signature[name] = "i32" if -(2**31) <= v < 2**31 else "i64"
            if v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{name}: cannot type {type(v).__name__}")
    src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def _resource_usage(compiled) -> dict:
    """REG / STACK / LOCAL from cuobjdump on the cubin (spills show up as LOCAL or STACK > 0)."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    out = {"shared": compiled.metadata.shared}
    if not os.path.exists(tool):
        return out
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        text = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    for tok in text.replace(",", " ").split():
        if ":" in tok:
            k, _, v = tok.partition(":")
            if k in ("REG", "STACK", "LOCAL") and v.isdigit():
                out[k.lower()] = int(v)
    return out


def cases(quick: bool):
    """(label, module, kernel name, thunk): DistilBERT-base (D 768, 12 x 64, FFN 3072) and MiniLM widths."""
    from . import _utils  # noqa: F401

    attn = sys.modules[__package__ + ".attention"]
    lin = sys.modules[__package__ + ".linear"]
    ln = sys.modules[__package__ + ".layer_norm"]
    emb = sys.modules[__package__ + ".embeddings"]
    meta = dict(device="meta")
    dtypes = [torch.float16] if quick else [torch.float16, torch.bfloat16, torch.float32]
    out = []
    for dt in dtypes:
        d = dt.__repr__().replace("torch.", "")
        for M in [128, 4096] if quick else [8, 128, 512, 4096]:  # every M bucket of linear._config
            for K, N, act in ((768, 2304, None), (768, 3072, "gelu"), (3072, 768, None)):
                x, w, b = (
                    torch.empty(M, K, dtype=dt, **meta),
                    torch.empty(N, K, dtype=dt, **meta),
                    torch.empty(N, dtype=dt, **meta),
                )
                out.append(
                    (
                        f"linear {d} M={M} {K}->{N} {act or ''}",
                        lin,
                        "_linear_kernel",
                        lambda x=x, w=w, b=b, act=act: lin._launch(x, w, b, act, None),
                    )
                )
        if not quick:
            x, w, b = (
                torch.empty(100, 768, dtype=dt, **meta),
                torch.empty(768, 768, dtype=dt, **meta),
                torch.empty(768, dtype=dt, **meta),
            )
            for act in ("gelu_new", "relu", "silu"):
                out.append(
                    (
                        f"linear {d} {act} +residual",
                        lin,
                        "_linear_kernel",
                        lambda act=act, x=x, w=w, b=b: lin._launch(x, w, b, act, x),
                    )
                )
        for hd, H in ((64, 12), (32, 12)) if quick else ((64, 12), (32, 12), (128, 6), (16, 4), (256, 3)):
            for B, S in ((1, 128), (32, 128)) if not quick or hd == 64 else ((32, 128),):
                qkv = torch.empty(B * S, 3 * H * hd, dtype=dt, **meta)
                q, k, v = qkv.chunk(3, dim=1)
                cu = torch.empty(B + 1, dtype=torch.int32, **meta)
                hm = torch.empty(H, dtype=torch.float32, **meta)
                out.append(
                    (
                        f"attention {d} hd={hd} B={B} S={S}",
                        attn,
                        "_varlen_attn_fwd_kernel",
                        lambda q=q, k=k, v=v, cu=cu, hm=hm, S=S, H=H: attn._launch(
                            q, k, v, cu, S, H, 0.125, hm, None, 0, 0
                        ),
                    )
                )
        for D in (768, 384):
            x = torch.empty(4096, D, dtype=dt, **meta)
            w = torch.empty(D, dtype=dt, **meta)
            out.append(
                (
                    f"add_layer_norm {d} D={D}",
                    ln,
                    "_add_layer_norm_kernel",
                    lambda x=x, w=w: ln._launch(x, x, w, w, 1e-12),
                )
            )
            ids = torch.empty(4096, dtype=torch.int64, **meta)
            table = torch.empty(30522, D, dtype=dt, **meta)
            out.append(
                (
                    f"embeddings {d} D={D}",
                    emb,
                    "_embeddings_kernel",
                    lambda ids=ids, table=table, w=w: emb._launch(
                        ids, None, ids, table, table[:512], w, w, 1e-12
                    ),
                )
            )
    return out


def run(archs=(90,), quick: bool = False, verbose: bool = True, only: str | None = None) -> list[str]:
    """Compile everything; returns a list of problems (empty = all good)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("compile_check needs the real compiler: run it without TRITON_INTERPRET=1")
    import distilbert_fast.ops.triton  # noqa: F401  (loads the kernel modules)

    problems = []
    for arch in archs:
        for label, module, kname, thunk in cases(quick):
            if only and only not in label:
                continue
            kernel, calls = _record(module, kname, thunk)
            for grid, args, kwargs in calls:
                try:
                    compiled = _compile(kernel, args, dict(kwargs), arch)
                except Exception as e:  # noqa: BLE001
                    problems.append(f"sm_{arch} {label}: compile failed: {type(e).__name__}: {e}")
                    if verbose:
                        print(f"sm_{arch} {label:<45} FAILED {type(e).__name__}: {str(e)[:200]}")
                    continue
                use = _resource_usage(compiled)
                limit = _SMEM_LIMIT.get(arch, 101376)
                cfg = {k: v for k, v in kwargs.items() if k.startswith("BLOCK") or k.startswith("num_")}
                if use["shared"] > limit:
                    problems.append(f"sm_{arch} {label}: {use['shared']} B shared memory > {limit}")
                if use.get("local", 0) or use.get("stack", 0):
                    problems.append(
                        f"sm_{arch} {label}: register spills (stack {use.get('stack')}, "
                        f"local {use.get('local')})"
                    )
                if verbose:
                    print(
                        f"sm_{arch} {label:<45} shared {use['shared']:>6} B  "
                        f"regs {use.get('reg', '?'):>3}  stack {use.get('stack', '?')}  grid {grid}  {cfg}",
                        flush=True,
                    )
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="compile the Triton kernels for GPU targets without a GPU")
    p.add_argument("--arch", type=int, nargs="+", default=[90], help="SM versions, e.g. 90 80")
    p.add_argument("--quick", action="store_true", help="fp16 and the main shapes only")
    p.add_argument("--only", default=None, help="only cases whose label contains this text, e.g. 'attention'")
    args = p.parse_args(argv)
    problems = run(tuple(args.arch), args.quick, only=args.only)
    for msg in problems:
        print("PROBLEM:", msg)
    print("compile check:", "OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
