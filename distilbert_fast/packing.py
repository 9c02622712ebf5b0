"""Token layouts: how (batch, seq) token rows are laid out as the 2-D (tokens, dim) matrix the layers run on.

* padded: every (b, s) slot is a row, B*S rows; the attention mask is applied inside attention.
* packed: only the real tokens (attention_mask == 1), concatenated sequence after sequence, with
  cu_seqlens (B+1,) int32 offsets; no layer ever touches padding. Tokens keep the position id of their
  padded slot, so left padding or holes in the mask give exactly the padded model's result.
Conversion happens once at encoder entry (pack) and once at exit (unpack).
"""
from __future__ import annotations

from dataclasses import dataclass

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

    @classmethod
    def padded(cls, batch_size: int, seq_len: int, attention_mask: torch.Tensor | None) -> "Layout":
        return cls(batch_size, seq_len, attention_mask, packed=False, max_seqlen=seq_len)

    @classmethod
    def packed_from_mask(cls, batch_size: int, seq_len: int, attention_mask: torch.Tensor | None,
                         device: torch.device) -> "Layout":
        if attention_mask is None:
            lens = torch.full((batch_size,), seq_len, dtype=torch.int32, device=device)
            indices = torch.arange(batch_size * seq_len, device=device)
        else:
            keep = attention_mask.reshape(-1).bool()
            indices = keep.nonzero().squeeze(1)
            lens = attention_mask.bool().sum(1, dtype=torch.int32)
        cu = torch.zeros(batch_size + 1, dtype=torch.int32, device=device)
        torch.cumsum(lens, 0, out=cu[1:])
        return cls(batch_size, seq_len, attention_mask, packed=True, indices=indices, cu_seqlens=cu,
                   max_seqlen=int(lens.max()) if batch_size else 0)

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
