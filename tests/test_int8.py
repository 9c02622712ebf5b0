"""int8 path: each fused C++ quantizing kernel vs the PyTorch reference (ops/int8/reference.py), the oneDNN
GEMM vs exact integer math, the VNNI GEMM with its fused epilogue vs the oneDNN GEMM + epilogue ops (bit for
bit), and whole quantized models (cpp vs the torch reference, vs fp32)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import distilbert_fast as dbf
from distilbert_fast.ops import int8
from distilbert_fast.ops.int8 import cpp as C
from distilbert_fast.ops.int8 import reference as R

needs_cpp = pytest.mark.skipif(not C.available(), reason="C++ int8 kernels not built")
needs_vnni = pytest.mark.skipif(
    not (C.available() and C.vnni_available()), reason="no VNNI int8 GEMM in this build"
)
DTYPES = (torch.float32, torch.bfloat16)
ROWS = (1, 33, 257, 512)


def _close(got, ref, dtype):
    # fp32: the same fp32 ops in another order (LayerNorm sums); bf16: one bf16 rounding of nearly equal fp32
    # values can land one ulp apart (2**-8 relative), ~2e-2 as every bf16 comparison in this suite.
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    err = ((got.float() - ref.float()).abs() / (1 + ref.float().abs())).max().item() if got.numel() else 0.0
    assert err <= tol, err


def test_reference_quantize_rows_roundtrip():
    x = torch.randn(33, 64) * 5
    x[3] = 0  # an all-zero row: scale 1, zeros, no NaN
    q, s = R.quantize_rows(x)
    assert q.dtype == torch.uint8 and s.shape == (33,)
    assert s[3] == 1 and (q[3] == 128).all()
    deq = (q.float() - 128) * s[:, None]
    assert ((deq - x).abs() <= s[:, None] / 2 + 1e-6).all()  # at most half a step off
    assert ((q.int() - 128).abs().amax(1)[torch.arange(33) != 3] == 127).all()  # the row max maps to 127


def test_reference_weight_quantization():
    w = torch.randn(48, 32)
    q, s = R.quantize_weight(w)
    assert q.dtype == torch.int8 and (q.abs().amax(1) == 127).all()
    assert (R.dequantize_weight(q, s) - w).abs().max() <= s.max() / 2 + 1e-6


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", ROWS)
def test_quantize_rows_kernel(n, dtype):
    torch.manual_seed(n)
    x = (torch.randn(n, 3 * 64 + 5) * 3).to(dtype)
    x[0] = 0
    q, s = C.quantize_rows(x)
    qr, sr = R.quantize_rows(x)
    assert torch.equal(q, qr) and torch.equal(s, sr)
    # row-strided view (a column slice of a wider tensor), read in place
    wide = torch.randn(n, 384).to(dtype)
    q, s = C.quantize_rows(wide[:, 64:192])
    qr, sr = R.quantize_rows(wide[:, 64:192])
    assert torch.equal(q, qr) and torch.equal(s, sr)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("residual", [True, False])
def test_add_layer_norm_quant_kernel(n, dtype, residual):
    torch.manual_seed(n)
    D = 96
    x = (torch.randn(n, D) * 3).to(dtype)
    r = torch.randn(n, D).to(dtype) if residual else None
    w, b = torch.randn(D), torch.randn(D)
    y, q, s = C.add_layer_norm_quant(x, r, w, b, 1e-12)
    yr, _, _ = R.layer_norm_quant(x, r, w, b, 1e-12)
    assert y.dtype == dtype
    _close(y, yr, dtype)
    q2, s2 = R.quantize_rows(y)  # exactly the quantization of the rows it returned
    assert torch.equal(q, q2) and torch.equal(s, s2)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_embeddings_quant_kernel(dtype):
    torch.manual_seed(0)
    V, P, D, n = 50, 40, 64, 257
    word, pos = torch.randn(V, D).to(dtype), torch.randn(P, D).to(dtype)
    w, b = torch.randn(D), torch.randn(D)
    ids, positions = torch.randint(0, V, (n,)), torch.randint(0, P, (n,))
    y, q, s = C.embeddings_quant(ids, positions, word, pos, w, b, 1e-12)
    yr, _, _ = R.embeddings_quant(ids, positions, word, pos, w, b, 1e-12)
    _close(y, yr, dtype)
    q2, s2 = R.quantize_rows(y)
    assert torch.equal(q, q2) and torch.equal(s, s2)
    with pytest.raises(RuntimeError, match="input_ids"):
        C.embeddings_quant(torch.tensor([V]), torch.tensor([0]), word, pos, w, b, 1e-12)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, "gelu", "gelu_new", "relu", "silu"])
@pytest.mark.parametrize("n", (1, 33, 257))
def test_epilogue_kernel(n, act, dtype):
    torch.manual_seed(n)
    F = 3 * 64 + 7
    acc, xs, bias = torch.randn(n, F) * 40, torch.rand(n) * 0.1, torch.randn(F)
    for want_quant in (False, True):
        y, q, s = C.epilogue(acc, xs, bias, act, dtype, want_quant)
        yr, _, _ = R.epilogue(acc, xs, bias, act, dtype, want_quant)
        assert y.dtype == dtype
        _close(y, yr, dtype)
        if want_quant:
            q2, s2 = R.quantize_rows(y)
            assert torch.equal(q, q2) and torch.equal(s, s2)
    y, _, _ = C.epilogue(acc, xs, None, act, dtype, False)
    _close(y, R.epilogue(acc, xs, None, act, dtype, False)[0], dtype)
    with pytest.raises(RuntimeError, match="act must be one of"):
        C.epilogue(acc, xs, bias, "tanh", dtype, False)
    with pytest.raises(RuntimeError, match="x_scale"):
        C.epilogue(acc, xs[:-1] if n > 1 else xs.repeat(2), bias, None, dtype, False)


@needs_cpp
@pytest.mark.parametrize("n", (1, 33, 257))
def test_onednn_gemm_is_exact_integer_math(n):
    """The oneDNN u8s8 GEMM returns exactly int32 sum * w_scale (zero point 128 removed)."""
    torch.manual_seed(n)
    lin = torch.nn.Linear(96, 80)
    q_w, s_w = R.quantize_weight(lin.weight)
    lin.register_buffer("weight_int8", q_w)
    lin.register_buffer("weight_scale", s_w)
    qx, xs = R.quantize_rows(torch.randn(n, 96))
    p = C.PackedInt8([lin], kind="onednn")
    got = p.gemm(qx)
    ref = R.int_matmul(qx, q_w).float() * s_w
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dbf.DistilBertConfig(vocab_size=101, dim=64, n_heads=4, n_layers=2, hidden_dim=96, **kw)
    return dbf.DistilBertModel(cfg, backend="torch").eval()


def _inputs():
    torch.manual_seed(1)
    ids = torch.randint(0, 101, (4, 33))
    mask = torch.ones(4, 33, dtype=torch.long)
    mask[1, 20:] = 0
    mask[2, 1:] = 0  # a single real token
    return ids, mask


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_quantized_model_cpp_matches_reference(dtype):
    model = _model().to(dtype)
    ids, mask = _inputs()
    with torch.no_grad():
        fp = model(ids, attention_mask=mask).last_hidden_state
        int8.quantize_model_(model)
        ref = model(ids, attention_mask=mask).last_hidden_state  # torch backend: the reference int8 path
        model.set_backend("cpp")
        got = model(ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert torch.isfinite(got).all()
    # Same math; a row whose fp32 value sits on a rounding boundary may quantize one step apart.
    tol = 2e-3 if dtype == torch.float32 else 5e-2
    assert (got[keep].float() - ref[keep].float()).abs().max() <= tol
    cos = torch.nn.functional.cosine_similarity(got[keep].float(), fp[keep].float())
    assert cos.min() > 0.99


def test_quantized_model_reference_close_to_fp32():
    model = _model()
    ids, mask = _inputs()
    with torch.no_grad():
        fp = model(ids, attention_mask=mask).last_hidden_state
        int8.quantize_model_(model)
        q = model(ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert torch.nn.functional.cosine_similarity(q[keep], fp[keep]).min() > 0.999
    assert model.config.quantization_config["quant_method"] == "distilbert_fast_int8"
    # the float weights now hold the dequantized int8 weights: the reference fp path computes with them
    lin = model.transformer.layer[0].ffn.lin1
    assert torch.equal(lin.weight, R.dequantize_weight(lin.weight_int8, lin.weight_scale))


def test_check_quantize_names_the_argument():
    assert int8.check_quantize(None) is None and int8.check_quantize("int8") == "int8"
    with pytest.raises(ValueError, match="quantize must be"):
        int8.check_quantize("int4")


@needs_cpp
def test_quantized_model_deepcopy_repacks():
    import copy

    model = _model()
    int8.quantize_model_(model)
    model.set_backend("cpp")
    ids, mask = _inputs()
    with torch.no_grad():
        a = model(ids, attention_mask=mask).last_hidden_state
        clone = copy.deepcopy(model)  # the packed oneDNN weight is not copied: the clone repacks
        assert torch.equal(clone(ids, attention_mask=mask).last_hidden_state, a)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, "gelu", "relu"])
@pytest.mark.parametrize("n", ROWS)
def test_epilogue_out_kernel_writes_row_slices(n, act, dtype):
    """int8_epilogue_out on row chunks of a larger output == int8_epilogue on the whole (bit for bit)."""
    torch.manual_seed(n)
    F = 3 * 64 + 7
    acc, xs, bias = torch.randn(n, F) * 40, torch.rand(n) * 0.1, torch.randn(F)
    y0, q0, s0 = C.epilogue(acc, xs, bias, act, dtype, True)
    y, q, s = torch.empty(n, F, dtype=dtype), torch.empty(n, F, dtype=torch.uint8), torch.empty(n)
    step = max(1, n // 3)
    for r in range(0, n, step):
        C.epilogue_out(
            acc[r : r + step], xs[r : r + step], bias, act, y[r : r + step], q[r : r + step], s[r : r + step]
        )
    assert torch.equal(y, y0) and torch.equal(q, q0) and torch.equal(s, s0)
    y2 = torch.empty(n, F, dtype=dtype)
    C.epilogue_out(acc, xs, None, act, y2)
    _close(y2, R.epilogue(acc, xs, None, act, dtype, False)[0], dtype)
    with pytest.raises(RuntimeError, match="q and scale must be given together"):
        C.epilogue_out(acc, xs, bias, act, y, q, None)
    with pytest.raises(RuntimeError, match="int8_epilogue_out: y must be"):
        C.epilogue_out(acc, xs, bias, act, torch.empty(n + 1, F, dtype=dtype))
    # no y: the quantized rows of a float32 y (default) or of a y in rows_dtype, bit for bit, nothing stored
    for rows_dtype in (None, dtype):
        q3, s3 = torch.full((n, F), 7, dtype=torch.uint8), torch.full((n,), -1.0)
        C.epilogue_out(acc, xs, bias, act, None, q3, s3, rows_dtype=rows_dtype)
        q32, s32 = C.epilogue(acc, xs, bias, act, rows_dtype or torch.float32, True)[1:]
        assert torch.equal(q3, q32) and torch.equal(s3, s32)
    with pytest.raises(RuntimeError, match="rows_dtype must be float32 or bfloat16"):
        C.epilogue_out(acc, xs, bias, act, None, q3, s3, rows_dtype=torch.float16)
    other = torch.bfloat16 if dtype == torch.float32 else torch.float32
    with pytest.raises(RuntimeError, match="rows_dtype .* must be y's dtype"):
        C.epilogue_out(acc, xs, bias, act, y, q, s, rows_dtype=other)
    with pytest.raises(RuntimeError, match="y may be omitted only when q and scale are given"):
        C.epilogue_out(acc, xs, bias, act, None)


@needs_cpp
@pytest.mark.parametrize("n", (257, 1100))
def test_chunked_gemm_epilogue_matches_one_call(n, monkeypatch):
    """Above 2 * CHUNK_ROWS rows the GEMM + epilogue runs on row chunks: same bits as one call, padded
    (unequal) last chunk included."""
    torch.manual_seed(n)
    lin = torch.nn.Linear(96, 80)
    q_w, s_w = R.quantize_weight(lin.weight)
    lin.register_buffer("weight_int8", q_w)
    lin.register_buffer("weight_scale", s_w)
    p = C.PackedInt8([lin], kind="onednn")
    qx, xs = C.quantize_rows(torch.randn(n, 96))
    whole = C.epilogue(p.gemm(qx), xs, p.bias, "gelu", torch.float32, True)
    monkeypatch.setattr(C, "CHUNK_ROWS", 100)
    chunked = C.gemm_epilogue(p, qx, xs, "gelu", torch.float32, True)
    for a, b in zip(whole, chunked):
        assert torch.equal(a, b)
    y, _, _ = C.gemm_epilogue(p, qx, xs, None, torch.float32, False)
    assert torch.equal(y, C.epilogue(p.gemm(qx), xs, p.bias, None, torch.float32, False)[0])
    monkeypatch.setattr(C, "CHUNK_ROWS", 512)  # keep_y=False chunks every size: one call and several
    for dtype in DTYPES:  # the quantized rows of the activation in the model's dtype, never stored
        want = C.epilogue(p.gemm(qx), xs, p.bias, "gelu", dtype, True)
        none, q2, s2 = C.gemm_epilogue(p, qx, xs, "gelu", dtype, True, keep_y=False)
        assert none is None and torch.equal(q2, want[1]) and torch.equal(s2, want[2])


@needs_cpp
def test_unstored_ffn_activation_is_refused_anywhere_but_its_gemm():
    """The FFN's GELU rows are handed off quantized and never stored: the model gets a stand-in that reads as
    NaN and that a GEMM other than the one it was quantized for refuses (never silently wrong numbers)."""
    from distilbert_fast.ops import int8

    stand_in = int8.unwritten((5, 7), torch.float32)
    assert stand_in.shape == (5, 7) and stand_in.isnan().all() and stand_in.untyped_storage().nbytes() == 4
    with pytest.raises(RuntimeError, match="handed off quantized"):
        int8._take(stand_in, C.quantize_rows)


@needs_cpp
@pytest.mark.parametrize("kind", ["onednn", pytest.param("vnni", marks=needs_vnni)])
@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", (1, 33, 257, 1100))
def test_gemm_add_layer_norm_equals_the_two_steps(n, dtype, quantize, kind, monkeypatch):
    """The out-projection / FFN-output GEMM + epilogue fused with the residual LayerNorm (one pass per row
    chunk, int8_epilogue_add_ln_out) == int8_epilogue then add_layer_norm(_quant), bit for bit, chunked or
    not; a residual with a row stride works."""
    from distilbert_fast.ops import cpp

    torch.manual_seed(n)
    lin, ln = torch.nn.Linear(96, 80), torch.nn.LayerNorm(80, eps=1e-12)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.normal_()
    q_w, s_w = R.quantize_weight(lin.weight)
    lin.register_buffer("weight_int8", q_w)
    lin.register_buffer("weight_scale", s_w)
    p = C.PackedInt8([lin], kind=kind)
    qx, xs = C.quantize_rows(torch.randn(n, 96))
    residual = torch.randn(n, 2 * 80).to(dtype)[:, 5:85]  # row stride 160
    y0 = C.epilogue(C.PackedInt8([lin], kind="onednn").gemm(qx), xs, p.bias, None, dtype, False)[0]
    if quantize:
        want = C.add_layer_norm_quant(y0, residual, ln.weight, ln.bias, ln.eps)
    else:
        want = (cpp.add_layer_norm(y0, residual, ln.weight, ln.bias, ln.eps), None, None)
    monkeypatch.setattr(C, "CHUNK_ROWS", 500)
    got = C.gemm_add_layer_norm(p, qx, xs, residual, ln, quantize)
    for a, b in zip(got, want):
        assert (a is None and b is None) or torch.equal(a, b)
    with pytest.raises(RuntimeError, match="residual must have"):
        C.gemm_add_layer_norm(p, qx, xs, residual[:, :79], ln, quantize)


@needs_cpp
@pytest.mark.parametrize("kind", ["onednn", pytest.param("vnni", marks=needs_vnni)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_quantized_model_fused_residual_layer_norm_changes_no_bit(dtype, kind, tmp_path, monkeypatch):
    """The int8 model with the fused GEMM + residual LayerNorm == the same model through the two separate ops."""
    import dataclasses

    from helpers import hf_model, make_inputs

    from distilbert_fast.modeling import DistilBertPreTrainedModel

    monkeypatch.setenv(C.GEMM_ENV, kind)
    hf_model("DistilBertForSequenceClassification", seed=3).save_pretrained(tmp_path)
    model = dbf.DistilBertForSequenceClassification.from_pretrained(tmp_path, quantize="int8", dtype=dtype)
    ids, mask = make_inputs("DistilBertModel", 3, 40, seed=2)
    with torch.inference_mode():
        fused = model(ids, attention_mask=mask, output_hidden_states=True)
        table = model.distilbert.ops
        split = dataclasses.replace(table, linear_add_layer_norm=None)  # the two ops
        for m in model.modules():
            if isinstance(m, DistilBertPreTrainedModel):
                m.ops = split
        two_steps = model(ids, attention_mask=mask, output_hidden_states=True)
    assert torch.equal(fused.logits, two_steps.logits)
    for a, b in zip(fused.hidden_states, two_steps.hidden_states):
        assert torch.equal(a, b)


# --- the VNNI GEMM with its epilogue fused (csrc/int8_gemm.cpp) -------------------------------------------------
def _quantized_linear(k, n, seed):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n)
    q_w, s_w = R.quantize_weight(lin.weight)
    lin.register_buffer("weight_int8", q_w)
    lin.register_buffer("weight_scale", s_w)
    return lin


@needs_vnni
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", [None, "gelu", "gelu_new", "relu", "silu"])
@pytest.mark.parametrize(
    "m,k,n",
    [
        (1, 96, 80),
        (5, 100, 130),
        (33, 100, 64 * 3 + 7),
        (97, 64, 64),
        (257, 768, 77),
        (512, 4, 256),
        (1100, 96, 80),
    ],
)
def test_vnni_gemm_equals_onednn_gemm_plus_epilogue(m, k, n, act, dtype):
    """Every row count (the 6-row tile's tails; under and over the few-rows column split and the 48-row
    blocks), n not a multiple of 64 (the padded column block): y, q and scale equal the oneDNN GEMM followed
    by the epilogue op, bit for bit, stored y or not."""
    lin = _quantized_linear(k, n, seed=m + k + n)
    ref_p, p = C.PackedInt8([lin], kind="onednn"), C.PackedInt8([lin], kind="vnni")
    assert p.kind == "vnni"
    qx, xs = C.quantize_rows(torch.randn(m, k) * 3)
    want_quant = act is not None
    want = C.epilogue(ref_p.gemm(qx), xs, lin.bias.detach(), act, dtype, want_quant)
    got = C.gemm_epilogue(p, qx, xs, act, dtype, want_quant)
    for a, b in zip(got, want):
        assert (a is None and b is None) or torch.equal(a, b)
    if want_quant:  # not stored: only the quantized rows
        none, q2, s2 = C.gemm_epilogue(p, qx, xs, act, dtype, True, keep_y=False)
        assert none is None and torch.equal(q2, want[1]) and torch.equal(s2, want[2])
    strided = torch.stack([xs, torch.full_like(xs, float("nan"))], 1)[:, 0]  # the scales as a strided view
    assert torch.equal(C.gemm_epilogue(p, qx, strided, act, dtype, want_quant)[0], want[0])


@needs_vnni
def test_vnni_gemm_exact_integer_math_at_the_int8_extremes():
    """All-(-127) weights times all-255 rows (the largest |sum| per k) and a zero row: exact against the int32
    reference (no overflow of the zero-point compensation), a zero row's output is the bias."""
    k, n = 3072, 70
    lin = torch.nn.Linear(k, n)
    lin.register_buffer("weight_int8", torch.full((n, k), -127, dtype=torch.int8))
    lin.register_buffer("weight_scale", torch.full((n,), 1e-3))
    qx = torch.full((3, k), 255, dtype=torch.uint8)
    qx[1] = 128  # the zero row
    xs = torch.ones(3)
    got, _, _ = C.gemm_epilogue(C.PackedInt8([lin], kind="vnni"), qx, xs, None, torch.float32, False)
    ref = R.int_matmul(qx, lin.weight_int8).float() * lin.weight_scale + lin.bias.detach()
    assert torch.equal(got, ref)
    assert torch.equal(got[1], lin.bias.detach())


@needs_vnni
def test_vnni_gemm_names_bad_arguments():
    lin = _quantized_linear(96, 80, seed=0)
    p = C.PackedInt8([lin], kind="vnni")
    qx, xs = C.quantize_rows(torch.randn(4, 96))
    y = torch.empty(4, 80)
    op = torch.ops.distilbert_fast.int8_gemm_out
    with pytest.raises(
        RuntimeError, match="int8_gemm_out: packed must come from int8_gemm_pack of a weight with 95"
    ):
        op(qx[:, :95].contiguous(), xs, p.packed, p.comp, p.w_scale, p.bias, "none", y, None, None)
    with pytest.raises(
        RuntimeError, match="int8_gemm_out: x_scale must be a float32 tensor of shape \\(4,\\)"
    ):
        op(qx, xs[:3], p.packed, p.comp, p.w_scale, p.bias, "none", y, None, None)
    with pytest.raises(RuntimeError, match="int8_gemm_out: w_scale must be"):
        op(qx, xs, p.packed, p.comp, p.w_scale[:10], p.bias, "none", y, None, None)
    with pytest.raises(RuntimeError, match="int8_gemm_out: comp must be"):
        op(qx, xs, p.packed, p.comp[:64], p.w_scale, p.bias, "none", y, None, None)
    with pytest.raises(
        RuntimeError, match="int8_gemm_out: y must be a contiguous float32 or bfloat16 tensor of shape"
    ):
        op(qx, xs, p.packed, p.comp, p.w_scale, p.bias, "none", torch.empty(4, 81), None, None)
    with pytest.raises(RuntimeError, match="int8_gemm_out: act must be one of"):
        op(qx, xs, p.packed, p.comp, p.w_scale, p.bias, "tanh", y, None, None)
    with pytest.raises(RuntimeError, match="int8_gemm_out: q must be a contiguous 2-D uint8 tensor"):
        op(qx.to(torch.int8), xs, p.packed, p.comp, p.w_scale, p.bias, "none", y, None, None)
    with pytest.raises(RuntimeError, match="int8_gemm_pack: weight must be a non-empty 2-D int8 tensor"):
        torch.ops.distilbert_fast.int8_gemm_pack(torch.zeros(3, 4))
    with pytest.raises(RuntimeError, match="int8_gemm_pack: in_features must be a multiple of 4, got 99"):
        torch.ops.distilbert_fast.int8_gemm_pack(torch.zeros(3, 99, dtype=torch.int8))
    # such a weight stays on oneDNN
    assert C.PackedInt8([_quantized_linear(99, 8, seed=1)], kind="vnni").kind == "onednn"
    with pytest.raises(
        RuntimeError, match="PackedInt8.gemm is the oneDNN GEMM; this weight was packed for 'vnni'"
    ):
        p.gemm(qx)


def test_int8_gemm_kind_env(monkeypatch):
    monkeypatch.setenv(C.GEMM_ENV, "fast")
    with pytest.raises(
        ValueError, match="DISTILBERT_FAST_INT8_GEMM must be one of auto, vnni, onednn, got 'fast'"
    ):
        C.gemm_kind()
    monkeypatch.setenv(C.GEMM_ENV, "onednn")
    assert C.gemm_kind() == "onednn"
    monkeypatch.setenv(C.GEMM_ENV, "auto")
    assert C.gemm_kind() == ("vnni" if C.vnni_available() and not C._has_amx_int8() else "onednn")


@needs_vnni
@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 300),
    k4=st.integers(1, 40),
    n=st.integers(1, 200),
    act=st.sampled_from([None, "gelu", "relu"]),
    bf16=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_vnni_gemm_property_matches_the_reference(m, k4, n, act, bf16, seed):
    """Any shape (k a multiple of 4): the fused VNNI GEMM's y equals the reference epilogue on the exact int32
    product, and its quantized rows equal quantize_rows of that y."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    lin = _quantized_linear(4 * k4, n, seed)
    qx, xs = C.quantize_rows(torch.randn(m, 4 * k4) * 5)
    y, q, s = C.gemm_epilogue(C.PackedInt8([lin], kind="vnni"), qx, xs, act, dtype, True)
    acc = R.int_matmul(qx, lin.weight_int8).float() * lin.weight_scale
    _close(y, R.epilogue(acc, xs, lin.bias.detach(), act, dtype, False)[0], dtype)
    q2, s2 = R.quantize_rows(y)
    assert torch.equal(q, q2) and torch.equal(s, s2)


@needs_vnni
def test_vnni_gemm_concurrent_callers_get_their_own_results():
    """Two Python threads running the int8 model at once (a server's workers): each gets exactly what it gets
    alone (the kernel's scratch buffers are per thread), in both the few-rows and the row-block regimes."""
    from concurrent.futures import ThreadPoolExecutor

    model = _model(seed=5)
    int8.quantize_model_(model)
    model.set_backend("cpp")
    torch.manual_seed(7)
    batches = [torch.randint(0, 101, (b, 40)) for b in (1, 3, 9, 2, 8, 1)]  # 40 .. 360 rows
    with torch.inference_mode():
        alone = [model(ids).last_hidden_state for ids in batches]

        def run(i):
            with torch.inference_mode():
                return [
                    model(batches[j]).last_hidden_state for j in range(i, len(batches), 2) for _ in range(3)
                ]

        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(run, (0, 1)))
    for i in (0, 1):
        want = [alone[j] for j in range(i, len(batches), 2) for _ in range(3)]
        assert all(torch.equal(a, b) for a, b in zip(got[i], want))
