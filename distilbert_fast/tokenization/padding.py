"""`pad()`: transformers' padding of inputs that are already ids (what `DataCollatorWithPadding` hands to
`tokenizer.pad`), as plain functions on python lists plus the tokenizer method that wraps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .arguments import check_int, check_side, resolve_padding_truncation, to_python
from .batch_encoding import BatchEncoding, check_tensor_type


class PaddingMixin:
    """DistilBertTokenizer.pad. Uses the tokenizer's model_input_names, model_max_length, padding_side,
    pad_token_id and pad_token_type_id."""

    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad already-encoded inputs, as transformers' `pad` (what DataCollatorWithPadding calls).

        `encoded_inputs`: a BatchEncoding / dict (one row or a batch of rows) or a list of dicts. input_ids,
        attention_mask (created if missing), token_type_ids and special_tokens_mask are padded; other fields
        (labels, ...) are passed through. Torch / numpy inputs come back as the same type unless
        `return_tensors` says otherwise.
        """
        main_input = self.model_input_names[0]
        data, input_kind = collate_encoded_inputs(encoded_inputs, main_input)
        if data[main_input] is None or len(data[main_input]) == 0:
            if return_attention_mask:  # transformers: only when asked for explicitly
                data["attention_mask"] = []
            return BatchEncoding(data)
        return_tensors = check_tensor_type(return_tensors if return_tensors is not None else input_kind)
        if pad_to_multiple_of is not None:
            pad_to_multiple_of = check_int("pad_to_multiple_of", pad_to_multiple_of, minimum=1)
        # transformers resolves pad()'s strategy without truncation or pad_to_multiple_of
        strategy, _, max_length = resolve_padding_truncation(
            padding, None, max_length, None, verbose, self.model_max_length
        )
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        if strategy != "do_not_pad" and self.pad_token_id is None:
            raise ValueError("pad() needs a pad_token; this tokenizer has none (set tokenizer.pad_token)")
        padded = pad_encoded_inputs(
            data,
            main_input=main_input,
            strategy=strategy,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=check_side("padding_side", padding_side) or self.padding_side,
            return_attention_mask=return_attention_mask,
            pad_token_id=self.pad_token_id,
            pad_token_type_id=self.pad_token_type_id,
        )
        return BatchEncoding(padded, tensor_type=return_tensors)


def collate_encoded_inputs(encoded_inputs: Any, main_input: str) -> tuple[dict[str, Any], str | None]:
    """`pad()`'s input -> (dict of python lists, the tensor type the input came in).

    Accepts a BatchEncoding / dict (one row or a batch) or a list of dicts (a collate_fn's features; keys
    from the first, as transformers does). Torch tensors / numpy arrays become lists; the returned tensor
    type says which, so the output can be given back the same way.
    """
    if (
        isinstance(encoded_inputs, (list, tuple))
        and encoded_inputs
        and isinstance(encoded_inputs[0], Mapping)
    ):
        keys = list(encoded_inputs[0].keys())
        for i, example in enumerate(encoded_inputs):
            missing = [key for key in keys if key not in example]
            if missing:
                raise ValueError(f"encoded_inputs[{i}] lacks {missing}, which encoded_inputs[0] has")
        encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in keys}
    if not isinstance(encoded_inputs, Mapping):
        raise TypeError(
            "encoded_inputs must be a BatchEncoding / dict of lists, or a list of dicts (e.g. a data "
            f"collator's features); got {type(encoded_inputs).__name__}"
        )
    if main_input not in encoded_inputs:
        raise ValueError(
            f"encoded_inputs must include {main_input!r} (the model's main input); got keys "
            f"{list(encoded_inputs.keys())}"
        )
    data = dict(encoded_inputs)
    required = data[main_input]
    if required is None or (hasattr(required, "__len__") and len(required) == 0):
        return data, None
    first = required[0]
    if isinstance(first, (list, tuple)):  # the first non-empty row's first element tells the type
        first = next((row[0] for row in required if len(row)), first)
    if isinstance(first, (int, list, tuple)):
        return data, None
    kind = _tensor_kind(first)
    if kind is None:
        raise ValueError(
            f"encoded_inputs[{main_input!r}] holds {type(first).__name__}; expected python ints, torch "
            "tensors or numpy arrays"
        )
    return {key: to_python(value) for key, value in data.items()}, kind


def _tensor_kind(value: Any) -> str | None:
    module = type(value).__module__
    if module.startswith("torch"):
        return "pt"
    if module.startswith("numpy"):
        return "np"
    return None


def pad_encoded_inputs(
    data: dict[str, Any],
    *,
    main_input: str,
    strategy: str,
    max_length: int | None,
    pad_to_multiple_of: int | None,
    padding_side: str,
    return_attention_mask: bool,
    pad_token_id: int,
    pad_token_type_id: int,
) -> dict[str, Any]:
    """transformers' `pad` body on python lists: pads the main input, attention_mask, token_type_ids and
    special_tokens_mask; any other field (labels, offsets, ...) passes through unchanged."""
    required = data[main_input]
    row = {
        "strategy": strategy,
        "pad_to_multiple_of": pad_to_multiple_of,
        "padding_side": padding_side,
        "return_attention_mask": return_attention_mask,
        "main_input": main_input,
        "pad_token_id": pad_token_id,
        "pad_token_type_id": pad_token_type_id,
    }
    if not isinstance(required[0], (list, tuple)):
        return _pad_row(dict(data), max_length=max_length, **row)

    batch_size = len(required)
    for key, value in data.items():
        if not hasattr(value, "__len__") or len(value) != batch_size:
            raise ValueError(
                f"field {key!r} does not hold one entry per row of {main_input!r} ({batch_size} rows)"
            )
    if strategy == "longest":
        max_length, row["strategy"] = max(len(ids) for ids in required), "max_length"
    out: dict[str, list] = {}
    for i in range(batch_size):
        padded = _pad_row({key: value[i] for key, value in data.items()}, max_length=max_length, **row)
        for key, value in padded.items():
            out.setdefault(key, []).append(value)
    return out


def _pad_row(
    row: dict[str, Any],
    *,
    max_length: int | None,
    strategy: str,
    pad_to_multiple_of: int | None,
    padding_side: str,
    return_attention_mask: bool,
    main_input: str,
    pad_token_id: int,
    pad_token_type_id: int,
) -> dict[str, Any]:
    """transformers' `_pad` for one row (lists of ints)."""
    ids = list(row[main_input])
    if strategy == "longest":
        max_length = len(ids)
    if max_length is not None and pad_to_multiple_of is not None and max_length % pad_to_multiple_of:
        max_length = (max_length // pad_to_multiple_of + 1) * pad_to_multiple_of
    if return_attention_mask and "attention_mask" not in row:
        row["attention_mask"] = [1] * len(ids)
    if strategy == "do_not_pad" or max_length is None or len(ids) == max_length:
        return row
    # A row longer than max_length is left as is (pad never truncates), as in transformers.
    difference = max(max_length - len(ids), 0)
    fills = {main_input: pad_token_id, "token_type_ids": pad_token_type_id, "special_tokens_mask": 1}
    if return_attention_mask:
        fills["attention_mask"] = 0
    for key, fill in fills.items():
        if key in row:
            padding = [fill] * difference
            value = list(row[key])
            row[key] = value + padding if padding_side == "right" else padding + value
    return row
