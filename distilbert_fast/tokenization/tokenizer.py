"""DistilBertTokenizer: a WordPiece tokenizer whose output matches transformers' DistilBertTokenizerFast.

All text processing (BERT normalisation, pre-tokenisation, WordPiece, special-token templates, truncation
with stride/overflow, padding, decoding) runs in the Rust `tokenizers` library, the same engine transformers'
fast tokenizers use. This package only rebuilds the pipeline the way transformers does and replicates
transformers' Python-side argument semantics (which strategy a `truncation=` / `padding=` value means, when
`max_length` defaults to `model_max_length`, how a single string is un-batched, ...). Where transformers 5
behaves differently from what one would guess, the code says so.

This module holds the class and its construction (the normaliser / pre-tokenizer / template set-up from the
seed's arguments); the methods come from one mixin per concern (encoding, padding, decoding, vocabulary,
files), each in its own module of this package.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors

from .decoding import DecodingMixin
from .encoding import EncodingMixin
from .files import TOKENIZER_FILE, VOCAB_FILE, FilesMixin, load_backend
from .padding import PaddingMixin
from .vocabulary import SPECIAL_TOKEN_NAMES, VocabularyMixin


class DistilBertTokenizer(EncodingMixin, PaddingMixin, DecodingMixin, VocabularyMixin, FilesMixin):
    """WordPiece tokenizer for DistilBERT / BERT checkpoints, API-compatible with transformers' fast
    tokenizer (`DistilBertTokenizerFast` is the same class, as in transformers 5).

    Build it with `from_pretrained(path_or_repo_id)` or directly from a `vocab_file` (vocab.txt), a
    `tokenizer_file` (tokenizer.json) or a `vocab` (dict, or the path of a vocab.txt).

    The positional order is the seed's (adapter-transformers' slow DistilBertTokenizer). Its two arguments that
    transformers' fast tokenizer ignores are implemented with `tokenizers` components:
      * `do_basic_tokenize=False`: no BERT normalisation (no lowercasing, accent stripping, CJK or
        punctuation splitting): words are split on whitespace only, then WordPiece, as the seed did;
      * `never_split`: tokens that are never split nor lowercased; each must be in the vocabulary (the seed
        mapped any other to [UNK]). They become non-special added tokens matched as whole words (the seed
        matched them only between whitespace; the two differ where punctuation touches the token).

    Unlike transformers 5, which ignores `vocab_file=` (its vocabulary argument is `vocab=`) and yields an
    all-[UNK] tokenizer, `vocab_file` is read, as the seed and transformers 4 did.
    """

    model_input_names = ["input_ids", "attention_mask"]
    vocab_files_names = {"vocab_file": VOCAB_FILE, "tokenizer_file": TOKENIZER_FILE}
    is_fast = True
    pad_token_type_id = 0

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        do_lower_case: bool = True,
        do_basic_tokenize: bool = True,
        never_split: Iterable[str] | None = None,
        unk_token: str | AddedToken = "[UNK]",
        sep_token: str | AddedToken = "[SEP]",
        pad_token: str | AddedToken = "[PAD]",
        cls_token: str | AddedToken = "[CLS]",
        mask_token: str | AddedToken = "[MASK]",
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        *,
        tokenizer_file: str | os.PathLike | None = None,
        vocab: dict[str, int] | str | os.PathLike | None = None,
        clean_up_tokenization_spaces: bool = False,
        model_max_length: int = 512,
        padding_side: str = "right",
        truncation_side: str = "right",
        bos_token: str | AddedToken | None = None,
        eos_token: str | AddedToken | None = None,
        extra_special_tokens: Sequence[str | AddedToken] | None = None,
        additional_special_tokens: Sequence[str | AddedToken] | None = None,
        added_tokens_decoder: dict[int, AddedToken] | None = None,
        split_special_tokens: bool = False,
        model_input_names: Sequence[str] | None = None,
        name_or_path: str = "",
    ):
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("right", "left"):
                raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
        if (
            not isinstance(model_max_length, int)
            or isinstance(model_max_length, bool)
            or model_max_length <= 0
        ):
            raise ValueError(f"model_max_length must be a positive int, got {model_max_length!r}")
        if never_split is not None and (
            isinstance(never_split, str) or not all(isinstance(tok, str) for tok in never_split)
        ):
            raise ValueError(f"never_split must be a list of str tokens, got {never_split!r}")
        if extra_special_tokens is not None and additional_special_tokens is not None:
            raise ValueError(
                "pass extra_special_tokens (transformers 5) or additional_special_tokens (its older name), not both"
            )

        self.do_lower_case = bool(do_lower_case)
        self.do_basic_tokenize = bool(do_basic_tokenize)
        self.never_split = list(never_split) if never_split is not None else None
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.split_special_tokens = bool(split_special_tokens)
        if model_input_names is not None:
            self.model_input_names = list(model_input_names)
        self.name_or_path = str(name_or_path)
        self.vocab_file = str(vocab_file) if vocab_file is not None else None
        # Named special tokens (str, None when unset) and the extra ones, as transformers keeps them. AddedToken
        # values keep their options (lstrip, ...) for the backend registration below.
        given = {
            "bos_token": bos_token, "eos_token": eos_token, "unk_token": unk_token, "sep_token": sep_token,
            "pad_token": pad_token, "cls_token": cls_token, "mask_token": mask_token,
        }  # fmt: skip
        self._special_tokens: dict[str, str | None] = {}
        for name in SPECIAL_TOKEN_NAMES:
            value = given[name]
            if value is not None and not isinstance(value, (str, AddedToken)):
                raise TypeError(f"{name} must be a str or tokenizers.AddedToken, got {type(value).__name__}")
            self._special_tokens[name] = None if value is None else str(value)
        extras = list(extra_special_tokens or additional_special_tokens or [])
        for tok in extras:
            if not isinstance(tok, (str, AddedToken)):
                raise TypeError(f"extra_special_tokens must hold str or AddedToken, got {tok!r}")
        self._extra_special_tokens = [str(tok) for tok in extras]

        backend = load_backend(vocab_file, tokenizer_file, vocab, self._special_tokens["unk_token"])
        if self.do_basic_tokenize:
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=True,
                handle_chinese_chars=self.tokenize_chinese_chars,
                strip_accents=strip_accents,
                lowercase=self.do_lower_case,
            )
            backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        else:
            # The seed's do_basic_tokenize=False: WordPiece on `text.split()`, nothing normalised. Python's
            # split() also splits at the ASCII separators \x1c-\x1f, which WhitespaceSplit keeps; this regex
            # agrees with str.split() on every code point.
            backend.normalizer = None
            backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\x{1c}-\x{1f}]+"), behavior="removed")
        # cleanup=True (the tokenizers default, used by transformers) joins " ." -> "." etc. while decoding.
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)

        # Tokens from tokenizer_config.json's added_tokens_decoder (when no tokenizer.json holds them), then the
        # special tokens, are registered as added tokens when missing, in transformers' order. Special tokens
        # are special (normalized=False): besides skip_special_tokens, a literal "[MASK]" in the text encodes
        # to the mask id rather than to '[', 'mask', ']'.
        present = {tok.content for tok in backend.get_added_tokens_decoder().values()}
        to_add = [
            tok for _, tok in sorted((added_tokens_decoder or {}).items()) if tok.content not in present
        ]
        named = {tok for tok in self._special_tokens.values() if tok is not None}
        for value in [given[name] for name in SPECIAL_TOKEN_NAMES] + extras:
            if value is None or str(value) in present or any(str(value) == t.content for t in to_add):
                continue
            if isinstance(value, str):
                value = AddedToken(value, special=True, normalized=False)
            elif str(value) in named:
                value.special = True
            to_add.append(value)
        if to_add:
            backend.add_tokens(to_add)
        self._tokenizer = backend
        if self.do_basic_tokenize:  # the seed's never_split belonged to its basic tokenizer
            self._add_never_split(self.never_split or [])

        cls, sep = self._special_tokens["cls_token"], self._special_tokens["sep_token"]
        if cls is None or sep is None:
            raise ValueError("cls_token and sep_token are needed for DistilBERT's [CLS] A [SEP] template")
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))],
        )
        # tokenizer.json files often carry a fixed padding/truncation (the MiniLM one pads everything to 128);
        # transformers overrides them on every call, so start from "off" and configure per call.
        backend.no_padding()
        backend.no_truncation()
        # The backend's truncation/padding state is global to the object; the lock keeps "configure, then
        # encode" atomic when one tokenizer is shared between threads.
        self._lock = threading.Lock()
        self._backend_settings: tuple | None = None
        self._warned_too_long = False

    def __getstate__(self) -> dict[str, Any]:
        # pickle / deepcopy (e.g. shipping the tokenizer to Ray workers): the lock is per process
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _add_never_split(self, tokens: Sequence[str]) -> None:
        """never_split -> whole-word added tokens that keep their vocabulary id (never new ids)."""
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        present = {tok.content for tok in self._tokenizer.get_added_tokens_decoder().values()}
        missing = [tok for tok in tokens if tok not in vocab]
        if missing:
            raise ValueError(
                f"never_split tokens {missing} are not in the vocabulary. The seed tokenizer turned them into "
                "[UNK]; add them to the vocabulary first (tokenizer.add_tokens) or leave them out of never_split"
            )
        new = [tok for tok in dict.fromkeys(tokens) if tok not in present]
        if new:
            # single_word: matched only where not glued to a letter/digit (the seed required whitespace on both
            # sides: the two agree wherever the token stands between spaces); normalized=False: matched in the
            # raw text, case-sensitively, before lowercasing, like the seed's check.
            self._tokenizer.add_tokens([AddedToken(tok, single_word=True, normalized=False) for tok in new])

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"len={len(self)}, model_max_length={self.model_max_length}, do_lower_case={self.do_lower_case}, "
            f"do_basic_tokenize={self.do_basic_tokenize}, strip_accents={self.strip_accents}, "
            f"tokenize_chinese_chars={self.tokenize_chinese_chars}, special_tokens={self.special_tokens_map})"
        )


DistilBertTokenizerFast = DistilBertTokenizer  # transformers 5: the same class


def truncating_on(tokenizer, side: str, copies: dict):
    """`tokenizer` if it truncates on `side`, else a copy that does, made once and kept in `copies`: the
    truncation side is tokenizer state, and flipping it for one call would race with other threads using the
    tokenizer (a server's event loop, a pipeline shared between threads)."""
    if side == tokenizer.truncation_side:
        return tokenizer
    if side not in copies:
        import copy

        tok = copy.deepcopy(tokenizer)
        tok.truncation_side = side
        copies[side] = tok
    return copies[side]
