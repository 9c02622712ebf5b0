"""Triton GPU kernels for DistilBERT inference, padding-free (packed token rows, cu_seqlens).

  op              kernel (file)                                          notes
  embeddings      gather word + position rows, add, LayerNorm (embeddings.py)  inputs_embeds variant too
  qkv             one GEMM on cached [Wq; Wk; Wv], bias epilogue (linear.py)    q, k, v = column views
  linear          GEMM + bias + activation (+ residual) epilogue (linear.py)   gelu / gelu_new / relu / silu
  add_layer_norm  residual add + LayerNorm, fp32 statistics (layer_norm.py)
  layer_norm      LayerNorm (layer_norm.py)
  attention       FlashAttention-2 forward over cu_seqlens (attention.py)      head_mask, strided q/k/v

`AVAILABLE`: triton imports and there is somewhere to run it: a CUDA device, or TRITON_INTERPRET=1 (Triton's
numpy interpreter, which runs the same kernels on CPU tensors; that is how the tests prove them).
`IMPORT_ERROR` says why not (None when available). Every op is also registered with torch.library under
`torch.ops.distilbert_fast_triton.*` with a fake kernel, which is what torch.compile traces; eager calls
launch the kernels directly (the custom-op dispatcher would cost more than a small-batch kernel).

Kernels know nothing of models: the whole-model CUDA-graph runner is the runtime module
distilbert_fast/cuda_graphs.py, above the models.
"""

from __future__ import annotations

import os

import torch

AVAILABLE: bool = False
IMPORT_ERROR: str | None = None

try:
    import triton  # noqa: F401
except Exception as e:  # not installed (pip install 'distilbert_fast[triton]'), or a broken install
    IMPORT_ERROR = f"triton is not importable: {type(e).__name__}: {e}"
else:
    try:
        from .attention import attention, varlen_attention
        from .embeddings import embeddings, embeddings_rows
        from .layer_norm import add_layer_norm, add_layer_norm_rows, layer_norm
        from .linear import fused_qkv_weights, linear, linear_fused, qkv
    except Exception as e:  # a triton too old / too new for these kernels must not break the package
        IMPORT_ERROR = f"the Triton kernels failed to load: {type(e).__name__}: {e}"
    else:
        if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") == "1":
            AVAILABLE = True
        else:
            IMPORT_ERROR = "no CUDA device (set TRITON_INTERPRET=1 to run the kernels on CPU, slowly)"

if "attention" not in globals():  # kernels not loaded: keep the names importable, failing clearly when called

    def _unavailable(*args, **kwargs):
        raise RuntimeError(f"the triton backend is unavailable: {IMPORT_ERROR}")

    embeddings = qkv = linear = add_layer_norm = layer_norm = attention = _unavailable
    embeddings_rows = linear_fused = fused_qkv_weights = add_layer_norm_rows = varlen_attention = _unavailable


# The OpTable of these functions is built by distilbert_fast.ops (resolve_backend("triton")): the kernels
# package never imports the table layer above it.


__all__ = [
    "AVAILABLE",
    "IMPORT_ERROR",
    # op-table functions (exact OpTable signatures)
    "embeddings",
    "qkv",
    "linear",
    "add_layer_norm",
    "layer_norm",
    "attention",
    # lower-level tensor functions
    "embeddings_rows",
    "linear_fused",
    "fused_qkv_weights",
    "add_layer_norm_rows",
    "varlen_attention",
]
