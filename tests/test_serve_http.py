"""`distilbert-fast serve` as users run it: a real uvicorn process on 127.0.0.1 (a free port), concurrent
HTTP clients, overload (429) and a graceful SIGTERM that finishes the requests in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from distilbert_fast.pipelines import pipeline  # noqa: E402

KEY = "test-key-9f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}
SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome.",
    "A cat sleeps on the sofa.",
    "Two kids play football in the park while their parents watch.",
    "ok",
    "The stock market fell sharply after the announcement of new tariffs.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(minilm_dir, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve_http") / "server.log"
    env = {**os.environ, "DISTILBERT_FAST_API_KEY": KEY}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distilbert_fast",
                "serve",
                "--model",
                minilm_dir,
                "--port",
                str(port),
                "--max-concurrent-requests",
                "8",
                "--threads",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        assert proc.poll() is None, f"server exited: {log.read_text()}"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.time() < deadline, f"server did not start: {log.read_text()}"
        time.sleep(0.2)
    yield proc, url, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def post_all(url, bodies, concurrency, path="/embed"):
    """Post `bodies` with `concurrency` clients; responses in order."""
    results = [None] * len(bodies)
    queue = list(enumerate(bodies))

    async def client():
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as c:
            while queue:
                i, body = queue.pop()
                results[i] = await c.post(path, json=body)

    await asyncio.gather(*[client() for _ in range(concurrency)])
    return results


def test_concurrent_clients_get_their_own_results(server, minilm_dir):
    _, url, log = server
    assert "127.0.0.1" in log.read_text()  # bound to localhost by default
    r = httpx.post(f"{url}/embed", json={"inputs": "x"})
    assert r.status_code == 401 and r.json()["error_type"] == "unauthorized"
    bodies = [{"inputs": [SENTENCES[(i + k) % 6] for k in range(1 + i % 4)]} for i in range(40)]
    rs = asyncio.run(post_all(url, bodies, concurrency=8))  # at the concurrency limit: no errors
    assert [r.status_code for r in rs] == [200] * 40
    want = dict(
        zip(SENTENCES, pipeline("sentence-embeddings", model=minilm_dir).run(SENTENCES, return_tensors="np"))
    )
    for body, r in zip(bodies, rs):
        got = r.json()
        assert len(got) == len(body["inputs"])
        for text, vec in zip(body["inputs"], got):
            assert max(abs(a - b) for a, b in zip(vec, want[text].tolist())) < 1e-5


def test_overload_gives_429_and_the_server_stays_healthy(server):
    _, url, _ = server
    rs = asyncio.run(post_all(url, [{"inputs": SENTENCES * 2}] * 40, concurrency=40))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 429} and codes.count(429) > 0 and codes.count(200) >= 8, codes
    assert all(r.json()["error_type"] == "overloaded" for r in rs if r.status_code == 429)
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.post(f"{url}/embed", json={"inputs": "still here"}, headers=AUTH).status_code == 200
    metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
    assert 'dbf_requests_total{route="/embed",status="429"}' in metrics


def in_flight(url) -> float:
    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    return float(next(x for x in text.splitlines() if x.startswith("dbf_requests_in_flight ")).split()[1])


def test_a_client_that_disconnects_leaks_nothing(server):
    _, url, _ = server
    long = " ".join(SENTENCES * 5)
    with pytest.raises(httpx.TimeoutException):  # the client gives up and closes the connection
        httpx.post(f"{url}/embed", json={"inputs": [long] * 32}, headers=AUTH, timeout=0.02)
    deadline = time.time() + 20
    while in_flight(url) > 0:
        assert time.time() < deadline, "the abandoned request is still held"
        time.sleep(0.05)
    assert 'dbf_requests_total{route="/embed",status="499"}' in httpx.get(f"{url}/metrics", headers=AUTH).text
    assert httpx.post(f"{url}/embed", json={"inputs": "next"}, headers=AUTH).status_code == 200


def test_sigterm_finishes_the_requests_in_flight(server):
    proc, url, log = server
    long = " ".join(SENTENCES * 5)  # ~150 tokens: each request takes a while

    async def go():
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as c:
            tasks = [asyncio.ensure_future(c.post("/embed", json={"inputs": [long] * 6})) for _ in range(6)]
            while await asyncio.to_thread(in_flight, url) < 6:  # until the server holds them all
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks, return_exceptions=True)

    rs = asyncio.run(go())
    assert [getattr(r, "status_code", r) for r in rs] == [200] * 6
    assert all(len(r.json()) == 6 for r in rs)
    assert proc.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)
    text = log.read_text()
    assert KEY not in text and "Traceback" not in text
