"""BatchEncoding, the dict a tokenizer call returns, and its tensor conversion rules.

It carries the word/char/token alignment methods of transformers' fast BatchEncoding (they delegate to
`tokenizers.Encoding`) and converts to torch / numpy the way transformers does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tokenizers import Encoding

TENSOR_TYPES = ("pt", "np")


class TokenSpan(NamedTuple):
    """Tokens [start, end) of a word (transformers.tokenization_utils_base.TokenSpan)."""

    start: int
    end: int


class CharSpan(NamedTuple):
    """Characters [start, end) of a token or word (transformers.tokenization_utils_base.CharSpan)."""

    start: int
    end: int


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
