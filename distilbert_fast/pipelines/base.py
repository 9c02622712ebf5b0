"""The batching engine every task pipeline shares (Pipeline): argument checks, tokenization with the
model's length limit, and `_forward`, which sorts sequences by length, runs them `batch_size` at a time
through the encoder (padding-free on the packed backends) and hands the task head the real-token rows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..modeling import (
    DistilBertModel,
    DistilBertPreTrainedModel,
)

# Progress bar by default when a call has more inputs than this.
PROGRESS_THRESHOLD = 256


class PipelineInputError(ValueError):
    """One input of a call cannot be processed: `reason`, and `input_index` (0-based, in the call's list)."""

    def __init__(self, reason: str, input_index: int):
        super().__init__(f"{reason} (input {input_index})")
        self.reason = reason
        self.input_index = input_index


# ----------------------------------------------------------------------------------------------------------
# argument helpers
# ----------------------------------------------------------------------------------------------------------
def check_int(name: str, value: Any, minimum: int, task: str | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        where = f"{task}: " if task else ""
        raise ValueError(f"{where}{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any, task: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{task}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_progress(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"progress must be True, False or None (automatic), got {value!r}")
    return value


def _resolve_device(device: Any) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise ValueError(
            f"device must be a torch.device, a string such as 'cpu', or an int (-1 = cpu, "
            f"k = cuda:k), got {device!r}"
        )
    if isinstance(device, int):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device={device!r} is not a valid torch device ({e})") from None


def to_float_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


# ----------------------------------------------------------------------------------------------------------
# base class: batching engine
# ----------------------------------------------------------------------------------------------------------
class Pipeline:
    """Common machinery: tokenization helpers and the sorted, batched, padding-free model runner.

    Subclasses define `task`, `model_class`, `_param_defaults` (the call arguments they accept) and
    `_results(inputs, params) -> list` (one result per input). `__call__` adds transformers' single-input
    conventions; `run(list_of_inputs, **params)` always returns one result per input, in order.
    """

    task: str = ""
    model_class: type = DistilBertPreTrainedModel
    _param_defaults: dict[str, Any] = {}

    def __init__(
        self,
        model: DistilBertPreTrainedModel,
        tokenizer: Any,
        *,
        batch_size: int = 32,
        device: Any = None,
        progress: bool | None = None,
        **defaults: Any,
    ):
        if not isinstance(model, self.model_class):
            raise ValueError(
                f"model: the {self.task} pipeline needs a distilbert_fast "
                f"{self.model_class.__name__}, got {type(model).__name__}"
            )
        if tokenizer is None or not callable(tokenizer):
            raise ValueError(f"tokenizer: expected a DistilBertTokenizer, got {type(tokenizer).__name__}")
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.progress = check_progress(progress)
        if device is not None:
            model.to(_resolve_device(device))
            model.prepare_for_inference()
        self.model = model
        self.tokenizer = tokenizer
        self._defaults = self._check_params(defaults)
        limits = [model.config.max_position_embeddings]
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 10**18:
            limits.append(model_max)
        self.max_length = min(limits)

    # -- public ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def encoder(self) -> DistilBertModel:
        return self.model if isinstance(self.model, DistilBertModel) else self.model.distilbert

    def run(self, inputs: Sequence[Any], **kwargs: Any) -> list:
        """One result per input, in input order (no un-batching of single inputs)."""
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            raise ValueError(f"inputs: run() takes a list of inputs, got {type(inputs).__name__}")
        params, engine = self._split_call_kwargs(kwargs)
        return self._results(list(inputs), params, engine)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(task={self.task!r}, model={type(self.model).__name__}, "
            f"backend={self.model.backend!r}, dtype={self.model.dtype}, batch_size={self.batch_size})"
        )

    # -- parameters ----------------------------------------------------------------------------------------
    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self._param_defaults))
        if unknown:
            accepted = sorted(set(self._param_defaults) | {"batch_size", "progress"})
            raise ValueError(
                f"{self.task}: unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
            )
        return dict(params)

    def _split_call_kwargs(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        engine = {"batch_size": self.batch_size, "progress": self.progress}
        if "batch_size" in kwargs:
            engine["batch_size"] = check_int("batch_size", kwargs.pop("batch_size"), 1)
        if "progress" in kwargs:
            engine["progress"] = check_progress(kwargs.pop("progress"))
        params = {**self._param_defaults, **self._defaults, **self._check_params(kwargs)}
        return params, engine

    # -- tokenization --------------------------------------------------------------------------------------
    def _tokenize(self, texts: list, **kwargs: Any):
        kwargs.setdefault("truncation", True)
        kwargs.setdefault("max_length", self.max_length)
        return self.tokenizer(texts, **kwargs)

    # -- the engine ----------------------------------------------------------------------------------------
    def _forward(
        self, sequences: list[list[int]], head: Callable, extras: list | None, engine: dict[str, Any]
    ) -> list:
        """Run every token-id sequence through the encoder and `head`; results in input order.

        Sequences are sorted by length (longest first) and batched `batch_size` at a time, right-padded;
        the encoder packs the real tokens (cpp backend) so padding costs nothing. `head(rows, lengths,
        extras)` gets the real-token rows of the batch, sequence after sequence ((sum(lengths), dim)), and
        returns one output per sequence.
        """
        n = len(sequences)
        results: list = [None] * n
        if n == 0:
            return results
        batch_size = engine["batch_size"]
        show = engine["progress"] if engine["progress"] is not None else n > PROGRESS_THRESHOLD
        order = sorted(range(n), key=lambda i: len(sequences[i]), reverse=True)
        pad_id = self.tokenizer.pad_token_id
        pad_id = self.model.config.pad_token_id or 0 if pad_id is None else pad_id
        device = self.device
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=self.task, unit="seq", file=sys.stderr, dynamic_ncols=True)
        try:
            with torch.inference_mode():
                for b0 in range(0, n, batch_size):
                    idx = order[b0 : b0 + batch_size]
                    lengths = [len(sequences[i]) for i in idx]
                    if min(lengths) == 0:
                        i = idx[lengths.index(0)]
                        raise PipelineInputError(f"{self.task}: the input tokenized to zero tokens", i)
                    S = lengths[0]
                    ids = np.full((len(idx), S), pad_id, dtype=np.int64)
                    mask = np.zeros((len(idx), S), dtype=np.int64)
                    for r, i in enumerate(idx):
                        ids[r, : lengths[r]] = sequences[i]
                        mask[r, : lengths[r]] = 1
                    ids_t = torch.from_numpy(ids).to(device)
                    mask_t = torch.from_numpy(mask).to(device)
                    enc = self.encoder.encode(ids_t, attention_mask=mask_t)
                    rows = enc.hidden  # (B*S, D) padded or (real tokens, D) packed
                    if rows.shape[0] != sum(lengths):
                        rows = rows.index_select(0, mask_t.reshape(-1).nonzero().squeeze(1))
                    outs = head(rows, lengths, None if extras is None else [extras[i] for i in idx])
                    for i, out in zip(idx, outs):
                        results[i] = out
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return results

    def _ops(self):
        # The heads run inside _forward's inference_mode; resolve the table as such a call would, or a model
        # whose parameters require grad would hand the heads the reference ops.
        with torch.inference_mode():
            return self.model.ops_for_call(False)

    # -- to implement --------------------------------------------------------------------------------------
    def _results(self, inputs: list, params: dict[str, Any], engine: dict[str, Any]) -> list:
        raise NotImplementedError

    def _check_texts(self, inputs: list) -> list[str]:
        for i, x in enumerate(inputs):
            if not isinstance(x, str):
                raise ValueError(
                    f"inputs: {self.task} takes a str or a list of str; item {i} is {type(x).__name__}"
                )
        return inputs


def split_rows(x: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    return list(x.split(lengths, dim=0))
