"""`serve_app(...)`: the HTTP server of `distilbert-fast serve` as a Ray Serve deployment, for traffic beyond
one machine. Each replica builds its own `distilbert_fast.serve.InferenceService` (model, pipeline, the
dynamic batcher's worker thread) and serves the very FastAPI app of `distilbert-fast serve` (same routes,
request and response shapes, errors, API key, body limit, /metrics per replica); Ray Serve's proxy spreads
requests over the replicas.

    from ray import serve
    from distilbert_fast.ray import serve_app
    serve.run(serve_app("/models/minilm", num_replicas=4, threads_per_replica=2), route_prefix="/")
    serve.run(serve_app(model, autoscaling_config={"min_replicas": 1, "max_replicas": 8,
                                                   "target_ongoing_requests": 32}))

Sizing: a replica is one model and one batcher: `threads_per_replica` CPUs (torch threads) each, or one GPU
with `num_gpus=1` (device "cuda", triton backend). `max_ongoing_requests` (default: the service's
max_concurrent_requests) caps what Ray routes to a replica; above the service's own limit it answers 429.
"""

from __future__ import annotations

from typing import Any

import ray  # noqa: F401 - absolute import: the real Ray, not this package
from ray import serve


@serve.ingress()
class Deployment:
    """A replica: one InferenceService and its FastAPI app (built at replica start)."""

    def __init__(self, config: dict[str, Any]):
        from ..serve import InferenceService, ServeConfig

        self.service = InferenceService(ServeConfig(**config))

    def __serve_build_asgi_app__(self):  # Ray Serve: the ASGI app of this replica
        from ..serve import create_app

        return create_app(self.service)

    def check_health(self) -> None:  # Ray Serve restarts a replica whose batcher thread died
        if not self.service.healthy():
            raise RuntimeError("the model worker thread is not running")

    def __del__(self):
        service = getattr(self, "service", None)
        if service is not None:
            service.close(drain=True)


def serve_app(
    model: str,
    *,
    task: str | None = None,
    num_replicas: int | str | None = None,
    autoscaling_config: dict[str, Any] | None = None,
    threads_per_replica: int | None = None,
    num_gpus: float = 0,
    max_ongoing_requests: int | None = None,
    name: str = "distilbert-fast",
    **config: Any,
):
    """A bound Ray Serve application (pass it to `serve.run`). model / task / every other keyword: the
    fields of `distilbert_fast.serve.ServeConfig` (dtype, backend, pooling, max_batch_tokens, max_wait_ms,
    max_concurrent_requests, api_key, ...). num_replicas: a count, or "auto" (Serve's default autoscaling);
    autoscaling_config: Ray Serve's dict (min_replicas, max_replicas, target_ongoing_requests, ...), instead
    of num_replicas. threads_per_replica: CPUs and torch threads per replica; num_gpus: GPUs per replica
    (with a GPU the replica's model runs on it, device "cuda", on the triton backend unless `backend` says
    otherwise)."""
    from ..serve import ServeConfig

    if num_replicas is not None and autoscaling_config is not None:
        raise ValueError("pass num_replicas or autoscaling_config, not both")
    if num_gpus and config.get("device") is None:
        config["device"] = "cuda"  # the replica's GPU (Ray sets CUDA_VISIBLE_DEVICES); auto backend: triton
    settings = {"model": str(model), "task": task, "threads": threads_per_replica, **config}
    service_config = ServeConfig(**settings)  # validates every field here, in the driver, not in a replica
    options: dict[str, Any] = {
        "name": name,
        "ray_actor_options": {"num_cpus": threads_per_replica or 1, "num_gpus": num_gpus},
        "max_ongoing_requests": max_ongoing_requests or service_config.max_concurrent_requests,
    }
    if autoscaling_config is not None:
        options["autoscaling_config"] = autoscaling_config
    elif num_replicas is not None:
        options["num_replicas"] = num_replicas
    return serve.deployment(Deployment).options(**options).bind(settings)
