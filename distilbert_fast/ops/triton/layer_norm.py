"""Residual add + LayerNorm in one pass: y = LN(x + residual) (residual optional), fp32 statistics, eps 1e-12.

x, residual: (M, D) rows (any row stride, unit column stride); weight, bias: (D,). Output (M, D), x's dtype.

Memory-bound (about 5 flops per element against 6 bytes moved in 16-bit), so the kernel's job is to touch
each byte once: a program owns BLOCK_R whole rows held in registers (BLOCK_D = next_pow2(D) columns,
masked), reads x and residual once, computes mean and the *two-pass* variance from the registers (exact
as F.layer_norm's biased variance; no E[x^2] - E[x]^2 cancellation), writes y once. eps = 1e-12 would
vanish in fp16 arithmetic, which is why everything after the loads is fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

from ._utils import INTERPRET, LAYER_NORM_EPS, check_rows, next_pow2


# ----------------------------------------------------------------------------------------------------------
# kernel
# ----------------------------------------------------------------------------------------------------------
@triton.jit
def row_layer_norm(x, mask, W, B, cols, col_valid, D, eps):
    """LayerNorm of the fp32 rows of x (BLOCK_R, BLOCK_D) over the first D columns."""
    # IEEE-rounded division: on the GPU `/` is an approximate division (2 ulp), which turns a constant row's
    # mean into 2.4999998 for 2.5 and, times rstd = 1/sqrt(eps) = 1e6 for eps 1e-12, into an O(0.1) error
    # where torch returns exactly the bias (seen on an H100; the interpreter's numpy division hid it).
    n = D * 1.0
    mean = tl.math.div_rn(tl.sum(x, 1), n)
    xc = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.math.div_rn(tl.sum(xc * xc, 1), n)
    # An fp32 variance overflow (|x| ~1e18+) makes the row NaN, like torch, never the bias that
    # 1/sqrt(inf) = 0 would silently give (issue 11; same rule as the C++ kernel).
    rstd = tl.where(var < float("inf"), 1.0 / tl.sqrt(var + eps), float("nan"))
    w = tl.load(W + cols, mask=col_valid, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=col_valid, other=0.0).to(tl.float32)
    return xc * rstd[:, None] * w[None, :] + b[None, :]


@triton.jit
def _add_layer_norm_kernel(
    X,
    RES,
    W,
    B,
    Y,
    M,
    D,
    stride_x,
    stride_r,
    stride_y,
    eps,
    HAS_RES: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    col_valid = cols < D
    mask = (rows < M)[:, None] & col_valid[None, :]
    rows64 = rows.to(tl.int64)
    x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        x += tl.load(RES + rows64[:, None] * stride_r + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    y = row_layer_norm(x, mask, W, B, cols, col_valid, D, eps)
    tl.store(Y + rows64[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------------
# launcher
# ----------------------------------------------------------------------------------------------------------
def row_block_config(D: int) -> dict:
    """Rows per program and warps for a (rows, D) row-wise kernel (shared with embeddings.py)."""
    block_d = next_pow2(max(D, 16))
    if INTERPRET:
        return dict(BLOCK_R=max(1, min(64, 8192 // block_d)), BLOCK_D=block_d, num_warps=4)
    # ~4K fp32 values per program: 4 rows of DistilBERT-base's 768 (padded to 1024), 32 registers per thread
    # at 4 warps; wide rows get more warps instead of spilling.
    block_r = max(1, min(16, 4096 // block_d))
    num_warps = 4 if block_d <= 2048 else 8 if block_d <= 8192 else 16
    return dict(BLOCK_R=block_r, BLOCK_D=block_d, num_warps=num_warps)


def _launch(x, residual, weight, bias, eps):
    x = check_rows("layer_norm x", x)
    M, D = x.shape
    if residual is not None:
        residual = check_rows("layer_norm residual", residual)
        if residual.shape != x.shape:
            raise ValueError(f"add_layer_norm: residual {tuple(residual.shape)} != x {tuple(x.shape)}")
    if weight.shape != (D,) or bias.shape != (D,):
        raise ValueError(f"layer_norm: weight/bias must have shape ({D},)")
    out_dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    y = torch.empty((M, D), dtype=out_dtype, device=x.device)
    if M == 0:
        return y
    cfg = row_block_config(D)
    grid = (triton.cdiv(M, cfg["BLOCK_R"]),)
    _add_layer_norm_kernel[grid](
        x,
        residual if residual is not None else x,
        weight.contiguous(),
        bias.contiguous(),
        y,
        M,
        D,
        x.stride(0),
        residual.stride(0) if residual is not None else 0,
        y.stride(0),
        float(eps),
        HAS_RES=residual is not None,
        **cfg,
    )
    return y


# ----------------------------------------------------------------------------------------------------------
# torch.library registration
# ----------------------------------------------------------------------------------------------------------
@torch.library.custom_op("distilbert_fast_triton::add_layer_norm", mutates_args=())
def _add_layer_norm_op(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    return _launch(x, residual, weight, bias, eps)


@_add_layer_norm_op.register_fake
def _(x, residual, weight, bias, eps):
    torch._check(x.dim() == 2, lambda: "add_layer_norm: x must be 2-D (rows, dim)")
    dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    return x.new_empty(x.shape, dtype=dtype)


# ----------------------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------------------
def add_layer_norm_rows(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float = LAYER_NORM_EPS,
) -> torch.Tensor:
    """LayerNorm(x + residual) over the last dim (residual may be None). x: (..., D) -> (..., D)."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    r2 = None if residual is None else residual.reshape(-1, residual.shape[-1])
    if torch.compiler.is_compiling():
        y = _add_layer_norm_op(x2, r2, weight, bias, float(eps))
    else:
        y = _launch(x2, r2, weight, bias, eps)
    return y.reshape(*lead, x.shape[-1])


def add_layer_norm(ln: nn.LayerNorm, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The op-table entry: LN(x + residual) with the module's eps (DistilBERT's are 1e-12)."""
    return add_layer_norm_rows(x, residual, ln.weight, ln.bias, ln.eps)


def layer_norm(ln: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """The op-table entry: LN(x)."""
    return add_layer_norm_rows(x, None, ln.weight, ln.bias, ln.eps)


__all__ = ["add_layer_norm_rows", "add_layer_norm", "layer_norm", "row_block_config"]
