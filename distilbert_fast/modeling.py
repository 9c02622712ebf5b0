"""DistilBERT encoder and every task head, in one file.

Parameter names equal Hugging Face checkpoint keys, so checkpoints load without remapping. The layers never
branch on device or backend: they call `ops.<op>` from the op table resolved once per model
(distilbert_fast/ops). Inside the encoder, activations are a 2-D (tokens, dim) matrix; `Layout`
(packing.py) says whether the rows are every padded (batch, seq) slot or only the real tokens.

Shapes: B batch, S padded sequence length, N token rows (B*S padded, or the real-token count packed),
D dim, H heads, F hidden_dim (FFN width), V vocab size.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from . import ops as ops_mod
from .adapters import ModelAdaptersMixin
from .config import DistilBertConfig
from .loading import from_pretrained as _load_pretrained
from .loading import is_encoder_key
from .loading import save_pretrained as _save_pretrained
from .ops import OpTable
from .ops.reference import LAYER_NORM_EPS
from .outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from .packing import Layout
from .pretrained import PreTrainedModelMixin
from .sync import SharedExclusiveLock

# Whole-model call runners by name, filled by the runtime layer above (cuda_graphs.py registers
# "cuda_graphs" when imported): the model routes calls to a runner without importing the runtime.
CALL_RUNNERS: dict[str, Any] = {}


def register_call_runner(name: str, factory) -> None:
    """factory(model, buckets) -> a callable runner(input_ids, attention_mask) for set_call_runner."""
    CALL_RUNNERS[name] = factory


class SlowPathWarning(UserWarning):
    """An eval-mode call ran the reference ops only because autograd was enabled."""


_warned_slow_path = False


def warn_slow_path(backend: str) -> None:
    """Once per process: an eval-mode call with autograd enabled runs the plain-PyTorch reference ops (they
    record gradients), not the backend's fused kernels."""
    global _warned_slow_path
    if not _warned_slow_path:
        _warned_slow_path = True
        warnings.warn(
            f"distilbert_fast: this eval-mode call runs the slow reference ops instead of the {backend} "
            "kernels because autograd is enabled (the weights require grad). For inference, call the "
            "model under `with torch.inference_mode():` (or torch.no_grad()); training keeps using "
            "the reference ops. Shown once (distilbert_fast.modeling.SlowPathWarning).",
            SlowPathWarning,
            stacklevel=4,
        )


def create_sinusoidal_embeddings(n_pos: int, dim: int) -> torch.Tensor:
    """(n_pos, dim) table of transformers' DistilBERT: computed in float64 by numpy, then cast, bit-equal."""
    pos = np.arange(n_pos)[:, None]
    j = np.arange(dim)[None, :]
    enc = pos / np.power(10000, 2 * (j // 2) / dim)
    out = torch.empty(n_pos, dim)
    out[:, 0::2] = torch.FloatTensor(np.sin(enc[:, 0::2]))
    out[:, 1::2] = torch.FloatTensor(np.cos(enc[:, 1::2]))
    return out


# ----------------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------------
class Embeddings(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, ops: OpTable, input_ids, inputs_embeds, position_ids):
        # input_ids/position_ids: (N,) ; inputs_embeds: (N, D) or None -> (N, D)
        return self.dropout(ops.embeddings(self, input_ids, inputs_embeds, position_ids))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        self.dropout = nn.Dropout(p=config.attention_dropout)

    def forward(self, ops: OpTable, x, layout: Layout, head_mask, need_weights: bool):
        # x: (N, D) -> context (N, D) before out_lin, probs (B, H, S, S) | None. The block applies out_lin,
        # together with the residual LayerNorm after it where the backend fuses the two.
        q, k, v = ops.qkv(self, x)  # each (N, D)
        p = self.dropout.p if self.training else 0.0
        return ops.attention(q, k, v, layout, self.n_heads, head_mask, p, need_weights)


class FFN(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.dropout = nn.Dropout(p=config.dropout)
        self.activation = config.activation

    def forward(self, ops: OpTable, x):
        # x: (N, D) -> act(lin1(x)) (N, F), activation fused where the backend can. The block applies lin2
        # (+ dropout), together with the residual LayerNorm after it where the backend fuses the two.
        return ops.linear(self.lin1, x, self.activation)


class TransformerBlock(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)

    def forward(self, ops: OpTable, x, layout: Layout, head_mask, need_weights: bool, adapters=None):
        # x: (N, D) -> (N, D); post-LayerNorm residual blocks, as in BERT.
        # adapters: None on the plain path, or the call's bottleneck-adapter run (adapters.AdapterRun), which
        # replaces each residual+LayerNorm by the adapter composition (for Parallel it may also replicate the
        # rows: (N, D) -> (k*N, D)).
        ctx, probs = self.attention(ops, x, layout, head_mask, need_weights)
        if adapters is None:  # LN(out_lin(ctx) + x), one op: a backend may fuse the GEMM with the LayerNorm
            x = ops.linear_add_layer_norm(self.attention.out_lin, ctx, self.sa_layer_norm, x)
        else:
            x = adapters.attention_output(self, ops, ops.linear(self.attention.out_lin, ctx), x)
        h = self.ffn(ops, x)
        ffn_dropout = self.training and self.ffn.dropout.p > 0
        if adapters is None and not ffn_dropout:
            x = ops.linear_add_layer_norm(self.ffn.lin2, h, self.output_layer_norm, x)
        else:
            f = self.ffn.dropout(ops.linear(self.ffn.lin2, h))
            x = (
                ops.add_layer_norm(self.output_layer_norm, f, x)
                if adapters is None
                else adapters.ffn_output(self, ops, f, x)
            )
        return x, probs


class Transformer(nn.Module):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.n_layers = config.n_layers
        self.layer = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])


@dataclass
class Encoded:
    """What the encoder hands to the heads: token rows plus their layout, so per-token heads can run on
    the real tokens only and unpack once."""

    hidden: torch.Tensor  # (N, D)
    layout: Layout
    hidden_states: tuple[torch.Tensor, ...] | None  # each (B, S, D)
    attentions: tuple[torch.Tensor, ...] | None  # each (B, H, S, S)

    def padded(self) -> torch.Tensor:
        return self.layout.unpack(self.hidden)  # (B, S, D)

    def first_tokens(self) -> torch.Tensor:
        """The [CLS] (position 0) row of every sequence: (B, D)."""
        return self.layout.first_rows(self.hidden)


# ----------------------------------------------------------------------------------------------------------
# Base class: weights init, backend, checkpoints
# ----------------------------------------------------------------------------------------------------------
class DistilBertPreTrainedModel(ModelAdaptersMixin, PreTrainedModelMixin, nn.Module):
    config_class = DistilBertConfig
    base_model_prefix = "distilbert"

    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__()
        if not isinstance(config, DistilBertConfig):
            raise TypeError(f"config must be a DistilBertConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self._backend_request = backend
        self.ops: OpTable = ops_mod.resolve_backend(backend, self.device)

    # -- init ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' DistilBERT init: normal(0, initializer_range) weights, zero biases, unit LayerNorm."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif (
            isinstance(module, Embeddings)
            and self.config.sinusoidal_pos_embds
            and not module.position_embeddings.weight.is_meta
        ):
            module.position_embeddings.weight.copy_(
                create_sinusoidal_embeddings(self.config.max_position_embeddings, self.config.dim)
            )

    def post_init(self) -> None:
        self.apply(self._init_weights)
        self.tie_weights()
        with torch.no_grad():  # a tied decoder's Linear init redrew the embedding matrix: padding rows stay 0
            for m in self.modules():
                if isinstance(m, nn.Embedding) and m.padding_idx is not None and not m.weight.is_meta:
                    m.weight[m.padding_idx].zero_()

    def tie_weights(self) -> None:
        pass

    # -- properties transformers code relies on ------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the weights are (torch's default device before any exists): what "auto" resolves with."""
        p = next(self.parameters(), None)
        return torch.get_default_device() if p is None else p.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def backend(self) -> str:
        return self.ops.name

    def set_backend(self, backend: str | None) -> DistilBertPreTrainedModel:
        """Switch every op table of the model (encoder included) to `backend`; "auto" / None resolve with
        the model's device (triton on CUDA, cpp on CPU)."""
        table = ops_mod.resolve_backend(backend, self.device)
        for m in self.modules():
            if isinstance(m, DistilBertPreTrainedModel):
                m._backend_request, m.ops = backend, table
        return self

    def _weights_lock(self) -> SharedExclusiveLock:
        lock = self.__dict__.get("_dbf_weights_lock")
        if lock is None:  # setdefault: two threads racing here still share one lock
            lock = self.__dict__.setdefault("_dbf_weights_lock", SharedExclusiveLock())
        return lock

    def _apply(self, fn, *args, **kwargs):
        # .to()/.cuda()/.cpu() land here: an "auto" backend follows the device (triton on CUDA, cpp on CPU).
        # Exclusive: waits for inference calls in flight in other threads, which never see half-converted
        # weights (sync.py, README "Guarantees").
        with self._weights_lock().exclusive(".to()/.cuda()/.half()"):
            out = super()._apply(fn, *args, **kwargs)
        if self._backend_request in (None, "auto"):
            self.ops = ops_mod.resolve_backend(self._backend_request, self.device)
        return out

    def prepare_for_inference(self) -> DistilBertPreTrainedModel:
        """eval() and build the backend's per-weight state now (e.g. oneDNN-prepacked GEMM weights) instead
        of on the first call. Called by from_pretrained. Always rebuilds: every prepared copy is dropped
        first, so after any weight edit (including untracked `.data` / numpy edits, README "Guarantees")
        the next call sees the current weights."""
        self.eval()
        ops_mod.drop_prepared(self)
        self.ops.prepare()
        if self.ops.packed:
            L = min(2, self.config.max_position_embeddings)
            ids = torch.full((1, L), self.config.pad_token_id or 0, dtype=torch.long, device=self.device)
            if isinstance(self, DistilBertForMultipleChoice):
                ids = ids[:, None]
            with torch.no_grad():
                self(ids)
        return self

    def enable_cuda_graphs(self, buckets=None) -> DistilBertPreTrainedModel:
        """Replay CUDA graphs captured per (batch, seq) bucket for plain inference calls
        `model(input_ids, attention_mask)` (small-batch latency on a GPU); any other call runs eagerly.
        Needs the model on a CUDA device and the triton backend (the runtime module cuda_graphs.py)."""
        factory = CALL_RUNNERS.get("cuda_graphs")
        if factory is None:  # registered when distilbert_fast.cuda_graphs is imported (the package does)
            raise RuntimeError("enable_cuda_graphs(): import distilbert_fast.cuda_graphs first")
        return self.set_call_runner(factory(self, buckets))  # the runner raises off-GPU

    def set_call_runner(self, runner) -> DistilBertPreTrainedModel:
        """Route plain inference calls `model(input_ids, attention_mask)` (no grad, eval mode) to
        `runner(input_ids, attention_mask)`; None routes every call to forward again."""
        if runner is None:
            self.__dict__.pop("_call_runner", None)
        else:
            self.__dict__["_call_runner"] = runner  # not a submodule: state_dict / .to() never see it
        return self

    @property
    def call_runner(self):
        return self.__dict__.get("_call_runner")

    def __call__(self, *args, **kwargs):
        runner = self.__dict__.get("_call_runner")
        if (
            runner is not None
            and len(args) <= 2
            and set(kwargs) <= {"input_ids", "attention_mask"}
            and not self.training
            and not torch.is_grad_enabled()
            and self.call_flags() == (False, False, True)
        ):  # config call defaults: plain outputs
            return runner(*args, **kwargs)
        with self._weights_lock().shared():
            return super().__call__(*args, **kwargs)

    @property
    def base_model(self) -> DistilBertModel:
        """The encoder: self for DistilBertModel, `.distilbert` for every head class."""
        return self if isinstance(self, DistilBertModel) else self.distilbert

    def call_flags(
        self, output_attentions=None, output_hidden_states=None, return_dict=None
    ) -> tuple[bool, bool, bool]:
        """A call's output_attentions / output_hidden_states / return_dict: the argument when given, else the
        config's (transformers: config.output_hidden_states etc. are the call defaults)."""
        cfg = self.config
        return (
            bool(cfg.output_attentions if output_attentions is None else output_attentions),
            bool(cfg.output_hidden_states if output_hidden_states is None else output_hidden_states),
            bool(cfg.return_dict if return_dict is None else return_dict),
        )

    def run_head(self, ops: OpTable, enc: Encoded, **labels):
        """The class's head on the encoder's rows (see Encoded) through the op table -> its output object."""
        raise NotImplementedError

    def ops_for_call(self, need_reference: bool = False) -> OpTable:
        """The op table of one call. Fused kernels serve inference; whenever autograd, dropout or attention
        probabilities are needed the reference ops run, so training and output_attentions always work."""
        if need_reference or self.training:
            return ops_mod.TORCH
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return ops_mod.TORCH
        return self.ops

    # -- checkpoints -----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, *model_args: Any, **kwargs: Any):
        return _load_pretrained(cls, path_or_repo_id, *model_args, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        _save_pretrained(self, save_directory, **kwargs)

    # -- the loader's hooks (loading.py); DistilBertModelWithHeads overrides them ---------------------------
    def remap_checkpoint_state(self, state: dict, raw_config: dict) -> dict:
        """The checkpoint's state dict renamed for this class, before keys are matched. Default: as is."""
        return state

    def is_strict_key(self, key: str) -> bool:
        """Whether a missing / unexpected / mis-shaped `key` is an error (the encoder) or is reported and
        (re-)initialised (a head)."""
        return is_encoder_key(key)

    def tied_keys(self) -> set[str]:
        """State-dict keys that are the word-embedding matrix under another name (a tied output projection):
        neither required when loading nor saved."""
        emb = self.get_input_embeddings().weight
        return {
            name
            for name, p in self.named_parameters(remove_duplicate=False)
            if p is emb and not name.endswith("embeddings.word_embeddings.weight")
        }

    def config_to_save(self) -> dict:
        """config.json as save_pretrained writes it."""
        d = self.config.to_dict()
        # "adapters": the model's adapters now (not what the config was loaded with), in the library's
        # format, so that from_pretrained re-adds them
        d.pop("adapters", None)
        if self.has_adapters():
            d["adapters"] = self.adapters_config.to_dict()
        d["architectures"] = [type(self).__name__]
        d["dtype"] = str(self.dtype).removeprefix("torch.")
        return d


# ----------------------------------------------------------------------------------------------------------
# Base model
# ----------------------------------------------------------------------------------------------------------
class DistilBertModel(DistilBertPreTrainedModel):
    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)
        self.register_buffer(
            "position_ids", torch.arange(config.max_position_embeddings)[None], persistent=False
        )
        self.post_init()
        self.add_adapters_from_config(config)  # a saved config.json listing adapters (adapters/mixin.py)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def _check_inputs(self, input_ids, attention_mask, inputs_embeds, position_ids) -> tuple[int, int]:
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        for name, t in (
            ("input_ids", input_ids),
            ("inputs_embeds", inputs_embeds),
            ("attention_mask", attention_mask),
            ("position_ids", position_ids),
        ):
            if isinstance(t, torch.Tensor) and t.is_meta:  # shapes only: nothing to compute on
                raise ValueError(
                    f"{name} is on the meta device (a tensor without data); pass a tensor with "
                    f"values on the model's device ({self.device})"
                )
        if isinstance(inputs_embeds, torch.Tensor) and inputs_embeds.dtype != self.dtype:
            raise ValueError(
                f"inputs_embeds must have the model's dtype {self.dtype}, got "
                f"{inputs_embeds.dtype} (cast it with inputs_embeds.to({self.dtype}), or the model "
                "with .to())"
            )
        if input_ids is not None:
            if (
                not isinstance(input_ids, torch.Tensor)
                or input_ids.dim() != 2
                or input_ids.is_floating_point()
            ):
                raise ValueError(
                    "input_ids must be an integer tensor of shape (batch, seq_len), got "
                    + _describe(input_ids)
                )
            B, S = input_ids.shape
            if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= cfg.vocab_size):
                raise ValueError(
                    f"input_ids must lie in [0, vocab_size={cfg.vocab_size}), got values in "
                    f"[{int(input_ids.min())}, {int(input_ids.max())}]"
                )
        else:
            if (
                not isinstance(inputs_embeds, torch.Tensor)
                or inputs_embeds.dim() != 3
                or inputs_embeds.shape[-1] != cfg.dim
            ):
                raise ValueError(
                    f"inputs_embeds must have shape (batch, seq_len, dim={cfg.dim}), got "
                    + _describe(inputs_embeds)
                )
            B, S = inputs_embeds.shape[:2]
        if S > cfg.max_position_embeddings and position_ids is None:
            raise ValueError(
                f"sequence length {S} exceeds max_position_embeddings={cfg.max_position_embeddings}; "
                "truncate the input (tokenizer truncation=True)"
            )
        if attention_mask is not None and (
            not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, S)
        ):
            raise ValueError(
                f"attention_mask must have shape (batch, seq_len)=({B}, {S}), got "
                + _describe(attention_mask)
            )
        if position_ids is not None:
            if (
                not isinstance(position_ids, torch.Tensor)
                or position_ids.is_floating_point()
                or position_ids.shape[-1] != S
                or position_ids.dim() not in (1, 2)
            ):
                raise ValueError(
                    f"position_ids must be an integer tensor of shape (seq_len,) or (batch, seq_len) "
                    f"with seq_len={S}, got " + _describe(position_ids)
                )
            if position_ids.numel() and (
                int(position_ids.min()) < 0 or int(position_ids.max()) >= cfg.max_position_embeddings
            ):
                raise ValueError(
                    f"position_ids must lie in [0, max_position_embeddings={cfg.max_position_embeddings})"
                )
        return B, S

    def _head_mask(self, head_mask) -> list[torch.Tensor | None]:
        """(H,) or (n_layers, H) -> one (H,) tensor (or None) per layer, as adapter-transformers' DistilBERT."""
        L, H = self.config.n_layers, self.config.n_heads
        if head_mask is None:
            return [None] * L
        head_mask = torch.as_tensor(head_mask, device=self.device)
        if head_mask.dim() == 1 and head_mask.shape[0] == H:
            return [head_mask] * L
        if head_mask.dim() == 2 and tuple(head_mask.shape) == (L, H):
            return list(head_mask.unbind(0))
        raise ValueError(
            f"head_mask must have shape (n_heads,)=({H},) or (n_layers, n_heads)=({L}, {H}), "
            f"got {tuple(head_mask.shape)}"
        )

    def encode(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        position_ids=None,
        head_mask=None,
        output_hidden_states=False,
        output_attentions=False,
        adapters=None,
        need_rows=None,
    ) -> Encoded:
        """Run embeddings + all layers. Returns token rows in the backend's layout (see Encoded).

        need_rows: None, or a (B, S)-shaped bool tensor of the positions a loss reads. On a packed backend the
        padded ones among them are computed too, as extra query rows attending to the sequence's real keys
        (packing.Layout.packed_from_mask): transformers computes hidden states there, so the loss equals its
        loss. Calls without it (or whose labels ignore padding) stay padding-free.

        adapters: an adapters.AdapterRun (bottleneck adapters + composition for this call) or None. A Parallel
        composition replicates the batch at its first adapter layer; the returned rows and layout then hold
        k copies of the batch, channel after channel."""
        B, S = self._check_inputs(input_ids, attention_mask, inputs_embeds, position_ids)
        ops = self.ops_for_call(need_reference=output_attentions)
        if ops is ops_mod.TORCH and self.ops.packed and not (output_attentions or self.training):
            warn_slow_path(self.ops.name)  # only autograd keeps this call off the fused kernels: say so, once
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        if attention_mask is not None and bool(attention_mask.bool().all()):
            attention_mask = None  # nothing masked: skip mask work entirely
        if ops.packed and attention_mask is not None and not bool(attention_mask[:, 0].bool().all()):
            # Left padding: slot 0 ([CLS] for the heads) is padding, which packing drops but transformers
            # still computes. Rare, so run this batch on the padded reference path to stay exact.
            ops = ops_mod.TORCH
        extra = None
        if ops.packed and attention_mask is not None and need_rows is not None and need_rows.numel() == B * S:
            extra = need_rows.reshape(B, S).to(device=attention_mask.device, dtype=torch.bool)
            if bool((extra & ~attention_mask.bool().any(1, keepdim=True)).any()):
                # A fully masked sequence whose rows a loss reads: transformers' softmax is uniform over every
                # (masked) key there; the padded reference path reproduces that exactly. Rare.
                ops, extra = ops_mod.TORCH, None
        layout = (
            Layout.packed_from_mask(B, S, attention_mask, device, extra)
            if ops.packed
            else Layout.padded(B, S, attention_mask)
        )

        return self.encode_rows(
            ops,
            layout,
            input_ids,
            inputs_embeds,
            position_ids,
            self._head_mask(head_mask),
            output_hidden_states,
            output_attentions,
            adapters,
        )

    def encode_rows(
        self,
        ops: OpTable,
        layout: Layout,
        input_ids=None,
        inputs_embeds=None,
        position_ids=None,
        head_masks=None,
        output_hidden_states=False,
        output_attentions=False,
        adapters=None,
    ) -> Encoded:
        """The encoder with everything explicit: the op table, the row layout (packed, padded or static),
        (B, S) ids or (B, S, D) embeddings, per-layer head masks. No input checks and no host syncs of its
        own, so a CUDA graph can capture it (cuda_graphs.py); `encode` is the checked entry point."""
        B, S = layout.batch_size, layout.seq_len
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        if position_ids is None:
            position_ids = self.position_ids[:, :S]
        position_ids = position_ids.to(device).expand(B, S)
        if head_masks is None:
            head_masks = [None] * self.config.n_layers
        x = self.embeddings(
            ops,
            None if input_ids is None else layout.pack(input_ids),
            None if inputs_embeds is None else layout.pack(inputs_embeds),
            layout.pack(position_ids),
        )  # (N, D)

        all_hidden = [layout.unpack(x)] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        if adapters is not None:
            adapters.start(layout)
        # Gradient checkpointing (pretrained.py): training calls recompute each block in backward. Not with a
        # Parallel adapter composition, whose first block replicates the rows (state the recompute would redo).
        ckpt = (
            getattr(self, "gradient_checkpointing", False)
            and self.training
            and torch.is_grad_enabled()
            and (adapters is None or adapters.setup.parallel_channels == 1)
        )
        for block, hm in zip(self.transformer.layer, head_masks):
            if ckpt:
                x, probs = torch.utils.checkpoint.checkpoint(
                    block,
                    ops,
                    x,
                    layout,
                    hm,
                    output_attentions,
                    adapters,
                    **self.gradient_checkpointing_kwargs,
                )
            else:
                x, probs = block(ops, x, layout, hm, output_attentions, adapters)
            if adapters is not None:
                layout = adapters.layout  # (k*B sequences once a Parallel composition replicated the batch)
            if output_hidden_states:
                all_hidden.append(layout.unpack(x))
            if output_attentions:
                all_attn.append(probs)
        return Encoded(
            x,
            layout,
            None if all_hidden is None else tuple(all_hidden),
            None if all_attn is None else tuple(all_attn),
        )

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        position_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        token_type_ids=None,
        adapter_names=None,
    ):
        output_attentions, output_hidden_states, return_dict = self.call_flags(
            output_attentions, output_hidden_states, return_dict
        )
        # token_type_ids: DistilBERT has no segment embeddings; accepted because tokenizers emit it.
        # adapter_names: a name, a list (Stack), Stack(...) or Parallel(...); default: the active adapters.
        enc = self.encode(
            input_ids,
            attention_mask,
            inputs_embeds,
            position_ids,
            head_mask,
            bool(output_hidden_states),
            bool(output_attentions),
            adapters=self.adapter_run(adapter_names),
        )
        out = self.run_head(self.ops_for_call(bool(output_attentions)), enc)
        return out if return_dict is not False else out.to_tuple()

    def run_head(self, ops: OpTable, enc: Encoded, **labels) -> BaseModelOutput:
        return BaseModelOutput(
            last_hidden_state=enc.padded(), hidden_states=enc.hidden_states, attentions=enc.attentions
        )


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__}"


# ----------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------
def label_rows(labels, ignore_index: int = -100):
    """The positions a per-token cross-entropy reads (labels != ignore_index), for encode's need_rows; None
    without labels."""
    return None if not isinstance(labels, torch.Tensor) else labels != ignore_index


class _HeadModel(DistilBertPreTrainedModel):
    """Shared plumbing of the task heads: one encoder under the `distilbert.` prefix."""

    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        self.distilbert = DistilBertModel(config, backend)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.distilbert.get_input_embeddings()

    def get_position_embeddings(self) -> nn.Embedding:
        return self.distilbert.get_position_embeddings()

    def _encode(
        self,
        input_ids,
        attention_mask,
        head_mask,
        inputs_embeds,
        position_ids,
        output_attentions,
        output_hidden_states,
        need_rows=None,
        adapter_names=None,
        labels=False,
    ) -> Encoded:
        # adapter_names: a name, a list (Stack), Stack(...) or Parallel(...); default: the active adapters
        # (adapters/mixin.py). Parallel replicates the batch: the outputs hold one copy per channel, as the
        # adapters library's static classes give them.
        run = self.adapter_run(adapter_names)
        if labels and run is not None and run.setup.parallel_channels > 1:
            raise ValueError(
                f"{type(self).__name__}: labels with a Parallel adapter setup ({run.setup}) are not "
                "supported (the outputs hold one copy of the batch per channel); compute the loss per "
                "channel, or use DistilBertModelWithHeads with one head per channel"
            )
        return self.distilbert.encode(
            input_ids,
            attention_mask,
            inputs_embeds,
            position_ids,
            head_mask,
            bool(output_hidden_states),
            bool(output_attentions),
            adapters=run,
            need_rows=need_rows,
        )

    @staticmethod
    def _finish(out, return_dict):
        return out if return_dict is not False else out.to_tuple()


class DistilBertForMaskedLM(_HeadModel):
    _tied_weights_keys = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)
        self.post_init()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.vocab_projector.weight = self.distilbert.embeddings.word_embeddings.weight

    def get_output_embeddings(self) -> nn.Linear:
        return self.vocab_projector

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.vocab_projector = new_embeddings
        ops_mod.drop_prepared(self)

    def head_rows(self, ops: OpTable, rows: torch.Tensor) -> torch.Tensor:
        """(n, D) token rows -> (n, V) vocabulary logits."""
        h = ops.linear(self.vocab_transform, rows, self.config.activation)
        return ops.linear(self.vocab_projector, ops.layer_norm(self.vocab_layer_norm, h))

    def run_head(self, ops: OpTable, enc: Encoded, labels=None) -> MaskedLMOutput:
        # Per-token head on the encoder's rows (only real tokens when packed), unpacked once at the end.
        logits = enc.layout.unpack(self.head_rows(ops, enc.hidden))  # (B, S, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))
        return MaskedLMOutput(loss, logits, enc.hidden_states, enc.attentions)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        position_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        token_type_ids=None,
        adapter_names=None,
    ):
        output_attentions, output_hidden_states, return_dict = self.call_flags(
            output_attentions, output_hidden_states, return_dict
        )
        enc = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            position_ids,
            output_attentions,
            output_hidden_states,
            label_rows(labels),
            adapter_names,
            labels is not None,
        )
        return self._finish(
            self.run_head(self.ops_for_call(bool(output_attentions)), enc, labels), return_dict
        )


class _PooledClassifier(_HeadModel):
    """pre_classifier + ReLU + dropout + classifier on the [CLS] rows (sequence classification, multiple
    choice)."""

    def head_rows(self, ops: OpTable, rows: torch.Tensor) -> torch.Tensor:
        """(n, D) [CLS] rows -> (n, num_labels) logits (num_labels = 1 for multiple choice)."""
        pooled = ops.linear(self.pre_classifier, rows, "relu")
        return ops.linear(self.classifier, self.dropout(pooled))


class DistilBertForSequenceClassification(_PooledClassifier):
    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        self.num_labels = config.num_labels
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def run_head(self, ops: OpTable, enc: Encoded, labels=None) -> SequenceClassifierOutput:
        logits = self.head_rows(ops, enc.first_tokens())  # (B, num_labels)
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss, logits, enc.hidden_states, enc.attentions)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        position_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        token_type_ids=None,
        adapter_names=None,
    ):
        output_attentions, output_hidden_states, return_dict = self.call_flags(
            output_attentions, output_hidden_states, return_dict
        )
        enc = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            position_ids,
            output_attentions,
            output_hidden_states,
            adapter_names=adapter_names,
            labels=labels is not None,
        )
        return self._finish(
            self.run_head(self.ops_for_call(bool(output_attentions)), enc, labels), return_dict
        )

    def _loss(self, logits, labels):
        # problem_type chosen exactly as transformers does, and remembered in the config like it.
        cfg = self.config
        if cfg.problem_type is None:
            if self.num_labels == 1:
                cfg.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                cfg.problem_type = "single_label_classification"
            else:
                cfg.problem_type = "multi_label_classification"
        if cfg.problem_type == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze())
            return F.mse_loss(logits, labels)
        if cfg.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels)


class DistilBertForMultipleChoice(_PooledClassifier):
    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, 1)
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def run_head(
        self, ops: OpTable, enc: Encoded, labels=None, num_choices: int = 1
    ) -> MultipleChoiceModelOutput:
        logits = self.head_rows(ops, enc.first_tokens()).view(-1, num_choices)  # (B*C, 1) -> (B, C)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, enc.hidden_states, enc.attentions)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        position_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        token_type_ids=None,
        adapter_names=None,
    ):
        output_attentions, output_hidden_states, return_dict = self.call_flags(
            output_attentions, output_hidden_states, return_dict
        )
        src = input_ids if input_ids is not None else inputs_embeds
        if src is None or src.dim() < 3:
            raise ValueError(
                "DistilBertForMultipleChoice expects input_ids of shape (batch, num_choices, "
                "seq_len) or inputs_embeds of shape (batch, num_choices, seq_len, dim), got " + _describe(src)
            )
        num_choices = src.shape[1]
        flat = lambda t, keep: None if t is None else t.reshape(-1, *t.shape[-keep:])  # noqa: E731
        enc = self._encode(
            flat(input_ids, 1),
            flat(attention_mask, 1),
            head_mask,
            flat(inputs_embeds, 2),
            position_ids,
            output_attentions,
            output_hidden_states,
            adapter_names=adapter_names,
            labels=labels is not None,
        )
        out = self.run_head(self.ops_for_call(bool(output_attentions)), enc, labels, num_choices)
        return self._finish(out, return_dict)


class DistilBertForTokenClassification(_HeadModel):
    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        self.num_labels = config.num_labels
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.post_init()

    def head_rows(self, ops: OpTable, rows: torch.Tensor) -> torch.Tensor:
        """(n, D) token rows -> (n, num_labels) logits."""
        return ops.linear(self.classifier, self.dropout(rows))

    def run_head(self, ops: OpTable, enc: Encoded, labels=None) -> TokenClassifierOutput:
        logits = enc.layout.unpack(self.head_rows(ops, enc.hidden))  # (B, S, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return TokenClassifierOutput(loss, logits, enc.hidden_states, enc.attentions)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        position_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        token_type_ids=None,
        adapter_names=None,
    ):
        output_attentions, output_hidden_states, return_dict = self.call_flags(
            output_attentions, output_hidden_states, return_dict
        )
        enc = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            position_ids,
            output_attentions,
            output_hidden_states,
            label_rows(labels),
            adapter_names,
            labels is not None,
        )
        return self._finish(
            self.run_head(self.ops_for_call(bool(output_attentions)), enc, labels), return_dict
        )


class DistilBertForQuestionAnswering(_HeadModel):
    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        if config.num_labels != 2:
            raise ValueError(
                f"DistilBertForQuestionAnswering needs config.num_labels == 2, got {config.num_labels}"
            )
        super().__init__(config, backend)
        self.qa_outputs = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.qa_dropout)
        self.post_init()

    def head_rows(self, ops: OpTable, rows: torch.Tensor) -> torch.Tensor:
        """(n, D) token rows -> (n, 2): start and end logits."""
        return ops.linear(self.qa_outputs, self.dropout(rows))

    def run_head(
        self, ops: OpTable, enc: Encoded, start_positions=None, end_positions=None
    ) -> QuestionAnsweringModelOutput:
        logits = enc.layout.unpack(self.head_rows(ops, enc.hidden))  # (B, S, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))  # (B, S)
        loss = None
        if start_positions is not None and end_positions is not None:
            # As transformers: positions outside the sequence are clamped to S and ignored by the loss.
            S = start_logits.size(1)
            start_positions = start_positions.view(-1).clamp(0, S)
            end_positions = end_positions.view(-1).clamp(0, S)
            loss = (
                F.cross_entropy(start_logits, start_positions, ignore_index=S)
                + F.cross_entropy(end_logits, end_positions, ignore_index=S)
            ) / 2
        return QuestionAnsweringModelOutput(loss, start_logits, end_logits, enc.hidden_states, enc.attentions)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        start_positions=None,
        end_positions=None,
        position_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        token_type_ids=None,
        adapter_names=None,
    ):
        output_attentions, output_hidden_states, return_dict = self.call_flags(
            output_attentions, output_hidden_states, return_dict
        )
        need = None
        if start_positions is not None and end_positions is not None:
            # transformers' start/end cross-entropy runs over the whole padded length: every slot's logit.
            src = input_ids if input_ids is not None else inputs_embeds
            need = torch.ones(src.shape[:2], dtype=torch.bool, device=src.device) if src is not None else None
        enc = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            position_ids,
            output_attentions,
            output_hidden_states,
            need,
            adapter_names,
            start_positions is not None or end_positions is not None,
        )
        out = self.run_head(self.ops_for_call(bool(output_attentions)), enc, start_positions, end_positions)
        return self._finish(out, return_dict)


MODEL_CLASSES = {
    cls.__name__: cls
    for cls in (
        DistilBertModel,
        DistilBertForMaskedLM,
        DistilBertForSequenceClassification,
        DistilBertForMultipleChoice,
        DistilBertForTokenClassification,
        DistilBertForQuestionAnswering,
    )
}
