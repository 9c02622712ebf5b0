"""Packaging and the C++ extension loader (distilbert_fast/ops/build.py).

Fast tests check the loader's decisions: when a prebuilt _C may be loaded, what keys the first-use cache,
what a failed build or a missing compiler reports, and what `distilbert-fast info` shows.

The `packaging` test does what a user does: `python -m build` (sdist, then the wheel from the sdist) from a
clean copy of the tree, then in one fresh venv (no system site-packages) holding the running torch version
from the local wheel, `pip install` of the wheel and then of the sdist with pip's default build isolation, and
a cpp-backend forward equal to the torch backend after each. Minutes, so it is marked: skip it locally with
`-m "not packaging"` or DISTILBERT_FAST_SKIP_PACKAGING=1; `make test` (CI) runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from distilbert_fast.ops import build as _build
from distilbert_fast.ops import cpp

ROOT = Path(__file__).resolve().parents[1]
HAS_CXX = _build.compiler() is not None


def _copy_sources(tmp_path: Path) -> Path:
    src = tmp_path / "csrc"
    shutil.copytree(_build.source_dir(), src)
    return src


# ---- the loader's decisions --------------------------------------------------------------------------------
def test_loaded_extension_matches_this_torch_and_sources():
    if not cpp.AVAILABLE:
        assert os.environ.get("DISTILBERT_FAST_REQUIRE_EXT") != "1", cpp.IMPORT_ERROR
        pytest.skip(f"extension unavailable: {cpp.IMPORT_ERROR}")
    info = cpp.BUILD_INFO
    assert info["origin"] in ("prebuilt", "cache", "compiled now")
    assert info["torch"] == torch.__version__
    assert Path(info["path"]).is_file()
    src = _build.source_dir()
    if info["sources"] != _build.source_hash(src):
        # several people edit csrc/ in one tree: only an edit made after the library was loaded excuses it
        edited = max(p.stat().st_mtime for p in _build.source_files(src))
        assert edited > info["loaded_at"], "the loaded library was not built from the current sources"
        pytest.skip("csrc/ was edited after this process loaded the extension")
    assert _build.mismatch(info, src, _build.cpu_flags()) is None


def test_prebuilt_is_refused_on_torch_source_or_cpu_mismatch(tmp_path):
    src = _copy_sources(tmp_path)
    good = {
        **_build.torch_identity(),
        "sources": _build.source_hash(src),
        "march": "x86-64-v3",
        "requires": ["avx2", "fma"],
    }
    assert _build.mismatch(good, src, {"avx2", "fma", "sse4_2"}) is None
    assert "torch '2.0.0'" in _build.mismatch({**good, "torch": "2.0.0"}, src, {"avx2", "fma"})
    assert "cxx11_abi" in _build.mismatch({**good, "cxx11_abi": not good["cxx11_abi"]}, src, {"avx2", "fma"})
    # a CPU without the instruction sets the binary may use: never loaded (no illegal-instruction crash)
    assert "lacks fma" in _build.mismatch(good, src, {"avx2"})
    (src / "layer_norm.cpp").write_text((src / "layer_norm.cpp").read_text() + "\n// edited\n")
    assert "sources" in _build.mismatch(good, src, {"avx2", "fma"})


def test_cache_key_follows_sources_march_and_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILBERT_FAST_CACHE_DIR", str(tmp_path / "cache"))
    src = _copy_sources(tmp_path)
    d = _build.cache_dir(src)
    assert d.is_relative_to(tmp_path / "cache") and torch.__version__ in str(d)
    assert _build.cache_dir(src) == d  # stable
    assert _build.cache_dir(src, "x86-64-v3") != d
    (src / "simd.h").write_text((src / "simd.h").read_text() + "\n// edited\n")  # headers count too
    assert _build.cache_dir(src) != d


def test_prune_keeps_the_most_recently_used_entries_and_skips_locked_ones(tmp_path):
    import fcntl
    import os

    root = tmp_path / "torch-x"
    entries = []
    for i in range(7):  # entry i last used at time 1000 + i
        d = root / f"native-{i:016x}"
        d.mkdir(parents=True)
        (d / f"{_build.LIB_NAME}.so").write_bytes(b"x")
        lock = d.with_name(d.name + ".lock")
        lock.touch()
        os.utime(lock, (1000 + i, 1000 + i))
        entries.append(d)
    current = entries[0]  # the entry this process uses: kept although its lock is the oldest
    with open(entries[1].with_name(entries[1].name + ".lock"), "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process is loading entry 1
        removed = _build.prune(current, keep=3)
    # kept: current + the 2 most recently used (6, 5) + the held one (1); the rest removed with their locks
    assert sorted(removed) == sorted(entries[i] for i in (2, 3, 4))
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(
        entries[i].name for i in (0, 1, 5, 6)
    )
    assert not (root / f"{entries[2].name}.lock").exists()


@pytest.mark.skipif(not HAS_CXX, reason="no C++ compiler")
def test_required_flags_follow_march():
    base, v4 = _build.required_flags("x86-64"), _build.required_flags("x86-64-v4")
    assert "avx2" not in base and "avx512f" not in base
    assert {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(v4)
    assert _build.describe_simd(base).startswith("scalar") and _build.describe_simd(v4) == "avx512"
    # no silent slow path: a library without the AVX-512 kernels warns when loaded
    assert "scalar fallback" in _build.scalar_warning({"march": "x86-64", "simd": _build.describe_simd(base)})
    assert _build.scalar_warning({"march": "x86-64-v4", "simd": _build.describe_simd(v4)}) is None


@pytest.mark.skipif(not HAS_CXX, reason="no C++ compiler")
def test_failed_build_reports_excerpt_and_log(tmp_path, capfd):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ops.cpp").write_text("int broken( {\n")
    with pytest.raises(_build.ExtensionUnavailable) as e:
        _build.build(src, tmp_path / "out")
    msg = str(e.value)
    assert "compiling the C++ kernels failed" in msg and "error" in msg and "ops.cpp" in msg
    assert str(tmp_path / "out" / "build.log") in msg and (tmp_path / "out" / "build.log").is_file()
    assert "compiling the C++ kernels for this machine" in capfd.readouterr().err


def test_missing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-dbf")
    with pytest.raises(_build.ExtensionUnavailable, match="no C\\+\\+ compiler found.*no-such-compiler-dbf"):
        _build.build(_copy_sources(tmp_path), tmp_path / "out")


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=ROOT,
    )


def test_disabled_extension_explains_itself():
    proc = _run(
        "import distilbert_fast as d\n"
        "try:\n    d.DistilBertModel(d.DistilBertConfig(), backend='cpp')\n"
        "except RuntimeError as e:\n    print(e)\n",
        DISTILBERT_FAST_NO_EXT="1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "backend='cpp' was requested but is unavailable" in proc.stdout
    assert "DISTILBERT_FAST_NO_EXT=1" in proc.stdout


def test_info_shows_extension_state():
    proc = subprocess.run(
        [sys.executable, "-m", "distilbert_fast", "info"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("cpp extension:"))
    if cpp.AVAILABLE:
        assert "loaded" in line and "-march=" in proc.stdout and "simd:" in proc.stdout
    else:
        assert "unavailable" in line


# ---- the real thing: build, install into a fresh venv, run -------------------------------------------------
CHECK = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
import distilbert_fast as dbf
from distilbert_fast.ops import cpp
torch.manual_seed(0)
cfg = dbf.DistilBertConfig(vocab_size=101, dim=64, n_heads=4, n_layers=2, hidden_dim=96)
model = dbf.DistilBertModel(cfg, backend="cpp").eval()
ids = torch.randint(0, 101, (3, 33))
mask = torch.ones(3, 33, dtype=torch.long)
mask[1, 20:] = 0
mask[2, 5:] = 0  # real tokens are compared (as in test_backend_cpp): padded slots hold meaningless values
with torch.no_grad():
    fast = model(ids, attention_mask=mask).last_hidden_state
    seconds = time.perf_counter() - t0
    model.set_backend("torch")
    ref = model(ids, attention_mask=mask).last_hidden_state
info = cpp.BUILD_INFO
print(json.dumps({"file": dbf.__file__, "backends": dbf.available_backends(), "origin": info["origin"],
                  "lib": info["path"], "sources": info["sources"],
                  "diff": (fast - ref)[mask.bool()].abs().max().item(), "seconds": seconds}))
"""


def _sh(*cmd, cwd=None, env=None, timeout=600) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], check=False, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )
    what = " ".join(map(str, cmd))
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _clean_copy(dst: Path) -> Path:
    """The tree as a fresh clone has it, plus files not yet committed (tracked or not, never ignored)."""
    files = _sh("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    return dst


@pytest.mark.packaging
@pytest.mark.skipif(
    os.environ.get("DISTILBERT_FAST_SKIP_PACKAGING") == "1", reason="DISTILBERT_FAST_SKIP_PACKAGING=1"
)
@pytest.mark.skipif(not HAS_CXX, reason="no C++ compiler: the installed package cannot compile its kernels")
def test_sdist_and_wheel_install_into_fresh_venv_and_run_cpp(tmp_path):
    times = {}
    t = time.perf_counter()
    src = _clean_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    _sh(sys.executable, "-m", "build", "--outdir", dist, src)  # isolated: sdist, then the wheel from it
    times["build"] = time.perf_counter() - t
    (sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
    # The isolated build has no torch, so nothing was compiled: a pure wheel that carries the sources.
    assert wheel.name.endswith("-py3-none-any.whl")
    csrc = sorted(p.name for p in (ROOT / "csrc").iterdir() if p.suffix in _build.SOURCE_SUFFIXES)
    with zipfile.ZipFile(wheel) as z:
        assert sorted(n.rsplit("/", 1)[1] for n in z.namelist() if "/_csrc/" in n) == csrc
        assert not any(n.endswith(".so") for n in z.namelist())
    with tarfile.open(sdist) as tf:
        assert sorted(n.rsplit("/", 1)[1] for n in tf.getnames() if "/csrc/" in n) == csrc

    t = time.perf_counter()
    venv = tmp_path / "venv"
    _sh(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    drop = ("PYTHON", "DISTILBERT_FAST", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    pip = (py, "-m", "pip", "install", "-q", "--disable-pip-version-check")
    _sh(*pip, f"torch=={torch.__version__.split('+')[0]}", env=env)
    times["venv+torch"] = time.perf_counter() - t

    def check(cache: Path, n: int = 1) -> list[dict]:
        run_env = {**env, "DISTILBERT_FAST_CACHE_DIR": str(cache)}

        def one(_):
            return subprocess.run(
                [py, "-c", CHECK],
                check=False,
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=run_env,
                timeout=600,
            )

        with ThreadPoolExecutor(n) as pool:  # n processes at once: one compiles, the others wait on the lock
            procs = list(pool.map(one, range(n)))
        results = []
        for p in procs:
            assert p.returncode == 0, p.stderr[-3000:]
            r = json.loads(p.stdout.strip().splitlines()[-1])
            assert r["file"].startswith(str(venv)), r  # the installed package, not the tree
            assert "cpp" in r["backends"] and r["diff"] <= 1e-4, r
            assert r["lib"].startswith(str(cache)), r
            results.append({**r, "stderr": p.stderr})
        return results

    t = time.perf_counter()
    _sh(*pip, wheel, env=env)
    times["install wheel"] = time.perf_counter() - t
    t = time.perf_counter()
    first = check(tmp_path / "cache-wheel", n=2)
    times["first use (2 processes)"] = time.perf_counter() - t
    assert sorted(r["origin"] for r in first) == ["cache", "compiled now"], first
    assert sum("compiling the C++ kernels for this machine" in r["stderr"] for r in first) == 1
    t = time.perf_counter()
    (warm,) = check(tmp_path / "cache-wheel")
    times["warm start"] = time.perf_counter() - t
    assert warm["origin"] == "cache" and warm["stderr"].strip() == "", warm
    info = _sh(
        venv / "bin" / "distilbert-fast",
        "info",
        env={**env, "DISTILBERT_FAST_CACHE_DIR": str(tmp_path / "cache-wheel")},
    )
    assert "cpp extension: loaded (cache)" in info, info

    # The sdist, built by pip in isolation, replaces the package in the same venv. Its shipped sources hash to
    # the same cache key as the wheel's (the key is computed from the installed files; without them the
    # loader refuses), so it loads the library compiled above from byte-identical sources instead of spending
    # another minute of CI on the same compile.
    t = time.perf_counter()
    _sh(*pip, "--force-reinstall", "--no-deps", sdist, env=env)
    times["install sdist"] = time.perf_counter() - t
    (from_sdist,) = check(tmp_path / "cache-wheel")
    assert from_sdist["origin"] == "cache" and from_sdist["sources"] == warm["sources"], from_sdist
    shutil.rmtree(tmp_path / "cache-wheel")  # and with a cold cache it compiles them itself
    print("packaging timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
