"""distilbert_fast.serve in process: every route against the direct pipeline (or model) results, the
documented 4xx answers, the batcher's failure isolation and cancellation. The real uvicorn process is in
test_serve_http.py.

Models: all-MiniLM-L6-v2 for /embed; small random DistilBERT checkpoints with the real vocabulary (saved
with the MiniLM tokenizer files, as a user's checkpoint folder) for the other tasks.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import hf_model, randomize_
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

import distilbert_fast as dbf  # noqa: E402
from distilbert_fast.pipelines import pipeline  # noqa: E402
from distilbert_fast.serve import InferenceService, ServeConfig, create_app  # noqa: E402
from distilbert_fast.serve.batcher import DynamicBatcher  # noqa: E402

VOCAB = 30522
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
TEXTS = [
    "Hello there, my name is Sarah Connor and I live in London.",
    "Unaffable cats sleep.",
    "The Eiffel tower is in Paris; the snowman ☃ is not.",
    "ok",
    "A man is playing a guitar on a crowded stage while the orchestra performed Beethoven's ninth.",
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def save(tmp_path_factory, minilm_dir):
    root = tmp_path_factory.mktemp("serve")

    def save(model, name):
        path = root / name
        model.save_pretrained(path)
        for f in TOKENIZER_FILES:
            shutil.copy(f"{minilm_dir}/{f}", path / f)
        return str(path)

    return save


class Server:
    """An InferenceService + its app behind httpx's in-process ASGI transport."""

    def __init__(self, **config):
        self.service = InferenceService(ServeConfig(**config))
        self.app = create_app(self.service)

    def client(self, **kw):
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test", **kw)

    def post(self, path, body=None, **kw):
        async def go():
            async with self.client() as c:
                return (
                    await c.post(path, json=body, **kw) if "content" not in kw else await c.post(path, **kw)
                )

        return asyncio.run(go())

    def get(self, path, **kw):
        async def go():
            async with self.client() as c:
                return await c.get(path, **kw)

        return asyncio.run(go())

    def gather(self, requests):
        """[(path, body)] all at once -> responses."""

        async def go():
            async with self.client() as c:
                return await asyncio.gather(*[c.post(p, json=b) for p, b in requests])

        return asyncio.run(go())


def close_to(actual, expected, tol=2e-5, where="result"):
    """Same structure; floats within tol relative to max(1, |expected|)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), f"{where}: {actual} != {expected}"
        for k in expected:
            close_to(actual[k], expected[k], tol, f"{where}[{k}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual} != {expected}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            close_to(a, e, tol, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert abs(actual - expected) <= tol * max(1.0, abs(expected)), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def error(response, status, error_type=None, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"}, body
    if error_type is not None:
        assert body["error_type"] == error_type, body
    for w in words:
        assert w in body["error"], body
    return body["error"]


# ----------------------------------------------------------------------------------------------------------
# servers
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embed_server(minilm_dir):
    s = Server(model=minilm_dir, max_client_batch_size=8, payload_limit=4096)
    yield s
    s.service.close()


@pytest.fixture(scope="module")
def clf(save):
    hf = hf_model(
        "DistilBertForSequenceClassification",
        seed=1,
        vocab_size=VOCAB,
        num_labels=3,
        id2label={0: "neg", 1: "neu", 2: "pos"},
        label2id={"neg": 0, "neu": 1, "pos": 2},
    )
    path = save(hf, "clf")
    s = Server(model=path, max_input_length=64)
    yield s, pipeline("text-classification", model=path)
    s.service.close()


@pytest.fixture(scope="module")
def reranker(save):
    path = save(hf_model("DistilBertForSequenceClassification", seed=3, vocab_size=VOCAB, num_labels=1), "rr")
    s = Server(model=path)
    yield s, pipeline("text-classification", model=path)
    s.service.close()


# ----------------------------------------------------------------------------------------------------------
# routes vs the pipelines
# ----------------------------------------------------------------------------------------------------------
def test_embed_matches_the_pipeline(embed_server, minilm_dir):
    s = embed_server
    assert s.service.pooling == "mean"  # from the model's 1_Pooling/config.json
    pipe = pipeline("sentence-embeddings", model=minilm_dir)
    want = pipe.run(TEXTS, return_tensors="np").tolist()
    r = s.post("/embed", {"inputs": TEXTS})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    close_to(r.json(), want, 1e-5)
    close_to(s.post("/embed", {"inputs": TEXTS[1]}).json(), [want[1]], 1e-5)  # a str -> [[...]]
    raw = pipe.run(TEXTS[:2], normalize=False, return_tensors="np").tolist()
    close_to(s.post("/embed", {"inputs": TEXTS[:2], "normalize": False}).json(), raw, 1e-5)
    # many concurrent requests are batched together and each gets its own vectors back
    rs = s.gather([("/embed", {"inputs": [t]}) for t in TEXTS * 6])
    for i, r in enumerate(rs):
        close_to(r.json(), [want[i % len(TEXTS)]], 1e-5, f"request {i}")
    long = " ".join(["word"] * 400)
    cut = pipe.run([long], return_tensors="np").tolist()  # the pipeline truncates at max_seq_length 256
    close_to(s.post("/embed", {"inputs": [long], "truncate": True}).json(), cut, 1e-5)


def test_requests_are_tokenized_once_on_the_event_loop(embed_server, clf, reranker):
    # TEI's split: the event loop tokenizes (the batch budget needs the real token counts), the model
    # worker runs the encodings it is handed and never tokenizes again.
    calls = []

    def spy(tokenizer):
        encode_batch = tokenizer._encode_batch

        def counted(batch, *a, **k):
            calls.append((threading.current_thread().name, len(batch)))
            return encode_batch(batch, *a, **k)

        tokenizer._encode_batch = counted
        return lambda: delattr(tokenizer, "_encode_batch")

    for server, route, body in (
        (embed_server, "/embed", {"inputs": TEXTS[:3]}),
        (clf[0], "/predict", {"inputs": [["Is it raining?", "The streets are wet."], TEXTS[1]]}),
        (reranker[0], "/rerank", {"query": "Where is the tower?", "texts": TEXTS[:4]}),
    ):
        service = server.service
        undo = [spy(service.pipe.tokenizer), spy(service.tokenizer)]
        try:
            calls.clear()
            assert server.post(route, body).status_code == 200
        finally:
            for u in undo:
                u()
        n = len(body.get("inputs", body.get("texts")))
        assert calls == [("MainThread", n)], (route, calls)  # one call, for every input, not in the worker


def test_left_truncation_keeps_the_end_of_long_inputs(embed_server, minilm_dir, clf, reranker):
    # TEI's truncation_direction "left" (or "Left"): an over-long input keeps its last tokens
    left_tok = dbf.DistilBertTokenizer.from_pretrained(minilm_dir, truncation_side="left")
    long = "It starts like this. " + " ".join(["word"] * 300) + " And it ends like that."
    want = pipeline("sentence-embeddings", model=minilm_dir, tokenizer=left_tok).run([long, TEXTS[0]])
    for direction in ("left", "Left"):
        body = {"inputs": [long, TEXTS[0]], "truncate": True, "truncation_direction": direction}
        close_to(embed_server.post("/embed", body).json(), want.tolist(), 1e-5, direction)
    right = embed_server.post("/embed", {"inputs": [long], "truncate": True}).json()
    assert not np.allclose(right[0], want[0].numpy(), atol=1e-3)  # the default keeps the start
    error(  # without truncate an over-long input is still an error, whichever end would be cut
        embed_server.post("/embed", {"inputs": [long], "truncation_direction": "left"}), 413, "validation"
    )

    s, pipe = clf
    path = s.service.config.model
    left = pipeline("text-classification", model=path, tokenizer=left_tok)
    left.max_length = 64  # the server's --max-input-length
    pair = [long, "The streets are wet."]
    body = {"inputs": [pair, TEXTS[1]], "truncate": True, "truncation_direction": "left"}
    want = left.run([{"text": long, "text_pair": pair[1]}, TEXTS[1]], top_k=None)
    close_to(s.post("/predict", body).json(), want)
    s, pipe = reranker
    left = pipeline("text-classification", model=s.service.config.model, tokenizer=left_tok)
    items = [{"text": "Where is the tower?", "text_pair": t} for t in (long, TEXTS[2])]
    scores = [r[0]["score"] for r in left.run(items, top_k=None)]
    body = {"query": "Where is the tower?", "texts": [long, TEXTS[2]], "truncate": True}
    got = s.post("/rerank", {**body, "truncation_direction": "left"}).json()
    close_to(sorted(got, key=lambda d: d["index"]), [{"index": i, "score": x} for i, x in enumerate(scores)])


def test_quantize_int8_serves_what_the_int8_pipeline_computes(clf):
    path = clf[0].service.config.model
    s = Server(model=path, quantize="int8")
    try:
        assert s.get("/info").json()["quantize"] == "int8"
        want = pipeline("text-classification", model=path, quantize="int8").run(TEXTS, top_k=None)
        close_to(s.post("/predict", {"inputs": TEXTS}).json(), want)
        fp32 = clf[1].run(TEXTS, top_k=None)
        assert want != fp32  # int8 ran (its scores differ from fp32 in the last digits at least)
    finally:
        s.service.close()
    with pytest.raises(ValueError, match="quantize must be"):
        ServeConfig(model=path, quantize="int4")


def test_device_is_checked_and_reported(clf):
    path = clf[0].service.config.model
    assert clf[0].get("/info").json()["device"] == "cpu"
    for bad in ("tpu", "cuda:x", "CPU", "cuda:", "cuda:\u0663", "cuda:0\n", 0):
        with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
            ServeConfig(model=path, device=bad)
    with pytest.raises(ValueError, match="dtype float16 needs device cuda"):
        ServeConfig(model=path, dtype="float16")
    ServeConfig(
        model=path, device="cuda:1", dtype="float16"
    )  # spelling only: the machine is checked at start
    s = Server(model=path, device="cpu")
    try:
        close_to(s.post("/predict", {"inputs": TEXTS}).json(), clf[1].run(TEXTS, top_k=None))
    finally:
        s.service.close()
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match="no usable CUDA GPU" if n == 0 else "CUDA GPU\\(s\\)"):
        InferenceService(ServeConfig(model=path, device=f"cuda:{n}" if n else "cuda"))


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=12),
        st.from_regex(r"(cpu|cuda)(:[0-9]{0,3})?", fullmatch=True),
        st.integers(),
        st.none(),
    )
)
def test_device_spelling_property(device):
    """ServeConfig.device: None, 'cpu', 'cuda' or 'cuda:N' are taken as given; anything else is refused with a
    message naming the field (the machine itself is only checked when a service starts)."""
    import re

    ok = device is None or (
        isinstance(device, str) and re.fullmatch(r"cpu|cuda(:[0-9]+)?", device) is not None
    )
    if ok:
        assert ServeConfig(model="m", device=device).device == device
    else:
        with pytest.raises(ValueError, match="^device must be 'cpu', 'cuda' or 'cuda:N', got "):
            ServeConfig(model="m", device=device)


def test_cli_serve_device_errors_are_one_line(minilm_dir, capsys):
    from distilbert_fast.cli import main

    assert main(["serve", "--model", str(minilm_dir), "--device", "tpu"]) == 1
    assert "device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():  # refused before the model loads or a port is bound
        assert main(["serve", "--model", str(minilm_dir), "--device", "cuda", "--port", "0"]) == 1
        assert "device 'cuda': this machine has no usable CUDA GPU" in capsys.readouterr().err


def test_embed_cls_pooling_from_the_pooling_config(save):
    path = save(hf_model("DistilBertModel", seed=6, vocab_size=VOCAB), "cls")
    (Path(path) / "1_Pooling").mkdir()
    (Path(path) / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    s = Server(model=path)
    try:
        assert s.get("/info").json()["model_type"] == {"embedding": {"pooling": "cls"}}
        feats = pipeline("feature-extraction", model=path).run(TEXTS, return_tensors=True)
        cls = torch.stack([f[0, 0] for f in feats])
        close_to(s.post("/embed", {"inputs": TEXTS}).json(), F.normalize(cls, dim=1).tolist(), 1e-5)
        close_to(s.post("/embed", {"inputs": TEXTS, "normalize": False}).json(), cls.tolist(), 1e-5)
    finally:
        s.service.close()
    s = Server(model=path, pooling="mean")  # --pooling overrides the file
    try:
        want = pipeline("sentence-embeddings", model=path).run(TEXTS[:2], return_tensors="np").tolist()
        close_to(s.post("/embed", {"inputs": TEXTS[:2]}).json(), want, 1e-5)
    finally:
        s.service.close()


def test_openai_embeddings(embed_server, minilm_dir):
    s = embed_server
    want = pipeline("sentence-embeddings", model=minilm_dir).run(TEXTS[:3], return_tensors="np")
    body = s.post("/v1/embeddings", {"input": TEXTS[:3], "model": "minilm", "user": "x"}).json()
    assert body["object"] == "list" and body["model"] == "minilm"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and body["data"][0]["object"] == "embedding"
    close_to([d["embedding"] for d in body["data"]], want.tolist(), 1e-5)
    tok = dbf.DistilBertTokenizer.from_pretrained(minilm_dir)
    n = sum(len(x) for x in tok(TEXTS[:3])["input_ids"])
    assert body["usage"] == {"prompt_tokens": n, "total_tokens": n}
    b64 = s.post("/v1/embeddings", {"input": TEXTS[0], "encoding_format": "base64"}).json()
    import base64

    vec = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, want[0], rtol=0, atol=1e-5)
    error(s.post("/v1/embeddings", {"input": "x", "dimensions": 3}), 422, "validation", "dimensions")


def test_tokenize_info_health_metrics_openapi(embed_server, minilm_dir):
    s = embed_server
    tok = dbf.DistilBertTokenizer.from_pretrained(minilm_dir)
    out = s.post("/tokenize", {"inputs": ["Unaffable cats"]}).json()
    ids = tok("Unaffable cats")["input_ids"]
    assert [t["id"] for t in out[0]] == ids
    assert out[0][0] == {"id": ids[0], "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert "".join(t["text"] for t in out[0][1:-1]) == "Unaffablecats"
    assert out[0][1]["start"] == 0 and out[0][-2]["stop"] == len("Unaffable cats")
    no_special = s.post("/tokenize", {"inputs": "ok", "add_special_tokens": False}).json()
    assert [t["id"] for t in no_special[0]] == tok("ok", add_special_tokens=False)["input_ids"]

    info = s.get("/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 256 and info["max_client_batch_size"] == 8
    assert "api_key" not in str(info)
    assert s.get("/health").status_code == 200
    assert s.post("/embed", {"inputs": "one embedding, counted below"}).status_code == 200
    metrics = s.get("/metrics").text
    assert 'dbf_requests_total{route="/embed",status="200"}' in metrics
    for name in (
        "dbf_request_duration_seconds_bucket",
        "dbf_queue_duration_seconds_bucket",
        "dbf_batch_requests_bucket",
        "dbf_batch_tokens_bucket",
        "dbf_tokens_total",
        "dbf_queue_depth",
    ):
        assert name in metrics, name
    doc = s.get("/openapi.json").json()
    assert {"/embed", "/rerank", "/v1/embeddings", "/question-answering"} <= set(doc["paths"])
    assert (
        "inputs"
        in doc["paths"]["/embed"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )
    assert "QAItem" in doc["components"]["schemas"]


def test_predict_matches_the_pipeline(clf):
    s, pipe = clf
    want = pipe.run(TEXTS, top_k=None)
    close_to(s.post("/predict", {"inputs": TEXTS}).json(), want)
    close_to(s.post("/predict", {"inputs": TEXTS[0]}).json(), want[0])  # single: un-nested
    pair = ["Is it raining?", "The streets are wet."]  # TEI: a list of two strings is one pair
    close_to(
        s.post("/predict", {"inputs": pair}).json(),
        pipe.run([{"text": pair[0], "text_pair": pair[1]}], top_k=None)[0],
    )
    batch = [pair, [TEXTS[1]], TEXTS[2]]
    close_to(
        s.post("/predict", {"inputs": batch}).json(),
        pipe.run([{"text": pair[0], "text_pair": pair[1]}, TEXTS[1], TEXTS[2]], top_k=None),
    )
    close_to(
        s.post("/predict", {"inputs": TEXTS[:3], "raw_scores": True}).json(),
        pipe.run(TEXTS[:3], top_k=None, function_to_apply="none"),
    )
    assert s.get("/info").json()["model_type"]["classifier"]["id2label"] == {
        "0": "neg",
        "1": "neu",
        "2": "pos",
    }
    error(s.post("/embed", {"inputs": "x"}), 400, "unsupported", "text-classification")
    error(s.post("/rerank", {"query": "q", "texts": ["a"]}), 400, "unsupported", "re-ranker")
    error(s.post("/predict", {"inputs": "x", "head": "a"}), 422, "validation", "head")
    error(s.post("/predict", {"inputs": [["a", "b", "c"]]}), 422, "validation", "inputs.0")


def test_rerank_matches_the_pipeline(reranker):
    s, pipe = reranker
    query, texts = "Where is the tower?", TEXTS[:4]
    scores = [r[0]["score"] for r in pipe.run([{"text": query, "text_pair": t} for t in texts], top_k=None)]
    want = sorted(({"index": i, "score": sc} for i, sc in enumerate(scores)), key=lambda d: -d["score"])
    close_to(s.post("/rerank", {"query": query, "texts": texts}).json(), want)
    with_text = s.post("/rerank", {"query": query, "texts": texts, "return_text": True}).json()
    assert [d["text"] for d in with_text] == [texts[d["index"]] for d in want]
    raw = [
        r[0]["score"]
        for r in pipe.run(
            [{"text": query, "text_pair": t} for t in texts], top_k=None, function_to_apply="none"
        )
    ]
    got = {
        d["index"]: d["score"]
        for d in s.post("/rerank", {"query": query, "texts": texts, "raw_scores": True}).json()
    }
    close_to([got[i] for i in range(4)], raw)
    assert "reranker" in s.get("/info").json()["model_type"]


def test_fill_mask_qa_token_classification_match_the_pipelines(save):
    fm = save(hf_model("DistilBertForMaskedLM", seed=2, vocab_size=VOCAB), "fm")
    s = Server(model=fm)
    try:
        texts = ["Paris is the [MASK] of France.", "I love [MASK] and [MASK] very much."]
        want = pipeline("fill-mask", model=fm).run(texts, top_k=3)
        close_to(s.post("/fill-mask", {"inputs": texts, "top_k": 3}).json(), want)
        close_to(s.post("/fill-mask", {"inputs": texts[0], "top_k": 3}).json(), want[0])
        # a request whose input cannot run fails alone: the others in the same batch succeed
        rs = s.gather(
            [
                ("/fill-mask", {"inputs": texts[0], "top_k": 3}),
                ("/fill-mask", {"inputs": ["x", "no mask"]}),
                ("/fill-mask", {"inputs": texts[1], "top_k": 3}),
            ]
        )
        close_to(rs[0].json(), want[0])
        error(rs[1], 422, "validation", "inputs[0]", "mask")
        close_to(rs[2].json(), want[1])
    finally:
        s.service.close()

    qa = save(hf_model("DistilBertForQuestionAnswering", seed=5, vocab_size=VOCAB), "qa")
    s = Server(model=qa)
    try:
        examples = [
            {"question": "Who lives in London?", "context": TEXTS[0]},
            {"question": "What is in Paris?", "context": " ".join(TEXTS * 40)},
        ]  # several windows
        want = pipeline("question-answering", model=qa).run(examples, top_k=2)
        close_to(s.post("/question-answering", {"inputs": examples, "top_k": 2}).json(), want, 1e-4)
        one = pipeline("question-answering", model=qa).run(examples[:1])[0]
        close_to(s.post("/question-answering", {"inputs": examples[0]}).json(), one, 1e-4)
        error(
            s.post("/question-answering", {"inputs": {"question": "", "context": "c"}}),
            422,
            "validation",
            "inputs.question",
        )
    finally:
        s.service.close()

    ner = save(
        hf_model(
            "DistilBertForTokenClassification",
            seed=4,
            vocab_size=VOCAB,
            num_labels=3,
            id2label={0: "O", 1: "B-PER", 2: "I-PER"},
            label2id={"O": 0, "B-PER": 1, "I-PER": 2},
        ),
        "ner",
    )
    s = Server(model=ner)
    try:
        for strategy in ("none", "simple"):
            want = pipeline("token-classification", model=ner).run(TEXTS, aggregation_strategy=strategy)
            got = s.post("/token-classification", {"inputs": TEXTS, "aggregation_strategy": strategy}).json()
            close_to(got, want, 1e-4, strategy)
        error(
            s.post("/token-classification", {"inputs": "x", "aggregation_strategy": "best"}),
            422,
            "validation",
            "aggregation_strategy",
        )
    finally:
        s.service.close()


def test_heads_and_adapters_per_request_share_the_encoder_pass(save):
    torch.manual_seed(0)
    model = dbf.DistilBertModelWithHeads(
        dbf.DistilBertConfig(vocab_size=VOCAB, dim=32, n_heads=4, n_layers=2, hidden_dim=48)
    )
    model.add_adapter("a", config="seq_bn", reduction_factor=4)
    model.add_adapter("b", config="seq_bn", reduction_factor=8)
    model.add_classification_head("sent", num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"})
    model.add_classification_head("topics", num_labels=4, multilabel=True)
    model.add_tagging_head("tags", num_labels=2)
    randomize_(model, seed=7)
    path = save(model, "heads")
    s = Server(model=path, max_wait_ms=300)
    try:
        assert s.service.task == "heads"
        ref = dbf.DistilBertModelWithHeads.from_pretrained(path).eval()
        tok = dbf.DistilBertTokenizer.from_pretrained(path)

        def direct(text, head, adapters, fn):
            enc = tok([text], return_tensors="pt")
            with torch.inference_mode():
                logits = (
                    ref(
                        enc["input_ids"],
                        attention_mask=enc["attention_mask"],
                        head=head,
                        adapter_names=adapters,
                    )
                    .logits[0]
                    .float()
                )
            probs = fn(logits).tolist()
            labels = ref.get_labels_dict(head) or {i: f"LABEL_{i}" for i in range(len(probs))}
            return sorted(
                ({"label": labels[i], "score": p} for i, p in enumerate(probs)), key=lambda d: -d["score"]
            )

        passes = []
        encode = s.service.model.distilbert.encode
        s.service.model.distilbert.encode = lambda *a, **k: (passes.append(1), encode(*a, **k))[1]
        reqs = [
            ("/predict", {"inputs": TEXTS[0], "head": "sent", "adapter_names": "a"}),
            ("/predict", {"inputs": TEXTS[1], "head": "topics", "adapter_names": "a"}),
            ("/predict", {"inputs": TEXTS[2], "head": "sent", "adapter_names": ["a", "b"]}),
        ]
        rs = s.gather(reqs)  # max_wait_ms: the three requests form one batch
        assert len(passes) == 2  # adapters "a" (two heads, one pass) and Stack(a, b)
        close_to(rs[0].json(), direct(TEXTS[0], "sent", "a", lambda x: x.softmax(-1)), 1e-5)
        close_to(rs[1].json(), direct(TEXTS[1], "topics", "a", torch.sigmoid), 1e-5)
        close_to(rs[2].json(), direct(TEXTS[2], "sent", dbf.Stack("a", "b"), lambda x: x.softmax(-1)), 1e-5)
        raw = s.post("/predict", {"inputs": [TEXTS[3]], "head": "sent", "raw_scores": True}).json()
        close_to(raw, [direct(TEXTS[3], "sent", None, lambda x: x)], 1e-5)
        error(s.post("/predict", {"inputs": "x", "head": "nope"}), 422, "validation", "head", "sent")
        error(s.post("/predict", {"inputs": "x", "head": "tags"}), 422, "validation", "tagging")
        error(
            s.post("/predict", {"inputs": "x", "head": "sent", "adapter_names": ["zz"]}),
            422,
            "validation",
            "adapter_names",
        )
        assert set(s.get("/info").json()["model_type"]["heads"]) == {"sent", "topics", "tags"}
    finally:
        s.service.close()
    # over-long inputs: tokenized once on the event loop; truncate -> the tokenizer's own truncation (a pair:
    # longest first), else 413 naming the input. The worker pads ids of different lengths in one batch.
    s = Server(model=path, max_input_length=12)
    try:
        tok = dbf.DistilBertTokenizer.from_pretrained(path)
        long, pair = (TEXTS[0] + " ") * 4, (TEXTS[1], TEXTS[2] * 3)
        inputs = [long, list(pair), "short"]
        labels = ref.get_labels_dict("sent")
        for direction in ("right", "Left"):  # TEI's truncation_direction: keep the start, or the end
            body = {"inputs": inputs, "head": "sent", "truncate": True, "raw_scores": True}
            got = s.post("/predict", {**body, "truncation_direction": direction})
            tok.truncation_side = direction.lower()
            enc = tok(
                [long, pair, "short"], truncation=True, max_length=12, padding=True, return_tensors="pt"
            )
            assert enc["attention_mask"].sum(1).tolist()[:2] == [12, 12]
            with torch.inference_mode():
                logits = ref(
                    enc["input_ids"], attention_mask=enc["attention_mask"], head="sent"
                ).logits.float()
            want = [
                sorted(
                    ({"label": labels[i], "score": v} for i, v in enumerate(row)), key=lambda d: -d["score"]
                )
                for row in logits.tolist()
            ]
            close_to(got.json(), want, 1e-5)
        left, right = (
            s.post("/predict", {**body, "truncation_direction": d}).json() for d in ("left", "right")
        )
        assert left[0] != right[0] and left[2] == right[2]  # the cut input differs; the short one does not
        error(s.post("/predict", {"inputs": inputs, "head": "sent"}), 413, "validation", "inputs[0]")
    finally:
        s.service.close()


# ----------------------------------------------------------------------------------------------------------
# errors and limits
# ----------------------------------------------------------------------------------------------------------
def test_malformed_requests_give_422_naming_the_field(embed_server):
    s = embed_server
    error(
        s.post("/embed", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "validation",
        "invalid JSON",
    )
    error(s.post("/embed", [1, 2]), 422, "validation", "JSON object")
    error(s.post("/embed", {}), 422, "validation", "`inputs`", "missing")
    error(s.post("/embed", {"inputs": 5}), 422, "validation", "`inputs`")
    error(s.post("/embed", {"inputs": ["a", 5]}), 422, "validation", "inputs.1")
    error(s.post("/embed", {"inputs": "a", "normalize": "yes"}), 422, "validation", "normalize")
    error(s.post("/embed", {"inputs": "a", "normalise": True}), 422, "validation", "normalise", "unknown")
    error(s.post("/embed", {"inputs": []}), 422, "empty", "inputs")
    lone_surrogate = b'{"inputs": ["ok", "bad \\ud800 text"]}'  # valid JSON, not valid Unicode
    error(s.post("/embed", content=lone_surrogate), 422, "validation", "inputs", "Unicode")
    error(
        s.post("/embed", {"inputs": "a", "truncation_direction": "up"}),
        422,
        "validation",
        "truncation_direction",
    )
    error(s.post("/embed", {"inputs": "a", "prompt_name": "query"}), 422, "validation", "prompt_name")
    error(s.post("/nope", {"inputs": "a"}), 404, "not_found")
    error(s.get("/embed"), 405)
    assert s.get("/health").status_code == 200  # still serving


def test_size_limits(embed_server, clf):
    s = embed_server
    error(s.post("/embed", {"inputs": ["a"] * 9}), 413, "validation", "client batch size of 8")
    long = " ".join(["word"] * 300)
    error(s.post("/embed", {"inputs": ["short", long]}), 413, "validation", "inputs[1]", "302 tokens", "256")
    error(s.post("/embed", {"inputs": "x" * 5000}), 413, "payload_too_large", "4096")

    # no Content-Length (chunked body): counted while reading
    async def chunked():
        async def body():
            for _ in range(10):
                yield b" " * 1000

        async with s.client() as c:
            return await c.post("/embed", content=body())

    error(asyncio.run(chunked()), 413, "payload_too_large")
    c, _ = clf
    error(c.post("/predict", {"inputs": [long]}), 413, "validation", "inputs[0]", "64")
    assert c.post("/predict", {"inputs": [long], "truncate": True}).status_code == 200


def test_api_key(minilm_dir, monkeypatch):
    monkeypatch.setenv("DISTILBERT_FAST_API_KEY", "s3cret-key")
    s = Server(model=minilm_dir)
    try:
        assert "s3cret" not in repr(s.service.config) and "s3cret" not in str(
            s.get("/info", headers={"Authorization": "Bearer s3cret-key"}).json()
        )
        error(s.post("/embed", {"inputs": "a"}), 401, "unauthorized")
        r = s.post("/embed", {"inputs": "a"}, headers={"Authorization": "Bearer wrong"})
        error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer" and "s3cret" not in r.text
        error(s.post("/embed", {"inputs": "a"}, headers={"Authorization": "s3cret-key"}), 401)
        error(s.get("/metrics"), 401)
        error(s.get("/openapi.json"), 401)
        assert s.get("/health").status_code == 200  # the one open route
        ok = s.post("/embed", {"inputs": "a"}, headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200 and len(ok.json()[0]) == 384
    finally:
        s.service.close()


def test_overload_gives_429_and_the_server_recovers(clf, save):
    _, pipe = clf
    s = Server(model=pipe.model.name_or_path, max_concurrent_requests=2)
    try:
        rs = s.gather([("/predict", {"inputs": TEXTS * 6})] * 12)
        codes = [r.status_code for r in rs]
        assert codes.count(429) >= 1 and codes.count(200) >= 2, codes
        for r in rs:
            if r.status_code == 429:
                error(r, 429, "overloaded", "2")
        assert s.get("/health").status_code == 200
        assert s.post("/predict", {"inputs": "fine"}).status_code == 200
        assert 'status="429"' in s.get("/metrics").text
    finally:
        s.service.close()


# ----------------------------------------------------------------------------------------------------------
# the batcher itself
# ----------------------------------------------------------------------------------------------------------
def test_batcher_budgets_isolation_and_cancellation():
    seen = []
    gate, started = threading.Event(), threading.Event()

    def run(key, items):
        if key == "gate":
            started.set()
            gate.wait(10)
        seen.append((key, list(items)))
        if "boom" in items:
            raise RuntimeError("model exploded")
        return [f"{key}:{x}" for x in items]

    b = DynamicBatcher(run, max_batch_tokens=10, max_batch_requests=3)

    async def go():
        first = asyncio.ensure_future(b.submit("gate", ["g"], 1))
        while not started.is_set():  # the worker now runs "gate": the next requests queue up
            await asyncio.sleep(0.005)
        jobs = [asyncio.ensure_future(b.submit("k", [x], 4)) for x in ("a", "b", "c", "d")]
        bad = asyncio.ensure_future(b.submit("k", ["boom"], 1))
        gone = asyncio.ensure_future(b.submit("k", ["gone"], 1))
        await asyncio.sleep(0.02)
        gone.cancel()  # the client went away before its batch ran
        gate.set()
        results = await asyncio.gather(first, *jobs, bad, return_exceptions=True)
        return results

    results = asyncio.run(go())
    b.close()
    assert results[:5] == [["gate:g"], ["k:a"], ["k:b"], ["k:c"], ["k:d"]]
    assert isinstance(results[5], RuntimeError) and "exploded" in str(results[5])
    batches = [items for key, items in seen if key == "k"]
    # token budget 10: two 4-token requests, then c + d + boom (9); the failing batch re-runs its requests
    # alone, so only "boom" fails; the cancelled request never runs
    assert batches == [["a", "b"], ["c", "d", "boom"], ["c"], ["d"], ["boom"]]
    assert not b.alive


def test_batcher_waits_up_to_max_wait_for_a_fuller_batch():
    sizes = []
    b = DynamicBatcher(
        lambda key, items: (sizes.append(len(items)), items)[1],
        max_batch_tokens=100,
        max_batch_requests=4,
        max_wait_ms=150,
    )

    async def go():
        first = asyncio.ensure_future(b.submit("k", [1], 1))
        await asyncio.sleep(0.03)
        rest = [asyncio.ensure_future(b.submit("k", [i], 1)) for i in (2, 3)]
        t0 = time.perf_counter()
        await asyncio.gather(first, *rest)
        return time.perf_counter() - t0

    asyncio.run(go())
    b.close()
    assert sizes == [3]  # the first request waited for the two that came 30 ms later


def test_batcher_runs_a_request_at_once_when_idle():
    # TEI's rule, the default (max_wait_ms=0): an idle server runs a request at once, alone; requests that
    # arrive while a batch runs form the next batch.
    sizes, gate = [], threading.Event()

    def run(key, items):
        sizes.append(len(items))
        if items == [0]:
            gate.wait(10)
        return items

    b = DynamicBatcher(run, max_batch_tokens=100, max_batch_requests=8)

    async def go():
        t0 = time.perf_counter()
        first = asyncio.ensure_future(b.submit("k", [0], 1))
        while not sizes:  # the worker took it at once, alone
            await asyncio.sleep(0.001)
        started = time.perf_counter() - t0
        rest = [asyncio.ensure_future(b.submit("k", [i], 1)) for i in (1, 2, 3)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *rest)
        return started

    started = asyncio.run(go())
    b.close()
    assert sizes == [1, 3], sizes
    assert started < 1.0  # no waiting for company (generous: a loaded CI machine)


def test_float_json_round_trips_every_float32():
    import json

    from distilbert_fast.serve.encoding import encode_json, to_plain

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edge = np.array(
        [0.0, -0.0, 1.0, -1.0, 0.1, 1e-45, -1e-45, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, 99999999.0],
        dtype=np.float32,
    )
    x = np.concatenate([edge, x[np.isfinite(x)], (10.0 ** rng.uniform(-45, 38.5, 50_000)).astype(np.float32)])
    x = x[np.isfinite(x)]
    back = np.array(json.loads(encode_json(x)), dtype=np.float64).astype(np.float32)
    assert np.array_equal(back.view(np.uint32), x.view(np.uint32))  # bit for bit, signed zero included
    m = rng.standard_normal((3, 5)).astype(np.float32)
    assert np.array_equal(np.array(json.loads(encode_json(m)), dtype=np.float32), m)
    assert np.array_equal(
        np.array(json.loads(encode_json(m[:, ::2])), dtype=np.float32), m[:, ::2]
    )  # strided
    assert json.loads(encode_json(np.zeros((0, 4), np.float32))) == []
    assert json.loads(encode_json(np.zeros((2, 0), np.float32))) == [[], []]
    assert encode_json(np.array([1.5, np.nan], np.float32)) == b"[1.5,null]"  # valid JSON, unlike json.dumps
    value = {"data": [{"embedding": m[0], "index": np.int64(0)}], "model": 'a "b" é', "n": [np.float32(0.5)]}
    got = json.loads(encode_json(value))
    assert np.array_equal(np.array(got["data"][0].pop("embedding"), dtype=np.float32), m[0])
    assert got == {"data": [{"index": 0}], "model": 'a "b" é', "n": [0.5]}
    plain = to_plain(value)
    assert plain["data"][0].pop("embedding") == m[0].tolist() and plain == got
