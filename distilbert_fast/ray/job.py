"""`distilbert_fast.ray.run`: one batch-inference job on Ray Data -- read, infer on an actor pool, write.

How resources map: `actors` model replicas (one Ray actor each, the model loaded once per actor) x
`threads_per_actor` torch threads each; every actor asks Ray for `threads_per_actor` CPUs, so
actors x threads_per_actor should equal the cores you give the job. Readers and writers ask for no CPU
(they parse and write while the actors compute; with a CPU each they would wait for cores the actors
hold). With CUDA (device="cuda", or "auto" on a cluster that has GPUs) each actor asks for one GPU and
runs the triton backend.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import ray  # noqa: I001 - absolute import: the real Ray, not this package

from .io import JobError, ResultSink, RowSource, check_output, expand_inputs
from .predictor import Predictor, is_multihead_checkpoint

ROWS_PER_CALL = 512  # rows per actor call: enough for the pipeline to length-sort, small enough to balance


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
    backend: str | None = None,
    device: str = "auto",
    head: str | list[str] | None = None,
    adapter_names: str | list[str] | None = None,
    overwrite: bool = False,
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
    batch_size: sequences per forward pass; rows_per_call: rows per actor call. dtype / backend: as
    `from_pretrained`. device: "auto" (GPUs if the cluster has any), "cpu" or "cuda". head / adapter_names:
    DistilBertModelWithHeads checkpoints. Other keywords (top_k, aggregation_strategy, ...) go to every
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
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = progress
        ds = ray.data.read_datasource(RowSource(paths, task, kind, filesystem), num_cpus=0)
        ds = ds.map_batches(
            Predictor,
            batch_size=rows_per_call,
            batch_format="pyarrow",
            zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=actors),
            **remote_args,
            fn_constructor_kwargs={
                "task": task,
                "model": model,
                "dtype": dtype,
                "backend": "triton" if device == "cuda" and backend is None else backend,
                "batch_size": batch_size,
                "threads": threads,
                "device": device,
                "head": head,
                "adapter_names": adapter_names,
                "call": call,
            },
        )
        sink = ResultSink(out_path, fmt, mode=_save_mode(overwrite))
        try:
            ds.write_datasink(sink, ray_remote_args={"num_cpus": 0})
        except Exception as e:  # noqa: BLE001 - a Ray error holds a remote traceback: say it in one line
            raise JobError(f"the Ray job failed: {_first_line(e)}") from e
    finally:
        if started:
            ray.shutdown()
    s = sink.stats
    return Summary(
        rows=s["rows"],
        errors=s["errors"],
        tokens=s["tokens"],
        seconds=time.perf_counter() - t0,
        output=out_path,
        actors=actors,
        threads_per_actor=threads,
        device=device,
    )


def _save_mode(overwrite: bool):
    from ray.data import SaveMode

    return SaveMode.OVERWRITE if overwrite else SaveMode.APPEND


def _first_line(e: BaseException) -> str:
    """The innermost user-level message of a (possibly wrapped) Ray exception, on one line."""
    cause = e
    while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if not ln.startswith(("File ", "^", "~", "Traceback"))), "")
    return last or type(cause).__name__
