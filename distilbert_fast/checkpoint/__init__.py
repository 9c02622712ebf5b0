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

from .bert import bert_config_to_distilbert, convert_bert_state_dict
from .common import (
    CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHT_FILE_NAMES,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    CheckpointError,
)
from .files import load_state_dict, load_weights_file, save_state_dict
from .hub import HubResolutionError, read_config_dict, resolve_hub_snapshot, resolve_model_dir
from .keys import diff_state_dict, format_load_error, strip_or_add_prefix

__all__ = [
    "CheckpointError",
    "CONFIG_NAME",
    "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
    "WEIGHTS_INDEX_NAME",
    "WEIGHT_FILE_NAMES",
    "resolve_model_dir",
    "resolve_hub_snapshot",
    "HubResolutionError",
    "read_config_dict",
    "load_state_dict",
    "load_weights_file",
    "save_state_dict",
    "strip_or_add_prefix",
    "diff_state_dict",
    "format_load_error",
    "bert_config_to_distilbert",
    "convert_bert_state_dict",
]
