"""The tokenizer API beyond plain encoding, against transformers 5 (DistilBertTokenizerFast from the same
files): pre-split words, text_target, pad() inside real data collators, add_tokens / add_special_tokens,
special-token masks and setters, word/char alignment, and the seed's do_basic_tokenize / never_split (against
transformers' slow BertTokenizerLegacy, the seed's implementation, since the fast tokenizer ignores both).
"""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest
import test_tokenizer as base
import torch
from test_tokenizer import (
    ALL_FIELDS,
    CASED,
    LONG_TEXT,
    TEXTS,
    DistilBertTokenizer,
    as_plain,
    assert_same_call,
    tokenization,
)
from tokenizers import AddedToken
from tokenizers.models import WordPiece

transformers = pytest.importorskip("transformers")
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

# the (ours, transformers') pairs built from each source, and the all-MiniLM-L6-v2 directory
pair, minilm_path, vocab_dirs = base.pair, base.minilm_path, base.vocab_dirs

# Pre-split words: accents, CJK, emoji, punctuation, an empty word, a word with inner spaces, special tokens,
# a word longer than WordPiece's 100-character limit.
WORDS = [
    ["Hello", "world", "!"],
    ["café", "naïve", "Ångström", "e\u0301"],
    ["中文字符", "and", "日本語"],
    ["emoji", "😀👍🏽", "🇫🇷"],
    ["", "empty", "", "words"],
    ["inner space", "  padded  ", "tab\there"],
    ["[MASK]", "[cls]", "don't", "U.S.A."],
    ["a" * 120, "unaffable"],
    [],
]
LONG_WORDS = LONG_TEXT.split()


def fresh_pair(minilm_path):
    """A new (ours, transformers') pair for tests that mutate the vocabulary."""
    return DistilBertTokenizer.from_pretrained(
        minilm_path
    ), transformers.DistilBertTokenizerFast.from_pretrained(minilm_path)


def legacy(minilm_path, **kwargs):
    return BertTokenizerLegacy(os.path.join(minilm_path, "vocab.txt"), **kwargs)


def added_tokens(tokenizer) -> dict[int, tuple]:
    return {
        i: (t.content, t.single_word, t.lstrip, t.rstrip, t.normalized, t.special)
        for i, t in tokenizer.added_tokens_decoder.items()
    }


# ----------------------------------------------------------------------------------------------------
# export and signature


def test_exported_fast_alias():
    import distilbert_fast

    assert distilbert_fast.DistilBertTokenizerFast is distilbert_fast.DistilBertTokenizer
    assert tokenization.DistilBertTokenizerFast is tokenization.DistilBertTokenizer
    assert "DistilBertTokenizerFast" in distilbert_fast.__all__
    assert DistilBertTokenizer.is_fast is True


def test_constructor_arguments(minilm_path):
    vocab_file = os.path.join(minilm_path, "vocab.txt")
    vocab = WordPiece.read_file(vocab_file)
    # the seed's positional order: vocab_file, do_lower_case, do_basic_tokenize, never_split, unk..mask tokens
    tok = DistilBertTokenizer(
        vocab_file, False, True, None, "[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]", False, True
    )
    theirs = transformers.DistilBertTokenizerFast(vocab=vocab, model_max_length=512, **CASED)
    for text in TEXTS:
        assert tok(text, **ALL_FIELDS)["input_ids"] == theirs(text)["input_ids"]
    # vocab= as a path (transformers 5 also takes the vocabulary as vocab=)
    assert (
        DistilBertTokenizer(vocab=vocab_file).get_vocab()
        == DistilBertTokenizer(vocab_file=vocab_file).get_vocab()
    )
    kwargs = {
        "model_max_length": 64,
        "padding_side": "left",
        "truncation_side": "left",
        "clean_up_tokenization_spaces": True,
        "split_special_tokens": True,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }
    ours = DistilBertTokenizer(vocab=vocab, **kwargs)
    theirs = transformers.DistilBertTokenizerFast(vocab=vocab, **kwargs)
    batch = ["a [MASK] b", LONG_TEXT, "x , y ."]
    assert_same_call(ours, theirs, batch, padding=True, truncation=True)
    assert ours.decode([7592, 1010, 2088, 1012]) == theirs.decode([7592, 1010, 2088, 1012]) == "hello, world."
    # unknown arguments are refused by name (transformers silently stores them)
    with pytest.raises(TypeError, match="do_bogus"):
        DistilBertTokenizer(vocab=vocab, do_bogus=True)
    with pytest.raises(TypeError, match="do_bogus"):
        DistilBertTokenizer.from_pretrained(minilm_path, do_bogus=True)
    with pytest.raises(ValueError, match="never_split"):
        DistilBertTokenizer(vocab=vocab, never_split="[E1]")
    with pytest.raises(ValueError, match="extra_special_tokens"):
        DistilBertTokenizer(vocab=vocab, extra_special_tokens=["<a>"], additional_special_tokens=["<b>"])
    with pytest.raises(TypeError, match="cls_token"):
        DistilBertTokenizer(vocab=vocab, cls_token=5)
    assert DistilBertTokenizer.from_pretrained(minilm_path, use_fast=True).is_fast


# ----------------------------------------------------------------------------------------------------
# pre-split words, alignment, targets


def test_pre_split_words(pair):
    ours, theirs = pair
    split = dict(is_split_into_words=True, **ALL_FIELDS)
    for words in WORDS:
        a, b = assert_same_call(ours, theirs, words, **split)
        assert a.word_ids() == b.word_ids() and a.tokens() == b.tokens()
    assert_same_call(ours, theirs, WORDS, **split)  # a batch
    assert_same_call(ours, theirs, WORDS, padding=True, return_tensors="pt", **split)
    assert_same_call(ours, theirs, WORDS[0], WORDS[1], **split)  # a pair
    assert_same_call(ours, theirs, WORDS[:4], WORDS[4:8], padding="longest", **split)  # a batch of pairs
    assert_same_call(ours, theirs, [(WORDS[0], WORDS[2]), (WORDS[3], WORDS[6])], **split)
    a, b = assert_same_call(
        ours,
        theirs,
        [LONG_WORDS, WORDS[1]],
        [WORDS[2], LONG_WORDS[:50]],
        truncation="longest_first",
        max_length=40,
        stride=6,
        return_overflowing_tokens=True,
        padding=True,
        **split,
    )
    for i in range(len(a["input_ids"])):
        assert a.word_ids(i) == b.word_ids(i) and a.sequence_ids(i) == b.sequence_ids(i)
    assert ours.tokenize(WORDS[1], is_split_into_words=True) == theirs.tokenize(
        WORDS[1], is_split_into_words=True
    )
    assert ours.encode(WORDS[2], is_split_into_words=True) == theirs.encode(
        WORDS[2], is_split_into_words=True
    )
    with pytest.raises(TypeError, match="is_split_into_words=True"):
        ours("a plain string", is_split_into_words=True)
    with pytest.raises(TypeError, match="text"):
        ours([["ok"], "not a list"], is_split_into_words=True)
    with pytest.raises(TypeError, match="text_pair"):
        ours([["a"], ["b"]], ["c", "d"], is_split_into_words=True)


def test_alignment_methods(pair):
    ours, theirs = pair
    text, second = "Hello, wörld! 中文 😀 unaffable", "second sequence"
    for args, kwargs in (
        ((WORDS[0] + WORDS[1],), {"is_split_into_words": True}),
        ((text, second), {}),
        (([text, second, ""],), {}),
    ):
        a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
        for batch in range(len(a.encodings)):
            n_tokens = len(a.encodings[batch].ids)
            n_words = 1 + max((w for w in a.word_ids(batch) if w is not None), default=-1)
            for t in range(n_tokens):
                assert a.token_to_word(batch, t) == b.token_to_word(batch, t)
                assert a.token_to_sequence(batch, t) == b.token_to_sequence(batch, t)
                assert a.token_to_chars(batch, t) == b.token_to_chars(batch, t)
            for seq in range(a.encodings[batch].n_sequences):
                for w in range(n_words + 1):
                    assert a.word_to_tokens(batch, w, seq) == b.word_to_tokens(batch, w, seq)
                    if a.word_to_tokens(batch, w, seq) is not None:
                        assert a.word_to_chars(batch, w, seq) == b.word_to_chars(batch, w, seq)
                for c in range(len(text) + 1):
                    assert a.char_to_token(batch, c, seq) == b.char_to_token(batch, c, seq)
                    assert a.char_to_word(batch, c, seq) == b.char_to_word(batch, c, seq)
    a, b = ours(text), theirs(text)  # one row: the batch index may be left out
    assert a.word_to_tokens(2) == b.word_to_tokens(2) and type(a.word_to_tokens(2)).__name__ == "TokenSpan"
    assert a.token_to_word(3) == b.token_to_word(3) and a.char_to_token(8) == b.char_to_token(8)
    assert a.token_to_chars(1) == b.token_to_chars(1) and a.word_to_chars(1) == b.word_to_chars(1)
    assert a.token_to_word(-2) == a.token_to_word(len(a["input_ids"]) - 2)
    assert a.is_fast and ours.pad({"input_ids": [1, 2]}).is_fast is False


def test_text_target(pair):
    ours, theirs = pair
    assert_same_call(ours, theirs, text_target="The target text.")
    assert_same_call(ours, theirs, TEXTS[:4], text_target=TEXTS[4:8], padding=True, return_tensors="pt")
    assert_same_call(
        ours, theirs, LONG_TEXT, text_target=LONG_TEXT, truncation=True, max_length=20, max_target_length=9
    )
    assert_same_call(ours, theirs, "q", "ctx", text_target="t", text_pair_target="t2", **ALL_FIELDS)
    assert_same_call(ours, theirs, text_target=WORDS[:3], is_split_into_words=True, padding=True)
    with pytest.raises(ValueError, match="text_target"):
        ours()


# ----------------------------------------------------------------------------------------------------
# pad() and the data collators


def test_pad(pair):
    ours, theirs = pair
    rows = [ours(t, return_special_tokens_mask=True, return_token_type_ids=True) for t in TEXTS[:6]]
    features = [dict(r, labels=float(i) / 3) for i, r in enumerate(rows)]
    ids_only = [{"input_ids": r["input_ids"]} for r in rows]
    cases = [
        ((features,), {}),
        ((features,), {"return_tensors": "pt"}),
        ((features,), {"return_tensors": "np"}),
        ((features,), {"padding": "max_length", "max_length": 40, "pad_to_multiple_of": 16}),
        ((features,), {"pad_to_multiple_of": 8, "padding_side": "left"}),
        ((ids_only,), {"return_attention_mask": False}),
        ((ids_only,), {"padding": False}),
        ((ids_only,), {"padding": "max_length"}),
        (({"input_ids": [r["input_ids"] for r in rows]},), {}),
        ((rows[2],), {"pad_to_multiple_of": 8}),  # one un-batched row
        ((ours(TEXTS[:5], padding=True, return_tensors="pt"),), {"padding": "max_length", "max_length": 32}),
        (([{"input_ids": torch.tensor(r["input_ids"])} for r in rows],), {}),  # tensors in, tensors out
        (([{"input_ids": np.array(r["input_ids"])} for r in rows],), {}),
        (({"input_ids": []},), {}),
    ]
    for args, kwargs in cases:
        a, b = ours.pad(*args, **kwargs), theirs.pad(*args, **kwargs)
        assert list(a.keys()) == list(b.keys()), kwargs
        assert as_plain(a) == as_plain(b), kwargs
        for key in a:
            assert type(a[key]) is type(b[key]), key
            if hasattr(b[key], "dtype"):
                assert a[key].dtype == b[key].dtype, key
    with pytest.raises(ValueError, match="input_ids"):
        ours.pad([{"attention_mask": [1]}])
    with pytest.raises(ValueError, match="padding_side"):
        ours.pad(features, padding_side="up")
    with pytest.raises(ValueError, match="labels"):
        ours.pad(
            [{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [3], "labels": [3]}], return_tensors="pt"
        )


def test_data_collators(pair):
    ours, theirs = pair
    from transformers import (
        DataCollatorForLanguageModeling,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
    )

    features = [dict(ours(t, truncation=True, max_length=24), label=i % 2) for i, t in enumerate(TEXTS[:8])]
    for kwargs in ({}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 32}):
        for rt in ("pt", "np"):
            a = DataCollatorWithPadding(ours, return_tensors=rt, **kwargs)(features)
            b = DataCollatorWithPadding(theirs, return_tensors=rt, **kwargs)(features)
            assert set(a) == set(b) == {"input_ids", "attention_mask", "labels"}
            assert as_plain(a) == as_plain(b)

    # token classification on pre-split words: one label per word on the first sub-token, -100 elsewhere
    def word_features(tokenizer):
        out = []
        for words in WORDS[:8]:
            enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=20)
            previous, labels = None, []
            for word in enc.word_ids():
                labels.append(-100 if word is None or word == previous else word % 3)
                previous = word
            out.append(dict(enc, labels=labels))
        return out

    features_a, features_b = word_features(ours), word_features(theirs)
    assert features_a == features_b
    for side in ("right", "left"):
        ours.padding_side = theirs.padding_side = side
        try:
            for kwargs in ({}, {"pad_to_multiple_of": 8}):
                a = DataCollatorForTokenClassification(ours, **kwargs)(features_a)
                b = DataCollatorForTokenClassification(theirs, **kwargs)(features_b)
                assert as_plain(a) == as_plain(b)
                assert a["labels"].dtype == torch.int64 and a["input_ids"].shape == a["labels"].shape
        finally:
            ours.padding_side = theirs.padding_side = "right"

    # masked-LM collator: special-token mask, mask token and random words (len(tokenizer)) under one seed
    examples = [{"input_ids": f["input_ids"]} for f in features]
    torch.manual_seed(0)
    a = DataCollatorForLanguageModeling(ours, mlm_probability=0.3)(examples)
    torch.manual_seed(0)
    b = DataCollatorForLanguageModeling(theirs, mlm_probability=0.3)(examples)
    assert as_plain(a) == as_plain(b)
    assert (a["labels"] != -100).any()


# ----------------------------------------------------------------------------------------------------
# vocabulary changes


def test_add_tokens(minilm_path):
    ours, theirs = fresh_pair(minilm_path)
    batches = [
        ["hello", "newword", "MyEntity"],  # "hello" is in the vocabulary already
        [
            AddedToken("Foo Bar", single_word=True, lstrip=True),
            AddedToken("<sep2>", rstrip=True, normalized=False),
        ],
        [AddedToken("cased_TOK", normalized=False), AddedToken("zzz", single_word=True)],
    ]
    for new in batches:
        assert ours.add_tokens(new) == theirs.add_tokens(new)
    assert ours.add_tokens("<ent>", special_tokens=True) == theirs.add_tokens("<ent>", special_tokens=True)
    assert ours.add_tokens(["<ent>", "<ent2>"], special_tokens=True) == theirs.add_tokens(
        ["<ent>", "<ent2>"], special_tokens=True
    )
    assert ours.add_tokens([]) == theirs.add_tokens([]) == 0
    assert len(ours) == len(theirs) and ours.vocab_size == theirs.vocab_size == 30522
    assert ours.get_vocab() == theirs.get_vocab()
    assert added_tokens(ours) == added_tokens(theirs)
    assert ours.get_added_vocab() == theirs.get_added_vocab()
    assert ours.all_special_tokens == theirs.all_special_tokens  # add_tokens(special=True) does not extend it
    texts = [
        "say hello to newword and myentity, MyEntity!",
        "a Foo Bar b xFoo Bar Foo Barx foo bar <sep2>   next",
        "cased_TOK CASED_TOK zzz zzzz <ent><ent2> [MASK]",
    ]
    assert_same_call(ours, theirs, texts, padding=True, **ALL_FIELDS)
    assert_same_call(ours, theirs, texts[0], texts[1], truncation=True, max_length=16, **ALL_FIELDS)
    assert_same_call(ours, theirs, [t.split() for t in texts], is_split_into_words=True, **ALL_FIELDS)
    ids = ours(texts)["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(
            ids, skip_special_tokens=skip
        )
        assert ours.convert_ids_to_tokens(ids[2], skip_special_tokens=skip) == theirs.convert_ids_to_tokens(
            ids[2], skip_special_tokens=skip
        )
    with pytest.raises(TypeError, match="new_tokens"):
        ours.add_tokens([5])


def test_add_special_tokens(minilm_path):
    ours, theirs = fresh_pair(minilm_path)
    steps = [
        ({"additional_special_tokens": ["<e1>", "</e1>"]}, {}),
        ({"extra_special_tokens": ["<e2>"]}, {"replace_extra_special_tokens": False}),
        ({"extra_special_tokens": ["<e3>", "[MASK]"]}, {}),
        ({"pad_token": "<pad>", "bos_token": "<s>"}, {}),
        ({"cls_token": AddedToken("<cls>", lstrip=True)}, {}),
    ]
    for new, kwargs in steps:
        assert ours.add_special_tokens(new, **kwargs) == theirs.add_special_tokens(new, **kwargs)
        assert ours.all_special_tokens == theirs.all_special_tokens
        assert ours.all_special_ids == theirs.all_special_ids
        assert ours.special_tokens_map == theirs.special_tokens_map
        assert ours.extra_special_tokens == theirs.extra_special_tokens
        assert ours.extra_special_tokens_ids == theirs.extra_special_tokens_ids
    assert added_tokens(ours) == added_tokens(theirs) and len(ours) == len(theirs)
    for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(theirs, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id"), name
    # the [CLS] ... [SEP] template keeps its tokens (transformers' fast tokenizer does not rebuild it);
    # padding uses the new pad token
    texts = ["x <e1>y</e1> <e2> <e3> <cls> <s> <pad>", "short"]
    a, _ = assert_same_call(ours, theirs, texts, padding=True, **ALL_FIELDS)
    assert a["input_ids"][0][0] == 101 and a["input_ids"][1][
        -1
    ] == ours.pad_token_id == ours.convert_tokens_to_ids("<pad>")
    ids = a["input_ids"][0]
    assert ours.get_special_tokens_mask(
        ids, already_has_special_tokens=True
    ) == theirs.get_special_tokens_mask(ids, already_has_special_tokens=True)
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    with pytest.raises(ValueError, match="sep2_token"):
        ours.add_special_tokens({"sep2_token": "x"})


def test_special_token_setters(minilm_path):
    ours, theirs = fresh_pair(minilm_path)
    for tok in (ours, theirs):
        tok.add_tokens(["<p>"], special_tokens=True)
        tok.pad_token = "<p>"
        tok.mask_token_id = 1996  # "the"
        tok.extra_special_tokens = ["<p>"]
    for name in ("pad_token", "pad_token_id", "mask_token", "mask_token_id", "extra_special_tokens"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert_same_call(ours, theirs, ["a b c", "d"], padding=True, return_special_tokens_mask=True)
    feats = [{"input_ids": [1, 2, 3]}, {"input_ids": [4]}]
    assert as_plain(ours.pad(feats)) == as_plain(theirs.pad(feats))
    ours.pad_token = None
    assert ours.pad_token_id is None
    with pytest.raises(ValueError, match="pad_token"):
        ours(["a b", "c"], padding=True)
    with pytest.raises(ValueError, match="pad_token"):
        ours.pad(feats)
    with pytest.raises(ValueError, match="pad_token"):
        ours.pad_token = 3


def test_special_tokens_mask_and_inputs(pair, minilm_path):
    ours, theirs = pair
    seed = legacy(minilm_path)
    a, b = [7592, 2088, 999], [2023, 2003]
    for args in ((a,), (a, b), ([],)):
        assert ours.get_special_tokens_mask(*args) == seed.get_special_tokens_mask(*args)
        assert ours.build_inputs_with_special_tokens(*args) == seed.build_inputs_with_special_tokens(*args)
        assert ours.create_token_type_ids_from_sequences(*args) == seed.create_token_type_ids_from_sequences(
            *args
        )
    # the seed's (transformers 4) encode_plus / batch_encode_plus: the same as a call
    assert_same_call(ours.encode_plus, theirs, "a text", "a pair", **ALL_FIELDS)
    assert_same_call(ours.batch_encode_plus, theirs, [("a", "b"), ("c d", "e")], padding=True, **ALL_FIELDS)
    assert_same_call(ours.batch_encode_plus, theirs, WORDS[:3], is_split_into_words=True, **ALL_FIELDS)
    ids = ours("a [MASK] b [SEP] c", "d")["input_ids"]
    for tok in (theirs, seed):
        assert ours.get_special_tokens_mask(
            ids, already_has_special_tokens=True
        ) == tok.get_special_tokens_mask(ids, already_has_special_tokens=True)
    assert ours.get_special_tokens_mask(torch.tensor(ids), already_has_special_tokens=True)[0] == 1
    with pytest.raises(ValueError, match="token_ids_1"):
        ours.get_special_tokens_mask(a, b, already_has_special_tokens=True)
    assert ours.max_len_single_sentence == theirs.max_len_single_sentence == 510
    assert ours.clean_up_tokenization("a , b .") == theirs.clean_up_tokenization("a , b .") == "a, b."
    assert ours.max_len_sentences_pair == theirs.max_len_sentences_pair == 509


def test_split_special_tokens(pair):
    ours, theirs = pair
    text = "a [MASK] b [SEP] [CLS]"
    for split in (False, True):
        assert_same_call(ours, theirs, text, split_special_tokens=split, **ALL_FIELDS)
    assert ours(text)["input_ids"] == theirs(text)["input_ids"]  # per call: nothing left behind


# ----------------------------------------------------------------------------------------------------
# the seed's do_basic_tokenize / never_split

SEED_TEXTS = (
    TEXTS[:10]
    + TEXTS[11:]
    + [
        "[unused1] Hello [unused2]!",
        "Say [unused1] , then café [unused3]",
        "x[unused1] ([unused1]) [unused1]. \t[unused1]\n",
        "MASKED [MASK] and [UNK] stay [SEP] special",
        "ascii\x1cseparators\x1dsplit\x1ewords\x1f too \x85 \u2028 \u3000",
        LONG_TEXT[:500],
    ]
)


def seed_ids(seed, text):
    return seed(text)["input_ids"]


@pytest.mark.parametrize("lower", [True, False])
def test_never_split_matches_seed(minilm_path, lower):
    never = ["[unused1]", "[unused3]", "hello"]
    ours = DistilBertTokenizer(os.path.join(minilm_path, "vocab.txt"), do_lower_case=lower, never_split=never)
    seed = legacy(minilm_path, do_lower_case=lower, never_split=never)
    # The seed keeps a never_split token whole only between whitespace; ours matches it as a whole word (not
    # glued to letters or digits). They differ where punctuation touches it: "([unused1])" is checked apart.
    for text in SEED_TEXTS:
        if "x[unused1]" in text:
            continue
        assert ours(text)["input_ids"] == seed_ids(seed, text), text
    assert ours.tokenize("go [unused1] now") == ["go", "[unused1]", "now"]
    assert ours.tokenize("x[unused1]") == seed.tokenize("x[unused1]")  # glued to a letter: split by both
    assert ours.tokenize("([unused1])") == ["(", "[unused1]", ")"]  # the seed: ( [ unused ##1 ] )
    assert len(ours) == ours.vocab_size == 30522  # never_split adds no id
    # they survive save_pretrained, for us and for transformers (as whole-word added tokens)
    # special tokens in never_split (old configs list them) are special already: nothing changes
    specials = DistilBertTokenizer(os.path.join(minilm_path, "vocab.txt"), never_split=["[MASK]", "[UNK]"])
    assert (
        specials.added_tokens_decoder == DistilBertTokenizer.from_pretrained(minilm_path).added_tokens_decoder
    )
    with pytest.raises(ValueError, match="never_split.*USA"):
        DistilBertTokenizer(os.path.join(minilm_path, "vocab.txt"), never_split=["USA"])


def test_save_vocabulary(minilm_path, tmp_path):
    (path,) = DistilBertTokenizer.from_pretrained(minilm_path).save_vocabulary(tmp_path, filename_prefix="x")
    assert os.path.basename(path) == "x-vocab.txt"
    with (
        open(path, encoding="utf-8") as f,
        open(os.path.join(minilm_path, "vocab.txt"), encoding="utf-8") as g,
    ):
        assert f.read() == g.read()


def test_never_split_round_trip(minilm_path, tmp_path):
    ours = DistilBertTokenizer.from_pretrained(minilm_path, never_split=["[unused1]"])
    ours.add_special_tokens({"extra_special_tokens": ["<e>"]})
    ours.add_tokens(["newtok"])
    ours.save_pretrained(tmp_path)
    reloaded = DistilBertTokenizer.from_pretrained(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "a [unused1] b <e> newtok c"
    assert (
        reloaded.never_split == ["[unused1]"] and reloaded.extra_special_tokens == auto.extra_special_tokens
    )
    assert reloaded.all_special_tokens == auto.all_special_tokens == ours.all_special_tokens
    assert reloaded(text)["input_ids"] == ours(text)["input_ids"] == auto(text)["input_ids"]
    assert added_tokens(reloaded) == added_tokens(ours) == added_tokens(auto)
    clone = pickle.loads(pickle.dumps(ours))  # e.g. shipped to a worker process
    assert clone(text, **ALL_FIELDS) == ours(text, **ALL_FIELDS) and clone.never_split == ours.never_split
    assert copy.deepcopy(ours)(text)["input_ids"] == ours(text)["input_ids"]
    # a vocab.txt + tokenizer_config.json directory (no tokenizer.json) gets the added tokens from the config
    os.remove(tmp_path / "tokenizer.json")
    from_config = DistilBertTokenizer.from_pretrained(tmp_path)
    assert from_config(text)["input_ids"] == ours(text)["input_ids"] and len(from_config) == len(ours)


@pytest.mark.parametrize("lower", [True, False])
def test_no_basic_tokenize_matches_seed(minilm_path, tmp_path, lower):
    ours = DistilBertTokenizer(
        os.path.join(minilm_path, "vocab.txt"), do_lower_case=lower, do_basic_tokenize=False
    )
    seed = legacy(minilm_path, do_lower_case=lower, do_basic_tokenize=False)
    for text in SEED_TEXTS:
        assert ours(text)["input_ids"] == seed_ids(seed, text), text
        assert ours.tokenize(text) == seed.tokenize(text), text
    # whitespace split only, nothing lowercased: "Hello," is one unknown word, "world!" -> world ##!
    expected = ["[UNK]", "world", "##!", "hello", "world"]  # do_lower_case has no effect here (the seed)
    assert (
        ours.tokenize("Hello, world! hello world") == seed.tokenize("Hello, world! hello world") == expected
    )
    ours.save_pretrained(tmp_path)
    assert DistilBertTokenizer.from_pretrained(tmp_path).tokenize("Hello, world!") == expected[:3]
    # the seed's never_split belonged to its basic tokenizer: without that, it has no effect
    kept = DistilBertTokenizer(vocab=ours.get_vocab(), do_basic_tokenize=False, never_split=["[unused1]"])
    seed = legacy(minilm_path, do_basic_tokenize=False, never_split=["[unused1]"])
    assert kept.tokenize("a [unused1], b") == seed.tokenize("a [unused1], b") and len(kept) == len(ours)
