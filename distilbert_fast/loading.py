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


# transformers' from_pretrained arguments that have no meaning here: accepted so existing code runs, warned
# about once each (with what happens instead), never passed on to the config (so never into config.json).
IGNORED_LOAD_KWARGS = {
    "device_map": "weights load on one device: pass device= ('cpu', 'cuda', ...); a device string given as "
    "device_map is used as device=",
    "attn_implementation": "the backend chooses the attention kernel (backend='cpp' | 'triton' | 'torch')",
    "low_cpu_mem_usage": "weights are read once, straight into the model",
    "trust_remote_code": "no remote code is ever run",
    "force_download": "no hub downloads here; a local snapshot is read as is",
    "resume_download": "no hub downloads here",
    "proxies": "no hub downloads here",
    "use_safetensors": "model.safetensors is read when present, else pytorch_model.bin",
    "offload_folder": "no offloading",
    "offload_state_dict": "no offloading",
    "max_memory": "no multi-device placement",
    "tp_plan": "no tensor parallelism",
    "key_mapping": "checkpoint keys are matched by the loader (BERT and flex-head layouts are converted)",
    "_fast_init": "weights are initialised once",
}
# Arguments that would change what the model is: refused with a clear error rather than silently ignored.
REFUSED_LOAD_KWARGS = {
    "from_tf": "TensorFlow checkpoints are not read; convert with transformers first",
    "from_flax": "Flax checkpoints are not read; convert with transformers first",
    "quantization_config": "use quantize='int8' (oneDNN int8 on CPU)",
    "gguf_file": "GGUF files are not read",
    "variant": "checkpoint variants are not read; point at the variant's files directly",
}
_warned_ignored: set[str] = set()


def split_loading_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """(config overrides, ignored transformers loading arguments) from from_pretrained's extra kwargs;
    raises for the refused ones. Each ignored name warns once per process."""
    for name, why in REFUSED_LOAD_KWARGS.items():
        if kwargs.get(name) not in (None, False):
            raise ValueError(f"from_pretrained({name}=...) is not supported: {why}")
    ignored = {k: kwargs[k] for k in IGNORED_LOAD_KWARGS if k in kwargs}
    overrides = {k: v for k, v in kwargs.items() if k not in ignored and k not in REFUSED_LOAD_KWARGS}
    for name in ignored:
        if name not in _warned_ignored:
            _warned_ignored.add(name)
            logger.warning(
                "from_pretrained(%s=...) is accepted and ignored: %s", name, IGNORED_LOAD_KWARGS[name]
            )
    return overrides, ignored


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
        raise ValueError(
            f"dtype must be a floating torch.dtype (e.g. torch.bfloat16), 'auto' or None, got {dtype!r}"
        )
    return dtype


def from_pretrained(
    cls,
    path_or_repo_id: str | os.PathLike,
    *,
    config: DistilBertConfig | None = None,
    dtype: Any = None,
    device: Any = None,
    backend: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | None = None,
    ignore_mismatched_sizes: bool = False,
    output_loading_info: bool = False,
    torch_dtype: Any = None,
    use_cuda_graphs: bool = False,
    quantize: str | None = None,
    **config_overrides: Any,
):
    from .ops import int8

    int8.check_quantize(quantize)
    if torch_dtype is not None and dtype is None:  # transformers' older spelling
        dtype = torch_dtype
    if config_overrides.get("use_auth_token") is not None and token is None:  # older spelling of token=
        token = config_overrides["use_auth_token"]
    config_overrides.pop("use_auth_token", None)
    config_overrides, ignored = split_loading_kwargs(config_overrides)
    device_map = ignored.get("device_map")
    if (
        device is None
        and isinstance(device_map, (str, torch.device))
        and str(device_map).split(":")[0] in ("cpu", "cuda", "xpu", "mps")
    ):
        device = torch.device(device_map)
    model_dir = resolve_model_dir(
        path_or_repo_id,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    raw_config = read_config_dict(model_dir)
    is_bert = raw_config.get("model_type") == "bert"
    config_dict = bert_config_to_distilbert(raw_config) if is_bert else raw_config
    if config is None:
        config = DistilBertConfig.from_dict(config_dict, **config_overrides)
    elif config_overrides:
        raise ValueError(
            f"pass either config= or config overrides, not both (got {sorted(config_overrides)})"
        )

    state_dict = load_state_dict(model_dir)
    notes: list[str] = []
    if is_bert:
        state_dict, notes = convert_bert_state_dict(state_dict, raw_config)
    target_dtype = resolve_dtype(dtype, raw_config, state_dict)

    model = cls(config, backend=backend)
    if int8.is_quantized_config(config):  # an int8 checkpoint: int8 weights + scales, loaded as they are
        int8.mark_structure_(model.base_model)
    state_dict = model.remap_checkpoint_state(state_dict, raw_config)
    model_state = model.state_dict()
    state_dict = strip_or_add_prefix(state_dict, set(model_state), prefix="distilbert.")
    tied = model.tied_keys()
    tied = tied | int8.float_weight_keys(model)  # rebuilt from int8 + scale below, not stored
    expected = {k: tuple(v.shape) for k, v in model_state.items() if k not in tied}
    state_dict = {k: v for k, v in state_dict.items() if k not in tied}

    missing, unexpected, mismatched = diff_state_dict(expected, state_dict)
    strict = model.is_strict_key
    bad_missing = [k for k in missing if strict(k)]
    bad_unexpected = [k for k in unexpected if strict(k)]
    bad_mismatched = [m for m in mismatched if strict(m[0]) or not ignore_mismatched_sizes]
    if bad_missing or bad_unexpected or bad_mismatched:
        msg = format_load_error(bad_missing, bad_unexpected, bad_mismatched, str(model_dir))
        if any(not strict(m[0]) for m in bad_mismatched):  # e.g. num_labels=N on a classifier checkpoint
            msg += (
                "\n  head weights of another shape (e.g. a different num_labels): pass "
                "ignore_mismatched_sizes=True to re-initialise them, as in transformers"
            )
        raise CheckpointError(msg)

    skip = set(unexpected) | {m[0] for m in mismatched}
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in state_dict.items() if k not in skip}, strict=False)
    model.tie_weights()
    if int8.is_quantized_config(config):
        int8.sync_float_weights_(model)
    elif quantize == "int8":  # quantized once, here, from the float weights (before any dtype cast)
        int8.quantize_model_(model)

    new_keys = sorted(set(missing) | {m[0] for m in mismatched})
    if new_keys:
        notes.append(
            f"Some weights of {cls.__name__} were not in the checkpoint at {model_dir} and are newly "
            f"initialized: {new_keys}. Train the model on a down-stream task before using it."
        )
    if unexpected:
        notes.append(
            f"Weights in the checkpoint at {model_dir} not used by {cls.__name__}: {sorted(unexpected)}"
        )
    for note in notes:
        logger.warning(note)

    if target_dtype is not None or device is not None:
        model.to(device=device, dtype=target_dtype)
    model.set_backend(backend)  # "auto" resolves with the device the weights ended up on
    model.prepare_for_inference()  # eval() like transformers, ops.prepare(), the backend's prepacked weights
    if use_cuda_graphs:
        model.enable_cuda_graphs()
    model.name_or_path = str(path_or_repo_id)
    model.loading_info = {
        "missing_keys": new_keys,
        "unexpected_keys": sorted(unexpected),
        "mismatched_keys": mismatched,
        "notes": notes,
    }
    return (model, model.loading_info) if output_loading_info else model


def save_pretrained(
    model,
    save_directory: str | os.PathLike,
    *,
    max_shard_size: int | str | None = None,
    safe_serialization: bool = True,
) -> None:
    """Write config.json + model.safetensors (or shards + index, or pytorch_model.bin) that both
    distilbert_fast and transformers load."""
    from .ops import int8

    os.makedirs(save_directory, exist_ok=True)
    DistilBertConfig.from_dict(model.config_to_save()).save_pretrained(save_directory)

    tied = model.tied_keys() | int8.float_weight_keys(model)  # int8 models store int8 weights + scales
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if k not in tied}
    if safe_serialization:
        save_state_dict(state, save_directory, max_shard_size=max_shard_size)
    else:
        for stale in ("model.safetensors", "model.safetensors.index.json"):  # would win over the .bin
            if os.path.exists(os.path.join(save_directory, stale)):
                os.remove(os.path.join(save_directory, stale))
        torch.save(state, os.path.join(save_directory, "pytorch_model.bin"))
