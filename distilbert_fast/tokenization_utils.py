"""The stateless half of the tokenizer API: BatchEncoding, padding of already-encoded inputs, argument checks.

Nothing here tokenizes: text processing lives in the `tokenizers` library (see tokenization.py). What lives here
is transformers' Python-side behaviour around it, reproduced where a user can observe it:
  * `BatchEncoding`: the dict returned by a call, with the word/char/token alignment methods of transformers'
    fast BatchEncoding (they delegate to `tokenizers.Encoding`) and its tensor conversion rules;
  * `pad_encoded_inputs`: transformers' `pad()` / `_pad()` for inputs that are already ids (what
    `DataCollatorWithPadding` hands to `tokenizer.pad`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tokenizers import Encoding

TENSOR_TYPES = ("pt", "np")


class TokenizerInputError(TypeError, ValueError):
    """A malformed `text` / `text_pair` argument.

    transformers raises ValueError for these while TypeError is the Python convention for a wrong type;
    deriving from both lets callers written against either keep working.
    """


class TokenSpan(NamedTuple):
    """Tokens [start, end) of a word (transformers.tokenization_utils_base.TokenSpan)."""

    start: int
    end: int


class CharSpan(NamedTuple):
    """Characters [start, end) of a token or word (transformers.tokenization_utils_base.CharSpan)."""

    start: int
    end: int


# ----------------------------------------------------------------------------------------------------------
# BatchEncoding
# ----------------------------------------------------------------------------------------------------------


class BatchEncoding(dict):
    """The result of `DistilBertTokenizer.__call__` / `pad`: a dict of model inputs with transformers' extras.

    * keys are readable as attributes (`enc.input_ids`);
    * `enc[i]` with an integer returns the `tokenizers.Encoding` of row i;
    * `tokens`, `word_ids`, `sequence_ids`, `word_to_tokens`, `token_to_word`, `token_to_sequence`,
      `char_to_token`, `token_to_chars`, `word_to_chars`, `char_to_word` take transformers' arguments: the
      batch index may be left out when the batch holds one row (`enc.word_to_tokens(3)`);
    * `to(device)` moves torch tensors (a no-op for lists / numpy arrays).
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        encodings: Sequence[Encoding] | None = None,
        tensor_type: str | None = None,
        prepend_batch_axis: bool = False,
    ):
        super().__init__(data or {})
        self._encodings = list(encodings) if encodings is not None else None
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type, prepend_batch_axis=prepend_batch_axis)

    def __getitem__(self, item):
        if isinstance(item, str):
            return super().__getitem__(item)
        if isinstance(item, int) and self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: value[item] for key, value in self.items()}
        raise KeyError(
            "BatchEncoding keys are str (a field such as 'input_ids'), int (the tokenizers.Encoding of a "
            f"row) or slice; got {item!r}"
        )

    def __getattr__(self, item: str):
        # Dunder lookups (pickle's __setstate__, copy's __deepcopy__, ...) must fail with AttributeError,
        # never reach the dict.
        if item.startswith("__"):
            raise AttributeError(item)
        try:
            return super().__getitem__(item)
        except KeyError:
            raise AttributeError(
                f"BatchEncoding has no field {item!r}; fields: {list(self.keys())}"
            ) from None

    @property
    def is_fast(self) -> bool:
        """True when the rows carry `tokenizers.Encoding`s (always, for encodings made by a call)."""
        return self._encodings is not None

    @property
    def encodings(self) -> list[Encoding] | None:
        return self._encodings

    @property
    def n_sequences(self) -> int | None:
        return self._encodings[0].n_sequences if self._encodings else None

    def _encoding(self, batch_index: int, method: str) -> Encoding:
        if not self._encodings:
            raise ValueError(
                f"{method}() needs the tokenizers.Encoding of each row; this BatchEncoding has none (it was "
                "built by pad() or by hand)"
            )
        return self._encodings[batch_index]

    def _split(self, method: str, batch_or_index: int, index: int | None) -> tuple[Encoding, int]:
        """transformers' convention: (index) on a one-row batch, or (batch_index, index)."""
        batch_index, index = (0, batch_or_index) if index is None else (batch_or_index, index)
        return self._encoding(batch_index, method), index

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index, "tokens").tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """The word each token belongs to (None for special and padding tokens)."""
        return self._encoding(batch_index, "word_ids").word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index, "sequence_ids").sequence_ids

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        encoding, token_index = self._split("token_to_sequence", batch_or_token_index, token_index)
        return encoding.token_to_sequence(_token_position(encoding, token_index))

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        encoding, token_index = self._split("token_to_word", batch_or_token_index, token_index)
        return encoding.token_to_word(_token_position(encoding, token_index))

    def word_to_tokens(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> TokenSpan | None:
        """Tokens [start, end) of a word; None when the word produced no token (e.g. it was truncated)."""
        encoding, word_index = self._split("word_to_tokens", batch_or_word_index, word_index)
        span = encoding.word_to_tokens(_word_position(word_index), sequence_index)
        return TokenSpan(*span) if span is not None else None

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        encoding, token_index = self._split("token_to_chars", batch_or_token_index, token_index)
        span = encoding.token_to_chars(_token_position(encoding, token_index))
        return CharSpan(*span) if span is not None else None

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        encoding, char_index = self._split("char_to_token", batch_or_char_index, char_index)
        return encoding.char_to_token(char_index, sequence_index)

    def word_to_chars(
        self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0
    ) -> CharSpan | None:
        encoding, word_index = self._split("word_to_chars", batch_or_word_index, word_index)
        span = encoding.word_to_chars(_word_position(word_index), sequence_index)
        return CharSpan(*span) if span is not None else None

    def char_to_word(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        encoding, char_index = self._split("char_to_word", batch_or_char_index, char_index)
        return encoding.char_to_word(char_index, sequence_index)

    def convert_to_tensors(self, tensor_type: str, prepend_batch_axis: bool = False) -> BatchEncoding:
        """Lists -> torch tensors ('pt') or numpy arrays ('np'); values that already are tensors stay.

        dtypes are inferred as transformers does (int64 ids, float labels stay float; an empty field is
        int64). A ragged field raises ValueError naming it, for 'np' too (transformers would silently build
        an object array that no model accepts).
        """
        tensor_type = check_tensor_type(tensor_type)
        if tensor_type is None:
            return self
        if tensor_type == "pt":
            import torch

            is_tensor, convert = torch.is_tensor, _as_torch
        else:
            import numpy as np

            is_tensor, convert = (lambda x: isinstance(x, np.ndarray)), _as_numpy
        for key, value in list(self.items()):
            if prepend_batch_axis:
                value = [value]
            if is_tensor(value):
                continue
            check_rectangular(key, value)
            try:
                self[key] = convert(value)
            except (TypeError, ValueError, RuntimeError) as e:
                raise ValueError(
                    f"Unable to create a tensor from field {key!r} ({type(e).__name__}: {e}); expected "
                    "(nested lists of) numbers of one length per level"
                ) from e
        return self

    def to(self, device, *, non_blocking: bool = False) -> BatchEncoding:
        for key, value in list(self.items()):
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self

    def __reduce__(self):
        # dict subclasses pickle their items through __setitem__ but lose the encodings otherwise.
        return (self.__class__, (dict(self), self._encodings))


def _token_position(encoding: Encoding, token_index: int) -> int:
    # tokenizers takes unsigned indices; a negative one counts from the end, like a list index.
    return token_index + len(encoding.ids) if token_index < 0 else token_index


def _word_position(word_index: int) -> int:
    if word_index < 0:
        raise ValueError(f"word_index must be >= 0 (words are numbered from the start), got {word_index}")
    return word_index


def _flat_is_empty(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_flat_is_empty(v) for v in value)
    return False


def _as_torch(value: Any):
    import numpy as np
    import torch

    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return torch.from_numpy(np.array(value))
    return torch.tensor(value, dtype=torch.long if _flat_is_empty(value) else None)


def _as_numpy(value: Any):
    import numpy as np

    return np.asarray(value, dtype=np.int64 if _flat_is_empty(value) else None)


def check_rectangular(key: str, value: Any) -> None:
    """Raise transformers-style ValueError when rows of a batched field have different lengths."""
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        lengths = {len(row) if isinstance(row, (list, tuple)) else -1 for row in value}
        if len(lengths) > 1:
            raise ValueError(
                f"Unable to create tensor for `{key}`: the sequences have different lengths "
                f"({min(lengths)}..{max(lengths)}). Activate padding (padding=True or padding='max_length') "
                f"and/or truncation (truncation=True) to get batched tensors of one length."
            )


def check_tensor_type(return_tensors: Any) -> str | None:
    if return_tensors is None:
        return None
    value = getattr(return_tensors, "value", return_tensors)  # accepts transformers' TensorType enum
    if value not in TENSOR_TYPES:
        raise ValueError(
            f"return_tensors={return_tensors!r} is not supported; expected one of {TENSOR_TYPES} or None "
            f"('pt' = torch tensors, 'np' = numpy arrays)"
        )
    return value


# ----------------------------------------------------------------------------------------------------------
# pad()
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# __call__ arguments
# ----------------------------------------------------------------------------------------------------------

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")

# transformers' sentinels: a model_max_length above LARGE_INTEGER means "no known limit".
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)


def resolve_padding_truncation(
    padding: Any,
    truncation: Any,
    max_length: Any,
    pad_to_multiple_of: Any,
    verbose: bool,
    model_max_length: int,
) -> tuple[str, str, int | None]:
    """transformers' `_get_padding_truncation_strategies`, with explicit errors for bad values.

    Returns (padding strategy, truncation strategy, max_length).
    """
    if max_length is not None:
        max_length = check_int("max_length", max_length, minimum=1)
    padding = getattr(padding, "value", padding)  # accepts transformers' PaddingStrategy enum
    truncation = getattr(truncation, "value", truncation)  # and TruncationStrategy

    # Backward-compatible rule: max_length alone (padding off, truncation unset) turns truncation on.
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"

    if padding is False or padding is None:
        padding_strategy = "do_not_pad"
    elif padding is True:
        if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
            warnings.warn(
                "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                "To pad to max length, use `padding='max_length'`.",
                stacklevel=4,
            )
        padding_strategy = "longest"
    elif isinstance(padding, str) and padding in PADDING_STRATEGIES:
        padding_strategy = padding
    else:
        raise ValueError(
            f"padding={padding!r} is not valid; expected True, False or one of {PADDING_STRATEGIES}"
        )

    if truncation is False or truncation is None:
        truncation_strategy = "do_not_truncate"
    elif truncation is True:
        truncation_strategy = "longest_first"
    elif isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
        truncation_strategy = truncation
    else:
        raise ValueError(
            f"truncation={truncation!r} is not valid; expected True, False or one of {TRUNCATION_STRATEGIES}"
        )

    if max_length is None:
        unbounded = model_max_length > LARGE_INTEGER
        if padding_strategy == "max_length":
            if unbounded:
                # transformers silently skips padding here; an explicit error is kinder.
                raise ValueError(
                    "padding='max_length' needs max_length= (this tokenizer has no model_max_length)"
                )
            max_length = model_max_length
        if truncation_strategy != "do_not_truncate":
            if unbounded:
                truncation_strategy = "do_not_truncate"  # nothing to truncate to, as in transformers
            else:
                max_length = model_max_length

    if (
        truncation_strategy != "do_not_truncate"
        and padding_strategy != "do_not_pad"
        and pad_to_multiple_of is not None
        and max_length is not None
        and max_length % pad_to_multiple_of != 0
    ):
        raise ValueError(
            "Truncation and padding are both activated but "
            f"truncation length ({max_length}) is not a multiple of pad_to_multiple_of "
            f"({pad_to_multiple_of})."
        )
    return padding_strategy, truncation_strategy, max_length


def _is_words(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(word, str) for word in value)


def batch_text_inputs(text: Any, text_pair: Any, is_split_into_words: bool = False) -> tuple[list, bool]:
    """Validate `text` / `text_pair` and return (inputs for tokenizers' encode_batch, is_batched).

    Plain text: a str, a list of str (batch), or a list of (str, str) pairs. Pre-split words
    (is_split_into_words=True): a list of words (one sequence), or a list of such lists (batch) or of
    (words, words) pairs; text_pair follows the shape of text.
    """
    if is_split_into_words:
        unit, check = "a list of words (list of str)", _is_words
        if isinstance(text, str):
            raise TokenizerInputError(
                "with is_split_into_words=True, text must be a list of words (list of str) or a batch of them; "
                "got a str (split it, e.g. text.split(), or drop is_split_into_words)"
            )
        # transformers: a batch is a list whose first item is itself a list/tuple
        is_single = isinstance(text, (list, tuple)) and (not text or isinstance(text[0], str))
    else:
        unit, check = "a str", (lambda value: isinstance(value, str))
        is_single = isinstance(text, str)
    expected = f"{unit}, a list of them (batch), or a list of ({unit}, {unit}) pairs"

    if is_single:
        if not check(text):
            raise TokenizerInputError(f"text must be {expected}; got {text!r}")
        if text_pair is not None and not check(text_pair):
            raise TokenizerInputError(
                f"text_pair must be {unit} when text is one sequence, got {type(text_pair).__name__}"
            )
        as_input = list if is_split_into_words else (lambda value: value)
        # transformers tests `if text_pair` here, so an empty pair encodes as a single sequence.
        return [(as_input(text), as_input(text_pair)) if text_pair else as_input(text)], False
    if not isinstance(text, (list, tuple)):
        raise TokenizerInputError(f"text must be {expected}; got {type(text).__name__}")
    if text_pair is not None:
        if not isinstance(text_pair, (list, tuple)) or (
            is_split_into_words and text_pair and isinstance(text_pair[0], str)  # one sequence, not a batch
        ):
            raise TokenizerInputError(
                f"when tokenizing a batch, text_pair must be a list/tuple of {unit} with the same length as "
                f"text, got {type(text_pair).__name__}"
            )
        if len(text) != len(text_pair):
            raise ValueError(
                f"batch length of text ({len(text)}) does not match batch length of text_pair "
                f"({len(text_pair)})"
            )
        for i, (a, b) in enumerate(zip(text, text_pair)):
            if not check(a) or not check(b):
                raise TokenizerInputError(
                    f"text[{i}] and text_pair[{i}] must each be {unit}, got {type(a).__name__} and "
                    f"{type(b).__name__}"
                )
        if is_split_into_words:
            return [(list(a), list(b)) for a, b in zip(text, text_pair)], True
        return list(zip(text, text_pair)), True
    batch = []
    for i, item in enumerate(text):
        if check(item):
            batch.append(list(item) if is_split_into_words else item)
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(check(s) for s in item):
            batch.append(tuple(list(s) if is_split_into_words else s for s in item))
        else:
            raise TokenizerInputError(f"text must be {expected}; text[{i}] is {item!r}")
    return batch, True


# ----------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------


def clean_up_tokenization(text: str) -> str:
    """transformers' `clean_up_tokenization`: drops spaces the WordPiece decoder leaves before punctuation."""
    return (
        text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
    )


def to_python(value: Any) -> Any:
    """torch tensors / numpy arrays / numpy scalars -> python ints and lists."""
    if hasattr(value, "tolist") and callable(value.tolist):  # torch.Tensor, np.ndarray, np.integer
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


__all__ = [
    "BatchEncoding",
    "CharSpan",
    "TokenSpan",
    "TokenizerInputError",
    "batch_text_inputs",
    "clean_up_tokenization",
    "collate_encoded_inputs",
    "pad_encoded_inputs",
    "resolve_padding_truncation",
]
