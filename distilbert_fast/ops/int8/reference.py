"""int8 quantization math in plain PyTorch: the ground truth the fused C++ kernels are tested against, and
the int8 path of the torch backend.

Scheme (chosen by bench/bench_int8_accuracy.py on real text, see bench/RESULTS.md):
  * weights: per-output-channel symmetric int8, scale_w[n] = max|W[n, :]| / 127, q = round(W / scale_w);
  * activations: dynamic per-token (per-row) symmetric int8, scale_x[r] = max|x[r, :]| / 127,
    q = round(x * (127 / max|x[r, :]|)) (round half to even, like the AVX-512 conversion); an all-zero row
    gets scale 1 and zeros. Rows are stored as uint8 q + 128 (zero point 128): oneDNN's VNNI GEMM is
    u8 x s8, and an s8 source fell to a reference kernel orders of magnitude slower on this CPU;
  * GEMM: exact int32 accumulation of q_x @ q_w^T, then y = acc * scale_x[r] * scale_w[n] + bias[n],
    activation in fp32; LayerNorm statistics and attention stay in floating point.
The order of the fp32 operations is the one the C++ kernels use, so both sides agree to the last bit
wherever their fp32 inputs agree.
"""

from __future__ import annotations

import torch

from .. import reference as fp_ref

QMAX = 127.0
ZERO_POINT = 128  # activation rows are uint8 q + 128


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> (int8 (out, in), fp32 scale (out,)), per-output-channel symmetric."""
    w = w.detach().float()
    amax = w.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    q = torch.round(w / scale[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return q, scale


def dequantize_weight(
    q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The float weight the int8 weight stands for: q * scale (what the reference path computes with)."""
    return (q.float() * scale[:, None]).to(dtype)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) float rows -> (uint8 q + 128 (N, D), fp32 scale (N,)): dynamic per-token symmetric."""
    xf = x.float()
    amax = xf.abs().amax(dim=1) if xf.shape[1] else xf.new_zeros(xf.shape[0])
    nz = amax > 0
    # a true fp32 division, as the kernel (`127.0 / t` would be reciprocal(t) * 127: 1 ulp off)
    inv = torch.where(nz, torch.full_like(amax, QMAX).div(torch.where(nz, amax, 1.0)), 0.0)
    q = (torch.round(xf * inv[:, None]).clamp_(-QMAX, QMAX) + ZERO_POINT).to(torch.uint8)
    scale = torch.where(nz, amax / QMAX, 1.0)
    return q, scale


def int_matmul(qx: torch.Tensor, qw: torch.Tensor) -> torch.Tensor:
    """Exact int32 accumulation of (qx - 128) (N, K) @ qw (M, K)^T -> (N, M) int32; qx uint8 rows with zero
    point 128, qw int8. float64 holds every partial sum exactly (|sum| <= 127*127*K << 2**53)."""
    return ((qx.double() - ZERO_POINT) @ qw.double().T).to(torch.int32)


def dequantize(
    acc: torch.Tensor,
    x_scale: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None,
    act: str | None = None,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """act(acc * x_scale[r] * w_scale[n] + bias[n]) in fp32, then cast. The kernel order: the GEMM applies
    w_scale to the int32 sum, the epilogue multiplies by x_scale and adds the bias."""
    y = acc.float() * w_scale.float()[None, :]
    y = y * x_scale.float()[:, None]
    if bias is not None:
        y = y + bias.float()
    if act is not None:
        y = fp_ref.activation(y, act)
    return y.to(out_dtype)


def linear(
    qx: torch.Tensor,
    x_scale: torch.Tensor,
    qw: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None,
    act: str | None = None,
    out_dtype: torch.dtype = torch.float32,
):
    """The int8 linear layer on quantized rows: act(dequant(qx @ qw^T) + bias)."""
    return dequantize(int_matmul(qx, qw), x_scale, w_scale, bias, act, out_dtype)


def layer_norm_quant(x, residual, weight, bias, eps: float = fp_ref.LAYER_NORM_EPS):
    """LayerNorm(x (+ residual)) in x's dtype, and its rows quantized: (y, q, scale)."""
    y = fp_ref.layer_norm(x if residual is None else x + residual, weight, bias, eps)
    return (y, *quantize_rows(y))


def embeddings_quant(
    input_ids, position_ids, word_weight, pos_weight, ln_weight, ln_bias, eps: float = fp_ref.LAYER_NORM_EPS
):
    """LayerNorm(word[ids] + pos[positions]) and its quantized rows: (y, q, scale)."""
    y = fp_ref.embeddings(input_ids, None, position_ids, word_weight, pos_weight, ln_weight, ln_bias, eps)
    return (y, *quantize_rows(y))


def epilogue(
    acc_scaled: torch.Tensor,
    x_scale: torch.Tensor,
    bias: torch.Tensor | None,
    act: str | None,
    out_dtype: torch.dtype,
    want_quant: bool,
):
    """What the C++ epilogue computes from the GEMM's fp32 output acc*w_scale: y = act(. * x_scale + bias)
    in out_dtype, and (want_quant) y's rows quantized. Returns (y, q | None, scale | None)."""
    y = acc_scaled.float() * x_scale.float()[:, None]
    if bias is not None:
        y = y + bias.float()
    if act is not None:
        y = fp_ref.activation(y, act)
    y = y.to(out_dtype)
    if not want_quant:
        return y, None, None
    return (y, *quantize_rows(y))
