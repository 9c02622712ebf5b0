"""`distilbert-fast run` jobs cannot be mixed up (issue 11): identity, exclusive lock, verified resume.

Real subprocesses on real files, like a user. The model is a tiny random text classifier with the real
MiniLM tokenizer, so each run costs ~2 s of start-up, not of inference.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import hf_model

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 60


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    env.pop("DISTILBERT_FAST_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "distilbert_fast", *map(str, args)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc, *fragments):
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("distilbert-fast: error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory, minilm_dir):
    from distilbert_fast import DistilBertTokenizer

    root = tmp_path_factory.mktemp("jobs")
    hf = hf_model("DistilBertForSequenceClassification", seed=3, vocab_size=30522, num_labels=3)
    hf.save_pretrained(root / "model")
    DistilBertTokenizer.from_pretrained(minilm_dir).save_pretrained(root / "model")
    texts = [f"row {i}: " + "quite a good day " * (i % 5) for i in range(N_ROWS)]
    (root / "a.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (root / "b.txt").write_text("\n".join(t.upper() for t in texts) + "\n", encoding="utf-8")
    (root / "long.txt").write_text("\n".join(texts + texts) + "\n", encoding="utf-8")
    reference = root / "reference.jsonl"
    proc = cli(
        "run",
        "text-classification",
        "--model",
        root / "model",
        "--input",
        root / "a.txt",
        "--output",
        reference,
        "--chunk-size",
        "8",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    return root


def _args(root, out, inp="a.txt", task="text-classification", *extra):
    return [
        "run",
        task,
        "--model",
        root / "model",
        "--input",
        root / inp,
        "--output",
        out,
        "--chunk-size",
        "8",
        "--no-progress",
        *extra,
    ]


def _partial_copy(root, out, rows):
    """The reference output and its job record cut to `rows` complete lines, as a kill would leave them."""
    ref = (root / "reference.jsonl").read_bytes().split(b"\n")
    out.write_bytes(b"".join(line + b"\n" for line in ref[:rows]))
    Path(str(out) + ".job").write_bytes(Path(str(root / "reference.jsonl") + ".job").read_bytes())


@pytest.mark.parametrize(
    "change",
    [
        ("b.txt", "text-classification", (), "input.sha256"),  # another input file, same row count
        ("long.txt", "text-classification", (), "input."),  # a longer input (old main kept the old rows)
        ("a.txt", "sentiment-analysis", ("--top-k", "2"), "options.top_k"),  # other options
        ("a.txt", "feature-extraction", (), "task"),  # another task
    ],
)
def test_resume_of_a_different_job_is_refused(job_dir, tmp_path, change):
    inp, task, extra, what = change
    out = tmp_path / "out.jsonl"
    _partial_copy(job_dir, out, 20)
    before = out.read_bytes()
    proc = cli(*_args(job_dir, out, inp, task, *extra))
    one_line_error(proc, "belongs to a different job", what)
    assert out.read_bytes() == before  # nothing written, nothing cut


def test_same_path_new_content_is_refused(job_dir, tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text((job_dir / "a.txt").read_text())
    out = tmp_path / "out.jsonl"
    assert cli(*_args(job_dir, out, inp)).returncode == 0
    inp.write_text((job_dir / "b.txt").read_text())  # same path and size, other bytes
    one_line_error(cli(*_args(job_dir, out, inp)), "input.sha256")


def test_concurrent_run_on_the_same_output_fails_fast(job_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    lock = Path(str(out) + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running `distilbert-fast run` holds
        os.write(fd, b"4242")
        proc = cli(*_args(job_dir, out), timeout=60)
        one_line_error(proc, "another run is writing", "4242")
        assert not out.exists() or out.stat().st_size == 0
    finally:
        os.close(fd)
    assert cli(*_args(job_dir, out)).returncode == 0  # lock released: the run proceeds


def test_torn_last_line_is_repaired_and_nothing_duplicated(job_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    _partial_copy(job_dir, out, 21)
    with open(out, "ab") as f:
        f.write(b'{"index": 21, "resu')  # a kill -9 mid-write
    proc = cli(*_args(job_dir, out))
    assert proc.returncode == 0, proc.stderr
    # rows 16..20 belong to the chunk the kill cut: it is recomputed whole (same batches as an uninterrupted
    # run, so the same bits)
    assert "incomplete last line" in proc.stderr and "resuming after row 15" in proc.stderr
    assert out.read_bytes() == (job_dir / "reference.jsonl").read_bytes()  # same as one uninterrupted run
    again = cli(*_args(job_dir, out))
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert out.read_bytes() == (job_dir / "reference.jsonl").read_bytes()


@pytest.mark.parametrize("edit", ["middle", "swap"])
def test_resume_verifies_the_whole_output(job_dir, tmp_path, edit):
    out = tmp_path / "out.jsonl"
    _partial_copy(job_dir, out, 20)
    lines = out.read_bytes().split(b"\n")[:-1]
    if edit == "middle":  # a changed result in row 3; the last line is intact
        row = json.loads(lines[3])
        row["result"]["score"] = 0.5
        lines[3] = json.dumps(row).encode()
    else:  # two rows swapped: both well-formed, the last line still says index 19
        lines[4], lines[5] = lines[5], lines[4]
    out.write_bytes(b"".join(line + b"\n" for line in lines))
    one_line_error(cli(*_args(job_dir, out)), f"line {4 if edit == 'middle' else 5} does not match")


def test_output_without_job_record_is_refused(job_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes((job_dir / "reference.jsonl").read_bytes())
    one_line_error(cli(*_args(job_dir, out)), "has no job record")
