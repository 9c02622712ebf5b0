"""backend="auto" resolves with the model's device at every entry point: the constructor, set_backend, .to(),
from_pretrained and optimize(hf_model); the multi-head model's modules follow together.

There is no GPU here, so two stand-ins show which table each entry point picks: a "triton" table (the
reference ops under that name, padded layout, so it runs on CPU tensors) and the model's `device` property
reporting whatever device the test sets. Everything else (loading, sharing weights with transformers, the
forward) is the real code.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import assert_close, hf_model, small_config

import distilbert_fast as dbf
from distilbert_fast import ops
from distilbert_fast.modeling import DistilBertPreTrainedModel


@pytest.fixture
def device(monkeypatch):
    """A settable stand-in for the model's device; a stand-in "triton" table available."""
    where = {"device": torch.device("cpu")}
    monkeypatch.setitem(ops._TABLES, "triton", dataclasses.replace(ops.TORCH, name="triton"))
    monkeypatch.setattr(DistilBertPreTrainedModel, "device", property(lambda self: where["device"]))

    def set_device(name: str) -> None:
        where["device"] = torch.device(name)

    return set_device


def cpu_backend() -> str:
    return ops.resolve_backend("auto", torch.device("cpu")).name


def backends(model) -> set[str]:
    return {m.backend for m in model.modules() if isinstance(m, DistilBertPreTrainedModel)}


def test_resolve_backend_picks_by_device(device):
    assert ops.resolve_backend("auto", torch.device("cuda", 0)).name == "triton"
    assert ops.resolve_backend("auto", "cuda:1").name == "triton"
    assert ops.resolve_backend("auto", torch.device("cpu")).name in ("cpp", "torch")
    assert ops.resolve_backend("torch", torch.device("cuda")).name == "torch"  # explicit wins


def test_constructor_set_backend_and_to_follow_the_device(device):
    cfg = dbf.DistilBertConfig(**small_config())
    model = dbf.DistilBertForSequenceClassification(cfg)
    assert backends(model) == {cpu_backend()}
    device("cuda")
    assert backends(dbf.DistilBertForSequenceClassification(cfg)) == {"triton"}
    model.set_backend("auto")
    assert backends(model) == {"triton"}
    device("cpu")
    model.float()  # .to()/.float()/.cuda() all land in _apply: "auto" follows the device
    assert backends(model) == {cpu_backend()}
    device("cuda")
    model.to(torch.float32)
    assert backends(model) == {"triton"}
    model.set_backend("torch")  # explicit: kept whatever the device
    device("cpu")
    model.float()
    assert backends(model) == {"torch"}


def test_multi_head_model_follows_the_device(device):
    model = dbf.DistilBertModelWithHeads(dbf.DistilBertConfig(**small_config()))
    model.add_classification_head("a", num_labels=2)
    device("cuda")
    model.float()
    assert backends(model) == {"triton"}
    device("cpu")
    model.set_backend(None)
    assert backends(model) == {cpu_backend()}


@pytest.mark.parametrize("cls", [dbf.DistilBertForTokenClassification, dbf.DistilBertModelWithHeads])
def test_from_pretrained_resolves_with_the_device(cls, device, tmp_path):
    hf_model("DistilBertForTokenClassification").save_pretrained(tmp_path)
    device("cuda")
    model = cls.from_pretrained(tmp_path)
    assert backends(model) == {"triton"}
    device("cpu")
    assert backends(cls.from_pretrained(tmp_path)) == {cpu_backend()}


def test_optimize_resolves_with_the_models_device(device):
    hf = hf_model("DistilBertForSequenceClassification")
    ids = torch.randint(1, 100, (2, 7))
    with torch.no_grad():
        want = hf(ids).logits
    device("cuda")
    dbf.optimize(hf)
    ours = hf.__dict__["_dbf_model"]
    assert backends(ours) == {"triton"}
    with torch.no_grad():
        assert_close(hf(ids).logits, want, rel=1e-5, what="optimize on the stand-in triton table")
    device("cpu")  # hf_model.to("cpu") moved the shared weights: the next call follows
    with torch.no_grad():
        hf(ids)
    assert backends(ours) == {cpu_backend()}
