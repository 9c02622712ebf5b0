"""The op table: which implementation of each op the model calls, resolved once per model.

The model never branches on device or backend; it calls `model.ops.<op>(...)`. A backend is one small
explicit table below. Module-level ops (qkv, linear, the LayerNorms, embeddings) receive the nn.Module that
owns the weights, so a backend can keep per-module prepared state (oneDNN-prepacked weights) next to it.

  op              reference (torch)             cpp (CPU)                          triton (GPU)
  embeddings      gather + add + LayerNorm      fused C++ kernel                   fused Triton kernel
  qkv             3 x F.linear                  1 prepacked oneDNN GEMM [Wq;Wk;Wv] 1 Triton GEMM, cached [Wq;Wk;Wv]
  linear          F.linear (+ activation)       oneDNN GEMM, activation post-op    Triton GEMM + epilogue
  add_layer_norm  (x + r) then F.layer_norm     one-pass C++ kernel                one-pass Triton kernel
  attention       padded matmul/softmax/matmul  varlen C++ kernel (packed)         varlen flash attention
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from . import int8, reference

BACKEND_ENV = "DISTILBERT_FAST_BACKEND"
BACKENDS = ("auto", "cpp", "triton", "torch")


@dataclass(frozen=True)
class OpTable:
    name: str
    packed: bool  # True: layers run padding-free on (real tokens, dim) rows
    embeddings: Callable  # (emb_module, input_ids|None, inputs_embeds|None, position_ids) -> (N, D)
    qkv: Callable  # (attention_module, x) -> q, k, v  each (N, D)
    linear: Callable  # (nn.Linear, x, act=None) -> act(x W^T + b)
    add_layer_norm: Callable  # (nn.LayerNorm, x, residual) -> LN(x + residual), eps = the module's ln.eps
    layer_norm: Callable  # (nn.LayerNorm, x) -> LN(x), eps = ln.eps
    attention: Callable  # (q, k, v, layout, n_heads, head_mask, dropout_p, need_weights) -> (ctx, probs)
    prepare: Callable = lambda: None  # process-level set-up, run when a model is prepared for inference
    # (nn.Linear, x (N, K), nn.LayerNorm, residual (N, D)) -> LN(lin(x) + residual): the attention-output and
    # FFN-output projections with the residual LayerNorm after them. A backend that fuses the two sets it (the
    # int8 cpp path: the GEMM's output rows go straight into the LayerNorm); left None, it is this table's own
    # linear then add_layer_norm, re-derived whenever the table is rebuilt (dataclasses.replace included).
    linear_add_layer_norm: Callable | None = None

    def __post_init__(self):
        if self.linear_add_layer_norm is None or getattr(self.linear_add_layer_norm, "_dbf_composed", False):
            linear, add_layer_norm = self.linear, self.add_layer_norm

            def linear_add_layer_norm(lin, x, ln, residual):
                return add_layer_norm(ln, linear(lin, x), residual)

            linear_add_layer_norm._dbf_composed = True
            object.__setattr__(self, "linear_add_layer_norm", linear_add_layer_norm)

    def __reduce__(self):
        # A table holds closures, which pickle cannot store; a pickled model (torch.save(model), a
        # multiprocessing or Ray hand-off) stores the backend's name and finds the process's own table on
        # load, or raises there with the reason that backend cannot run.
        return (resolve_backend, (self.name,))


def _cpp_prepare() -> None:
    # glibc serves every allocation over 32 MiB (e.g. the (tokens, 3072) FFN activation of a 32x128 batch)
    # with a fresh mmap and unmaps it on free: ~12k page faults per call, measured 14 ms -> 1.2 ms for one
    # bias+GELU pass once freed memory is kept in the process. Process-wide, like an inference arena;
    # DISTILBERT_FAST_KEEP_FREED_MEMORY=0 opts out.
    if os.environ.get("DISTILBERT_FAST_KEEP_FREED_MEMORY", "1") != "0":
        from . import cpp

        cpp.keep_freed_memory()


# --- reference table ----------------------------------------------------------------------------------------
def _ref_embeddings(emb, input_ids, inputs_embeds, position_ids):
    return reference.embeddings(
        input_ids,
        inputs_embeds,
        position_ids,
        emb.word_embeddings.weight,
        emb.position_embeddings.weight,
        emb.LayerNorm.weight,
        emb.LayerNorm.bias,
        emb.LayerNorm.eps,
    )


def _ref_qkv(attn, x):
    return tuple(reference.linear(x, lin.weight, lin.bias) for lin in (attn.q_lin, attn.k_lin, attn.v_lin))


def _ref_linear(lin, x, act=None):
    return reference.linear(x, lin.weight, lin.bias, act)


def _ref_add_layer_norm(ln, x, residual):
    return reference.add_layer_norm(x, residual, ln.weight, ln.bias, ln.eps)


TORCH = OpTable(
    name="torch",
    packed=False,
    embeddings=_ref_embeddings,
    qkv=_ref_qkv,
    linear=_ref_linear,
    add_layer_norm=_ref_add_layer_norm,
    layer_norm=lambda ln, x: reference.layer_norm(x, ln.weight, ln.bias, ln.eps),
    attention=reference.attention,
)
TORCH = int8.with_int8(TORCH, int8.TorchKernels)  # quantized modules (quantize="int8") run int8 (ops/int8)


# --- cpp table ------------------------------------------------------------------------------------------------
def _build_cpp_table() -> OpTable | None:
    from . import cpp, gemm

    if not (cpp.AVAILABLE and gemm.available()):
        return None

    def embeddings(emb, input_ids, inputs_embeds, position_ids):
        if inputs_embeds is None:
            return cpp.embeddings(
                input_ids,
                position_ids,
                emb.word_embeddings.weight,
                emb.position_embeddings.weight,
                emb.LayerNorm.weight,
                emb.LayerNorm.bias,
                emb.LayerNorm.eps,
            )
        pos = emb.position_embeddings.weight.index_select(0, position_ids)
        return cpp.add_layer_norm(
            inputs_embeds.contiguous(), pos, emb.LayerNorm.weight, emb.LayerNorm.bias, emb.LayerNorm.eps
        )

    def qkv(attn, x):
        # One GEMM for the three projections; q, k, v are column views of its (N, 3D) output, which the
        # attention kernel reads in place (row stride 3D).
        out = gemm.packed(attn, [attn.q_lin, attn.k_lin, attn.v_lin])(x)
        return out.chunk(3, dim=1)

    def attention(q, k, v, layout, n_heads, head_mask, dropout_p, need_weights):
        hd = q.shape[1] // n_heads
        # seqused: a sequence's keys are its first seqused[s] rows (its real tokens); rows after them are
        # padded positions a loss reads, computed as queries only (packing.Layout.packed_from_mask).
        ctx = cpp.varlen_attention(
            q, k, v, layout.cu_seqlens, layout.max_seqlen, n_heads, hd**-0.5, head_mask, layout.seqused
        )
        return ctx, None

    def linear(lin, x, act=None):
        return gemm.packed(lin, [lin])(x, act)

    def add_layer_norm(ln, x, residual):
        return cpp.add_layer_norm(x, residual, ln.weight, ln.bias, ln.eps)

    table = OpTable(
        name="cpp",
        packed=True,
        embeddings=embeddings,
        qkv=qkv,
        linear=linear,
        add_layer_norm=add_layer_norm,
        layer_norm=lambda ln, x: cpp.layer_norm(x, ln.weight, ln.bias, ln.eps),
        attention=attention,
        prepare=_cpp_prepare,
    )
    from .int8 import cpp as int8_cpp

    # a _C without the int8 kernels: quantized modules run the reference int8
    kernels = int8_cpp.CppKernels if int8_cpp.available() else int8.TorchKernels
    return eager_only(int8.with_int8(table, kernels))


# every op of a table (a composed linear_add_layer_norm is re-derived from the wrapped linear and add_layer_norm)
MODULE_OPS = (
    "embeddings",
    "qkv",
    "linear",
    "add_layer_norm",
    "layer_norm",
    "attention",
    "linear_add_layer_norm",
)


def eager_only(table: OpTable) -> OpTable:
    """`table` with every op hidden from torch.compile (torch.compiler.disable): dynamo runs each op as it is
    and traces only the glue between them. For tables whose ops hold state dynamo cannot trace: prepacked
    oneDNN / MKL weights (opaque tensors), weight fingerprints that read data, the int8 hand-off of quantized
    rows. `torch.compile(model)` then works and returns exactly the eager numbers; the ops are already fused
    kernels, so there is nothing for a compiler to gain inside them. Eager cost: ~0.4 us per op call."""
    import torch

    return dataclasses.replace(table, **{n: torch.compiler.disable(getattr(table, n)) for n in MODULE_OPS})


# --- triton table ---------------------------------------------------------------------------------------------
def _build_triton_table() -> OpTable | None:
    import importlib.util

    import torch

    if importlib.util.find_spec("triton") is None:
        _UNAVAILABLE["triton"] = "triton is not installed (pip install 'distilbert_fast[triton]')"
        return None
    # Importing triton on a CPU-only machine is pointless unless its interpreter was asked for.
    if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") == "1"):
        _UNAVAILABLE["triton"] = "no CUDA device (TRITON_INTERPRET=1 runs the Triton kernels on CPU, slowly)"
        return None
    from . import triton as T

    if not T.AVAILABLE:
        _UNAVAILABLE["triton"] = T.IMPORT_ERROR or "unavailable"
        return None
    return OpTable(
        name="triton",
        packed=True,
        embeddings=T.embeddings,
        qkv=T.qkv,
        linear=T.linear,
        add_layer_norm=T.add_layer_norm,
        layer_norm=T.layer_norm,
        attention=T.attention,
    )


_TABLES: dict[str, OpTable] = {"torch": TORCH}
_UNAVAILABLE: dict[str, str] = {}
_BUILDERS = {"cpp": _build_cpp_table, "triton": _build_triton_table}
_warned_fallback = False


def _table(name: str) -> OpTable | None:
    """The op table for `name`, built on first use. A backend found unavailable is re-checked on later
    calls only for triton, whose availability depends on TRITON_INTERPRET / CUDA at call time."""
    if name in _TABLES:
        return _TABLES[name]
    if name in _UNAVAILABLE and name != "triton":
        return None
    try:
        table = _BUILDERS[name]()
        if table is None and name == "cpp":
            from . import cpp as _cpp_mod

            _UNAVAILABLE["cpp"] = _cpp_mod.IMPORT_ERROR or "oneDNN (torch.backends.mkldnn) is not available"
    except Exception as e:  # a broken build must not break the pure-PyTorch path
        table, _UNAVAILABLE[name] = None, f"{type(e).__name__}: {e}"
    if table is not None:
        _TABLES[name] = table
        _UNAVAILABLE.pop(name, None)
    return table


def available_backends() -> list[str]:
    """Backends that can run in this process, fastest first; "torch" is always there."""
    return [name for name in ("triton", "cpp", "torch") if _table(name) is not None]


def unavailable_reason(name: str) -> str | None:
    """Why backend `name` cannot run in this process; None when it can."""
    if _table(name) is not None:
        return None
    return _UNAVAILABLE.get(name, "not built")


_HOW_TO_GET = {
    "cpp": "`distilbert-fast info` shows the C++ extension's state; README 'Install' says how it is built.",
    "triton": "Install triton and run on CUDA tensors (or set TRITON_INTERPRET=1 to run the kernels on CPU).",
}


def resolve_backend(backend: str | None = None, device=None) -> OpTable:
    """Turn a backend request ("auto" | "cpp" | "triton" | "torch", or None = env DISTILBERT_FAST_BACKEND or
    "auto") into an op table. An explicit request that cannot run raises. auto picks by device: triton for
    CUDA tensors, cpp for CPU tensors (never the slow Triton interpreter), and warns once when it had to
    fall back to the pure-PyTorch path."""
    global _warned_fallback
    requested = backend if backend is not None else os.environ.get(BACKEND_ENV, "auto")
    if not isinstance(requested, str) or requested not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS}, got {requested!r}"
            + (f" (from ${BACKEND_ENV})" if backend is None else "")
        )
    if requested == "auto":
        on_cuda = device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda"
        candidates = ("triton",) if on_cuda else ("cpp",)
        best = next((n for n in candidates if _table(n) is not None), "torch")
        if best == "torch" and candidates[0] in _UNAVAILABLE and not _warned_fallback:
            _warned_fallback = True
            kind = "C++" if candidates[0] == "cpp" else "Triton"
            warnings.warn(
                f"distilbert_fast: the {kind} backend is unavailable ({_UNAVAILABLE[candidates[0]]}); "
                "running the pure-PyTorch path",
                RuntimeWarning,
                stacklevel=3,
            )
        return _TABLES[best]
    if _table(requested) is None:
        why = _UNAVAILABLE.get(requested, "not built")
        how = _HOW_TO_GET[requested]
        raise RuntimeError(
            f"backend={requested!r} was requested but is unavailable: {why}. "
            f"Available backends: {available_backends()}. {how}"
        )
    return _TABLES[requested]


def drop_prepared(model) -> None:
    """Forget every backend's per-module prepared weights under `model` (oneDNN-packed GEMM weights, cached
    fused QKV): the next call rebuilds them from the current parameters."""
    for m in model.modules():
        for key in [k for k in m.__dict__ if k.startswith(_PREPARED_PREFIXES)]:
            del m.__dict__[key]  # the ops recreate it on their next call


# __dict__ keys under which ops keep per-module prepared weights (gemm.packed, triton fused QKV).
_PREPARED_PREFIXES = ("_dbf_packed", "_dbf_triton_qkv")


__all__ = [
    "OpTable",
    "available_backends",
    "resolve_backend",
    "unavailable_reason",
    "reference",
    "TORCH",
    "drop_prepared",
]
