"""DistilBertConfig: the fields of Hugging Face's DistilBertConfig, read from / written to config.json.

Keys we do not model (architectures, torch_dtype, transformers_version, task_specific_params, ...) are kept
verbatim and written back, so a config survives a load/save round trip unchanged.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

ACTIVATIONS = ("gelu", "relu", "silu", "gelu_new")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Field -> default, in the order of transformers' DistilBertConfig.
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "sinusoidal_pos_embds": False,
    "n_layers": 6,
    "n_heads": 12,
    "dim": 768,
    "hidden_dim": 4 * 768,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation": "gelu",
    "initializer_range": 0.02,
    "qa_dropout": 0.1,
    "seq_classif_dropout": 0.2,
    "pad_token_id": 0,
    "tie_word_embeddings": True,
    "problem_type": None,
}
# Call defaults transformers reads from the config when a forward call does not say (PretrainedConfig).
# Written to config.json only when they differ from these defaults, so existing configs stay byte-identical.
_CALL_DEFAULTS: dict[str, Any] = {
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
}
logger = logging.getLogger("distilbert_fast")
# BERT-style aliases that transformers exposes on DistilBertConfig.
_ATTRIBUTE_MAP = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}


# Upper bounds far above any DistilBERT/BERT (the largest real ones: vocab 250k, 8k positions, dim 4096):
# they only exist so a typo such as max_position_embeddings=10**12 fails in validate() with a clear message.
_SIZE_CAPS = {
    "vocab_size": 1 << 24,
    "max_position_embeddings": 1 << 20,
    "dim": 1 << 16,
    "hidden_dim": 1 << 18,
    "n_layers": 1 << 10,
    "n_heads": 1 << 12,
}
_MAX_PARAMETERS = 1 << 36  # 64 Gi parameters = 256 GiB in fp32


class DistilBertConfig:
    model_type = "distilbert"

    def __init__(
        self,
        *,
        id2label: dict | None = None,
        label2id: dict | None = None,
        num_labels: int | None = None,
        **kwargs: Any,
    ):
        for alias, name in _ATTRIBUTE_MAP.items():
            if alias in kwargs:
                kwargs[name] = kwargs.pop(alias)
        for name, default in _DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        for name, default in _CALL_DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        kwargs.pop("model_type", None)
        # Everything else is kept for the round trip (architectures, dtype, transformers_version, ...).
        self._extra: dict[str, Any] = kwargs

        if id2label is not None:
            id2label = {int(k): str(v) for k, v in id2label.items()}
            if num_labels is not None and num_labels != len(id2label):
                # transformers: num_labels wins (a fine-tuning script re-heads a checkpoint this way), with a
                # warning; the labels become LABEL_0..LABEL_{n-1}.
                logger.warning(
                    "num_labels=%s disagrees with id2label (%d entries): using %s labels LABEL_0..LABEL_%s",
                    num_labels,
                    len(id2label),
                    num_labels,
                    num_labels - 1,
                )
                id2label, label2id = None, None
        if id2label is None:
            n = 2 if num_labels is None else num_labels
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        self.id2label = id2label
        if label2id is not None and set(label2id) != set(id2label.values()):
            label2id = None  # e.g. a saved label2id next to a new id2label: derive it from id2label
        self.label2id = (
            {str(k): int(v) for k, v in label2id.items()}
            if label2id is not None
            else {v: k for k, v in id2label.items()}
        )
        self.validate()

    # --- HF-compatible accessors -------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"num_labels must be a positive int, got {n!r}")
        if n != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: aliases, then the kept unknown keys.
        if name in _ATTRIBUTE_MAP:
            return getattr(self, _ATTRIBUTE_MAP[name])
        extra = self.__dict__.get("_extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"'DistilBertConfig' has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(_ATTRIBUTE_MAP.get(name, name), value)

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    # --- validation ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        def positive_int(name):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"DistilBertConfig.{name} must be a positive int, got {v!r}")

        for name in ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim"):
            positive_int(name)
        # Absurd sizes fail here, by name, before any allocation (not as an allocator error for petabytes).
        for name, cap in _SIZE_CAPS.items():
            if getattr(self, name) > cap:
                raise ValueError(
                    f"DistilBertConfig.{name} must be at most {cap:,}, got {getattr(self, name):,}"
                )
        n_params = (self.vocab_size + self.max_position_embeddings) * self.dim + self.n_layers * (
            4 * self.dim * self.dim + 2 * self.dim * self.hidden_dim
        )
        if n_params > _MAX_PARAMETERS:
            raise ValueError(
                f"DistilBertConfig describes ~{n_params:,} parameters (vocab_size, "
                "max_position_embeddings, dim, hidden_dim, n_layers), more than the supported "
                f"{_MAX_PARAMETERS:,}"
            )
        if self.dim % self.n_heads != 0:
            raise ValueError(
                f"DistilBertConfig.dim ({self.dim}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"DistilBertConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        for name in ("dropout", "attention_dropout", "qa_dropout", "seq_classif_dropout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"DistilBertConfig.{name} must be a probability in [0, 1], got {v!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"DistilBertConfig.problem_type must be None or one of {PROBLEM_TYPES}, got {self.problem_type!r}"
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"DistilBertConfig.pad_token_id ({self.pad_token_id}) must lie in [0, vocab_size={self.vocab_size})"
            )

    # --- (de)serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = copy.deepcopy(self._extra)
        d["model_type"] = self.model_type
        for name in _DEFAULTS:
            d[name] = getattr(self, name)
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["label2id"] = dict(self.label2id)
        for name, default in _CALL_DEFAULTS.items():
            if getattr(self, name) != default:
                d[name] = getattr(self, name)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> DistilBertConfig:
        d = copy.deepcopy(d)
        if "num_labels" in overrides or "id2label" in overrides:
            # Overriding the labels replaces the saved maps (transformers: a saved id2label never makes
            # from_pretrained(num_labels=N) fail); label2id follows the new id2label unless also given.
            if "id2label" not in overrides and overrides.get("num_labels") != len(d.get("id2label") or {}):
                d.pop("id2label", None)
            if "label2id" not in overrides:
                d.pop("label2id", None)
            if "num_labels" not in overrides:
                d.pop("num_labels", None)
        d = {**d, **overrides}
        mt = d.get("model_type", "distilbert")
        if mt != "distilbert":
            raise ValueError(
                f"config model_type must be 'distilbert', got {mt!r} (BERT configs are converted by "
                "from_pretrained)"
            )
        return cls(**d)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(self.to_json_string())

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, **overrides: Any) -> DistilBertConfig:
        from .checkpoint import read_config_dict, resolve_model_dir

        d = read_config_dict(resolve_model_dir(path_or_repo_id))
        if d.get("model_type") == "bert":
            from .checkpoint import bert_config_to_distilbert

            d = bert_config_to_distilbert(d)
        return cls.from_dict(d, **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DistilBertConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"DistilBertConfig {self.to_json_string()}"
