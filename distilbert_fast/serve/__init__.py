"""`distilbert-fast serve`: a dynamic-batching inference server (text-embeddings-inference's routes and
shapes, plus fill-mask, question-answering and token-classification). Needs the `serve` extra:
`pip install distilbert-fast[serve]` (fastapi, uvicorn, prometheus-client).

    from distilbert_fast.serve import ServeConfig, InferenceService, create_app, run_server
    service = InferenceService(ServeConfig(model="path/to/checkpoint"))   # model + pipeline + batcher
    vectors = await service.handle("/embed", {"inputs": ["a", "b"]})      # no HTTP needed (Ray Serve)
    app = create_app(service)                                              # the ASGI app
    run_server(ServeConfig(model=..., port=8080))                         # uvicorn, graceful SIGTERM

Modules: config (ServeConfig), schemas (request bodies), batcher (DynamicBatcher), metrics (Prometheus),
service (InferenceService, ServeError), app (FastAPI app, auth, body limits, run_server).
"""

__all__ = [
    "ServeConfig",
    "InferenceService",
    "ServeError",
    "ROUTES",
    "API_KEY_ENV",
    "create_app",
    "run_server",
]

_HOMES = {
    "ServeConfig": "config",
    "API_KEY_ENV": "config",
    "InferenceService": "service",
    "ServeError": "service",
    "ROUTES": "service",
    "create_app": "app",
    "run_server": "app",
}


def __getattr__(name):
    # Lazy: `distilbert-fast --help` reads serve.command without torch; only create_app / run_server import
    # fastapi and uvicorn, so the service alone (Ray Serve) does not need them.
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'distilbert_fast.serve' has no attribute {name!r}")
