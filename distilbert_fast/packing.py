"""Token layouts: how (batch, seq) token rows are laid out as the 2-D (tokens, dim) matrix the layers run on.

* padded: every (b, s) slot is a row, B*S rows; the attention mask is applied inside attention.
* packed: only the real tokens (attention_mask == 1), concatenated sequence after sequence, with
  cu_seqlens (B+1,) int32 offsets; no layer ever touches padding. Tokens keep the position id of their
  padded slot, so left padding or holes in the mask give exactly the padded model's result.
* static (`Layout.static`): every (b, s) slot is a row like padded, but the rows also carry cu_seqlens
  [0, S, 2S, ...] and `seqused` (real right-padded tokens per sequence, on the device) so the varlen attention
  kernels skip the padded keys. No host sync builds it: what a CUDA graph captures (cuda_graphs.py).
* packed with extra rows (`packed_from_mask(..., extra=)`): a sequence's real tokens, then the padded
  positions a loss reads (labels at padding, QA logits over the whole padded length). `seqused` = the real
  count, so those rows are queries only: they attend to the real keys, exactly as transformers computes
  hidden states at padded positions, and never change a real token's result.
Conversion happens once at encoder entry (pack) and once at exit (unpack).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class Layout:
    batch_size: int
    seq_len: int
    attention_mask: torch.Tensor | None  # (B, S) or None (= all tokens real)
    packed: bool = False
    indices: torch.Tensor | None = None  # (N,) int64 flat indices of real tokens into B*S (packed only)
    cu_seqlens: torch.Tensor | None = None  # (B+1,) int32 (packed only)
    max_seqlen: int = 0
    seqused: torch.Tensor | None = None  # (B,) int32 keys per sequence (static, or packed with extra rows)

    @classmethod
    def padded(cls, batch_size: int, seq_len: int, attention_mask: torch.Tensor | None) -> Layout:
        return cls(batch_size, seq_len, attention_mask, packed=False, max_seqlen=seq_len)

    @classmethod
    def packed_from_mask(
        cls,
        batch_size: int,
        seq_len: int,
        attention_mask: torch.Tensor | None,
        device: torch.device,
        extra: torch.Tensor | None = None,
    ) -> Layout:
        """extra: (B, S) bool, padded positions to compute as well (queries only, after the sequence's real
        tokens); None or nothing extra gives the plain padding-free layout."""
        if attention_mask is not None and extra is not None:
            real = attention_mask.bool()
            extra = extra.to(device=real.device, dtype=torch.bool) & ~real
            if bool(extra.any()):
                return cls._packed_with_extra(batch_size, seq_len, real, extra, attention_mask)
        if attention_mask is None:
            lens = torch.full((batch_size,), seq_len, dtype=torch.int32, device=device)
            indices = torch.arange(batch_size * seq_len, device=device)
        else:
            keep = attention_mask.reshape(-1).bool()
            indices = keep.nonzero().squeeze(1)
            lens = attention_mask.bool().sum(1, dtype=torch.int32)
        cu = torch.zeros(batch_size + 1, dtype=torch.int32, device=device)
        torch.cumsum(lens, 0, out=cu[1:])
        return cls(
            batch_size,
            seq_len,
            attention_mask,
            packed=True,
            indices=indices,
            cu_seqlens=cu,
            max_seqlen=int(lens.max()) if batch_size else 0,
        )

    @classmethod
    def _packed_with_extra(
        cls, B: int, S: int, real: torch.Tensor, extra: torch.Tensor, attention_mask
    ) -> Layout:
        # Row order per sequence: real tokens (slot order), then the extra slots (slot order). A stable sort
        # of the kept slots by (sequence, real-first) gives exactly that.
        keep = (real | extra).reshape(-1)
        slots = keep.nonzero().squeeze(1)
        seq = slots // S
        key = seq * 2 + (~real.reshape(-1)[slots]).long()
        indices = slots[torch.sort(key, stable=True).indices]
        lens = (real | extra).sum(1, dtype=torch.int32)
        cu = torch.zeros(B + 1, dtype=torch.int32, device=real.device)
        torch.cumsum(lens, 0, out=cu[1:])
        return cls(
            B,
            S,
            attention_mask,
            packed=True,
            indices=indices,
            cu_seqlens=cu,
            max_seqlen=int(lens.max()) if B else 0,
            seqused=real.sum(1, dtype=torch.int32),
        )

    @classmethod
    def static(cls, batch_size: int, seq_len: int, attention_mask: torch.Tensor) -> Layout:
        """Padded rows plus cu_seqlens/seqused for the varlen kernels; attention_mask (B, S) must be right
        padding. Only device ops: graph-capturable."""
        device = attention_mask.device
        cu = torch.arange(0, (batch_size + 1) * seq_len, seq_len, dtype=torch.int32, device=device)
        return cls(
            batch_size,
            seq_len,
            None,
            packed=False,
            cu_seqlens=cu,
            max_seqlen=seq_len,
            seqused=attention_mask.sum(1, dtype=torch.int32),
        )

    def replicate(self, k: int) -> Layout:
        """The layout of k copies of the batch, copy after copy: (B sequences) -> (k*B sequences)."""
        B, S = self.batch_size, self.seq_len
        mask = None if self.attention_mask is None else self.attention_mask.repeat(k, 1)
        if self.seqused is not None and not self.packed:  # static: rows stay padded slots, k*B of them
            cu = torch.arange(0, (k * B + 1) * S, S, dtype=torch.int32, device=self.cu_seqlens.device)
            return replace(
                self, batch_size=k * B, attention_mask=mask, cu_seqlens=cu, seqused=self.seqused.repeat(k)
            )
        if not self.packed:
            return replace(self, batch_size=k * B, attention_mask=mask)
        n = self.indices.numel()
        offsets = torch.arange(k, device=self.indices.device)
        indices = (self.indices[None, :] + offsets[:, None] * (B * S)).reshape(-1)
        cu = self.cu_seqlens
        cu = torch.cat(
            [(cu[:-1][None, :] + offsets[:, None].to(cu.dtype) * n).reshape(-1), cu.new_tensor([k * n])]
        )
        seqused = None if self.seqused is None else self.seqused.repeat(k)
        return replace(
            self, batch_size=k * B, attention_mask=mask, indices=indices, cu_seqlens=cu, seqused=seqused
        )

    @property
    def num_tokens(self) -> int:
        return int(self.indices.numel()) if self.packed else self.batch_size * self.seq_len

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, ...) -> (N, ...)."""
        flat = x.reshape(self.batch_size * self.seq_len, *x.shape[2:])
        return flat.index_select(0, self.indices) if self.packed else flat

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, S, ...); padding slots are zero in the packed layout."""
        if not self.packed:
            return x.view(self.batch_size, self.seq_len, *x.shape[1:])
        out = x.new_zeros(self.batch_size * self.seq_len, *x.shape[1:])
        out.index_copy_(0, self.indices, x)
        return out.view(self.batch_size, self.seq_len, *x.shape[1:])

    def first_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Row of position 0 ([CLS]) of every sequence: (N, D) -> (B, D). In the packed layout a sequence's
        first row is its slot 0 only if slot 0 is a real token; the encoder never packs otherwise."""
        if not self.packed:
            return x.view(self.batch_size, self.seq_len, -1)[:, 0]
        return x.index_select(0, self.cu_seqlens[:-1].long())
