"""Response bodies as JSON bytes, written by orjson with numpy arrays serialized natively.

`json.dumps` writes a float through Python's `float.__repr__`, one Python float object per value: about
0.5 ms for one request's 2-3 embeddings of 384 values on a small CPU, half of the event loop's time per
/embed request. orjson (FastAPI's own fast JSON) writes a float32 array in one C pass (~30 us for 3 x 384)
as the shortest text that parses back to the same float32, so clients get the model's float32 bit for bit
(tests/test_serve.py checks this on random bit patterns, subnormals included), in fewer bytes than the
float64 repr of a float32 (`0.006385671440511942` carries digits the model never computed).

`encode_json(value)`: like `json.dumps(value)`, where value may hold numpy arrays and scalars anywhere
(non-finite floats become null: JSON has no NaN). `to_plain(value)`: the same value with lists instead of
arrays (for in-process callers of InferenceService.handle).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(x: Any):
    # what OPT_SERIALIZE_NUMPY leaves to us: non-contiguous arrays and array dtypes it does not take
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x) if x.dtype.kind in "biuf" and not x.flags.c_contiguous else x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


def encode_json(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON bytes; numpy arrays and scalars anywhere in it are written natively."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def to_plain(value: Any) -> Any:
    """`value` with numpy arrays and scalars turned into lists and Python numbers (dicts, lists, tuples
    walked)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
