"""distilbert_fast.pipelines against transformers' pipelines on the same weights.

Small random DistilBERT models (dim 32) with the real 30522-token vocabulary and the all-MiniLM-L6-v2
tokenizer files, so texts tokenize into meaningful words and subwords. Each transformers model is saved and
loaded back by our pipeline from the directory, as a user would. transformers 5 has no question-answering
pipeline: QA is checked against an independent brute-force span search over the model's logits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import hf_model

transformers = pytest.importorskip("transformers")

from distilbert_fast import DistilBertTokenizer  # noqa: E402
from distilbert_fast.pipelines import pipeline  # noqa: E402

VOCAB = 30522
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "MISC"}

TEXTS = [
    "Hello there, my name is Sarah Connor and I live in London.",
    "Unaffable cats sleep.",
    "The Eiffel tower is in Paris; the snowman ☃ is not.",
    "A man is playing a guitar on a crowded stage while the orchestra performed Beethoven's ninth symphony.",
    "ok",
]


# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is fastest and does not fight other processes for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizers(minilm_dir):
    ours = DistilBertTokenizer.from_pretrained(minilm_dir)
    return ours, transformers.DistilBertTokenizerFast.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """save(hf_model) -> directory our pipeline loads from."""
    root = tmp_path_factory.mktemp("pipelines")
    count = [0]

    def save(model):
        count[0] += 1
        path = root / f"m{count[0]}"
        model.save_pretrained(path)
        return str(path)

    return save


def assert_same(actual, expected, tol=2e-5, where="result"):
    """Equal structure, equal keys/strings/ints, floats within tol (numpy scalars accepted)."""
    if isinstance(expected, np.generic):
        expected = expected.item()
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not a dict"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for k in expected:
            assert_same(actual[k], expected[k], tol, f"{where}[{k!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, tol, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float), f"{where}: {actual!r} is not a float"
        assert abs(actual - expected) <= tol * max(1.0, abs(expected)), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected and type(actual) is type(expected), f"{where}: {actual!r} != {expected!r}"


# ----------------------------------------------------------------------------------------------------------
# text classification
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg",
    [
        dict(num_labels=3),
        dict(num_labels=4, problem_type="multi_label_classification"),
        dict(num_labels=1),
        dict(num_labels=1, problem_type="regression"),
    ],
    ids=["single-label", "multi-label", "one-label", "regression"],
)
def test_text_classification_matches_transformers(cfg, tokenizers, saved):
    tok, htok = tokenizers
    hf = hf_model("DistilBertForSequenceClassification", seed=1, vocab_size=VOCAB, **cfg)
    ref = transformers.pipeline("text-classification", model=hf, tokenizer=htok)
    ours = pipeline("text-classification", model=saved(hf), tokenizer=tok, batch_size=2)
    assert ours.model.config.problem_type == cfg.get("problem_type")

    assert_same(ours(TEXTS[0]), ref(TEXTS[0]))  # single str -> one-element list
    assert_same(ours(TEXTS), ref(TEXTS))  # list -> one dict per input (batched, sorted, restored)
    for kwargs in (
        dict(top_k=None),
        dict(top_k=2),
        dict(top_k=1),
        dict(function_to_apply="sigmoid"),
        dict(function_to_apply="none"),
        dict(function_to_apply="softmax", top_k=None),
    ):
        assert_same(ours(TEXTS[1], **kwargs), ref(TEXTS[1], **kwargs), where=str(kwargs))
        assert_same(ours(TEXTS, **kwargs), ref(TEXTS, **kwargs), where=str(kwargs))
    pair = {"text": "Is it raining?", "text_pair": "The streets are wet."}
    assert_same(ours(pair), ref(pair))
    assert_same(ours([pair, TEXTS[2]], top_k=None), ref([pair, TEXTS[2]], top_k=None))
    # defaults given at construction behave like call arguments (transformers' quirks included)
    ours3 = pipeline("sentiment-analysis", model=ours.model, tokenizer=tok, top_k=None)
    ref3 = transformers.pipeline("sentiment-analysis", model=hf, tokenizer=htok, top_k=None)
    assert_same(ours3(TEXTS[3]), ref3(TEXTS[3]))
    assert_same(ours3(TEXTS[:2]), ref3(TEXTS[:2]))


# ----------------------------------------------------------------------------------------------------------
# fill-mask
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fill_mask_models(tokenizers, saved):
    hf = hf_model("DistilBertForMaskedLM", seed=2, vocab_size=VOCAB)
    with torch.no_grad():  # spread the vocabulary logits so the top-k order is far from ties
        hf.vocab_layer_norm.weight.mul_(8.0)
    return hf, saved(hf)


def test_fill_mask_matches_transformers(fill_mask_models, tokenizers):
    tok, htok = tokenizers
    hf, path = fill_mask_models
    ref = transformers.pipeline("fill-mask", model=hf, tokenizer=htok)
    ours = pipeline("fill-mask", model=path, tokenizer=tok, batch_size=2)
    texts = [
        "Paris is the [MASK] of France.",
        "I love [MASK] and [MASK] very much.",
        "The [MASK] sat on an unaffable mat, didn't it?",
    ]
    assert_same(ours(texts[0]), ref(texts[0]))
    assert_same(ours(texts), ref(texts))
    assert_same(ours(texts[:1]), ref(texts[:1]))  # a list of one is un-nested, as transformers
    assert_same(ours(texts[1], top_k=2), ref(texts[1], top_k=2))
    targets = ["capital", "city", "hello", "unaffable"]  # "unaffable" is not one token: first piece + warning
    assert_same(ours(texts, targets=targets, top_k=3), ref(texts, targets=targets, top_k=3))
    assert_same(ours(texts[2], targets="city"), ref(texts[2], targets="city"))
    with pytest.raises(ValueError, match="mask_token"):
        ours("no mask here")
    with pytest.raises(ValueError, match="top_k"):
        ours(texts[0], top_k=0)


# ----------------------------------------------------------------------------------------------------------
# token classification
# ----------------------------------------------------------------------------------------------------------
def test_token_classification_matches_transformers(tokenizers, saved):
    tok, htok = tokenizers
    hf = hf_model("DistilBertForTokenClassification", seed=3, vocab_size=VOCAB, id2label=NER_LABELS)
    ref = transformers.pipeline("token-classification", model=hf, tokenizer=htok)
    ours = pipeline("ner", model=saved(hf), tokenizer=tok, batch_size=2)
    for strategy in ("none", "simple", "first", "average", "max"):
        assert_same(
            ours(TEXTS, aggregation_strategy=strategy),
            ref(TEXTS, aggregation_strategy=strategy),
            where=strategy,
        )
        assert_same(
            ours(TEXTS[2], aggregation_strategy=strategy),
            ref(TEXTS[2], aggregation_strategy=strategy),
            where=strategy,
        )
    for ignore in ([], ["O", "B-LOC"]):
        assert_same(
            ours(TEXTS[:3], ignore_labels=ignore, aggregation_strategy="simple"),
            ref(TEXTS[:3], ignore_labels=ignore, aggregation_strategy="simple"),
        )
    with pytest.raises(ValueError, match="aggregation_strategy"):
        ours(TEXTS[0], aggregation_strategy="mean")


# ----------------------------------------------------------------------------------------------------------
# feature extraction and sentence embeddings
# ----------------------------------------------------------------------------------------------------------
def test_feature_extraction_matches_transformers(tokenizers, saved):
    tok, htok = tokenizers
    hf = hf_model("DistilBertModel", seed=4, vocab_size=VOCAB)
    ref = transformers.pipeline("feature-extraction", model=hf, tokenizer=htok)
    ours = pipeline("feature-extraction", model=saved(hf), tokenizer=tok, batch_size=2, progress=True)
    assert_same(ours(TEXTS), ref(TEXTS), tol=1e-4)
    assert_same(ours(TEXTS[0]), ref(TEXTS[0]), tol=1e-4)
    got, want = ours(TEXTS[3], return_tensors=True), ref(TEXTS[3], return_tensors=True)
    assert isinstance(got, torch.Tensor) and got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_sentence_embeddings_match_sentence_transformers_recipe(minilm_dir):
    texts = TEXTS + [" ".join(["long"] + ["sentences keep going"] * 110)]  # > 256 tokens: truncated
    emb = pipeline("sentence-embeddings", model=minilm_dir, batch_size=3)
    got = emb(texts)
    assert isinstance(got, torch.Tensor) and got.shape == (len(texts), 384) and got.dtype == torch.float32

    # sentence-transformers' all-MiniLM-L6-v2: BertModel, max_seq_length 256, mean pooling, L2 normalisation.
    bert = transformers.BertModel.from_pretrained(minilm_dir).eval()
    htok = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    batch = htok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = bert(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)

    one = emb(texts[1], return_tensors="np")
    assert isinstance(one, np.ndarray) and one.shape == (384,)
    np.testing.assert_allclose(one, want[1].numpy(), atol=1e-4)
    raw = emb(texts[:2], normalize=False)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=1), want[:2], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# question answering: brute force over the logits of transformers' model
# ----------------------------------------------------------------------------------------------------------
def brute_force_qa(
    hf,
    htok,
    question,
    context,
    top_k=1,
    max_seq_len=384,
    doc_stride=128,
    max_answer_len=15,
    handle_impossible_answer=False,
    align_to_words=True,
):
    """transformers 4.x QA semantics, written as plain loops in float64.

    Per window: p_start / p_end = softmax of the logits over the allowed tokens ([CLS] + context tokens);
    candidate spans (i, j) over context tokens with i <= j < i + max_answer_len score p_start[i] * p_end[j];
    the window's top_k spans become character spans (whole words when align_to_words); answers with the same
    (case-insensitive) text add up their scores; the null answer scores min over windows of
    p_start[CLS] * p_end[CLS]; best top_k overall.
    """
    enc = htok(
        question,
        context,
        truncation="only_second",
        max_length=max_seq_len,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    answers, null = [], math.inf
    for w, ids in enumerate(enc["input_ids"]):
        with torch.inference_mode():
            out = hf(input_ids=torch.tensor([ids]))
        s_logits, e_logits = out.start_logits[0].double().tolist(), out.end_logits[0].double().tolist()
        seq = enc.sequence_ids(w)
        ctx = [i for i, sid in enumerate(seq) if sid == 1]
        allowed = [0] + ctx

        def softmax(logits, allowed=allowed):
            m = max(logits[i] for i in allowed)
            z = sum(math.exp(logits[i] - m) for i in allowed)
            return {i: math.exp(logits[i] - m) / z for i in allowed}

        ps, pe = softmax(s_logits), softmax(e_logits)
        null = min(null, ps[0] * pe[0])
        spans = sorted(
            ((ps[i] * pe[j], i, j) for i in ctx for j in ctx if i <= j < i + max_answer_len), reverse=True
        )[:top_k]
        offsets = enc["offset_mapping"][w]
        for score, i, j in spans:
            if align_to_words:
                wi, wj = enc.token_to_word(w, i), enc.token_to_word(w, j)
                start, end = enc.word_to_chars(w, wi, 1)[0], enc.word_to_chars(w, wj, 1)[1]
            else:
                start, end = offsets[i][0], offsets[j][1]
            text = context[start:end]
            same = [a for a in answers if a["answer"].lower() == text.lower()]
            if same:
                same[0]["score"] += score
            else:
                answers.append({"score": score, "start": start, "end": end, "answer": text})
    if handle_impossible_answer:
        answers.append({"score": null, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
    return answers[0] if len(answers) == 1 else answers


SHORT_CONTEXT = "The Eiffel tower, completed in 1889, is a wrought-iron lattice tower in Paris, France."
LONG_CONTEXT = " ".join(
    f"Chapter {i}: the unaffable keeper of lighthouse number {i * 7} watched {i + 3} ships sail past the "
    f"northern cliffs of Norway while writing letters to an old friend in Lisbon."
    for i in range(24)
)


@pytest.fixture(scope="module")
def qa_models(tokenizers, saved):
    hf = hf_model("DistilBertForQuestionAnswering", seed=5, vocab_size=VOCAB)
    with torch.no_grad():  # sharper start/end distributions: top spans far from ties
        hf.qa_outputs.weight.mul_(4.0)
    return hf, saved(hf)


def test_question_answering_matches_brute_force(qa_models, tokenizers):
    tok, htok = tokenizers
    hf, path = qa_models
    qa = pipeline("question-answering", model=path, tokenizer=tok, batch_size=4)
    q = "Where does the keeper write letters to?"
    assert (
        len(
            htok(
                q,
                LONG_CONTEXT,
                truncation="only_second",
                max_length=384,
                stride=128,
                return_overflowing_tokens=True,
            )["input_ids"]
        )
        >= 3
    )  # default windows: several

    def check(question, context, **kw):
        want = brute_force_qa(hf, htok, question, context, **kw)
        assert_same(qa(question=question, context=context, **kw), want, tol=1e-4, where=str(kw))
        return want

    check("When was the tower completed?", SHORT_CONTEXT)
    check("When was the tower completed?", SHORT_CONTEXT, top_k=4, align_to_words=False)
    check(q, LONG_CONTEXT)  # default max_seq_len=384, doc_stride=128
    many = check(q, LONG_CONTEXT, top_k=6, max_seq_len=96, doc_stride=24, max_answer_len=6)
    assert len(many) == 6
    check(q, LONG_CONTEXT, top_k=3, max_seq_len=128, doc_stride=40, handle_impossible_answer=True)
    impossible = check(q, SHORT_CONTEXT, top_k=200, handle_impossible_answer=True)
    assert list(impossible[0]) == ["score", "start", "end", "answer"]
    assert any(a["answer"] == "" for a in impossible)

    # batched calls: several examples (different window counts) in one run, results in input order
    examples = [
        {"question": q, "context": LONG_CONTEXT},
        {"question": "Which city?", "context": SHORT_CONTEXT},
        {"question": "Who watched ships?", "context": LONG_CONTEXT[:700]},
    ]
    got = qa(examples, max_seq_len=128, doc_stride=32)
    want = [
        brute_force_qa(hf, htok, e["question"], e["context"], max_seq_len=128, doc_stride=32)
        for e in examples
    ]
    assert_same(got, want, tol=1e-4)
    assert_same(
        qa(
            question=[e["question"] for e in examples],
            context=[e["context"] for e in examples],
            max_seq_len=128,
            doc_stride=32,
        ),
        want,
        tol=1e-4,
    )
    assert_same(
        qa(examples[1]["question"], examples[1]["context"]),
        brute_force_qa(hf, htok, examples[1]["question"], examples[1]["context"]),
        tol=1e-4,
    )

    with pytest.raises(ValueError, match="doc_stride"):
        qa(question=q, context=SHORT_CONTEXT, doc_stride=500, max_seq_len=128)
    with pytest.raises(ValueError, match="max_answer_len"):
        qa(question=q, context=SHORT_CONTEXT, max_answer_len=0)
    with pytest.raises(ValueError, match="context"):
        qa(question=q, context="")


# ----------------------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------------------
def test_bad_arguments_raise_value_errors(fill_mask_models, tokenizers):
    tok, _ = tokenizers
    _, path = fill_mask_models
    with pytest.raises(ValueError, match="unknown task 'summarization'.*fill-mask.*sentence-embeddings"):
        pipeline("summarization", model=path)
    with pytest.raises(ValueError, match="model"):
        pipeline("fill-mask")
    with pytest.raises(ValueError, match="batch_size"):
        pipeline("fill-mask", model=path, tokenizer=tok, batch_size=0)
    fm = pipeline("fill-mask", model=path, tokenizer=tok)
    with pytest.raises(
        ValueError,
        match="text-classification pipeline needs a distilbert_fast DistilBertForSequenceClassification",
    ):
        pipeline("text-classification", model=fm.model, tokenizer=tok)
    with pytest.raises(ValueError, match="unknown argument.*topk"):
        fm("a [MASK].", topk=3)
    with pytest.raises(ValueError, match="targets"):
        fm("a [MASK].", targets=3)
    emb = pipeline("sentence-embeddings", model=fm.model, tokenizer=tok)  # any model: its encoder
    assert emb(["a", "b c"]).shape == (2, 32)
    with pytest.raises(ValueError, match="normalize"):
        emb("a", normalize="yes")


# ----------------------------------------------------------------------------------------------------------
# pre-tokenized inputs: encode() + run_encoded() == run()
# ----------------------------------------------------------------------------------------------------------
LONG_TEXT = " ".join(["unaffable"] * 200)  # ~800 tokens: truncated at the model's 512


def assert_identical(actual, expected, where="result"):
    """Bit-for-bit equal: same structure, same types, tensors / arrays equal with their dtypes."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and actual.dtype == expected.dtype, where
        assert torch.equal(actual, expected), where
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray) and actual.dtype == expected.dtype, where
        assert np.array_equal(actual, expected), where
    elif isinstance(expected, (list, tuple, dict)):
        assert type(actual) is type(expected) and len(actual) == len(expected), f"{where}: {actual!r}"
        if isinstance(expected, dict):
            assert list(actual) == list(expected), where
            for k in expected:
                assert_identical(actual[k], expected[k], f"{where}[{k!r}]")
        else:
            for i, (a, e) in enumerate(zip(actual, expected)):
                assert_identical(a, e, f"{where}[{i}]")
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r} != {expected!r}"


def check_encoded(pipe, inputs, ids_only=True, **kw):
    """run_encoded(encode(x), x) is run(x), also from token-id lists where the task allows them."""
    from tokenizers import Encoding

    want = pipe.run(inputs, **kw)
    encodings = pipe.encode(inputs, **kw)
    assert len(encodings) == len(inputs) and all(isinstance(e, Encoding) for e in encodings)
    assert_identical(pipe.run_encoded(encodings, inputs, **kw), want, pipe.task)
    if ids_only:
        assert_identical(pipe.run_encoded(encodings, **kw), want, f"{pipe.task} without inputs")
        ids = [e.ids for e in encodings]
        assert_identical(pipe.run_encoded(ids, **kw), want, f"{pipe.task} from ids")
    return encodings


def test_run_encoded_equals_run_for_every_task(tokenizers, saved, fill_mask_models, qa_models):
    tok, _ = tokenizers
    texts = TEXTS + [LONG_TEXT]

    clf = pipeline(
        "text-classification",
        model=saved(hf_model("DistilBertForSequenceClassification", seed=1, vocab_size=VOCAB, num_labels=3)),
        tokenizer=tok,
        batch_size=2,  # several sorted batches: the results must come back in input order
    )
    encodings = check_encoded(clf, texts)
    assert len(encodings[-1]) == clf.max_length == 512  # truncated as run() truncates
    pairs = [
        {"text": "Where is the tower?", "text_pair": TEXTS[2]},
        TEXTS[1],
        {"text": LONG_TEXT, "text_pair": "and a short pair"},  # longest_first: the long side is cut
        {"text": "a short question", "text_pair": LONG_TEXT},
    ]
    encodings = check_encoded(clf, pairs, top_k=None, function_to_apply="none")
    assert [e.n_sequences for e in encodings] == [2, 1, 2, 2] and len(encodings[2]) == 512
    check_encoded(clf, pairs[:1], top_k=2)

    base = saved(hf_model("DistilBertModel", seed=4, vocab_size=VOCAB))
    feats = pipeline("feature-extraction", model=base, tokenizer=tok, batch_size=2)
    check_encoded(feats, texts)
    check_encoded(feats, texts, return_tensors=True)
    emb = pipeline("sentence-embeddings", model=base, tokenizer=tok, batch_size=2)
    check_encoded(emb, texts)
    check_encoded(emb, texts, normalize=False, return_tensors="np")
    encodings = check_encoded(emb, texts, max_length=16)  # the call's max_length truncates the encodings
    assert max(len(e) for e in encodings) == 16

    _, fm_path = fill_mask_models
    fm = pipeline("fill-mask", model=fm_path, tokenizer=tok, batch_size=2)
    masked = ["Paris is the [MASK] of France.", "I love [MASK] and [MASK] very much.", "[MASK] " + LONG_TEXT]
    check_encoded(fm, masked, top_k=3)
    check_encoded(fm, masked[:2], targets=["capital", "city"])

    ner = pipeline(
        "ner",
        model=saved(
            hf_model("DistilBertForTokenClassification", seed=3, vocab_size=VOCAB, id2label=NER_LABELS)
        ),
        tokenizer=tok,
        batch_size=2,
    )
    for strategy in ("none", "simple", "first", "average", "max"):
        check_encoded(ner, texts, ids_only=False, aggregation_strategy=strategy)

    _, qa_path = qa_models
    qa = pipeline("question-answering", model=qa_path, tokenizer=tok, batch_size=2)
    examples = [
        {"question": "Where does the keeper write letters to?", "context": LONG_CONTEXT},
        {"question": "When was the tower completed?", "context": SHORT_CONTEXT},
        {"question": " ".join(["which"] * 80) + " city?", "context": SHORT_CONTEXT},  # question cut to 64
    ]
    encodings = check_encoded(qa, examples, ids_only=False)
    assert len(encodings[0].overflowing) >= 2 and not encodings[1].overflowing  # windows ride along
    check_encoded(qa, examples, ids_only=False, top_k=3, max_seq_len=96, doc_stride=24)
    check_encoded(qa, examples[1:], ids_only=False, handle_impossible_answer=True, top_k=5)

    assert clf.encode([]) == [] and clf.run_encoded([]) == []
    assert emb.run_encoded([]).shape == (0, 32)


def test_run_encoded_checks_its_arguments(tokenizers, saved, qa_models):
    from distilbert_fast.pipelines import PipelineInputError

    tok, _ = tokenizers
    ner = pipeline(
        "ner",
        model=saved(
            hf_model("DistilBertForTokenClassification", seed=3, vocab_size=VOCAB, id2label=NER_LABELS)
        ),
        tokenizer=tok,
    )
    encodings = ner.encode(TEXTS[:2])
    with pytest.raises(ValueError, match="inputs: token-classification needs the inputs"):
        ner.run_encoded(encodings)
    with pytest.raises(ValueError, match="inputs: 1 inputs for 2 encodings"):
        ner.run_encoded(encodings, TEXTS[:1])
    with pytest.raises(ValueError, match=r"encodings\[0\]: expected a tokenizers.Encoding, got list"):
        ner.run_encoded([e.ids for e in encodings], TEXTS[:2])
    with pytest.raises(ValueError, match="encodings: run_encoded"):
        ner.run_encoded("a text", TEXTS[:1])
    clf = pipeline(
        "text-classification",
        model=saved(hf_model("DistilBertForSequenceClassification", seed=1, vocab_size=VOCAB, num_labels=2)),
        tokenizer=tok,
    )
    untruncated = tok(["ok", LONG_TEXT]).encodings  # the caller forgot to truncate
    with pytest.raises(PipelineInputError, match="more than max_length=512") as e:
        clf.run_encoded(untruncated)
    assert e.value.input_index == 1
    with pytest.raises(ValueError, match=r"encodings\[0\]: a list of token ids must hold ints only"):
        clf.run_encoded([[101, "x", 102]])
    with pytest.raises(ValueError, match="top_k"):
        clf.run_encoded(clf.encode(["a"]), top_k=0)
    _, qa_path = qa_models
    qa = pipeline("question-answering", model=qa_path, tokenizer=tok)
    with pytest.raises(ValueError, match="pair encodings"):
        qa.run_encoded(tok(["just one text"]).encodings, [{"question": "q", "context": "c"}])


def test_encode_truncation_side_left_keeps_the_end(tokenizers, saved, minilm_dir, qa_models):
    tok, _ = tokenizers
    left_tok = DistilBertTokenizer.from_pretrained(minilm_dir, truncation_side="left")
    path = saved(hf_model("DistilBertForSequenceClassification", seed=1, vocab_size=VOCAB, num_labels=3))
    clf = pipeline("text-classification", model=path, tokenizer=tok)
    ref = pipeline("text-classification", model=path, tokenizer=left_tok)  # a left-truncating tokenizer
    text = "The beginning is here. " + LONG_TEXT + " And this is how it ends."
    inputs = [text, TEXTS[0], {"text": "a short question", "text_pair": text}]
    left = clf.encode(inputs, truncation_side="left")
    whole = tok(text)["input_ids"]
    assert left[0].ids == [whole[0], *whole[-511:]]  # [CLS] + the last 510 tokens + [SEP]
    assert left[1].ids == clf.encode(inputs[1:2])[0].ids  # short inputs: nothing to cut, either side
    assert [e.ids for e in left] == [e.ids for e in ref.encode(inputs)]
    assert_identical(clf.run_encoded(left, top_k=None), ref.run(inputs, top_k=None))
    assert clf.encode(inputs)[0].ids[:6] == whole[:6]  # the default still keeps the start
    assert clf.encode(inputs, truncation_side="right")[0].ids == clf.encode(inputs)[0].ids
    assert clf.tokenizer.truncation_side == "right"  # the pipeline's tokenizer is left as it was
    emb = pipeline("sentence-embeddings", model=path, tokenizer=tok)
    assert_identical(
        emb.run_encoded(emb.encode([text], truncation_side="left", max_length=32)),
        pipeline("sentence-embeddings", model=path, tokenizer=left_tok).run([text], max_length=32),
    )
    with pytest.raises(ValueError, match="truncation_side must be 'right', 'left' or None"):
        clf.encode(inputs, truncation_side="middle")
    qa = pipeline("question-answering", model=qa_models[1], tokenizer=tok)
    with pytest.raises(ValueError, match="truncation_side: question-answering cuts nothing"):
        qa.encode([{"question": "q", "context": "c"}], truncation_side="left")
