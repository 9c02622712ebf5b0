"""transformers' PreTrainedModel methods that user code calls on every model class (issue 10, item 3).

A mixin of modeling.DistilBertPreTrainedModel (it knows the models only through their public hooks:
`base_model`, `config`, `get_input_embeddings`, `get_output_embeddings`, `_init_weights`, `tie_weights`),
so every class, DistilBertModelWithHeads included, gets the same behaviour as transformers:

* resize_token_embeddings(n, pad_to_multiple_of=None, mean_resizing=True): the word-embedding module keeps
  its identity, its rows are copied, new rows get the mean of the old ones (mean_resizing, transformers' default)
  or the init distribution; a tied decoder follows, an untied one is resized the same way, a decoder bias is
  padded with zeros (mean for mean_resizing, as transformers); config.vocab_size follows.
* resize_position_embeddings / get_position_embeddings, as transformers' DistilBertModel.
* gradient_checkpointing_enable / disable: the encoder recomputes each block in backward (torch.utils.checkpoint,
  RNG state preserved, so dropout masks and gradients are the same as without it).
* from_config / _from_config, init_weights, num_parameters(only_trainable=, exclude_embeddings=),
  main_input_name.

Any change of the weights' shapes or identity drops the backends' prepared copies (ops.drop_prepared), so
no prepacked GEMM weight can outlive the weights it was packed from.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import ops as ops_mod


def _padded_count(n: int | None, old: int, pad_to_multiple_of: int | None) -> int:
    n = old if n is None else n
    if pad_to_multiple_of is not None:
        if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        n = math.ceil(n / pad_to_multiple_of) * pad_to_multiple_of
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"new_num_tokens must be a positive int, got {n!r}")
    return n


@torch.no_grad()
def _mean_rows(old: torch.Tensor, n_new: int) -> torch.Tensor:
    """transformers' mean resizing: new rows ~ N(mean, 1e-9 * covariance) of the old rows (the mean itself
    when the covariance is not positive definite)."""
    w = old.float()
    mean = w.mean(0)
    centered = w - mean
    cov = centered.T @ centered / w.shape[0]
    try:
        dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=1e-9 * cov)
        rows = dist.sample((n_new,))
    except (ValueError, RuntimeError):  # not positive definite
        rows = mean[None].expand(n_new, -1)
    return rows.to(old.dtype)


class PreTrainedModelMixin:
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True

    # -- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config, backend: str | None = None, **kwargs):
        """A randomly initialised model of this class for `config` (transformers' AutoModel.from_config)."""
        if kwargs:
            config = type(config).from_dict(config.to_dict(), **kwargs)
        return cls(config, backend=backend)

    @classmethod
    def _from_config(cls, config, **kwargs):
        return cls.from_config(config, **kwargs)

    def init_weights(self) -> None:
        """Re-initialise every weight as a new model (transformers' init), then tie."""
        self.post_init()
        ops_mod.drop_prepared(self)

    # -- embeddings ----------------------------------------------------------------------------------------
    def get_output_embeddings(self):
        """The vocabulary projection for MLM classes; None otherwise (transformers)."""
        return None

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} has no output embeddings (transformers: only LM "
            "heads define set_output_embeddings)"
        )

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if not isinstance(value, nn.Embedding) or value.embedding_dim != self.config.dim:
            raise ValueError(
                f"set_input_embeddings expects an nn.Embedding(n, dim={self.config.dim}), got {value!r}"
            )
        self.base_model.embeddings.word_embeddings = value
        self.config.vocab_size = value.num_embeddings
        self.tie_weights()
        ops_mod.drop_prepared(self)

    def get_position_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.position_embeddings

    @torch.no_grad()
    def resize_token_embeddings(
        self,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> nn.Embedding:
        emb = self.get_input_embeddings()
        old_n = emb.num_embeddings
        if new_num_tokens is None and pad_to_multiple_of is None:
            return emb
        n = _padded_count(new_num_tokens, old_n, pad_to_multiple_of)
        out = self.get_output_embeddings()
        tied = out is not None and out.weight is emb.weight
        emb.weight = nn.Parameter(
            self._resized_rows(emb.weight, n, mean_resizing), requires_grad=emb.weight.requires_grad
        )
        emb.num_embeddings = n
        if emb.padding_idx is not None and emb.padding_idx >= n:
            emb.padding_idx = None
        if out is not None:
            if not tied:
                out.weight = nn.Parameter(
                    self._resized_rows(out.weight, n, mean_resizing), requires_grad=out.weight.requires_grad
                )
            if getattr(out, "bias", None) is not None and out.bias.shape[0] != n:
                b = out.bias
                new_b = torch.zeros(n, dtype=b.dtype, device=b.device)
                k = min(n, b.shape[0])
                new_b[:k] = b[:k]
                if mean_resizing and not tied and n > b.shape[0]:
                    new_b[k:] = b.mean()
                out.bias = nn.Parameter(new_b, requires_grad=b.requires_grad)
            out.out_features = n
        self.config.vocab_size = n
        if self.config.pad_token_id is not None and self.config.pad_token_id >= n:
            self.config.pad_token_id = None
        self.tie_weights()
        ops_mod.drop_prepared(self)  # prepacked decoder weights were packed from the old matrix
        return emb

    def _resized_rows(self, w: torch.Tensor, n: int, mean_resizing: bool) -> torch.Tensor:
        new = nn.Embedding(n, w.shape[1], device=w.device, dtype=w.dtype)
        self._init_weights(new)  # transformers' init for the new rows
        k = min(n, w.shape[0])
        new.weight[:k] = w[:k]
        if mean_resizing and n > w.shape[0]:
            new.weight[k:] = _mean_rows(w, n - k)
        return new.weight.detach()

    @torch.no_grad()
    def resize_position_embeddings(self, new_num_position_embeddings: int) -> None:
        """As transformers' DistilBertModel: keep the first rows (recompute the table when sinusoidal), config
        follows."""
        n = new_num_position_embeddings
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"new_num_position_embeddings must be a positive int, got {n!r}")
        base = self.base_model
        old = base.embeddings.position_embeddings.weight
        if n == old.shape[0]:
            return
        self.config.max_position_embeddings = n
        new = nn.Embedding(n, self.config.dim, device=old.device, dtype=old.dtype)
        if self.config.sinusoidal_pos_embds:
            base.embeddings.position_embeddings = new
            self._init_weights(base.embeddings)  # recomputes the sinusoidal table
        else:
            self._init_weights(new)
            k = min(n, old.shape[0])
            new.weight[:k] = old[:k]
            base.embeddings.position_embeddings = new
        base.register_buffer("position_ids", torch.arange(n, device=old.device)[None], persistent=False)
        ops_mod.drop_prepared(self)

    # -- training ------------------------------------------------------------------------------------------
    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.base_model, "gradient_checkpointing", False))

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each transformer block in backward instead of storing its activations (training only).
        gradient_checkpointing_kwargs go to torch.utils.checkpoint.checkpoint (default use_reentrant=False)."""
        kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        self.base_model.gradient_checkpointing = True
        self.base_model.gradient_checkpointing_kwargs = kwargs

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.gradient_checkpointing = False

    # -- counting ------------------------------------------------------------------------------------------
    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters counted once each (a tied decoder is the embedding matrix); as transformers."""
        emb_ids = (
            {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
            if exclude_embeddings
            else set()
        )
        params = {id(p): p for p in self.parameters()}
        return sum(
            p.numel()
            for i, p in params.items()
            if i not in emb_ids and (p.requires_grad or not only_trainable)
        )
