"""The ASGI app (FastAPI) around an InferenceService, and `run_server` (uvicorn, graceful SIGTERM).

The service's POST routes (/embed, /predict, ...) are answered by `ServiceRoutes`, a pure ASGI layer in
front of FastAPI's routing: per request it reads the body, awaits the service while watching for the
client going away, and writes the JSON bytes the service encoded (embeddings written by orjson). FastAPI's
per-request machinery (router, Request objects, its inner middleware, response classes) would cost about
as much event-loop time as the request's own work. FastAPI serves the rest: /health, /info, /metrics,
/openapi.json and /docs (whose document lists the POST routes with their request schemas), 404s.

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

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import schemas
from .config import ServeConfig
from .encoding import encode_json
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


def json_response(value: Any) -> Response:
    # straight to bytes: FastAPI's jsonable_encoder walks every float of an embedding in Python.
    return Response(encode_json(value), media_type="application/json")


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


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _send(send, status: int, body: bytes, headers: list | None = None) -> None:
    head = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode("ascii")), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, e: ServeError) -> None:
    headers = [(b"www-authenticate", b"Bearer")] if e.status == 401 else None
    await _send(send, e.status, json.dumps(e.to_json()).encode("utf-8"), headers)


class ClientDisconnected(Exception):
    pass


async def read_body_json(scope, receive, limit: int) -> Any:
    """The request body as JSON, at most `limit` bytes (413 beyond, whether Content-Length says so or not)."""
    too_large = ServeError(
        413, "payload_too_large", f"request body larger than the payload limit of {limit} bytes"
    )
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise too_large
            break
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()  # the client left before sending its whole body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        return json.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise ServeError(422, "validation", f"body: invalid JSON ({e})") from None


class ServiceRoutes:
    """Pure ASGI middleware: POST on the service's routes (ROUTES) answered here; anything else goes on to
    the app. A client that disconnects while its request waits cancels it (its queued batch entry is then
    skipped; the request is counted with status 499) and gets no answer."""

    def __init__(self, app, service: InferenceService):
        self.app = app
        self.service = service
        self.limit = service.config.payload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix (Ray Serve's route_prefix)
            path = path[len(root) :]
        if path not in ROUTES:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            body = b'{"error":"Method Not Allowed","error_type":"method_not_allowed"}'
            return await _send(send, 405, body, [(b"allow", b"POST")])
        service = self.service
        try:
            body = await read_body_json(scope, receive, self.limit)
        except ServeError as e:  # service.handle counts every other outcome
            service.metrics.requests.labels(path, str(e.status)).inc()
            return await _send_error(send, e)
        except ClientDisconnected:
            return None
        task = asyncio.current_task()
        gone = False

        async def watch():  # the body is read: the next message is the client going away
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            result = await service.handle(path, body, encoded=True)
        except ServeError as e:
            return await _send_error(send, e)
        except asyncio.CancelledError:
            if not gone:
                raise
            if hasattr(task, "uncancel"):
                task.uncancel()
            return None
        finally:
            watcher.cancel()
        return await _send(send, 200, result)


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

    # The POST routes are answered by ServiceRoutes; the document lists them as FastAPI would.
    paths: dict[str, Any] = {}
    defs: dict[str, Any] = {}  # nested request models (QAItem), referenced from components/schemas
    for path in ROUTES:
        schema = REQUEST_MODELS[path].model_json_schema(ref_template="#/components/schemas/{model}")
        name = path.strip("/").replace("/", "_").replace("-", "_")
        paths[path] = {
            "post": {
                "summary": (getattr(service, ROUTES[path][0]).__doc__ or "").split("\n")[0],
                "operationId": f"{name}_{name}_post",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {k: v for k, v in schema.items() if k != "$defs"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "Successful Response",
                        "content": {"application/json": {"schema": {}}},
                    }
                },
            }
        }
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

    def openapi_with_routes():
        if app.openapi_schema is None:
            doc = openapi()
            doc.setdefault("paths", {}).update(paths)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(defs)
        return app.openapi_schema

    app.openapi = openapi_with_routes
    app.add_middleware(ServiceRoutes, service=service)
    if config.api_key:  # added last: outermost, so it guards the service routes too
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
