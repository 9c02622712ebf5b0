"""Backend selection rules that hold whether or not the C++ extension was built."""

import warnings

import pytest

import distilbert_fast as dbf
from distilbert_fast import ops


def test_torch_always_available():
    assert "torch" in dbf.available_backends()
    assert ops.resolve_backend("torch").name == "torch"


def test_unbuilt_cpp_is_a_clear_error_and_auto_falls_back_once(monkeypatch):
    monkeypatch.setattr(ops, "_TABLES", {"torch": ops.TORCH})
    monkeypatch.setattr(ops, "_UNAVAILABLE", {"cpp": "distilbert_fast._C is not built"})
    monkeypatch.setattr(ops, "_warned_fallback", False)
    with pytest.raises(RuntimeError, match="backend='cpp'.*unavailable.*not built"):
        ops.resolve_backend("cpp")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ops.resolve_backend("auto").name == "torch"
        assert ops.resolve_backend("auto").name == "torch"
    assert len([w for w in caught if "C++ backend is unavailable" in str(w.message)]) == 1
    assert "cpp" not in dbf.available_backends() and "torch" in dbf.available_backends()


def test_use_cuda_graphs_needs_a_gpu(tmp_path):
    import torch
    from helpers import hf_model

    hf_model("DistilBertModel").save_pretrained(tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            dbf.DistilBertModel.from_pretrained(tmp_path, use_cuda_graphs=True)


def test_cuda_graph_runner_serves_plain_inference_calls_only(tmp_path):
    import torch
    from helpers import hf_model

    hf_model("DistilBertModel").save_pretrained(tmp_path)
    model = dbf.DistilBertModel.from_pretrained(tmp_path, backend="torch")
    calls = []

    def runner(*args, **kwargs):  # stands in for CudaGraphRunner, which needs a GPU
        calls.append((args, kwargs))
        return torch.nn.Module.__call__(model, *args, **kwargs)

    model.set_call_runner(runner)
    ids = torch.randint(1, 100, (2, 5))
    with torch.inference_mode():
        a = model(ids, attention_mask=torch.ones_like(ids))
        b = model(ids, output_hidden_states=True)  # not a plain call: eager
    assert len(calls) == 1 and b.hidden_states is not None
    model(ids)  # grad enabled: eager
    assert len(calls) == 1 and a.last_hidden_state.shape == (2, 5, 32)
