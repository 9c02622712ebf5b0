"""Head folders in the `adapters` library's formats (HeadAndAdapterFolders, a mixin of DistilBertModelWithHeads):
head_config.json + model_head.safetensors | pytorch_model_head.bin, and the flex-head side of adapter folders
(save_adapter / load_adapter themselves are every class's: adapters/mixin.py; this mixin supplies the hooks
that save / load the head named like the adapter). `.bin` files are read with weights_only=True.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from ..adapters.folders import (
    HEAD_CONFIG_NAME,
    HEAD_SAFE_WEIGHTS_NAME,
    HEAD_WEIGHTS_NAME,
    folder_config,
    read_config,
    read_weights,
    write_folder,
)
from .prediction import STATIC_TO_FLEX_HEAD_MAP, rename_key, static_head_config

LIBRARY_MODEL_CLASS = "DistilBertAdapterModel"

__all__ = ["LIBRARY_MODEL_CLASS", "HeadAndAdapterFolders"]


class HeadAndAdapterFolders:
    """save/load_head for DistilBertModelWithHeads, and its adapter-folder hooks (uses its heads,
    add_prediction_head_from_config and ModelAdaptersMixin.load_weights_part)."""

    def library_model_class(self) -> str:
        return LIBRARY_MODEL_CLASS

    # -- the head saved / loaded with an adapter (ModelAdaptersMixin.save_adapter / load_adapter hooks) ------
    def save_adapter_head(self, directory: Path, adapter_name: str, use_safetensors: bool = False) -> None:
        """The flex head named like the adapter, if any (the library's PredictionHeadLoader)."""
        if adapter_name in self.heads:
            self.save_head(directory, adapter_name, use_safetensors=use_safetensors)

    def load_adapter_head(self, directory: Path, load_as=None, id2label=None, set_active=True, **kwargs):
        """The head folder saved with an adapter; a static class's head becomes a flex head named like the
        adapter (main_load_name), as in the library."""
        return self.load_head(directory, load_as=load_as, id2label=id2label, set_active=set_active, **kwargs)

    # -- head folders ----------------------------------------------------------------------------------------
    def save_head(self, save_directory, head_name: str, use_safetensors: bool = False) -> None:
        """head_config.json + pytorch_model_head.bin (or model_head.safetensors)."""
        if head_name not in self.heads:
            raise ValueError(f"Unknown head_name '{head_name}'.")
        extra = {}
        label2id = self.heads[head_name].config.get("label2id")
        if label2id:
            extra = {"label2id": label2id, "id2label": {str(i): lab for lab, i in label2id.items()}}
        cfg = folder_config(self, head_name, copy.deepcopy(self.heads[head_name].config), LIBRARY_MODEL_CLASS)
        cfg.update({k: v for k, v in extra.items() if k not in cfg})
        prefix = f"heads.{head_name}."
        state = {k: v for k, v in self.state_dict().items() if k.startswith(prefix)}
        write_folder(
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
        meta = read_config(directory, HEAD_CONFIG_NAME, "a head folder")
        state = read_weights(directory, HEAD_WEIGHTS_NAME, HEAD_SAFE_WEIGHTS_NAME)
        model_class = meta.get("model_class", LIBRARY_MODEL_CLASS)
        if model_class in STATIC_TO_FLEX_HEAD_MAP:  # a static transformers head saved by the library
            # the library names it after the adapter it came with (main_load_name), else "default"
            name = load_as or kwargs.get("main_load_name") or meta.get("name") or "default"
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
        # also holds any "heads.mlm2.*": keep only this head's own keys.
        own = f"heads.{name if model_class in STATIC_TO_FLEX_HEAD_MAP else old}."
        state = {k: v for k, v in state.items() if k.startswith(own)}
        if old and old != name:
            state = {k.replace(f"heads.{old}.", f"heads.{name}.", 1): v for k, v in state.items()}
        self.load_weights_part(state, lambda k: k.startswith(f"heads.{name}."), str(directory))
        return name
