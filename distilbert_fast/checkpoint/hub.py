"""Finding a checkpoint: a local folder or a Hugging Face Hub repo id (the one Hub resolver, shared by the
model loader and the tokenizer), and reading its config.json.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .common import (
    CONFIG_NAME,
    HUB_ALLOW_PATTERNS,
    WEIGHT_FILE_NAMES,
    CheckpointError,
    as_dir,
    first_line,
    read_json,
)

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

    return resolve_hub_snapshot(
        raw, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )


class HubResolutionError(CheckpointError, FileNotFoundError):
    """A name that is neither a local path nor a resolvable Hub repo. Also a FileNotFoundError: what a
    missing tokenizer path has always raised, so both loaders keep their callers' except clauses."""


def resolve_hub_snapshot(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    allow_patterns: Iterable[str] = tuple(HUB_ALLOW_PATTERNS),
) -> Path:
    """The one Hub resolver (models and tokenizers): the local snapshot folder of ``repo_id`` from
    :func:`huggingface_hub.snapshot_download` (only files matching ``allow_patterns``); with
    ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` only the cache is searched. Every failure is a
    :class:`HubResolutionError` naming the repo and why, on one line."""
    raw = repo_id
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
            allow_patterns=list(allow_patterns),
        )
    except hf_errors.HFValidationError as e:
        raise HubResolutionError(
            f"'{raw}' is neither an existing local directory nor a valid Hugging Face repo id "
            f"({first_line(e)})"
        ) from None
    except hf_errors.IncompleteSnapshotError as e:
        raise HubResolutionError(
            f"'{raw}'{rev}: the cached snapshot{where} is incomplete and the Hub cannot be used "
            f"({first_line(e)})"
        ) from None
    except hf_errors.LocalEntryNotFoundError as e:
        if offline:
            mode = "local_files_only=True" if local_files_only else "offline: HF_HUB_OFFLINE=1"
            raise HubResolutionError(
                f"'{raw}' is neither a local directory nor a model found in the Hugging Face cache{rev} "
                f"({mode}){where}; download it first with network access or pass a local directory"
            ) from None
        raise HubResolutionError(
            f"'{raw}' is neither a local directory nor a model found in the Hugging Face cache{rev}{where}, "
            f"and the Hub could not be reached ({first_line(e)})"
        ) from None
    except hf_errors.GatedRepoError as e:
        raise HubResolutionError(
            f"'{raw}' is a gated Hugging Face repo: accept its terms and pass token=... ({first_line(e)})"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise HubResolutionError(
            f"'{raw}' is neither a local directory nor a model repo on the Hugging Face Hub "
            f"(not found, or private: pass token=...)"
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise HubResolutionError(f"revision {revision!r} not found for Hugging Face repo '{raw}'") from None
    except hf_errors.HfHubHTTPError as e:
        raise HubResolutionError(
            f"could not fetch '{raw}'{rev} from the Hugging Face Hub: {first_line(e)}"
        ) from None
    except (OSError, ValueError) as e:
        raise HubResolutionError(
            f"could not resolve '{raw}'{rev} as a Hugging Face repo: {first_line(e)}"
        ) from None
    path = Path(snapshot)
    if not path.is_dir():
        raise HubResolutionError(f"snapshot for '{raw}' resolved to '{path}', which is not a directory")
    return path


def read_config_dict(model_dir: str | os.PathLike) -> dict:
    """Read ``config.json`` from ``model_dir`` and return it as a dict."""
    path = as_dir(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in '{path.parent}' (expected a model config file)")
    data = read_json(path, CONFIG_NAME)
    if not isinstance(data, dict):
        raise CheckpointError(f"{CONFIG_NAME} '{path}' must hold a JSON object, got {type(data).__name__}")
    return data
