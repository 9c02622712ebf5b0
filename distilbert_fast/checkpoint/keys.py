"""Lining checkpoint keys up with a model (the distilbert. prefix) and reporting every problem at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .common import (
    CheckpointError,
    short_list,
)

# --------------------------------------------------------------------------------------------
# matching checkpoint keys to a model
# --------------------------------------------------------------------------------------------


def strip_or_add_prefix(
    state_dict: Mapping[str, torch.Tensor],
    model_keys: Iterable[str],
    prefix: str = "distilbert.",
) -> dict[str, torch.Tensor]:
    """Rename checkpoint keys so they line up with ``model_keys`` (the model's state-dict keys).

    A key already in ``model_keys`` is kept. Otherwise ``prefix`` is stripped from it (head-model
    checkpoint loaded into the base model) or added to it (base checkpoint loaded into a head model)
    when that yields a model key not already provided by the checkpoint. Keys that match nothing are
    left unchanged (they show up as *unexpected* in :func:`diff_state_dict`). Tensors are not copied.
    """
    if not prefix:
        raise CheckpointError("prefix must be a non-empty string such as 'distilbert.'")
    if not prefix.endswith("."):
        prefix += "."
    model_keys = set(model_keys)
    targets: dict[str, str] = {}
    taken = {k for k in state_dict if k in model_keys}
    for key in state_dict:
        if key in model_keys:
            targets[key] = key
            continue
        new = key
        if key.startswith(prefix) and key[len(prefix) :] in model_keys:
            new = key[len(prefix) :]
        elif prefix + key in model_keys:
            new = prefix + key
        if new != key and new not in taken:
            taken.add(new)
            targets[key] = new
        else:
            targets[key] = key
    return {targets[k]: v for k, v in state_dict.items()}


def diff_state_dict(
    model_shapes: Mapping[str, Iterable[int]],
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[list[str], list[str], list[tuple[str, tuple, tuple]]]:
    """Compare a checkpoint with the model's expected ``{name: shape}``.

    Returns ``(missing, unexpected, mismatched)``: model keys absent from the checkpoint (model
    order), checkpoint keys the model lacks (checkpoint order), and ``(key, ckpt_shape, model_shape)``
    for keys present in both with different shapes.
    """
    missing: list[str] = []
    mismatched: list[tuple[str, tuple, tuple]] = []
    for key, shape in model_shapes.items():
        if key not in state_dict:
            missing.append(key)
            continue
        ckpt_shape = tuple(int(s) for s in state_dict[key].shape)
        model_shape = tuple(int(s) for s in shape)
        if ckpt_shape != model_shape:
            mismatched.append((key, ckpt_shape, model_shape))
    unexpected = [k for k in state_dict if k not in model_shapes]
    return missing, unexpected, mismatched


def format_load_error(
    missing: Iterable[str],
    unexpected: Iterable[str],
    mismatched: Iterable[tuple[str, tuple, tuple]],
    source: Any,
) -> str:
    """One message describing all three kinds of mismatch (long lists are truncated with a count)."""
    missing, unexpected, mismatched = list(missing), list(unexpected), list(mismatched)

    def group(title: str, items: list[str]) -> str:
        if not items:
            return f"  {title} (0): none"
        return f"  {title} ({len(items)}): {short_list(items)}"

    shapes = [f"{k}: checkpoint {tuple(c)} vs model {tuple(m)}" for k, c, m in mismatched]
    lines = [
        f"checkpoint {source} does not match the model: {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(mismatched)} with mismatched shapes",
        group("missing keys", missing),
        group("unexpected keys", unexpected),
        group("shape mismatches", shapes),
    ]
    return "\n".join(lines)
