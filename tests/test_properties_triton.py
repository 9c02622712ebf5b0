"""Property tests (hypothesis) of every Triton kernel against the reference ops, under Triton's interpreter
(TRITON_INTERPRET=1, CPU tensors), issue 11. Same properties as tests/test_properties.py for the C++ kernels:
finite and close where the reference is finite, non-finite wherever it is not. The interpreter runs ~ms per
program instance, so shapes are small and the example count is low (profile "dbf_triton": 10 per test,
DBF_HYPOTHESIS_EXAMPLES overrides), derandomized for a deterministic CI.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytest.importorskip("triton", reason="triton is not installed")

from property_helpers import FLT_MAX, check_like_reference, loop_reference, poison, rows  # noqa: E402

import distilbert_fast.ops.triton as T  # noqa: E402
from distilbert_fast.ops import reference as R  # noqa: E402
from distilbert_fast.ops.triton import _utils  # noqa: E402

if not T.AVAILABLE or not _utils.INTERPRET:
    pytest.skip(
        "needs the Triton interpreter (TRITON_INTERPRET=1 before triton is imported)", allow_module_level=True
    )

settings.register_profile(
    "dbf_triton",
    max_examples=int(os.environ.get("DBF_HYPOTHESIS_EXAMPLES", "10")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("dbf_triton")
dtypes = st.sampled_from([torch.float32, torch.bfloat16, torch.float16])
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}
spots_st = st.lists(st.tuples(st.integers(0, 99), st.integers(0, 999), st.integers(0, 2)), max_size=3)


@PROFILE
@given(
    n=st.integers(0, 9),
    d=st.integers(1, 70),
    dtype=dtypes,
    residual=st.booleans(),
    stride_extra=st.sampled_from([0, 3]),
    seed=st.integers(0, 2**16),
    spots=spots_st,
    huge=st.sampled_from([None, 1e18, 1e30]),
)
def test_add_layer_norm_rows_property(n, d, dtype, residual, stride_extra, seed, spots, huge):
    x = rows(n, d, torch.float32, seed, stride_extra)
    if huge is not None and n and dtype != torch.float16:  # beyond fp16's range: fp32 / bf16 only
        x[0] *= huge
    x = poison(x.to(dtype), spots)
    r = rows(n, d, dtype, seed + 1) if residual else None
    w = 1.0 + 0.1 * rows(1, d, dtype, seed + 2)[0]
    b = rows(1, d, dtype, seed + 3)[0]
    out = T.add_layer_norm_rows(x, r, w, b)
    assert out.dtype == dtype and out.shape == (n, d)
    xs = x.float() + (r.float() if residual else 0)
    ref = F.layer_norm(xs.double(), (d,), w.double(), b.double(), 1e-12)
    x64 = xs.double()
    sumsq = ((x64 - x64.mean(-1, keepdim=True)) ** 2).sum(-1) if n else torch.zeros(0, dtype=torch.float64)
    finite_in = torch.isfinite(x64).all(-1)
    check_like_reference(
        out,
        ref,
        TOL[dtype],
        f"triton add_layer_norm {n}x{d} {dtype}",
        may_be_nan=finite_in & (sumsq > FLT_MAX / 1.01),
    )
    assert torch.isnan(out[finite_in & (sumsq > FLT_MAX * 1.01)].float()).all(), (
        "variance overflow must be NaN"
    )


@PROFILE
@given(
    m=st.integers(0, 20),
    k=st.integers(1, 40),
    n=st.integers(1, 40),
    dtype=dtypes,
    act=st.sampled_from([None, "gelu", "gelu_new", "relu", "silu"]),
    bias=st.booleans(),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
    spots=spots_st,
)
def test_linear_fused_property(m, k, n, dtype, act, bias, residual, seed, spots):
    x = poison(rows(m, k, dtype, seed), spots)
    w = rows(n, k, dtype, seed + 1, scale=0.2)
    b = rows(1, n, dtype, seed + 2)[0] if bias else None
    r = rows(m, n, dtype, seed + 3) if residual else None
    y = T.linear_fused(x, w, b, act, residual=r)
    assert y.dtype == dtype and y.shape == (m, n)
    ref = R.linear(x.double(), w.double(), None if b is None else b.double(), act)
    if residual:
        ref = ref + r.double()
    check_like_reference(y, ref, TOL[dtype], f"triton linear {m}x{k}x{n} {act} {dtype}")


@PROFILE
@given(
    lens=st.lists(st.integers(0, 20), min_size=1, max_size=3),
    n_heads=st.integers(1, 2),
    head_dim=st.sampled_from([8, 16, 24]),
    dtype=dtypes,
    masked_head=st.booleans(),
    seed=st.integers(0, 2**16),
    spots=st.lists(
        st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(0, 2), st.integers(0, 2)), max_size=2
    ),
)
def test_varlen_attention_property(lens, n_heads, head_dim, dtype, masked_head, seed, spots):
    n, d = sum(lens), n_heads * head_dim
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(n, 3 * d, generator=g).to(dtype).chunk(3, dim=1)
    for r, c, which, kind in spots:
        if n:
            poison((q, k, v)[which], [(r, c, kind)])
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lens).cumsum(0)
    hm = None
    if masked_head:
        hm = torch.ones(n_heads)
        hm[0] = 0.0
    out = T.varlen_attention(q, k, v, cu, max(lens), n_heads, head_dim**-0.5, hm)
    assert out.dtype == dtype and out.shape == (n, d)
    ref = loop_reference(q, k, v, cu, n_heads, head_dim**-0.5, hm)
    off = torch.zeros(n, n_heads, dtype=torch.bool)
    if hm is not None:  # head_mask 0: exact zeros by contract (README "Guarantees")
        off[:, 0] = True
        assert (out.reshape(n, n_heads, head_dim)[off] == 0).all()
    check_like_reference(
        out.reshape(n * n_heads, head_dim),
        ref.reshape(n * n_heads, head_dim),
        TOL[dtype],
        f"triton attention {lens} H={n_heads} hd={head_dim} {dtype}",
        skip=off.reshape(-1),
    )


@PROFILE
@given(
    n=st.integers(0, 20),
    d=st.integers(1, 48),
    dtype=dtypes,
    index_dtype=st.sampled_from([torch.int32, torch.int64]),
    embeds=st.booleans(),
    seed=st.integers(0, 2**16),
    spots=spots_st,
)
def test_embeddings_rows_property(n, d, dtype, index_dtype, embeds, seed, spots):
    V, P = 23, 17
    word, pos = poison(rows(V, d, dtype, seed), spots), rows(P, d, dtype, seed + 1)
    w, b = 1.0 + 0.1 * rows(1, d, dtype, seed + 2)[0], rows(1, d, dtype, seed + 3)[0]
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (n,), generator=g).to(index_dtype)
    pids = torch.randint(0, P, (n,), generator=g).to(index_dtype)
    if embeds:
        inputs_embeds = poison(rows(n, d, dtype, seed + 4), spots)
        out = T.embeddings_rows(None, inputs_embeds, pids, word, pos, w, b)
        ref = R.embeddings(
            None, inputs_embeds.double(), pids.long(), word.double(), pos.double(), w.double(), b.double()
        )
    else:
        out = T.embeddings_rows(ids, None, pids, word, pos, w, b)
        ref = R.embeddings(ids.long(), None, pids.long(), word.double(), pos.double(), w.double(), b.double())
    assert out.dtype == dtype and out.shape == (n, d)
    check_like_reference(out, ref, TOL[dtype], f"triton embeddings {n}x{d} {dtype} {index_dtype}")
