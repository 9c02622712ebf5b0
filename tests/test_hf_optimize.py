"""optimize(hf_model): the transformers object keeps working everywhere, on distilbert_fast's kernels."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import HEADS, assert_close, hf_model, make_inputs

from distilbert_fast.hf import optimize, restore

TEXTS = [
    "The movie was surprisingly good.",
    "I would not recommend this restaurant to anyone at all.",
    "Paris is the capital of [MASK].",
    "Angela Merkel met Emmanuel Macron in Berlin on Monday.",
    "ok",
]


def _real_only(t, mask):
    return t[mask.bool()] if t.shape[: mask.dim()] == mask.shape else t


@pytest.mark.parametrize("class_name", HEADS)
def test_optimize_every_head_matches_original(class_name):
    model = hf_model(class_name, seed=3, activation="gelu_new" if "Token" in class_name else "gelu")
    ids, mask = make_inputs(class_name, 3, 14, seed=9)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask)
    params = {n: p.data_ptr() for n, p in model.named_parameters()}
    keys = set(model.state_dict())
    assert optimize(model) is model
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
        tup = model(ids, mask, return_dict=False)
    assert type(out) is type(ref)
    for k in ref.keys():
        assert_close(_real_only(out[k], mask), _real_only(ref[k], mask), rel=1e-4, what=f"{class_name}.{k}")
        assert torch.equal(tup[list(ref.keys()).index(k)], out[k])
    # no weight copies, checkpoint layout unchanged
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == params
    assert set(model.state_dict()) == keys
    restore(model)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).to_tuple()[0], ref.to_tuple()[0])


def test_optimize_bf16_and_to():
    model = hf_model("DistilBertForSequenceClassification", seed=4, dim=64, n_heads=2)
    ids, mask = make_inputs("DistilBertModel", 4, 20, seed=1)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    optimize(model, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).logits
    assert got.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(got.float(), ref, dim=-1).min() > 0.99
    model.to(torch.float32)  # shared parameters follow; prepacked weights rebuild
    plain = restore(copy.deepcopy(model))  # transformers' own forward on the same (bf16-rounded) weights
    with torch.no_grad():
        assert_close(
            model(input_ids=ids, attention_mask=mask).logits,
            plain(input_ids=ids, attention_mask=mask).logits,
            rel=1e-4,
            what="back to fp32",
        )


def test_optimize_training_still_works():
    model = hf_model("DistilBertForTokenClassification", seed=5)
    optimize(model)
    model.train()
    ids, mask = make_inputs("DistilBertModel", 2, 8, seed=2)
    out = model(input_ids=ids, attention_mask=mask, labels=torch.zeros_like(ids))
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    assert model.distilbert.transformer.layer[0].attention.q_lin.weight.grad is not None


def test_optimize_rejects_other_models():
    with pytest.raises(TypeError, match="DistilBert"):
        optimize(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(
    "task,class_name,kwargs",
    [
        ("text-classification", "DistilBertForSequenceClassification", dict(top_k=None)),
        ("fill-mask", "DistilBertForMaskedLM", dict(top_k=3)),
        ("token-classification", "DistilBertForTokenClassification", dict(aggregation_strategy="simple")),
        ("feature-extraction", "DistilBertModel", {}),
    ],
)
def test_optimize_inside_transformers_pipeline(task, class_name, kwargs, minilm_dir):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    extra = dict(num_labels=5) if "Token" in class_name else {}
    model = hf_model(class_name, seed=6, vocab_size=30522, **extra)
    texts = [t for t in TEXTS if ("[MASK]" in t) == (task == "fill-mask")]
    ref = transformers.pipeline(task, model=model, tokenizer=tok)(texts, **kwargs)
    optimize(model)
    got = transformers.pipeline(task, model=model, tokenizer=tok)(texts, **kwargs)
    if task == "feature-extraction":
        for a, b in zip(got, ref):
            assert_close(torch.tensor(a), torch.tensor(b), rel=1e-4, what="features")
        return

    def rounded(x):
        if isinstance(x, dict):
            return {k: (round(float(v), 4) if k == "score" else rounded(v)) for k, v in x.items()}
        if isinstance(x, list):
            return [rounded(v) for v in x]
        return x.item() if hasattr(x, "item") else x

    assert rounded(got) == rounded(ref)
