"""The ASGI app (FastAPI) around an InferenceService, and `run_server` (uvicorn, graceful SIGTERM).

Every error is JSON, {"error": str, "error_type": str}, with TEI's statuses: 401 (API key), 413 (body over
--payload-limit, too many inputs, an input over --max-input-length without truncate), 422 (malformed JSON,
a wrong or missing field, named), 429 (over --max-concurrent-requests), 500 (the model failed on this
batch; the server keeps serving), 503 (shutting down).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import schemas
from .config import ServeConfig
from .service import ROUTES, InferenceService, ServeError

logger = logging.getLogger("distilbert_fast.serve")

REQUEST_MODELS = {
    "/embed": schemas.EmbedRequest,
    "/v1/embeddings": schemas.OpenAIEmbeddingsRequest,
    "/predict": schemas.PredictRequest,
    "/rerank": schemas.RerankRequest,
    "/tokenize": schemas.TokenizeRequest,
    "/fill-mask": schemas.FillMaskRequest,
    "/question-answering": schemas.QuestionAnsweringRequest,
    "/token-classification": schemas.TokenClassificationRequest,
}


def error_response(e: ServeError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    return JSONResponse(e.to_json(), status_code=e.status, headers=headers)


def _json_default(x: Any):
    if isinstance(x, np.generic):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


def json_response(value: Any) -> Response:
    # json.dumps straight to bytes: FastAPI's jsonable_encoder walks every float of an embedding in Python.
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return Response(body.encode("utf-8"), media_type="application/json")


class BearerAuth:
    """Pure ASGI middleware: `Authorization: Bearer <key>` on every route but /health. Constant-time compare;
    the key is never logged or echoed."""

    def __init__(self, app, api_key: str):
        self.app = app
        self._key = api_key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        ok = hmac.compare_digest(token.strip(), self._key) and scheme.lower() == b"bearer"
        if not ok:
            message = "missing or invalid API key: send `Authorization: Bearer <key>`"
            response = error_response(ServeError(401, "unauthorized", message))
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, at most `limit` bytes (413 beyond, whether Content-Length says so or not)."""
    declared = request.headers.get("content-length")
    too_large = ServeError(
        413, "payload_too_large", f"request body larger than the payload limit of {limit} bytes"
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise ServeError(422, "validation", f"body: invalid JSON ({e})") from None


class ClientDisconnected(Exception):
    pass


async def until_disconnect(request: Request, work) -> Any:
    """Await `work`; if the client disconnects first, cancel it (its queued batch entry is then skipped)."""
    task = asyncio.ensure_future(work)

    async def watch():
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnected()


def create_app(service: InferenceService, *, close_on_shutdown: bool = True) -> FastAPI:
    """The FastAPI app of `service`; on shutdown it drains the service's queue (close_on_shutdown)."""
    config = service.config

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if close_on_shutdown:  # uvicorn has finished the in-flight requests; drain what is left, stop
            await asyncio.to_thread(service.close, True)

    app = FastAPI(
        title="distilbert-fast serve",
        version=service.info()["version"],
        lifespan=lifespan,
        description="Dynamic-batching inference server for distilbert_fast models (TEI-compatible "
        "routes, plus fill-mask, question-answering and token-classification).",
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # 404 / 405 in the same JSON shape
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        return JSONResponse({"error": str(exc.detail), "error_type": kind}, status_code=exc.status_code)

    def make_endpoint(path: str):
        async def endpoint(request: Request):
            try:
                body = await read_json(request, config.payload_limit)
            except ServeError as e:  # service.handle counts every other outcome
                service.metrics.requests.labels(path, str(e.status)).inc()
                return error_response(e)
            try:
                result = await until_disconnect(request, service.handle(path, body))
            except ServeError as e:
                return error_response(e)
            except ClientDisconnected:
                return Response(status_code=499)
            return json_response(result)

        return endpoint

    defs: dict[str, Any] = {}  # nested request models (QAItem), referenced from components/schemas
    for path in ROUTES:
        model = REQUEST_MODELS[path]
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        app.add_api_route(
            path,
            make_endpoint(path),
            methods=["POST"],
            name=path.strip("/"),
            summary=(getattr(service, ROUTES[path][0]).__doc__ or "").split("\n")[0],
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {k: v for k, v in schema.items() if k != "$defs"}}
                    },
                }
            },
        )
        defs.update(schema.get("$defs", {}))

    @app.get("/health")
    async def health():
        if service.healthy():
            return Response(status_code=200)
        return JSONResponse(
            {"error": "the model worker is not running", "error_type": "unhealthy"}, status_code=503
        )

    @app.get("/info")
    async def info():
        return json_response(service.info())

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    openapi = app.openapi

    def openapi_with_defs():
        doc = openapi()
        doc.setdefault("components", {}).setdefault("schemas", {}).update(defs)
        return doc

    app.openapi = openapi_with_defs
    if config.api_key:
        app.add_middleware(BearerAuth, api_key=config.api_key)
    return app


def run_server(config: ServeConfig, *, log_level: str = "info") -> None:
    """Load the model, serve on config.host:config.port until SIGINT/SIGTERM; then stop accepting, finish
    the requests in flight and the queue, and return."""
    import uvicorn

    service = InferenceService(config)
    app = create_app(service)
    logger.info(
        "serving %s (%s, backend %s) on http://%s:%d",
        service.model_id,
        service.task,
        service.model.backend,
        config.host,
        config.port,
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the captured SIGTERM/SIGINT after its graceful shutdown, so the process would
            # die by the signal; the requests and the queue are drained by then: exit cleanly (status 0).
            with super().capture_signals():
                yield
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

    server = Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=60,
        )
    )
    try:
        server.run()
    finally:
        service.close(drain=True, timeout=60)
