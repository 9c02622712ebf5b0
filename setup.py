"""Build script. The package always installs and always carries the C++ kernel sources; whether they are
compiled here or on first use depends on the build environment:

* pip's default isolated build (`pip install .`, `pip install <sdist>`, `python -m build`) has no torch (the
  build requirements deliberately leave it out: a build-time torch is whatever the resolver picks, not the
  one that will run the code). The result is a pure wheel holding csrc/ as distilbert_fast/_csrc/, and
  distilbert_fast/ops/build.py compiles it against the running torch on first use, once per machine.
* With torch importable (`pip install --no-build-isolation ...`, the Makefile, `python setup.py build_ext
  --inplace`) the extension `distilbert_fast._C` is also built now, -march=native by default
  (DISTILBERT_FAST_MARCH overrides), with a record `_C.build.json` of what it was built from and for. At run
  time it is used only if that record matches the running torch, the sources and the CPU; otherwise the
  first-use build takes over. A failed compile here does not fail the install: the first-use build reports
  the reason at run time.

DISTILBERT_FAST_NO_EXT=1 skips the compile here (the sources still ship).
"""
import glob
import importlib.util
import json
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")


def _build_helpers():
    """distilbert_fast/ops/build.py, imported by path: importing the package would need its dependencies."""
    spec = importlib.util.spec_from_file_location("_dbf_build", os.path.join(HERE, "distilbert_fast", "ops",
                                                                            "build.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildPyWithSources(build_py):
    """Ship csrc/ (the one source of truth) inside the package as distilbert_fast/_csrc/ for first-use builds.
    An editable install reads csrc/ in place instead."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or not os.path.isdir(CSRC):
            return
        dst = os.path.join(self.build_lib, "distilbert_fast", "_csrc")
        os.makedirs(dst, exist_ok=True)
        for p in sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "*.h"))):
            shutil.copy2(p, dst)


def _want_extension():
    if os.environ.get("DISTILBERT_FAST_NO_EXT", "0") == "1":
        print("distilbert_fast: DISTILBERT_FAST_NO_EXT=1, not compiling the C++ kernels", file=sys.stderr)
        return False
    if not glob.glob(os.path.join(CSRC, "*.cpp")):
        return False
    try:
        import torch.utils.cpp_extension  # noqa: F401
    except Exception as e:  # pip's isolated build environment: `pip install .`
        print(f"distilbert_fast: torch not importable here ({type(e).__name__}); the C++ kernels will "
              "compile on first use against the torch that runs them", file=sys.stderr)
        return False
    return True


def _extension_kwargs():
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    helpers = _build_helpers()
    sources = sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(CSRC, "*.cpp")))
    ext = CppExtension("distilbert_fast._C", sources, extra_compile_args={"cxx": helpers.cxx_flags()},
                       extra_link_args=helpers.LDFLAGS)

    class RecordedOptionalBuild(BuildExtension):
        """Build _C, then write the record the runtime checks before loading it. Failure degrades to the
        first-use build (which reports the reason) instead of failing the install."""

        def run(self):
            # An old record stays until the new library is in place: a failed build leaves the old pair, and
            # a record that no longer matches the sources is refused at run time anyway.
            out = self.get_ext_fullpath("distilbert_fast._C")
            record = os.path.join(os.path.dirname(out), helpers.RECORD_NAME)
            try:
                super().run()
            except Exception as e:  # the install goes on; first use reports the reason
                print(f"distilbert_fast: compiling the C++ kernels failed ({e}); they will be compiled on "
                      "first use instead, which reports the reason", file=sys.stderr)
                return
            if os.path.exists(out):
                with open(record, "w") as f:
                    json.dump(helpers.build_record(helpers.Path(CSRC)), f, indent=1)

    build_ext = RecordedOptionalBuild.with_options(use_ninja=True)
    return {"ext_modules": [ext], "cmdclass": {"build_py": BuildPyWithSources, "build_ext": build_ext}}


setup(**(_extension_kwargs() if _want_extension() else {"cmdclass": {"build_py": BuildPyWithSources}}))
