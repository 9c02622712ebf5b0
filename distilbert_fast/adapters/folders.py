"""Adapter and head folders in the `adapters` library's formats (file level): adapter_config.json +
adapter.safetensors | pytorch_adapter.bin, head_config.json + model_head.safetensors | pytorch_model_head.bin.
`.bin` files are read with weights_only=True (checkpoint.load_weights_file). The methods that write and read
them for a model are ModelAdaptersMixin.save_adapter / load_adapter (mixin.py) and, for flex heads,
heads/folders.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .configs import LIBRARY_VERSION

ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, ADAPTER_SAFE_WEIGHTS_NAME = (
    "adapter_config.json",
    "pytorch_adapter.bin",
    "adapter.safetensors",
)
HEAD_CONFIG_NAME, HEAD_WEIGHTS_NAME, HEAD_SAFE_WEIGHTS_NAME = (
    "head_config.json",
    "pytorch_model_head.bin",
    "model_head.safetensors",
)


def folder_config(model, name: str | None, config, model_class: str, **extra) -> dict:
    """The library's build_full_config: what adapter_config.json / head_config.json hold."""
    return {
        "config": config,
        "hidden_size": model.config.dim,
        "model_class": model_class,
        "model_name": str(getattr(model, "name_or_path", "") or ""),
        "model_type": "distilbert",
        "name": name,
        "version": LIBRARY_VERSION,
        **extra,
    }


def write_folder(
    directory: Path, config_name: str, config: dict, state: dict, safe: bool, bin_name: str, safe_name: str
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / config_name).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}
    if safe:
        from safetensors.torch import save_file

        save_file(state, str(directory / safe_name), metadata={"format": "pt"})
    else:
        torch.save(state, directory / bin_name)


def read_weights(directory: Path, bin_name: str, safe_name: str) -> dict[str, torch.Tensor]:
    if (directory / safe_name).is_file():
        return ckpt.load_weights_file(directory / safe_name)
    if (directory / bin_name).is_file():
        return ckpt.load_weights_file(directory / bin_name)  # torch.load(weights_only=True)
    raise ckpt.CheckpointError(f"no {safe_name} or {bin_name} in '{directory}'")


def read_config(directory: Path, config_name: str, what: str) -> dict:
    if not (directory / config_name).is_file():
        raise ckpt.CheckpointError(f"'{directory}' is not {what} (no {config_name})")
    return json.loads((directory / config_name).read_text(encoding="utf-8"))


def has_head_weights(directory: Path) -> bool:
    return (directory / HEAD_SAFE_WEIGHTS_NAME).is_file() or (directory / HEAD_WEIGHTS_NAME).is_file()
