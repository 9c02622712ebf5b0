"""from_pretrained / save_pretrained for every model class (the six DistilBertFor* classes and
DistilBertModelWithHeads), on top of checkpoint.py's file-level functions. The one loader.

Loading policy (what transformers does, made explicit):
* encoder keys (embeddings.*, transformer.*, adapters inside the layers) are strict: a missing, unexpected
  or mis-shaped one is an error that lists every problem at once;
* head keys are flexible: a base or other-task checkpoint loaded into a head class initialises the new head
  and reports the new keys; head weights the class does not have are dropped and reported; with
  ignore_mismatched_sizes=True a mis-shaped head weight is re-initialised and reported too;
* tied weights (vocab_projector.weight = the word-embedding matrix) are neither required nor saved;
* BERT checkpoints are converted (checkpoint.convert_bert_state_dict) and the conversion notes reported.

A model class adapts the policy through small hooks it defines (modeling.DistilBertPreTrainedModel has the
defaults, DistilBertModelWithHeads overrides them): `remap_checkpoint_state(state, raw_config)` (e.g. a
transformers DistilBertFor* head becomes a flex head), `is_strict_key(key)`, `tied_keys()` and
`config_to_save()`. This module never imports the model classes: it receives one.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .checkpoint import (
    CheckpointError,
    bert_config_to_distilbert,
    convert_bert_state_dict,
    diff_state_dict,
    format_load_error,
    load_state_dict,
    read_config_dict,
    resolve_model_dir,
    save_state_dict,
    strip_or_add_prefix,
)
from .config import DistilBertConfig

logger = logging.getLogger("distilbert_fast")

_ENCODER_ROOTS = ("embeddings", "transformer")


def is_encoder_key(key: str) -> bool:
    """embeddings.* / transformer.* (with or without the "distilbert." prefix): the strict keys."""
    parts = key.split(".")
    if parts[0] == "distilbert":
        parts = parts[1:]
    return bool(parts) and parts[0] in _ENCODER_ROOTS


def resolve_dtype(dtype: Any, config_dict: dict, state_dict: dict) -> torch.dtype | None:
    if dtype is None:
        return None
    if dtype == "auto":
        name = config_dict.get("dtype") or config_dict.get("torch_dtype")
        if isinstance(name, str) and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        floats = [t.dtype for t in state_dict.values() if t.is_floating_point()]
        return floats[0] if floats else None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype (e.g. torch.bfloat16), 'auto' or None, got {dtype!r}")
    return dtype


def from_pretrained(cls, path_or_repo_id: str | os.PathLike, *, config: DistilBertConfig | None = None,
                    dtype: Any = None, device: Any = None, backend: str | None = None,
                    revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                    local_files_only: bool = False, token: str | None = None,
                    ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                    torch_dtype: Any = None, use_cuda_graphs: bool = False, **config_overrides: Any):
    if torch_dtype is not None and dtype is None:  # transformers' older spelling
        dtype = torch_dtype
    model_dir = resolve_model_dir(path_or_repo_id, revision=revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only, token=token)
    raw_config = read_config_dict(model_dir)
    is_bert = raw_config.get("model_type") == "bert"
    config_dict = bert_config_to_distilbert(raw_config) if is_bert else raw_config
    if config is None:
        config = DistilBertConfig.from_dict(config_dict, **config_overrides)
    elif config_overrides:
        raise ValueError(f"pass either config= or config overrides, not both (got {sorted(config_overrides)})")

    state_dict = load_state_dict(model_dir)
    notes: list[str] = []
    if is_bert:
        state_dict, notes = convert_bert_state_dict(state_dict, raw_config)
    target_dtype = resolve_dtype(dtype, raw_config, state_dict)

    model = cls(config, backend=backend)
    state_dict = model.remap_checkpoint_state(state_dict, raw_config)
    model_state = model.state_dict()
    state_dict = strip_or_add_prefix(state_dict, set(model_state), prefix="distilbert.")
    tied = model.tied_keys()
    expected = {k: tuple(v.shape) for k, v in model_state.items() if k not in tied}
    state_dict = {k: v for k, v in state_dict.items() if k not in tied}

    missing, unexpected, mismatched = diff_state_dict(expected, state_dict)
    strict = model.is_strict_key
    bad_missing = [k for k in missing if strict(k)]
    bad_unexpected = [k for k in unexpected if strict(k)]
    bad_mismatched = [m for m in mismatched if strict(m[0]) or not ignore_mismatched_sizes]
    if bad_missing or bad_unexpected or bad_mismatched:
        raise CheckpointError(format_load_error(bad_missing, bad_unexpected, bad_mismatched, str(model_dir)))

    skip = set(unexpected) | {m[0] for m in mismatched}
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in state_dict.items() if k not in skip}, strict=False)
    model.tie_weights()

    new_keys = sorted(set(missing) | {m[0] for m in mismatched})
    if new_keys:
        notes.append(f"Some weights of {cls.__name__} were not in the checkpoint at {model_dir} and are newly "
                     f"initialized: {new_keys}. Train the model on a down-stream task before using it.")
    if unexpected:
        notes.append(f"Weights in the checkpoint at {model_dir} not used by {cls.__name__}: {sorted(unexpected)}")
    for note in notes:
        logger.warning(note)

    if target_dtype is not None or device is not None:
        model.to(device=device, dtype=target_dtype)
    model.set_backend(backend)  # "auto" resolves with the device the weights ended up on
    model.prepare_for_inference()  # eval() like transformers, ops.prepare(), the backend's prepacked weights
    if use_cuda_graphs:
        model.enable_cuda_graphs()
    model.name_or_path = str(path_or_repo_id)
    model.loading_info = {"missing_keys": new_keys, "unexpected_keys": sorted(unexpected),
                          "mismatched_keys": mismatched, "notes": notes}
    return (model, model.loading_info) if output_loading_info else model


def save_pretrained(model, save_directory: str | os.PathLike, *, max_shard_size: int | str | None = None,
                    safe_serialization: bool = True) -> None:
    """Write config.json + model.safetensors (or shards + index, or pytorch_model.bin) that both
    distilbert_fast and transformers load."""
    os.makedirs(save_directory, exist_ok=True)
    DistilBertConfig.from_dict(model.config_to_save()).save_pretrained(save_directory)

    tied = model.tied_keys()
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if k not in tied}
    if safe_serialization:
        save_state_dict(state, save_directory, max_shard_size=max_shard_size)
    else:
        for stale in ("model.safetensors", "model.safetensors.index.json"):  # would win over the .bin
            if os.path.exists(os.path.join(save_directory, stale)):
                os.remove(os.path.join(save_directory, stale))
        torch.save(state, os.path.join(save_directory, "pytorch_model.bin"))
