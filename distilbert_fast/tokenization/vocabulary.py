"""DistilBertTokenizer's vocabulary and special tokens: lookups, add_tokens / add_special_tokens, the named
special tokens and their ids (settable, as in transformers), and the `[CLS] A [SEP] B [SEP]` helpers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import AddedToken

from .arguments import to_python

# transformers' SPECIAL_TOKENS_ATTRIBUTES order (bos/eos are unset for BERT). The order matters only when a
# token is missing from the vocabulary: it is then appended, and ids follow this order.
SPECIAL_TOKEN_NAMES = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
)  # fmt: skip


def _special_token_property(name: str) -> property:
    def get(self) -> str | None:
        return self._special_tokens[name]

    def set(self, value: str | AddedToken | None) -> None:
        # transformers only records the name here; add_special_tokens also adds the token to the vocabulary
        if value is not None and not isinstance(value, (str, AddedToken)):
            raise ValueError(f"{name} must be a str, a tokenizers.AddedToken or None, got {value!r}")
        self._special_tokens[name] = None if value is None else str(value)

    return property(get, set, doc=f"The {name.replace('_', ' ')} (str), None when unset.")


def _special_id_property(name: str) -> property:
    def get(self) -> int | None:
        token = self._special_tokens[name]
        return None if token is None else self.convert_tokens_to_ids(token)

    def set(self, value: int | None) -> None:
        setattr(self, name, None if value is None else self.convert_ids_to_tokens(value))

    return property(get, set, doc=f"The id of the {name.replace('_', ' ')}, None when unset.")


class VocabularyMixin:
    """DistilBertTokenizer's vocabulary methods. Uses the tokenizer's backend (`_tokenizer`), its lock, the
    named special tokens (`_special_tokens`, name -> str or None), the extra ones (`_extra_special_tokens`)
    and model_max_length."""

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (as in transformers)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included (what resize_token_embeddings needs)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return self._tokenizer.get_added_tokens_decoder()

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {tok.content: index for index, tok in sorted(self.added_tokens_decoder.items())}

    def get_added_vocab(self) -> dict[str, int]:
        return self.added_tokens_encoder

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Token(s) -> id(s); unknown tokens map to unk_token_id."""
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return self._tokenizer.token_to_id(str(self.unk_token)) if index is None else index
        return [self.convert_tokens_to_ids(tok) for tok in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False):
        """Id(s) -> token(s). An unknown id gives None, like transformers."""
        ids = to_python(ids)
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def add_tokens(
        self, new_tokens: str | AddedToken | Sequence[str | AddedToken], special_tokens: bool = False
    ) -> int:
        """Add tokens to the vocabulary (new ids at the end); returns what `tokenizers` reports as added.

        A str becomes a normalised, non-special added token (special_tokens=True: special, matched
        verbatim); a `tokenizers.AddedToken` keeps its options (single_word, lstrip, rstrip, normalized,
        special). As in transformers, special_tokens=True does not make them `all_special_tokens` (use
        add_special_tokens({"extra_special_tokens": [...]}) for that). Resize the model's embeddings to
        `len(tokenizer)` afterwards.
        """
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        for tok in new_tokens:
            if not isinstance(tok, (str, AddedToken)) or not str(tok):
                raise TypeError(f"new_tokens must hold non-empty str or tokenizers.AddedToken, got {tok!r}")
        with self._lock:
            if special_tokens:
                return self._tokenizer.add_special_tokens(list(new_tokens))
            return self._tokenizer.add_tokens(list(new_tokens))

    def add_special_tokens(
        self,
        special_tokens_dict: dict[str, Any],
        replace_extra_special_tokens: bool = True,
        *,
        replace_additional_special_tokens: bool | None = None,
    ) -> int:
        """Set named special tokens ({"pad_token": ...}) and/or extra ones ({"extra_special_tokens": [...]},
        alias "additional_special_tokens"), adding those missing from the vocabulary; returns the count added.

        As in transformers' fast tokenizer, a new cls_token / sep_token is registered but the [CLS] ... [SEP]
        template built at construction keeps its tokens.
        """
        if replace_additional_special_tokens is not None:  # transformers 4's name for the same switch
            replace_extra_special_tokens = replace_additional_special_tokens
        if not special_tokens_dict:
            return 0
        special_tokens_dict = dict(special_tokens_dict)
        if "additional_special_tokens" in special_tokens_dict and not special_tokens_dict.get(
            "extra_special_tokens"
        ):
            special_tokens_dict["extra_special_tokens"] = special_tokens_dict.pop("additional_special_tokens")
        allowed = (*SPECIAL_TOKEN_NAMES, "extra_special_tokens")
        to_add = []
        for key, value in special_tokens_dict.items():
            if key not in allowed:
                raise ValueError(f"special_tokens_dict key {key!r} is not one of {allowed}")
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)) or not all(
                    isinstance(t, (str, AddedToken)) for t in value
                ):
                    raise ValueError(
                        f"extra_special_tokens must be a list of str or AddedToken, got {value!r}"
                    )
                new = [
                    AddedToken(t, special=True, normalized=False) if isinstance(t, str) else t
                    for t in value
                    if replace_extra_special_tokens or str(t) not in self._extra_special_tokens
                ]
                if replace_extra_special_tokens and new:
                    self._extra_special_tokens = [str(t) for t in new]
                else:
                    self._extra_special_tokens.extend(str(t) for t in new)
                to_add.extend(new)
            else:
                if not isinstance(value, (str, AddedToken)):
                    raise ValueError(f"{key} must be a str or tokenizers.AddedToken, got {value!r}")
                if isinstance(value, str):
                    value = AddedToken(value, special=True, normalized=False)
                self._special_tokens[key] = str(value)
                to_add.append(value)
        return self.add_tokens(to_add, special_tokens=True)

    # special tokens: <name>, <name>_id (settable, as in transformers), the extra ones, all of them
    bos_token, bos_token_id = _special_token_property("bos_token"), _special_id_property("bos_token")
    eos_token, eos_token_id = _special_token_property("eos_token"), _special_id_property("eos_token")
    unk_token, unk_token_id = _special_token_property("unk_token"), _special_id_property("unk_token")
    sep_token, sep_token_id = _special_token_property("sep_token"), _special_id_property("sep_token")
    pad_token, pad_token_id = _special_token_property("pad_token"), _special_id_property("pad_token")
    cls_token, cls_token_id = _special_token_property("cls_token"), _special_id_property("cls_token")
    mask_token, mask_token_id = _special_token_property("mask_token"), _special_id_property("mask_token")

    @property
    def extra_special_tokens(self) -> list[str]:
        return list(self._extra_special_tokens)

    @extra_special_tokens.setter
    def extra_special_tokens(self, value: Sequence[str] | None) -> None:
        if value is not None and (isinstance(value, str) or not isinstance(value, (list, tuple))):
            raise ValueError(f"extra_special_tokens must be a list of str, got {value!r}")
        self._extra_special_tokens = [str(tok) for tok in value or []]

    additional_special_tokens = extra_special_tokens  # transformers 4's name

    @property
    def extra_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self._extra_special_tokens)

    additional_special_tokens_ids = extra_special_tokens_ids

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set (transformers 5: the extra ones are not included)."""
        return {name: tok for name, tok in self._special_tokens.items() if tok is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self._extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(tok) for tok in self.all_special_tokens]

    def get_special_tokens_mask(
        self,
        token_ids_0: Sequence[int],
        token_ids_1: Sequence[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 for special tokens, 0 for sequence tokens.

        already_has_special_tokens=True: membership in all_special_ids (what data collators call). Otherwise
        the mask of `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` built from the given ids, as the seed's
        tokenizer returned (transformers 5 raises NotImplementedError there).
        """
        token_ids_0 = to_python(token_ids_0)
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError(
                    "token_ids_1 must be None when already_has_special_tokens=True (the ids are already one "
                    "formatted sequence)"
                )
            special = set(self.all_special_ids)
            return [1 if int(i) in special else 0 for i in token_ids_0]
        mask = [1] + [0] * len(token_ids_0) + [1]
        return mask if token_ids_1 is None else mask + [0] * len(to_python(token_ids_1)) + [1]

    def build_inputs_with_special_tokens(
        self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None
    ) -> list[int]:
        """`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` (the seed's method)."""
        ids = [self.cls_token_id, *to_python(token_ids_0), self.sep_token_id]
        return ids if token_ids_1 is None else ids + [*to_python(token_ids_1), self.sep_token_id]

    def create_token_type_ids_from_sequences(
        self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None
    ) -> list[int]:
        """0 over `[CLS] A [SEP]`, 1 over `B [SEP]` (the seed's method)."""
        first = [0] * (len(to_python(token_ids_0)) + 2)
        return first if token_ids_1 is None else first + [1] * (len(to_python(token_ids_1)) + 1)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)
