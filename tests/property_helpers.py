"""Helpers of the property tests shared by the C++ (test_properties.py) and Triton (test_properties_triton.py)
suites: random (strided) rows, inf/NaN poisoning, a row-wise "like the reference" check that also demands
non-finite rows where the reference has them, and a float64 loop reference of varlen attention. Kept apart
from the suites so the Triton one does not skip when the C++ extension is missing."""

from __future__ import annotations

import torch

FLT_MAX = torch.finfo(torch.float32).max


def rows(n, d, dtype, seed, stride_extra=0, scale=1.0):
    """(n, d) random rows; with stride_extra > 0 a row-strided column view of a wider tensor."""
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(n, d + stride_extra, generator=g) * scale
    return full[:, stride_extra:].to(dtype) if stride_extra else full.to(dtype)


def poison(x: torch.Tensor, spots: list[tuple[int, int, int]]) -> torch.Tensor:
    """Write inf / -inf / NaN at (row, col) spots (taken modulo the shape)."""
    if x.numel() == 0:
        return x
    vals = (float("inf"), float("-inf"), float("nan"))
    for r, c, k in spots:
        x[r % x.shape[0], c % x.shape[1]] = vals[k]
    return x


def check_like_reference(
    out: torch.Tensor,
    ref: torch.Tensor,
    rel: float,
    what: str,
    may_be_nan: torch.Tensor | None = None,
    skip: torch.Tensor | None = None,
) -> None:
    """Row-wise: a non-finite reference row must be non-finite here; a finite one must match (finite and
    close). `may_be_nan` marks rows allowed to be NaN whatever the reference says (documented overflow);
    `skip` rows the caller checks itself."""
    assert out.shape == ref.shape, what
    out, ref = out.double(), ref.double()
    if skip is not None:
        out, ref = out[~skip], ref[~skip]
        may_be_nan = None if may_be_nan is None else may_be_nan[~skip]
    ref_bad = ~torch.isfinite(ref).all(-1) if ref.dim() > 1 else ~torch.isfinite(ref)
    out_bad = ~torch.isfinite(out).all(-1) if out.dim() > 1 else ~torch.isfinite(out)
    hidden = ref_bad & ~out_bad
    assert not hidden.any(), (
        f"{what}: rows {hidden.nonzero().flatten().tolist()[:8]} are finite here but "
        "non-finite in the reference"
    )
    ok = ~ref_bad
    if may_be_nan is not None:
        ok = ok & ~may_be_nan
    extra = ok & out_bad
    assert not extra.any(), f"{what}: rows {extra.nonzero().flatten().tolist()[:8]} are non-finite here only"
    if ok.any():
        a, e = out[ok], ref[ok]
        scale = max(1.0, e.abs().max().item())
        diff = (a - e).abs().max().item()
        assert diff <= rel * scale, f"{what}: max diff {diff:.3g} > {rel} * {scale:.3g}"


def loop_reference(q, k, v, cu, n_heads, scale, head_mask=None):
    n, d = q.shape
    hd = d // n_heads
    out = torch.zeros(n, d, dtype=torch.float64)
    for s in range(len(cu) - 1):
        a, e = int(cu[s]), int(cu[s + 1])
        for h in range(n_heads):
            cols = slice(h * hd, (h + 1) * hd)
            qs, ks, vs = (t[a:e, cols].double() for t in (q, k, v))
            p = torch.softmax(scale * qs @ ks.T, dim=-1)
            if head_mask is not None:
                p = p * float(head_mask[h])
            out[a:e, cols] = p @ vs
    return out
