"""The int8 path of the cpp backend: fused C++ quantizing kernels (csrc/quantize.cpp) + u8s8 GEMMs.

Two GEMMs, chosen per packed weight (`gemm_kind`; env DISTILBERT_FAST_INT8_GEMM = auto | vnni | onednn):
- "vnni" (auto where the CPU lacks AMX-INT8): our AVX-512 VNNI kernel with the epilogue fused
  (csrc/int8_gemm.cpp): each block of rows gets its epilogue while the GEMM output is still in L2, the same
  row code and bits as the oneDNN path below. Weights with in_features not a multiple of 4 stay on oneDNN.
- "onednn" (auto on AMX-INT8 CPUs, whose tile instructions oneDNN uses at several times VPDPBUSD's rate):
  `onednn::qlinear_pointwise` (aten/src/ATen/native/quantized/cpu/qlinear.cpp) on the weight prepacked
  once by `onednn::qlinear_prepack`, with activation scale 1 and zero point 128, per-channel weight scales,
  no bias and fp32 output: it returns int32 sum * w_scale[n]. oneDNN takes one scale per activation tensor,
  so the per-token scale, the bias and the activation are applied by our epilogue (int8_epilogue), which
  also quantizes the rows again when the next GEMM reads them; the GEMM runs on row chunks (CHUNK_ROWS) so
  that its output is re-read from cache. Measured on the 2-core Xeon (VNNI, no AMX): a u8 source runs ~3x
  the fp32 prepacked GEMM rate, an s8 source falls to a reference kernel (minutes), and an activation scale
  != 1 with a float bias was ~40x slower (the bias is requantized per call).
"""

from __future__ import annotations

import functools
import os

import torch

from .. import cpp as _cpp  # loads the extension: registers torch.ops.distilbert_fast.*
from .. import gemm
from . import _cat, _put, _take, unwritten

_ATTR = "_dbf_packed_int8"  # starts with ops/gemm.py's prefix: ops.drop_prepared() forgets it too
NS = "distilbert_fast"


def _op(name):
    return getattr(getattr(torch.ops, NS), name)


def available() -> bool:
    return (
        _cpp.AVAILABLE
        and hasattr(torch.ops.onednn, "qlinear_pointwise")
        and hasattr(getattr(torch.ops, NS), "int8_epilogue")
    )


GEMM_ENV = "DISTILBERT_FAST_INT8_GEMM"
GEMM_KINDS = ("auto", "vnni", "onednn")


def vnni_available() -> bool:
    """Whether this build of the C++ kernels has the VNNI int8 GEMM (an AVX-512 VNNI -march)."""
    op = getattr(getattr(torch.ops, NS), "int8_gemm_available", None)
    return op is not None and bool(op())


def gemm_kind() -> str:
    """The int8 GEMM new packed weights use: env DISTILBERT_FAST_INT8_GEMM, auto -> "vnni" unless the CPU has
    AMX-INT8 (or the build lacks the kernel), else "onednn"."""
    want = os.environ.get(GEMM_ENV, "auto")
    if want not in GEMM_KINDS:
        raise ValueError(f"{GEMM_ENV} must be one of {', '.join(GEMM_KINDS)}, got {want!r}")
    if want == "vnni" and not vnni_available():
        raise RuntimeError(
            f"{GEMM_ENV}=vnni: this build of the C++ kernels has no AVX-512 VNNI int8 GEMM (built for a CPU without it)"
        )
    if want == "auto":
        want = "vnni" if vnni_available() and not _has_amx_int8() else "onednn"
    return want


@functools.cache
def _has_amx_int8() -> bool:
    from ..build import cpu_flags

    return "amx_int8" in cpu_flags()


class PackedInt8:
    def __init__(self, linears, kind: str | None = None):
        w = _cat(linears, "weight_int8").contiguous()
        self.w_scale = _cat(linears, "weight_scale").float().contiguous()
        b = _cat(linears, "bias")
        self.bias = None if b is None else b.detach().float().contiguous()
        self.out_features = w.shape[0]
        self.kind = kind or gemm_kind()
        if w.shape[1] % 4:  # the VNNI kernel takes k in groups of 4 (every DistilBERT width is a multiple)
            self.kind = "onednn"
        if self.kind == "vnni":
            self.packed, self.comp = _op("int8_gemm_pack")(w)
        else:
            self.w_zp = torch.zeros(w.shape[0], dtype=torch.int64)
            self.weight = torch.ops.onednn.qlinear_prepack(w, None)

    def gemm(self, q: torch.Tensor) -> torch.Tensor:
        """oneDNN's fp32 output (int32 sum * w_scale), the input of the epilogue ops ("onednn" kind only)."""
        if self.kind != "onednn":
            raise RuntimeError(
                f"PackedInt8.gemm is the oneDNN GEMM; this weight was packed for {self.kind!r}"
            )
        return torch.ops.onednn.qlinear_pointwise(
            q, 1.0, 128, self.weight, self.w_scale, self.w_zp, None, 1.0, 0, torch.float32, "none", [], ""
        )


class _Holder:
    """One module's packed int8 weight. Copies and pickles of the module start empty (oneDNN's opaque
    tensors can be neither copied nor serialised) and repack on first use."""

    def __init__(self):
        self.entry: tuple | None = None  # (key, PackedInt8)

    def __deepcopy__(self, memo):
        return _Holder()

    def __reduce__(self):
        return (_Holder, ())


def _packed(owner, linears) -> PackedInt8:
    # the float weight + bias fingerprint (onednn's freshness check) and the int8 buffers' identity/version
    key = (
        gemm.weights_key(linears),
        tuple(
            (lin._buffers[n].data_ptr(), lin._buffers[n]._version)
            for lin in linears
            for n in ("weight_int8", "weight_scale")
        ),
    )
    holder = owner.__dict__.get(_ATTR)
    if holder is None:
        holder = owner.__dict__[_ATTR] = _Holder()
    entry = holder.entry
    if entry is None or entry[0] != key:
        entry = holder.entry = (key, PackedInt8(linears))  # replaced as one object: thread-safe readers
    return entry[1]


def quantize_rows(x):
    return _op("quantize_rows")(x)


def add_layer_norm_quant(x, residual, weight, bias, eps):
    return _op("add_layer_norm_quant")(x, residual, weight, bias, float(eps))


def embeddings_quant(input_ids, position_ids, word, pos, ln_w, ln_b, eps):
    return _op("embeddings_quant")(input_ids, position_ids, word, pos, ln_w, ln_b, float(eps))


def epilogue(acc, x_scale, bias, act, out_dtype, want_quant):
    return _op("int8_epilogue")(acc, x_scale, bias, act or "none", out_dtype, bool(want_quant))


def epilogue_out(acc, x_scale, bias, act, y, q=None, scale=None, rows_dtype=None):
    """int8_epilogue writing into y (and q, scale when given): row slices of a larger output. Without y, only
    q and scale: the rows are rounded to rows_dtype (default float32) and quantized, never stored."""
    _op("int8_epilogue_out")(acc, x_scale, bias, act or "none", y, q, scale, rows_dtype)


# Rows per int8 GEMM call (at most) when a batch has more than twice as many tokens. The GEMM's fp32 output is re-read by the
# epilogue: for a (4096, 3072) output that is 50 MB out to memory and back; in chunks of 512 rows it is 6 MB,
# reused chunk after chunk and still in cache. Measured on the 2-core Xeon (6 distinct weights per shape, as
# in a forward, 4096 tokens, GEMM + epilogue per layer): FFN-in 21.6 -> 18.8 ms, QKV 15.2 -> 12.9 ms, FFN-out
# 15.1 -> 15.1 ms; 256-row chunks were slower (per-call overhead), 1024 about the same as 512.
CHUNK_ROWS = 512


def gemm_epilogue(p: PackedInt8, q, s, act, out_dtype, want_quant, keep_y=True):
    """y = act((q - 128) @ W^T * s[:, None] * w_scale + bias) in out_dtype, plus y's rows quantized when
    want_quant: (y, q2, s2); q2 and s2 are not meant to be used otherwise. keep_y=False (with want_quant): y is
    not stored (None), only its quantized rows (those of y in out_dtype)."""
    M = q.shape[0]
    rows_dtype = None if keep_y else out_dtype
    if p.kind == "vnni":  # one call: the kernel blocks the rows itself
        y, q2, s2 = _outputs(M, p.out_features, out_dtype, keep_y, want_quant)
        _op("int8_gemm_out")(q, s, p.packed, p.comp, p.w_scale, p.bias, act or "none", y, q2, s2, rows_dtype)
        return y, q2, s2
    if keep_y and M <= 2 * CHUNK_ROWS:
        return epilogue(p.gemm(q), s, p.bias, act, out_dtype, want_quant)
    y, q2, s2 = _outputs(M, p.out_features, out_dtype, keep_y, want_quant)
    op, act = _op("int8_epilogue_out"), act or "none"
    for r, e in _chunks(M):
        op(p.gemm(q[r:e]), s[r:e], p.bias, act, _rows(y, r, e), _rows(q2, r, e), _rows(s2, r, e), rows_dtype)
    return y, q2, s2


def gemm_add_layer_norm(p: PackedInt8, q, s, residual, ln, want_quant):
    """LayerNorm(the GEMM + epilogue above + residual) in residual's dtype, plus its rows quantized when
    want_quant: (y, q2, s2). One pass per row chunk: the GEMM's output rows never go to memory."""
    M = q.shape[0]
    y, q2, s2 = _outputs(M, p.out_features, residual.dtype, True, want_quant)
    if p.kind == "vnni":
        _op("int8_gemm_add_ln_out")(
            q, s, p.packed, p.comp, p.w_scale, p.bias, residual, ln.weight, ln.bias, float(ln.eps), y, q2, s2
        )
        return y, q2, s2
    op = _op("int8_epilogue_add_ln_out")
    for r, e in _chunks(M):
        op(
            p.gemm(q[r:e]),
            s[r:e],
            p.bias,
            residual[r:e],
            ln.weight,
            ln.bias,
            float(ln.eps),
            y[r:e],
            _rows(q2, r, e),
            _rows(s2, r, e),
        )
    return y, q2, s2


def _outputs(M, F, dtype, keep_y, want_quant):
    y = torch.empty((M, F), dtype=dtype) if keep_y else None
    q2 = torch.empty((M, F), dtype=torch.uint8) if want_quant else None
    s2 = torch.empty(M, dtype=torch.float32) if want_quant else None
    return y, q2, s2


def _chunks(M):
    """(start, end) of equal row chunks of at most CHUNK_ROWS rows."""
    n = max(1, -(-M // CHUNK_ROWS))
    step = max(1, -(-M // n))
    return [(r, min(M, r + step)) for r in range(0, M, step)]


def _rows(t, r, e):
    return None if t is None else t[r:e]


class CppKernels:
    embeddings_quant = staticmethod(embeddings_quant)
    add_layer_norm_quant = staticmethod(add_layer_norm_quant)

    @staticmethod
    def linear(owner, linears, x, act, want_quant):
        q, s = _take(x, quantize_rows)
        p = _packed(owner, linears)
        # An output that only feeds the next int8 GEMM (the FFN's GELU rows) is never stored: the hand-off carries
        # its quantized rows (of the values in x's dtype, bf16-rounded for a bf16 model, as the reference
        # quantizes them), and the model gets a stand-in (int8.unwritten).
        keep_y = not want_quant
        y, q2, s2 = gemm_epilogue(p, q, s, act, x.dtype, want_quant, keep_y)
        if not want_quant:
            return y
        return _put(y if keep_y else unwritten(q2.shape, x.dtype), q2, s2)

    @staticmethod
    def linear_add_layer_norm(lin, x, ln, residual, want_quant):
        q, s = _take(x, quantize_rows)
        y, q2, s2 = gemm_add_layer_norm(_packed(lin, [lin]), q, s, residual, ln, want_quant)
        return _put(y, q2, s2) if want_quant else y
