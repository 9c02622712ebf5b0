"""Activations by the names the library uses (transformers' get_activation names), and the op-table helpers
adapters and heads run through: Linear + activation fused into the GEMM where the backend can, LayerNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import reference

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
    # Every op table honours the module's eps: DistilBERT's 1e-12, adapter-internal LayerNorms' torch 1e-5.
    return ops.layer_norm(ln, x)
