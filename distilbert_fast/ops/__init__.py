"""The op table: which implementation of each op the model calls, resolved once per model.

The model never branches on device or backend; it calls `self.ops.<op>(...)`. A backend is a small
explicit table of functions with the reference signatures (see reference.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from . import reference

BACKEND_ENV = "DISTILBERT_FAST_BACKEND"
BACKENDS = ("auto", "torch")


@dataclass(frozen=True)
class OpTable:
    name: str
    packed: bool  # True: layers run padding-free on (real tokens, dim)
    embeddings: Callable
    linear: Callable
    add_layer_norm: Callable
    layer_norm: Callable
    attention: Callable


TORCH = OpTable(
    name="torch",
    packed=False,
    embeddings=reference.embeddings,
    linear=reference.linear,
    add_layer_norm=reference.add_layer_norm,
    layer_norm=reference.layer_norm,
    attention=reference.attention,
)

_TABLES = {"torch": TORCH}


def available_backends() -> list[str]:
    """Backends that can run in this process, fastest first; "torch" is always there."""
    return [name for name in ("torch",) if name in _TABLES]


def resolve_backend(backend: str | None = None) -> OpTable:
    """Turn a backend request ("auto" | "torch" | ..., or None = env DISTILBERT_FAST_BACKEND or auto)
    into an op table. An explicit request that cannot run raises; auto picks the fastest available."""
    requested = backend if backend is not None else os.environ.get(BACKEND_ENV, "auto")
    if not isinstance(requested, str) or requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {requested!r}"
                         + (f" (from ${BACKEND_ENV})" if backend is None else ""))
    if requested == "auto":
        best = available_backends()[0]
        return _TABLES[best]
    if requested not in _TABLES:
        raise RuntimeError(f"backend={requested!r} was requested but is not available here; "
                           f"available: {available_backends()}")
    return _TABLES[requested]


__all__ = ["OpTable", "available_backends", "resolve_backend", "reference", "TORCH"]
