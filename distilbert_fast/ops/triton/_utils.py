"""Small helpers shared by the Triton op files: interpreter detection, block-size arithmetic, dot precision.

Kept free of kernels on purpose: each op file holds its own kernel -> launcher -> public function.
"""

from __future__ import annotations

import os

import torch

LAYER_NORM_EPS = 1e-12

# triton.jit decides at decoration time whether a kernel runs compiled or in the numpy interpreter, from this
# same variable; read it once so launchers pick interpreter-friendly blocks consistently with the kernels.
INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def dot_precision(dtype: torch.dtype) -> str:
    """input_precision for tl.dot. fp32 inputs follow torch's own TF32 switch (off by default, which is
    what transformers' fp32 reference computes), so fp32 results match F.linear to ~1e-6; 16-bit inputs
    ignore it."""
    if dtype == torch.float32 and not (torch.cuda.is_available() and torch.backends.cuda.matmul.allow_tf32):
        return "ieee"
    return "tf32"


def upcast_dot(dtype: torch.dtype) -> bool:
    """Whether kernels must widen bf16 dot operands to fp32 before tl.dot.

    Triton's numpy interpreter stores bf16 as raw uint16 bits and its dot multiplies those bits as integers
    (triton 3.x `InterpreterBuilder.create_dot`), so a bf16 tl.dot is garbage under TRITON_INTERPRET=1.
    bf16 x bf16 products are exact in fp32, so widening first gives the same math as the tensor-core dot
    (fp32 accumulation); on a GPU the native bf16 dot is used."""
    return INTERPRET and dtype == torch.bfloat16


def check_rows(name: str, t: torch.Tensor) -> torch.Tensor:
    """A 2-D row matrix with unit column stride (row stride free: column views of a fused QKV are fine)."""
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (rows, features) tensor, got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype must be float16, bfloat16 or float32, got {t.dtype}")
    if t.shape[1] > 1 and t.stride(1) != 1:
        t = t.contiguous()
    return t
