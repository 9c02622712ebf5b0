"""ModelAdaptersMixin: the adapter methods of every model class (the six DistilBertFor* / DistilBertModel classes
and DistilBertModelWithHeads), one implementation, with the `adapters` library's semantics (v1.3,
model_mixin.py: ModelAdaptersMixin + ModelWithHeadsAdaptersMixin).

The state lives on the base model (the encoder: the model itself for DistilBertModel, `.distilbert` for every
head class), as in the library: each TransformerBlock holds the modules at its two locations
(`attention_adapters`, `output_adapters`, created empty on the first add_adapter), and `adapters_config`
(names -> BnConfig, the active setup). Parameter names are the library's, e.g.
`distilbert.transformer.layer.0.output_adapters.adapters.NAME.adapter_up.weight`.

A forward call turns `adapter_names=` (or, without it, the active setup) into an AdapterRun (run.py), which
DistilBertModel.encode / encode_rows hands to every block: the same op-table path on every backend (packed
rows on cpp / triton), for every class.

Hooks a class may override (DistilBertModelWithHeads does): `library_model_class()` (the model_class written
into folders), `save_adapter_head` / `load_adapter_head` (the head saved with an adapter: a static class's
one head here, the same-named flex head there), `output_embedding_modules()` (frozen by train_adapter).
The mixin uses of its host only what every DistilBertPreTrainedModel has: `base_model`, `base_model_prefix`,
`config`, `get_input_embeddings`, `get_output_embeddings`, `tied_keys`, `state_dict`, `load_state_dict`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .composition import parse_composition
from .configs import ACTIVATION_RENAME, AdaptersConfig, adapter_config_hash, resolve_adapter_config
from .folders import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    HEAD_CONFIG_NAME,
    HEAD_SAFE_WEIGHTS_NAME,
    HEAD_WEIGHTS_NAME,
    folder_config,
    has_head_weights,
    read_config,
    read_weights,
    write_folder,
)
from .modules import adapter_module, attach_adapter_layers
from .run import AdapterRun

logger = logging.getLogger("distilbert_fast")

_STATE = "_dbf_adapters_config"  # the base model's __dict__ key of its AdaptersConfig


class ModelAdaptersMixin:
    """add / delete / activate / train / freeze / summarise / save / load bottleneck adapters."""

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def adapters_config(self) -> AdaptersConfig:
        """The base model's adapters (name -> BnConfig) and active setup, shared by every view of it."""
        base = self.base_model
        cfg = base.__dict__.get(_STATE)
        if cfg is None:
            cfg = base.__dict__.setdefault(_STATE, AdaptersConfig())
        return cfg

    def adapter_layers(self):
        """(layer index, BottleneckLayer) for both locations of every block, created empty on first use."""
        for i, block in enumerate(self.base_model.transformer.layer):
            attach_adapter_layers(block)
            yield i, block.attention_adapters
            yield i, block.output_adapters

    def add_adapters_from_config(self, config) -> None:
        """The adapters a saved config.json lists ("adapters", the library's format), with fresh weights (the
        loader then reads theirs from the checkpoint)."""
        saved = config.__dict__.get("_extra", {}).get("adapters")
        for name, cfg in (AdaptersConfig.configs_from_dict(saved) if saved else {}).items():
            self.add_adapter(name, cfg, overwrite_ok=True)

    def has_adapters(self) -> bool:
        return len(self.adapters_config) > 0

    @property
    def has_parallel_adapters(self) -> bool:
        s = self.adapters_config.active_setup
        return s is not None and s.parallel_channels > 1

    @property
    def active_adapters(self):
        return self.adapters_config.active_setup

    @active_adapters.setter
    def active_adapters(self, setup) -> None:
        self.set_active_adapters(setup)

    def _check_setup(self, setup) -> None:
        missing = sorted(setup.flatten() - set(self.adapters_config.adapters))
        if missing:
            raise ValueError(
                f"No adapter(s) with name {missing} found; adapters: {list(self.adapters_config)}"
            )

    def adapter_setup(self, adapter_names=None):
        """The composition a call runs: `adapter_names` (a name, a list = Stack, Stack(...), Parallel(...))
        parsed and checked, or without it the active setup; None for no adapters."""
        if adapter_names is None:
            cfg = self.base_model.__dict__.get(_STATE)
            return None if cfg is None else cfg.active_setup
        setup = parse_composition(adapter_names)
        if setup is not None:
            self._check_setup(setup)
        return setup

    def adapter_run(self, adapter_names=None) -> AdapterRun | None:
        """The AdapterRun of one forward call (what DistilBertModel.encode takes as `adapters=`), or None."""
        setup = self.adapter_setup(adapter_names)
        return None if setup is None else AdapterRun(setup)

    # -- management ------------------------------------------------------------------------------------------
    def add_adapter(
        self,
        adapter_name: str,
        config=None,
        overwrite_ok: bool = False,
        set_active: bool = False,
        **config_overrides,
    ) -> None:
        """config: "seq_bn" | "double_seq_bn" | "par_bn" (or "pfeiffer" | "houlsby" | "parallel") |
        "name[key=value]" | dict | BnConfig; keyword overrides (reduction_factor=, non_linearity=, leave_out=,
        ...) replace config fields."""
        if not isinstance(adapter_name, str) or not adapter_name:
            raise ValueError(f"adapter_name must be a non-empty string, got {adapter_name!r}")
        cfg = resolve_adapter_config(config, **config_overrides)
        if adapter_name in self.adapters_config:
            if not overwrite_ok:
                raise ValueError(f"An adapter with the name '{adapter_name}' has already been added.")
            self.delete_adapter(adapter_name)
        p = next(self.base_model.parameters())
        for i, layer in self.adapter_layers():
            m = adapter_module(adapter_name, cfg, self.config.dim, i, layer.location_key)
            if m is not None:
                m.to(device=p.device, dtype=p.dtype)
                m.train(self.base_model.training)
                layer.adapters[adapter_name] = m
        self.adapters_config.adapters[adapter_name] = cfg
        if set_active:
            self.set_active_adapters(adapter_name)

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.adapters_config:
            logger.info("No adapter '%s' found for deletion. Skipping.", adapter_name)
            return
        for _, layer in self.adapter_layers():
            if adapter_name in layer.adapters:
                del layer.adapters[adapter_name]
        del self.adapters_config.adapters[adapter_name]
        active = self.adapters_config.active_setup
        if active is not None and adapter_name in active.flatten():
            # the library resets only a setup that is exactly Stack(name); any setup naming a deleted adapter
            # would fail on the next call, so it is reset too
            self.adapters_config.active_setup = None

    def set_active_adapters(self, adapter_setup, skip_layers=None) -> None:
        """Adapters (a name, a list, Stack(...), Parallel(...)) used by every forward that passes no
        adapter_names; None deactivates them."""
        if skip_layers:
            raise NotImplementedError("skip_layers is not supported")
        setup = parse_composition(adapter_setup)
        if setup is not None:
            self._check_setup(setup)
        self.adapters_config.active_setup = setup

    def freeze_model(self, freeze: bool = True) -> None:
        """The library's freeze_model: every base-model parameter (the adapters inside its layers included)
        stops (or resumes) requiring grad; heads outside the base model are untouched."""
        for p in self.base_model.parameters():
            p.requires_grad = not freeze
        self.base_model.__dict__["model_frozen"] = freeze

    def output_embedding_modules(self) -> list:
        """The output projections tied to the word embeddings (the MLM decoder): frozen by train_adapter."""
        out = self.get_output_embeddings()
        return [] if out is None else [out]

    def freeze_embeddings(self, freeze: bool = True) -> None:
        """The library's freeze_embeddings: the output projection(s) (weight and bias) stop requiring grad."""
        for module in self.output_embedding_modules():
            for p in module.parameters():
                p.requires_grad = not freeze

    def train_adapter(self, adapter_setup, train_embeddings: bool = False) -> None:
        """The library's train_adapter: the base model (encoder and every other adapter) frozen, the named
        adapters trainable and active, the head(s) left trainable except an output projection tied to the
        embeddings (unless train_embeddings=True, which trains the word embeddings). Train mode for the whole
        model (the library switches only the base model; here the heads' dropout trains too)."""
        setup = parse_composition(adapter_setup)
        if setup is None:
            raise ValueError("train_adapter needs an adapter name, a list or a composition")
        self._check_setup(setup)
        self.train()
        self.freeze_model(True)
        names = setup.flatten()
        for _, layer in self.adapter_layers():
            for name in names & layer.adapters.keys():
                for p in layer.adapters[name].parameters():
                    p.requires_grad = True
        self.set_active_adapters(setup)
        if train_embeddings:
            emb = self.get_input_embeddings()
            emb.train()
            emb.weight.requires_grad = True
        elif self.base_model is not self:
            self.freeze_embeddings(True)

    def adapter_params(self, adapter_name: str):
        for _, layer in self.adapter_layers():
            if adapter_name in layer.adapters:
                yield from layer.adapters[adapter_name].parameters()

    def adapter_summary(self, as_dict: bool = False):
        """The library's table: name, architecture, #param, %param (of the base model without adapters),
        active, train; a last row for the full model. as_dict=True returns the rows."""
        active = self.active_adapters.flatten() if self.active_adapters is not None else set()
        rows = []
        for name in self.adapters_config.adapters:
            params = list(self.adapter_params(name))
            rows.append(
                {
                    "name": name,
                    "architecture": "bottleneck",
                    "#param": sum(p.numel() for p in params),
                    "active": name in active,
                    "train": all(p.requires_grad for p in params),
                }
            )
        base = sum(p.numel() for p in self.base_model.parameters()) - sum(r["#param"] for r in rows)
        for row in rows:
            row["%param"] = row["#param"] / base * 100
        rows.append(
            {
                "name": "Full model",
                "#param": base,
                "%param": 100.0,
                "train": not self.base_model.__dict__.get("model_frozen", False),
            }
        )
        if as_dict:
            return rows
        header = ["name", "architecture", "#param", "%param", "active", "train"]
        head_fmt, row_fmt = "{:<25}{:<15}{:>12}{:>12}{:>8}{:>8}", "{:<25}{:<15}{:>12,}{:>12.3f}{:>8}{:>8}"
        out = ["=" * 80, head_fmt.format(*(h.title() for h in header)), "-" * 80]
        out += [row_fmt.format(*[r.get(h, "") for h in header]) for r in rows]
        out.insert(len(out) - 1, "-" * 80)
        out.append("=" * 80)
        return "\n".join(out)

    # -- adapter folders (the library's format) --------------------------------------------------------------
    def library_model_class(self) -> str:
        """The model_class the library writes into adapter / head folders for this model."""
        return type(self).__name__

    def save_adapter(
        self,
        save_directory,
        adapter_name: str,
        with_head: bool = True,
        meta_dict: dict | None = None,
        use_safetensors: bool = False,
    ) -> None:
        """adapter_config.json + pytorch_adapter.bin (or adapter.safetensors); with_head: the head that goes
        with it (save_adapter_head)."""
        if adapter_name not in self.adapters_config:
            raise ValueError(f"No adapter with name '{adapter_name}' found")
        cfg = folder_config(
            self,
            adapter_name,
            self.adapters_config.get(adapter_name).to_dict(),
            self.library_model_class(),
            **(meta_dict or {}),
        )
        key = f".adapters.{adapter_name}."
        state = {k: v for k, v in self.state_dict().items() if key in k}
        directory = Path(save_directory)
        write_folder(
            directory,
            ADAPTER_CONFIG_NAME,
            cfg,
            state,
            use_safetensors,
            ADAPTER_WEIGHTS_NAME,
            ADAPTER_SAFE_WEIGHTS_NAME,
        )
        if with_head:
            self.save_adapter_head(directory, adapter_name, use_safetensors)

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
        """Load an adapter folder saved by the adapters library (or save_adapter), from any model class, and
        with_head the head saved next to it (load_adapter_head). Returns the adapter's name."""
        directory = Path(adapter_name_or_path)
        if not (directory / ADAPTER_CONFIG_NAME).is_file():
            raise ckpt.CheckpointError(
                f"'{directory}' is not an adapter folder (no {ADAPTER_CONFIG_NAME}); loading "
                "adapters from the Hub is not supported"
            )
        meta = read_config(directory, ADAPTER_CONFIG_NAME, "an adapter folder")
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
        if not name:
            raise ValueError(f"the adapter in '{directory}' has no name: pass load_as=")
        self.add_adapter(name, cfg, overwrite_ok=True)
        state = read_weights(directory, ADAPTER_WEIGHTS_NAME, ADAPTER_SAFE_WEIGHTS_NAME)
        if old_name and name != old_name:
            state = {k.replace(f"adapters.{old_name}.", f"adapters.{name}."): v for k, v in state.items()}
        self.load_weights_part(
            state, lambda k: f".adapters.{name}." in k, str(directory), skip_unexpected=bool(leave_out)
        )
        if with_head and has_head_weights(directory):
            self.load_adapter_head(
                directory, load_as=load_as, id2label=id2label, set_active=set_active, main_load_name=name
            )
        if set_active:
            self.set_active_adapters(name)
        return name

    # -- the head saved with an adapter: a static class's one head (flex heads: heads/folders.py) ----------
    def save_adapter_head(self, directory: Path, adapter_name: str, use_safetensors: bool = False) -> None:
        """The library's PredictionHeadLoader on a model without flex heads: every weight outside the base
        model, head_config.json with the class name, label2id and num_labels. DistilBertModel has none."""
        if self.base_model is self:
            return
        prefix = self.base_model_prefix + "."
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(prefix)}
        cfg = folder_config(
            self,
            None,
            None,
            self.library_model_class(),
            label2id=dict(self.config.label2id),
            num_labels=self.config.num_labels,
        )
        write_folder(
            directory,
            HEAD_CONFIG_NAME,
            cfg,
            state,
            use_safetensors,
            HEAD_WEIGHTS_NAME,
            HEAD_SAFE_WEIGHTS_NAME,
        )

    def load_adapter_head(self, directory: Path, load_as=None, id2label=None, set_active=True, **kwargs):
        """A static head saved with an adapter by the same class (the library warns and skips another
        class's head; so does this). Its label maps become the config's (id2label= overrides them)."""
        if self.base_model is self:
            return None
        meta = read_config(directory, HEAD_CONFIG_NAME, "a head folder")
        if meta.get("model_class") != self.library_model_class():
            logger.warning(
                "Model class '%s' of the prediction head in '%s' does not match this model's class '%s': "
                "head not loaded.",
                meta.get("model_class"),
                directory,
                self.library_model_class(),
            )
            return None
        prefix = self.base_model_prefix + "."
        state = read_weights(directory, HEAD_WEIGHTS_NAME, HEAD_SAFE_WEIGHTS_NAME)
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        self.load_weights_part(state, lambda k: not k.startswith(prefix), str(directory))
        label2id = {lab: int(i) for i, lab in id2label.items()} if id2label else meta.get("label2id")
        if label2id and len(label2id) == self.config.num_labels:
            self.config.id2label = {int(i): str(lab) for lab, i in label2id.items()}
            self.config.label2id = {str(lab): int(i) for lab, i in label2id.items()}
        return type(self).__name__

    def load_weights_part(self, state: dict, owns, where: str, skip_unexpected: bool = False) -> None:
        """Load the model keys selected by `owns` from `state`, strictly (missing / unexpected / mis-shaped
        keys are one error). Tied weights (the MLM projector = word embeddings) are skipped. A file saved from
        another class lines up: the base-model prefix is added or stripped as the model needs."""
        model_state = self.state_dict()
        tied = self.tied_keys()
        prefix = self.base_model_prefix + "."

        def align(k: str) -> str:
            if k in model_state:
                return k
            if prefix + k in model_state:
                return prefix + k
            if k.startswith(prefix) and k[len(prefix) :] in model_state:
                return k[len(prefix) :]
            return k

        state = {align(k): v for k, v in state.items()}
        expected = {k: tuple(v.shape) for k, v in model_state.items() if owns(k) and k not in tied}
        state = {k: v for k, v in state.items() if k not in tied}
        missing, unexpected, mismatched = ckpt.diff_state_dict(expected, state)
        if skip_unexpected:
            unexpected = []
        if missing or unexpected or mismatched:
            raise ckpt.CheckpointError(ckpt.format_load_error(missing, unexpected, mismatched, where))
        with torch.no_grad():
            self.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
