"""`distilbert_fast.ray.run`: one batch-inference job on Ray Data -- read, infer on an actor pool, write.

How resources map: `actors` model replicas (one Ray actor each, the model loaded once per actor) x
`threads_per_actor` torch threads each; every actor asks Ray for `threads_per_actor` CPUs, so
actors x threads_per_actor should equal the cores you give the job. The read tasks ask for no CPU (they
parse while the actors compute; with a CPU each they would wait for cores the actors hold). Each actor
writes its own results, one file per call (io.ResultWriter): the job has no write tasks, so results never
cross the object store and the last results are on disk when the last call returns. With CUDA
(device="cuda", or "auto" on a cluster that has GPUs) each actor asks for one GPU and runs the triton
backend.

Costs per job, apart from the model's own time (bench/RESULTS_ray.md): actor start (a Ray worker process,
`import torch`, model load, in parallel over the actors), one read task per input file, and a few ms of
Ray bookkeeping per call.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

import ray  # noqa: I001 - absolute import: the real Ray, not this package

from .io import JobError, RowSource, check_output, expand_inputs, prepare_output, remove_partial_files
from .predictor import STATS_SCHEMA, Predictor, is_multihead_checkpoint

ROWS_PER_CALL = 512  # rows per actor call: enough for the pipeline to length-sort, small enough to balance
# The read splits its output into blocks of about rows_per_call rows (the row count estimated from the first
# file), and each block is one actor call. Ray's default for a small file is blocks of ~1 MiB: a 20,000-row
# file becomes 4 actor tasks, too few to balance over the actors, and batching blocks into calls of exactly
# rows_per_call rows leaves a small remainder call after each (17 calls instead of 12 for 6,000 rows; calls
# of ~350 rows measured 4-6% slower than calls of 512).
MAX_BLOCKS_PER_FILE = 256  # Ray splits each output block of a read task by blocks / files: keep it sane


@dataclasses.dataclass
class Summary:
    rows: int
    errors: int
    tokens: int
    seconds: float
    output: str
    actors: int
    threads_per_actor: int | None
    device: str

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.rows} rows ({self.errors} with an error), {self.tokens} tokens in {self.seconds:.1f} s: "
            f"{self.tokens_per_s:,.0f} tokens/s on {self.actors} actor(s) x "
            f"{self.threads_per_actor or 'default'} thread(s) ({self.device}) -> {self.output}"
        )


def plan_resources(
    device: str, actors: int | None, threads_per_actor: int | None, cluster: dict[str, float]
) -> tuple[str, int, int | None, dict[str, Any]]:
    """(device, actors, threads_per_actor, ray_remote_args of each actor) for a cluster with `cluster`
    resources (ray.cluster_resources()). Pure function: the GPU plan is tested without a GPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise JobError(f"device must be auto, cpu or cuda, got {device!r}")
    gpus, cpus = int(cluster.get("GPU", 0)), max(1, int(cluster.get("CPU", 1)))
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device == "cuda":
        if not gpus:
            raise JobError("device cuda: the Ray cluster has no GPU")
        actors = actors or gpus
        if actors > gpus:
            raise JobError(f"actors={actors} but the Ray cluster has {gpus} GPU(s): one actor per GPU")
        # the GPU does the work; the thread count is for tokenization and post-processing
        threads = threads_per_actor or 1
        return device, actors, threads, {"num_gpus": 1, "num_cpus": threads}
    if threads_per_actor is None and actors is None:
        threads_per_actor = 1
    threads = threads_per_actor or max(1, cpus // actors)
    actors = actors or max(1, cpus // threads)
    if actors * threads > cpus:
        raise JobError(
            f"actors x threads_per_actor = {actors} x {threads} needs {actors * threads} CPUs; the "
            f"Ray cluster has {cpus}"
        )
    return device, actors, threads, {"num_cpus": threads}


def run(
    task: str,
    model: str,
    input: str | list[str],
    output: str,
    *,
    actors: int | None = None,
    threads_per_actor: int | None = None,
    batch_size: int = 32,
    rows_per_call: int = ROWS_PER_CALL,
    dtype: str | None = None,
    quantize: str | None = None,
    backend: str | None = None,
    device: str = "auto",
    head: str | list[str] | None = None,
    adapter_names: str | list[str] | None = None,
    overwrite: bool = False,
    nice: int | None = 0,
    address: str | None = None,
    progress: bool = True,
    **call: Any,
) -> Summary:
    """Run `task` with `model` over every row of `input` on Ray Data, writing `output`; returns a Summary.

    input: a .txt / .jsonl / .parquet file, a folder of them, a glob, or a list of those; local paths or any
    filesystem Ray reads (s3://, gs://, abfs://, hdfs://...). output: a folder, written as .jsonl files if
    its name ends in .jsonl, else .parquet files; every row carries `file` and `row` (the input row id),
    `error` and `tokens`. A non-empty output folder is refused unless overwrite=True.
    actors / threads_per_actor: the actor pool (default: one single-thread actor per CPU of the cluster);
    batch_size: sequences per forward pass; rows_per_call: rows per actor call (about: the input is split
    by an estimated row count; each call's results are one output file, written by the actor). dtype /
    quantize ("int8") / backend: as `from_pretrained`. device: "auto" (GPUs if the cluster has any), "cpu" or "cuda". head / adapter_names:
    DistilBertModelWithHeads checkpoints. nice: the actors' scheduling niceness. Ray starts its worker
    processes at niceness 15, below every ordinary process: on a node that runs anything else the actors get
    a small share of the CPU (at 15 against 0, about 1/28 of a contended core). 0 (the default) runs the
    model at the priority of `distilbert-fast run`; None keeps Ray's 15 (the job yields to other work).
    Raising niceness needs no privilege; 0 is the niceness of the raylet that starts the workers. Other
    keywords (top_k, aggregation_strategy, ...) go to every
    pipeline call. Uses the Ray already initialised, else connects to `address` ("auto", "ray://host:port")
    or starts a local Ray that it shuts down at the end.
    """
    from ..pipelines import resolve_task

    t0 = time.perf_counter()
    try:
        task = resolve_task(task)
    except ValueError as e:
        raise JobError(str(e)) from None
    model = os.fspath(model)
    if not ("://" in model or os.path.isdir(os.path.expanduser(model))):
        raise JobError(f"model directory not found: {model}")
    for name, value in (
        ("batch_size", batch_size),
        ("rows_per_call", rows_per_call),
        ("actors", actors),
        ("threads_per_actor", threads_per_actor),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise JobError(f"{name} must be an int >= 1, got {value!r}")
    if nice is not None and (isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19):
        raise JobError(f"nice must be an int in 0..19 or None, got {nice!r}")
    if quantize not in (None, "int8"):
        raise JobError(f"quantize must be None or 'int8', got {quantize!r}")
    paths, filesystem, kind = expand_inputs(input)
    if task == "question-answering" and kind == ".txt":
        raise JobError('question-answering needs .jsonl or .parquet input with "question" and "context"')
    out_path, fmt = check_output(os.fspath(output), overwrite)
    if head is None and os.path.isdir(model) and is_multihead_checkpoint(model):
        raise JobError(
            "model: a DistilBertModelWithHeads checkpoint needs head= (--head): the head(s) to run"
        )

    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level="WARNING",
        )
    try:
        device, actors, threads, remote_args = plan_resources(
            device, actors, threads_per_actor, ray.cluster_resources()
        )
        if nice is not None:  # Ray starts workers at niceness 15 unless told (see the docstring)
            remote_args = {**remote_args, "runtime_env": {"env_vars": {"RAY_worker_niceness": str(nice)}}}
        ship_io_by_value()
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = progress
        source = RowSource(paths, task, kind, filesystem)
        blocks = read_blocks(
            source.estimate_inmemory_data_size() or 0,
            source.bytes_per_row(),
            rows_per_call,
            len(paths),
            actors,
        )
        ds = ray.data.read_datasource(source, num_cpus=0, override_num_blocks=blocks)
        prepare_output(out_path, overwrite)
        ds = ds.map_batches(
            Predictor,
            batch_size=None,  # one call per block, each block about rows_per_call rows
            batch_format="pyarrow",
            zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=actors),
            **remote_args,
            fn_constructor_kwargs={
                "task": task,
                "model": model,
                "dtype": dtype,
                "quantize": quantize,
                "backend": "triton" if device == "cuda" and backend is None else backend,
                "batch_size": batch_size,
                "threads": threads,
                "device": device,
                "head": head,
                "adapter_names": adapter_names,
                "call": call,
                "output": {"path": out_path, "format": fmt},
            },
        )
        # The actors write the results; the driver only collects one small row per call. A call that ran
        # twice (its actor was killed) wrote the same file twice: count each file once.
        files: dict[str, tuple[int, int, int]] = {}
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
                for name, n, tok, err in zip(*(batch[c].to_pylist() for c in STATS_SCHEMA.names)):
                    files[name] = (n, tok, err)
        except Exception as e:  # noqa: BLE001 - a Ray error holds a remote traceback: say it in one line
            raise JobError(f"the Ray job failed: {_first_line(e)}") from e
        remove_partial_files(out_path)
    finally:
        if started:
            ray.shutdown()
    rows, tokens, errors = (sum(v[i] for v in files.values()) for i in range(3))
    return Summary(
        rows=rows,
        errors=errors,
        tokens=tokens,
        seconds=time.perf_counter() - t0,
        output=out_path,
        actors=actors,
        threads_per_actor=threads,
        device=device,
    )


def read_blocks(
    input_bytes: int, bytes_per_row: float, rows_per_call: int, files: int, actors: int = 1
) -> int:
    """Blocks the read emits: about `rows_per_call` rows each (input_bytes / bytes_per_row rows in all), at
    least one per file (one read task per file) and one per actor, at most MAX_BLOCKS_PER_FILE per file."""
    rows = int(input_bytes) / max(1.0, float(bytes_per_row))
    return max(files, min(files * MAX_BLOCKS_PER_FILE, max(actors, math.ceil(rows / rows_per_call))))


def ship_io_by_value() -> None:
    """Pickle io.py (RowSource) and rows.py (its parsers) by value. The read tasks run RowSource in pooled
    Ray workers; pickled by reference, each such worker would import distilbert_fast and so torch (~1.3 s of
    CPU per worker process, taken from the actors on a busy node). By value they need only ray and pyarrow.
    Idempotent; affects only how these two modules are pickled."""
    from ray import cloudpickle

    from .. import rows
    from . import io

    cloudpickle.register_pickle_by_value(rows)
    cloudpickle.register_pickle_by_value(io)


def _first_line(e: BaseException) -> str:
    """The innermost user-level message of a (possibly wrapped) Ray exception, on one line."""
    cause = e
    while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if not ln.startswith(("File ", "^", "~", "Traceback"))), "")
    return last or type(cause).__name__
