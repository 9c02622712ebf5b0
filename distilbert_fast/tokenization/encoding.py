"""Text -> ids: DistilBertTokenizer's `__call__` and its transformers-4 aliases (encode_plus,
batch_encode_plus, encode, tokenize).

The Rust tokenizer's truncation/padding state is global to the object, so each call configures it for its
arguments and encodes under the tokenizer's lock (`_encode_batch`). Errors tokenizers reports in its own
terms (bare Exception, Rust panics, type errors for invalid Unicode) are turned into ValueError /
TokenizerInputError naming the argument.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tokenizers import Encoding

from .arguments import (
    TokenizerInputError,
    batch_text_inputs,
    check_int,
    check_side,
    resolve_padding_truncation,
)
from .batch_encoding import BatchEncoding, check_tensor_type

logger = logging.getLogger(__name__)


class EncodingMixin:
    """DistilBertTokenizer's encoding methods. Uses the tokenizer's backend (`_tokenizer`), its lock, its
    settings (model_max_length, model_input_names, padding/truncation side, split_special_tokens) and
    pad_token / pad_token_id."""

    def __call__(
        self,
        text: Any = None,
        text_pair: Any = None,
        text_target: Any = None,
        text_pair_target: Any = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        max_target_length: int | None = None,
    ) -> BatchEncoding:
        """Tokenize one text, a pair, or a batch, exactly like transformers' DistilBertTokenizerFast.

        * `text`: a str, a list of str (batch), or a list of (str, str) pairs; `text_pair`: the matching
          second sequence(s). With `is_split_into_words=True` each sequence is a list of words instead (word
          ids and offsets then refer to those words).
        * `text_target` / `text_pair_target`: encoded the same way (max_length=max_target_length if given);
          their input_ids come back as "labels", or alone when `text` is None.
        * `truncation`: True / "longest_first", "only_first", "only_second", False / "do_not_truncate". The
          default None means "truncate to max_length if max_length is given and padding is off" (transformers'
          backward-compatible rule). With truncation on and no max_length, max_length = model_max_length.
        * `padding`: True / "longest", "max_length" (to max_length, or model_max_length), False /
          "do_not_pad".
        * `return_token_type_ids` defaults to False: DistilBERT has no segment embeddings, and transformers
          only returns the fields in `model_input_names`. Pass True to get them.
        * A single input returns un-batched lists, unless return_tensors or return_overflowing_tokens is set.
        """
        if text is None and text_target is None:
            raise TokenizerInputError("pass text= (inputs) and/or text_target= (labels); both are None")
        padding_strategy, truncation_strategy, max_length = resolve_padding_truncation(
            padding, truncation, max_length, pad_to_multiple_of, verbose, self.model_max_length
        )
        options = {
            "add_special_tokens": add_special_tokens,
            "padding_strategy": padding_strategy,
            "truncation_strategy": truncation_strategy,
            "stride": check_int("stride", stride, minimum=0),
            "is_split_into_words": is_split_into_words,
            "pad_to_multiple_of": (
                None if pad_to_multiple_of is None else check_int("pad_to_multiple_of", pad_to_multiple_of, 1)
            ),
            "padding_side": check_side("padding_side", padding_side),
            "return_tensors": check_tensor_type(return_tensors),
            "return_token_type_ids": return_token_type_ids,
            "return_attention_mask": return_attention_mask,
            "return_overflowing_tokens": return_overflowing_tokens,
            "return_special_tokens_mask": return_special_tokens_mask,
            "return_offsets_mapping": return_offsets_mapping,
            "return_length": return_length,
            "verbose": verbose,
            "split_special_tokens": self.split_special_tokens
            if split_special_tokens is None
            else split_special_tokens,
        }
        encodings = targets = None
        if text is not None:
            encodings = self._encode(text, text_pair, max_length=max_length, **options)
        if text_target is not None:
            if max_target_length is not None:
                max_target_length = check_int("max_target_length", max_target_length, minimum=1)
            target_length = max_length if max_target_length is None else max_target_length
            targets = self._encode(text_target, text_pair_target, max_length=target_length, **options)
        if encodings is None:
            return targets
        if targets is not None:
            encodings["labels"] = targets["input_ids"]
        return encodings

    def _encode(
        self,
        text: Any,
        text_pair: Any,
        *,
        add_special_tokens: bool,
        padding_strategy: str,
        truncation_strategy: str,
        max_length: int | None,
        stride: int,
        is_split_into_words: bool,
        pad_to_multiple_of: int | None,
        padding_side: str | None,
        return_tensors: str | None,
        return_token_type_ids: bool | None,
        return_attention_mask: bool | None,
        return_overflowing_tokens: bool,
        return_special_tokens_mask: bool,
        return_offsets_mapping: bool,
        return_length: bool,
        verbose: bool,
        split_special_tokens: bool,
    ) -> BatchEncoding:
        batch, is_batched = batch_text_inputs(text, text_pair, is_split_into_words)
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        truncation_cfg = None
        if truncation_strategy != "do_not_truncate":
            truncation_cfg = (max_length, stride, truncation_strategy, self.truncation_side)
        padding_cfg = None
        if padding_strategy != "do_not_pad":
            length = max_length if padding_strategy == "max_length" else None
            padding_cfg = (length, padding_side or self.padding_side, pad_to_multiple_of)

        encodings = self._encode_batch(
            batch, add_special_tokens, truncation_cfg, padding_cfg, split_special_tokens, is_split_into_words
        )

        # One row per encoding; overflowing windows become extra rows right after their source (transformers'
        # layout), and overflow_to_sample_mapping says which input each row came from.
        rows: list[Encoding] = []
        sample_mapping: list[int] = []
        for sample, encoding in enumerate(encodings):
            windows = [encoding] + (list(encoding.overflowing) if return_overflowing_tokens else [])
            rows.extend(windows)
            sample_mapping.extend([sample] * len(windows))

        data: dict[str, Any] = {"input_ids": [e.ids for e in rows]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in rows]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in rows]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in rows]
        if return_length:
            data["length"] = [len(e.ids) for e in rows]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = sample_mapping

        if truncation_strategy == "do_not_truncate" and verbose and not self._warned_too_long:
            longest = max((len(ids) for ids in data["input_ids"]), default=0)
            if longest > self.model_max_length:
                self._warned_too_long = True
                logger.warning(
                    "Token indices sequence length is longer than the specified maximum sequence length for "
                    f"this model ({longest} > {self.model_max_length}). Running this sequence through the "
                    "model will result in indexing errors; pass truncation=True to cut it."
                )

        if not is_batched and return_tensors is None and not return_overflowing_tokens:
            # transformers drops the batch dimension for a single, un-tensorised input, but only of the
            # per-token fields: "length" stays a one-element list.
            data = {key: value[0] if isinstance(value[0], list) else value for key, value in data.items()}
        return BatchEncoding(data, rows, tensor_type=return_tensors)

    def encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> BatchEncoding:
        """The seed's (transformers 4) name for encoding one text or pair: `self(text, text_pair, ...)`."""
        return self(text, text_pair, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs: Sequence[Any], **kwargs: Any) -> BatchEncoding:
        """The seed's (transformers 4) name for encoding a batch of texts or (text, pair) tuples."""
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TokenizerInputError(
                "batch_text_or_text_pairs must be a list of texts or of (text, pair) tuples, got "
                f"{type(batch_text_or_text_pairs).__name__}"
            )
        return self(list(batch_text_or_text_pairs), **kwargs)

    def encode(
        self,
        text: Any,
        text_pair: Any = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        return_tensors: str | None = None,
        **kwargs: Any,
    ):
        """input_ids of one text (or pair), as transformers' `encode`."""
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            return_tensors=return_tensors,
            **kwargs,
        )["input_ids"]

    def tokenize(
        self,
        text: str | Sequence[str],
        pair: str | Sequence[str] | None = None,
        add_special_tokens: bool = False,
        is_split_into_words: bool = False,
    ) -> list[str]:
        """WordPiece tokens of `text` (no special tokens unless asked, as in transformers)."""
        batch, is_batched = batch_text_inputs(text, pair, is_split_into_words)
        if is_batched:
            raise TokenizerInputError("tokenize() takes one text (and an optional pair), not a batch")
        return self._encode_batch(
            batch, add_special_tokens, None, None, self.split_special_tokens, is_split_into_words
        )[0].tokens

    def _configure_backend(
        self, truncation_cfg: tuple | None, padding_cfg: tuple | None, split_special_tokens: bool
    ) -> None:
        """Set the Rust tokenizer's per-call state (caller holds the lock); skips no-op changes."""
        settings = (truncation_cfg, padding_cfg, split_special_tokens, self.pad_token)
        if settings == self._backend_settings:
            return
        self._backend_settings = None  # unknown until every setter below has succeeded
        if truncation_cfg is None:
            self._tokenizer.no_truncation()
        else:
            max_length, stride, strategy, direction = truncation_cfg
            self._tokenizer.enable_truncation(
                max_length, stride=stride, strategy=strategy, direction=direction
            )
        if padding_cfg is None:
            self._tokenizer.no_padding()
        else:
            if self.pad_token_id is None:
                raise ValueError(
                    "padding needs a pad_token; this tokenizer has none (set tokenizer.pad_token)"
                )
            length, direction, pad_to_multiple_of = padding_cfg
            self._tokenizer.enable_padding(
                direction=direction,
                pad_id=self.pad_token_id,
                pad_type_id=self.pad_token_type_id,
                pad_token=self.pad_token,
                length=length,
                pad_to_multiple_of=pad_to_multiple_of,
            )
        # split_special_tokens: special tokens in the text are tokenized as plain text
        self._tokenizer.encode_special_tokens = bool(split_special_tokens)
        self._backend_settings = settings

    def _encode_batch(
        self,
        batch: list,
        add_special_tokens: bool,
        truncation_cfg: tuple | None,
        padding_cfg: tuple | None,
        split_special_tokens: bool = False,
        is_pretokenized: bool = False,
    ) -> list[Encoding]:
        with self._lock:
            try:
                self._configure_backend(truncation_cfg, padding_cfg, split_special_tokens)
                return self._tokenizer.encode_batch(
                    batch, add_special_tokens=add_special_tokens, is_pretokenized=is_pretokenized
                )
            except BaseException as e:
                bad = _lone_surrogate(batch)
                if bad is not None:  # tokenizers' own message is a type error about TextEncodeInput
                    raise TokenizerInputError(bad) from None
                # tokenizers reports impossible truncations as a bare Exception ("Truncation error: Second
                # sequence not provided", "... too short to respect the provided max_length") and, when the
                # stride is not smaller than a truncated sequence's budget, as a Rust panic (pyo3's
                # PanicException derives from BaseException, so transformers lets it escape `except
                # Exception`). Both become a ValueError, which is still an Exception, so code catching what
                # transformers raises keeps working.
                self._backend_settings = None  # the backend state is unknown after a failure
                is_panic = type(e).__name__ == "PanicException"
                if isinstance(e, ValueError) or not (is_panic or isinstance(e, Exception)):
                    raise  # already a ValueError (e.g. stride > max_length), or KeyboardInterrupt & co.
                max_length, stride, strategy = (
                    truncation_cfg[:3] if truncation_cfg else (None, 0, "do_not_truncate")
                )
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ValueError(
                    f"{message} (truncation={strategy!r}, max_length={max_length}, stride={stride})"
                ) from e


def _lone_surrogate(batch: list) -> str | None:
    """Where the first text of `batch` that is not valid Unicode (a lone UTF-16 surrogate such as '\\ud800',
    e.g. from a file decoded with errors='surrogateescape') has it, as an error message; None if all are
    valid. Only looked for after tokenizers failed, so valid input pays nothing."""
    for i, item in enumerate(batch):
        for text in (item,) if isinstance(item, str) else item:
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                return (
                    f"text {i} is not valid Unicode: lone surrogate {text[e.start]!r} at character "
                    f"{e.start}; texts must be valid UTF-8 strings (decode input with errors='replace')"
                )
    return None
