"""DistilBertTokenizer's files: the backend built from tokenizer.json / vocab.txt / a dict, from_pretrained,
save_pretrained and save_vocabulary.

Files read by `from_pretrained` (a directory, a file, or a Hub repo id):
  * tokenizer.json        preferred source of the vocabulary and added tokens;
  * vocab.txt             used when there is no tokenizer.json (one token per line, id = line number);
  * tokenizer_config.json do_lower_case, do_basic_tokenize, never_split, strip_accents, tokenize_chinese_chars,
                          model_max_length, special tokens (named and extra), added_tokens_decoder,
                          clean_up_tokenization_spaces, padding/truncation side, split_special_tokens;
  * special_tokens_map.json legacy special-token names.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, TypeVar

from tokenizers import AddedToken, Tokenizer
from tokenizers.models import WordPiece

from .vocabulary import SPECIAL_TOKEN_NAMES

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
_HUB_FILES = [TOKENIZER_FILE, VOCAB_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE]

# from_pretrained returns the class it is called on (typing.Self needs Python 3.11)
_Self = TypeVar("_Self", bound="FilesMixin")


def load_backend(vocab_file: Any, tokenizer_file: Any, vocab: Any, unk_token: str | None) -> Tokenizer:
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


class FilesMixin:
    """DistilBertTokenizer's file methods. from_pretrained calls the class with the constructor keywords read
    from the files; saving uses the tokenizer's backend (`_tokenizer`), its lock and settings."""

    @classmethod
    def from_pretrained(
        cls: type[_Self],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> _Self:
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
    for name in SPECIAL_TOKEN_NAMES:
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
    from ..checkpoint import resolve_hub_snapshot

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
