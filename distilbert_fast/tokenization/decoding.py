"""Ids -> text: DistilBertTokenizer's decode methods (the WordPiece decoder runs in `tokenizers`) and
transformers' `clean_up_tokenization`."""

from __future__ import annotations

from typing import Any

from .arguments import to_python


class DecodingMixin:
    """DistilBertTokenizer's decoding methods. Uses the tokenizer's backend (`_tokenizer`) and its
    clean_up_tokenization_spaces setting."""

    def decode(
        self,
        token_ids,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str | list[str]:
        """Ids -> text. Takes an int, a list, a numpy array or torch tensor; a 2-D input decodes each row."""
        token_ids = to_python(token_ids)
        if isinstance(token_ids, dict):  # a (Batch)Encoding-like mapping
            token_ids = to_python(token_ids["input_ids"])
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if not isinstance(token_ids, (list, tuple)):
            raise TypeError(
                f"token_ids must be an int, a sequence of ints or a batch of them, got {token_ids!r}"
            )
        if token_ids and isinstance(token_ids[0], (list, tuple)):
            return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in token_ids]
        text = self._tokenizer.decode([int(i) for i in token_ids], skip_special_tokens=skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            text = clean_up_tokenization(text)
        return text

    def batch_decode(
        self,
        sequences,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> list[str]:
        result = self.decode(sequences, skip_special_tokens, clean_up_tokenization_spaces)
        return [result] if isinstance(result, str) else result

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self._tokenizer.decoder.decode(tokens)

    @property
    def decoder(self):
        return self._tokenizer.decoder

    @staticmethod
    def clean_up_tokenization(text: str) -> str:
        return clean_up_tokenization(text)


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
