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
from tokenizers import Encoding

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
        inputs = self._run_list(inputs)
        params, engine = self._split_call_kwargs(kwargs)
        return self._results(inputs, params, engine)

    def encode(
        self, inputs: Sequence[Any], *, truncation_side: str | None = None, **kwargs: Any
    ) -> list[Encoding]:
        """The tokenization `run(inputs, **kwargs)` does, one `tokenizers.Encoding` per input (truncated as
        run() truncates; question answering: each example's first window, the others in its `.overflowing`).

        With `run_encoded` it splits run() in two: a server tokenizes once where it receives the request
        (it needs the real token counts there, for its batch budget and length limit) and its model worker
        runs only the model and the postprocessing. `run_encoded(encode(x, **kw), x, **kw) == run(x, **kw)`.

        truncation_side: "left" keeps the end of an input longer than the limit instead of its start
        (text-embeddings-inference's truncation_direction); None or "right": the tokenizer's own side.
        Question answering splits long contexts into windows and takes no truncation_side.
        """
        if truncation_side not in (None, "right", "left"):
            raise ValueError(f"truncation_side must be 'right', 'left' or None, got {truncation_side!r}")
        if truncation_side is not None and not self._truncates:
            raise ValueError(f"truncation_side: {self.task} cuts nothing (long contexts run as windows)")
        inputs = self._items(self._run_list(inputs))
        params, _ = self._split_call_kwargs(kwargs)
        params = self._params(params)
        if not inputs:
            return []
        if truncation_side is None or truncation_side == self.tokenizer.truncation_side:
            return self._encode(inputs, params)
        return self._with_tokenizer(self._side_tokenizer(truncation_side))._encode(inputs, params)

    def run_encoded(
        self, encodings: Sequence[Any], inputs: Sequence[Any] | None = None, **kwargs: Any
    ) -> list:
        """run() on inputs tokenized already: one result per encoding, equal to `run(inputs, **kwargs)` when
        `encodings` is `encode(inputs, **kwargs)`.

        encodings: `tokenizers.Encoding`s (what `encode` or the tokenizer returns: `enc.encodings`), special
        tokens included; for the tasks that only need the ids (feature-extraction, sentence-embeddings,
        text-classification, fill-mask) also lists of token ids. inputs: the inputs they were made from, as
        run() takes them; token-classification and question-answering need them (entity words and answers
        are cut from the text), the other tasks ignore them. Each sequence may hold at most `max_length`
        tokens.
        """
        if isinstance(encodings, (str, dict, Encoding)) or not isinstance(encodings, Sequence):
            raise ValueError(
                f"encodings: run_encoded() takes a list of tokenizers.Encoding, got {type(encodings).__name__}"
            )
        encodings = list(encodings)
        params, engine = self._split_call_kwargs(kwargs)
        params = self._params(params)
        items = None
        if inputs is not None:
            items = self._items(self._run_list(inputs))
            if len(items) != len(encodings):
                raise ValueError(
                    f"inputs: {len(items)} inputs for {len(encodings)} encodings; pass the inputs the "
                    "encodings were made from, one per encoding"
                )
        elif self._needs_inputs:
            raise ValueError(
                f"inputs: {self.task} needs the inputs the encodings were made from "
                "(run_encoded(encodings, inputs))"
            )
        self._check_encodings(encodings)
        return self._run_encoded(items, encodings, params, engine)

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

    def _side_tokenizer(self, side: str):
        from ..tokenization.tokenizer import truncating_on

        return truncating_on(self.tokenizer, side, self.__dict__.setdefault("_side_tokenizers", {}))

    def _with_tokenizer(self, tokenizer) -> Pipeline:
        """This pipeline, tokenizing with `tokenizer` (a shallow copy: model and settings shared)."""
        import copy

        view = copy.copy(self)
        view.tokenizer = tokenizer
        return view

    @staticmethod
    def _run_list(inputs: Any) -> list:
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            raise ValueError(f"inputs: run() takes a list of inputs, got {type(inputs).__name__}")
        return list(inputs)

    def _check_encodings(self, encodings: list) -> None:
        """Each an Encoding (or, where `_ids_only`, a list of ints) of 1..max_length tokens."""
        for i, e in enumerate(encodings):
            if isinstance(e, Encoding):
                n = len(e)
            elif self._ids_only and isinstance(e, (list, tuple)):
                if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in e):
                    raise ValueError(f"encodings[{i}]: a list of token ids must hold ints only")
                n = len(e)
            else:
                what = (
                    "a tokenizers.Encoding or a list of token ids"
                    if self._ids_only
                    else "a tokenizers.Encoding"
                )
                raise ValueError(f"encodings[{i}]: expected {what}, got {type(e).__name__}")
            if n > self.max_length:
                raise PipelineInputError(
                    f"{self.task}: the encoding has {n} tokens, more than max_length={self.max_length}", i
                )

    @staticmethod
    def _ids(encodings: list) -> list[list[int]]:
        return [e.ids if isinstance(e, Encoding) else list(e) for e in encodings]

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
    # _results = _items (check / normalize the inputs) -> _params (check the call arguments) -> _encode
    # (tokenize) -> _run_encoded (model + postprocessing); encode() and run_encoded() expose the two halves.
    _needs_inputs = False  # _run_encoded reads the inputs themselves, not only their encodings
    _ids_only = True  # _run_encoded reads only the token ids (lists of ids are accepted as encodings)
    _truncates = True  # inputs over the length limit are cut (encode's truncation_side says which end)

    def _results(self, inputs: list, params: dict[str, Any], engine: dict[str, Any]) -> list:
        params = self._params(params)
        items = self._items(inputs)
        return self._run_encoded(items, self._encode(items, params) if items else [], params, engine)

    def _items(self, inputs: list) -> list:
        return self._check_texts(inputs)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def _encode(self, items: list, params: dict[str, Any]) -> list[Encoding]:
        return self._tokenize(items).encodings

    def _run_encoded(
        self, items: list | None, encodings: list, params: dict[str, Any], engine: dict[str, Any]
    ) -> list:
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
