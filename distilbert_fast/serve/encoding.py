"""Response bodies as JSON bytes, with the float vectors (embeddings) written by numpy instead of Python.

`json.dumps` writes a float through Python's shortest-repr `float.__repr__`, one Python float object per
value: about 0.5 ms for one request's 2-3 embeddings of 384 values on a small CPU, half of the event loop's
time per /embed request. Here a float32 array is written in one vectorized pass as 9 significant digits in
exponent form (`-6.38567139e-03`). Nine significant digits round-trip every float32 exactly: parsing the
text (to float64, then rounding to float32, or straight to float32) gives back the very float32 the model
computed, bit for bit (tests/test_serve.py checks this on random bit patterns, subnormals included). The
text is shorter than `repr` of the float64 copy of a float32 (`0.006385671440511942`), which carries
digits the model never computed.

`encode_json(value)`: like `json.dumps(value)`, where value may hold 1-D or 2-D float numpy arrays
anywhere (other numpy values become plain JSON). `to_plain(value)`: the same value with lists instead of
arrays (for in-process callers of InferenceService.handle).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import numpy as np

_SIGNIFICANT = 9  # digits that round-trip every float32 (ceil(24 * log10(2)) + 1)
_WIDTH = 16  # bytes per value: sign or ' ', d, '.', 8 digits, 'e', exponent sign, 2 exponent digits, ','
_POW10 = 10.0 ** np.arange(-40, 80)  # _POW10[k + 40] == 10.0**k (for the scaling 10**(8 - exponent))
_DIGITS3 = np.frombuffer(b"".join(b"%03d" % i for i in range(1000)), np.uint8).reshape(1000, 3)
_DIGITS2 = np.frombuffer(b"".join(b"%02d" % i for i in range(100)), np.uint8).reshape(100, 2)
_SPACE, _MINUS, _PLUS = ord(" "), ord("-"), ord("+")


def float_array_json(a: np.ndarray) -> bytes:
    """A 1-D ([x, ...]) or 2-D ([[x, ...], ...]) float array as JSON, each value as its float32 in 9
    significant digits, in a fixed width of 16 bytes: `-6.38567139e-03` (a positive value has a leading
    space, which JSON allows between tokens). Non-finite values (which JSON lacks) fall back to
    `json.dumps`, which writes NaN / Infinity as Python does."""
    a = np.asarray(a)
    if a.ndim not in (1, 2) or a.dtype.kind != "f":
        raise ValueError(f"float_array_json: expected a 1-D or 2-D float array, got {a.dtype} {a.shape}")
    x32 = a.astype(np.float32, copy=False)
    if not np.isfinite(x32).all():
        return json.dumps(x32.tolist(), separators=(",", ":")).encode()
    if a.ndim == 1:
        return b"[" + _values(x32)[:-1] + b"]"
    n, d = x32.shape
    if n == 0:
        return b"[]"
    if d == 0:
        return b"[" + b",".join([b"[]"] * n) + b"]"
    text = _values(x32)
    row = d * _WIDTH
    return b"[" + b",".join([b"[" + text[i : i + row - 1] + b"]" for i in range(0, n * row, row)]) + b"]"


def _values(x32: np.ndarray) -> bytes:
    """Every value of a finite float32 array, `_WIDTH` bytes each, comma-terminated."""
    x = x32.astype(np.float64).ravel()
    ax = np.abs(x)
    zero = ax == 0
    ax[zero] = 1.0
    exp = np.floor(np.log10(ax)).astype(np.int64)
    # the mantissa: the value scaled to 9 integer digits, rounded; fix the exponent where log10 was off by
    # one (or where rounding reached 10**9)
    for _ in range(3):
        mant = np.rint(ax * _POW10[(_SIGNIFICANT - 1 + 40) - exp])
        high = mant >= 10.0**_SIGNIFICANT
        low = mant < 10.0 ** (_SIGNIFICANT - 1)
        if not (high.any() or low.any()):
            break
        exp = exp + high - low
    else:  # unreachable for finite float32 input
        raise AssertionError("float_array_json: the exponent did not settle")
    mant = mant.astype(np.int64)
    mant[zero] = 0
    exp[zero] = 0
    out = np.empty((x.size, _WIDTH), dtype=np.uint8)
    out[:, 0] = np.where(np.signbit(x), _MINUS, _SPACE)
    hi = np.take(_DIGITS3, mant // 1_000_000, axis=0)
    out[:, 1] = hi[:, 0]
    out[:, 2] = ord(".")
    out[:, 3:5] = hi[:, 1:]
    out[:, 5:8] = np.take(_DIGITS3, (mant // 1000) % 1000, axis=0)
    out[:, 8:11] = np.take(_DIGITS3, mant % 1000, axis=0)
    out[:, 11] = ord("e")
    out[:, 12] = np.where(exp < 0, _MINUS, _PLUS)
    out[:, 13:15] = np.take(_DIGITS2, np.abs(exp), axis=0)
    out[:, 15] = ord(",")
    return out.tobytes()


def _json_default(x: Any):
    if isinstance(x, np.generic):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


_NONCE = secrets.token_hex(8)  # placeholder marker; never sent (every placeholder is replaced)


def encode_json(value: Any) -> bytes:
    """`value` as compact JSON bytes (UTF-8, like json.dumps(..., ensure_ascii=False)); float numpy arrays
    (1-D or 2-D) anywhere in it are written by float_array_json."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim in (1, 2):
        return float_array_json(value)
    arrays: list[np.ndarray] = []

    def default(x: Any):
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim in (1, 2):
            arrays.append(x)
            return f"{_NONCE}:{len(arrays) - 1}"
        return _json_default(x)

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default)
    if not arrays:
        return text.encode("utf-8")
    parts = text.split(f'"{_NONCE}:')
    if len(parts) != len(arrays) + 1:  # the marker occurs in the value itself: the slow, plain way
        return json.dumps(to_plain(value), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    out = [parts[0].encode("utf-8")]
    for part in parts[1:]:
        index, _, rest = part.partition('"')
        out.append(float_array_json(arrays[int(index)]))
        out.append(rest.encode("utf-8"))
    return b"".join(out)


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
