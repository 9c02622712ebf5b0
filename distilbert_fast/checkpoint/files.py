"""Reading and writing weights safely: safetensors, or torch.load(weights_only=True) for legacy .bin files;
single files or shards with an HF-style index (shards must stay inside the snapshot folder; the HF cache's
symlinked blobs are allowed).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .common import (
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHT_FILE_NAMES,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    as_dir,
    first_line,
    read_json,
    short_list,
)

# --------------------------------------------------------------------------------------------
# loading weights
# --------------------------------------------------------------------------------------------


def _load_safetensors_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"weight file '{path}' not found")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError (Rust), OSError, ...
        raise CheckpointError(
            f"cannot read safetensors file '{path}': file is truncated or corrupt ({first_line(e)})"
        ) from e


_BLOCKED_GLOBAL_RE = re.compile(r"GLOBAL\s+([\w.]+)")


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """One weight file: ``*.safetensors`` read with safetensors, anything else with
    ``torch.load(weights_only=True)`` (pickled code is refused). Errors are :class:`CheckpointError`."""
    path = Path(path)
    return _load_safetensors_file(path) if path.suffix == ".safetensors" else _load_torch_file(path)


def _weights_only_reason(msg: str) -> str:
    skip = ("weights only load failed", "check the documentation", "please file an issue", "(1)", "(2)")
    for line in msg.splitlines():
        line = line.strip()
        if line and not line.lower().startswith(skip):
            return line.replace("WeightsUnpickler error:", "").strip()
    return "unsupported pickle content"


def _load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weight file '{path}' not found")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*pickle protocol.*", category=UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        blocked = _BLOCKED_GLOBAL_RE.search(msg)
        if blocked:
            raise CheckpointError(
                f"refused to unpickle '{path}': it references `{blocked.group(1)}`, which "
                f"torch.load(weights_only=True) does not allow (only tensors and plain containers are); "
                f"nothing from the file was executed. Convert trusted checkpoints to safetensors."
            ) from None
        raise CheckpointError(
            f"refused to unpickle '{path}' with torch.load(weights_only=True): the file is corrupt or "
            f"holds objects other than tensors ({_weights_only_reason(msg)})"
        ) from None
    except Exception as e:  # RuntimeError from the zip reader, EOFError, OSError, ...
        raise CheckpointError(
            f"cannot read PyTorch weight file '{path}': file is truncated or corrupt ({first_line(e)})"
        ) from e

    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"PyTorch weight file '{path}' holds a {type(obj).__name__}, expected a state dict "
            f"(dict of name -> tensor)"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"PyTorch weight file '{path}' is not a plain state dict: entries that are not "
            f"name -> tensor: {short_list(map(repr, bad))}"
        )
    return dict(obj)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _contained_shard(index_path: Path, shard: str) -> Path:
    """The shard file an index names, refused when it lies outside the folder of the index.

    Containment is checked on the name (no "..", no absolute path) against the snapshot folder the index is
    in, and on the real path: a symlink may point into that folder or, in the Hugging Face cache layout
    (<repo>/snapshots/<revision>/<file> -> ../../blobs/<hash>), into the repo's blobs/ folder; anywhere
    else is an escape."""
    folder = Path(os.path.abspath(index_path.parent))
    named = Path(os.path.normpath(folder / shard))
    if not _within(named, folder):
        raise CheckpointError(f"weight index '{index_path}' points outside its directory: {shard!r}")
    real = named.resolve()
    allowed = [folder.resolve()]
    for snapshot in (folder, *folder.parents):
        if snapshot.parent.name == "snapshots":  # the HF cache: symlinks into <repo>/blobs
            allowed.append((snapshot.parent.parent / "blobs").resolve())
            break
    if not any(_within(real, a) for a in allowed):
        raise CheckpointError(
            f"weight index '{index_path}': shard {shard!r} is a link that points outside its directory "
            f"(to '{real}')"
        )
    return named


def _load_sharded(index_path: Path, loader) -> dict[str, torch.Tensor]:
    index = read_json(index_path, "weight index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"weight index '{index_path}' has no 'weight_map' object (expected "
            f'{{"metadata": {{...}}, "weight_map": {{"<tensor name>": "<shard file>", ...}}}})'
        )
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(
                f"weight index '{index_path}': entry {key!r} maps to {shard!r}, expected a file name"
            )
        shards.setdefault(shard, []).append(key)
    state_dict: dict[str, torch.Tensor] = {}
    for shard, keys in shards.items():
        shard_path = _contained_shard(index_path, shard)
        if not shard_path.is_file():
            raise CheckpointError(
                f"shard '{shard}' listed in '{index_path}' is missing ({len(keys)} tensors expected there)"
            )
        part = loader(shard_path)
        missing = [k for k in keys if k not in part]
        if missing:
            raise CheckpointError(
                f"shard '{shard_path}' lacks {len(missing)} tensor(s) that '{index_path.name}' lists "
                f"in it: {short_list(missing)}"
            )
        state_dict.update(part)
    return state_dict


def load_state_dict(model_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load all weights of the checkpoint in ``model_dir`` onto the CPU.

    Looks for, in priority order: ``model.safetensors``, ``model.safetensors.index.json`` (sharded),
    ``pytorch_model.bin``, ``pytorch_model.bin.index.json`` (sharded). ``.bin`` files are read with
    ``torch.load(weights_only=True)`` only: pickles that would run code are refused.
    """
    directory = as_dir(model_dir)
    path = directory / SAFE_WEIGHTS_NAME
    if path.is_file():
        return _load_safetensors_file(path)
    path = directory / SAFE_WEIGHTS_INDEX_NAME
    if path.is_file():
        return _load_sharded(path, _load_safetensors_file)
    path = directory / WEIGHTS_NAME
    if path.is_file():
        return _load_torch_file(path)
    path = directory / WEIGHTS_INDEX_NAME
    if path.is_file():
        return _load_sharded(path, _load_torch_file)
    raise CheckpointError(f"no weight file in '{directory}': looked for {', '.join(WEIGHT_FILE_NAMES)}")


# --------------------------------------------------------------------------------------------
# saving weights
# --------------------------------------------------------------------------------------------

_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


def _storage_key(t: torch.Tensor):
    try:
        storage = t.untyped_storage()
        return (t.device, storage.data_ptr(), storage.nbytes())
    except (RuntimeError, NotImplementedError):
        return None


def _prepare_for_safetensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detach; clone tensors that share storage, are views of a bigger buffer or are not contiguous."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"state_dict must be a mapping of name -> tensor, got {type(state_dict).__name__}"
        )
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"state_dict entries that are not name -> tensor: {short_list(map(repr, bad))}")
    if not state_dict:
        raise CheckpointError("state_dict is empty: nothing to save")
    owners: dict[Any, int] = {}
    for v in state_dict.values():
        key = _storage_key(v)
        if key is not None and key[1] != 0:
            owners[key] = owners.get(key, 0) + 1
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        v = v.detach()
        if v.layout != torch.strided:
            raise CheckpointError(f"tensor {k!r} has layout {v.layout}; only dense tensors can be saved")
        key = _storage_key(v)
        shared = key is not None and owners.get(key, 0) > 1
        partial = key is not None and (v.data_ptr() != key[1] or v.numel() * v.element_size() != key[2])
        if shared or partial or not v.is_contiguous():
            v = v.clone(memory_format=torch.contiguous_format)
        out[k] = v
    return out


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    meta: dict[str, str] = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise CheckpointError(f"metadata must be a dict of str -> str, got {type(metadata).__name__}")
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise CheckpointError(f"metadata must map str -> str; bad entries: {short_list(map(repr, bad))}")
        meta.update(metadata)
    meta["format"] = "pt"
    return meta


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    save_dir: str | os.PathLike,
    *,
    max_shard_size: int | str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Save ``state_dict`` as safetensors into ``save_dir`` (created if needed).

    Writes ``model.safetensors`` (header metadata ``{"format": "pt"}`` plus ``metadata``), or, when the
    weights exceed ``max_shard_size`` (bytes, or a string such as ``"200MB"``), shards
    ``model-00001-of-0000N.safetensors`` plus ``model.safetensors.index.json`` in the Hugging Face
    format. Stale safetensors weight files from an earlier save in the same directory are removed.
    Tensors sharing memory (tied weights) are cloned so safetensors accepts them; drop tied duplicate
    keys beforehand if they should not be stored twice. Returns the paths written.
    """
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    meta = _check_metadata(metadata)
    tensors = _prepare_for_safetensors(state_dict)

    if max_shard_size is not None:
        if isinstance(max_shard_size, bool) or not isinstance(max_shard_size, (int, str)):
            raise CheckpointError(
                f"max_shard_size must be an int (bytes) or a string like '200MB', got {max_shard_size!r}"
            )
        if isinstance(max_shard_size, int) and max_shard_size <= 0:
            raise CheckpointError(f"max_shard_size must be positive, got {max_shard_size}")
        try:
            split = split_torch_state_dict_into_shards(
                tensors, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
            )
        except ValueError as e:
            raise CheckpointError(f"invalid max_shard_size {max_shard_size!r}: {first_line(e)}") from None
    else:
        split = None

    directory = Path(save_dir).expanduser()
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"save_dir '{directory}' is a file, expected a directory")
    directory.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    if split is None or not split.is_sharded:
        keep = {SAFE_WEIGHTS_NAME}
        path = directory / SAFE_WEIGHTS_NAME
        save_file(tensors, str(path), metadata=meta)
        written.append(path)
    else:
        keep = set(split.filename_to_tensors) | {SAFE_WEIGHTS_INDEX_NAME}
        for filename, names in split.filename_to_tensors.items():
            path = directory / filename
            save_file({n: tensors[n] for n in names}, str(path), metadata=meta)
            written.append(path)
        index = {
            "metadata": {"total_size": int(split.metadata["total_size"])},
            "weight_map": dict(sorted(split.tensor_to_filename.items())),
        }
        path = directory / SAFE_WEIGHTS_INDEX_NAME
        path.write_text(json.dumps(index, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        written.append(path)

    # remove weight files of a previous save that would otherwise shadow / confuse this one
    for old in directory.iterdir():
        name = old.name
        if name in keep or not old.is_file():
            continue
        if name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME) or _SHARD_RE.match(name):
            old.unlink()
    return written
