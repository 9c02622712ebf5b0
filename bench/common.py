"""Shared helpers for the benchmarks in bench/: timing, robust statistics, interleaved measurement, machine and
version facts, markdown tables and JSON output.

Nothing here imports the library under test, so a broken `distilbert_fast` never takes the harness down.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
WORK_DIR = BENCH_DIR / "_work"  # gitignored: generated models, exported graphs, JSON results


# ----------------------------------------------------------------------------------------------------------
# Timing and statistics
# ----------------------------------------------------------------------------------------------------------
def time_call(fn: Callable[[], Any], repeat: int = 1) -> float:
    """Wall-clock seconds per call of `fn`, averaged over `repeat` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), q in [0, 1]."""
    s = sorted(xs)
    if not s:
        raise ValueError("quantile of an empty sequence")
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median and spread of timing samples (seconds). rel_iqr = (p75 - p25) / median: a noise indicator."""
    med = median(samples)
    p25, p75 = quantile(samples, 0.25), quantile(samples, 0.75)
    return {
        "n": len(samples),
        "median_s": med,
        "min_s": min(samples),
        "max_s": max(samples),
        "p25_s": p25,
        "p75_s": p75,
        "rel_iqr": (p75 - p25) / med if med > 0 else float("nan"),
    }


def run_interleaved(
    fns: dict[str, Callable[[], Any]],
    *,
    rounds: int,
    warmup: int = 1,
    repeat: int = 1,
    gap_s: float = 0.0,
    min_rounds: int = 3,
    budget_s: float | None = None,
    on_round: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, list[float]]:
    """Time every callable once per round, round-robin, so machine noise hits all of them alike.

    `warmup` untimed rounds come first. The starting callable rotates from round to round so that no one
    always runs right after the same neighbour. `gap_s` idles between two timed calls so that one engine's
    spinning worker threads (OpenMP, ORT pools) have gone to sleep before the next engine starts. With
    `budget_s`, rounds stop early once the budget is spent and at least `min_rounds` are done.
    Returns name -> list of seconds per call (one sample per round; each sample averages `repeat` calls).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    t_start = time.perf_counter()
    for r in range(rounds):
        gc.collect()
        order = names[r % len(names) :] + names[: r % len(names)] if names else []
        this_round: dict[str, float] = {}
        for name in order:
            if gap_s:
                time.sleep(gap_s)
            gc_was = gc.isenabled()
            gc.disable()
            try:
                this_round[name] = time_call(fns[name], repeat)
            finally:
                if gc_was:
                    gc.enable()
            samples[name].append(this_round[name])
        if on_round is not None:
            on_round(r, this_round)
        if budget_s is not None and r + 1 >= min_rounds and time.perf_counter() - t_start >= budget_s:
            break
    return samples


# ----------------------------------------------------------------------------------------------------------
# Machine and versions
# ----------------------------------------------------------------------------------------------------------
_CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_model": platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
    }
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["usable_cpus"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                fields.setdefault(k, v)
        info["cpu_model"] = fields.get("model name", info["cpu_model"])
        if "cpu family" in fields:
            info["cpu_family"] = fields["cpu family"]
        flags = set(fields.get("flags", "").split())
        info["cpu_flags"] = [f for f in _CPU_FLAGS_OF_INTEREST if f in flags]
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        import torch

        info["torch_num_threads"] = torch.get_num_threads()
        info["torch_num_interop_threads"] = torch.get_num_interop_threads()
    except Exception:  # noqa: BLE001 - facts only, never fatal
        pass
    try:
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "DISTILBERT_FAST_BACKEND"):
        if var in os.environ:
            info.setdefault("env", {})[var] = os.environ[var]
    return info


def git_sha(repo: Path = REPO_ROOT) -> str | None:
    """HEAD's commit, read from .git without running git (None if unknown). Says nothing about local edits."""
    git = repo / ".git"
    try:
        if git.is_file():  # worktree / submodule: "gitdir: <path>"
            git = (repo / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(None, 1)[1]
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        for base in (git, common):
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
    except (OSError, IndexError):
        pass
    return None


def package_version(dist: str, module: str | None = None) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    if module:
        try:
            return str(getattr(importlib.import_module(module), "__version__", "unknown"))
        except Exception:  # noqa: BLE001
            return None
    return None


def versions(dists: Iterable[tuple[str, str | None]]) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist, module in dists:
        out[dist] = package_version(dist, module)
    return out


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; `align` is one char per column: l, r or c (default: first l, rest r)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    sep = {
        "l": lambda w: ":" + "-" * (w - 1),
        "r": lambda w: "-" * (w - 1) + ":",
        "c": lambda w: ":" + "-" * max(w - 2, 1) + ":",
    }

    def fmt(row: list[str]) -> str:
        out = []
        for i, c in enumerate(row):
            out.append(c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"

    lines = [
        fmt(cells[0]),
        "| " + " | ".join(sep[align[i]](max(widths[i], 3)) for i in range(len(headers))) + " |",
    ]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    return str(o)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
