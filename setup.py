"""Build script: the pure-Python package always installs; the C++ CPU kernels in csrc/ are optional.

The extension `distilbert_fast._C` is built with torch's cpp_extension + ninja when
  * torch is importable in the build environment (install with --no-build-isolation, torch first),
  * csrc/ holds sources, and
  * DISTILBERT_FAST_NO_EXT is not set to 1.
A failed compile degrades to the pure-Python install with a warning instead of failing `pip install`:
at runtime `available_backends()` then simply lacks "cpp".
"""
import glob
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_extension():
    if os.environ.get("DISTILBERT_FAST_NO_EXT", "0") == "1":
        print("distilbert_fast: DISTILBERT_FAST_NO_EXT=1, building the pure-Python package", file=sys.stderr)
        return False
    if not glob.glob(os.path.join(HERE, "csrc", "*.cpp")):
        return False
    try:
        import torch.utils.cpp_extension  # noqa: F401
    except Exception as e:  # torch missing in an isolated build env
        print(f"distilbert_fast: torch not importable ({e}); skipping the C++ extension", file=sys.stderr)
        return False
    return True


def _extension_kwargs():
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    sources = sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "csrc", "*.cpp")))
    # -march=native: the wheel is built on the machine that runs it (pip install from source). Set
    # DISTILBERT_FAST_MARCH to build a portable binary, e.g. DISTILBERT_FAST_MARCH=x86-64-v3.
    march = os.environ.get("DISTILBERT_FAST_MARCH", "native")
    cxx = ["-O3", "-std=c++17", f"-march={march}", "-fopenmp", "-DAT_PARALLEL_OPENMP=1"]
    ext = CppExtension(
        "distilbert_fast._C",
        sources,
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )

    class OptionalBuild(BuildExtension):
        def run(self):
            try:
                super().run()
            except Exception as e:
                print(f"distilbert_fast: C++ extension build failed ({e}); installing pure-Python",
                      file=sys.stderr)

    return {"ext_modules": [ext], "cmdclass": {"build_ext": OptionalBuild.with_options(use_ninja=True)}}


setup(**(_extension_kwargs() if _want_extension() else {}))
