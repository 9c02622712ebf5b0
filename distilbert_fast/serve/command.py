"""The `distilbert-fast serve` subcommand: its arguments and its run (cli.py delegates here)."""

from __future__ import annotations

import argparse

from .config import API_KEY_ENV, DTYPES, POOLINGS, QUANTIZE, ServeConfig

DEFAULTS = ServeConfig.__dataclass_fields__


def _default(name: str):
    return DEFAULTS[name].default


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory (DistilBERT or BERT)")
    p.add_argument(
        "--task",
        default=None,
        help="feature-extraction (embeddings), text-classification (predict/rerank), fill-mask, "
        "question-answering, token-classification (default: from the checkpoint's config)",
    )
    p.add_argument(
        "--host", default=_default("host"), help="bind address (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=_default("port"))
    p.add_argument("--dtype", choices=DTYPES, default=None)
    p.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default=None,
        help="int8 GEMMs with dynamic per-token activation quantization (README: int8)",
    )
    p.add_argument("--backend", choices=("auto", "cpp", "torch", "triton"), default=None)
    p.add_argument(
        "--device",
        default=None,
        help="cpu (default), cuda or cuda:N: where the model runs (on a GPU the triton backend)",
    )
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="/embed pooling (default: the model's 1_Pooling/config.json, else mean)",
    )
    p.add_argument(
        "--max-batch-tokens", type=int, default=_default("max_batch_tokens"), help="real tokens per batch"
    )
    p.add_argument("--max-batch-requests", type=int, default=_default("max_batch_requests"))
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=_default("max_wait_ms"),
        help="wait this long for more requests when a batch is not full (default 0: none)",
    )
    p.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=_default("max_concurrent_requests"),
        help="beyond this, 429",
    )
    p.add_argument(
        "--max-client-batch-size",
        type=int,
        default=_default("max_client_batch_size"),
        help="inputs per request",
    )
    p.add_argument(
        "--max-input-length", type=int, default=None, help="tokens per input (default: the model's limit)"
    )
    p.add_argument("--payload-limit", type=int, default=_default("payload_limit"), help="request body bytes")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require `Authorization: Bearer KEY` (or set ${API_KEY_ENV}; the env var keeps it "
        "out of the process list)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads of the model worker")
    p.add_argument("--model-id", default=None, help="name reported by /info and /v1/embeddings")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))


def run_serve(args: argparse.Namespace) -> int:
    import logging

    try:
        import fastapi  # noqa: F401
        import orjson  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise SystemExit(
            f"distilbert-fast serve: {e.name} is not installed; the server needs the `serve` extra: "
            "pip install 'distilbert-fast[serve]'"
        ) from None
    from .app import run_server

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    config = ServeConfig(
        model=args.model,
        task=args.task,
        dtype=args.dtype,
        quantize=args.quantize,
        backend=args.backend,
        device=args.device,
        pooling=args.pooling,
        host=args.host,
        port=args.port,
        max_batch_tokens=args.max_batch_tokens,
        max_batch_requests=args.max_batch_requests,
        max_wait_ms=args.max_wait_ms,
        max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch_size=args.max_client_batch_size,
        max_input_length=args.max_input_length,
        payload_limit=args.payload_limit,
        api_key=args.api_key,
        threads=args.threads,
        model_id=args.model_id,
    )
    run_server(config, log_level=args.log_level)
    return 0
