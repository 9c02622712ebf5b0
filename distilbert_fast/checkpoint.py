"""Checkpoint I/O for distilbert_fast: pure functions on state dicts and directories.

Nothing in here knows about the model classes; the model code uses this API to

* find a checkpoint directory (local folder or Hugging Face hub repo id / cache):
  :func:`resolve_model_dir`, :func:`read_config_dict`;
* read and write weights safely (safetensors, or ``torch.load(weights_only=True)`` for legacy
  ``.bin`` files, single file or sharded with an HF-style index):
  :func:`load_state_dict`, :func:`save_state_dict`;
* line checkpoint keys up with the model and report problems:
  :func:`strip_or_add_prefix`, :func:`diff_state_dict`, :func:`format_load_error`;
* convert BERT checkpoints to the DistilBERT layout, exactly where that is possible:
  :func:`bert_config_to_distilbert`, :func:`convert_bert_state_dict`.

Every error raised for a bad input is a :class:`CheckpointError` (a ``ValueError``).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError",
    "CONFIG_NAME",
    "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
    "WEIGHTS_INDEX_NAME",
    "WEIGHT_FILE_NAMES",
    "resolve_model_dir",
    "read_config_dict",
    "load_state_dict",
    "save_state_dict",
    "strip_or_add_prefix",
    "diff_state_dict",
    "format_load_error",
    "bert_config_to_distilbert",
    "convert_bert_state_dict",
]

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
#: Weight files looked for by :func:`load_state_dict`, in priority order.
WEIGHT_FILE_NAMES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)

_HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.txt"]
_MAX_LISTED = 10


class CheckpointError(ValueError):
    """A checkpoint, config or model location is missing, malformed or not convertible."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line
    return type(exc).__name__


def _short_list(items: Iterable[Any], limit: int = _MAX_LISTED) -> str:
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... (+{len(items) - limit} more)"


def _as_dir(model_dir: str | os.PathLike, what: str = "model_dir") -> Path:
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise CheckpointError(f"{what} '{path}' does not exist (expected a checkpoint directory)")
    if not path.is_dir():
        raise CheckpointError(f"{what} '{path}' is a file, expected a checkpoint directory")
    return path


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{what} '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read {what} '{path}': {_first_line(e)}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{what} '{path}' is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from e


# --------------------------------------------------------------------------------------------
# locating a checkpoint
# --------------------------------------------------------------------------------------------


def resolve_model_dir(
    path_or_repo_id: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """Return a local directory holding the checkpoint named by ``path_or_repo_id``.

    An existing local directory is returned as is (as a :class:`~pathlib.Path`). An existing file is an
    error. Anything else is treated as a Hugging Face hub repo id and resolved with
    :func:`huggingface_hub.snapshot_download` (config, weights and tokenizer files only); with
    ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` this only looks in the cache.
    """
    if not isinstance(path_or_repo_id, (str, os.PathLike)):
        raise CheckpointError(
            f"path_or_repo_id must be a local directory or a hub repo id (str), got "
            f"{type(path_or_repo_id).__name__}"
        )
    raw = os.fspath(path_or_repo_id)
    if not raw:
        raise CheckpointError("path_or_repo_id is empty: expected a local directory or a hub repo id")
    local = Path(raw).expanduser()
    if local.is_dir():
        return Path(path_or_repo_id)
    if local.exists():
        raise CheckpointError(
            f"'{raw}' is a file: expected a checkpoint directory (holding config.json and "
            f"{' / '.join(WEIGHT_FILE_NAMES)}) or a hub repo id"
        )

    import huggingface_hub
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import errors as hf_errors

    offline = bool(local_files_only) or hf_constants.is_offline_mode()
    where = f" (cache_dir={os.fspath(cache_dir)!r})" if cache_dir is not None else ""
    rev = f" at revision {revision!r}" if revision is not None else ""
    try:
        snapshot = huggingface_hub.snapshot_download(
            raw,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=list(_HUB_ALLOW_PATTERNS),
        )
    except hf_errors.HFValidationError as e:
        raise CheckpointError(
            f"'{raw}' is neither an existing local directory nor a valid Hugging Face repo id "
            f"({_first_line(e)})"
        ) from None
    except hf_errors.IncompleteSnapshotError as e:
        raise CheckpointError(
            f"'{raw}'{rev}: the cached snapshot{where} is incomplete and the Hub cannot be used "
            f"({_first_line(e)})"
        ) from None
    except hf_errors.LocalEntryNotFoundError as e:
        if offline:
            mode = "local_files_only=True" if local_files_only else "offline: HF_HUB_OFFLINE=1"
            raise CheckpointError(
                f"'{raw}' is neither a local directory nor a model found in the Hugging Face cache{rev} "
                f"({mode}){where}; download it first with network access or pass a local directory"
            ) from None
        raise CheckpointError(
            f"'{raw}' is neither a local directory nor a model found in the Hugging Face cache{rev}{where}, "
            f"and the Hub could not be reached ({_first_line(e)})"
        ) from None
    except hf_errors.GatedRepoError as e:
        raise CheckpointError(
            f"'{raw}' is a gated Hugging Face repo: accept its terms and pass token=... ({_first_line(e)})"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"'{raw}' is neither a local directory nor a model repo on the Hugging Face Hub "
            f"(not found, or private: pass token=...)"
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise CheckpointError(f"revision {revision!r} not found for Hugging Face repo '{raw}'") from None
    except hf_errors.HfHubHTTPError as e:
        raise CheckpointError(
            f"could not fetch '{raw}'{rev} from the Hugging Face Hub: {_first_line(e)}"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"could not resolve '{raw}'{rev} as a Hugging Face repo: {_first_line(e)}"
        ) from None
    path = Path(snapshot)
    if not path.is_dir():
        raise CheckpointError(f"snapshot for '{raw}' resolved to '{path}', which is not a directory")
    return path


def read_config_dict(model_dir: str | os.PathLike) -> dict:
    """Read ``config.json`` from ``model_dir`` and return it as a dict."""
    path = _as_dir(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in '{path.parent}' (expected a model config file)")
    data = _read_json(path, CONFIG_NAME)
    if not isinstance(data, dict):
        raise CheckpointError(f"{CONFIG_NAME} '{path}' must hold a JSON object, got {type(data).__name__}")
    return data


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
            f"cannot read safetensors file '{path}': file is truncated or corrupt ({_first_line(e)})"
        ) from e


_BLOCKED_GLOBAL_RE = re.compile(r"GLOBAL\s+([\w.]+)")


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
            f"cannot read PyTorch weight file '{path}': file is truncated or corrupt ({_first_line(e)})"
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
            f"name -> tensor: {_short_list(map(repr, bad))}"
        )
    return dict(obj)


def _load_sharded(index_path: Path, loader) -> dict[str, torch.Tensor]:
    index = _read_json(index_path, "weight index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"weight index '{index_path}' has no 'weight_map' object (expected "
            f'{{"metadata": {{...}}, "weight_map": {{"<tensor name>": "<shard file>", ...}}}})'
        )
    base = index_path.parent.resolve()
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(
                f"weight index '{index_path}': entry {key!r} maps to {shard!r}, expected a file name"
            )
        shards.setdefault(shard, []).append(key)
    state_dict: dict[str, torch.Tensor] = {}
    for shard, keys in shards.items():
        shard_path = (index_path.parent / shard).resolve()
        if base != shard_path.parent and base not in shard_path.parents:
            raise CheckpointError(
                f"weight index '{index_path}' points outside its directory: {shard!r}"
            )
        if not shard_path.is_file():
            raise CheckpointError(
                f"shard '{shard}' listed in '{index_path}' is missing ({len(keys)} tensors expected there)"
            )
        part = loader(shard_path)
        missing = [k for k in keys if k not in part]
        if missing:
            raise CheckpointError(
                f"shard '{shard_path}' lacks {len(missing)} tensor(s) that '{index_path.name}' lists "
                f"in it: {_short_list(missing)}"
            )
        state_dict.update(part)
    return state_dict


def load_state_dict(model_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load all weights of the checkpoint in ``model_dir`` onto the CPU.

    Looks for, in priority order: ``model.safetensors``, ``model.safetensors.index.json`` (sharded),
    ``pytorch_model.bin``, ``pytorch_model.bin.index.json`` (sharded). ``.bin`` files are read with
    ``torch.load(weights_only=True)`` only: pickles that would run code are refused.
    """
    directory = _as_dir(model_dir)
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
    raise CheckpointError(
        f"no weight file in '{directory}': looked for {', '.join(WEIGHT_FILE_NAMES)}"
    )


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
        raise CheckpointError(
            f"state_dict entries that are not name -> tensor: {_short_list(map(repr, bad))}"
        )
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
        partial = key is not None and (
            v.data_ptr() != key[1] or v.numel() * v.element_size() != key[2]
        )
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
            raise CheckpointError(f"metadata must map str -> str; bad entries: {_short_list(map(repr, bad))}")
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
            raise CheckpointError(f"invalid max_shard_size {max_shard_size!r}: {_first_line(e)}") from None
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
        if key.startswith(prefix) and key[len(prefix):] in model_keys:
            new = key[len(prefix):]
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
        return f"  {title} ({len(items)}): {_short_list(items)}"

    shapes = [f"{k}: checkpoint {tuple(c)} vs model {tuple(m)}" for k, c, m in mismatched]
    lines = [
        f"checkpoint {source} does not match the model: {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(mismatched)} with mismatched shapes",
        group("missing keys", missing),
        group("unexpected keys", unexpected),
        group("shape mismatches", shapes),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# BERT -> DistilBERT
# --------------------------------------------------------------------------------------------

_BERT_DEFAULTS: dict[str, Any] = {
    # transformers.BertConfig defaults, used when an (old) config.json omits a field
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
_SUPPORTED_ACTIVATIONS = ("gelu", "relu", "silu", "gelu_new")
_DISTILBERT_LN_EPS = 1e-12

# BERT architecture -> (DistilBERT architecture, head kind)
_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "BertModel": ("DistilBertModel", "base"),
    "BertForMaskedLM": ("DistilBertForMaskedLM", "mlm"),
    "BertForPreTraining": ("DistilBertForMaskedLM", "mlm"),
    "BertLMHeadModel": ("DistilBertForMaskedLM", "mlm"),
    "BertForNextSentencePrediction": ("DistilBertModel", "base"),
    "BertForTokenClassification": ("DistilBertForTokenClassification", "token"),
    "BertForQuestionAnswering": ("DistilBertForQuestionAnswering", "qa"),
    "BertForSequenceClassification": ("DistilBertForSequenceClassification", "sequence"),
    "BertForMultipleChoice": ("DistilBertForMultipleChoice", "choice"),
}


def _bert_get(cfg: Mapping[str, Any], key: str) -> Any:
    value = cfg.get(key)
    return _BERT_DEFAULTS[key] if value is None else value


def bert_config_to_distilbert(bert_cfg: Mapping[str, Any]) -> dict:
    """Map a BERT ``config.json`` dict to an equivalent DistilBERT config dict.

    Raises :class:`CheckpointError` for BERT features DistilBERT cannot reproduce exactly.
    """
    if not isinstance(bert_cfg, Mapping):
        raise CheckpointError(
            f"bert_cfg must be a dict (config.json contents), got {type(bert_cfg).__name__}"
        )
    model_type = bert_cfg.get("model_type")
    if model_type is not None and model_type != "bert":
        raise CheckpointError(
            f"bert_cfg has model_type {model_type!r}; only 'bert' checkpoints can be converted"
        )

    problems: list[str] = []
    eps = _bert_get(bert_cfg, "layer_norm_eps")
    if not isinstance(eps, (int, float)) or not math.isclose(float(eps), _DISTILBERT_LN_EPS, rel_tol=1e-6):
        problems.append(f"layer_norm_eps={eps!r} (DistilBERT hard-codes LayerNorm eps 1e-12)")
    pos_type = bert_cfg.get("position_embedding_type", "absolute")
    if pos_type not in (None, "absolute"):
        problems.append(
            f"position_embedding_type={pos_type!r} (DistilBERT only has absolute position embeddings)"
        )
    act = _bert_get(bert_cfg, "hidden_act")
    if act not in _SUPPORTED_ACTIVATIONS:
        problems.append(f"hidden_act={act!r} (supported: {', '.join(_SUPPORTED_ACTIVATIONS)})")
    if bert_cfg.get("is_decoder"):
        problems.append("is_decoder=True (DistilBERT is a bidirectional encoder)")
    if bert_cfg.get("add_cross_attention"):
        problems.append("add_cross_attention=True (DistilBERT has no cross-attention)")
    hidden, heads = _bert_get(bert_cfg, "hidden_size"), _bert_get(bert_cfg, "num_attention_heads")
    if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0 or hidden % heads:
        problems.append(f"hidden_size={hidden!r} is not divisible by num_attention_heads={heads!r}")

    architectures = bert_cfg.get("architectures") or []
    if isinstance(architectures, str):
        architectures = [architectures]
    mapped: list[str] = []
    for arch in architectures:
        if arch not in _ARCHITECTURES:
            problems.append(
                f"architecture {arch!r} has no DistilBERT equivalent (known: {', '.join(_ARCHITECTURES)}); "
                f"remove it from 'architectures' to convert the encoder only"
            )
        elif _ARCHITECTURES[arch][0] not in mapped:
            mapped.append(_ARCHITECTURES[arch][0])
    if problems:
        raise CheckpointError("cannot convert this BERT config to DistilBERT exactly: " + "; ".join(problems))

    cfg: dict[str, Any] = {
        "model_type": "distilbert",
        "vocab_size": _bert_get(bert_cfg, "vocab_size"),
        "max_position_embeddings": _bert_get(bert_cfg, "max_position_embeddings"),
        "sinusoidal_pos_embds": False,
        "n_layers": _bert_get(bert_cfg, "num_hidden_layers"),
        "n_heads": heads,
        "dim": hidden,
        "hidden_dim": _bert_get(bert_cfg, "intermediate_size"),
        "dropout": _bert_get(bert_cfg, "hidden_dropout_prob"),
        "attention_dropout": _bert_get(bert_cfg, "attention_probs_dropout_prob"),
        "activation": act,
        "initializer_range": _bert_get(bert_cfg, "initializer_range"),
        "pad_token_id": bert_cfg.get("pad_token_id", _BERT_DEFAULTS["pad_token_id"]),
    }
    if mapped:
        cfg["architectures"] = mapped
    for key in ("id2label", "label2id", "problem_type", "tie_word_embeddings", "dtype", "torch_dtype"):
        if key in bert_cfg:
            cfg[key] = bert_cfg[key]
    return cfg


_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def _normalize_bert_key(key: str) -> str:
    if key.startswith("bert."):
        key = key[len("bert."):]
    if key.endswith(".gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith(".beta"):
        key = key[: -len("beta")] + "bias"
    return key


def _head_kind(bert_cfg: Mapping[str, Any]) -> str | None:
    architectures = bert_cfg.get("architectures") or []
    if isinstance(architectures, str):
        architectures = [architectures]
    kinds = {_ARCHITECTURES[a][1] for a in architectures if a in _ARCHITECTURES}
    for kind in ("token", "sequence", "choice"):
        if kind in kinds:
            return kind
    return None


def convert_bert_state_dict(
    sd: Mapping[str, torch.Tensor], bert_cfg: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert a BERT state dict (any of the ``Bert*`` models) to DistilBERT names.

    Returns ``(new_sd, notes)``: encoder keys carry the ``distilbert.`` prefix, heads are at the top
    level (``vocab_transform``/``vocab_layer_norm``/``vocab_projector``, ``classifier``,
    ``qa_outputs``). The token-type embedding of segment 0 is folded into the position embeddings,
    so the result is exact for inputs whose ``token_type_ids`` are all 0. Unconvertible parts that
    DistilBERT does not need (pooler, next-sentence head, sequence-classification head) are dropped
    with a note; unknown keys raise :class:`CheckpointError`.
    """
    cfg = bert_config_to_distilbert(bert_cfg)  # validates: raises for non-exact features
    n_layers = cfg["n_layers"]
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"sd must be a state dict (name -> tensor), got {type(sd).__name__}")

    src: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"BERT state dict entry {key!r} is not name -> tensor")
        norm = _normalize_bert_key(key)
        if norm in src:
            raise CheckpointError(
                f"BERT state dict has both {origin[norm]!r} and {key!r} for the same weight"
            )
        src[norm] = value
        origin[norm] = key

    notes: list[str] = []
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []

    def take(key: str, required: bool = True) -> torch.Tensor | None:
        if key in src:
            return src.pop(key)
        if required:
            missing.append(key)
        return None

    # ---- embeddings
    word = take("embeddings.word_embeddings.weight")
    pos = take("embeddings.position_embeddings.weight")
    token_type = take("embeddings.token_type_embeddings.weight", required=False)
    src.pop("embeddings.position_ids", None)
    src.pop("embeddings.token_type_ids", None)
    if word is not None:
        out["distilbert.embeddings.word_embeddings.weight"] = word
    if pos is not None:
        if token_type is not None:
            if token_type.ndim != 2 or pos.ndim != 2 or token_type.shape[-1] != pos.shape[-1]:
                raise CheckpointError(
                    f"token_type_embeddings {tuple(token_type.shape)} does not fit position_embeddings "
                    f"{tuple(pos.shape)}"
                )
            pos = (pos.float() + token_type[0].float()).to(pos.dtype)
            notes.append(
                "token_type_embeddings[0] folded into position_embeddings: exact for token_type_ids == 0 "
                "(single-segment inputs); DistilBERT cannot represent segment ids != 0"
            )
        out["distilbert.embeddings.position_embeddings.weight"] = pos
    for p in ("weight", "bias"):
        t = take(f"embeddings.LayerNorm.{p}")
        if t is not None:
            out[f"distilbert.embeddings.LayerNorm.{p}"] = t

    # ---- encoder layers
    for i in range(n_layers):
        for bert_name, distil_name in _LAYER_MAP.items():
            for p in ("weight", "bias"):
                t = take(f"encoder.layer.{i}.{bert_name}.{p}")
                if t is not None:
                    out[f"distilbert.transformer.layer.{i}.{distil_name}.{p}"] = t

    # ---- pooler
    if any(k.startswith("pooler.") for k in src):
        for k in [k for k in src if k.startswith("pooler.")]:
            del src[k]
        notes.append("BERT pooler dropped: DistilBERT has no pooler")

    # ---- masked-LM head
    if any(k.startswith("cls.predictions.") for k in src):
        for p in ("weight", "bias"):
            t = take(f"cls.predictions.transform.dense.{p}")
            if t is not None:
                out[f"vocab_transform.{p}"] = t
            t = take(f"cls.predictions.transform.LayerNorm.{p}")
            if t is not None:
                out[f"vocab_layer_norm.{p}"] = t
        # transformers (5.x) semantics: a decoder weight/bias present in the checkpoint is used as is
        # (tying only fills in the one that is absent), otherwise the tied source is used.
        decoder = take("cls.predictions.decoder.weight", required=False)
        if decoder is not None:
            out["vocab_projector.weight"] = decoder
            if word is not None and not (decoder.shape == word.shape and torch.equal(decoder, word)):
                notes.append("cls.predictions.decoder.weight differs from the word embeddings: kept untied")
        elif word is not None:
            out["vocab_projector.weight"] = word  # tied: the very same tensor as the input embeddings
        bias = take("cls.predictions.bias", required=False)
        decoder_bias = take("cls.predictions.decoder.bias", required=False)
        if decoder_bias is not None:
            same = bias is not None and bias.shape == decoder_bias.shape and torch.equal(bias, decoder_bias)
            if bias is not None and not same:
                notes.append(
                    "cls.predictions.decoder.bias differs from cls.predictions.bias: used the decoder bias"
                )
            bias = decoder_bias
        if bias is None:
            missing.append("cls.predictions.bias")
        else:
            out["vocab_projector.bias"] = bias

    # ---- next-sentence head
    if any(k.startswith("cls.seq_relationship.") for k in src):
        for k in [k for k in src if k.startswith("cls.seq_relationship.")]:
            del src[k]
        notes.append("BERT next-sentence-prediction head (cls.seq_relationship) dropped: DistilBERT has none")

    # ---- classification heads
    if any(k.startswith("classifier.") for k in src):
        kind = _head_kind(bert_cfg)
        if kind == "token":
            for p in ("weight", "bias"):
                t = take(f"classifier.{p}")
                if t is not None:
                    out[f"classifier.{p}"] = t
        elif kind in ("sequence", "choice"):
            for k in [k for k in src if k.startswith("classifier.")]:
                del src[k]
            what = "sequence-classification" if kind == "sequence" else "multiple-choice"
            notes.append(
                f"BERT {what} head dropped: it reads the pooler (dense+tanh on [CLS]) while DistilBERT uses "
                f"pre_classifier+ReLU, so there is no exact equivalent; pre_classifier/classifier must be "
                f"re-initialised and fine-tuned"
            )
        else:
            raise CheckpointError(
                "the BERT state dict has a 'classifier' head but bert_cfg['architectures'] does not say "
                "whether it is BertForTokenClassification (converted) or BertForSequenceClassification "
                "(dropped); set 'architectures' in the config"
            )

    # ---- question answering head
    if any(k.startswith("qa_outputs.") for k in src):
        for p in ("weight", "bias"):
            t = take(f"qa_outputs.{p}")
            if t is not None:
                out[f"qa_outputs.{p}"] = t

    if missing:
        raise CheckpointError(
            f"BERT state dict is missing {len(missing)} tensor(s) needed for DistilBERT "
            f"({n_layers} layers per config): {_short_list(missing)}"
        )
    if src:
        raise CheckpointError(
            f"BERT state dict has {len(src)} key(s) with no DistilBERT equivalent: "
            f"{_short_list(origin[k] for k in src)}"
        )
    return out, notes
