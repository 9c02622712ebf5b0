"""What only the cpp backend does: "auto" picks it on CPU, the env override, and oneDNN-prepacked GEMM weights
built once and rebuilt when a weight changes. Its parity with transformers is test_backend_parity.py."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import hf_model

import distilbert_fast as dbf
from distilbert_fast import ops

if "cpp" not in dbf.available_backends():
    if os.environ.get("DISTILBERT_FAST_REQUIRE_EXT") == "1":
        raise RuntimeError(
            f"DISTILBERT_FAST_REQUIRE_EXT=1 but the cpp backend is unavailable: "
            f"{ops.unavailable_reason('cpp')}"
        )
    pytest.skip(f"cpp backend unavailable: {ops.unavailable_reason('cpp')}", allow_module_level=True)


def _pair(class_name, tmp_path, dtype=None, **cfg):
    hf_model(class_name, seed=5, **cfg).save_pretrained(tmp_path)
    ref = getattr(dbf, class_name).from_pretrained(tmp_path, backend="torch")
    fast = getattr(dbf, class_name).from_pretrained(tmp_path, backend="cpp", dtype=dtype)
    assert fast.backend == "cpp" and ref.backend == "torch"
    return ref, fast


def test_backend_selection(monkeypatch, tmp_path):
    hf_model("DistilBertModel").save_pretrained(tmp_path)
    assert dbf.DistilBertModel.from_pretrained(tmp_path).backend == "cpp"  # auto picks the fastest
    monkeypatch.setenv("DISTILBERT_FAST_BACKEND", "torch")
    assert dbf.DistilBertModel.from_pretrained(tmp_path).backend == "torch"
    monkeypatch.setenv("DISTILBERT_FAST_BACKEND", "cuda-magic")
    with pytest.raises(ValueError, match="DISTILBERT_FAST_BACKEND"):
        dbf.DistilBertModel.from_pretrained(tmp_path)
    monkeypatch.delenv("DISTILBERT_FAST_BACKEND")
    with pytest.raises(ValueError, match="backend must be one of"):
        dbf.DistilBertModel.from_pretrained(tmp_path, backend="tensorrt")


def test_prepacked_weights_built_once_and_refreshed(tmp_path):
    _, fast = _pair("DistilBertModel", tmp_path)
    attn = fast.transformer.layer[0].attention
    packed = attn.__dict__["_dbf_packed"].entry[1]
    ids = torch.randint(1, 100, (2, 7))
    with torch.inference_mode():
        a = fast(ids)[0]
        assert attn.__dict__["_dbf_packed"].entry[1] is packed  # reused, not repacked per call
    with torch.no_grad():
        attn.q_lin.weight.mul_(2.0)  # an in-place update must invalidate the packed copy
    with torch.inference_mode():
        b = fast(ids)[0]
    assert attn.__dict__["_dbf_packed"].entry[1] is not packed and not torch.allclose(a, b)
