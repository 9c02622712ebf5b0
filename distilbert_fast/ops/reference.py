"""Plain-PyTorch reference ops: ground truth for every fast kernel, autograd-capable, and the CPU fallback.

Each function computes exactly what transformers' DistilBERT computes (same formulas, same order of the
floating-point operations where it matters), so the model on this backend equals transformers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LAYER_NORM_EPS = 1e-12  # DistilBERT hard-codes it; too small for fp16 statistics, so always compute in fp32.


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    # transformers' NewGELUActivation, written out: F.gelu(approximate="tanh") differs in the last bits.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATION_FNS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "gelu_new": gelu_new}


def activation(x: torch.Tensor, name: str) -> torch.Tensor:
    return ACTIVATION_FNS[name](x)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: str | None = None):
    """y = act(x @ weight.T + bias). x: (..., in), weight: (out, in) -> (..., out)."""
    y = F.linear(x, weight, bias)
    return y if act is None else activation(y, act)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = LAYER_NORM_EPS):
    if x.dtype in (torch.float16, torch.bfloat16):
        # fp32 statistics: eps=1e-12 underflows in half precision.
        return F.layer_norm(x.float(), x.shape[-1:], weight.float(), bias.float(), eps).to(x.dtype)
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def add_layer_norm(x, residual, weight, bias, eps: float = LAYER_NORM_EPS):
    """LayerNorm(x + residual) over the last dim."""
    return layer_norm(x + residual, weight, bias, eps)


def embeddings(
    input_ids,
    inputs_embeds,
    position_ids,
    word_weight,
    pos_weight,
    ln_weight,
    ln_bias,
    eps: float = LAYER_NORM_EPS,
):
    """LayerNorm(word_emb[input_ids] (or inputs_embeds) + pos_emb[position_ids]).

    input_ids/position_ids: (...,) int64; inputs_embeds: (..., dim) -> (..., dim)
    """
    x = F.embedding(input_ids, word_weight) if inputs_embeds is None else inputs_embeds
    return layer_norm(x + F.embedding(position_ids, pos_weight), ln_weight, ln_bias, eps)


def attention(
    q, k, v, layout, n_heads: int, head_mask=None, dropout_p: float = 0.0, need_weights: bool = False
):
    """Multi-head scaled dot-product attention with key masking, on the padded layout.

    q, k, v: (B*S, dim) token rows (layout.packed is False); head_mask: (n_heads,) or None.
    Returns (context (B*S, dim), probs (B, H, S, S) or None).
    Masked keys get finfo.min added like transformers' eager path, so a fully masked row softmaxes to a
    uniform distribution: finite, never NaN.
    """
    B, S = layout.batch_size, layout.seq_len
    dim = q.shape[-1]
    hd = dim // n_heads

    def heads(t):  # (B*S, dim) -> (B, H, S, hd)
        return t.view(B, S, n_heads, hd).transpose(1, 2)

    scores = torch.matmul(heads(q), heads(k).transpose(2, 3)) * hd**-0.5  # (B, H, S, S)
    if layout.attention_mask is not None:
        keep = layout.attention_mask[:, None, None, :].bool()  # (B, 1, 1, S)
        scores = scores + torch.where(keep, 0.0, torch.finfo(scores.dtype).min).to(scores.dtype)
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    if head_mask is not None:
        probs = probs * head_mask.to(probs.dtype)[None, :, None, None]
    ctx = torch.matmul(probs, heads(v))  # (B, H, S, hd)
    ctx = ctx.transpose(1, 2).reshape(B * S, dim)
    return ctx, (probs if need_weights else None)
