"""Adapter modules (parameter names = the library's): Adapter, ParallelAdapter, the per-location
BottleneckLayer, and attaching the two locations to a TransformerBlock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from .activations import Activation, layer_norm, linear_act
from .configs import BnConfig

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
