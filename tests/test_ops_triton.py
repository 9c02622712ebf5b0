"""Each Triton kernel (distilbert_fast/ops/triton) against the reference ops, on fresh random inputs.

Runs under Triton's numpy interpreter (TRITON_INTERPRET=1, set in conftest.py before anything imports
triton) on CPU tensors, so CI proves the kernels without a GPU; with TRITON_INTERPRET=0 on a CUDA machine the
same tests run the compiled kernels on the GPU. The interpreter is slow (~ms per program instance), so shapes are tiny,
but every edge is covered: lengths 1/17/64/65/130, mixed batches, zero-length sequences, masks, odd widths,
row-strided views, head_dim 8/24/32/64, fp32 / bf16 / fp16.

Tolerances (max |a - e| <= rel * max(1, max |e|)): fp32 1e-4; bf16 / fp16 2e-2 against an fp32 reference
computed from the same (already rounded) 16-bit inputs, i.e. the error the 16-bit kernel itself adds.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install 'distilbert_fast[triton]')")

from helpers import assert_close  # noqa: E402

import distilbert_fast.ops.triton as T  # noqa: E402
from distilbert_fast.ops import reference  # noqa: E402
from distilbert_fast.ops.triton import _utils  # noqa: E402
from distilbert_fast.packing import Layout  # noqa: E402

if not T.AVAILABLE:
    pytest.skip(f"triton backend unavailable: {T.IMPORT_ERROR}", allow_module_level=True)
if not _utils.INTERPRET and not torch.cuda.is_available():
    pytest.skip(
        "distilbert_fast.ops.triton was imported before TRITON_INTERPRET=1 was set and there is no "
        "GPU: set TRITON_INTERPRET=1 in the environment (or in conftest.py)",
        allow_module_level=True,
    )

DEVICE = "cpu" if _utils.INTERPRET else "cuda"
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}
LENGTHS = [1, 17, 64, 65, 130]


def randn(*shape, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(device=DEVICE, dtype=dtype)


def cu_seqlens(lengths):
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    return cu.to(DEVICE)


# ----------------------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------------------
def ref_varlen_attention(q, k, v, lengths, n_heads, head_mask=None, kv_lens=None):
    """Per-sequence reference attention in fp32; kv_lens (right padding) masks keys like transformers."""
    outs, start = [], 0
    for i, L in enumerate(lengths):
        if L == 0:
            continue
        sl = slice(start, start + L)
        mask = None
        if kv_lens is not None:
            mask = (torch.arange(L) < kv_lens[i]).long()[None].to(q.device)
        layout = Layout.padded(1, L, mask)
        outs.append(
            reference.attention(
                q[sl].float(),
                k[sl].float(),
                v[sl].float(),
                layout,
                n_heads,
                None if head_mask is None else head_mask.float(),
            )[0]
        )
        start += L
    return torch.cat(outs) if outs else q.new_zeros((0, q.shape[1]), dtype=torch.float32)


def fused_qkv(n, dim, dtype, seed):
    """q, k, v as row-strided column views of one (n, 3 dim) tensor, like the fused QKV GEMM's output."""
    qkv = randn(n, 3 * dim, dtype=dtype, seed=seed)
    q, k, v = qkv.chunk(3, dim=1)
    assert q.stride() == (3 * dim, 1)
    return q, k, v


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("head_dim", [32, 64])
def test_varlen_attention_mixed_lengths(dtype, head_dim):
    lengths = [1, 17, 0, 64, 65, 130]  # a zero-length sequence in the middle produces nothing
    H = 2
    q, k, v = fused_qkv(sum(lengths), H * head_dim, dtype, seed=head_dim)
    hm = torch.tensor([0.75, 1.0], device=DEVICE)
    out = T.varlen_attention(q, k, v, cu_seqlens(lengths), max(lengths), H, head_mask=hm)
    assert out.dtype == dtype and out.shape == q.shape
    assert_close(
        out.float(),
        ref_varlen_attention(q, k, v, lengths, H, hm),
        rel=TOL[dtype],
        what=f"attention {dtype} hd{head_dim}",
    )


@pytest.mark.parametrize("head_dim,block_m,block_n", [(8, 16, 32), (24, 32, 16), (64, 16, 16), (128, 32, 32)])
def test_varlen_attention_odd_head_dims_and_blocks(head_dim, block_m, block_n):
    # head_dim 8 / 24 pad up to a 16 / 32 wide tile with masks; small blocks give many key blocks per row
    # block and BLOCK_M != BLOCK_N, so the online-softmax rescaling runs many times.
    lengths = [65, 1, 17, 40]
    H = 3
    q, k, v = fused_qkv(sum(lengths), H * head_dim, torch.float32, seed=head_dim)
    out = T.varlen_attention(q, k, v, cu_seqlens(lengths), max(lengths), H, block_m=block_m, block_n=block_n)
    assert_close(out, ref_varlen_attention(q, k, v, lengths, H), rel=1e-4, what=f"hd{head_dim}")


def test_varlen_attention_large_scores_stay_finite():
    # scores ~ +-1e3: the online softmax must subtract the running max (exp2 of raw scores overflows)
    lengths = [33, 70]
    H = 2
    q, k, v = fused_qkv(sum(lengths), H * 32, torch.float32, seed=3)
    q = q * 60.0
    out = T.varlen_attention(q, k, v, cu_seqlens(lengths), 70, H)
    assert_close(out, ref_varlen_attention(q, k, v, lengths, H), rel=1e-4, what="large scores")


def test_varlen_attention_empty_and_masked():
    H, hd = 2, 32
    # all sequences empty: nothing to compute, nothing written, no error
    q, k, v = fused_qkv(0, H * hd, torch.float32, seed=1)
    out = T.varlen_attention(q, k, v, cu_seqlens([0, 0, 0]), 0, H)
    assert out.shape == (0, H * hd)
    # empty sequences around real ones; a fully masked head (head_mask 0) gives exact zeros, not NaN
    lengths = [0, 5, 0, 0, 3, 0]
    q, k, v = fused_qkv(8, H * hd, torch.bfloat16, seed=2)
    hm = torch.tensor([0.0, 1.0], device=DEVICE)
    out = T.varlen_attention(q, k, v, cu_seqlens(lengths), 5, H, head_mask=hm)
    assert torch.isfinite(out.float()).all()
    assert (out[:, :hd] == 0).all()
    assert_close(out.float(), ref_varlen_attention(q, k, v, lengths, H, hm), rel=2e-2, what="empty+masked")
    # seqused: keys limited per sequence (the CUDA-graph static layout); 0 usable keys -> zeros, finite
    lengths = [6, 9, 4]
    kv = [6, 3, 0]
    q, k, v = fused_qkv(sum(lengths), H * hd, torch.float32, seed=4)
    out = T.varlen_attention(
        q, k, v, cu_seqlens(lengths), 9, H, seqused=torch.tensor(kv, dtype=torch.int32, device=DEVICE)
    )
    assert torch.isfinite(out).all() and (out[15:] == 0).all()
    assert_close(
        out[:15],
        ref_varlen_attention(q[:15], k[:15], v[:15], lengths[:2], H, kv_lens=kv),
        rel=1e-4,
        what="seqused",
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_attention_op_table_entry_matches_padded_reference(dtype):
    # the op-table signature on a packed layout built from a padded mask, vs the padded reference op
    B, S, H, hd = 3, 21, 2, 32
    lengths = torch.tensor([21, 5, 13])
    mask = (torch.arange(S) < lengths[:, None]).long().to(DEVICE)
    qp, kp, vp = fused_qkv(B * S, H * hd, dtype, seed=7)
    expected, _ = reference.attention(qp.float(), kp.float(), vp.float(), Layout.padded(B, S, mask), H)
    layout = Layout.packed_from_mask(B, S, mask, DEVICE)
    q, k, v = (layout.pack(t.reshape(B, S, -1)) for t in (qp, kp, vp))
    ctx, probs = T.attention(q, k, v, layout, H, None, 0.0, False)
    assert probs is None
    real = mask.reshape(-1).bool()
    assert_close(ctx.float(), expected[real], rel=TOL[dtype], what="attention op")
    with pytest.raises(NotImplementedError, match="dropout"):
        T.attention(q, k, v, layout, H, None, 0.1, False)
    with pytest.raises(NotImplementedError, match="probabilities"):
        T.attention(q, k, v, layout, H, None, 0.0, True)


# ----------------------------------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", [None, "gelu", "gelu_new", "relu", "silu"])
def test_linear_bias_activation(dtype, act):
    for m, k, n in ((1, 40, 48), (17, 130, 33), (65, 64, 96), (130, 32, 16)):
        x = randn(m, k, dtype=dtype, seed=m)
        w = randn(n, k, dtype=dtype, seed=k, scale=0.2)
        b = randn(n, dtype=dtype, seed=n)
        y = T.linear_fused(x, w, b, act)
        assert y.dtype == dtype and y.shape == (m, n)
        expected = reference.linear(x.float(), w.float(), b.float(), act)
        assert_close(y.float(), expected, rel=TOL[dtype], what=f"linear {act} {dtype} {m}x{k}x{n}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_residual_no_bias_strided_and_small_blocks(dtype):
    m, k, n = 65, 80, 72
    wide = randn(m, k + 24, dtype=dtype, seed=1)
    x = wide[:, 8 : 8 + k]  # row-strided view, read in place
    w = randn(n, k, dtype=dtype, seed=2, scale=0.2)
    b = randn(n, dtype=dtype, seed=3)
    r = randn(m, n, dtype=dtype, seed=4)
    expected = reference.linear(x.float(), w.float(), b.float(), "gelu") + r.float()
    got = T.linear_fused(x, w, b, "gelu", residual=r)
    assert_close(got.float(), expected, rel=TOL[dtype], what="residual")
    # 32-wide tiles: 3x3 programs (group swizzle, clamped tails), 3 K steps with a masked tail (80 % 32)
    cfg = dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, GROUP_M=2)
    assert_close(
        T.linear_fused(x, w, b, "gelu", residual=r, config=cfg).float(),
        expected,
        rel=TOL[dtype],
        what="small blocks",
    )
    cfg = dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=16)  # K % BLOCK_K == 0: the unmasked K loop
    assert_close(
        T.linear_fused(x, w, None, config=cfg).float(),
        reference.linear(x.float(), w.float(), None),
        rel=TOL[dtype],
        what="no bias, even K",
    )
    # batched leading dims and empty input
    x3 = randn(2, 3, k, dtype=dtype, seed=5)
    assert_close(
        T.linear_fused(x3, w, b).float(),
        reference.linear(x3.float(), w.float(), b.float()),
        rel=TOL[dtype],
        what="3-D x",
    )
    assert T.linear_fused(x[:0], w, b).shape == (0, n)


def test_linear_errors():
    x, w = randn(3, 8), randn(4, 8)
    with pytest.raises(ValueError, match="activation"):
        T.linear_fused(x, w, None, "tanh")
    with pytest.raises(TypeError, match="bfloat16"):
        T.linear_fused(x, w.bfloat16())
    with pytest.raises(ValueError, match="features"):
        T.linear_fused(x, randn(4, 9))


def test_fused_qkv_cached_and_invalidated():
    from torch import nn

    torch.manual_seed(0)
    attn = nn.Module()
    attn.q_lin, attn.k_lin, attn.v_lin = (nn.Linear(32, 32).to(DEVICE) for _ in range(3))
    x = randn(19, 32, seed=1)
    with torch.inference_mode():
        q, k, v = T.qkv(attn, x)
        w_cat = attn.__dict__["_dbf_triton_qkv"][1][0]
        for got, lin in zip((q, k, v), (attn.q_lin, attn.k_lin, attn.v_lin)):
            assert got.stride(0) == 96  # column views of the (N, 3D) output
            assert_close(got, reference.linear(x, lin.weight, lin.bias), rel=1e-4, what="qkv")
        T.qkv(attn, x)
        assert attn.__dict__["_dbf_triton_qkv"][1][0] is w_cat  # reused, not rebuilt per call
    with torch.no_grad():
        attn.k_lin.weight.mul_(2.0)  # in-place update bumps _version: rebuilt
    with torch.inference_mode():
        _, k2, _ = T.qkv(attn, x)
    assert attn.__dict__["_dbf_triton_qkv"][1][0] is not w_cat
    assert_close(k2, reference.linear(x, attn.k_lin.weight, attn.k_lin.bias), rel=1e-4, what="qkv refreshed")
    attn.to(torch.bfloat16)  # dtype change: rebuilt in the new dtype
    with torch.inference_mode():
        q3, _, _ = T.qkv(attn, x.bfloat16())
    assert q3.dtype == torch.bfloat16 and attn.__dict__["_dbf_triton_qkv"][1][0].dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------------------------
# layer norm
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("dim", [32, 48, 768])
def test_add_layer_norm(dtype, dim):
    w = 1.0 + randn(dim, dtype=dtype, seed=1, scale=0.1)
    b = randn(dim, dtype=dtype, seed=2, scale=0.1)
    for rows in LENGTHS:
        x = randn(rows, dim, dtype=dtype, seed=rows, scale=3.0)
        r = randn(rows, dim, dtype=dtype, seed=rows + 1)
        got = T.add_layer_norm_rows(x, r, w, b)
        assert got.dtype == dtype
        expected = reference.add_layer_norm(x.float(), r.float(), w.float(), b.float())
        assert_close(got.float(), expected, rel=TOL[dtype], what=f"add_ln {dtype} {rows}x{dim}")
        got = T.add_layer_norm_rows(x, None, w, b)
        assert_close(
            got.float(),
            reference.layer_norm(x.float(), w.float(), b.float()),
            rel=TOL[dtype],
            what=f"ln {dtype} {rows}x{dim}",
        )


def test_layer_norm_strided_offset_constant_and_empty():
    dim = 40
    w, b = 1.0 + randn(dim, seed=1, scale=0.1), randn(dim, seed=2, scale=0.1)
    wide = randn(33, 2 * dim, seed=3) + 1000.0  # large mean: two-pass variance, no cancellation
    x = wide[:, 5 : 5 + dim]
    assert_close(T.add_layer_norm_rows(x, None, w, b), reference.layer_norm(x, w, b), rel=1e-4, what="offset")
    const = torch.full((4, dim), 2.5, device=DEVICE)  # zero variance: rstd = 1/sqrt(eps), finite
    got = T.add_layer_norm_rows(const, None, w, b)
    assert torch.isfinite(got).all()
    assert_close(got, reference.layer_norm(const, w, b), rel=1e-4, what="constant rows")
    assert T.add_layer_norm_rows(x[:0], x[:0], w, b).shape == (0, dim)
    # the op-table signatures
    ln = torch.nn.LayerNorm(dim, eps=1e-12).to(DEVICE)
    r = randn(33, dim, seed=4)
    assert_close(
        T.add_layer_norm(ln, x, r),
        reference.add_layer_norm(x, r, ln.weight, ln.bias),
        rel=1e-4,
        what="op add_layer_norm",
    )
    assert_close(T.layer_norm(ln, x), reference.layer_norm(x, ln.weight, ln.bias), rel=1e-4, what="op ln")


# ----------------------------------------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("dim", [32, 48])
def test_embeddings(dtype, dim):
    V, P = 101, 140
    word = randn(V, dim, dtype=dtype, seed=1)
    pos = randn(P, dim, dtype=dtype, seed=2)
    w, b = 1.0 + randn(dim, dtype=dtype, seed=3, scale=0.1), randn(dim, dtype=dtype, seed=4, scale=0.1)
    g = torch.Generator().manual_seed(dim)
    for n in LENGTHS:
        ids = torch.randint(0, V, (n,), generator=g).to(DEVICE)
        pids = torch.randint(0, P, (n,), generator=g).to(DEVICE)
        got = T.embeddings_rows(ids, None, pids, word, pos, w, b)
        assert got.dtype == dtype
        expected = reference.embeddings(ids, None, pids, word.float(), pos.float(), w.float(), b.float())
        assert_close(got.float(), expected, rel=TOL[dtype], what=f"emb ids {dtype} n={n}")
        embeds = randn(n, dim, dtype=dtype, seed=n)
        got = T.embeddings_rows(None, embeds, pids, word, pos, w, b)
        expected = reference.embeddings(
            None, embeds.float(), pids, word.float(), pos.float(), w.float(), b.float()
        )
        assert_close(got.float(), expected, rel=TOL[dtype], what=f"emb inputs_embeds {dtype} n={n}")


def test_embeddings_op_entry_and_empty():
    from distilbert_fast.config import DistilBertConfig
    from distilbert_fast.modeling import Embeddings

    emb = Embeddings(DistilBertConfig(vocab_size=50, dim=24, max_position_embeddings=70)).to(DEVICE)
    with torch.no_grad():
        for p in emb.parameters():
            p.copy_(torch.randn(p.shape))
    ids = torch.randint(0, 50, (23,)).to(DEVICE)
    pids = torch.arange(23).to(DEVICE)
    expected = reference.embeddings(
        ids,
        None,
        pids,
        emb.word_embeddings.weight,
        emb.position_embeddings.weight,
        emb.LayerNorm.weight,
        emb.LayerNorm.bias,
    )
    with torch.inference_mode():
        assert_close(T.embeddings(emb, ids, None, pids), expected, rel=1e-4, what="op embeddings")
        assert T.embeddings(emb, ids[:0], None, pids[:0]).shape == (0, 24)
    with pytest.raises(ValueError, match="exactly one"):
        T.embeddings(emb, ids, torch.zeros(23, 24), pids)


# ----------------------------------------------------------------------------------------------------------
# torch.library registration: fake kernels and torch.compile tracing
# ----------------------------------------------------------------------------------------------------------
def test_ops_registered_with_fake_kernels():
    from torch._subclasses.fake_tensor import FakeTensorMode

    ops = torch.ops.distilbert_fast_triton
    with FakeTensorMode():
        x = torch.empty(7, 32, dtype=torch.bfloat16)
        w = torch.empty(96, 32, dtype=torch.bfloat16)
        assert ops.linear(x, w, None, "gelu", None).shape == (7, 96)
        q = torch.empty(7, 32)
        cu = torch.empty(3, dtype=torch.int32)
        assert ops.varlen_attention(q, q, q, cu, 5, 2, 0.25, None, None).shape == (7, 32)
        assert ops.add_layer_norm(q, q, q[0], q[0], 1e-12).shape == (7, 32)
        ids = torch.empty(7, dtype=torch.long)
        out = ops.embeddings(ids, None, ids, torch.empty(50, 32), torch.empty(9, 32), q[0], q[0], 1e-12)
        assert out.shape == (7, 32)


def test_torch_compile_traces_the_ops():
    # fullgraph: the kernels are custom ops with fake kernels, so dynamo traces through without breaks
    w = randn(48, 32, seed=1, scale=0.2)
    b = randn(48, seed=2)
    ln_w, ln_b = 1.0 + randn(48, seed=3, scale=0.1), randn(48, seed=4)

    def f(x, r):
        return T.add_layer_norm_rows(T.linear_fused(x, w, b, "gelu"), r, ln_w, ln_b)

    x, r = randn(9, 32, seed=5), randn(9, 48, seed=6)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    expected = reference.add_layer_norm(reference.linear(x, w, b, "gelu"), r, ln_w, ln_b)
    assert_close(compiled(x, r), expected, rel=1e-4, what="compiled")


# ----------------------------------------------------------------------------------------------------------
# the same kernels, compiled for the real hardware (no GPU needed: the triton wheel ships ptxas)
# ----------------------------------------------------------------------------------------------------------
def test_kernels_compile_for_h100_without_spills():
    """What the interpreter cannot show: every kernel, with the block configs the launchers pick for
    DistilBERT-base (fp16), lowers to sm_90 code whose shared memory fits and whose registers do not spill.
    Runs distilbert_fast.ops.triton.compile_check in a subprocess without TRITON_INTERPRET."""
    import subprocess
    import sys
    from pathlib import Path

    import triton

    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this triton build ships no ptxas")
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-W",
        "ignore",
        "-m",
        "distilbert_fast.ops.triton.compile_check",
        "--quick",
        "--arch",
        "90",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and "compile check: OK" in proc.stdout, (
        proc.stdout[-4000:] + proc.stderr[-4000:]
    )


# ---- torch.library.opcheck: schema, fake (meta) kernel, autograd registration, dispatch -------------------


def _triton_opcheck_cases():
    g = torch.Generator().manual_seed(0)

    def r(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(DEVICE, dtype)

    x, res, w, b = r(5, 24), r(5, 24), r(24), r(24)
    yield "add_layer_norm", (x, res, w, b, 1e-12)
    yield "add_layer_norm", (x.bfloat16(), None, w, b, 1e-5)
    yield "linear", (r(3, 24), r(16, 24), r(16), "gelu", None)
    yield (
        "linear",
        (
            r(3, 24, dtype=torch.bfloat16),
            r(24, 24, dtype=torch.bfloat16),
            None,
            None,
            r(3, 24, dtype=torch.bfloat16),
        ),
    )
    ids = torch.tensor([0, 10, 3], device=DEVICE)
    pos = torch.tensor([0, 1, 6], device=DEVICE)
    yield "embeddings", (ids, None, pos, r(11, 24), r(7, 24), w, b, 1e-12)
    yield "embeddings", (None, r(3, 24), pos, r(11, 24), r(7, 24), w, b, 1e-12)
    q, k, v = r(9, 32), r(9, 32), r(9, 32)
    cu = torch.tensor([0, 3, 3, 9], dtype=torch.int32, device=DEVICE)
    yield "varlen_attention", (q, k, v, cu, 6, 4, 0.35, None, None)
    yield (
        "varlen_attention",
        (
            q,
            k,
            v,
            cu,
            6,
            4,
            0.35,
            torch.tensor([1.0, 0.0, 1.0, 0.5], device=DEVICE),
            torch.tensor([2, 0, 6], dtype=torch.int32, device=DEVICE),
        ),
    )


@pytest.mark.parametrize("case", list(_triton_opcheck_cases()), ids=lambda c: c[0])
def test_triton_opcheck(case):
    name, args = case
    torch.library.opcheck(getattr(torch.ops.distilbert_fast_triton, name).default, args)
