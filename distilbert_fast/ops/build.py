"""Find, check, build and load the C++ kernels against the torch that is running.

Two ways to an extension, tried in this order by `load()`:

* prebuilt: `setup.py build_ext` with torch in the build environment (the Makefile's
  `pip install --no-build-isolation -e .`, or `python setup.py build_ext --inplace`) compiles
  distilbert_fast/_C*.so and writes the record `_C.build.json` beside it. The library is used only when its
  record matches this process: the same torch build, the same kernel sources, a CPU with every instruction set
  extension the compiler was allowed to use. A torch upgrade, an edited csrc/*.cpp or a copy of the install
  onto an older CPU therefore never loads a mismatched binary (no ABI error, no illegal instruction).
* first use: otherwise (`pip install .`, an sdist or the pure wheel: pip's isolated build has no torch, so
  nothing is compiled there) the sources shipped as package data (distilbert_fast/_csrc/, or csrc/ in a source
  tree) are compiled once with torch.utils.cpp_extension + ninja into a per-user cache keyed by the torch
  build, -march and the CPU's flags, and a hash of the sources. One message on stderr while it compiles; later
  processes load the cached library directly. A file lock makes concurrent processes wait for one build.

Per-machine builds are what make `-march=native` safe: the kernels select AVX-512 / AVX512_BF16 paths at
compile time (csrc/simd.h) and fall back to scalar code where the target lacks them.

Environment: DISTILBERT_FAST_NO_EXT=1 disables the extension; DISTILBERT_FAST_CACHE_DIR sets the cache root
(default $XDG_CACHE_HOME/distilbert_fast, i.e. ~/.cache/distilbert_fast); DISTILBERT_FAST_MARCH sets -march
(default native); CXX picks the compiler.

setup.py imports this file by path (no package import, torch imported lazily), so it uses stdlib only at
module level.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

RECORD_NAME = "_C.build.json"
LIB_NAME = "distilbert_fast_C"  # the cached library's file stem (the prebuilt one is the module _C)
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../distilbert_fast
SOURCE_SUFFIXES = (".cpp", ".h")

# Compiler macros -> /proc/cpuinfo flags: what a binary built with a given -march may execute. A prebuilt
# library whose flags are not all present on this CPU is not loaded (a copied install would crash with an
# illegal instruction).
_MACRO_FLAGS = {
    "__SSE4_2__": "sse4_2",
    "__POPCNT__": "popcnt",
    "__AVX__": "avx",
    "__AVX2__": "avx2",
    "__FMA__": "fma",
    "__F16C__": "f16c",
    "__BMI__": "bmi1",
    "__BMI2__": "bmi2",
    "__AVX512F__": "avx512f",
    "__AVX512BW__": "avx512bw",
    "__AVX512VL__": "avx512vl",
    "__AVX512DQ__": "avx512dq",
    "__AVX512CD__": "avx512cd",
    "__AVX512VNNI__": "avx512_vnni",
    "__AVX512BF16__": "avx512_bf16",
    "__AVX512FP16__": "avx512_fp16",
    "__AVX512VBMI__": "avx512vbmi",
    "__AVX512IFMA__": "avx512ifma",
    "__AMX_TILE__": "amx_tile",
    "__AMX_BF16__": "amx_bf16",
    "__AMX_INT8__": "amx_int8",
}
_AVX512_SIMD = ("avx512f", "avx512bw", "avx512vl", "avx512dq")  # what csrc/simd.h needs for its AVX-512 path


class ExtensionUnavailable(RuntimeError):
    """The extension cannot be used here; the message says why and how to fix it."""


# ---- inputs of a build -------------------------------------------------------------------------------------
def march() -> str:
    return os.environ.get("DISTILBERT_FAST_MARCH", "native")


def cxx_flags(arch: str | None = None) -> list[str]:
    # -ffp-contract=off: a multiply and an add written apart stay two roundings (explicit vfma intrinsics are
    # still fused). GCC's default (fast) fuses them or not depending on what got inlined where, so the same
    # row code compiled into two kernels could differ by an ulp; off, it is the reference's arithmetic.
    return [
        "-O3",
        "-std=c++17",
        f"-march={arch or march()}",
        "-ffp-contract=off",
        "-fopenmp",
        "-DAT_PARALLEL_OPENMP=1",
    ]


LDFLAGS = ["-fopenmp"]


def source_dir() -> Path | None:
    """The kernel sources: package data in an installed wheel, csrc/ in a source tree (editable install)."""
    for d in (PACKAGE_DIR / "_csrc", PACKAGE_DIR.parent / "csrc"):
        if (d / "ops.cpp").is_file():
            return d
    return None


def source_files(src: Path) -> list[Path]:
    return sorted(p for p in src.iterdir() if p.suffix in SOURCE_SUFFIXES and p.is_file())


def source_hash(src: Path) -> str:
    h = hashlib.sha256()
    for p in source_files(src):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cpu_flags() -> set[str]:
    """/proc/cpuinfo flags of the first CPU (empty where unreadable, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compiler() -> str | None:
    cxx = os.environ.get("CXX", "c++")
    return shutil.which(cxx)


def required_flags(arch: str | None = None) -> list[str] | None:
    """CPU flags the compiler may use under -march=arch (from its predefined macros); None if unknown."""
    cxx = compiler()
    if cxx is None:
        return None
    try:
        out = subprocess.run(
            [cxx, f"-march={arch or march()}", "-dM", "-E", "-x", "c++", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    macros = {line.split()[1] for line in out.splitlines() if line.startswith("#define ")}
    return sorted(flag for macro, flag in _MACRO_FLAGS.items() if macro in macros)


def torch_identity() -> dict:
    import torch

    return {
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", ""),
        "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
        "python": sys.implementation.cache_tag,
    }


def build_record(src: Path, arch: str | None = None) -> dict:
    """What a build was made from and for; written beside the library, compared before loading it."""
    req = required_flags(arch)
    return {
        **torch_identity(),
        "march": arch or march(),
        "sources": source_hash(src),
        "requires": req,
        "simd": describe_simd(req),
        "compiler": compiler(),
        "built_at": time.time(),
    }


def describe_simd(req: list[str] | None) -> str:
    if req is None:
        return "unknown"
    if not all(f in req for f in _AVX512_SIMD):
        return "scalar (the target lacks AVX-512 F/BW/VL/DQ: correct, but slower kernels)"
    return "avx512" + (" + avx512_bf16" if "avx512_bf16" in req else "")


def scalar_warning(record: dict) -> str | None:
    """The one warning for a library built without the AVX-512 kernels (they still run, more slowly)."""
    if not record.get("simd", "").startswith("scalar"):
        return None
    return (
        f"distilbert_fast: the C++ kernels were built for -march={record.get('march')}, which lacks "
        "AVX-512 (F/BW/VL/DQ): they run their scalar fallback, correct but slower. On an AVX-512 CPU use "
        "DISTILBERT_FAST_MARCH=native (the default)"
    )


def mismatch(record: dict, src: Path | None, flags: set[str]) -> str | None:
    """Why a library built as `record` must not be loaded in this process, or None if it may."""
    now = torch_identity()
    for k in ("torch", "torch_git", "cxx11_abi", "python"):
        if record.get(k) != now[k]:
            return f"it was built for {k} {record.get(k)!r}, this process runs {now[k]!r}"
    if src is not None and record.get("sources") != source_hash(src):
        return f"the kernel sources in {src} changed since it was built"
    if flags and record.get("requires") is not None:
        missing = sorted(set(record["requires"]) - flags)
        if missing:
            return f"it was built with -march={record.get('march')} and this CPU lacks {', '.join(missing)}"
    return None


# ---- the cache ---------------------------------------------------------------------------------------------
def cache_root() -> Path:
    if os.environ.get("DISTILBERT_FAST_CACHE_DIR"):
        return Path(os.environ["DISTILBERT_FAST_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "distilbert_fast"


def cache_dir(src: Path, arch: str | None = None) -> Path:
    """One directory per (torch build, python, -march, CPU flags if native, sources)."""
    arch = arch or march()
    ident = torch_identity()
    key = {
        **ident,
        "march": arch,
        "sources": source_hash(src),
        "cpu": sorted(cpu_flags()) if arch == "native" else None,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"torch-{ident['torch']}-{ident['python']}")
    return cache_root() / safe / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', arch)}-{digest}"


def cached_library(d: Path) -> Path:
    return d / f"{LIB_NAME}.so"


KEEP_ENTRIES = 4  # cache entries kept per torch/python directory: each is a ~10 MB library


def prune(current: Path, keep: int = KEEP_ENTRIES) -> list[Path]:
    """Delete the least recently used sibling entries of `current` beyond `keep` (every source edit or torch
    rebuild makes a new one; nothing else ever removes them). An entry's last use is the mtime of its lock
    file, touched on every load. Entries whose lock another process holds are skipped, so a process building
    or loading one is never disturbed. Returns the deleted directories."""
    import fcntl

    locks = sorted(
        (
            p
            for p in current.parent.glob("*.lock")
            if p.with_suffix("") != current and p.with_suffix("").is_dir()
        ),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for lock in locks[max(0, keep - 1) :]:
        with open(lock, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed.append(lock.with_suffix(""))
    return removed


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive flock on `path` (released by the OS if the holder dies); says so when it has to wait."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"distilbert_fast: waiting for another process that is compiling the C++ kernels ({path})",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _error_excerpt(log: str, limit: int = 6) -> str:
    lines = [ln.strip() for ln in log.splitlines() if re.search(r"\berror\b|fatal", ln, re.IGNORECASE)]
    return " | ".join(lines[:limit]) or " | ".join(log.strip().splitlines()[-limit:])


def _fix_for(log: str, d: Path) -> str:
    if "Python.h" in log:
        v = f"{sys.version_info.major}.{sys.version_info.minor}"
        return f"install the Python headers (e.g. apt-get install python{v}-dev), then delete {d} to retry"
    return (
        f"report this message and `distilbert-fast info`; delete {d} to retry the build; set "
        "DISTILBERT_FAST_NO_EXT=1 to run the pure-PyTorch path without this message"
    )


def build(src: Path, d: Path, note: str = "") -> Path:
    """Compile the sources in `src` into directory `d` (under the caller's lock). Returns the library path;
    raises ExtensionUnavailable with an excerpt of the compiler's output and the log path on failure."""
    if compiler() is None:
        raise ExtensionUnavailable(
            f"no C++ compiler found (looked for {os.environ.get('CXX', 'c++')!r} on PATH); install one "
            "(e.g. apt-get install g++, or set CXX) and start again: the kernels compile on first use"
        )
    try:  # the `ninja` wheel (a dependency) ships the binary; a venv's bin/ may not be on PATH
        import ninja

        if ninja.BIN_DIR not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    if shutil.which("ninja") is None:
        raise ExtensionUnavailable("ninja is not installed (it compiles the C++ kernels): pip install ninja")
    from torch.utils import cpp_extension

    d.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (d / "lock").unlink()  # torch's own build baton, left behind if a build was killed; we hold our lock
    arch = march()
    print(
        f"distilbert_fast: compiling the C++ kernels for this machine (torch {torch_identity()['torch']}, "
        f"-march={arch}{note}); once, 1-2 minutes on 2 cores. Cache: {d}",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    try:
        cpp_extension.load(
            name=LIB_NAME,
            sources=[str(p) for p in source_files(src) if p.suffix == ".cpp"],
            extra_cflags=cxx_flags(arch),
            extra_ldflags=LDFLAGS,
            build_directory=str(d),
            is_python_module=False,
            verbose=False,
        )
    except Exception as e:  # ninja's output is in the message (cpp_extension's RuntimeError)
        log = d / "build.log"
        text = f"{type(e).__name__}: {e}"
        log.write_text(text)
        reason = (
            f"compiling the C++ kernels failed: {_error_excerpt(text)} (full log: {log}); "
            f"fix: {_fix_for(text, d)}"
        )
        (d / "failed.json").write_text(json.dumps({"reason": reason}))
        raise ExtensionUnavailable(reason) from None
    record = build_record(src, arch)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    (d / RECORD_NAME).write_text(json.dumps(record, indent=1))
    for p in d.glob("*.o"):  # keep the cache entry small: only the library and the record are reused
        p.unlink()
    print(f"distilbert_fast: C++ kernels compiled in {record['seconds']:.0f} s", file=sys.stderr, flush=True)
    return cached_library(d)


# ---- loading -----------------------------------------------------------------------------------------------
def _prebuilt() -> tuple[Path | None, dict | None]:
    import importlib.machinery

    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        lib = PACKAGE_DIR / f"_C{suffix}"
        if lib.is_file():
            rec_path = PACKAGE_DIR / RECORD_NAME
            try:
                return lib, json.loads(rec_path.read_text())
            except (OSError, ValueError):
                return lib, None
    return None, None


def load() -> dict:
    """Load the extension (registering torch.ops.distilbert_fast.*) and describe it, or raise
    ExtensionUnavailable saying why not and how to fix it. Warns once if it lacks the AVX-512 kernels."""
    info = _load()
    msg = scalar_warning(info)
    if msg:
        import warnings

        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return info


def _load() -> dict:
    if os.environ.get("DISTILBERT_FAST_NO_EXT", "0") == "1":
        raise ExtensionUnavailable("disabled by DISTILBERT_FAST_NO_EXT=1 (unset it to use the C++ kernels)")
    import torch

    src, flags = source_dir(), cpu_flags()
    lib, record = _prebuilt()
    note = ""
    if lib is not None:
        why = "it has no build record (_C.build.json)" if record is None else mismatch(record, src, flags)
        if why is None:
            try:
                from distilbert_fast import _C  # noqa: F401  registers the ops

                return {**record, "origin": "prebuilt", "path": str(lib), "loaded_at": time.time()}
            except Exception as e:  # nothing registered: a first-use build can still succeed
                why = f"loading it failed: {type(e).__name__}: {e}"
        note = f"; the prebuilt {lib.name} is not used: {why}"
    if src is None:
        raise ExtensionUnavailable(
            "the C++ kernel sources are not part of this installation (distilbert_fast/_csrc is missing)"
            + note
            + "; reinstall from the sdist or a source checkout: pip install distilbert_fast"
        )
    d = cache_dir(src)
    lock = d.with_name(d.name + ".lock")
    try:
        with _file_lock(lock):
            failed = d / "failed.json"
            if failed.is_file():
                raise ExtensionUnavailable(json.loads(failed.read_text())["reason"])
            origin = "cache"
            rec_path = d / RECORD_NAME
            if not (rec_path.is_file() and cached_library(d).is_file()):
                build(src, d, note)
                origin = "compiled now"
            record = json.loads(rec_path.read_text())
            os.utime(lock)  # this entry's last use, read by prune()
        with contextlib.suppress(OSError):  # housekeeping must never cost the extension
            prune(d)
    except OSError as e:  # e.g. a read-only home directory
        raise ExtensionUnavailable(
            f"cannot use the build cache {d} ({type(e).__name__}: {e}); set "
            "DISTILBERT_FAST_CACHE_DIR to a writable directory"
        ) from None
    try:
        torch.ops.load_library(str(cached_library(d)))
    except Exception as e:  # turned into the reason the backend reports
        raise ExtensionUnavailable(
            f"loading {cached_library(d)} failed ({type(e).__name__}: {e}); delete {d} to rebuild it"
        ) from None
    return {**record, "origin": origin, "path": str(cached_library(d)), "loaded_at": time.time()}
