"""GEMM y = act(x W^T + bias) (+ residual) with the epilogue fused, and the fused QKV projection.

x: (M, K) rows (any row stride, unit column stride), W: (N, K) as nn.Linear stores it, bias: (N,),
residual: (M, N). fp16 / bf16 / fp32 inputs, fp32 accumulation, output in the input dtype.

Kernel: the tiled matmul of the Triton tutorial, written for this layout:
  * program ids are swizzled in groups of GROUP_M row-tiles, so consecutive programs share W column tiles in
    L2 (the weight is the big operand at small M);
  * out-of-range rows/columns are clamped with a modulo instead of masked (their results are never stored),
    so only the K tail needs a mask, and only when K % BLOCK_K != 0 (EVEN_K);
  * epilogue on the fp32 accumulator: + bias, activation (erf GELU, tanh GELU, ReLU, SiLU), + residual, one
    rounding to the output dtype. (The reference rounds x W^T + b to 16 bits before the activation; this is
    one rounding fewer, well inside the bf16 tolerance.)
Block sizes come from a fixed table per M bucket (docs/triton_design.md); no autotuning at call time.
On CUDA, a GEMM with nothing to fuse (no activation, no residual: QKV, attention out, FFN out) runs on
cuBLASLt (addmm with its bias epilogue), which measured faster than this kernel on an H100 (bench/RESULTS_gpu.md).

Fused QKV: [Wq; Wk; Wv] and [bq; bk; bv] are concatenated once and cached on the attention module, keyed by
each parameter's (data_ptr, _version, dtype, device), so an in-place update, a reload or a .to() rebuilds it.
One GEMM with N = 3D reads x once; q, k, v are returned as column views of its (M, 3D) output, which the
attention kernel reads in place through the row stride.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

from ._utils import INTERPRET, check_rows, dot_precision, next_pow2, upcast_dot

# activation name -> kernel code
ACTIVATIONS = {None: 0, "gelu": 1, "gelu_new": 2, "relu": 3, "silu": 4}
_SQRT_2_OVER_PI = 0.7978845608028654
_INV_SQRT_2 = 0.7071067811865476


# ----------------------------------------------------------------------------------------------------------
# kernel
# ----------------------------------------------------------------------------------------------------------
@triton.jit
def _apply_activation(x, ACT: tl.constexpr):
    if ACT == 1:  # "gelu": exact erf form
        x = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    elif ACT == 2:  # "gelu_new": tanh form; tanh(z) = 2 sigmoid(2z) - 1 (no tanh in every backend's libm)
        z = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        x = 0.5 * x * (1.0 + (2.0 * tl.sigmoid(2.0 * z) - 1.0))
    elif ACT == 3:  # relu
        x = tl.maximum(x, 0.0)
    elif ACT == 4:  # silu
        x = x * tl.sigmoid(x)
    return x


@triton.jit
def _linear_kernel(
    X,
    W,
    BIAS,
    RES,
    Y,
    M,
    N,
    K,
    stride_xm,
    stride_wn,
    stride_rm,
    stride_ym,
    HAS_BIAS: tl.constexpr,
    HAS_RES: tl.constexpr,
    ACT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
    UPCAST: tl.constexpr,
    PREC: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # grouped ordering: GROUP_M row-tiles walk the same column tiles together (L2 reuse of W)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    rows = (offs_m % M).to(tl.int64)  # clamped: tail rows recompute row 0.., never stored
    cols = (offs_n % N).to(tl.int64)
    x_ptrs = X + rows[:, None] * stride_xm + offs_k[None, :]
    w_ptrs = W + cols[None, :] * stride_wn + offs_k[:, None]  # (BLOCK_K, BLOCK_N) tile of W^T

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            a = tl.load(x_ptrs)
            b = tl.load(w_ptrs)
        else:
            k_valid = offs_k < K - k0
            a = tl.load(x_ptrs, mask=k_valid[None, :], other=0.0)
            b = tl.load(w_ptrs, mask=k_valid[:, None], other=0.0)
        if UPCAST:  # inlined, not a helper call: nested jit calls are very slow under the interpreter
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc, input_precision=PREC)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K

    if HAS_BIAS:
        acc += tl.load(BIAS + cols).to(tl.float32)[None, :]
    acc = _apply_activation(acc, ACT)
    out_mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    if HAS_RES:
        res = tl.load(RES + rows[:, None] * stride_rm + cols[None, :], mask=out_mask, other=0.0)
        acc += res.to(tl.float32)
    tl.store(Y + rows[:, None] * stride_ym + cols[None, :], acc.to(Y.dtype.element_ty), mask=out_mask)


# ----------------------------------------------------------------------------------------------------------
# launcher
# ----------------------------------------------------------------------------------------------------------
def _config(M: int, N: int, K: int, dtype: torch.dtype, act: str | None = None) -> dict:
    """Fixed block config per M bucket (DistilBERT's N, K: 768 / 2304 / 3072; docs/triton_design.md)."""
    if INTERPRET:
        # numpy interpreter: few, large programs. Caps keep tails (masks, clamps) exercised on small tests.
        return dict(
            BLOCK_M=min(64, max(16, next_pow2(M))),
            BLOCK_N=min(128, max(16, next_pow2(N))),
            BLOCK_K=min(128, max(16, next_pow2(K))),
            GROUP_M=8,
            num_warps=4,
            num_stages=1,
        )
    if dtype == torch.float32:  # 4-byte operands: half the K depth for the same shared memory
        if M <= 64:
            return dict(
                BLOCK_M=max(16, min(64, next_pow2(M))),
                BLOCK_N=64,
                BLOCK_K=32,
                GROUP_M=8,
                num_warps=4,
                num_stages=4,
            )
        return dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=32, GROUP_M=8, num_warps=8, num_stages=3)
    # Measured on an H100 (bench/gpu_sweep.py, fp16, 2026-11-24; bench/RESULTS_gpu.md): at M = 128 every
    # config lands at 8-14 us, launch- and latency-bound, and deep K tiles with narrow N tiles do best; at
    # M = 4096, 128x128x64 tiles with 4 warps and 3 stages beat 8 warps by 5-9% on the GEMMs without an
    # activation. All of them stay 1.2-1.7x slower than cuBLAS there (see RESULTS_gpu.md).
    if M <= 256:  # weight-streaming bound: narrow N tiles -> more CTAs reading W in parallel
        return dict(
            BLOCK_M=max(16, min(64, next_pow2(M))),
            BLOCK_N=32 if N <= 1024 else 64,
            BLOCK_K=128,
            GROUP_M=8,
            num_warps=4,
            num_stages=4,
        )
    if M <= 1024:
        return dict(BLOCK_M=64, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=4, num_stages=4)
    # The activation epilogue needs 8 warps: with 4 (and with 128x256 tiles) ptxas spills (compile_check).
    return dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8 if act else 4, num_stages=3)


def _launch(x, weight, bias, act, residual, config=None):
    if act not in ACTIVATIONS:
        raise ValueError(f"linear: activation must be one of {list(ACTIVATIONS)}, got {act!r}")
    lead = x.shape[:-1]
    x2 = check_rows("linear x", x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x)
    weight = check_rows("linear weight", weight)
    M, K = x2.shape
    N = weight.shape[0]
    if weight.shape[1] != K:
        raise ValueError(f"linear: x has {K} features but weight is {tuple(weight.shape)}")
    if x2.dtype != weight.dtype:
        raise TypeError(f"linear: x is {x2.dtype} but weight is {weight.dtype}")
    if bias is not None:
        bias = bias.contiguous()
        if bias.shape != (N,):
            raise ValueError(f"linear: bias must have shape ({N},), got {tuple(bias.shape)}")
    if x2.is_cuda and act is None and residual is None and not config and M and N:
        # Nothing to fuse: cuBLASLt's GEMM with its bias epilogue is one kernel, and faster than this one on an
        # H100 (bench/gpu_sweep.py, fp16, M = 4096: QKV 29 vs 40 us, out 14 vs 16, FFN-out 32 vs 42; M = 128
        # equal or better). The Triton kernel keeps the GEMMs with an epilogue to fuse (GELU, residual).
        y = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
        return y.reshape(*lead, N)
    y = torch.empty((M, N), dtype=x2.dtype, device=x2.device)
    if M == 0 or N == 0:
        return y.reshape(*lead, N)
    if residual is not None:
        residual = check_rows("linear residual", residual.reshape(M, N))
    cfg = dict(_config(M, N, K, x2.dtype, act))
    if config:
        cfg.update(config)
    grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
    _linear_kernel[grid](
        x2,
        weight,
        bias if bias is not None else weight,
        residual if residual is not None else y,
        y,
        M,
        N,
        K,
        x2.stride(0),
        weight.stride(0),
        residual.stride(0) if residual is not None else 0,
        y.stride(0),
        HAS_BIAS=bias is not None,
        HAS_RES=residual is not None,
        ACT=ACTIVATIONS[act],
        EVEN_K=K % cfg["BLOCK_K"] == 0,
        UPCAST=upcast_dot(x2.dtype),
        PREC=dot_precision(x2.dtype),
        **cfg,
    )
    return y.reshape(*lead, N)


# ----------------------------------------------------------------------------------------------------------
# torch.library registration
# ----------------------------------------------------------------------------------------------------------
@torch.library.custom_op("distilbert_fast_triton::linear", mutates_args=())
def _linear_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    act: str | None,
    residual: torch.Tensor | None,
) -> torch.Tensor:
    return _launch(x, weight, bias, act, residual)


@_linear_op.register_fake
def _(x, weight, bias, act, residual):
    torch._check(x.shape[-1] == weight.shape[1], lambda: "linear: x / weight feature mismatch")
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


# ----------------------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------------------
def linear_fused(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    act: str | None = None,
    residual: torch.Tensor | None = None,
    config: dict | None = None,
) -> torch.Tensor:
    """act(x @ weight.T + bias) + residual. x: (..., K), weight: (N, K) -> (..., N).
    config overrides block sizes (tests); None = the fixed table."""
    if torch.compiler.is_compiling() and not config:
        return _linear_op(x, weight, bias, act, residual)
    return _launch(x, weight, bias, act, residual, config)


def linear(lin: nn.Linear, x: torch.Tensor, act: str | None = None) -> torch.Tensor:
    """The op-table entry: act(lin(x)) in one kernel."""
    return linear_fused(x, lin.weight, lin.bias, act)


def _key(linears) -> object:
    # Identity, version and (CPU tensors: the interpreter) sampled values of the weights; works for inference
    # tensors too (models built under torch.inference_mode()). See ops/gemm.py weights_key.
    from ..gemm import weights_key

    return weights_key(list(linears))


@torch.compiler.disable  # the cache and its weight fingerprint are state dynamo cannot trace: run it as is
def fused_qkv_weights(
    attn: nn.Module, attr: str = "_dbf_triton_qkv"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """([Wq; Wk; Wv] (3D, D), [bq; bk; bv] (3D,) or None), cached on `attn`, rebuilt when a weight changed."""
    linears = (attn.q_lin, attn.k_lin, attn.v_lin)
    key = _key(linears)
    cached = attn.__dict__.get(attr)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            w = torch.cat([lin.weight.detach() for lin in linears]).contiguous()
            b = (
                None
                if attn.q_lin.bias is None
                else torch.cat([lin.bias.detach() for lin in linears]).contiguous()
            )
        cached = (key, (w, b))
        attn.__dict__[attr] = cached
    return cached[1]


def qkv(attn: nn.Module, x: torch.Tensor):
    """The op-table entry: one GEMM for q, k, v; returns three (N, D) column views of the (N, 3D) output."""
    w, b = fused_qkv_weights(attn)
    return linear_fused(x, w, b).chunk(3, dim=-1)


__all__ = ["ACTIVATIONS", "linear_fused", "linear", "qkv", "fused_qkv_weights"]
