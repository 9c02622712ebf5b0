"""DistilBertTokenizer: a WordPiece tokenizer whose output matches transformers' DistilBertTokenizerFast.

All text processing (BERT normalisation, pre-tokenisation, WordPiece, special-token templates, truncation
with stride/overflow, padding, decoding) runs in the Rust `tokenizers` library, the same engine transformers'
fast tokenizers use. This module only rebuilds the pipeline the way transformers does and replicates
transformers' Python-side argument semantics (which strategy a `truncation=` / `padding=` value means, when
`max_length` defaults to `model_max_length`, how a single string is un-batched, ...). Where transformers 5
behaves differently from what one would guess, the code says so.

Files read by `from_pretrained` (a directory, a file, or a Hub repo id):
  * tokenizer.json        preferred source of the vocabulary and added tokens;
  * vocab.txt             used when there is no tokenizer.json (one token per line, id = line number);
  * tokenizer_config.json do_lower_case, do_basic_tokenize, never_split, strip_accents, tokenize_chinese_chars,
                          model_max_length, special tokens (named and extra), added_tokens_decoder,
                          clean_up_tokenization_spaces, padding/truncation side, split_special_tokens;
  * special_tokens_map.json legacy special-token names.

BatchEncoding, pad() on encoded inputs and the argument rules shared by every call live in
tokenization_utils.py.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import (
    AddedToken,
    Encoding,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers.models import WordPiece

from .tokenization_utils import (
    LARGE_INTEGER,
    VERY_LARGE_INTEGER,
    BatchEncoding,
    CharSpan,
    TokenizerInputError,
    TokenSpan,
    batch_text_inputs,
    check_int,
    check_tensor_type,
    clean_up_tokenization,
    collate_encoded_inputs,
    pad_encoded_inputs,
    resolve_padding_truncation,
    to_python,
)

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
_HUB_FILES = [TOKENIZER_FILE, VOCAB_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE]

# transformers' SPECIAL_TOKENS_ATTRIBUTES order (bos/eos are unset for BERT). The order matters only when a
# token is missing from the vocabulary: it is then appended, and ids follow this order.
_SPECIAL_TOKEN_NAMES = (
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# construction helpers
# ----------------------------------------------------------------------------------------------------------


def _load_backend(vocab_file: Any, tokenizer_file: Any, vocab: Any, unk_token: str | None) -> Tokenizer:
    """The WordPiece model (and any added tokens) from tokenizer.json, vocab.txt or a dict.

    Everything around the model is rebuilt by the caller, as transformers does: in particular
    tokenizer_config.json / constructor arguments (default: lowercase) override the normaliser settings
    stored in tokenizer.json.
    """
    if tokenizer_file is not None:
        tokenizer_file = os.fspath(tokenizer_file)
        if not os.path.isfile(tokenizer_file):
            raise FileNotFoundError(f"tokenizer_file={tokenizer_file!r} does not exist")
        try:
            backend = Tokenizer.from_file(tokenizer_file)
        except Exception as e:  # Rust raises a bare Exception for malformed JSON
            raise ValueError(
                f"tokenizer_file={tokenizer_file!r} is not a valid tokenizers JSON file: {e}"
            ) from e
        if not isinstance(backend.model, WordPiece):
            raise ValueError(
                f"tokenizer_file={tokenizer_file!r} holds a {type(backend.model).__name__} model; "
                f"DistilBertTokenizer needs a WordPiece model"
            )
        return backend
    if isinstance(vocab, (str, os.PathLike)):
        vocab_file, vocab = vocab, None
    if vocab is None and vocab_file is None:
        raise ValueError(
            "DistilBertTokenizer needs one of tokenizer_file= (tokenizer.json), vocab_file= (vocab.txt) "
            "or vocab= (dict); or use DistilBertTokenizer.from_pretrained(path_or_repo_id)"
        )
    if vocab is None:
        vocab_file = os.fspath(vocab_file)
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(f"vocab_file={vocab_file!r} does not exist")
        # tokenizers' own reader: id = line number, same as transformers' vocab.txt path.
        vocab = WordPiece.read_file(vocab_file)
    if not isinstance(vocab, dict) or not vocab:
        raise ValueError(f"vocab must be a non-empty dict token -> id, got {type(vocab).__name__}")
    return Tokenizer(
        WordPiece(
            vocab,
            unk_token=unk_token or "[UNK]",
            continuing_subword_prefix="##",
            max_input_chars_per_word=100,
        )
    )


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


def _check_side(name: str, side: str | None) -> str | None:
    if side is not None and side not in ("right", "left"):
        raise ValueError(f"{name} must be 'right', 'left' or None, got {side!r}")
    return side


# ----------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------


class DistilBertTokenizer:
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
        for name in _SPECIAL_TOKEN_NAMES:
            value = given[name]
            if value is not None and not isinstance(value, (str, AddedToken)):
                raise TypeError(f"{name} must be a str or tokenizers.AddedToken, got {type(value).__name__}")
            self._special_tokens[name] = None if value is None else str(value)
        extras = list(extra_special_tokens or additional_special_tokens or [])
        for tok in extras:
            if not isinstance(tok, (str, AddedToken)):
                raise TypeError(f"extra_special_tokens must hold str or AddedToken, got {tok!r}")
        self._extra_special_tokens = [str(tok) for tok in extras]

        backend = _load_backend(vocab_file, tokenizer_file, vocab, self._special_tokens["unk_token"])
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
        for value in [given[name] for name in _SPECIAL_TOKEN_NAMES] + extras:
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

    # ---------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> DistilBertTokenizer:
        """Load from a local directory, a tokenizer.json / vocab.txt file, or a Hugging Face Hub repo id.

        Settings come from tokenizer_config.json (and special_tokens_map.json) next to the vocabulary; keyword
        arguments override them (e.g. `from_pretrained(path, model_max_length=128)`). `use_fast` and
        `trust_remote_code` (AutoTokenizer's) are accepted and have no effect: this tokenizer is always fast.
        """
        kwargs.pop("use_fast", None)
        kwargs.pop("trust_remote_code", None)
        source = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(source):
            directory, tokenizer_file, vocab_file = source, None, None
        elif os.path.isfile(source):
            # A file: tokenizer.json-style JSON or a vocab.txt; its siblings provide the config.
            directory = os.path.dirname(os.path.abspath(source))
            tokenizer_file, vocab_file = (source, None) if source.endswith(".json") else (None, source)
        else:
            directory = _resolve_hub_repo(source, revision, cache_dir, local_files_only, token)
            tokenizer_file = vocab_file = None

        if tokenizer_file is None and vocab_file is None:
            candidate = os.path.join(directory, TOKENIZER_FILE)
            if os.path.isfile(candidate):
                tokenizer_file = candidate
            elif os.path.isfile(os.path.join(directory, VOCAB_FILE)):
                vocab_file = os.path.join(directory, VOCAB_FILE)
            else:
                raise FileNotFoundError(
                    f"pretrained_model_name_or_path={source!r}: found neither {TOKENIZER_FILE} nor "
                    f"{VOCAB_FILE} in {directory!r}"
                )
        if vocab_file is None and os.path.isfile(os.path.join(directory, VOCAB_FILE)):
            vocab_file = os.path.join(directory, VOCAB_FILE)  # recorded only; tokenizer.json takes precedence

        init_kwargs = _read_config(directory)
        init_kwargs.update(kwargs)
        init_kwargs.setdefault("name_or_path", source)
        if tokenizer_file is not None:
            init_kwargs["tokenizer_file"] = tokenizer_file
            init_kwargs.pop("vocab", None)
        init_kwargs["vocab_file"] = vocab_file
        try:
            return cls(**init_kwargs)
        except TypeError as e:
            raise TypeError(f"DistilBertTokenizer.from_pretrained({source!r}): {e}") from e

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Write tokenizer.json, vocab.txt, tokenizer_config.json and special_tokens_map.json.

        The directory loads back with this class and with transformers' AutoTokenizer /
        DistilBertTokenizerFast (which ignores do_basic_tokenize=False; never_split tokens survive as added
        tokens).
        """
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory={save_directory!r} is a file, expected a directory")
        os.makedirs(save_directory, exist_ok=True)
        paths = {name: os.path.join(save_directory, name) for name in _HUB_FILES}

        with self._lock:
            # Never serialise the per-call truncation/padding of the last __call__.
            self._configure_backend(None, None, False)
            self._tokenizer.save(paths[TOKENIZER_FILE])

        self.save_vocabulary(save_directory)

        added_tokens_decoder = {
            str(index): {
                "content": tok.content,
                "lstrip": tok.lstrip,
                "normalized": tok.normalized,
                "rstrip": tok.rstrip,
                "single_word": tok.single_word,
                "special": tok.special,
            }
            for index, tok in sorted(self.added_tokens_decoder.items())
        }
        config = {
            "tokenizer_class": "DistilBertTokenizer",
            "do_lower_case": self.do_lower_case,
            "do_basic_tokenize": self.do_basic_tokenize,
            "never_split": self.never_split,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "split_special_tokens": self.split_special_tokens,
            "model_input_names": list(self.model_input_names),
            **self.special_tokens_map,
            "added_tokens_decoder": added_tokens_decoder,
        }
        if self._extra_special_tokens:
            config["extra_special_tokens"] = list(self._extra_special_tokens)
        with open(paths[TOKENIZER_CONFIG_FILE], "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")
        with open(paths[SPECIAL_TOKENS_MAP_FILE], "w", encoding="utf-8") as f:
            json.dump(self.special_tokens_map, f, indent=2, ensure_ascii=False)
            f.write("\n")
        return tuple(paths[name] for name in _HUB_FILES)

    # ----------------------------------------------------------------------------------------------
    # vocabulary

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._tokenizer

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
        allowed = (*_SPECIAL_TOKEN_NAMES, "extra_special_tokens")
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

    def save_vocabulary(
        self, save_directory: str | os.PathLike, filename_prefix: str | None = None
    ) -> tuple[str]:
        """Write the base vocabulary as vocab.txt (one token per line, line number = id)."""
        path = os.path.join(
            os.fspath(save_directory), (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE
        )
        by_id = sorted(self._tokenizer.get_vocab(with_added_tokens=False).items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            logger.warning(
                "vocabulary ids are not consecutive; vocab.txt line numbers will not match the ids"
            )
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token, _ in by_id)
        return (path,)

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"len={len(self)}, model_max_length={self.model_max_length}, do_lower_case={self.do_lower_case}, "
            f"do_basic_tokenize={self.do_basic_tokenize}, strip_accents={self.strip_accents}, "
            f"tokenize_chinese_chars={self.tokenize_chinese_chars}, special_tokens={self.special_tokens_map})"
        )

    # ---------------------------------------------------------------------------------------------- encoding

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
            "padding_side": _check_side("padding_side", padding_side),
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
            padding_side=_check_side("padding_side", padding_side) or self.padding_side,
            return_attention_mask=return_attention_mask,
            pad_token_id=self.pad_token_id,
            pad_token_type_id=self.pad_token_type_id,
        )
        return BatchEncoding(padded, tensor_type=return_tensors)

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

    # ---------------------------------------------------------------------------------------------- decoding

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


DistilBertTokenizerFast = DistilBertTokenizer  # transformers 5: the same class


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def _token_content(value: Any) -> str:
    """A special-token value from a config file: a str or an AddedToken dict ({"content": ..., ...})."""
    if isinstance(value, dict):
        return str(value["content"])
    return str(value)


def _read_config(directory: str) -> dict[str, Any]:
    """Constructor kwargs from tokenizer_config.json / special_tokens_map.json (missing files are fine)."""
    config: dict[str, Any] = {}
    path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    special_map: dict[str, Any] = {}
    map_path = os.path.join(directory, SPECIAL_TOKENS_MAP_FILE)
    # transformers reads special_tokens_map.json (and lets it override the config) only for configs without
    # "added_tokens_decoder", i.e. tokenizers saved by old versions.
    if "added_tokens_decoder" not in config and os.path.isfile(map_path):
        with open(map_path, encoding="utf-8") as f:
            special_map = json.load(f)

    kwargs: dict[str, Any] = {}
    for key in (
        "do_lower_case",
        "do_basic_tokenize",
        "never_split",
        "strip_accents",
        "tokenize_chinese_chars",
        "clean_up_tokenization_spaces",
        "padding_side",
        "truncation_side",
        "split_special_tokens",
        "model_input_names",
    ):
        if config.get(key) is not None:
            kwargs[key] = config[key]
    if config.get("model_max_length") is not None:
        kwargs["model_max_length"] = int(config["model_max_length"])
    for name in _SPECIAL_TOKEN_NAMES:
        value = special_map.get(name, config.get(name))
        if value is not None:
            kwargs[name] = _token_content(value)
    # transformers 5 writes extra_special_tokens, older versions additional_special_tokens
    for key in ("extra_special_tokens", "additional_special_tokens"):
        value = special_map.get(key, config.get(key))
        if isinstance(value, list) and value:
            kwargs["extra_special_tokens"] = [_token_content(tok) for tok in value]
            break
    if isinstance(config.get("added_tokens_decoder"), dict):
        kwargs["added_tokens_decoder"] = {
            int(index): AddedToken(
                fields["content"],
                single_word=fields.get("single_word", False),
                lstrip=fields.get("lstrip", False),
                rstrip=fields.get("rstrip", False),
                normalized=fields.get("normalized", not fields.get("special", False)),
                special=fields.get("special", False),
            )
            for index, fields in config["added_tokens_decoder"].items()
        }
    return kwargs


def _resolve_hub_repo(
    repo_id: str, revision: str | None, cache_dir: Any, local_files_only: bool, token: Any
) -> str:
    """Find (or download) the tokenizer files of a Hub repo; return the snapshot dir. The model loader's
    resolver (checkpoint.resolve_hub_snapshot), so both report the same errors: a HubResolutionError,
    which is a FileNotFoundError and a CheckpointError."""
    from .checkpoint import resolve_hub_snapshot

    return str(
        resolve_hub_snapshot(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=_HUB_FILES,
        )
    )


__all__ = [
    "LARGE_INTEGER",
    "VERY_LARGE_INTEGER",
    "BatchEncoding",
    "CharSpan",
    "DistilBertTokenizer",
    "DistilBertTokenizerFast",
    "TokenSpan",
    "TokenizerInputError",
    "clean_up_tokenization",
]


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
                return (f"text {i} is not valid Unicode: lone surrogate {text[e.start]!r} at character "
                        f"{e.start}; texts must be valid UTF-8 strings (decode input with errors='replace')")
    return None
