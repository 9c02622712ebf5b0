"""Embeddings in one kernel: y = LN(word_emb[input_ids] + pos_emb[position_ids]), fp32 statistics, eps 1e-12.

input_ids, position_ids: (N,) integer token rows (packed: real tokens only); word_emb (V, D), pos_emb (P, D).
inputs_embeds variant: y = LN(inputs_embeds + pos_emb[position_ids]), inputs_embeds (N, D) rows.

Each program gathers BLOCK_R rows of both tables straight from the embedding matrices (no (N, D) gather
intermediate is written), adds them in fp32 and normalises in registers (layer_norm.py's row routine), so the
embedding layer costs one read of each gathered row and one write of the output.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import nn

from ._utils import LAYER_NORM_EPS, check_rows
from .layer_norm import row_block_config, row_layer_norm


# ----------------------------------------------------------------------------------------------------------
# kernel
# ----------------------------------------------------------------------------------------------------------
@triton.jit
def _embeddings_kernel(
    IDS,
    EMBEDS,
    POS_IDS,
    WORD,
    POS,
    LN_W,
    LN_B,
    Y,
    M,
    D,
    stride_e,
    stride_word,
    stride_pos,
    stride_y,
    eps,
    HAS_IDS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_D)
    row_valid = rows < M
    col_valid = cols < D
    mask = row_valid[:, None] & col_valid[None, :]
    rows64 = rows.to(tl.int64)
    if HAS_IDS:
        ids = tl.load(IDS + rows64, mask=row_valid, other=0).to(tl.int64)
        x = tl.load(WORD + ids[:, None] * stride_word + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    else:
        x = tl.load(EMBEDS + rows64[:, None] * stride_e + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    pos = tl.load(POS_IDS + rows64, mask=row_valid, other=0).to(tl.int64)
    x += tl.load(POS + pos[:, None] * stride_pos + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    y = row_layer_norm(x, mask, LN_W, LN_B, cols, col_valid, D, eps)
    tl.store(Y + rows64[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------------
# launcher
# ----------------------------------------------------------------------------------------------------------
def _launch(input_ids, inputs_embeds, position_ids, word_weight, pos_weight, ln_weight, ln_bias, eps):
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("embeddings: pass exactly one of input_ids or inputs_embeds")
    word_weight = check_rows("word_embeddings", word_weight)
    pos_weight = check_rows("position_embeddings", pos_weight)
    D = pos_weight.shape[1]
    position_ids = position_ids.reshape(-1).contiguous()
    M = position_ids.numel()
    if input_ids is not None:
        input_ids = input_ids.reshape(-1).contiguous()
        if input_ids.numel() != M:
            raise ValueError(f"embeddings: {input_ids.numel()} input_ids but {M} position_ids")
        out_dtype = torch.promote_types(word_weight.dtype, pos_weight.dtype)
    else:
        inputs_embeds = check_rows("inputs_embeds", inputs_embeds.reshape(-1, inputs_embeds.shape[-1]))
        if inputs_embeds.shape != (M, D):
            raise ValueError(f"embeddings: inputs_embeds {tuple(inputs_embeds.shape)} != ({M}, {D})")
        out_dtype = torch.promote_types(inputs_embeds.dtype, pos_weight.dtype)
    y = torch.empty((M, D), dtype=out_dtype, device=pos_weight.device)
    if M == 0:
        return y
    cfg = row_block_config(D)
    grid = (triton.cdiv(M, cfg["BLOCK_R"]),)
    _embeddings_kernel[grid](
        input_ids if input_ids is not None else position_ids,
        inputs_embeds if inputs_embeds is not None else pos_weight,
        position_ids,
        word_weight,
        pos_weight,
        ln_weight.contiguous(),
        ln_bias.contiguous(),
        y,
        M,
        D,
        inputs_embeds.stride(0) if inputs_embeds is not None else 0,
        word_weight.stride(0),
        pos_weight.stride(0),
        y.stride(0),
        float(eps),
        HAS_IDS=input_ids is not None,
        **cfg,
    )
    return y


# ----------------------------------------------------------------------------------------------------------
# torch.library registration
# ----------------------------------------------------------------------------------------------------------
@torch.library.custom_op("distilbert_fast_triton::embeddings", mutates_args=())
def _embeddings_op(
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    position_ids: torch.Tensor,
    word_weight: torch.Tensor,
    pos_weight: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    return _launch(input_ids, inputs_embeds, position_ids, word_weight, pos_weight, ln_weight, ln_bias, eps)


@_embeddings_op.register_fake
def _(input_ids, inputs_embeds, position_ids, word_weight, pos_weight, ln_weight, ln_bias, eps):
    src = word_weight if inputs_embeds is None else inputs_embeds
    return pos_weight.new_empty(
        (position_ids.numel(), pos_weight.shape[1]), dtype=torch.promote_types(src.dtype, pos_weight.dtype)
    )


# ----------------------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------------------
def embeddings_rows(
    input_ids,
    inputs_embeds,
    position_ids,
    word_weight,
    pos_weight,
    ln_weight,
    ln_bias,
    eps: float = LAYER_NORM_EPS,
) -> torch.Tensor:
    """LN(word_weight[input_ids] (or inputs_embeds) + pos_weight[position_ids]) -> (N, D)."""
    if torch.compiler.is_compiling():
        return _embeddings_op(
            input_ids, inputs_embeds, position_ids, word_weight, pos_weight, ln_weight, ln_bias, float(eps)
        )
    return _launch(input_ids, inputs_embeds, position_ids, word_weight, pos_weight, ln_weight, ln_bias, eps)


def embeddings(emb: nn.Module, input_ids, inputs_embeds, position_ids) -> torch.Tensor:
    """The op-table entry: (emb_module, input_ids | None, inputs_embeds | None, position_ids) -> (N, D)."""
    return embeddings_rows(
        input_ids,
        inputs_embeds,
        position_ids,
        emb.word_embeddings.weight,
        emb.position_embeddings.weight,
        emb.LayerNorm.weight,
        emb.LayerNorm.bias,
        emb.LayerNorm.eps,
    )


__all__ = ["embeddings_rows", "embeddings"]
