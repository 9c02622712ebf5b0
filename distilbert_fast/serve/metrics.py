"""Prometheus metrics of one server, in a registry of its own (two apps in one process never collide, and
the process-global registry stays untouched)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "dbf_requests", "Requests answered, by route and HTTP status", ["route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "dbf_request_duration_seconds",
            "Request latency inside the server",
            ["route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_duration = Histogram(
            "dbf_queue_duration_seconds", "Time a request waited for its batch", buckets=_LATENCY, registry=r
        )
        self.inference_duration = Histogram(
            "dbf_inference_duration_seconds", "Model time per batch", buckets=_LATENCY, registry=r
        )
        self.batch_requests = Histogram(
            "dbf_batch_requests", "Requests per batch", buckets=_BATCH, registry=r
        )
        self.batch_tokens = Histogram(
            "dbf_batch_tokens", "Real tokens per batch", buckets=_TOKENS, registry=r
        )
        self.tokens = Counter(
            "dbf_tokens", "Real tokens run through the model (rate() = tokens/s)", registry=r
        )
        self.queue_depth = Gauge("dbf_queue_depth", "Requests waiting for the model worker", registry=r)
        self.in_flight = Gauge("dbf_requests_in_flight", "Requests admitted and not yet answered", registry=r)
        self.batch_failures = Counter("dbf_batch_failures", "Batches whose model call raised", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
