"""transformers' Python-side argument rules for a tokenizer call, as plain functions.

Which strategy a `padding=` / `truncation=` value means and when `max_length` defaults to `model_max_length`
(`resolve_padding_truncation`), how `text` / `text_pair` are batched (`batch_text_inputs`), and the small
checks and conversions the call, pad and vocabulary methods share.
"""

from __future__ import annotations

import warnings
from typing import Any


class TokenizerInputError(TypeError, ValueError):
    """A malformed `text` / `text_pair` argument.

    transformers raises ValueError for these while TypeError is the Python convention for a wrong type;
    deriving from both lets callers written against either keep working.
    """


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


def check_side(name: str, side: str | None) -> str | None:
    if side is not None and side not in ("right", "left"):
        raise ValueError(f"{name} must be 'right', 'left' or None, got {side!r}")
    return side
