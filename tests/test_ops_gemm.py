"""The fp32 GEMM on an MKL-packed weight (torch.ops.distilbert_fast.mkl_sgemm_packed, csrc/mkl_gemm.cpp) vs
float64 math, and the cpp backend's PackedLinear on it vs F.linear: one packed weight serves every token count
(1, 33, 257, 512 rows, row-strided inputs), bias and every activation, argument errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distilbert_fast.ops import cpp, gemm
from distilbert_fast.ops import reference as R

if not cpp.AVAILABLE:
    pytest.skip(f"distilbert_fast._C not available: {cpp.IMPORT_ERROR}", allow_module_level=True)
OPS = torch.ops.distilbert_fast
if not (hasattr(OPS, "mkl_sgemm_available") and OPS.mkl_sgemm_available()):
    pytest.skip("this torch build does not export MKL's packed sgemm", allow_module_level=True)

ACTS = [None, "gelu", "gelu_new", "relu", "silu"]


def _ref(x, w, b, act):
    y = x.double() @ w.double().T
    if b is not None:
        y = y + b.double()
    return R.activation(y, act) if act else y


def _close(got, ref):
    # fp32 accumulation over K=768 / 3072 terms vs float64: ~1e-5 of the output scale
    err = ((got.double() - ref).abs() / (1 + ref.abs())).max().item() if got.numel() else 0.0
    assert err <= 1e-5, err


@pytest.mark.parametrize("n", [0, 1, 33, 257, 512])
@pytest.mark.parametrize("act", ACTS)
def test_packed_sgemm_every_row_count(n, act):
    g = torch.Generator().manual_seed(n)
    K, N = 96, 3 * 64 + 5
    w, b = torch.randn(N, K, generator=g) * 0.2, torch.randn(N, generator=g)
    packed = OPS.mkl_sgemm_pack(w)
    x = torch.randn(n, K, generator=g)
    for bias in (b, None):
        y = OPS.mkl_sgemm_packed(x, packed, N, bias, act or "none")
        assert y.shape == (n, N) and y.dtype == torch.float32 and y.is_contiguous()
        _close(y, _ref(x, w, bias, act))


def test_packed_sgemm_strided_inputs():
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(40, 64, generator=g), torch.randn(40, generator=g)
    packed = OPS.mkl_sgemm_pack(w)
    wide = torch.randn(33, 3 * 64, generator=g)
    rows = wide[:, 64:128]  # row stride 192: read in place
    _close(OPS.mkl_sgemm_packed(rows, packed, 40, b, "none"), _ref(rows, w, b, None))
    cols = torch.randn(64, 33, generator=g).t()  # unit row stride, non-unit last stride: copied
    _close(OPS.mkl_sgemm_packed(cols, packed, 40, b, "gelu"), _ref(cols, w, b, "gelu"))


def test_packed_sgemm_errors_name_the_argument():
    w = torch.randn(8, 16)
    packed = OPS.mkl_sgemm_pack(w)
    with pytest.raises(RuntimeError, match="mkl_sgemm_pack: weight must be a 2-D float32"):
        OPS.mkl_sgemm_pack(w.double())
    with pytest.raises(RuntimeError, match="mkl_sgemm_packed: x must be a 2-D float32"):
        OPS.mkl_sgemm_packed(torch.randn(2, 16).bfloat16(), packed, 8, None, "none")
    with pytest.raises(RuntimeError, match="mkl_sgemm_packed: packed must be"):
        OPS.mkl_sgemm_packed(
            torch.randn(2, 12), packed, 8, None, "none"
        )  # K does not match the packed weight
    with pytest.raises(RuntimeError, match="mkl_sgemm_packed: bias"):
        OPS.mkl_sgemm_packed(torch.randn(2, 16), packed, 8, torch.randn(7), "none")
    with pytest.raises(RuntimeError, match="act must be one of"):
        OPS.mkl_sgemm_packed(torch.randn(2, 16), packed, 8, None, "tanh")


@pytest.mark.parametrize("kind", ["mkl", "onednn"])
def test_packed_linear_matches_f_linear(kind, monkeypatch):
    monkeypatch.setattr(gemm, "FP32_GEMM", kind)
    torch.manual_seed(0)
    lins = [torch.nn.Linear(64, 48) for _ in range(3)]
    p = gemm.PackedLinear(lins)
    assert p.kind == kind
    w = torch.cat([lin.weight for lin in lins]).detach()
    b = torch.cat([lin.bias for lin in lins]).detach()
    for n in (1, 33, 257):
        x = torch.randn(n, 64)
        for act in ACTS:
            _close(p(x, act), _ref(x, w, b, act))
    x3 = torch.randn(2, 5, 64)  # (..., K) inputs like F.linear
    torch.testing.assert_close(p(x3), F.linear(x3, w, b), rtol=1e-5, atol=1e-5)
