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
