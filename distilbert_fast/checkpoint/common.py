"""File names, CheckpointError and the small helpers every checkpoint module shares."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
#: Weight files looked for by :func:`load_state_dict`, in priority order.
WEIGHT_FILE_NAMES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)

HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.txt"]
MAX_LISTED = 10


class CheckpointError(ValueError):
    """A checkpoint, config or model location is missing, malformed or not convertible."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line
    return type(exc).__name__


def short_list(items: Iterable[Any], limit: int = MAX_LISTED) -> str:
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... (+{len(items) - limit} more)"


def as_dir(model_dir: str | os.PathLike, what: str = "model_dir") -> Path:
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise CheckpointError(f"{what} '{path}' does not exist (expected a checkpoint directory)")
    if not path.is_dir():
        raise CheckpointError(f"{what} '{path}' is a file, expected a checkpoint directory")
    return path


def read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{what} '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {what} '{path}': {first_line(e)}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{what} '{path}' is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from e
