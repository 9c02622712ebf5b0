"""The cpp backend's GEMMs, with weights prepacked once: fp32 on MKL's packed sgemm, bf16 (and fp32 opt-out) on
oneDNN with the activation fused as a post-op.

`F.linear` on this CPU goes to MKL with the weight re-read in its plain layout every call (~165-200 GFLOP/s
fp32). oneDNN with the weight reordered once into its blocked layout (`mkldnn::_reorder_linear_weight`) and
the activation applied in the GEMM epilogue (`mkldnn::_linear_pointwise`) reaches ~330-480 GFLOP/s fp32 and
~900 in bf16 on this machine, and saves one read+write of the (tokens, 3072) FFN activation.

fp32 weights go to MKL's packed GEMM instead when this torch exports it (csrc/mkl_gemm.cpp says why: on the
2-core Xeon it streams the weights better, +18% GEMM rate at one 128-token sequence, +1-5% on large batches);
the bias and the activation then run in one in-place pass after the GEMM. `FP32_GEMM = "onednn"` (or the
environment variable DISTILBERT_FAST_FP32_GEMM=onednn) keeps fp32 on oneDNN; it is read when a weight is
packed. bf16 stays on oneDNN.

The packed weight is a copy, cached on the module it came from. It must never be stale: every call checks
that the source weights are unchanged and repacks when they are not (see `_fingerprint` for what the check
sees and what it costs); `drop_packed(model)` forgets every copy (prepare_for_inference() calls it).
"""

from __future__ import annotations

import os

import torch
from torch import nn

# Bounded memory for any mix of input shapes (issue 11). oneDNN builds a primitive per GEMM shape, i.e. per
# token count, and keeps it in two LRU caches: oneDNN's own (ONEDNN_PRIMITIVE_CACHE_CAPACITY) and torch's
# ideep cache (LRU_CACHE_CAPACITY), both 1024 entries by default. With varying token counts each call adds
# ~4 new primitives. bench/soak.py (MiniLM, random 1-16 x 1-256, shared 2-core Xeon) measured RSS growth
# between call 100 and 300: +394 MB with the defaults, +116 MB capping only oneDNN's cache, +186 MB capping
# only torch's, +2 MB capping both at 8; capping both at 64 still grew ~+100 MB over 200 calls. Speed: 244 vs
# 234 tokens/s (capped vs default) on random shapes, and 231.6 vs 238.9 ms per 1x~128 forward when cycling
# five shapes (20 primitives, so the capped cache misses every call): rebuilding a primitive is lost in the
# noise of a forward. Set here, before this process runs its first oneDNN op; a value the user set wins.
# (They are read once: if something in the process ran oneDNN before distilbert_fast loaded its cpp backend,
# the defaults stay.)
PRIMITIVE_CACHE_CAPACITY = 8
for _var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
    os.environ.setdefault(_var, str(PRIMITIVE_CACHE_CAPACITY))

# activation name -> (oneDNN post-op attr, algorithm). "gelu"+"none" is the exact erf GELU, "tanh" the
# gelu_new form; "swish" with the default alpha of 1 is SiLU.
_POST_OPS = {
    None: ("none", None),
    "gelu": ("gelu", "none"),
    "gelu_new": ("gelu", "tanh"),
    "relu": ("relu", None),
    "silu": ("swish", None),
}
_BATCH_HINT = 512  # tokens per call the blocked layout is tuned for; any batch size still works
# "mkl": fp32 weights packed by MKL where torch exports it (else oneDNN); "onednn": always oneDNN.
FP32_GEMM = os.environ.get("DISTILBERT_FAST_FP32_GEMM", "mkl")
_ATTR = "_dbf_packed"

# Elements sampled per weight tensor by the freshness check. Why a sampled fingerprint (measured on the
# 2-core Xeon, MiniLM-L6 cpp, 24 packed GEMMs per forward; see issue 11 / README "Guarantees"):
#  * (data_ptr, _version) alone (the old key, ~3.5 us per GEMM in Python) misses every edit that bypasses
#    autograd's version counter: `w.data.mul_(3)`, `w.data.copy_(...)`, numpy views, and it raises for
#    inference tensors (models built under torch.inference_mode()).
#  * A full checksum reads every weight each call: 42 MB for MiniLM, ~4 ms, ~20% of a 1x128 forward.
#  * The C++ `weights_fingerprint` op mixes identity, version and 16 sampled elements per tensor into one
#    int: ~2.5 us per GEMM including the Python call, well under 1% of a 1x128 forward. It catches any
#    change of identity/dtype/device/shape, any version bump, and every whole-tensor edit (scale, copy, fill,
#    re-init) by any route. An untracked edit (through `.data`, numpy or ctypes) of a few elements none of
#    which is sampled is NOT seen: after such edits call `model.prepare_for_inference()`, which always
#    repacks. Tracked in-place edits (`w.mul_()` under no_grad, optimizer steps, load_state_dict) bump the
#    version and are always seen.
FINGERPRINT_SAMPLES = 16


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _sources(linears: list[nn.Linear]) -> list[torch.Tensor]:
    # _parameters lookups, not `lin.weight`: nn.Module.__getattr__ costs ~0.3 us each, paid every call.
    out = []
    for lin in linears:
        params = lin._parameters
        out.append(params["weight"])
        b = params.get("bias")
        if b is not None:
            out.append(b)
    return out


_OP: list = [None]  # the C++ op, looked up once (torch.ops attribute access costs ~1 us)


def _fingerprint(tensors: list[torch.Tensor]) -> object:
    op = _OP[0]
    if op is None:
        from . import cpp  # loads the extension (registers torch.ops.distilbert_fast) if it can

        op = _OP[0] = (
            torch.ops.distilbert_fast.weights_fingerprint
            if cpp.AVAILABLE and hasattr(torch.ops.distilbert_fast, "weights_fingerprint")
            else False
        )
    if op is not False:
        return op(tensors, FINGERPRINT_SAMPLES)
    # Without the C++ op (a build that predates it): identity + version only, documented as weaker.
    return tuple(
        (t.data_ptr(), 0 if t.is_inference() else t._version, t.dtype, t.device, t.shape) for t in tensors
    )


_MKL: list = [None]  # (pack op, gemm op) when MKL's packed sgemm is usable, else False


def _mkl_ops():
    ops = _MKL[0]
    if ops is None:
        from . import cpp

        ns = torch.ops.distilbert_fast if cpp.AVAILABLE else None
        ok = ns is not None and hasattr(ns, "mkl_sgemm_available") and bool(ns.mkl_sgemm_available())
        ops = _MKL[0] = (ns.mkl_sgemm_pack, ns.mkl_sgemm_packed) if ok else False
    return ops


def weights_key(linears: list[nn.Linear]) -> object:
    """What a prepared copy of these layers' weights must be rebuilt on: equal keys = unchanged weights (up to
    the sampling documented above; on CUDA tensors identity + version only, no device reads per call)."""
    return _fingerprint(_sources(linears))


class PackedLinear:
    """y = act(x @ W.T + b) with W prepacked. Several nn.Linear sharing an input (q, k, v) are
    concatenated into one GEMM: one pass over x, a wider N for better efficiency."""

    def __init__(self, linears: list[nn.Linear]):
        with torch.no_grad():
            w = (
                torch.cat([lin.weight.detach() for lin in linears])
                if len(linears) > 1
                else linears[0].weight.detach()
            )
            biases = [lin.bias for lin in linears]
            self.bias = None if biases[0] is None else torch.cat([b.detach() for b in biases]).contiguous()
            mkl = (
                _mkl_ops()
                if (FP32_GEMM == "mkl" and w.dtype == torch.float32 and w.device.type == "cpu")
                else False
            )
            if mkl:
                self.kind, self._gemm = "mkl", mkl[1]
                self.weight = mkl[0](w.contiguous())
                if self.bias is not None:
                    self.bias = self.bias.float()
            else:
                self.kind, self._gemm = "onednn", None
                self.weight = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), _BATCH_HINT)
        self.dtype, self.device = w.dtype, w.device
        self.out_features = w.shape[0]

    def __call__(self, x: torch.Tensor, act: str | None = None) -> torch.Tensor:
        if x.dtype != self.dtype or x.device != self.device:
            # Reached when the weights were converted (.to()) while this call was running: a clear error
            # instead of oneDNN's "could not create a primitive descriptor".
            raise RuntimeError(
                f"linear: input is {x.dtype} on {x.device} but the layer's weights are "
                f"{self.dtype} on {self.device}; the model's dtype/device changed during the "
                "call (a .to() in another thread?), or inputs_embeds has the wrong dtype"
            )
        if self._gemm is not None:
            if act not in _POST_OPS:
                raise ValueError(f"linear: act must be one of {list(_POST_OPS)}, got {act!r}")
            if x.dim() != 2:  # (..., K) like F.linear
                y = self._gemm(
                    x.reshape(-1, x.shape[-1]), self.weight, self.out_features, self.bias, act or "none"
                )
                return y.reshape(*x.shape[:-1], self.out_features)
            return self._gemm(x, self.weight, self.out_features, self.bias, act or "none")
        attr, algorithm = _POST_OPS[act]
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, attr, [], algorithm)


class _Cache:
    """Holder of one module's packed weight. Copies and pickles of the module start empty (oneDNN's opaque
    tensors can be neither copied nor serialised) and repack on first use."""

    def __init__(self):
        self.entry: tuple | None = None  # (fingerprint, PackedLinear), replaced as one object (thread-safe)

    def __deepcopy__(self, memo):
        return _Cache()

    def __reduce__(self):
        return (_Cache, ())


def packed(owner: nn.Module, linears: list[nn.Linear], attr: str = _ATTR) -> PackedLinear:
    """The PackedLinear for `linears`, cached on `owner` under `attr`; repacked whenever the fingerprint of
    the source weights changed since it was built."""
    cache = owner.__dict__.get(attr)
    if cache is None:
        cache = owner.__dict__[attr] = _Cache()
    key = weights_key(linears)
    entry = cache.entry
    if entry is None or entry[0] != key:
        entry = cache.entry = (key, PackedLinear(linears))  # a racing reader sees the old or the new pair
    return entry[1]


def drop_packed(model: nn.Module) -> int:
    """Forget every packed copy under `model` (the next call repacks from the current weights). Returns how
    many were dropped."""
    n = 0
    for m in model.modules():
        cache = m.__dict__.get(_ATTR)
        if isinstance(cache, _Cache) and cache.entry is not None:
            cache.entry = None
            n += 1
    return n
