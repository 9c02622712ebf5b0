"""Adapter and head folders in the `adapters` library's formats (HeadAndAdapterFolders, a mixin of
DistilBertModelWithHeads): adapter_config.json + adapter.safetensors | pytorch_adapter.bin, head_config.json
+ model_head.safetensors | pytorch_model_head.bin. `.bin` files are read with weights_only=True.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..adapters import (
    ACTIVATION_RENAME,
    LIBRARY_VERSION,
    adapter_config_hash,
    resolve_adapter_config,
)
from .prediction import STATIC_TO_FLEX_HEAD_MAP, rename_key, static_head_config

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
LIBRARY_MODEL_CLASS = "DistilBertAdapterModel"


class HeadAndAdapterFolders:
    """save/load_adapter and save/load_head for DistilBertModelWithHeads (uses its heads, adapters_config,
    add_adapter, add_prediction_head_from_config, set_active_adapters, tied_keys)."""

    # -- adapter / head folders (the library's formats) ------------------------------------------------------
    def _folder_config(self, name: str, config: dict, **extra) -> dict:
        return {
            "config": config,
            "hidden_size": self.config.dim,
            "model_class": LIBRARY_MODEL_CLASS,
            "model_name": str(getattr(self, "name_or_path", "") or ""),
            "model_type": "distilbert",
            "name": name,
            "version": LIBRARY_VERSION,
            **extra,
        }

    @staticmethod
    def _write(
        directory: Path,
        config_name: str,
        config: dict,
        state: dict,
        safe: bool,
        bin_name: str,
        safe_name: str,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / config_name).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        state = {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}
        if safe:
            from safetensors.torch import save_file

            save_file(state, str(directory / safe_name), metadata={"format": "pt"})
        else:
            torch.save(state, directory / bin_name)

    @staticmethod
    def _read_weights(directory: Path, bin_name: str, safe_name: str) -> dict[str, torch.Tensor]:
        if (directory / safe_name).is_file():
            return ckpt.load_weights_file(directory / safe_name)
        if (directory / bin_name).is_file():
            return ckpt.load_weights_file(directory / bin_name)  # torch.load(weights_only=True)
        raise ckpt.CheckpointError(f"no {safe_name} or {bin_name} in '{directory}'")

    def save_adapter(
        self,
        save_directory,
        adapter_name: str,
        with_head: bool = True,
        meta_dict: dict | None = None,
        use_safetensors: bool = False,
    ) -> None:
        """adapter_config.json + pytorch_adapter.bin (or adapter.safetensors), and the same-named head."""
        if adapter_name not in self.adapters_config:
            raise ValueError(f"No adapter with name '{adapter_name}' found")
        cfg = self._folder_config(
            adapter_name, self.adapters_config.get(adapter_name).to_dict(), **(meta_dict or {})
        )
        key = f".adapters.{adapter_name}."
        state = {k: v for k, v in self.state_dict().items() if key in k}
        self._write(
            Path(save_directory),
            ADAPTER_CONFIG_NAME,
            cfg,
            state,
            use_safetensors,
            ADAPTER_WEIGHTS_NAME,
            ADAPTER_SAFE_WEIGHTS_NAME,
        )
        if with_head and adapter_name in self.heads:
            self.save_head(save_directory, adapter_name, use_safetensors=use_safetensors)

    def save_all_adapters(
        self, save_directory, with_head: bool = True, use_safetensors: bool = False
    ) -> None:
        for name in self.adapters_config:
            self.save_adapter(
                os.path.join(save_directory, name),
                name,
                with_head=with_head,
                meta_dict={"config_id": adapter_config_hash(self.adapters_config.get(name))},
                use_safetensors=use_safetensors,
            )

    def load_adapter(
        self,
        adapter_name_or_path,
        config=None,
        load_as: str | None = None,
        with_head: bool = True,
        set_active: bool = False,
        leave_out=None,
        id2label=None,
        use_safetensors: bool = False,
        **kwargs,
    ) -> str:
        """Load an adapter folder saved by the adapters library (or save_adapter). Returns its name."""
        directory = Path(adapter_name_or_path)
        if not (directory / ADAPTER_CONFIG_NAME).is_file():
            raise ckpt.CheckpointError(
                f"'{directory}' is not an adapter folder (no {ADAPTER_CONFIG_NAME}); loading "
                "adapters from the Hub is not supported"
            )
        meta = json.loads((directory / ADAPTER_CONFIG_NAME).read_text(encoding="utf-8"))
        cfg_dict = dict(meta["config"])
        if "version" not in meta and cfg_dict.get("non_linearity") in ACTIVATION_RENAME:
            cfg_dict["non_linearity"] = ACTIVATION_RENAME[cfg_dict["non_linearity"]]  # pre-"version" files
        if meta.get("hidden_size") not in (None, self.config.dim):
            raise ckpt.CheckpointError(
                f"adapter '{directory}' was trained for hidden_size {meta['hidden_size']}, "
                f"this model has dim {self.config.dim}"
            )
        cfg = resolve_adapter_config(cfg_dict)
        if leave_out:
            cfg = cfg.replace(leave_out=sorted(set(cfg.leave_out) | set(leave_out)))
        old_name = meta.get("name")
        name = load_as or old_name
        self.add_adapter(name, cfg, overwrite_ok=True)
        state = self._read_weights(directory, ADAPTER_WEIGHTS_NAME, ADAPTER_SAFE_WEIGHTS_NAME)
        if old_name and name != old_name:
            state = {k.replace(f"adapters.{old_name}.", f"adapters.{name}."): v for k, v in state.items()}
        self._load_part(
            state, lambda k: f".adapters.{name}." in k, str(directory), skip_unexpected=bool(leave_out)
        )
        if with_head and (
            (directory / HEAD_SAFE_WEIGHTS_NAME).is_file() or (directory / HEAD_WEIGHTS_NAME).is_file()
        ):
            self.load_head(directory, load_as=load_as, id2label=id2label, set_active=set_active)
        if set_active:
            self.set_active_adapters(name)
        return name

    def save_head(self, save_directory, head_name: str, use_safetensors: bool = False) -> None:
        """head_config.json + pytorch_model_head.bin (or model_head.safetensors)."""
        if head_name not in self.heads:
            raise ValueError(f"Unknown head_name '{head_name}'.")
        extra = {}
        label2id = self.heads[head_name].config.get("label2id")
        if label2id:
            extra = {"label2id": label2id, "id2label": {str(i): lab for lab, i in label2id.items()}}
        cfg = self._folder_config(head_name, copy.deepcopy(self.heads[head_name].config))
        cfg.update({k: v for k, v in extra.items() if k not in cfg})
        prefix = f"heads.{head_name}."
        state = {k: v for k, v in self.state_dict().items() if k.startswith(prefix)}
        self._write(
            Path(save_directory),
            HEAD_CONFIG_NAME,
            cfg,
            state,
            use_safetensors,
            HEAD_WEIGHTS_NAME,
            HEAD_SAFE_WEIGHTS_NAME,
        )

    def save_all_heads(self, save_directory, use_safetensors: bool = False) -> None:
        for name in self.heads:
            self.save_head(os.path.join(save_directory, name), name, use_safetensors=use_safetensors)

    def load_head(
        self,
        save_directory,
        load_as: str | None = None,
        id2label=None,
        set_active: bool = True,
        use_safetensors: bool = False,
        **kwargs,
    ) -> str:
        directory = Path(save_directory)
        if not (directory / HEAD_CONFIG_NAME).is_file():
            raise ckpt.CheckpointError(f"'{directory}' is not a head folder (no {HEAD_CONFIG_NAME})")
        meta = json.loads((directory / HEAD_CONFIG_NAME).read_text(encoding="utf-8"))
        state = self._read_weights(directory, HEAD_WEIGHTS_NAME, HEAD_SAFE_WEIGHTS_NAME)
        model_class = meta.get("model_class", LIBRARY_MODEL_CLASS)
        if model_class in STATIC_TO_FLEX_HEAD_MAP:  # a static transformers head saved by the library
            name = load_as or meta.get("name") or "default"
            head_cfg, renames = static_head_config(model_class, name, meta.get("label2id"))
            state = {rename_key(k, renames): v for k, v in state.items()}
            old = name
        else:
            old = meta.get("name")
            name = load_as or old
            head_cfg = dict(meta["config"])
        if not name:
            raise ValueError(
                "Could not identify a name for the prediction head to be loaded. Please specify 'load_as'."
            )
        if id2label:
            head_cfg["label2id"] = {lab: int(i) for i, lab in id2label.items()}
        self.add_prediction_head_from_config(name, head_cfg, overwrite_ok=True, set_active=set_active)
        # The library selects a head's weights by the substring "heads.NAME", so its folder for head "mlm"
        # also
        # holds any "heads.mlm2.*": keep only this head's own keys.
        own = f"heads.{name if model_class in STATIC_TO_FLEX_HEAD_MAP else old}."
        state = {k: v for k, v in state.items() if k.startswith(own)}
        if old and old != name:
            state = {k.replace(f"heads.{old}.", f"heads.{name}.", 1): v for k, v in state.items()}
        self._load_part(state, lambda k: k.startswith(f"heads.{name}."), str(directory))
        return name

    def _load_part(self, state: dict, owns, where: str, skip_unexpected: bool = False) -> None:
        """Load the model keys selected by `owns` from `state`, strictly (missing / unexpected / mis-shaped
        keys are one error). The tied MLM projector (= word embeddings) is skipped."""
        model_state = self.state_dict()
        tied = self.tied_keys()
        # a file saved from a base model (no "distilbert." prefix) lines up with ours
        state = {
            ("distilbert." + k if k not in model_state and "distilbert." + k in model_state else k): v
            for k, v in state.items()
        }
        expected = {k: tuple(v.shape) for k, v in model_state.items() if owns(k) and k not in tied}
        state = {k: v for k, v in state.items() if k not in tied}
        missing, unexpected, mismatched = ckpt.diff_state_dict(expected, state)
        if skip_unexpected:
            unexpected = []
        if missing or unexpected or mismatched:
            raise ckpt.CheckpointError(ckpt.format_load_error(missing, unexpected, mismatched, where))
        with torch.no_grad():
            self.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
