"""Config semantics as in transformers (issue 10, item 4): call defaults read from the config, num_labels /
id2label overrides on from_pretrained, transformers' loading arguments accepted-and-ignored (warned once,
never saved) or refused."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import transformers
from helpers import assert_close, hf_model, make_inputs

import distilbert_fast as dbf
from distilbert_fast import loading


@pytest.fixture()
def saved_classifier(tmp_path):
    hf = hf_model("DistilBertForSequenceClassification", seed=3, id2label={0: "neg", 1: "neu", 2: "pos"})
    hf.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_call_defaults_come_from_the_config(saved_classifier, backend):
    if backend not in dbf.available_backends():
        pytest.skip("cpp unavailable")
    ids, mask = make_inputs("DistilBertModel", 2, 7, seed=1)
    for name, value in (("output_hidden_states", True), ("output_attentions", True), ("return_dict", False)):
        hf = transformers.DistilBertForSequenceClassification.from_pretrained(
            saved_classifier, attn_implementation="eager", **{name: value}
        ).eval()
        ours = dbf.DistilBertForSequenceClassification.from_pretrained(
            saved_classifier, backend=backend, **{name: value}
        )
        assert getattr(ours.config, name) is value
        with torch.inference_mode():
            r, f = hf(ids, attention_mask=mask), ours(ids, attention_mask=mask)
            explicit = ours(ids, attention_mask=mask, **{name: not value})  # the call's argument wins
        if name == "return_dict":
            assert isinstance(r, tuple) and isinstance(f, tuple) and len(f) == len(r)
            assert_close(f[0], r[0], rel=1e-5, what="tuple logits")
            assert not isinstance(explicit, tuple)
        else:
            field = name.removeprefix("output_")
            assert len(getattr(f, field)) == len(getattr(r, field))
            assert getattr(explicit, field) is None
            if field == "attentions":
                assert_close(f.attentions[-1], r.attentions[-1], rel=1e-5, what="attentions")


def test_call_defaults_saved_only_when_set(saved_classifier, tmp_path):
    m = dbf.DistilBertForSequenceClassification.from_pretrained(saved_classifier)
    m.save_pretrained(tmp_path / "plain")
    saved = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "output_hidden_states" not in saved and "return_dict" not in saved
    m.config.output_hidden_states = True
    m.save_pretrained(tmp_path / "set")
    again = dbf.DistilBertForSequenceClassification.from_pretrained(tmp_path / "set")
    assert again.config.output_hidden_states is True
    assert transformers.DistilBertConfig.from_pretrained(tmp_path / "set").output_hidden_states is True


def test_num_labels_overrides_a_saved_id2label_like_transformers(saved_classifier):
    # A different label count re-heads the checkpoint: both libraries ask for ignore_mismatched_sizes=True.
    with pytest.raises(Exception, match="ignore_mismatched_sizes"):
        dbf.DistilBertForSequenceClassification.from_pretrained(saved_classifier, num_labels=5)
    hf = transformers.DistilBertForSequenceClassification.from_pretrained(
        saved_classifier, num_labels=5, ignore_mismatched_sizes=True
    )
    ours = dbf.DistilBertForSequenceClassification.from_pretrained(
        saved_classifier, num_labels=5, ignore_mismatched_sizes=True
    )
    assert ours.config.id2label == hf.config.id2label  # LABEL_0..LABEL_4
    assert ours.config.label2id == {f"LABEL_{i}": i for i in range(5)}
    assert ours.classifier.weight.shape == hf.classifier.weight.shape == (5, 32)
    assert "classifier.weight" in ours.loading_info["missing_keys"]  # a new head, reported as transformers
    same = dbf.DistilBertForSequenceClassification.from_pretrained(saved_classifier, num_labels=3)
    assert same.config.id2label == {0: "neg", 1: "neu", 2: "pos"}  # agreeing num_labels keeps the names
    labels = {0: "a", 1: "b"}
    hf = transformers.DistilBertForSequenceClassification.from_pretrained(
        saved_classifier, id2label=labels, ignore_mismatched_sizes=True
    )
    ours = dbf.DistilBertForSequenceClassification.from_pretrained(
        saved_classifier, id2label=labels, ignore_mismatched_sizes=True
    )
    assert ours.config.id2label == hf.config.id2label == labels and ours.config.num_labels == 2
    assert ours.config.label2id == {"a": 0, "b": 1}
    assert (
        dbf.DistilBertConfig(id2label=labels, num_labels=3).id2label
        == transformers.DistilBertConfig(id2label=labels, num_labels=3).id2label
    )


def test_ignored_loading_kwargs_warn_once_and_are_never_saved(saved_classifier, tmp_path, caplog):
    loading._warned_ignored.clear()
    kwargs = dict(
        device_map="cpu",
        attn_implementation="sdpa",
        low_cpu_mem_usage=True,
        trust_remote_code=True,
        use_safetensors=True,
    )
    with caplog.at_level(logging.WARNING, logger="distilbert_fast"):
        m = dbf.DistilBertForSequenceClassification.from_pretrained(saved_classifier, **kwargs)
        dbf.DistilBertForSequenceClassification.from_pretrained(saved_classifier, **kwargs)
    warned = [r.getMessage() for r in caplog.records if "accepted and ignored" in r.getMessage()]
    assert len(warned) == len(kwargs)  # once per name, not per call
    m.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert not set(kwargs) & set(saved)
    for name in ("from_tf", "quantization_config"):
        with pytest.raises(ValueError, match=name):
            dbf.DistilBertForSequenceClassification.from_pretrained(saved_classifier, **{name: True})


def test_autograd_slow_path_warns_once_with_the_fix(saved_classifier):
    if "cpp" not in dbf.available_backends():
        pytest.skip("cpp unavailable")
    from distilbert_fast import modeling

    m = dbf.DistilBertForSequenceClassification.from_pretrained(saved_classifier, backend="cpp")
    ids, mask = make_inputs("DistilBertModel", 2, 7, seed=1)
    modeling._warned_slow_path = False
    with pytest.warns(modeling.SlowPathWarning, match="inference_mode"):
        slow = m(ids, attention_mask=mask).logits  # eval mode, autograd on: reference ops
    assert slow.requires_grad
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", modeling.SlowPathWarning)
        m(ids, attention_mask=mask)  # once per process
        modeling._warned_slow_path = False
        with torch.inference_mode():  # the fix: fused kernels, no warning
            fast = m(ids, attention_mask=mask).logits
    assert_close(fast, slow.detach(), rel=1e-5, what="fused vs reference")
