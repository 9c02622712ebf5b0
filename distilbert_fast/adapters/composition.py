"""Composition blocks (Stack, Parallel, Fuse): the adapters library's classes, nesting rules and dict format."""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Sequence

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
    def from_dict(cls, data: dict) -> AdapterCompositionBlock:
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
