"""`distilbert-fast run TASK ... --ray`: the `run` command on Ray Data (see job.run). This module imports no
Ray (nor torch) at import time, so `distilbert-fast --help` stays fast and works without the extra."""

from __future__ import annotations

import argparse
import sys


def add_ray_arguments(parser: argparse.ArgumentParser, positive_int) -> None:
    group = parser.add_argument_group(
        "Ray (scale-out; needs `pip install distilbert-fast[ray]`)",
        "With --ray, --input may be a file, a folder or a glob (local or s3://, gs://, ...) of .txt, .jsonl or "
        ".parquet files and --output is a folder, written as .parquet files (.jsonl if its name ends in "
        ".jsonl); every output row has file + row (the input row id), error and tokens.",
    )
    group.add_argument("--ray", action="store_true", help="run on Ray Data (local Ray unless --address)")
    group.add_argument(
        "--address",
        default=None,
        help='Ray cluster to use: "auto" (the one `ray start` made here) or ray://host:10001',
    )
    group.add_argument(
        "--actors",
        type=positive_int,
        default=None,
        metavar="N",
        help="model replicas (default: CPUs / threads per actor; one per GPU with CUDA)",
    )
    group.add_argument(
        "--threads-per-actor",
        type=positive_int,
        default=None,
        metavar="T",
        help="torch threads (= Ray CPUs) of each actor (default 1)",
    )
    group.add_argument(
        "--rows-per-call",
        type=positive_int,
        default=None,
        metavar="R",
        help="rows handed to an actor per call (default 512)",
    )
    group.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: one GPU per actor if the cluster has GPUs",
    )
    group.add_argument(
        "--head",
        action="append",
        default=None,
        metavar="NAME",
        help="DistilBertModelWithHeads: a head to run (repeatable; a column each)",
    )
    group.add_argument(
        "--adapter-names",
        action="append",
        default=None,
        metavar="NAME",
        help="DistilBertModelWithHeads: adapters to stack (repeatable)",
    )
    group.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    group.add_argument(
        "--nice",
        type=_niceness,
        default=0,
        metavar="N",
        help="scheduling niceness of the actors, 0-19 (default 0, the priority of a plain `run`; Ray's own "
        "default for workers is 15)",
    )


def _niceness(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 19:
        raise argparse.ArgumentTypeError(f"expected an integer 0-19, got {text!r}")
    return value


def run_ray(args, error_cls) -> int:
    """Run the job for parsed `run` arguments; errors become `error_cls` (the CLI's one-line error)."""
    try:
        from . import JobError, run
    except ImportError as e:
        raise error_cls(str(e)) from None
    call = {}
    if args.top_k is not None:
        call["top_k"] = args.top_k
    if args.aggregation_strategy is not None:
        call["aggregation_strategy"] = args.aggregation_strategy
    extra = {} if args.rows_per_call is None else {"rows_per_call": args.rows_per_call}
    try:
        summary = run(
            args.task,
            args.model,
            args.input,
            args.output,
            actors=args.actors,
            threads_per_actor=args.threads_per_actor,
            batch_size=args.batch_size,
            dtype=args.dtype,
            quantize=args.quantize,
            backend=args.backend,
            device=args.device,
            head=args.head,
            adapter_names=args.adapter_names,
            overwrite=args.overwrite,
            nice=args.nice,
            address=args.address,
            progress=not args.no_progress,
            **extra,
            **call,
        )
    except JobError as e:
        raise error_cls(str(e)) from None
    print(f"distilbert-fast: {summary.line()}", file=sys.stderr)
    return 0
