"""The op table: which implementation of each op the model calls, resolved once per model.

The model never branches on device or backend; it calls `model.ops.<op>(...)`. A backend is one small
explicit table below. Module-level ops (qkv, linear, the LayerNorms, embeddings) receive the nn.Module that
owns the weights, so a backend can keep per-module prepared state (oneDNN-prepacked weights) next to it.

  op              reference (torch)                      cpp (CPU fast path)
  embeddings      gather + add + LayerNorm               fused C++ kernel
  qkv             3 x F.linear                           1 prepacked oneDNN GEMM on [Wq; Wk; Wv]
  linear          F.linear (+ activation)                prepacked oneDNN GEMM, activation as post-op
  add_layer_norm  (x + r) then F.layer_norm              one-pass C++ kernel, fp32 statistics
  attention       padded matmul/softmax/matmul           varlen C++ kernel on packed tokens
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable

from . import reference

BACKEND_ENV = "DISTILBERT_FAST_BACKEND"
BACKENDS = ("auto", "cpp", "torch")


@dataclass(frozen=True)
class OpTable:
    name: str
    packed: bool  # True: layers run padding-free on (real tokens, dim) rows
    embeddings: Callable  # (emb_module, input_ids|None, inputs_embeds|None, position_ids) -> (N, D)
    qkv: Callable  # (attention_module, x) -> q, k, v  each (N, D)
    linear: Callable  # (nn.Linear, x, act=None) -> act(x W^T + b)
    add_layer_norm: Callable  # (nn.LayerNorm, x, residual) -> LN(x + residual)
    layer_norm: Callable  # (nn.LayerNorm, x) -> LN(x)
    attention: Callable  # (q, k, v, layout, n_heads, head_mask, dropout_p, need_weights) -> (ctx, probs)


# --- reference table ----------------------------------------------------------------------------------------
def _ref_embeddings(emb, input_ids, inputs_embeds, position_ids):
    return reference.embeddings(input_ids, inputs_embeds, position_ids, emb.word_embeddings.weight,
                                emb.position_embeddings.weight, emb.LayerNorm.weight, emb.LayerNorm.bias)


def _ref_qkv(attn, x):
    return tuple(reference.linear(x, lin.weight, lin.bias) for lin in (attn.q_lin, attn.k_lin, attn.v_lin))


TORCH = OpTable(
    name="torch",
    packed=False,
    embeddings=_ref_embeddings,
    qkv=_ref_qkv,
    linear=lambda lin, x, act=None: reference.linear(x, lin.weight, lin.bias, act),
    add_layer_norm=lambda ln, x, residual: reference.add_layer_norm(x, residual, ln.weight, ln.bias),
    layer_norm=lambda ln, x: reference.layer_norm(x, ln.weight, ln.bias),
    attention=reference.attention,
)


# --- cpp table ------------------------------------------------------------------------------------------------
def _build_cpp_table() -> OpTable | None:
    from . import cpp, onednn

    if not (cpp.AVAILABLE and onednn.available()):
        return None

    def embeddings(emb, input_ids, inputs_embeds, position_ids):
        if inputs_embeds is None:
            return cpp.embeddings(input_ids, position_ids, emb.word_embeddings.weight,
                                  emb.position_embeddings.weight, emb.LayerNorm.weight, emb.LayerNorm.bias)
        pos = emb.position_embeddings.weight.index_select(0, position_ids)
        return cpp.add_layer_norm(inputs_embeds.contiguous(), pos, emb.LayerNorm.weight, emb.LayerNorm.bias)

    def qkv(attn, x):
        # One GEMM for the three projections; q, k, v are column views of its (N, 3D) output, which the
        # attention kernel reads in place (row stride 3D).
        out = onednn.packed(attn, [attn.q_lin, attn.k_lin, attn.v_lin])(x)
        return out.chunk(3, dim=1)

    def attention(q, k, v, layout, n_heads, head_mask, dropout_p, need_weights):
        hd = q.shape[1] // n_heads
        ctx = cpp.varlen_attention(q, k, v, layout.cu_seqlens, layout.max_seqlen, n_heads, hd**-0.5, head_mask)
        return ctx, None

    return OpTable(
        name="cpp",
        packed=True,
        embeddings=embeddings,
        qkv=qkv,
        linear=lambda lin, x, act=None: onednn.packed(lin, [lin])(x, act),
        add_layer_norm=lambda ln, x, residual: cpp.add_layer_norm(x, residual, ln.weight, ln.bias),
        layer_norm=lambda ln, x: cpp.layer_norm(x, ln.weight, ln.bias),
        attention=attention,
    )


_TABLES: dict[str, OpTable] = {"torch": TORCH}
_UNAVAILABLE: dict[str, str] = {}
try:
    _cpp = _build_cpp_table()
    if _cpp is not None:
        _TABLES["cpp"] = _cpp
    else:
        from . import cpp as _cpp_mod

        _UNAVAILABLE["cpp"] = _cpp_mod.IMPORT_ERROR or "oneDNN (torch.backends.mkldnn) is not available"
except Exception as e:  # a broken build must not break the pure-PyTorch path
    _UNAVAILABLE["cpp"] = f"{type(e).__name__}: {e}"
_warned_fallback = False


def available_backends() -> list[str]:
    """Backends that can run in this process, fastest first; "torch" is always there."""
    return [name for name in ("cpp", "torch") if name in _TABLES]


def resolve_backend(backend: str | None = None) -> OpTable:
    """Turn a backend request ("auto" | "cpp" | "torch", or None = env DISTILBERT_FAST_BACKEND or "auto")
    into an op table. An explicit request that cannot run raises; auto picks the fastest available and
    warns once when it had to fall back to the pure-PyTorch path."""
    global _warned_fallback
    requested = backend if backend is not None else os.environ.get(BACKEND_ENV, "auto")
    if not isinstance(requested, str) or requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {requested!r}"
                         + (f" (from ${BACKEND_ENV})" if backend is None else ""))
    if requested == "auto":
        best = available_backends()[0]
        if best == "torch" and "cpp" in _UNAVAILABLE and not _warned_fallback:
            _warned_fallback = True
            warnings.warn(f"distilbert_fast: the C++ backend is unavailable ({_UNAVAILABLE['cpp']}); "
                          "running the pure-PyTorch path", RuntimeWarning, stacklevel=3)
        return _TABLES[best]
    if requested not in _TABLES:
        why = _UNAVAILABLE.get(requested, "not built")
        raise RuntimeError(f"backend={requested!r} was requested but is unavailable: {why}. "
                           f"Available backends: {available_backends()}. Build the extension with "
                           "`pip install --no-build-isolation -e .` (needs a C++ compiler and torch).")
    return _TABLES[requested]


__all__ = ["OpTable", "available_backends", "resolve_backend", "reference", "TORCH"]
