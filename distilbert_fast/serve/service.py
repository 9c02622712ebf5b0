"""InferenceService: the model, its pipeline, the dynamic batcher and one async method per route.

It knows nothing of HTTP: each route method takes the parsed JSON body (a dict) and returns a JSON-able
value (embeddings as float32 numpy arrays) or raises ServeError(status, error_type, message);
`handle(route, body)` returns plain JSON values, `handle(..., encoded=True)` the response bytes (the
arrays written by orjson, serve/encoding.py). The ASGI app (app.py) and the Ray Serve deployment
(distilbert_fast/ray/serving.py) both wrap it.

Model work reuses distilbert_fast.pipelines (length-sorted, packed batches; transformers' postprocessing),
tokenizing once, as TEI does: each request is tokenized on the event loop by the pipeline's own
`encode` (truncated as the pipeline truncates), which gives the real token counts the batch budget and
--max-input-length need; the batcher concatenates the (input, encoding) items of every queued request with
the same parameters into one `pipeline.run_encoded(...)` call, so the model worker runs only the model and
the postprocessing. (DistilBertModelWithHeads requests are tokenized on the event loop too, into token
ids that serve/multihead.py pads and runs through the model's multi-head forward.)
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from ..pipelines import PipelineInputError, pipeline
from ..tokenization.tokenizer import truncating_on
from . import schemas
from .batcher import BatcherClosed, DynamicBatcher
from .config import ServeConfig
from .encoding import encode_json, to_plain
from .metrics import Metrics

EMBEDDING, CLASSIFICATION = "feature-extraction", "text-classification"
FILL_MASK, QA, TOKEN_CLASSIFICATION = "fill-mask", "question-answering", "token-classification"
HEADS = "heads"  # DistilBertModelWithHeads: /predict with head= and adapter_names= per request
SERVER_TASKS = (EMBEDDING, CLASSIFICATION, FILL_MASK, QA, TOKEN_CLASSIFICATION, HEADS)
TASK_ALIASES = {
    "sentence-embeddings": EMBEDDING,
    "embedding": EMBEDDING,
    "sentiment-analysis": CLASSIFICATION,
    "ner": TOKEN_CLASSIFICATION,
    "reranker": CLASSIFICATION,
}
# route -> (method name, tasks that serve it; None: every task)
ROUTES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "/embed": ("embed", (EMBEDDING,)),
    "/v1/embeddings": ("openai_embeddings", (EMBEDDING,)),
    "/predict": ("predict", (CLASSIFICATION, HEADS)),
    "/rerank": ("rerank", (CLASSIFICATION,)),
    "/tokenize": ("tokenize", None),
    "/fill-mask": ("fill_mask", (FILL_MASK,)),
    "/question-answering": ("question_answering", (QA,)),
    "/token-classification": ("token_classification", (TOKEN_CLASSIFICATION,)),
}


class ServeError(Exception):
    """A request that cannot be answered: HTTP `status`, TEI's `error_type`, a message for the client."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def to_json(self) -> dict:
        return {"error": self.message, "error_type": self.error_type}


def detect_task(config: dict) -> str:
    """The server task of a checkpoint, from its architectures (a bare encoder serves embeddings)."""
    arch = " ".join(config.get("architectures") or [])
    if "prediction_heads" in config or "WithHeads" in arch or "AdapterModel" in arch:
        return HEADS
    for marker, task in (
        ("SequenceClassification", CLASSIFICATION),
        ("MaskedLM", FILL_MASK),
        ("QuestionAnswering", QA),
        ("TokenClassification", TOKEN_CLASSIFICATION),
    ):
        if marker in arch:
            return task
    return EMBEDDING


def resolve_server_task(task: str | None, config: dict) -> str:
    if task is None:
        return detect_task(config)
    task = TASK_ALIASES.get(task, task)
    if task not in SERVER_TASKS:
        raise ValueError(
            f"task: expected one of {', '.join(SERVER_TASKS)} (aliases: "
            f"{', '.join(TASK_ALIASES)}), got {task!r}"
        )
    return task


def read_pooling(model_dir: Path) -> str | None:
    """sentence-transformers' 1_Pooling/config.json -> "mean" | "cls" (None when there is no such file)."""
    path = model_dir / "1_Pooling" / "config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    modes = [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
    raise ValueError(f"{path}: pooling {modes} is not supported (mean or cls); pass --pooling to override")


def read_prompts(model_dir: Path) -> dict[str, str]:
    path = model_dir / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    return {k: v for k, v in prompts.items() if isinstance(k, str) and isinstance(v, str)}


class InferenceService:
    """Load the model once; `await service.handle("/embed", body)` (or the per-route methods)."""

    def __init__(self, config: ServeConfig):
        from ..checkpoint import read_config_dict, resolve_model_dir
        from ..tokenization import DistilBertTokenizer

        self.config = config
        # tokenizers spreads every encode_batch call over a thread pool: for one request's 1-4 texts that is
        # thread wake-ups and no gain (about 0.4 ms per request on 2 cores, measured). Set it explicitly to
        # keep tokenizers' default.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.metrics = Metrics()
        device = _usable_device(config.device)
        model_dir = Path(resolve_model_dir(config.model))
        model_config = read_config_dict(model_dir)
        self.task = resolve_server_task(config.task, model_config)
        self.model_id = config.model_id or config.model
        self.pooling = None
        self.prompts: dict[str, str] = {}
        if self.task == EMBEDDING:
            self.pooling = config.pooling or read_pooling(model_dir) or "mean"
            self.prompts = read_prompts(model_dir)
            pipe_task = "sentence-embeddings" if self.pooling == "mean" else "feature-extraction"
        else:
            pipe_task = self.task
        # one pipeline call may hold a whole batch: every request's inputs, sorted and packed by the pipeline
        batch_size = config.max_batch_requests * config.max_client_batch_size
        self.tokenizer = DistilBertTokenizer.from_pretrained(model_dir)  # the event loop's own
        self._side_tokenizers: dict = {}  # its copies truncating on the other side (heads requests)
        self.pipe = self.runner = None
        if self.task == HEADS:
            from ..heads import DistilBertModelWithHeads
            from .multihead import MultiHeadRunner

            dtype = getattr(torch, config.dtype) if config.dtype else None
            self.model = DistilBertModelWithHeads.from_pretrained(
                model_dir, dtype=dtype, backend=config.backend, quantize=config.quantize
            ).to(device)
            self.model.prepare_for_inference()
            limit = min(self.model.config.max_position_embeddings, self.tokenizer.model_max_length)
        else:
            self.pipe = pipeline(
                pipe_task,
                model=str(model_dir),
                dtype=config.dtype,
                quantize=config.quantize,
                backend=config.backend,
                batch_size=batch_size,
                device=device,
                progress=False,
            )
            self.model = self.pipe.model
            limit = getattr(self.pipe, "default_max_length", self.pipe.max_length)
        if config.max_input_length is not None:
            limit = min(limit, config.max_input_length)
        self.max_input_length = limit
        if self.task == HEADS:
            self.runner = MultiHeadRunner(self.model, self.tokenizer.pad_token_id, batch_size)
        else:
            self.pipe.max_length = min(self.pipe.max_length, limit)  # the pipelines truncate at max_length
            if hasattr(self.pipe, "default_max_length"):
                self.pipe.default_max_length = limit
        self.num_labels = getattr(self.model.config, "num_labels", None)
        self._in_flight = 0
        self._children: dict[tuple[str, int], tuple] = {}
        threads = config.threads

        def worker_start():
            if threads is not None:
                torch.set_num_threads(threads)

        self.batcher = DynamicBatcher(
            self._run,
            max_batch_tokens=config.max_batch_tokens,
            max_batch_requests=config.max_batch_requests,
            max_wait_ms=config.max_wait_ms,
            metrics=self.metrics,
            on_worker_start=worker_start,
        )

    # -- lifecycle / introspection ---------------------------------------------------------------------------
    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Finish queued work (drain) and stop the model worker."""
        self.batcher.close(drain=drain, timeout=timeout)

    def healthy(self) -> bool:
        return self.batcher.alive

    def routes(self) -> list[str]:
        return [r for r, (_, tasks) in ROUTES.items() if tasks is None or self.task in tasks]

    def info(self) -> dict:
        from .. import __version__

        model = self.model
        if self.task == EMBEDDING:
            model_type: dict = {"embedding": {"pooling": self.pooling}}
        elif self.task == CLASSIFICATION:
            labels = {
                "id2label": {str(k): v for k, v in model.config.id2label.items()},
                "label2id": dict(model.config.label2id),
            }
            model_type = {"reranker" if self.num_labels == 1 else "classifier": labels}
        elif self.task == HEADS:
            model_type = {
                "heads": {
                    h: {
                        "head_type": self.runner.head_type(h),
                        "id2label": {str(k): v for k, v in self.runner.labels(h).items()},
                    }
                    for h in self.runner.heads
                },
                "adapters": self.runner.adapters,
                "default_head": self.runner.default_head(),
            }
        else:
            model_type = {self.task: {}}
        cfg = self.config
        return {
            "model_id": self.model_id,
            "model_sha": None,
            "model_dtype": str(model.dtype).removeprefix("torch."),
            "quantize": cfg.quantize,
            "device": str(model.device),
            "model_type": model_type,
            "task": self.task,
            "backend": model.backend,
            "routes": self.routes(),
            "max_concurrent_requests": cfg.max_concurrent_requests,
            "max_input_length": self.max_input_length,
            "max_batch_tokens": cfg.max_batch_tokens,
            "max_batch_requests": cfg.max_batch_requests,
            "max_client_batch_size": cfg.max_client_batch_size,
            "max_wait_ms": cfg.max_wait_ms,
            "auto_truncate": False,
            "tokenization_workers": 1,
            "version": __version__,
        }

    # -- dispatch --------------------------------------------------------------------------------------------
    async def handle(self, route: str, body: Any, *, encoded: bool = False) -> Any:
        """Answer `body` (parsed JSON) on `route`: a JSON-able value, or with `encoded` its JSON text as bytes
        (embeddings written by orjson: serve/encoding.py). Counts the request in the metrics; raises
        ServeError."""
        start = time.perf_counter()
        status = 200
        try:
            if route not in ROUTES:
                raise ServeError(404, "not_found", f"no route {route}")
            method, tasks = ROUTES[route]
            if tasks is not None and self.task not in tasks:
                raise ServeError(
                    400,
                    "unsupported",
                    f"{route} needs a {' or '.join(tasks)} model; this server "
                    f"runs {self.task} (routes: {', '.join(self.routes())})",
                )
            # One event loop owns the counter: no lock needed.
            if self._in_flight >= self.config.max_concurrent_requests:
                raise ServeError(
                    429,
                    "overloaded",
                    f"too many concurrent requests (limit {self.config.max_concurrent_requests}); retry later",
                )
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
            try:
                value = await getattr(self, method)(body)
            finally:
                self._in_flight -= 1
                self.metrics.in_flight.set(self._in_flight)
            return encode_json(value) if encoded else to_plain(value)
        except ServeError as e:
            status = e.status
            raise
        except BaseException:
            status = 499  # cancelled: the client went away
            raise
        finally:
            self._count(route, status, time.perf_counter() - start)

    def _count(self, route: str, status: int, seconds: float) -> None:
        # the labelled children, looked up once per (route, status): labels() locks and builds a key per call
        children = self._children.get((route, status))
        if children is None:
            m = self.metrics
            children = self._children[route, status] = (
                m.requests.labels(route, str(status)),
                m.request_duration.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    async def _submit(self, key: Hashable, items: list, tokens: int, field: str = "inputs") -> list:
        try:
            return await self.batcher.submit(key, items, tokens)
        except PipelineInputError as e:
            raise ServeError(422, "validation", f"`{field}[{e.input_index}]`: {e.reason}") from None
        except BatcherClosed as e:
            raise ServeError(503, "unhealthy", str(e)) from None
        except ValueError as e:
            raise ServeError(422, "validation", str(e)) from None
        except Exception as e:  # noqa: BLE001 - the model failed: this batch only, the server keeps serving
            raise ServeError(500, "backend", f"inference failed: {type(e).__name__}: {e}") from None

    # -- the model worker (runs in the batcher's thread) -----------------------------------------------------
    def _run(self, key: tuple, items: list) -> list:
        """items: (input, encoding) pairs from `_encode` (heads: MultiHeadRunner's items)."""
        kind = key[0]
        if kind == "heads":
            return self.runner.run(key[1], items)
        encodings = [e for _, e in items]
        run = self.pipe.run_encoded
        if kind == "embed":
            normalize = key[1]
            # (n, dim) float32: each request gets its rows as a view; JSON is written from the array
            if self.pooling == "mean":
                return run(encodings, normalize=normalize, return_tensors="np")
            cls = torch.stack([f[0, 0] for f in run(encodings, return_tensors=True)]).float()
            return (F.normalize(cls, p=2, dim=1) if normalize else cls).numpy()
        if kind == "predict":
            return run(encodings, top_k=None, function_to_apply="none" if key[1] else None)
        if kind == "fill-mask":
            return run(encodings, top_k=key[1])
        inputs = [x for x, _ in items]  # these tasks cut answers / entity words from the text
        if kind == "qa":
            _, top_k, max_answer_len, impossible = key
            return run(
                encodings,
                inputs,
                top_k=top_k,
                max_answer_len=max_answer_len,
                handle_impossible_answer=impossible,
            )
        if kind == "token-classification":
            return run(encodings, inputs, aggregation_strategy=key[1])
        raise RuntimeError(f"internal error: unknown work kind {kind!r}")

    # -- validation helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _parse(model: type, body: Any):
        if not isinstance(body, dict):
            raise ServeError(422, "validation", f"body: expected a JSON object, got {_json_type(body)}")
        try:
            return model.model_validate(body)
        except ValidationError as e:
            raise ServeError(422, "validation", schemas.describe(e)) from None

    def _batch(self, inputs: Any, field: str = "inputs") -> list:
        items = [inputs] if isinstance(inputs, (str, schemas.QAItem)) else list(inputs)
        if not items:
            raise ServeError(422, "empty", f"`{field}` cannot be empty")
        if len(items) > self.config.max_client_batch_size:
            raise ServeError(
                413,
                "validation",
                f"`{field}` has {len(items)} items, more than the maximum "
                f"client batch size of {self.config.max_client_batch_size}",
            )
        return items

    def _lengths(self, texts: list, pairs: list | None = None) -> list[int]:
        """Tokens per input (str or (text, pair) items, or texts + pairs), special tokens included."""
        enc = self.tokenizer(texts, pairs)
        return [len(ids) for ids in enc["input_ids"]]

    def _check_lengths(self, lengths: list[int], truncate: bool | None, field: str = "inputs") -> int:
        """Total real tokens after truncation; too long without truncate -> 413 naming the input."""
        limit = self.max_input_length
        if not truncate:
            for i, n in enumerate(lengths):
                if n > limit:
                    raise self._too_long(field, i, n)
        return sum(min(n, limit) for n in lengths)

    def _too_long(self, field: str, i: int, n: int) -> ServeError:
        return ServeError(
            413,
            "validation",
            f"`{field}[{i}]` has {n} tokens, more than the maximum "
            f'input length of {self.max_input_length}; shorten it or pass "truncate": true',
        )

    def _encode(
        self,
        items: list,
        truncate: bool | None,
        field: str = "inputs",
        check: bool = True,
        side: str | None = None,
    ) -> tuple[list[tuple], int]:
        """Tokenize `items` (pipeline inputs) once, here on the event loop, as the pipeline's run() would:
        (input, encoding) pairs for the worker and their real tokens (the batch budget). The pipeline
        truncates at max_input_length (keeping the start, or with side="left" the end); with `check` and
        no truncate, an input that was cut -> 413 naming it (an encoding of exactly the limit may have
        been cut: only those are counted again, whole)."""
        try:
            encodings = self.pipe.encode(items, truncation_side=side)
        except PipelineInputError as e:
            raise ServeError(422, "validation", f"`{field}[{e.input_index}]`: {e.reason}") from None
        except ValueError as e:  # e.g. text that is not valid Unicode (a lone surrogate)
            raise ServeError(422, "validation", f"`{field}`: {e}") from None
        lengths = [len(e) for e in encodings]
        if check and not truncate:
            for i, n in enumerate(lengths):
                if n >= self.max_input_length:
                    x = items[i]
                    whole = self._lengths([x] if isinstance(x, str) else [(x["text"], x["text_pair"])])[0]
                    if whole > self.max_input_length:
                        raise self._too_long(field, i, whole)
        return list(zip(items, encodings)), sum(lengths)

    def _direction(self, direction: str) -> str:
        """TEI's truncation_direction ("right"/"Right", "left"/"Left") -> the pipeline's truncation_side."""
        return direction.lower()

    def _prompt(self, texts: list[str], prompt_name: str | None) -> list[str]:
        if prompt_name is None:
            return texts
        if prompt_name not in self.prompts:
            known = ", ".join(self.prompts) or "none: the model has no sentence-transformers prompts"
            raise ServeError(
                422, "validation", f"field `prompt_name`: unknown prompt {prompt_name!r} (known: {known})"
            )
        return [self.prompts[prompt_name] + t for t in texts]

    # -- routes ----------------------------------------------------------------------------------------------
    async def _embed(
        self,
        inputs,
        normalize: bool,
        truncate: bool | None,
        field: str,
        prompt_name: str | None = None,
        side: str | None = None,
    ) -> tuple[list, int]:
        texts = self._prompt(self._batch(inputs, field), prompt_name)
        items, tokens = self._encode(texts, truncate, field, side=side)
        return await self._submit(("embed", normalize), items, tokens, field), tokens

    async def embed(self, body: Any) -> np.ndarray:
        """TEI /embed: {"inputs": str | [str], "normalize", "truncate", "truncation_direction",
        "prompt_name"} -> [[float]] (one vector per input, also for a single str; float32, as an array)."""
        req = self._parse(schemas.EmbedRequest, body)
        side = self._direction(req.truncation_direction)
        vectors, _ = await self._embed(
            req.inputs, req.normalize, req.truncate, "inputs", req.prompt_name, side
        )
        return vectors

    async def openai_embeddings(self, body: Any) -> dict:
        """OpenAI /v1/embeddings: {"input", "model", "encoding_format", "dimensions"} -> {"object": "list",
        "data": [{"object": "embedding", "embedding", "index"}], "model", "usage"}; always L2-normalized, and
        an input over the length limit is an error (413), as OpenAI answers one too."""
        req = self._parse(schemas.OpenAIEmbeddingsRequest, body)
        dim = self.model.config.dim
        if req.dimensions is not None and req.dimensions != dim:
            raise ServeError(
                422,
                "validation",
                f"field `dimensions`: this model returns {dim}-dimensional embeddings, got {req.dimensions}",
            )
        vectors, tokens = await self._embed(req.input, True, False, "input")
        data = []
        for i, v in enumerate(vectors):
            if req.encoding_format == "base64":
                v = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
            else:
                v = np.asarray(v)
            data.append({"object": "embedding", "embedding": v, "index": i})
        return {
            "object": "list",
            "data": data,
            "model": req.model or self.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def predict(self, body: Any) -> list:
        """TEI /predict: {"inputs": str | [text, pair] | [str | [text, pair]], "raw_scores", "truncate"} ->
        every label sorted by score, [{"label", "score"}] (a list of those for a batch). On a
        DistilBertModelWithHeads also "head" and "adapter_names" (a name or a list: stacked)."""
        req = self._parse(schemas.PredictRequest, body)
        side = self._direction(req.truncation_direction)
        raw = req.inputs
        # TEI's rule: a list of exactly two strings is ONE pair; otherwise a list is a batch.
        single = isinstance(raw, str) or (len(raw) == 2 and all(isinstance(x, str) for x in raw))
        batch = []  # str or (text, text_pair), as the tokenizer and the pipeline take them
        for i, x in enumerate(self._batch([raw] if single else raw)):
            if isinstance(x, str) or len(x) == 1:
                batch.append(x if isinstance(x, str) else x[0])
            elif len(x) == 2:
                batch.append((x[0], x[1]))
            else:
                raise ServeError(
                    422,
                    "validation",
                    f"field `inputs.{i}`: a pair is [text, text_pair], got {len(x)} strings",
                )
        if self.task == HEADS:
            ids, tokens = self._heads_ids(batch, req.truncate, side)
            key, items = self._heads_work(req, ids)
        else:
            if req.head is not None or req.adapter_names is not None:
                raise ServeError(
                    422,
                    "validation",
                    "fields `head` / `adapter_names` need a "
                    "DistilBertModelWithHeads checkpoint; this model has one fixed head",
                )
            key = ("predict", req.raw_scores)
            items, tokens = self._encode(
                [x if isinstance(x, str) else {"text": x[0], "text_pair": x[1]} for x in batch],
                req.truncate,
                side=side,
            )
        results = await self._submit(key, items, tokens)
        return results[0] if single else results

    def _heads_ids(self, batch: list, truncate: bool | None, side: str) -> tuple[list[list[int]], int]:
        """Token ids of each input (str or (text, pair)), tokenized once here as for the other tasks: the
        worker only pads them. An input over max_input_length -> 413 without truncate, else the tokenizer's
        own truncation (pairs: longest first) of that input, keeping its start (side "right") or its end
        ("left")."""
        ids = self.tokenizer(batch)["input_ids"]
        tokens = self._check_lengths([len(x) for x in ids], truncate)
        limit = self.max_input_length
        long = [i for i, x in enumerate(ids) if len(x) > limit]
        if long:
            tok = truncating_on(self.tokenizer, side, self._side_tokenizers)
            cut = tok([batch[i] for i in long], truncation=True, max_length=limit)["input_ids"]
            for i, x in zip(long, cut):
                ids[i] = x
        return ids, tokens

    def _heads_work(self, req, batch: list) -> tuple[tuple, list]:
        head = req.head if req.head is not None else self.runner.default_head()
        if head is None:
            raise ServeError(
                422,
                "validation",
                f"field `head`: required (the model has no single active head); "
                f"heads: {', '.join(self.runner.heads)}",
            )
        if head not in self.runner.heads:
            raise ServeError(
                422,
                "validation",
                f"field `head`: unknown head {head!r}; heads: {', '.join(self.runner.heads)}",
            )
        kind = self.runner.head_type(head)
        from .multihead import SEQUENCE_HEADS

        if kind not in SEQUENCE_HEADS:
            raise ServeError(
                422,
                "validation",
                f"field `head`: {head!r} is a {kind} head; /predict serves "
                f"{' and '.join(SEQUENCE_HEADS)} heads",
            )
        names = req.adapter_names
        adapters = None if names is None else (names,) if isinstance(names, str) else tuple(names)
        if adapters is not None:
            unknown = [a for a in adapters if a not in self.runner.adapters]
            if unknown or not adapters:
                raise ServeError(
                    422,
                    "validation",
                    f"field `adapter_names`: unknown adapter(s) {unknown}; "
                    f"adapters: {', '.join(self.runner.adapters) or 'none'}",
                )
        # requests with the same adapters share one encoder pass, whatever their heads
        return ("heads", adapters), [(x, head, req.raw_scores) for x in batch]

    async def rerank(self, body: Any) -> list[dict]:
        """TEI /rerank: {"query", "texts", "raw_scores", "return_text", "truncate"} -> [{"index", "score"
        (, "text")}] sorted by score, on a cross-encoder (one label)."""
        req = self._parse(schemas.RerankRequest, body)
        side = self._direction(req.truncation_direction)
        if self.num_labels != 1:
            raise ServeError(
                400,
                "unsupported",
                f"/rerank needs a re-ranker (a classifier with one label); "
                f"this model has {self.num_labels} labels",
            )
        texts = self._batch(req.texts, "texts")
        items, tokens = self._encode(
            [{"text": req.query, "text_pair": t} for t in texts], req.truncate, "texts", side=side
        )
        results = await self._submit(("predict", req.raw_scores), items, tokens, "texts")
        ranks = []
        for i, r in enumerate(results):
            entry = {"index": i, "score": r[0]["score"]}
            if req.return_text:
                entry["text"] = texts[i]
            ranks.append(entry)
        ranks.sort(key=lambda e: e["score"], reverse=True)
        return ranks

    async def tokenize(self, body: Any) -> list[list[dict]]:
        """TEI /tokenize: {"inputs", "add_special_tokens", "prompt_name"} -> per input [{"id", "text",
        "special", "start", "stop"}] (special tokens: start/stop null, text the token itself)."""
        req = self._parse(schemas.TokenizeRequest, body)
        texts = self._prompt(self._batch(req.inputs), req.prompt_name)
        enc = self.tokenizer(
            texts,
            add_special_tokens=req.add_special_tokens,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        out = []
        for t, text in enumerate(texts):
            ids, offsets, special = (
                enc["input_ids"][t],
                enc["offset_mapping"][t],
                enc["special_tokens_mask"][t],
            )
            tokens = []
            for i, (start, stop) in enumerate(offsets):
                if special[i]:
                    tokens.append(
                        {
                            "id": ids[i],
                            "text": self.tokenizer.convert_ids_to_tokens(ids[i]),
                            "special": True,
                            "start": None,
                            "stop": None,
                        }
                    )
                else:
                    tokens.append(
                        {
                            "id": ids[i],
                            "text": text[start:stop],
                            "special": False,
                            "start": start,
                            "stop": stop,
                        }
                    )
            out.append(tokens)
        return out

    async def fill_mask(self, body: Any) -> list:
        """{"inputs": str | [str], "top_k", "truncate"} -> per input the pipeline's fill-mask result
        ([{"score", "token", "token_str", "sequence"}], one such list per [MASK] when there are several)."""
        req = self._parse(schemas.FillMaskRequest, body)
        items, tokens = self._encode(self._batch(req.inputs), req.truncate)
        results = await self._submit(("fill-mask", req.top_k), items, tokens)
        return results[0] if isinstance(req.inputs, str) else results

    async def question_answering(self, body: Any) -> Any:
        """{"inputs": {"question", "context"} | [...], "top_k", "max_answer_len", "handle_impossible_answer"}
        -> {"score", "start", "end", "answer"} per example (a list of them when top_k > 1). Long contexts
        run as overlapping windows, as the pipeline does."""
        req = self._parse(schemas.QuestionAnsweringRequest, body)
        examples = self._batch(req.inputs)
        # long contexts run as windows: the real tokens are those of every window
        items, _ = self._encode(
            [{"question": e.question, "context": e.context} for e in examples], True, check=False
        )
        tokens = sum(len(w) for _, e in items for w in (e, *e.overflowing))
        results = await self._submit(
            ("qa", req.top_k, req.max_answer_len, req.handle_impossible_answer), items, tokens
        )
        return results[0] if isinstance(req.inputs, schemas.QAItem) else results

    async def token_classification(self, body: Any) -> list:
        """{"inputs": str | [str], "aggregation_strategy", "truncate"} -> per input the entities."""
        req = self._parse(schemas.TokenClassificationRequest, body)
        items, tokens = self._encode(self._batch(req.inputs), req.truncate)
        results = await self._submit(("token-classification", req.aggregation_strategy), items, tokens)
        return results[0] if isinstance(req.inputs, str) else results


def _usable_device(device: str | None) -> torch.device:
    """The model's device, checked against this machine (ServeConfig checked the spelling)."""
    if device is None or device == "cpu":
        return torch.device("cpu")
    d = torch.device(device)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(
            f"device {device!r}: this machine has no usable CUDA GPU (torch {torch.__version__})"
        )
    if d.index is not None and d.index >= count:
        raise ValueError(
            f"device {device!r}: this machine has {count} CUDA GPU(s): cuda:0 .. cuda:{count - 1}"
        )
    return d


def _json_type(x: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(x), type(x).__name__)
