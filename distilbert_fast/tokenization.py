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
  * tokenizer_config.json do_lower_case, strip_accents, tokenize_chinese_chars, model_max_length,
                          special tokens, clean_up_tokenization_spaces;
  * special_tokens_map.json legacy special-token names.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from typing import Any, Iterable, Sequence

from tokenizers import AddedToken, Encoding, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
_HUB_FILES = [TOKENIZER_FILE, VOCAB_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE]

TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TENSOR_TYPES = ("pt", "np")

# transformers' sentinels: a model_max_length above LARGE_INTEGER means "no known limit".
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

# Named special tokens in transformers' SPECIAL_TOKENS_ATTRIBUTES order (bos/eos do not exist for BERT). The
# order matters only when a token is missing from the vocabulary: it is then appended, and ids follow this
# order.
_SPECIAL_TOKEN_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class TokenizerInputError(TypeError, ValueError):
    """A malformed `text` / `text_pair` argument.

    transformers raises ValueError for these while TypeError is the Python convention for a wrong type;
    deriving from both lets callers written against either keep working.
    """


# ----------------------------------------------------------------------------------------------------------
# BatchEncoding
# ----------------------------------------------------------------------------------------------------------


class BatchEncoding(dict):
    """The result of `DistilBertTokenizer.__call__`: a dict of model inputs with transformers' extras.

    * keys are readable as attributes (`enc.input_ids`);
    * `enc[i]` with an integer returns the `tokenizers.Encoding` of row i (word/char alignment lives there);
    * `tokens(i)`, `word_ids(i)`, `sequence_ids(i)` mirror transformers' BatchEncoding;
    * `to(device)` moves torch tensors (a no-op for lists / numpy arrays).
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        encodings: Sequence[Encoding] | None = None,
        tensor_type: str | None = None,
    ):
        super().__init__(data or {})
        self._encodings = list(encodings) if encodings is not None else None
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type)

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
    def encodings(self) -> list[Encoding] | None:
        return self._encodings

    @property
    def n_sequences(self) -> int | None:
        return self._encodings[0].n_sequences if self._encodings else None

    def _encoding(self, batch_index: int) -> Encoding:
        if not self._encodings:
            raise ValueError("this BatchEncoding holds no tokenizers.Encoding (it was built by hand)")
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._encoding(batch_index).sequence_ids

    def char_to_token(self, batch_index: int, char_index: int, sequence_index: int = 0) -> int | None:
        return self._encoding(batch_index).char_to_token(char_index, sequence_index)

    def token_to_chars(self, batch_index: int, token_index: int) -> tuple[int, int] | None:
        return self._encoding(batch_index).token_to_chars(token_index)

    def convert_to_tensors(self, tensor_type: str) -> "BatchEncoding":
        tensor_type = _check_tensor_type(tensor_type)
        for key, value in list(self.items()):
            _check_rectangular(key, value)
            if tensor_type == "pt":
                import torch

                # int64 even for an empty batch, where torch would otherwise infer float32.
                self[key] = torch.tensor(value, dtype=torch.long)
            else:
                import numpy as np

                self[key] = np.asarray(value, dtype=np.int64)
        return self

    def to(self, device, *, non_blocking: bool = False) -> "BatchEncoding":
        for key, value in list(self.items()):
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self

    def __reduce__(self):
        # dict subclasses pickle their items through __setitem__ but lose the encodings otherwise.
        return (self.__class__, (dict(self), self._encodings))


def _check_rectangular(key: str, value: Any) -> None:
    """Raise transformers-style ValueError when rows of a batched field have different lengths."""
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        lengths = {len(row) for row in value}
        if len(lengths) > 1:
            raise ValueError(
                f"Unable to create tensor for `{key}`: the sequences have different lengths "
                f"({min(lengths)}..{max(lengths)}). Activate padding (padding=True or padding='max_length') "
                f"and/or truncation (truncation=True) to get batched tensors of one length."
            )


def _check_tensor_type(return_tensors: Any) -> str | None:
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
# Tokenizer
# ----------------------------------------------------------------------------------------------------------


class DistilBertTokenizer:
    """WordPiece tokenizer for DistilBERT / BERT checkpoints, API-compatible with transformers' fast
    tokenizer.


    Build it with `from_pretrained(path_or_repo_id)` or directly from a `vocab_file` (vocab.txt), a
    `tokenizer_file` (tokenizer.json) or a `vocab` dict.
    """

    model_input_names = ["input_ids", "attention_mask"]
    vocab_files_names = {"vocab_file": VOCAB_FILE, "tokenizer_file": TOKENIZER_FILE}

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        model_max_length: int = 512,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        clean_up_tokenization_spaces: bool = False,
        padding_side: str = "right",
        truncation_side: str = "right",
        *,
        vocab: dict[str, int] | None = None,
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

        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.name_or_path = str(name_or_path)
        self.vocab_file = str(vocab_file) if vocab_file is not None else None
        self._special_tokens = {
            "unk_token": str(unk_token),
            "sep_token": str(sep_token),
            "pad_token": str(pad_token),
            "cls_token": str(cls_token),
            "mask_token": str(mask_token),
        }

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
            # The model (vocabulary, unk token, '##' prefix) and the added tokens come from the file.
            # Everything around the model is rebuilt below, as transformers does: in particular
            # tokenizer_config.json / constructor arguments (default: lowercase) override the normaliser
            # settings stored in tokenizer.json.
        elif vocab_file is not None or vocab is not None:
            if vocab is None:
                vocab_file = os.fspath(vocab_file)
                if not os.path.isfile(vocab_file):
                    raise FileNotFoundError(f"vocab_file={vocab_file!r} does not exist")
                # tokenizers' own reader: id = line number, same as transformers' vocab.txt path.
                vocab = WordPiece.read_file(vocab_file)
            if not isinstance(vocab, dict) or not vocab:
                raise ValueError(f"vocab must be a non-empty dict token -> id, got {type(vocab).__name__}")
            backend = Tokenizer(
                WordPiece(
                    vocab,
                    unk_token=self._special_tokens["unk_token"],
                    continuing_subword_prefix="##",
                    max_input_chars_per_word=100,
                )
            )
        else:
            raise ValueError(
                "DistilBertTokenizer needs one of tokenizer_file= (tokenizer.json), vocab_file= (vocab.txt) "
                "or vocab= (dict); or use DistilBertTokenizer.from_pretrained(path_or_repo_id)"
            )

        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=self.tokenize_chinese_chars,
            strip_accents=strip_accents,
            lowercase=self.do_lower_case,
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # cleanup=True (the tokenizers default, used by transformers) joins " ." -> "." etc. while decoding.
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)

        # Special tokens are registered as special added tokens (normalized=False), as transformers does.
        # Besides flagging them for skip_special_tokens / special_tokens_mask, this makes a literal "[MASK]"
        # in the input text encode to the mask id rather than to '[', 'mask', ']'.
        present = {tok.content for tok in backend.get_added_tokens_decoder().values()}
        wanted = dict.fromkeys(self._special_tokens[name] for name in _SPECIAL_TOKEN_NAMES)  # ordered, unique
        missing = [tok for tok in wanted if tok not in present]
        if missing:
            backend.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in missing])

        cls, sep = self._special_tokens["cls_token"], self._special_tokens["sep_token"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))],
        )
        # tokenizer.json files often carry a fixed padding/truncation (the MiniLM one pads everything to 128);
        # transformers overrides them on every call, so start from "off" and configure per call.
        backend.no_padding()
        backend.no_truncation()
        self._tokenizer = backend
        # The backend's truncation/padding state is global to the object; the lock keeps "configure, then
        # encode" atomic when one tokenizer is shared between threads.
        self._lock = threading.Lock()
        self._backend_settings: tuple | None = (None, None)
        self._warned_too_long = False

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
    ) -> "DistilBertTokenizer":
        """Load from a local directory, a tokenizer.json / vocab.txt file, or a Hugging Face Hub repo id.

        Settings come from tokenizer_config.json (and special_tokens_map.json) next to the vocabulary; keyword
        arguments override them (e.g. `from_pretrained(path, model_max_length=128)`).
        """
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
        DistilBertTokenizerFast.
        """
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory={save_directory!r} is a file, expected a directory")
        os.makedirs(save_directory, exist_ok=True)
        paths = {name: os.path.join(save_directory, name) for name in _HUB_FILES}

        with self._lock:
            # Never serialise the per-call truncation/padding of the last __call__.
            self._configure_backend(None, None)
            self._tokenizer.save(paths[TOKENIZER_FILE])

        base_vocab = self._tokenizer.get_vocab(with_added_tokens=False)
        by_id = sorted(base_vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            logger.warning(
                "vocabulary ids are not consecutive; vocab.txt line numbers will not match the ids"
            )
        with open(paths[VOCAB_FILE], "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token, _ in by_id)

        added_tokens_decoder = {
            str(index): {
                "content": tok.content,
                "lstrip": tok.lstrip,
                "normalized": tok.normalized,
                "rstrip": tok.rstrip,
                "single_word": tok.single_word,
                "special": tok.special,
            }
            for index, tok in sorted(self._tokenizer.get_added_tokens_decoder().items())
        }
        config = {
            "tokenizer_class": "DistilBertTokenizer",
            "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "model_input_names": list(self.model_input_names),
            **self._special_tokens,
            "added_tokens_decoder": added_tokens_decoder,
        }
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
        """Size of the full vocabulary, added tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Token(s) -> id(s); unknown tokens map to unk_token_id."""
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if index is None else index
        return [self.convert_tokens_to_ids(tok) for tok in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False):
        """Id(s) -> token(s). An unknown id gives None, like transformers."""
        ids = _to_python(ids)
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    # special tokens: <name>, <name>_id
    @property
    def special_tokens_map(self) -> dict[str, str]:
        return dict(self._special_tokens)

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys(self._special_tokens[name] for name in _SPECIAL_TOKEN_NAMES))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(tok) for tok in self.all_special_tokens]

    unk_token = property(lambda self: self._special_tokens["unk_token"])
    sep_token = property(lambda self: self._special_tokens["sep_token"])
    pad_token = property(lambda self: self._special_tokens["pad_token"])
    cls_token = property(lambda self: self._special_tokens["cls_token"])
    mask_token = property(lambda self: self._special_tokens["mask_token"])
    unk_token_id = property(lambda self: self._tokenizer.token_to_id(self.unk_token))
    sep_token_id = property(lambda self: self._tokenizer.token_to_id(self.sep_token))
    pad_token_id = property(lambda self: self._tokenizer.token_to_id(self.pad_token))
    cls_token_id = property(lambda self: self._tokenizer.token_to_id(self.cls_token))
    mask_token_id = property(lambda self: self._tokenizer.token_to_id(self.mask_token))
    pad_token_type_id = 0

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, do_lower_case={self.do_lower_case}, "
            f"strip_accents={self.strip_accents}, tokenize_chinese_chars={self.tokenize_chinese_chars}, "
            f"special_tokens={self._special_tokens})"
        )

    # ---------------------------------------------------------------------------------------------- encoding

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[tuple[str, str]],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
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
    ) -> BatchEncoding:
        """Tokenize one string, a pair, or a batch, exactly like transformers' DistilBertTokenizerFast.

        * `text`: a str, or a list of str (batch), or a list of (str, str) pairs; `text_pair`: the matching
          second sequence(s).
        * `truncation`: True / "longest_first", "only_first", "only_second", False / "do_not_truncate". The
          default None means "truncate to max_length if max_length is given and padding is off" (transformers'
          backward-compatible rule). With truncation on and no max_length, max_length = model_max_length.
        * `padding`: True / "longest", "max_length" (to max_length, or model_max_length), False /
          "do_not_pad".
        * `return_token_type_ids` defaults to False: DistilBERT has no segment embeddings, and transformers
          only returns the fields in `model_input_names`. Pass True to get them.
        * A single str input returns un-batched lists, unless return_tensors or return_overflowing_tokens is
          set.
        """
        batch, is_batched = self._batch_inputs(text, text_pair)
        padding_strategy, truncation_strategy, max_length = self._resolve_strategies(
            padding, truncation, max_length, pad_to_multiple_of, verbose
        )
        stride = _check_int("stride", stride, minimum=0)
        if pad_to_multiple_of is not None:
            pad_to_multiple_of = _check_int("pad_to_multiple_of", pad_to_multiple_of, minimum=1)
        if padding_side is not None and padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right', 'left' or None, got {padding_side!r}")
        return_tensors = _check_tensor_type(return_tensors)
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

        encodings = self._encode_batch(batch, add_special_tokens, truncation_cfg, padding_cfg)

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

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
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

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """WordPiece tokens of `text` (no special tokens unless asked, as in transformers)."""
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise TokenizerInputError("tokenize() takes a str `text` and an optional str `pair`")
        return self._encode_batch([(text, pair) if pair else text], add_special_tokens, None, None)[0].tokens

    def _batch_inputs(self, text: Any, text_pair: Any) -> tuple[list, bool]:
        """Validate `text` / `text_pair` and return (inputs for encode_batch, is_batched)."""
        expected = "a str, a list/tuple of str, or a list of (str, str) pairs"
        if isinstance(text, str):
            if text_pair is not None and not isinstance(text_pair, str):
                raise TokenizerInputError(
                    f"text_pair must be a str when text is a single str, got {type(text_pair).__name__}"
                )
            # transformers tests `if text_pair` here, so an empty-string pair encodes as a single sequence.
            return [(text, text_pair) if text_pair else text], False
        if not isinstance(text, (list, tuple)):
            raise TokenizerInputError(f"text must be {expected}; got {type(text).__name__}")
        if text_pair is not None:
            if isinstance(text_pair, str) or not isinstance(text_pair, (list, tuple)):
                raise TokenizerInputError(
                    "when tokenizing a batch, text_pair must be a list/tuple of str with the same length as "
                    f"text, got {type(text_pair).__name__}"
                )
            if len(text) != len(text_pair):
                raise ValueError(
                    f"batch length of text ({len(text)}) does not match batch length of text_pair "
                    f"({len(text_pair)})"
                )
            for i, (a, b) in enumerate(zip(text, text_pair)):
                if not isinstance(a, str) or not isinstance(b, str):
                    raise TokenizerInputError(
                        f"text[{i}] and text_pair[{i}] must be str, got {type(a).__name__} and "
                        f"{type(b).__name__}"
                    )
            return list(zip(text, text_pair)), True
        batch = []
        for i, item in enumerate(text):
            if isinstance(item, str):
                batch.append(item)
            elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(s, str) for s in item):
                batch.append(tuple(item))
            else:
                raise TokenizerInputError(f"text must be {expected}; text[{i}] is {item!r}")
        return batch, True

    def _resolve_strategies(
        self, padding: Any, truncation: Any, max_length: Any, pad_to_multiple_of: Any, verbose: bool
    ) -> tuple[str, str, int | None]:
        """transformers' `_get_padding_truncation_strategies`, with explicit errors for bad values."""
        if max_length is not None:
            max_length = _check_int("max_length", max_length, minimum=1)
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
                    stacklevel=3,
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
                f"truncation={truncation!r} is not valid; expected True, False or one of "
                f"{TRUNCATION_STRATEGIES}"
            )

        if max_length is None:
            unbounded = self.model_max_length > LARGE_INTEGER
            if padding_strategy == "max_length":
                if unbounded:
                    # transformers silently skips padding here; an explicit error is kinder.
                    raise ValueError(
                        "padding='max_length' needs max_length= (this tokenizer has no model_max_length)"
                    )
                max_length = self.model_max_length
            if truncation_strategy != "do_not_truncate":
                if unbounded:
                    truncation_strategy = "do_not_truncate"  # nothing to truncate to, as in transformers
                else:
                    max_length = self.model_max_length

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

    def _configure_backend(self, truncation_cfg: tuple | None, padding_cfg: tuple | None) -> None:
        """Set the Rust tokenizer's truncation/padding (caller holds the lock); skips no-op changes."""
        settings = (truncation_cfg, padding_cfg)
        if settings == self._backend_settings:
            return
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
            length, direction, pad_to_multiple_of = padding_cfg
            self._tokenizer.enable_padding(
                direction=direction,
                pad_id=self.pad_token_id,
                pad_type_id=self.pad_token_type_id,
                pad_token=self.pad_token,
                length=length,
                pad_to_multiple_of=pad_to_multiple_of,
            )
        self._backend_settings = settings

    def _encode_batch(
        self, batch: list, add_special_tokens: bool, truncation_cfg: tuple | None, padding_cfg: tuple | None
    ) -> list[Encoding]:
        with self._lock:
            try:
                self._configure_backend(truncation_cfg, padding_cfg)
                return self._tokenizer.encode_batch(batch, add_special_tokens=add_special_tokens)
            except BaseException as e:
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
        token_ids = _to_python(token_ids)
        if isinstance(token_ids, dict):  # a (Batch)Encoding-like mapping
            token_ids = _to_python(token_ids["input_ids"])
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


# ----------------------------------------------------------------------------------------------------------
# helpers
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


def _to_python(value: Any) -> Any:
    """torch tensors / numpy arrays / numpy scalars -> python ints and lists."""
    if hasattr(value, "tolist") and callable(value.tolist):  # torch.Tensor, np.ndarray, np.integer
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    return value


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


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
        "strip_accents",
        "tokenize_chinese_chars",
        "clean_up_tokenization_spaces",
        "padding_side",
        "truncation_side",
    ):
        if key in config:
            kwargs[key] = config[key]
    if config.get("model_max_length") is not None:
        kwargs["model_max_length"] = int(config["model_max_length"])
    for name in _SPECIAL_TOKEN_NAMES:
        value = special_map.get(name, config.get(name))
        if value is not None:
            kwargs[name] = _token_content(value)
    return kwargs


def _resolve_hub_repo(
    repo_id: str, revision: str | None, cache_dir: Any, local_files_only: bool, token: Any
) -> str:
    """Download (or find in the local HF cache) the tokenizer files of a Hub repo; return the snapshot dir."""
    # A Hub repo id is "name" or "org/name"; anything else was meant as a local path that does not exist.
    looks_like_path = repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1 or "\\" in repo_id
    if looks_like_path or not repo_id.strip():
        raise FileNotFoundError(
            f"pretrained_model_name_or_path={repo_id!r} is not an existing directory or file (and is not a "
            f"Hugging Face Hub repo id of the form 'name' or 'org/name')"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a declared dependency
        raise FileNotFoundError(
            f"pretrained_model_name_or_path={repo_id!r} is not a local path and huggingface_hub is not "
            "installed"
        ) from e
    try:
        directory = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=list(_HUB_FILES),
        )
    except Exception as e:
        raise FileNotFoundError(
            f"pretrained_model_name_or_path={repo_id!r} is not a local directory/file, and resolving it as a "
            f"Hugging Face Hub repo id failed ({type(e).__name__}: {e}). Offline (HF_HUB_OFFLINE=1 or "
            f"local_files_only=True) only the local HF cache is searched."
        ) from e
    return str(directory)


__all__ = ["DistilBertTokenizer", "BatchEncoding", "TokenizerInputError", "clean_up_tokenization"]
