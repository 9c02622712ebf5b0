"""Variable-length multi-head attention forward, FlashAttention-2 style, on packed token rows.

Layout: q, k, v are (N, D) token rows, D = n_heads * head_dim, sequences concatenated one after another;
`cu_seqlens` (B+1,) int32 holds the offsets (sequence b owns rows cu[b] .. cu[b+1]). Each may be a row-strided
column view of a fused (N, 3D) QKV GEMM output: only the column stride must be 1.

One program computes one (query block, sequence, head) tile:
  * q tile (BLOCK_M, head_dim) loaded once, kept in registers;
  * loop over the key blocks of *its own* sequence only (keys past the sequence's end are never visited;
    the last partial block is masked), S = q k^T in fp32, online softmax (running max m, running sum l,
    exp2 with log2(e) folded into the scale), acc = acc * alpha + P v;
  * epilogue: acc * head_mask[h] / l, cast, store.  Zero-length sequences and query blocks past a sequence's
    end exit at once and write nothing; a sequence with no usable keys (`seqused` = 0, CUDA-graph padding
    rows) writes zeros, never NaN.
head_dim need not be a power of two: the tile's feature axis is padded to BLOCK_D = next_pow2(max(head_dim,
16)) with masked loads (zeros contribute nothing to q k^T and are not stored).

`seqused` (B,) int32, optional: only the first seqused[b] keys of sequence b are attended to while all of its
rows are still computed. That is the padded-but-static layout the CUDA-graph runner captures (every (b, s)
slot is a row, right padding masked through seqused), so one captured graph serves any mask.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ._utils import INTERPRET, check_rows, dot_precision, next_pow2, upcast_dot

LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------------------------------------
# kernel
# ----------------------------------------------------------------------------------------------------------
@triton.jit
def _varlen_attn_fwd_kernel(
    Q,
    K,
    V,
    OUT,
    CU_SEQLENS,
    SEQUSED,
    HEAD_MASK,
    stride_q,
    stride_k,
    stride_v,
    stride_o,
    qk_scale,  # softmax scale * log2(e)
    head_dim,
    HAS_SEQUSED: tl.constexpr,
    HAS_HEAD_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr,
    PREC: tl.constexpr,
):
    pid_m = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2)

    start = tl.load(CU_SEQLENS + seq)
    seqlen = tl.load(CU_SEQLENS + seq + 1) - start
    if pid_m * BLOCK_M >= seqlen:  # short sequence (or empty): this query block has no rows
        return
    if HAS_SEQUSED:
        kv_len = tl.minimum(tl.load(SEQUSED + seq), seqlen)
    else:
        kv_len = seqlen

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_valid = offs_m < seqlen
    d_valid = offs_d < head_dim
    col0 = head * head_dim
    q_rows = (start + offs_m).to(tl.int64)

    q = tl.load(
        Q + q_rows[:, None] * stride_q + col0 + offs_d[None, :],
        mask=m_valid[:, None] & d_valid[None, :],
        other=0.0,
    )

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # Only this sequence's key blocks; every visited block holds >= 1 valid key, so m_i is finite after it.
    for start_n in range(0, kv_len, BLOCK_N):
        cols = start_n + offs_n
        n_valid = cols < kv_len
        k_rows = (start + cols).to(tl.int64)
        kt = tl.load(
            K + k_rows[None, :] * stride_k + col0 + offs_d[:, None],
            mask=d_valid[:, None] & n_valid[None, :],
            other=0.0,
        )  # (BLOCK_D, BLOCK_N) = k^T
        # (dots inlined rather than a helper: nested jit calls are very slow under the interpreter)
        if UPCAST:
            s = tl.dot(q.to(tl.float32), kt.to(tl.float32), input_precision="ieee")
        else:
            s = tl.dot(q, kt, input_precision=PREC)
        s = tl.where(n_valid[None, :], s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            V + k_rows[:, None] * stride_v + col0 + offs_d[None, :],
            mask=n_valid[:, None] & d_valid[None, :],
            other=0.0,
        )
        acc = acc * alpha[:, None]
        if UPCAST:
            acc = tl.dot(p.to(v.dtype).to(tl.float32), v.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PREC)
        m_i = m_new

    inv_l = 1.0 / tl.where(l_i > 0.0, l_i, 1.0)  # l_i == 0 only with no keys at all; then acc == 0
    if HAS_HEAD_MASK:
        gain = tl.load(HEAD_MASK + head).to(tl.float32)
        # A masked head is exact zeros even for non-finite inputs, as in the cpp kernel, which skips the head.
        acc = tl.where(gain == 0.0, 0.0, acc)
        inv_l = inv_l * gain
    out = acc * inv_l[:, None]
    tl.store(
        OUT + q_rows[:, None] * stride_o + col0 + offs_d[None, :],
        out.to(OUT.dtype.element_ty),
        mask=m_valid[:, None] & d_valid[None, :],
    )


# ----------------------------------------------------------------------------------------------------------
# launcher
# ----------------------------------------------------------------------------------------------------------
@functools.cache
def _num_sms(device_index: int | None) -> int:
    """SM count (132 on an H100 SXM); only used to pick the query-block size for small batches."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(device_index or 0).multi_processor_count
    return 132


def _config(
    batch: int, n_heads: int, max_seqlen: int, head_dim: int, dtype: torch.dtype, num_sms: int = 132
) -> dict:
    """Fixed block config per bucket (no autotuning). See docs/triton_design.md."""
    block_d = max(16, next_pow2(head_dim))
    if INTERPRET:
        # numpy interpreter: cost ~ number of programs x ops per program, so fewer, larger tiles.
        b = min(64, max(16, next_pow2(max_seqlen)))
        return dict(BLOCK_M=b, BLOCK_N=b, BLOCK_D=block_d, num_warps=4, num_stages=1)
    # GPU. 128-row query tiles halve K/V re-reads and suit the tensor cores, but a 1x128 batch would then
    # give only n_heads programs on a 132-SM part: drop to 64-row tiles when the grid would be under 2 waves.
    block_m = 128 if batch * n_heads * triton.cdiv(max_seqlen, 128) >= 2 * num_sms else 64
    if max_seqlen <= 64:
        block_m = 64 if max_seqlen > 32 else 32
    if dtype == torch.float32:
        # fp32 runs an FMA (ieee) or tf32 dot with its operands in registers: smaller tiles, or ptxas spills
        # (compile_check: 64x64 tiles at head_dim 64 need > 255 registers per thread).
        if block_d <= 64:
            bm = min(block_m, 64)
            return dict(BLOCK_M=bm, BLOCK_N=32, BLOCK_D=block_d, num_warps=8 if bm == 64 else 4, num_stages=2)
        if block_d <= 128:
            return dict(BLOCK_M=32, BLOCK_N=16, BLOCK_D=block_d, num_warps=4, num_stages=2)
        return dict(BLOCK_M=32, BLOCK_N=16, BLOCK_D=block_d, num_warps=8, num_stages=1)
    # 128-row tiles get 8 warps: with 4, ptxas needs ~230 registers per thread at head_dim 64 (S and acc tiles
    # both live), at the edge of spilling (distilbert_fast.ops.triton.compile_check prints the numbers).
    if block_d <= 64:
        return dict(
            BLOCK_M=block_m, BLOCK_N=64, BLOCK_D=block_d, num_warps=8 if block_m == 128 else 4, num_stages=3
        )
    if block_d <= 128:
        return dict(BLOCK_M=block_m, BLOCK_N=64, BLOCK_D=block_d, num_warps=8, num_stages=2)
    return dict(BLOCK_M=64, BLOCK_N=32, BLOCK_D=block_d, num_warps=8, num_stages=1)


def _launch(q, k, v, cu_seqlens, max_seqlen, n_heads, scale, head_mask, seqused, block_m, block_n):
    q, k, v = (check_rows(n, t) for n, t in (("q", q), ("k", k), ("v", v)))
    N, D = q.shape
    if k.shape != (N, D) or v.shape != (N, D):
        raise ValueError(
            f"varlen_attention: q, k, v must share one (N, D) shape, got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"varlen_attention: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")
    if D % n_heads:
        raise ValueError(f"varlen_attention: dim {D} is not divisible by n_heads={n_heads}")
    head_dim = D // n_heads
    out = torch.empty((N, D), dtype=q.dtype, device=q.device)
    batch = cu_seqlens.numel() - 1
    if N == 0 or batch <= 0 or max_seqlen <= 0:
        return out
    if cu_seqlens.dtype != torch.int32:
        cu_seqlens = cu_seqlens.to(torch.int32)
    cu_seqlens = cu_seqlens.contiguous()
    if seqused is not None:
        seqused = seqused.to(torch.int32).contiguous()
    if head_mask is not None:
        if head_mask.numel() != n_heads:
            raise ValueError(
                f"varlen_attention: head_mask must have n_heads={n_heads} entries, "
                f"got shape {tuple(head_mask.shape)}"
            )
        head_mask = head_mask.reshape(n_heads).to(device=q.device, dtype=torch.float32).contiguous()
    num_sms = _num_sms(q.device.index) if q.device.type == "cuda" else 132
    cfg = _config(batch, n_heads, max_seqlen, head_dim, q.dtype, num_sms)
    if block_m:
        cfg["BLOCK_M"] = block_m
    if block_n:
        cfg["BLOCK_N"] = block_n
    grid = (triton.cdiv(max_seqlen, cfg["BLOCK_M"]), batch, n_heads)
    _varlen_attn_fwd_kernel[grid](
        q,
        k,
        v,
        out,
        cu_seqlens,
        seqused if seqused is not None else cu_seqlens,
        head_mask if head_mask is not None else cu_seqlens,
        q.stride(0),
        k.stride(0),
        v.stride(0),
        out.stride(0),
        float(scale) * LOG2E,
        head_dim,
        HAS_SEQUSED=seqused is not None,
        HAS_HEAD_MASK=head_mask is not None,
        UPCAST=upcast_dot(q.dtype),
        PREC=dot_precision(q.dtype),
        **cfg,
    )
    return out


# ----------------------------------------------------------------------------------------------------------
# torch.library registration (torch.compile / export see one opaque op with a fake kernel)
# ----------------------------------------------------------------------------------------------------------
@torch.library.custom_op("distilbert_fast_triton::varlen_attention", mutates_args=())
def _varlen_attention_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    n_heads: int,
    scale: float,
    head_mask: torch.Tensor | None,
    seqused: torch.Tensor | None,
) -> torch.Tensor:
    return _launch(q, k, v, cu_seqlens, max_seqlen, n_heads, scale, head_mask, seqused, 0, 0)


@_varlen_attention_op.register_fake
def _(q, k, v, cu_seqlens, max_seqlen, n_heads, scale, head_mask, seqused):
    torch._check(q.dim() == 2, lambda: "varlen_attention: q must be 2-D (tokens, dim)")
    return q.new_empty(q.shape)


# ----------------------------------------------------------------------------------------------------------
# public function
# ----------------------------------------------------------------------------------------------------------
def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    n_heads: int,
    scale: float | None = None,
    head_mask: torch.Tensor | None = None,
    seqused: torch.Tensor | None = None,
    block_m: int = 0,
    block_n: int = 0,
) -> torch.Tensor:
    """softmax(q k^T * scale) v per sequence and head, then * head_mask[h]. q, k, v: (N, D) -> (N, D).

    scale defaults to head_dim ** -0.5. block_m / block_n override the tile sizes (tests; 0 = automatic)."""
    if scale is None:
        scale = (q.shape[-1] // n_heads) ** -0.5
    if torch.compiler.is_compiling() and not (block_m or block_n):
        return _varlen_attention_op(
            q, k, v, cu_seqlens, int(max_seqlen), n_heads, float(scale), head_mask, seqused
        )
    # Eager: launch directly; the custom-op dispatcher costs more than the launch itself at small batch.
    return _launch(q, k, v, cu_seqlens, int(max_seqlen), n_heads, scale, head_mask, seqused, block_m, block_n)


def attention(
    q, k, v, layout, n_heads: int, head_mask=None, dropout_p: float = 0.0, need_weights: bool = False
):
    """The op-table entry: (q, k, v, layout, n_heads, head_mask, dropout_p, need_weights) -> (ctx, None).

    layout must be packed (cu_seqlens, max_seqlen); an unmasked padded layout is accepted too (every sequence
    is S long). Dropout and attention probabilities are training / introspection features: the model runs the
    reference ops for those, so asking this inference kernel for them is an error."""
    if dropout_p > 0.0:
        raise NotImplementedError(
            "triton attention is inference-only: dropout_p must be 0 (the model runs "
            "the reference ops in training mode)"
        )
    if need_weights:
        raise NotImplementedError(
            "triton attention does not materialise attention probabilities (the model "
            "runs the reference ops when output_attentions=True)"
        )
    seqused = getattr(layout, "seqused", None)  # Layout.static: padded rows, right-padded keys
    if layout.packed or seqused is not None:
        cu, max_seqlen = layout.cu_seqlens, layout.max_seqlen
    elif layout.attention_mask is None:
        S = layout.seq_len
        cu = torch.arange(0, (layout.batch_size + 1) * S, S, dtype=torch.int32, device=q.device)
        max_seqlen = S
    else:
        raise ValueError("triton attention needs a packed layout (or a padded one without attention_mask)")
    hd = q.shape[-1] // n_heads
    ctx = varlen_attention(q, k, v, cu, max_seqlen, n_heads, hd**-0.5, head_mask, seqused)
    return ctx, None


__all__ = ["varlen_attention", "attention"]
