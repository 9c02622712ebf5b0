"""Property tests (hypothesis) of every C++ kernel against the reference ops, issue 11.

Random shapes (including 0 rows), row strides, dtypes, parameter dtypes, masks / empty sequences, head masks
with zeros, int32 and int64 indices, and non-finite inputs (inf, -inf, NaN, activations up to 1e30). The
properties:
  * finite where the reference is finite, and close to it (fp32 1e-5, bf16 2e-2 of the output scale);
  * non-finite wherever the reference is non-finite (no NaN/inf silently turned into numbers), plus the one
    documented difference: a LayerNorm row whose fp32 variance overflows is NaN (the reference returns the
    bias there for some magnitudes, i.e. a finite but meaningless row).
Example counts are bounded (profile "dbf": 25 per test, DBF_HYPOTHESIS_EXAMPLES overrides) and derandomized,
so CI is deterministic and fast; run with a larger count locally to search harder.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_helpers import FLT_MAX, check_like_reference, loop_reference, poison, rows

from distilbert_fast.ops import cpp
from distilbert_fast.ops import reference as R

if not cpp.AVAILABLE:
    pytest.skip(f"distilbert_fast._C not available: {cpp.IMPORT_ERROR}", allow_module_level=True)

settings.register_profile(
    "dbf",
    max_examples=int(os.environ.get("DBF_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("dbf")

TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
dtypes = st.sampled_from([torch.float32, torch.bfloat16])
# ---- add_layer_norm -----------------------------------------------------------------------------------------


@given(
    n=st.integers(0, 40),
    d=st.integers(1, 300),
    dtype=dtypes,
    residual=st.booleans(),
    stride_extra=st.sampled_from([0, 5]),
    fp32_params=st.booleans(),
    seed=st.integers(0, 2**16),
    spots=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 999), st.integers(0, 2)), max_size=4),
    huge=st.lists(
        st.tuples(st.integers(0, 99), st.sampled_from([1e15, 1e18, 1e19, 1e20, 1e25, 1e30])), max_size=3
    ),
)
def test_add_layer_norm_property(n, d, dtype, residual, stride_extra, fp32_params, seed, spots, huge):
    x = rows(n, d, dtype, seed, stride_extra)
    r = rows(n, d, dtype, seed + 1) if residual else None
    for i, s in huge:  # activations large enough to overflow the fp32 variance
        if n:
            x[i % n] = (x[i % n].float() * s).to(dtype)
    poison(x, spots)
    pdt = torch.float32 if fp32_params else dtype
    w = (1.0 + 0.2 * rows(1, d, torch.float32, seed + 2)[0]).to(pdt)
    b = rows(1, d, torch.float32, seed + 3)[0].to(pdt)
    out = cpp.add_layer_norm(x, r, w, b) if residual else cpp.layer_norm(x, w, b)
    assert out.dtype == dtype and out.shape == (n, d) and out.is_contiguous()
    xs = x.float() + (r.float() if residual else 0)
    # The truth in float64: NaN for a row with a non-finite input (as torch's fp32 LayerNorm), exact otherwise.
    # (torch's fp32 kernel itself overflows for some finite rows, e.g. one element of 1e30 with D=1, where
    # the exact answer, which this kernel gives, is the bias.)
    ref = F.layer_norm(xs.double(), (d,), w.double(), b.double(), 1e-12)
    x64 = xs.double()
    # The sum of squared deviations is accumulated in fp32: beyond FLT_MAX the statistics do not exist in fp32
    # and the row is NaN (never the silently finite bias that 1/sqrt(inf) = 0 would give).
    sumsq = ((x64 - x64.mean(-1, keepdim=True)) ** 2).sum(-1) if n else torch.zeros(0, dtype=torch.float64)
    finite_in = torch.isfinite(x64).all(-1)
    check_like_reference(
        out,
        ref,
        TOL[dtype],
        f"add_layer_norm {n}x{d} {dtype}",
        may_be_nan=finite_in & (sumsq > FLT_MAX / 1.01),
    )
    surely = finite_in & (sumsq > FLT_MAX * 1.01)
    assert torch.isnan(out[surely].float()).all(), "variance overflow must give NaN"


def test_layer_norm_overflow_is_nan_like_the_reference():
    """Issue 11: activations ~1e18 and up gave finite rows (the bias) where the fp32 reference gives NaN."""
    g = torch.Generator().manual_seed(0)
    w, b = torch.ones(384), torch.zeros(384)
    for s in (1e25, 1e30):
        x = torch.randn(2, 384, generator=g) * s
        assert torch.isnan(R.layer_norm(x, w, b)).all()
        assert torch.isnan(cpp.layer_norm(x, w, b)).all()
        assert torch.isnan(cpp.add_layer_norm(x, torch.zeros_like(x), w, b)).all()
    x = torch.randn(2, 384, generator=g) * 3e18  # sum of squares ~3e39 > FLT_MAX
    assert torch.isnan(cpp.layer_norm(x, w, b)).all()


# ---- bias_act ------------------------------------------------------------------------------------------------


@given(
    n=st.integers(0, 33),
    d=st.integers(1, 200),
    dtype=dtypes,
    act=st.sampled_from(cpp.ACTIVATIONS),
    stride_extra=st.sampled_from([0, 3]),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1.0, 30.0]),
    spots=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 999), st.integers(0, 2)), max_size=4),
)
def test_bias_act_property(n, d, dtype, act, stride_extra, seed, scale, spots):
    x = poison(rows(n, d, dtype, seed, stride_extra, scale), spots)
    bias = rows(1, d, dtype, seed + 1)[0]
    out = cpp.bias_act(x, bias, act)
    assert out.dtype == dtype and out.shape == (n, d)
    ref = R.activation(x.double() + bias.double(), act)
    # element-wise: compare as (n*d, 1) "rows"
    check_like_reference(out.reshape(-1, 1), ref.reshape(-1, 1), max(TOL[dtype], 1e-5) * 2, f"bias_act {act}")


# ---- varlen_attention ------------------------------------------------------------------------------------------


@given(
    lens=st.lists(st.integers(0, 40), min_size=1, max_size=4),
    n_heads=st.integers(1, 4),
    head_dim=st.sampled_from([1, 8, 17, 32, 64]),
    dtype=dtypes,
    fused=st.booleans(),
    masked_heads=st.lists(st.integers(0, 3), max_size=2),
    seed=st.integers(0, 2**16),
    spots=st.lists(
        st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(0, 2), st.integers(0, 2)), max_size=2
    ),
)
def test_varlen_attention_property(lens, n_heads, head_dim, dtype, fused, masked_heads, seed, spots):
    n, d = sum(lens), n_heads * head_dim
    g = torch.Generator().manual_seed(seed)
    if fused:  # column views of one (n, 3d) tensor, as the fused QKV GEMM gives them
        q, k, v = torch.randn(n, 3 * d, generator=g).to(dtype).chunk(3, dim=1)
    else:
        q, k, v = (torch.randn(n, d, generator=g).to(dtype) for _ in range(3))
    for r, c, which, kind in spots:  # non-finite values in q, k or v
        if n:
            poison((q, k, v)[which], [(r, c, kind)])
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lens).cumsum(0)
    hm = None
    if masked_heads:
        hm = torch.ones(n_heads)
        hm[[h % n_heads for h in masked_heads]] = 0.0
    scale = head_dim**-0.5
    out = cpp.varlen_attention(q, k, v, cu, max(lens), n_heads, scale, hm)
    assert out.dtype == dtype and out.shape == (n, d) and out.is_contiguous()
    ref = loop_reference(q, k, v, cu, n_heads, scale, hm)
    # per (token, head) block. A head with head_mask 0 is exactly 0 by contract (csrc/attention.cpp skips it):
    # even where its inputs are non-finite, for which the reference gives NaN * 0 = NaN (README "Guarantees").
    off = torch.zeros(n, n_heads, dtype=torch.bool)
    if hm is not None:
        off[:, hm == 0] = True
        assert (out.reshape(n, n_heads, head_dim)[off] == 0).all()
    check_like_reference(
        out.reshape(n * n_heads, head_dim),
        ref.reshape(n * n_heads, head_dim),
        TOL[dtype],
        f"attention lens={lens} H={n_heads} hd={head_dim}",
        skip=off.reshape(-1),
    )


# ---- embeddings --------------------------------------------------------------------------------------------------


@given(
    n=st.integers(0, 50),
    d=st.integers(1, 130),
    dtype=dtypes,
    index_dtype=st.sampled_from([torch.int32, torch.int64]),
    pos_index_dtype=st.sampled_from([torch.int32, torch.int64]),
    fp32_params=st.booleans(),
    seed=st.integers(0, 2**16),
    spots=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 999), st.integers(0, 2)), max_size=3),
)
def test_embeddings_property(n, d, dtype, index_dtype, pos_index_dtype, fp32_params, seed, spots):
    V, P = 37, 19
    word, pos = poison(rows(V, d, dtype, seed), spots), rows(P, d, dtype, seed + 1)
    pdt = torch.float32 if fp32_params else dtype
    w = (1.0 + 0.1 * rows(1, d, torch.float32, seed + 2)[0]).to(pdt)
    b = rows(1, d, torch.float32, seed + 3)[0].to(pdt)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (n,), generator=g).to(index_dtype)
    pids = torch.randint(0, P, (n,), generator=g).to(pos_index_dtype)
    out = cpp.embeddings(ids, pids, word, pos, w, b)
    assert out.dtype == dtype and out.shape == (n, d)
    ref = R.embeddings(ids.long(), None, pids.long(), word.float(), pos.float(), w.float(), b.float())
    check_like_reference(out, ref, TOL[dtype], f"embeddings {n}x{d} {dtype} ids {index_dtype}")


def test_embeddings_index_errors_name_the_argument():
    word, pos = torch.randn(5, 8), torch.randn(3, 8)
    w, b = torch.ones(8), torch.zeros(8)
    with pytest.raises(RuntimeError, match=r"input_ids\[1\] = 5 is out of range"):
        cpp.embeddings(torch.tensor([0, 5], dtype=torch.int32), torch.tensor([0, 1]), word, pos, w, b)
    with pytest.raises(RuntimeError, match="int64 or int32"):
        cpp.embeddings(torch.tensor([0, 1], dtype=torch.int16), torch.tensor([0, 1]), word, pos, w, b)


# ---- weights_fingerprint --------------------------------------------------------------------------------------


@given(
    shape=st.sampled_from([(1,), (7,), (384,), (33, 17), (64, 48)]),
    dtype=dtypes,
    seed=st.integers(0, 2**16),
    edit=st.sampled_from(["mul", "copy", "fill", "add_one_row", "numpy"]),
)
def test_weights_fingerprint_sees_untracked_whole_tensor_edits(shape, dtype, seed, edit):
    fp = torch.ops.distilbert_fast.weights_fingerprint
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(shape, generator=g).to(dtype) + 3.0)  # no zeros: a scale changes all
    before = fp([p], 16)
    assert fp([p], 16) == before  # deterministic, no change -> same value
    version = p._version
    if edit == "mul":
        p.data.mul_(3)
    elif edit == "copy":
        p.data.copy_(torch.randn(shape, generator=g).to(dtype) - 5.0)
    elif edit == "fill":
        p.data.fill_(0.25)
    elif edit == "add_one_row":  # the first row (always sampled)
        p.data.view(shape[0], -1)[0] += 1.0
    else:
        if dtype == torch.bfloat16:
            p.data.view(torch.int16).numpy()[...] ^= 0x0100  # flip a mantissa bit of every element
        else:
            p.data.numpy()[...] *= -1.0
    assert p._version == version, (
        "the edit must bypass autograd's version counter for this test to mean anything"
    )
    assert fp([p], 16) != before


def test_weights_fingerprint_identity_version_and_inference_tensors():
    fp = torch.ops.distilbert_fast.weights_fingerprint
    a = torch.randn(8, 8)
    k = fp([a], 4)
    with torch.no_grad():
        a.add_(0)  # values unchanged, version bumped: a tracked in-place op counts as a change
    assert fp([a], 4) != k
    assert fp([a.clone()], 4) != fp([a], 4)  # same values, other storage
    assert fp([a.to(torch.bfloat16)], 4) != fp([a], 4)
    with torch.inference_mode():
        t = torch.randn(4, 4)
    assert fp([t], 4) == fp([t], 4)  # inference tensors have no version counter: no error
    m = torch.empty(3, 3, device="meta")
    assert fp([m], 4) == fp([m], 4)
