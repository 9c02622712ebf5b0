"""The `python -m distilbert_fast` command line, run as a subprocess like a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import hf_model

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 300


def cli(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distilbert_fast", *map(str, args)],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    env.pop("DISTILBERT_FAST_DEBUG", None)
    return env


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("distilbert-fast: error: ")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, minilm_dir):
    """A small random text-classification checkpoint with the real MiniLM tokenizer, and a JSONL input."""
    from distilbert_fast import DistilBertTokenizer

    root = tmp_path_factory.mktemp("cli")
    model = root / "model"
    hf = hf_model("DistilBertForSequenceClassification", seed=7, vocab_size=30522, num_labels=3)
    hf.save_pretrained(model)
    DistilBertTokenizer.from_pretrained(minilm_dir).save_pretrained(model)
    rows = [
        {"text": f"Review {i}: " + "a surprisingly good film, " * (i % 9) + "the end.", "id": i}
        for i in range(N_ROWS)
    ]
    (root / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_jsonl_killed_and_resumed(workdir):
    from distilbert_fast.pipelines import pipeline

    inp, out = workdir / "input.jsonl", workdir / "out.jsonl"
    args = [
        "run",
        "text-classification",
        "--model",
        workdir / "model",
        "--input",
        inp,
        "--output",
        out,
        "--batch-size",
        "4",
        "--chunk-size",
        "8",
    ]
    # Start a run and kill it as soon as its first chunk is on disk.
    proc = subprocess.Popen(
        [sys.executable, "-m", "distilbert_fast", *map(str, args)],
        env=_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.stat().st_size > 0:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert "Traceback" not in stderr, stderr
    complete = out.read_bytes().split(b"\n")[:-1]
    assert complete, "the first chunk was not written"
    # Whatever the kill left, also cut the output mid-line, as a kill during a write would.
    partial = complete[5] if len(complete) > 5 else b'{"index": 5, "result": {"label": "LABEL_1"}}'
    out.write_bytes(b"".join(line + b"\n" for line in complete[:5]) + partial[:20])

    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    # the chunk the kill cut is recomputed whole (jobs.py), so resuming may restart at row 0 here
    assert "incomplete last line" in resumed.stderr
    rows = read_rows(out)
    assert [r["index"] for r in rows] == list(range(N_ROWS))  # every row once, in order

    texts = [json.loads(line)["text"] for line in (workdir / "input.jsonl").read_text().splitlines()]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = pipeline("text-classification", model=str(workdir / "model")).run(texts)
    finally:
        torch.set_num_threads(threads)
    for row, expected in zip(rows, want):
        assert row["result"]["label"] == expected["label"]
        assert abs(row["result"]["score"] - expected["score"]) < 1e-5

    again = cli(*args)  # complete: nothing to do, nothing duplicated
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert len(read_rows(out)) == N_ROWS


def test_run_txt_sentence_embeddings_top_k_arguments(workdir):
    inp, out = workdir / "input.txt", workdir / "emb.jsonl"
    inp.write_text("first sentence\n\nsecond, longer sentence here\nthird\n", encoding="utf-8")
    proc = cli(
        "run",
        "sentence-embeddings",
        "--model",
        workdir / "model",
        "--input",
        inp,
        "--output",
        out,
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out)
    assert [r["index"] for r in rows] == [0, 1, 2]  # blank lines are not rows
    for r in rows:
        vec = torch.tensor(r["result"])
        assert vec.shape == (32,) and abs(vec.norm().item() - 1.0) < 1e-4


@pytest.mark.parametrize("case", ["missing-input", "malformed-input", "bad-model", "bad-argument"])
def test_errors_are_one_line(case, workdir):
    model, out = workdir / "model", workdir / f"err-{case}.jsonl"
    if case == "missing-input":
        proc = cli(
            "run", "text-classification", "--model", model, "--input", workdir / "nope.jsonl", "--output", out
        )
        assert_one_line_error(proc, "input file not found", "nope.jsonl")
    elif case == "malformed-input":
        bad = workdir / "bad.jsonl"
        bad.write_text('{"text": "fine"}\n{"text": "broken\n', encoding="utf-8")
        proc = cli("run", "text-classification", "--model", model, "--input", bad, "--output", out)
        assert_one_line_error(proc, "bad.jsonl:2", "invalid JSON")
    elif case == "bad-model":
        proc = cli(
            "run",
            "text-classification",
            "--model",
            workdir / "no-such-model",
            "--input",
            workdir / "input.jsonl",
            "--output",
            out,
        )
        assert_one_line_error(proc, "no-such-model")
    else:
        proc = cli(
            "run",
            "text-classification",
            "--model",
            model,
            "--input",
            workdir / "input.jsonl",
            "--output",
            out,
            "--batch-size",
            "0",
        )
        assert_one_line_error(proc, "--batch-size")
    assert not out.exists() or out.stat().st_size == 0


def test_info():
    proc = cli("info")
    assert proc.returncode == 0, proc.stderr
    for key in (
        "distilbert_fast:",
        "python:",
        "torch:",
        "transformers:",
        "backends:",
        "cpu features:",
        "avx512f=",
        "avx512_bf16=",
        "avx512_vnni=",
        "amx=",
        "threads:",
    ):
        assert key in proc.stdout, proc.stdout
    assert "torch" in proc.stdout.split("backends:")[1].splitlines()[0]
    if "cpp extension: loaded" in proc.stdout:  # which int8 GEMM quantized models use, and why
        from distilbert_fast.ops.int8 import cpp as int8_cpp

        env = os.environ.get(int8_cpp.GEMM_ENV, "auto")
        assert f"int8 GEMM: {int8_cpp.gemm_kind()} ({int8_cpp.GEMM_ENV}={env})" in proc.stdout, proc.stdout


def test_convert_minilm_loads_in_transformers(tmp_path, minilm_dir):
    transformers = pytest.importorskip("transformers")
    dst = tmp_path / "minilm-distilbert"
    proc = cli("convert", minilm_dir, dst)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "distilbert" and config["architectures"] == ["DistilBertModel"]
    assert (dst / "model.safetensors").exists() and (dst / "tokenizer.json").exists()

    converted = transformers.DistilBertModel.from_pretrained(dst).eval()
    bert = transformers.BertModel.from_pretrained(minilm_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(dst)
    batch = tok(
        ["A man is playing a guitar.", "Unaffable cats sleep all day long."],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        got = converted(**inputs).last_hidden_state
        want = bert(**inputs).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-4, rtol=1e-4)
