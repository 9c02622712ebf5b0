"""The package's layers, read from its source: every module imports only from its own layer or below, the
import graph has no cycle, and no module reaches into another package's private (_name) attributes.

Every import counts, function-local ones included (they are read with `ast`, nothing is executed). Run with
`-s` to see the layer map and the imports each layer makes.
"""

from __future__ import annotations

import ast
import fnmatch
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = "distilbert_fast"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Bottom to top. A module may import from its own layer and from any layer below. Patterns are fnmatch
# patterns on dotted module names relative to the package ("" is the package's __init__, the public facade).
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    (
        "foundation",
        (
            "config",
            "checkpoint",
            "checkpoint.*",
            "packing",
            "outputs",
            "tokenization",
            "tokenization.*",
            "rows",
            "sync",
        ),
        "configs, checkpoint files and the Hub, token layouts, output classes, the tokenizer, job input rows, "
        "the model lock",
    ),
    (
        "ops",
        ("ops", "ops.*", "_C"),
        "op tables per backend and their kernels (C++ extension _C, Triton, oneDNN, int8); nothing of models",
    ),
    (
        "adapters",
        ("adapters", "adapters.*"),
        "bottleneck adapters: configs, modules, composition, the per-call run the encoder applies, and the "
        "adapter methods every model class shares (ModelAdaptersMixin: add/train/save/load ...)",
    ),
    (
        "model",
        ("loading", "modeling", "pretrained"),
        "the encoder and the six DistilBertFor* classes (with the adapter mixin); the one loader they share",
    ),
    (
        "heads",
        ("heads", "heads.*"),
        "DistilBertModelWithHeads, flex prediction heads",
    ),
    (
        "runtime",
        ("hf", "cuda_graphs", "runtime", "runtime.*"),
        "optimize(hf_model); the CUDA-graph runner (calls the models with explicit arguments)",
    ),
    ("pipelines", ("pipelines", "pipelines.*"), "task pipelines, reused by every entry point"),
    (
        "entry",
        (
            "",
            "__main__",
            "cli",
            "cli_*",
            "jobs",
            "jobs.*",
            "job_*",
            "demo",
            "serve",
            "serve.*",
            "ray",
            "ray.*",
            "distributed",
            "distributed.*",
        ),
        "the package facade, `distilbert-fast` (cli, batch-job identity), the demo, the HTTP server, Ray",
    ),
]


def layer_of(module: str) -> int | None:
    for i, (_, patterns, _) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return i
    return None


def discover() -> dict[str, Path]:
    """Relative dotted name -> file, for every module of the package ("" = the package __init__)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = discover()
PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}


def _package_of(module: str) -> str:
    return module if module in PACKAGES else module.rpartition(".")[0]


def _relative(absolute: str) -> str | None:
    """'distilbert_fast.ops.cpp' -> 'ops.cpp'; None outside the package."""
    if absolute == PACKAGE:
        return ""
    if absolute.startswith(PACKAGE + "."):
        return absolute[len(PACKAGE) + 1 :]
    return None


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _is_module(name: str) -> bool:
    return name in MODULES or name == "_C"


class Imports(ast.NodeVisitor):
    """Edges (target module, line, text) and private-name uses (name, line) of one module."""

    def __init__(self, module: str):
        self.module = module
        self.package = _package_of(module)
        self.edges: list[tuple[str, int, str]] = []
        self.private: list[tuple[str, str, int]] = []  # (owner module, name, line)
        self.aliases: dict[str, str] = {}  # local name -> package module it is bound to
        self.missing: list[tuple[str, int]] = []  # imports of package modules that do not exist

    def _base(self, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return _relative(node.module or "")
        pkg = self.package.split(".") if self.package else []
        if node.level - 1 > len(pkg):
            return None
        pkg = pkg[: len(pkg) - (node.level - 1)]
        return _join(*pkg, node.module or "")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            target = _relative(alias.name)
            if target is None:
                continue
            self.edges.append((target, node.lineno, f"import {alias.name}"))
            if alias.asname:
                self.aliases[alias.asname] = target
            self._check_private_path(target, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        if base is None:
            return
        if not _is_module(base):
            self.missing.append((base, node.lineno))
        self._check_private_path(base, node.lineno)
        for alias in node.names:
            sub = _join(base, alias.name)
            target = sub if _is_module(sub) else base
            self.edges.append(
                (target, node.lineno, f"from {'.' * node.level}{node.module or ''} import {alias.name}")
            )
            if _is_module(sub):
                self.aliases[alias.asname or alias.name] = sub
                self._check_private_path(sub, node.lineno)
            elif alias.name.startswith("_") and not alias.name.startswith("__"):
                self._private(base, alias.name, node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in self.aliases:
            owner = self.aliases[node.value.id]
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                self._private(owner, node.attr, node.lineno)
        self.generic_visit(node)

    def _check_private_path(self, target: str, line: int) -> None:
        parts = target.split(".") if target else []
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                self._private(".".join(parts[:i]), part, line)
                return

    def _private(self, owner: str, name: str, line: int) -> None:
        # A module's _names are its own. A package's _names (private submodules such as ops.triton._utils, or names
        # in its __init__) are shared by the modules inside that package, and by nobody else.
        if owner in PACKAGES:
            if owner == "" or self.module == owner or self.module.startswith(owner + "."):
                return
        elif self.module == owner:
            return
        self.private.append((owner, name, line))


def scan() -> dict[str, Imports]:
    out = {}
    for module, path in MODULES.items():
        visitor = Imports(module)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        out[module] = visitor
    return out


SCANS = scan()


def _name(module: str) -> str:
    return _join(PACKAGE, module)


def test_layer_map_covers_every_module():
    print("\nLayer map, bottom to top (a module imports only from its layer or below):")
    for i, (layer, _patterns, what) in enumerate(LAYERS):
        members = sorted(m for m in MODULES if layer_of(m) == i)
        print(f"  {i} {layer:<10} {what}")
        print(f"    {', '.join(_name(m) for m in members)}")
    unmapped = sorted(_name(m) for m in MODULES if layer_of(m) is None)
    assert not unmapped, (
        f"modules without a layer: {unmapped}; add them to LAYERS in tests/test_layering.py "
        "(and to docs/architecture.md)"
    )


def test_imports_only_go_down():
    upward = []
    for module, scan_ in SCANS.items():
        mine = layer_of(module)
        for target, line, text in scan_.edges:
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(
                    f"{MODULES[module].relative_to(ROOT.parent)}:{line}: {text}  "
                    f"({LAYERS[mine][0]} -> {LAYERS[theirs][0]})"
                )
    assert not upward, "imports against the layer order:\n  " + "\n  ".join(upward)


def test_every_package_import_resolves():
    # A relative import that names no module (e.g. after a module moved into a package) fails only when the
    # line runs; function-local ones may hide for long.
    missing = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line}: {_name(t)}"
        for m, s in SCANS.items()
        for t, line in s.missing
    ]
    assert not missing, "imports of modules that do not exist:\n  " + "\n  ".join(missing)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-loops."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, scan_ in SCANS.items():
        for target, _, _ in scan_.edges:
            if target != module and target in MODULES:
                graph[module].add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(_name(m) for m in c) for c in cycles)


# Known uses, each with its reason; an entry that no longer occurs fails the test so the list only shrinks.
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}  # (module, private target) -> why; may only shrink


def test_no_private_names_across_packages():
    uses = [(m, _join(owner, name), line) for m, s in SCANS.items() for owner, name, line in s.private]
    found = [
        f"{MODULES[m].relative_to(ROOT.parent)}:{line}: {_name(target)}"
        for m, target, line in uses
        if (m, target) not in ALLOWED_PRIVATE
    ]
    stale = sorted(set(ALLOWED_PRIVATE) - {(m, target) for m, target, _ in uses})
    assert not stale, f"ALLOWED_PRIVATE entries that no longer occur (remove them): {stale}"
    assert not found, "private names used outside their package:\n  " + "\n  ".join(found)


@pytest.mark.parametrize(
    "source, bad",
    [
        ("from .cuda_graphs import CudaGraphRunner", "modeling"),  # upward
        ("def f():\n    from ..pipelines import pipeline\n", "ops.cpp"),  # function-local upward
        ("from ..checkpoint import _load_torch_file", "heads.folders"),  # private across modules
        ("from .. import checkpoint as c\nc._load_torch_file", "heads.folders"),  # private through an alias
        ("from .prediction import _label2id", "heads.model"),  # a sibling module's private name
    ],
)
def test_the_checks_catch_violations(source, bad):
    visitor = Imports(bad)
    visitor.visit(ast.parse(source))
    mine = layer_of(bad)
    upward = [t for t, _, _ in visitor.edges if (layer_of(t) or 0) > mine]
    assert upward or visitor.private, source
