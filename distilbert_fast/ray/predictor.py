"""The actor-side half of the Ray Data job: `Predictor`, a callable class for `Dataset.map_batches` that
loads the model once per actor and turns a batch of rows (pyarrow) into output columns.

The work is the project's own pipelines (`distilbert_fast.pipelines.pipeline`: length-sorted, packed
batches), or for a DistilBertModelWithHeads checkpoint the multi-head runner the HTTP server uses; this
module only converts rows to pipeline inputs and results to typed Arrow columns:

    sentence-embeddings   embedding   fixed_size_list<float32>[dim]
    feature-extraction    features    list<fixed_size_list<float32>[dim]>   (one vector per token)
    text-classification   label, score                (top_k not given)  |  labels: list<{label, score}>
    fill-mask             candidates  list<list<{score, token, token_str, sequence}>>  (one list per [MASK])
    question-answering    answer      {score, start, end, answer}   (top_k=1)  |  answers: list<...>
    token-classification  entities    list<{entity | entity_group, score, [index,] word, start, end}>
    heads (head=[...])    <head name> list<{label, score}>, every label, sorted by score

plus `file`, `row` (the input row id), `error` (null, or why this row has no result) and `tokens` (the
tokens the model ran for the row). Errors are per row: a malformed input row or an input the pipeline
rejects (e.g. fill-mask without [MASK]) fills `error` and leaves the result columns null.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from .io import ResultWriter, input_fields

# what a writing Predictor returns per call: the file it wrote and that file's rows, tokens and error rows
STATS_SCHEMA = pa.schema(
    [("output", pa.string()), ("rows", pa.int64()), ("tokens", pa.int64()), ("errors", pa.int64())]
)

_SCORE = pa.struct([("label", pa.string()), ("score", pa.float64())])
_CANDIDATE = pa.struct(
    [("score", pa.float64()), ("token", pa.int64()), ("token_str", pa.string()), ("sequence", pa.string())]
)
_ANSWER = pa.struct(
    [("score", pa.float64()), ("start", pa.int64()), ("end", pa.int64()), ("answer", pa.string())]
)
_TOKEN_ENTITY = pa.struct(
    [
        ("entity", pa.string()),
        ("score", pa.float64()),
        ("index", pa.int64()),
        ("word", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
    ]
)
_GROUP_ENTITY = pa.struct(
    [
        ("entity_group", pa.string()),
        ("score", pa.float64()),
        ("word", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
    ]
)


class _CountingTokenizer:
    """The pipeline's tokenizer, recording each call's encoding, so the job can report the tokens the model
    ran per row without tokenizing twice."""

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.calls: list = []

    def __call__(self, *args, **kwargs):
        enc = self._tok(*args, **kwargs)
        self.calls.append(enc)
        return enc

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def tokens_per_input(self, n: int) -> list[int] | None:
        for enc in reversed(self.calls):
            ids = enc.get("input_ids") if hasattr(enc, "get") else None
            if not isinstance(ids, list):
                continue
            lengths = np.array([len(x) for x in ids], dtype=np.int64)
            mapping = enc.get("overflow_to_sample_mapping")
            if mapping is not None:  # question answering: several windows per example
                return (
                    np.bincount(np.asarray(mapping), weights=lengths, minlength=n).astype(np.int64).tolist()
                )
            if len(ids) == n:
                return lengths.tolist()
        return None


def is_multihead_checkpoint(model: str) -> bool:
    from ..checkpoint import read_config_dict, resolve_model_dir

    config = read_config_dict(resolve_model_dir(model))
    arch = " ".join(config.get("architectures") or [])
    return "prediction_heads" in config or "WithHeads" in arch or "AdapterModel" in arch


class Predictor:
    """`ds.map_batches(Predictor, fn_constructor_kwargs={...}, concurrency=N, batch_format="pyarrow")`.

    task, model (a checkpoint path every worker can read), dtype, quantize ("int8"), backend, batch_size (sequences per forward
    pass), threads (torch intra-op threads of this actor; None: leave torch's default, which Ray sets from
    the actor's num_cpus), device ("cpu", "cuda"; with "cuda" use backend="triton"), head / adapter_names
    (DistilBertModelWithHeads: the heads to run, a column each; the adapters to stack), call: keyword
    arguments of every pipeline call (top_k, aggregation_strategy, ...). output: {"path": folder, "format":
    ".jsonl" | ".parquet"} to write each call's results as a file from this actor (io.ResultWriter) and
    return one row of STATS_SCHEMA per call instead (what `run` does); None: return the result rows.
    """

    def __init__(
        self,
        task: str,
        model: str,
        *,
        dtype: str | None = None,
        quantize: str | None = None,
        backend: str | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        device: str = "cpu",
        head: str | list[str] | None = None,
        adapter_names: str | list[str] | None = None,
        call: dict[str, Any] | None = None,
        output: dict[str, str] | None = None,
    ):
        settings = dict(locals())  # the arguments, as they came (first statement: no other locals yet)
        del settings["self"]
        # Every torch call of this actor -- the model load here and each batch -- runs on one thread of its
        # own. torch's OpenMP team belongs to the thread that starts parallel work, and Ray Data runs the
        # constructor and the calls on different threads: two teams on the actor's cores, measured 5-7%
        # slower with 2 threads on 2 cores than one team. (And omp_set_num_threads is per thread.)
        self._torch_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="distilbert-fast")
        self._torch_thread.submit(self._setup, **settings).result()

    def _setup(
        self,
        task,
        model,
        dtype,
        quantize,
        backend,
        batch_size,
        threads,
        device,
        head,
        adapter_names,
        call,
        output,
    ):
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        from ..pipelines import pipeline, resolve_task

        self.task = resolve_task(task)
        self.call = dict(call or {})
        self.heads = [head] if isinstance(head, str) else list(head) if head else None
        self.fields = input_fields(self.task)
        self.pid = os.getpid()
        self.writer = None if output is None else ResultWriter(output["path"], output["format"])
        if self.heads is not None:
            self._init_heads(model, dtype, quantize, backend, batch_size, device, adapter_names)
            return
        self.pipe = pipeline(
            self.task,
            model=model,
            dtype=dtype,
            quantize=quantize,
            backend=backend,
            batch_size=batch_size,
            device=device,
            progress=False,
        )
        if backend is not None and self.pipe.model.backend != backend:  # moved to the device: ask again
            self.pipe.model.set_backend(backend)
        self.tokenizer = self.pipe.tokenizer = _CountingTokenizer(self.pipe.tokenizer)
        self.dim = self.pipe.model.config.dim

    def _init_heads(self, model, dtype, quantize, backend, batch_size, device, adapter_names) -> None:
        import torch

        from ..heads import DistilBertModelWithHeads
        from ..serve.multihead import SEQUENCE_HEADS, MultiHeadRunner
        from ..tokenization import DistilBertTokenizer

        if self.task != "text-classification":
            raise ValueError(
                f"head=: DistilBertModelWithHeads runs classification heads (task "
                f"text-classification), not {self.task}"
            )
        dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        net = DistilBertModelWithHeads.from_pretrained(model, dtype=dt, backend=backend, quantize=quantize)
        net = net.to(device)
        net.prepare_for_inference()
        for h in self.heads:
            if h not in net.heads:
                raise ValueError(f"head: no head {h!r} in {model}; heads: {list(net.heads)}")
            if net.heads[h].config["head_type"] not in SEQUENCE_HEADS:
                raise ValueError(
                    f"head: {h!r} is a {net.heads[h].config['head_type']} head; the Ray job runs "
                    f"{' / '.join(SEQUENCE_HEADS)} heads"
                )
        self.adapters = (
            None
            if adapter_names is None
            else tuple([adapter_names] if isinstance(adapter_names, str) else adapter_names)
        )
        tokenizer = DistilBertTokenizer.from_pretrained(model)
        self.tokenizer = _CountingTokenizer(tokenizer)
        self.max_length = min(net.config.max_position_embeddings, tokenizer.model_max_length)
        self.runner = MultiHeadRunner(net, tokenizer.pad_token_id, batch_size)

    # -- one batch -----------------------------------------------------------------------------------------
    def __call__(self, batch: pa.Table) -> pa.Table:
        return self._torch_thread.submit(self._call, batch).result()

    def _call(self, batch: pa.Table) -> pa.Table:
        cols = batch.to_pydict()
        n = batch.num_rows
        errors: list[str | None] = list(cols["error"])
        todo = [i for i in range(n) if errors[i] is None]
        inputs = [self._input(cols, i) for i in todo]
        self.tokenizer.calls.clear()
        results = self._run(inputs, todo, errors)
        done = [i for i in todo if errors[i] is None]
        per_row: list = [None] * n
        tokens = [0] * n
        counted = self.tokenizer.tokens_per_input(len(done))
        for k, i in enumerate(done):
            per_row[i] = results[k]
            tokens[i] = counted[k] if counted is not None else 0
        out = {
            "file": batch["file"],
            "row": batch["row"],
            "error": pa.array(errors, pa.string()),
            "tokens": pa.array(tokens, pa.int64()),
        }
        out.update(self._columns(per_row))
        table = pa.table(out)
        if self.writer is None or n == 0:
            return table if self.writer is None else STATS_SCHEMA.empty_table()
        name = self.writer.write(table)
        n_errors = sum(e is not None for e in errors)
        return pa.table([[name], [n], [sum(tokens)], [n_errors]], schema=STATS_SCHEMA)

    def _input(self, cols: dict, i: int) -> Any:
        if self.task == "question-answering":
            return {"question": cols["question"][i], "context": cols["context"][i]}
        pair = cols["text_pair"][i] if "text_pair" in cols else None
        return {"text": cols["text"][i], "text_pair": pair} if pair is not None else cols["text"][i]

    def _run(self, inputs: list, todo: list[int], errors: list) -> list:
        """Results of every input the pipeline accepts; an input it rejects gets its error and the call
        runs again without it (rare: a deterministic per-input problem such as no [MASK] token)."""
        from ..pipelines import PipelineInputError

        live = list(range(len(inputs)))
        while live:
            self.tokenizer.calls.clear()
            try:
                return self._infer([inputs[k] for k in live])
            except PipelineInputError as e:
                k = live.pop(e.input_index)
                errors[todo[k]] = e.reason
        return []

    def _infer(self, inputs: list) -> list:
        if self.heads is None:
            results = self.pipe.run(inputs, **self.call)
            return list(results) if self.task == "sentence-embeddings" else results
        raw = bool(self.call.get("raw_scores", False))
        texts = [(x["text"], x["text_pair"]) if isinstance(x, dict) else x for x in inputs]
        # tokenized once (and counted): the runner only pads
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        items = [(x, h, raw) for h in self.heads for x in ids]  # the heads of a batch share its pass
        flat = self.runner.run(self.adapters, items)
        return [{h: flat[j * len(texts) + k] for j, h in enumerate(self.heads)} for k in range(len(texts))]

    # -- typed columns -------------------------------------------------------------------------------------
    def _columns(self, results: list) -> dict[str, pa.Array]:
        task = self.task
        if self.heads is not None:
            return {
                h: pa.array([None if r is None else r[h] for r in results], pa.list_(_SCORE))
                for h in self.heads
            }
        if task == "sentence-embeddings":
            return {"embedding": _vectors(results, self.dim)}
        if task == "feature-extraction":  # each result: (1, tokens, dim) nested lists
            offsets, flat, mask = [0], [], []
            for r in results:
                rows = [] if r is None else r[0]
                flat.extend(rows)
                offsets.append(offsets[-1] + len(rows))
                mask.append(r is None)
            values = _vectors(flat, self.dim)
            return {
                "features": pa.ListArray.from_arrays(
                    pa.array(offsets, pa.int32()), values, mask=pa.array(mask, pa.bool_())
                )
            }
        if task == "text-classification":
            if "top_k" not in self.call:
                return {
                    "label": pa.array([r and r["label"] for r in results], pa.string()),
                    "score": pa.array([r and r["score"] for r in results], pa.float64()),
                }
            return {"labels": pa.array(_as_lists(results), pa.list_(_SCORE))}
        if task == "fill-mask":  # one [MASK]: a list of candidates; several: a list per mask
            nested = [None if r is None else r if r and isinstance(r[0], list) else [r] for r in results]
            return {"candidates": pa.array(nested, pa.list_(pa.list_(_CANDIDATE)))}
        if task == "question-answering":
            if self.call.get("top_k", 1) == 1:
                return {"answer": pa.array(results, _ANSWER)}
            return {"answers": pa.array(_as_lists(results), pa.list_(_ANSWER))}
        grouped = self.call.get("aggregation_strategy", "none") != "none"
        return {"entities": pa.array(results, pa.list_(_GROUP_ENTITY if grouped else _TOKEN_ENTITY))}


def _as_lists(results: list) -> list:
    return [r if r is None or isinstance(r, list) else [r] for r in results]


def _vectors(rows: list, dim: int) -> pa.FixedSizeListArray:
    """Rows of `dim` floats (tensors, arrays or lists; None -> a null row) as fixed_size_list<float32>."""
    mask = np.array([r is None for r in rows], dtype=bool)
    data = np.zeros((len(rows), dim), dtype=np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            data[i] = r.numpy() if hasattr(r, "numpy") else np.asarray(r, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), dim, mask=pa.array(mask))
