"""Every backend against transformers on the same weights: the whole model, every head class, padded
mixed-length batches, left padding, fully masked rows, head_mask, inputs_embeds, losses, 16-bit weights and
the real all-MiniLM-L6-v2.

One test body per behaviour, parametrized by backend: torch (the reference ops), cpp (fused C++ kernels,
prepacked oneDNN GEMMs, padding-free) and triton (the Triton kernels under TRITON_INTERPRET=1, set in
conftest.py, on CPU tensors; slow per kernel, so its shapes are the smallest). Each fast-backend test also
asserts that the backend's own ops ran (a call counter wraps the table), so a silent fallback to the
reference path cannot pass. Backend-specific behaviour lives in test_backend_cpp.py / test_backend_triton.py.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import pytest
import torch
from helpers import HEADS, SENTENCES, assert_close, hf_model, make_inputs

import distilbert_fast as dbf
from distilbert_fast import ops
from distilbert_fast.modeling import DistilBertPreTrainedModel

OPS = ("embeddings", "qkv", "linear", "add_layer_norm", "layer_norm", "attention")
FIELDS = ("logits", "start_logits", "end_logits", "last_hidden_state")


def _available(name: str):
    if name in dbf.available_backends():
        return []
    if name == "cpp" and os.environ.get("DISTILBERT_FAST_REQUIRE_EXT") == "1":
        raise RuntimeError(
            f"DISTILBERT_FAST_REQUIRE_EXT=1 but the cpp backend is unavailable: "
            f"{ops.unavailable_reason('cpp')}"
        )
    return [pytest.mark.skip(reason=f"{name} backend unavailable: {ops.unavailable_reason(name)}")]


BACKENDS = [pytest.param(name, marks=_available(name)) for name in ("torch", "cpp", "triton")]


def counting(model, backend):
    """Install the backend's table on every module of `model` with a call counter around each op."""
    table = ops.resolve_backend(backend)
    calls = collections.Counter()

    def counted(name):
        fn = getattr(table, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    wrapped = dataclasses.replace(table, **{name: counted(name) for name in OPS})
    for m in model.modules():
        if isinstance(m, DistilBertPreTrainedModel):
            m.ops = wrapped
    return calls


def pair(class_name, backend, tmp_path, dtype=None, **cfg):
    """(transformers eval model, ours on `backend`, op-call counter) on the same random weights."""
    hf = hf_model(class_name, seed=5, **cfg)
    hf.save_pretrained(tmp_path)
    ours = getattr(dbf, class_name).from_pretrained(tmp_path, backend=backend, dtype=dtype)
    assert ours.backend == backend
    return hf, ours, counting(ours, backend)


def compare(ours_out, hf_out, mask, rel, what):
    """Every output field; per-token fields on the real tokens only (padding positions carry no meaning)."""
    real = mask.bool()
    for name in FIELDS:
        rv = getattr(hf_out, name, None)
        if rv is None:
            continue
        fv = getattr(ours_out, name).float()
        if rv.dim() >= real.dim() and rv.shape[: real.dim()] == real.shape:
            rv, fv = rv[real], fv[real]
        assert_close(fv, rv, rel=rel, what=f"{what} {name}")


CFGS = {
    "gelu-hd8": dict(activation="gelu"),
    "gelu_new-hd32": dict(activation="gelu_new", dim=64, n_heads=2),
    "relu": dict(activation="relu"),
    "silu-sinusoidal": dict(activation="silu", sinusoidal_pos_embds=True),
}
# (batch, seq) per backend: the interpreter runs every Triton program instance in Python.
# torch is the reference path test_modeling.py already compares in depth: one shape here.
SHAPES = {"torch": ((4, 33),), "cpp": ((1, 1), (4, 33), (2, 9)), "triton": ((3, 19),)}


@pytest.mark.parametrize("cfg", list(CFGS))
@pytest.mark.parametrize("class_name", HEADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_transformers_fp32(backend, class_name, cfg, tmp_path):
    if backend == "triton" and cfg in ("relu", "silu-sinusoidal") and class_name != "DistilBertForMaskedLM":
        pytest.skip("interpreter time: triton covers relu/silu on the MLM head (every kernel and epilogue)")
    hf, ours, calls = pair(class_name, backend, tmp_path, **CFGS[cfg])
    for batch, seq in SHAPES[backend]:
        ids, mask = make_inputs(class_name, batch, seq, seed=seq)
        with torch.inference_mode():
            compare(
                ours(ids, attention_mask=mask),
                hf(ids, attention_mask=mask),
                mask,
                1e-4,
                f"{backend} {class_name} {batch}x{seq}",
            )
    n_calls = len(SHAPES[backend])
    assert calls["embeddings"] == n_calls and calls["attention"] == n_calls * ours.config.n_layers


@pytest.mark.parametrize("backend", BACKENDS)
def test_left_padding_fully_masked_rows_and_training(backend, tmp_path):
    hf, ours, _ = pair("DistilBertForSequenceClassification", backend, tmp_path)
    ids, mask = make_inputs("DistilBertModel", 3, 9, seed=4)
    labels = torch.tensor([0, 1, 1])
    with torch.inference_mode():
        left = mask.flip(-1)  # left padding: the padded reference path runs for this batch, exactly
        assert_close(
            ours(ids, attention_mask=left).logits,
            hf(ids, attention_mask=left).logits,
            rel=1e-4,
            what="left padding",
        )
        r = hf(ids, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True)
        f = ours(ids, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True)
        assert_close(f.loss, r.loss, rel=1e-4, what="loss")
        assert len(f.attentions) == len(r.attentions) and len(f.hidden_states) == len(r.hidden_states)
        mask[1] = 0  # a fully masked row: finite output (transformers' values there carry no meaning)
        assert torch.isfinite(ours.distilbert(ids, attention_mask=mask).last_hidden_state).all()
    ours.train()  # grad needed: the reference ops run, autograd works
    mask[1] = 1
    ours(ids, attention_mask=mask, labels=labels).loss.backward()
    assert ours.classifier.weight.grad is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_token_head_mask_and_inputs_embeds(backend, tmp_path):
    hf, ours, calls = pair("DistilBertModel", backend, tmp_path, dim=64, n_heads=2)
    # head_mask follows adapter-transformers' DistilBERT (transformers 5 no longer applies it): our reference
    # ops are the ground truth for it.
    ref = dbf.DistilBertModel.from_pretrained(tmp_path, backend="torch")
    with torch.inference_mode():
        ids = torch.randint(1, 101, (1, 1))  # length 1, no mask
        assert_close(ours(ids)[0], hf(ids)[0], rel=1e-4, what="1 token")
        ids, mask = make_inputs("DistilBertModel", 3, 17, seed=2)
        real = mask.bool()
        hm = torch.tensor([[1.0, 0.0], [0.5, 1.0]])  # per-layer head mask, one head fully off
        assert_close(
            ours(ids, attention_mask=mask, head_mask=hm)[0][real],
            ref(ids, attention_mask=mask, head_mask=hm)[0][real],
            rel=1e-4,
            what="head_mask",
        )
        embeds = torch.randn(3, 17, 64)
        assert_close(
            ours(inputs_embeds=embeds, attention_mask=mask)[0][real],
            hf(inputs_embeds=embeds, attention_mask=mask)[0][real],
            rel=1e-4,
            what="inputs_embeds",
        )
    assert calls["embeddings"] == 3


LOW_PRECISION = {
    "torch": (torch.bfloat16,),
    "cpp": (torch.bfloat16,),
    "triton": (torch.bfloat16, torch.float16),
}


@pytest.mark.parametrize("class_name", HEADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_16bit_close_to_fp32(backend, class_name, tmp_path):
    if backend == "triton" and class_name not in ("DistilBertModel", "DistilBertForQuestionAnswering"):
        pytest.skip("interpreter time: triton's 16-bit kernels run on the base model and a per-token head")
    for dtype in LOW_PRECISION[backend]:
        hf, ours, _ = pair(class_name, backend, tmp_path / str(dtype), dtype=dtype, dim=64, n_heads=2)
        assert ours.dtype == dtype
        ids, mask = make_inputs(class_name, 3, 33 if backend == "triton" else 40, seed=4)
        real = mask.bool()
        with torch.inference_mode():
            r, f = hf(ids, attention_mask=mask), ours(ids, attention_mask=mask)
        for name in FIELDS:
            rv = getattr(r, name, None)
            if rv is None:
                continue
            fv = getattr(f, name).float()
            assert torch.isfinite(fv).all()
            if rv.shape[: real.dim()] == real.shape:  # per-token outputs: real tokens, one cosine per token
                rv, fv = rv[real], fv[real]
            if rv.dim() == 1:  # QA start/end logits: one vector over the real tokens
                rv, fv = rv[None], fv[None]
            fv, rv = fv.reshape(len(fv), -1), rv.reshape(len(rv), -1)
            cos = torch.nn.functional.cosine_similarity(fv, rv, dim=-1)
            bound = 0.999 if name == "last_hidden_state" else 0.99  # heads amplify 16-bit rounding a little
            assert cos.min() >= bound, f"{backend} {dtype} {name} cosine {cos.min():.5f}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_real_minilm(backend, dtype, minilm_dir):
    tok = dbf.DistilBertTokenizer.from_pretrained(minilm_dir)
    sentences = SENTENCES[:4] if backend == "triton" else SENTENCES * 3
    enc = tok(sentences, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    ref = dbf.DistilBertModel.from_pretrained(minilm_dir, backend="torch")
    ours = dbf.DistilBertModel.from_pretrained(minilm_dir, backend=backend, dtype=dtype)
    calls = counting(ours, backend)
    with torch.inference_mode():
        r = ref(ids, attention_mask=mask)[0][mask.bool()]
        f = ours(ids, attention_mask=mask)[0][mask.bool()].float()
    assert calls["attention"] == ours.config.n_layers
    if dtype == torch.float32:
        assert_close(f, r, rel=1e-4, what=f"MiniLM {backend} fp32")
    else:
        assert torch.nn.functional.cosine_similarity(f, r, dim=-1).min() >= 0.999
