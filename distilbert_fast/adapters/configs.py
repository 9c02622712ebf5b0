"""Bottleneck adapter configs (seq_bn, double_seq_bn, par_bn and the library's config strings), their hash, and
AdaptersConfig: the adapters of one model and its active setup.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .activations import Activation

LIBRARY_VERSION = "adapters.1.3.0"  # the library whose formats and semantics this package reproduces


# ----------------------------------------------------------------------------------------------------------
# Configuration (the library's BnConfig family; same fields, defaults, names and JSON)
# ----------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class BnConfig(Mapping):
    mh_adapter: bool
    output_adapter: bool
    reduction_factor: float | Mapping
    non_linearity: str
    original_ln_before: bool = False
    original_ln_after: bool = True
    ln_before: bool = False
    ln_after: bool = False
    init_weights: str = "bert"
    init_weights_seed: int | None = None
    is_parallel: bool = False
    scaling: float | str = 1.0
    use_gating: bool = False
    residual_before_ln: bool | str = True
    adapter_residual_before_ln: bool = False
    inv_adapter: str | None = None
    inv_adapter_reduction_factor: float | None = None
    cross_adapter: bool = False
    leave_out: list = field(default_factory=list)
    dropout: float = 0.0
    phm_layer: bool = False
    phm_dim: int = 4
    factorized_phm_W: bool | None = True
    shared_W_phm: bool | None = False
    shared_phm_rule: bool | None = True
    factorized_phm_rule: bool | None = False
    phm_c_init: str | None = "normal"
    phm_init_range: float | None = 0.0001
    learn_phm: bool | None = True
    hypercomplex_nonlinearity: str | None = "glorot-uniform"
    phm_rank: int | None = 1
    phm_bias: bool | None = True
    stochastic_depth: float | None = 0.0

    # Mapping interface, like the library's AdapterConfig (config["reduction_factor"], dict(config)).
    def __getitem__(self, key):
        return self.__dict__[key]

    def __iter__(self):
        return iter(self.__dict__)

    def __len__(self):
        return len(self.__dict__)

    def __eq__(self, other):
        return isinstance(other, Mapping) and self.to_dict() == dict(other)

    __hash__ = None

    def to_dict(self) -> dict:
        return copy.deepcopy(dict(self.__dict__))

    def replace(self, **changes) -> BnConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, config: Mapping) -> BnConfig:
        if isinstance(config, BnConfig):
            return config
        config = dict(config)
        if config.get("architecture") not in (None, "bottleneck"):
            raise NotImplementedError(
                f"adapter architecture {config['architecture']!r} is not supported; "
                "distilbert_fast implements bottleneck adapters (seq_bn, double_seq_bn, par_bn)"
            )
        config.pop("architecture", None)
        known = {f.name for f in dataclasses.fields(cls)}
        obj = cls(**{k: v for k, v in config.items() if k in known})
        for k, v in config.items():  # unknown keys are kept, as the library does
            if k not in known:
                setattr(obj, k, v)
        return obj


@dataclass(eq=False)
class SeqBnConfig(BnConfig):
    """Pfeiffer et al. (2020): one adapter after the FFN, the block's LayerNorm before and after it."""

    mh_adapter: bool = False
    output_adapter: bool = True
    reduction_factor: float | Mapping = 16
    non_linearity: str = "relu"
    original_ln_before: bool = True
    original_ln_after: bool = True
    residual_before_ln: bool | str = True
    adapter_residual_before_ln: bool = False
    ln_before: bool = False
    ln_after: bool = False


@dataclass(eq=False)
class DoubleSeqBnConfig(BnConfig):
    """Houlsby et al. (2019): adapters after attention and after the FFN, before the block's LayerNorm."""

    mh_adapter: bool = True
    output_adapter: bool = True
    reduction_factor: float | Mapping = 16
    non_linearity: str = "swish"
    original_ln_before: bool = False
    original_ln_after: bool = True
    residual_before_ln: bool | str = True
    adapter_residual_before_ln: bool = False
    ln_before: bool = False
    ln_after: bool = False


@dataclass(eq=False)
class ParBnConfig(BnConfig):
    """He et al. (2021): a parallel adapter on the sub-block input, scaled, added to the sub-block output."""

    mh_adapter: bool = False
    output_adapter: bool = True
    reduction_factor: float | Mapping = 2
    non_linearity: str = "relu"
    original_ln_before: bool = False
    original_ln_after: bool = True
    ln_before: bool = False
    ln_after: bool = False
    init_weights: str = "mam_adapter"
    is_parallel: bool = True
    scaling: float | str = 4.0


ADAPTER_CONFIG_MAP: dict[str, BnConfig] = {
    "seq_bn": SeqBnConfig(),
    "pfeiffer": SeqBnConfig(),
    "double_seq_bn": DoubleSeqBnConfig(),
    "houlsby": DoubleSeqBnConfig(),
    "par_bn": ParBnConfig(),
    "parallel": ParBnConfig(),
    "scaled_par_bn": ParBnConfig(scaling="learned"),
    "scaled_parallel": ParBnConfig(scaling="learned"),
}
DEFAULT_ADAPTER_CONFIG = "seq_bn"
_CONFIG_STRING = re.compile(r"^(?P<name>[^\[\]\|\n]+)(?:\[(?P<kvs>.*)\])?$")
# adapter_config.json files written before the library's "version" key used the old activation names.
ACTIVATION_RENAME = {"gelu": "gelu_new", "gelu_orig": "gelu"}


def resolve_adapter_config(config=None, **overrides) -> BnConfig:
    """ "seq_bn" | "double_seq_bn" | "par_bn" (and the library's old names), a "name[key=value, ...]" string,
    a dict, a BnConfig, or the path of an adapter_config.json; keyword overrides (reduction_factor=...,
    non_linearity=..., leave_out=...) replace fields. None means the library's default, seq_bn."""
    if config is None:
        config = DEFAULT_ADAPTER_CONFIG
    if isinstance(config, str):
        m = _CONFIG_STRING.match(config.strip())
        if config.endswith(".json"):
            with open(config, encoding="utf-8") as f:
                data = json.load(f)
            cfg = BnConfig.from_dict(data.get("config", data))
        elif m and m.group("name").strip() in ADAPTER_CONFIG_MAP:
            cfg = ADAPTER_CONFIG_MAP[m.group("name").strip()]
            if m.group("kvs"):
                kvs = re.sub(r"(\w+)=", r"'\1':", m.group("kvs"))
                try:
                    cfg = cfg.replace(**ast.literal_eval("{" + kvs + "}"))
                except Exception as e:
                    raise ValueError(f"invalid adapter config string {config!r}: {e}") from None
        else:
            raise ValueError(
                f"unknown adapter config {config!r}; known: {sorted(ADAPTER_CONFIG_MAP)} (bottleneck "
                "adapters), a dict, a BnConfig or an adapter_config.json path"
            )
    elif isinstance(config, Mapping):
        cfg = BnConfig.from_dict(config)
    else:
        raise TypeError(f"adapter config must be a name, a dict or a BnConfig, got {type(config).__name__}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(BnConfig)})
        if unknown:
            raise TypeError(f"unknown adapter config option(s) {unknown}")
        cfg = cfg.replace(**overrides)
    _check_supported(cfg)
    return cfg


def _check_supported(cfg: BnConfig) -> None:
    unsupported = [
        (cfg.phm_layer, "phm_layer (Compacter)"),
        (cfg.use_gating, "use_gating (UniPELT)"),
        (cfg.inv_adapter, "inv_adapter (invertible adapters)"),
    ]
    bad = [what for flag, what in unsupported if flag]
    if bad:
        raise NotImplementedError(
            f"adapter config option(s) not supported by distilbert_fast: {', '.join(bad)}"
        )
    if not (isinstance(cfg.scaling, (int, float)) or cfg.scaling in ("learned", "channel")):
        raise ValueError(f"Unknown scaling type: {cfg.scaling}")
    Activation(cfg.non_linearity)  # validates the name


def _minimize_dict(d):
    return {k: _minimize_dict(v) for k, v in d.items() if v} if isinstance(d, Mapping) else d


_HASH_IGNORE_DEFAULT = {
    "phm_layer": True,
    "phm_dim": 4,
    "factorized_phm_W": True,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "factorized_phm_rule": False,
    "phm_c_init": "normal",
    "phm_init_range": 0.0001,
    "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "phm_rank": 1,
    "phm_bias": True,
    "init_weights": "bert",
    "scaling": 1.0,
}


def adapter_config_hash(config: Mapping, length: int = 16) -> str:
    """The library's get_adapter_config_hash: the key of an adapter config in a model's config.json."""
    minimized = _minimize_dict(dict(config))
    for name, default in _HASH_IGNORE_DEFAULT.items():
        if minimized.get(name, None) == default:
            del minimized[name]
    return hashlib.sha1(json.dumps(minimized, sort_keys=True).encode("utf-8")).hexdigest()[:length]


# ----------------------------------------------------------------------------------------------------------
# Registry of a model's adapters (the library's ModelAdaptersConfig, as saved in config.json["adapters"])
# ----------------------------------------------------------------------------------------------------------


class AdaptersConfig:
    """name -> BnConfig, plus the active setup."""

    def __init__(self):
        self.adapters: dict[str, BnConfig] = {}
        self.active_setup = None

    def __contains__(self, name) -> bool:
        return name in self.adapters

    def __iter__(self):
        return iter(self.adapters)

    def __len__(self) -> int:
        return len(self.adapters)

    def get(self, name: str) -> BnConfig | None:
        return self.adapters.get(name)

    def to_dict(self) -> dict:
        """The library's config.json "adapters" entry."""
        names, config_map = {}, {}
        for name, cfg in self.adapters.items():
            h = adapter_config_hash(cfg.to_dict())
            names[name] = h
            config_map[h] = cfg.to_dict()
        return {
            "adapters": names,
            "config_map": config_map,
            "fusions": {},
            "fusion_config_map": {},
            "fusion_name_map": {},
        }

    @staticmethod
    def configs_from_dict(d: Mapping) -> dict[str, BnConfig]:
        """Inverse of to_dict: config.json["adapters"] -> {name: BnConfig}."""
        if d.get("fusions"):
            raise NotImplementedError("AdapterFusion layers in the checkpoint are not supported")
        out = {}
        config_map = d.get("config_map", {})
        for name, ref in d.get("adapters", {}).items():
            cfg = config_map.get(ref, ref) if isinstance(ref, str) else ref
            out[name] = resolve_adapter_config(cfg)
        return out
