"""Server settings (one dataclass shared by the CLI, the ASGI app and the Ray Serve deployment)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

API_KEY_ENV = "DISTILBERT_FAST_API_KEY"
POOLINGS = ("mean", "cls")
DTYPES = ("float32", "bfloat16", "float16")  # float16: GPU only (the CPU kernels run float32 and bfloat16)
QUANTIZE = ("int8",)


@dataclass
class ServeConfig:
    """Everything `distilbert-fast serve` accepts. `api_key=None` reads $DISTILBERT_FAST_API_KEY.

    Batching: the worker takes queued requests while their real tokens fit `max_batch_tokens` and their
    count `max_batch_requests`; when the queue runs dry before the batch is full it waits up to
    `max_wait_ms` for more (0: run at once -- requests that arrive while the model runs form the next batch,
    which already batches under load without adding latency at low load).
    """

    model: str
    task: str | None = None  # None: from the checkpoint's architectures
    dtype: str | None = None
    quantize: str | None = None  # "int8": int8 GEMMs (README: int8); dtype says what stays floating point
    backend: str | None = None
    # where the model runs: "cpu" (None) or "cuda" / "cuda:N" (the triton backend unless `backend` says
    # otherwise). Checked against the machine when the service starts (a Ray driver may have no GPU).
    device: str | None = None
    pooling: str | None = None  # /embed: None -> 1_Pooling/config.json, else "mean"
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch_tokens: int = 16384
    max_batch_requests: int = 128
    max_wait_ms: float = 0.0
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    max_input_length: int | None = None  # None: the model's limit
    payload_limit: int = 2_000_000  # bytes
    api_key: str | None = field(default=None, repr=False)  # never printed
    threads: int | None = None  # torch intra-op threads of the model worker (None: torch's default)
    model_id: str | None = None  # name reported by /info and /v1/embeddings (default: the model path)

    def __post_init__(self):
        if not isinstance(self.model, (str, os.PathLike)) or not str(self.model):
            raise ValueError(f"model: expected a checkpoint directory, got {self.model!r}")
        self.model = os.fspath(self.model)
        for name in (
            "max_batch_tokens",
            "max_batch_requests",
            "max_concurrent_requests",
            "max_client_batch_size",
            "payload_limit",
        ):
            _positive(name, getattr(self, name))
        if self.max_input_length is not None:
            _positive("max_input_length", self.max_input_length)
        if self.threads is not None:
            _positive("threads", self.threads)
        if (
            isinstance(self.max_wait_ms, bool)
            or not isinstance(self.max_wait_ms, (int, float))
            or self.max_wait_ms < 0
        ):
            raise ValueError(f"max_wait_ms must be a number >= 0, got {self.max_wait_ms!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, got {self.port!r}")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device is not None and (
            not isinstance(self.device, str) or not re.fullmatch(r"cpu|cuda(:[0-9]+)?", self.device)
        ):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.dtype == "float16" and not self.on_cuda:
            raise ValueError("dtype float16 needs device cuda (on CPU: float32 or bfloat16)")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be None or one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ValueError("api_key must be a non-empty string")

    @property
    def on_cuda(self) -> bool:
        return self.device is not None and self.device.startswith("cuda")


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
