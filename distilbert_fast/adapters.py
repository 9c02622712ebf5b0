"""Bottleneck adapters with the semantics of the `adapters` library (AdapterHub, v1.3), padding-free.

What the library does on DistilBERT, and so what this module does:

* Each TransformerBlock has two adapter locations: after self-attention ("mh_adapter", module
  `attention_adapters`) and after the FFN ("output_adapter", module `output_adapters`). Each holds
  `adapters.<name>` modules; parameter names equal the library's, e.g.
  `distilbert.transformer.layer.0.output_adapters.adapters.NAME.adapter_down.0.weight`.
* At a location the block's own residual + LayerNorm, LN(sub + x), is replaced by (sub = sublayer output,
  x = block input, LN = the block's LayerNorm):

      pre (first adapter):  residual = sub  (residual_before_ln=True)
                            h = LN(sub + x) if original_ln_before else sub
      each adapter:         h = up(act(down(h))) * scaling + residual   (Stack: the pre step before each)
      post (last adapter):  out = LN(h + x) if original_ln_after else h

  seq_bn (Pfeiffer): output adapter only, original_ln_before=True, relu, reduction 16:
      out = LN(A(LN(f + x)) + f + x)    -- the block's LayerNorm applied twice, like the library
  double_seq_bn (Houlsby): both locations, original_ln_before=False, swish:
      out = LN(A(s) + s + x)
* Composition: `Stack(a, b)` runs adapters one after another (pre step before each); `Parallel(a, b)`
  replicates the batch k times at the first location where one of its adapters lives (the library's
  `repeat` on the batch dimension), each channel then runs its own adapter and, at the end, its own head.
  Everything below that first adapter location is computed once.

Execution: adapters run on the encoder's token rows (only the real tokens on the packed backends). The
down/up projections go through the op table (`ops.linear`: a prepacked oneDNN GEMM on cpp, the activation
fused when the backend has it), every residual + LayerNorm through `ops.add_layer_norm`. Replicating packed
rows is a row `repeat` plus a replicated Layout (cu_seqlens offset per channel).

Not supported (clear error): PHM / Compacter layers, gating (UniPELT), invertible adapters, Fuse / Split /
BatchSplit / Average compositions, and the non-bottleneck methods (LoRA, prefix tuning, ...).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .ops import reference
from .packing import Layout

LIBRARY_VERSION = "adapters.1.3.0"  # the library whose formats and semantics this module reproduces

# ----------------------------------------------------------------------------------------------------------
# Composition blocks (same classes, nesting rules and dict format as adapters.composition)
# ----------------------------------------------------------------------------------------------------------


class AdapterCompositionBlock(Sequence):
    def __init__(self, *children):
        self.children = [parse_composition(b, None) for b in children]

    def __getitem__(self, key):
        return self.children[key]

    def __len__(self):
        return len(self.children)

    def __eq__(self, o: object) -> bool:
        return isinstance(o, type(self)) and len(self) == len(o) and all(a == b for a, b in zip(self, o))

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.children)))

    def __repr__(self):
        return f"{type(self).__name__}[{', '.join(map(str, self.children))}]"

    def first(self) -> str:
        c = self.children[0]
        return c.first() if isinstance(c, AdapterCompositionBlock) else c

    def last(self) -> str:
        c = self.children[-1]
        return c.last() if isinstance(c, AdapterCompositionBlock) else c

    @property
    def parallel_channels(self) -> int:
        return max(
            b.parallel_channels if isinstance(b, AdapterCompositionBlock) else 1 for b in self.children
        )

    def flatten(self) -> set[str]:
        return set(itertools.chain(*[[b] if isinstance(b, str) else b.flatten() for b in self.children]))

    def to_dict(self) -> dict:
        return {
            "type": type(self).__name__,
            "children": [
                c.to_dict() if isinstance(c, AdapterCompositionBlock) else {"type": "single", "children": [c]}
                for c in self.children
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "AdapterCompositionBlock":
        children = [c["children"][0] if c["type"] == "single" else cls.from_dict(c) for c in data["children"]]
        block = getattr(sys.modules[__name__], data["type"], None)
        if not (isinstance(block, type) and issubclass(block, AdapterCompositionBlock)):
            raise ValueError(f"unknown adapter composition type {data['type']!r}")
        return block(*children, **data.get("kwargs", {}))


class Stack(AdapterCompositionBlock):
    """Adapters applied one after another at every location."""


class Parallel(AdapterCompositionBlock):
    """Several adapters (each with its own head) over one input batch in one call: the batch is replicated at
    the first adapter location, everything below it is shared."""

    @property
    def parallel_channels(self) -> int:
        return len(self.children)


class Fuse(AdapterCompositionBlock):
    """Declared so that setups naming it parse; AdapterFusion itself is not implemented."""


ALLOWED_NESTINGS = {Stack: (str, Fuse, Parallel), Parallel: (str, Stack), Fuse: (str, Stack)}


def _validate_composition(block, level=0) -> None:
    if level > 1 and not isinstance(block, (Stack, str)):
        raise ValueError(f"Adapter setup is too deep. Cannot have {block} at level {level}.")
    if isinstance(block, AdapterCompositionBlock):
        for child in block:
            if not isinstance(child, ALLOWED_NESTINGS.get(type(block), (str,))):
                raise ValueError(f"Adapter setup is invalid. Cannot nest {child} in {block}")
            _validate_composition(child, level + 1)


def parse_composition(setup, level: int | None = 0):
    """str -> Stack(str) at the top level; list -> Stack (deprecated, as the library); blocks validated."""
    if not setup:
        return None
    if isinstance(setup, AdapterCompositionBlock):
        if level is not None:
            _validate_composition(setup, level)
        return setup
    if isinstance(setup, str):
        return Stack(setup) if level == 0 else setup
    if isinstance(setup, Sequence):
        warnings.warn(
            "Passing list objects for adapter activation is deprecated. Please use Stack or Fuse explicitly.",
            FutureWarning,
            stacklevel=2,
        )
        block = Fuse if level == 1 else Stack
        lvl = level + 1 if level is not None else None
        return block(*[parse_composition(b, lvl) for b in setup])
    raise TypeError(
        f"adapter setup must be a name, a list or a composition block, got {type(setup).__name__}"
    )


def parse_heads_from_composition(setup, reference_heads=None):
    """The heads a setup implies, as the library: a Stack's last adapter, one head per Parallel channel."""
    final = setup
    if isinstance(final, Stack):
        final = final.children[-1]
    if isinstance(final, str) and (reference_heads is None or final in reference_heads):
        return final
    if isinstance(final, Parallel):
        return [a if isinstance(a, str) else a.last() for a in final.children]
    return None


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

    def replace(self, **changes) -> "BnConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, config: Mapping) -> "BnConfig":
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
_ACTIVATION_RENAME = {"gelu": "gelu_new", "gelu_orig": "gelu"}


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
# Activations (transformers' get_activation names, as the library's Activation_Function_Class)
# ----------------------------------------------------------------------------------------------------------
_FUSED = {"relu": "relu", "swish": "silu", "silu": "silu", "gelu": "gelu", "gelu_new": "gelu_new"}
_ACT_FNS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "leakyrelu": F.leaky_relu,
    "leaky_relu": F.leaky_relu,
    "relu6": F.relu6,
    "mish": F.mish,
    "linear": lambda x: x,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "relu2": lambda x: torch.square(F.relu(x)),
}


class Activation(nn.Module):
    """A parameter-free activation by name. `fused` is the op-table name when the backends fuse it into the
    GEMM epilogue (relu, swish/silu, gelu, gelu_new), else None and `forward` applies it."""

    def __init__(self, name: str | None):
        super().__init__()
        self.name = None if name is None else str(name).lower()
        self.fused = _FUSED.get(self.name)
        if self.name is not None and self.fused is None and self.name not in _ACT_FNS:
            raise ValueError(f"unsupported activation {name!r}; supported: {sorted([*_FUSED, *_ACT_FNS])}")

    def forward(self, x):
        if self.name is None:
            return x
        if self.fused is not None:
            return reference.activation(x, self.fused)
        return _ACT_FNS[self.name](x)

    def extra_repr(self):
        return repr(self.name)


def linear_act(ops, lin: nn.Linear, x: torch.Tensor, act: Activation | None) -> torch.Tensor:
    """act(lin(x)) through the op table, the activation fused into the GEMM when the backend can."""
    if act is None or act.name is None:
        return ops.linear(lin, x)
    if act.fused is not None:
        return ops.linear(lin, x, act.fused)
    return act(ops.linear(lin, x))


def layer_norm(ops, ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    # The op-table LayerNorm has DistilBERT's eps (1e-12); adapter-internal LayerNorms use torch's 1e-5.
    if ln.eps == reference.LAYER_NORM_EPS:
        return ops.layer_norm(ln, x)
    return reference.layer_norm(x, ln.weight, ln.bias, ln.eps)


# ----------------------------------------------------------------------------------------------------------
# Adapter modules (parameter names = the library's)
# ----------------------------------------------------------------------------------------------------------


def _init_bert(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        module.weight.data.normal_(0.0, 0.02)
        if module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()


class Adapter(nn.Module):
    """One sequential bottleneck adapter: adapter_down = [LayerNorm?] + Linear(D, D/r) + act, adapter_up =
    Linear(D/r, D); scaled, residual added; optional LayerNorm after. Rows in, rows out: (n, D) -> (n, D)."""

    def __init__(self, adapter_name: str, input_size: int, down_sample: int, config: BnConfig):
        super().__init__()
        self.name = adapter_name
        self.input_size = input_size
        self.add_layer_norm_before = config["ln_before"]
        self.add_layer_norm_after = config["ln_after"]
        self.adapter_residual_before_ln = config["adapter_residual_before_ln"]
        self.residual_before_ln = config["residual_before_ln"]
        self.original_ln_before = config["original_ln_before"]
        self.original_ln_after = config["original_ln_after"]
        seq = []
        if self.add_layer_norm_before:
            self.adapter_norm_before = nn.LayerNorm(input_size)
            seq.append(self.adapter_norm_before)
        self.down_sample = max(1, down_sample if down_sample is not None else input_size // 2)
        seq.append(nn.Linear(input_size, self.down_sample))
        self.non_linearity = Activation(config["non_linearity"])
        seq.append(self.non_linearity)
        self.adapter_down = nn.Sequential(*seq)
        self.adapter_up = nn.Linear(self.down_sample, input_size)
        scaling = config["scaling"]
        if isinstance(scaling, (int, float)) and not isinstance(scaling, bool):
            self.scaling = float(scaling)
        elif scaling == "learned":
            self.scaling = nn.Parameter(torch.ones(1))
        elif scaling == "channel":
            self.scaling = nn.Parameter(torch.ones(input_size))
        else:
            raise ValueError(f"Unknown scaling type: {scaling}")
        if self.add_layer_norm_after:
            self.adapter_norm_after = nn.LayerNorm(input_size)
        self.dropout = nn.Dropout(p=config["dropout"])
        self._init(config["init_weights"], config.get("init_weights_seed"))

    @torch.no_grad()
    def _init(self, how: str, seed: int | None) -> None:
        if seed is not None:
            torch.manual_seed(seed)
        if how == "bert":
            self.adapter_down.apply(_init_bert)
            self.adapter_up.apply(_init_bert)
        elif how == "mam_adapter":
            nn.init.kaiming_uniform_(self.down_linear.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down_linear.bias)
            nn.init.zeros_(self.adapter_up.weight)
            nn.init.zeros_(self.adapter_up.bias)
        elif how == "houlsby":
            for lin in (self.down_linear, self.adapter_up):
                nn.init.trunc_normal_(lin.weight, mean=0, std=1e-2, a=-2e-2, b=2e-2)
                nn.init.zeros_(lin.bias)
        else:
            raise ValueError(f"Unknown init_weights type: {how}")

    @property
    def down_linear(self) -> nn.Linear:
        return self.adapter_down[-2]

    def pre_forward(self, ops, hidden, input_tensor, layer_norm_module):
        """-> (what the adapter reads, its residual). hidden: sub-block output, input_tensor: block input."""
        residual = hidden if self.residual_before_ln is True else None
        if self.original_ln_before:
            if self.residual_before_ln == "post_add":
                hidden = hidden + input_tensor
                residual = hidden
                hidden = ops.layer_norm(layer_norm_module, hidden)
            else:
                hidden = ops.add_layer_norm(layer_norm_module, hidden, input_tensor)  # LN(sub + x)
        if not self.residual_before_ln:
            residual = hidden
        return hidden, residual

    def bottleneck(self, ops, x):
        # (n, D) -> (n, D/r) -> (n, D): two GEMMs on the token rows, the activation fused into the first
        if self.add_layer_norm_before:
            x = layer_norm(ops, self.adapter_norm_before, x)
        up = ops.linear(self.adapter_up, linear_act(ops, self.down_linear, x, self.non_linearity))
        if not (isinstance(self.scaling, float) and self.scaling == 1.0):
            up = up * self.scaling
        return self.dropout(up)

    def forward(self, ops, x, residual):
        out = self.bottleneck(ops, x)
        if self.adapter_residual_before_ln:
            out = out + residual
        if self.add_layer_norm_after:
            out = layer_norm(ops, self.adapter_norm_after, out)
        if not self.adapter_residual_before_ln:
            out = out + residual
        return out

    def post_forward(self, ops, hidden, input_hidden, input_tensor, layer_norm_module):
        if self.original_ln_after:
            return ops.add_layer_norm(layer_norm_module, hidden, input_tensor)  # LN(h + x)
        return hidden


class ParallelAdapter(Adapter):
    """par_bn: reads the sub-block *input*, its scaled output is added to the sub-block output."""

    def pre_forward(self, ops, hidden, input_tensor, layer_norm_module):
        return input_tensor, input_tensor

    def forward(self, ops, x, residual):
        out = self.bottleneck(ops, x)
        if self.add_layer_norm_after:
            out = layer_norm(ops, self.adapter_norm_after, out)
        return out

    def post_forward(self, ops, hidden, input_hidden, input_tensor, layer_norm_module):
        hidden = hidden + input_hidden
        if self.original_ln_after:
            return ops.add_layer_norm(layer_norm_module, hidden, input_tensor)
        return hidden


class BottleneckLayer(nn.Module):
    """The adapters living at one location of one block (`attention_adapters` or `output_adapters`)."""

    def __init__(self, location_key: str):
        super().__init__()
        self.location_key = location_key  # "mh_adapter" | "output_adapter"
        self.adapters = nn.ModuleDict()

    def extra_repr(self):
        return self.location_key


def adapter_module(
    name: str, cfg: BnConfig, hidden_size: int, layer_idx: int, location_key: str
) -> Adapter | None:
    """The adapter module `cfg` puts at (layer, location), or None (location off, or layer in leave_out)."""
    if layer_idx in (cfg.get("leave_out") or []) or not cfg.get(location_key, False):
        return None
    rf = cfg["reduction_factor"]
    if isinstance(rf, Mapping):
        if str(layer_idx) in rf:
            rf = rf[str(layer_idx)]
        elif "default" in rf:
            rf = rf["default"]
        else:
            raise KeyError(
                "The given reduction factor mapping does not give a default value and does not specify "
                "each reduction factor individually. You need to provide a default value like this: "
                '{"1": 16, "default": 16}'
            )
    cls = ParallelAdapter if cfg["is_parallel"] else Adapter
    return cls(name, hidden_size, int(hidden_size // rf), cfg)


def attach_adapter_layers(block: nn.Module) -> None:
    """Give a TransformerBlock its two (empty) adapter locations, named as in the library."""
    if not hasattr(block, "attention_adapters"):
        block.attention_adapters = BottleneckLayer("mh_adapter")
    if not hasattr(block, "output_adapters"):
        block.output_adapters = BottleneckLayer("output_adapter")


# ----------------------------------------------------------------------------------------------------------
# One forward call: composition on the token rows (TransformerBlock calls the two hooks)
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _State:
    hidden: torch.Tensor  # (n, D) what the next adapter reads
    input_tensor: torch.Tensor  # (n, D) the block input x (residual of the sub-block)
    adapter_residual: torch.Tensor  # (n, D) residual around the adapter
    layer_norm: nn.LayerNorm
    last: str | None = None

    def rows(self) -> int:
        return self.hidden.shape[0]

    def slice(self, a: int, b: int) -> "_State":
        return _State(
            self.hidden[a:b], self.input_tensor[a:b], self.adapter_residual[a:b], self.layer_norm, self.last
        )

    def repeat(self, k: int) -> "_State":
        return _State(
            self.hidden.repeat(k, 1),
            self.input_tensor.repeat(k, 1),
            self.adapter_residual.repeat(k, 1),
            self.layer_norm,
            self.last,
        )

    @staticmethod
    def cat(states: list["_State"]) -> "_State":
        # last: the library takes the last channel's, which is None (and then fails) when that channel has no
        # adapter here (e.g. leave_out); the last channel that ran one is used instead.
        last = next((s.last for s in reversed(states) if s.last is not None), None)
        return _State(
            torch.cat([s.hidden for s in states]),
            torch.cat([s.input_tensor for s in states]),
            torch.cat([s.adapter_residual for s in states]),
            states[0].layer_norm,
            last,
        )


def replicate_layout(layout: Layout, k: int) -> Layout:
    """The layout of k copies of the batch, copy after copy: (B sequences) -> (k*B sequences)."""
    B, S = layout.batch_size, layout.seq_len
    mask = None if layout.attention_mask is None else layout.attention_mask.repeat(k, 1)
    if not layout.packed:
        return dataclasses.replace(layout, batch_size=k * B, attention_mask=mask)
    n = layout.indices.numel()
    offsets = torch.arange(k, device=layout.indices.device)
    indices = (layout.indices[None, :] + offsets[:, None] * (B * S)).reshape(-1)
    cu = layout.cu_seqlens
    cu = torch.cat(
        [(cu[:-1][None, :] + offsets[:, None].to(cu.dtype) * n).reshape(-1), cu.new_tensor([k * n])]
    )
    return dataclasses.replace(layout, batch_size=k * B, attention_mask=mask, indices=indices, cu_seqlens=cu)


class AdapterRun:
    """The adapter setup of one forward call. TransformerBlock.forward calls `attention_output` / `ffn_output`
    in place of its residual + LayerNorm; `layout` follows the rows (k*B sequences after a Parallel block
    replicated them); `channels` is how many copies of the batch the final rows hold."""

    def __init__(self, setup: AdapterCompositionBlock):
        self.setup = setup
        self.names = setup.flatten()
        self.layout: Layout | None = None
        self.base_layout: Layout | None = None
        self.channels = 1

    def start(self, layout: Layout) -> None:
        self.layout = self.base_layout = layout
        self.channels = 1

    def attention_output(self, block, ops, a, x):
        """LN(a + x) of the plain block, with the adapters at "mh_adapter". a, x: (N, D) -> (N or k*N, D)."""
        return self._location(getattr(block, "attention_adapters", None), block.sa_layer_norm, ops, a, x)

    def ffn_output(self, block, ops, f, x):
        """LN(f + x) of the plain block, with the adapters at "output_adapter"."""
        return self._location(getattr(block, "output_adapters", None), block.output_layer_norm, ops, f, x)

    # -- the library's BottleneckLayer.bottleneck_layer_forward ----------------------------------------------
    def _location(self, layer, ln, ops, hidden, residual):
        if layer is None or not (self.names & layer.adapters.keys()):
            return ops.add_layer_norm(ln, hidden, residual)
        state = self._compose(layer, ops, self.setup, _State(hidden, residual, residual, ln), 0)
        return layer.adapters[state.last].post_forward(ops, state.hidden, hidden, state.input_tensor, ln)

    def _compose(self, layer, ops, setup, state: _State, lvl: int) -> _State:
        if isinstance(setup, Stack):
            for child in setup:
                if isinstance(child, AdapterCompositionBlock):
                    if lvl >= 1:
                        raise ValueError(
                            f"Specified adapter setup is too deep. Cannot have "
                            f"{type(child).__name__} at level {lvl}"
                        )
                    state = self._compose(layer, ops, child, state, lvl + 1)
                elif child in layer.adapters:
                    state = self._single(layer, ops, child, self._pre(layer, ops, child, state))
            return state
        if isinstance(setup, Parallel):
            return self._parallel(layer, ops, setup, state, lvl)
        raise NotImplementedError(
            f"{type(setup).__name__} composition is not supported by distilbert_fast (Stack and Parallel are)"
        )

    def _pre(self, layer, ops, setup, state: _State) -> _State:
        name = setup.first() if isinstance(setup, AdapterCompositionBlock) else setup
        if name not in layer.adapters:
            raise ValueError(
                f"adapter {name!r} (first of {setup}) has no module at {layer.location_key}; the "
                "adapters library fails here too: give the first adapter of a block this location"
            )
        hidden, residual = layer.adapters[name].pre_forward(
            ops, state.hidden, state.input_tensor, state.layer_norm
        )
        return dataclasses.replace(state, hidden=hidden, adapter_residual=residual)

    def _single(self, layer, ops, name: str, state: _State) -> _State:
        out = layer.adapters[name](ops, state.hidden, state.adapter_residual)
        return dataclasses.replace(state, hidden=out, last=name)

    def _parallel(self, layer, ops, setup: Parallel, state: _State, lvl: int) -> _State:
        k = setup.parallel_channels
        if (
            self.channels == 1
        ):  # first adapter location of the call: replicate the batch (the library's repeat)
            n = state.rows()
            state = state.repeat(k)
            self.layout = replicate_layout(self.layout, k)
            self.channels = k
        else:
            if state.rows() % k:
                raise ValueError(
                    "The total input batch size in a Parallel adapter block must be divisible by "
                    "the number of parallel channels."
                )
            n = state.rows() // k
        state = self._pre(layer, ops, setup, state)
        children = []
        for i, child in enumerate(setup):
            part = state.slice(i * n, (i + 1) * n)
            if isinstance(child, AdapterCompositionBlock):
                if not isinstance(child, Stack):
                    raise ValueError(f"Cannot nest {type(child).__name__} inside Parallel")
                children.append(self._compose(layer, ops, child, part, lvl + 1))
            elif child in layer.adapters:
                children.append(self._single(layer, ops, child, part))
            else:
                children.append(part)
        return _State.cat(children)


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


__all__ = [
    "AdapterCompositionBlock",
    "Stack",
    "Parallel",
    "Fuse",
    "parse_composition",
    "parse_heads_from_composition",
    "BnConfig",
    "SeqBnConfig",
    "DoubleSeqBnConfig",
    "ParBnConfig",
    "ADAPTER_CONFIG_MAP",
    "resolve_adapter_config",
    "adapter_config_hash",
    "Activation",
    "Adapter",
    "ParallelAdapter",
    "BottleneckLayer",
    "AdapterRun",
    "AdaptersConfig",
    "replicate_layout",
    "LIBRARY_VERSION",
]
