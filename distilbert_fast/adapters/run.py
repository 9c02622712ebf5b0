"""AdapterRun: the adapter setup of one forward call, applied by TransformerBlock in place of its residual +
LayerNorm; Parallel replicates the rows (and the Layout) at its first adapter location.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..packing import Layout
from .composition import AdapterCompositionBlock, Parallel, Stack

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

    def slice(self, a: int, b: int) -> _State:
        return _State(
            self.hidden[a:b], self.input_tensor[a:b], self.adapter_residual[a:b], self.layer_norm, self.last
        )

    def repeat(self, k: int) -> _State:
        return _State(
            self.hidden.repeat(k, 1),
            self.input_tensor.repeat(k, 1),
            self.adapter_residual.repeat(k, 1),
            self.layer_norm,
            self.last,
        )

    @staticmethod
    def cat(states: list[_State]) -> _State:
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
    return layout.replicate(k)


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
