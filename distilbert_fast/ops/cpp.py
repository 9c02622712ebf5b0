"""C++ CPU kernels (csrc/, built as `distilbert_fast._C`): guarded import, fake kernels, thin wrappers.

`AVAILABLE` says whether the extension loaded (a prebuilt `_C` matching this torch, or one compiled on first
use: ops/build.py), `BUILD_INFO` how it was built, `IMPORT_ERROR` why not and how to fix it (None when it
loaded). Setting DISTILBERT_FAST_NO_EXT=1 disables it at runtime too. The ops live under
`torch.ops.distilbert_fast`:

    add_layer_norm(Tensor x, Tensor? residual, Tensor weight, Tensor bias, float eps) -> Tensor
    bias_act(Tensor x, Tensor bias, str act) -> Tensor
    varlen_attention(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, int max_seqlen, int n_heads,
                     float scale, Tensor? head_mask, Tensor? seqused=None) -> Tensor
    embeddings(Tensor input_ids, Tensor position_ids, Tensor word_weight, Tensor pos_weight,
               Tensor ln_weight, Tensor ln_bias, float eps) -> Tensor

All take 2-D token rows (N, D) in float32 or bfloat16 (row-strided views with a unit-stride last dim are
read in place, e.g. q/k/v column slices of a fused (N, 3D) QKV output), compute in fp32 and return a new
contiguous (N, D) tensor in the input's dtype. They are inference kernels: no autograd formula is
registered, so callers that need gradients use the reference ops.
"""

from __future__ import annotations

import torch

LAYER_NORM_EPS = 1e-12

AVAILABLE: bool = False
IMPORT_ERROR: str | None = None
BUILD_INFO: dict | None = None  # how the loaded library was built and where it came from (see build.load)

# Loading the library registers torch.ops.distilbert_fast.*: a matching prebuilt _C, else a per-machine
# build compiled on first use against this torch (ops/build.py says when and why).
try:
    from . import build

    BUILD_INFO = build.load()
    AVAILABLE = True
except build.ExtensionUnavailable as e:
    IMPORT_ERROR = str(e)
except Exception as e:  # an unexpected failure must not break the pure-PyTorch path
    IMPORT_ERROR = f"{type(e).__name__}: {e}"

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")


def _register_fakes() -> None:
    """Shapes and dtypes only, so torch.compile / FakeTensor tracing can see through the ops."""

    @torch.library.register_fake("distilbert_fast::add_layer_norm")
    def _add_layer_norm_fake(x, residual, weight, bias, eps):
        torch._check(x.dim() == 2, lambda: "add_layer_norm: x must be 2-D")
        return x.new_empty(x.shape)

    @torch.library.register_fake("distilbert_fast::bias_act")
    def _bias_act_fake(x, bias, act):
        torch._check(x.dim() == 2, lambda: "bias_act: x must be 2-D")
        return x.new_empty(x.shape)

    @torch.library.register_fake("distilbert_fast::varlen_attention")
    def _varlen_attention_fake(q, k, v, cu_seqlens, max_seqlen, n_heads, scale, head_mask, seqused=None):
        torch._check(q.dim() == 2, lambda: "varlen_attention: q must be 2-D")
        return q.new_empty(q.shape)

    @torch.library.register_fake("distilbert_fast::embeddings")
    def _embeddings_fake(input_ids, position_ids, word_weight, pos_weight, ln_weight, ln_bias, eps):
        torch._check(input_ids.dim() == 1, lambda: "embeddings: input_ids must be 1-D")
        return word_weight.new_empty((input_ids.shape[0], word_weight.shape[1]))


if AVAILABLE:
    try:
        _register_fakes()
    except Exception as e:  # a stale _C without one of the ops: treat as not built
        AVAILABLE = False
        IMPORT_ERROR = f"distilbert_fast._C does not match this package: {type(e).__name__}: {e}"


def _require():
    if not AVAILABLE:
        raise RuntimeError(f"distilbert_fast C++ extension is not available: {IMPORT_ERROR}")


def add_layer_norm(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float = LAYER_NORM_EPS,
) -> torch.Tensor:
    """LayerNorm(x + residual) (of x alone when residual is None) over the last dim. x, residual: (N, D)."""
    _require()
    return torch.ops.distilbert_fast.add_layer_norm(x, residual, weight, bias, float(eps))


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = LAYER_NORM_EPS
) -> torch.Tensor:
    """LayerNorm(x) over the last dim. x: (N, D)."""
    _require()
    return torch.ops.distilbert_fast.add_layer_norm(x, None, weight, bias, float(eps))


def bias_act(x: torch.Tensor, bias: torch.Tensor, act: str) -> torch.Tensor:
    """act(x + bias), act in ACTIVATIONS ("gelu" is the exact erf GELU, "gelu_new" the tanh form)."""
    _require()
    return torch.ops.distilbert_fast.bias_act(x, bias, act)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    n_heads: int,
    scale: float,
    head_mask: torch.Tensor | None = None,
    seqused: torch.Tensor | None = None,
) -> torch.Tensor:
    """Packed multi-head attention: for every sequence s (rows cu_seqlens[s]:cu_seqlens[s+1]) and head h,
    softmax(scale * Q K^T) V, probabilities times head_mask[h] if given. q, k, v: (N, n_heads*head_dim)
    -> (N, n_heads*head_dim) contiguous. cu_seqlens: (B+1,) int32. seqused: (B,) int32 or None: sequence s
    attends to its first seqused[s] rows only as keys (all of its rows are still queries); a sequence with
    no keys gives zeros."""
    _require()
    return torch.ops.distilbert_fast.varlen_attention(
        q, k, v, cu_seqlens, int(max_seqlen), int(n_heads), float(scale), head_mask, seqused
    )


def embeddings(
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    word_weight: torch.Tensor,
    pos_weight: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float = LAYER_NORM_EPS,
) -> torch.Tensor:
    """LayerNorm(word_weight[input_ids] + pos_weight[position_ids]). ids, positions: (N,) int64 -> (N, D)."""
    _require()
    return torch.ops.distilbert_fast.embeddings(
        input_ids, position_ids, word_weight, pos_weight, ln_weight, ln_bias, float(eps)
    )


_MALLOC_TUNED = False


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory in the process instead of returning it to the OS.

    By default glibc serves every allocation above 32 MiB (at most; the dynamic mmap threshold) with a fresh
    mmap and unmaps it on free, so each such tensor (e.g. the (4096, 3072) fp32 FFN activation, or the
    (4096, 2304) fp32 fused QKV output) is page-faulted and zeroed by the kernel on every call: measured on
    the 2-core Zen 5 box, bias_act on 4096x3072 fp32 takes 14 ms with the default and 1.1 ms after this
    call (12,289 -> ~0 page faults per call). Process-wide and irreversible (like an inference arena);
    a no-op returning False where the C library is not glibc. Idempotent.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _MALLOC_TUNED = ok
    return ok


__all__ = [
    "AVAILABLE",
    "IMPORT_ERROR",
    "BUILD_INFO",
    "ACTIVATIONS",
    "add_layer_norm",
    "layer_norm",
    "bias_act",
    "varlen_attention",
    "embeddings",
    "keep_freed_memory",
]
