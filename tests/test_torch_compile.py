"""`torch.compile(model)` works on every backend and returns the eager numbers.

The cpp table's ops hold state dynamo cannot trace (prepacked oneDNN / MKL weights, weight fingerprints that
read data, the int8 hand-off of quantized rows), so they run as opaque calls (ops.eager_only) and dynamo traces
the glue between them; the triton ops are custom ops with fake kernels, their fused-QKV weight cache an opaque
call; the torch table is plain PyTorch. Before this, compiling a model on the cpp or triton backend raised at
the first weight fingerprint. Most cases use the aot_eager backend (what is traced, without inductor's C++
compile time); one runs the default inductor, as `torch.compile(model)` does.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close, hf_model, make_inputs, parallel_heads_model
from test_backend_parity import BACKENDS

import distilbert_fast as dbf


def compiled_equals_eager(model, class_name, backend="aot_eager"):
    compiled = torch.compile(model, backend=backend)
    for batch, seq, seed in (
        (3, 19, 1),
        (1, 7, 2),
    ):  # a second shape: recompiles or runs dynamic, same numbers
        ids, mask = make_inputs(class_name, batch, seq, seed=seed)
        with torch.inference_mode():
            want, got = model(ids, attention_mask=mask), compiled(ids, attention_mask=mask)
        for name in ("logits", "start_logits", "end_logits", "last_hidden_state"):
            if getattr(want, name, None) is not None:
                assert_close(getattr(got, name), getattr(want, name), rel=1e-6, what=f"{class_name} {name}")
    return want


@pytest.mark.parametrize(
    "class_name", ["DistilBertForSequenceClassification", "DistilBertForQuestionAnswering"]
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_model_equals_eager_and_transformers(backend, class_name, tmp_path):
    hf = hf_model(class_name, seed=3)
    hf.save_pretrained(tmp_path)
    model = getattr(dbf, class_name).from_pretrained(tmp_path, backend=backend)
    compiled_equals_eager(model, class_name)
    ids, mask = make_inputs(class_name, 3, 19, seed=1)
    with torch.inference_mode():
        got = torch.compile(model, backend="aot_eager")(ids, attention_mask=mask)
        want = hf(ids, attention_mask=mask)
    real = mask.bool()
    if class_name == "DistilBertForQuestionAnswering":
        assert_close(got.start_logits[real], want.start_logits[real], rel=1e-4, what="vs transformers")
    else:
        assert_close(got.logits, want.logits, rel=1e-4, what="vs transformers")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "triton"])
def test_compiled_int8_model_equals_eager(backend, tmp_path):
    hf_model("DistilBertForSequenceClassification", seed=3).save_pretrained(tmp_path)
    model = dbf.DistilBertForSequenceClassification.from_pretrained(
        tmp_path, backend=backend, quantize="int8"
    )
    compiled_equals_eager(model, "DistilBertForSequenceClassification")


def test_compiled_multi_head_model_with_parallel_adapters():
    model = parallel_heads_model()
    compiled = torch.compile(model, backend="aot_eager")
    ids, mask = make_inputs("DistilBertModel", 3, 10, seed=11)
    with torch.inference_mode():
        want, got = model(ids, attention_mask=mask), compiled(ids, attention_mask=mask)
    assert len(got) == len(want) == 2
    assert_close(got[0].logits, want[0].logits, rel=1e-6, what="classification head")
    assert_close(got[1].logits[mask.bool()], want[1].logits[mask.bool()], rel=1e-6, what="tagging head")


def test_default_inductor_compile_on_the_default_backend(tmp_path):
    hf_model("DistilBertForSequenceClassification", seed=3).save_pretrained(tmp_path)
    model = dbf.DistilBertForSequenceClassification.from_pretrained(tmp_path)
    compiled_equals_eager(model, "DistilBertForSequenceClassification", backend="inductor")
