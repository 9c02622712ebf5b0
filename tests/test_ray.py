"""distilbert_fast.ray on a real local Ray (2 CPUs, no dashboard), started once for the module.

Each task's Ray Data job gives the single-process pipeline's outputs (row by row, joined on the row id);
malformed rows become error rows; an actor SIGKILLed mid-job is restarted and every row comes out exactly
once; the CLI `run --ray` path end to end against `distilbert-fast run`; the GPU plan with a stand-in.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402
from conftest import hf_model  # noqa: E402

from distilbert_fast import cli  # noqa: E402
from distilbert_fast.pipelines import pipeline  # noqa: E402
from distilbert_fast.ray import JobError, Predictor, plan_resources, run  # noqa: E402

SENTENCES = [
    s
    for s in resources.files("distilbert_fast")
    .joinpath("data", "sentences.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if s.strip()
]
QA = [
    {"question": "Who performed the symphony?", "context": SENTENCES[1]},
    {"question": "How long does she practice?", "context": SENTENCES[2]},
    {"question": "Where is the man playing?", "context": SENTENCES[0] + " " + SENTENCES[3]},
]
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=True,
        logging_level="WARNING",
        object_store_memory=256 * 1024**2,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray").setLevel(logging.WARNING)  # Ray Data's debug stats would flood failure reports
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory, minilm_dir):
    """Small random checkpoints of each task class on the real vocabulary, with MiniLM's tokenizer."""
    root = tmp_path_factory.mktemp("ray_models")
    out = {"sentence-embeddings": minilm_dir, "feature-extraction": minilm_dir}
    for task, cls in (
        ("text-classification", "DistilBertForSequenceClassification"),
        ("fill-mask", "DistilBertForMaskedLM"),
        ("question-answering", "DistilBertForQuestionAnswering"),
        ("token-classification", "DistilBertForTokenClassification"),
    ):
        extra = {"num_labels": 3} if "Sequence" in cls or "Token" in cls else {}
        model = hf_model(cls, seed=3, vocab_size=30522, **extra)
        path = root / task
        model.save_pretrained(path)
        for f in TOKENIZER_FILES:
            shutil.copy(Path(minilm_dir) / f, path / f)
        out[task] = str(path)
    return out


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def read_output(folder: Path) -> list[dict]:
    if str(folder).endswith(".jsonl"):
        rows = [json.loads(line) for f in sorted(folder.iterdir()) for line in f.read_text().splitlines()]
    else:
        rows = pq.read_table(folder).to_pylist()
    return sorted(rows, key=lambda r: (r["file"], r["row"]))


def assert_same(a, b, path="result"):
    """Equal structures; floats within 1e-6 (fp32 results of a different batch composition)."""
    if isinstance(b, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in b:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(b, float):
        assert abs(a - b) <= 1e-6, f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# (task, input rows, call keywords, output column, how a pipeline result reads in that column)
CASES = [
    ("sentence-embeddings", SENTENCES, {}, "embedding", lambda r: r.tolist()),
    ("feature-extraction", SENTENCES[:12], {}, "features", lambda r: r[0]),
    ("text-classification", SENTENCES + [{"text": SENTENCES[0], "text_pair": SENTENCES[1]}], {}, None, None),
    ("question-answering", QA, {"top_k": 2}, "answers", lambda r: r if isinstance(r, list) else [r]),
    ("token-classification", SENTENCES[:12], {"aggregation_strategy": "simple"}, "entities", lambda r: r),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_task_matches_the_pipeline(case, local_ray, models, tmp_path):
    task, rows, call, column, as_column = case
    src = write_jsonl(tmp_path / "in.jsonl", [r if isinstance(r, dict) else {"text": r} for r in rows])
    out = tmp_path / ("out.jsonl" if task == "question-answering" else "out")
    # one actor: each actor start costs seconds on 2 cores (the kill and CLI tests run two)
    summary = run(
        task,
        models[task],
        str(src),
        str(out),
        actors=1,
        rows_per_call=7,
        batch_size=4,
        device="cpu",
        progress=False,
        **call,
    )
    got = read_output(out)
    expected = pipeline(task, model=models[task], batch_size=32).run(rows, **call)
    assert [r["row"] for r in got] == list(range(len(rows)))  # every row exactly once
    assert (
        summary.rows == len(rows) and summary.errors == 0 and summary.tokens == sum(r["tokens"] for r in got)
    )
    for r, e in zip(got, expected):
        assert r["error"] is None and r["tokens"] > 0
        if column is None:  # text-classification: label + score columns
            assert_same({"label": r["label"], "score": r["score"]}, e, f"row {r['row']}")
        else:
            assert_same(r[column], as_column(e), f"row {r['row']}")


def test_quantize_int8_matches_the_int8_pipeline(local_ray, minilm_dir, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": s} for s in SENTENCES[:10]])
    out = tmp_path / "out"
    run("sentence-embeddings", str(minilm_dir), str(src), str(out), actors=1, quantize="int8", progress=False)
    got = [r["embedding"] for r in read_output(out)]
    want = pipeline("sentence-embeddings", model=str(minilm_dir), quantize="int8").run(SENTENCES[:10])
    fp32 = pipeline("sentence-embeddings", model=str(minilm_dir)).run(SENTENCES[:10])
    assert_same(got, [w.tolist() for w in want])
    assert max(float((w - f).abs().max()) for w, f in zip(want, fp32)) > 1e-4  # int8 ran, not fp32
    with pytest.raises(JobError, match="quantize must be"):
        run("sentence-embeddings", str(minilm_dir), str(src), str(tmp_path / "o2"), quantize="int4")


def test_rows_of_many_files_with_errors_are_never_dropped(local_ray, models, tmp_path):
    """fill-mask over a folder of files with malformed and rejected rows: every input row has one output
    row naming its file and index, with the pipeline's result or an error saying why."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = [s.replace(s.split()[1], "[MASK]", 1) for s in SENTENCES[:9]]
    write_jsonl(
        folder / "a.jsonl",
        [
            {"text": good[0]},
            "{not json",
            {"txt": "no text field"},
            {"text": good[1]},
            "",
            {"text": 7},
            {"text": SENTENCES[5]},
        ],
    )  # last: no [MASK] -> rejected
    write_jsonl(folder / "b.jsonl", [{"text": t} for t in good[2:]])
    (folder / "_SUCCESS").write_text("")  # writer markers are skipped
    out = tmp_path / "out"
    summary = run(
        "fill-mask",
        models["fill-mask"],
        str(folder),
        str(out),
        actors=1,
        rows_per_call=3,
        device="cpu",
        progress=False,
    )
    got = read_output(out)
    assert [(Path(r["file"]).name, r["row"]) for r in got] == [("a.jsonl", i) for i in range(6)] + [
        ("b.jsonl", i) for i in range(7)
    ]
    errors = {r["row"]: r["error"] for r in got if r["error"] is not None}
    assert set(errors) == {1, 2, 4, 5} and summary.errors == 4 and summary.rows == 13
    assert "line 2: invalid JSON" in errors[1] and 'line 3: missing field "text"' in errors[2]
    assert 'line 6: field "text" must be a non-empty string' in errors[4] and "no mask_token" in errors[5]
    assert all(r["candidates"] is None for r in got if r["error"])
    ok = [r for r in got if not r["error"]]
    expected = pipeline("fill-mask", model=models["fill-mask"]).run([good[0], good[1]] + good[2:])
    for r, e in zip(ok, expected):
        assert_same(r["candidates"], [e], f"{r['file']}:{r['row']}")
    with pytest.raises(JobError, match="not empty"):  # a second run never mixes files with the first
        run("fill-mask", models["fill-mask"], str(folder / "*.jsonl"), str(out), device="cpu", progress=False)
    for bad, match in (
        (tmp_path / "missing.jsonl", "input not found"),
        (tmp_path / "x*.txt", "no file matches"),
    ):
        t0 = time.perf_counter()
        with pytest.raises(JobError, match=match):
            run("fill-mask", models["fill-mask"], str(bad), str(tmp_path / "o2"), progress=False)
        assert time.perf_counter() - t0 < 1.0  # fails before any Ray work


def _map_workers() -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"MapBatches(Predictor)" in cmd:
            pids.append(int(pid))
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_actor_killed_mid_job_every_row_exactly_once(local_ray, minilm_dir, tmp_path):
    rows = [SENTENCES[i % len(SENTENCES)] + f" ({i})" for i in range(2000)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result: dict = {}

    def job():
        try:
            result["summary"] = run(
                "sentence-embeddings",
                minilm_dir,
                str(src),
                str(out),
                actors=2,
                rows_per_call=32,
                device="cpu",
                progress=False,
            )
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    before = set(_map_workers())  # actors of earlier jobs may still be shutting down: not this job's
    thread = threading.Thread(target=job)
    thread.start()
    deadline, victims, seen, written = time.time() + 120, [], set(), False
    while time.time() < deadline and thread.is_alive() and not victims:
        time.sleep(0.05)
        new = set(_map_workers()) - before
        seen |= new
        written = out.is_dir() and any(out.iterdir())
        # mid-job: results already written, or an actor past its model load (seconds of CPU) and working
        victims = sorted(p for p in new if written or _cpu_seconds(p) > 4.0)
    assert victims and thread.is_alive(), (
        f"no actor killed mid-job (actors seen {seen}, output written {written}): {result}"
    )
    victim_nice = int(Path(f"/proc/{victims[0]}/stat").read_text().rsplit(")", 1)[1].split()[16])
    os.kill(victims[0], signal.SIGKILL)
    thread.join(240)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    got = read_output(out)
    assert [r["row"] for r in got] == list(range(len(rows)))  # exactly once, none lost
    assert result["summary"].rows == len(rows)
    assert victims[0] not in _map_workers()
    assert not [f for f in os.listdir(out) if not f.startswith("part-")]  # no partial file of the victim
    assert victim_nice == 0  # run(nice=0): not Ray's default 15
    expected = pipeline("sentence-embeddings", model=minilm_dir).run(
        rows[:64] + rows[-64:], return_tensors="np"
    )
    emb = np.array([r["embedding"] for r in got[:64] + got[-64:]], dtype=np.float32)
    assert np.abs(emb - expected).max() <= 1e-6


def test_cli_ray_matches_single_process_run(local_ray, minilm_dir, tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": s, "id": i} for i, s in enumerate(SENTENCES)])
    single, distributed = tmp_path / "single.jsonl", tmp_path / "ray_out.jsonl"
    assert (
        cli.main(
            [
                "run",
                "sentence-embeddings",
                "--model",
                str(minilm_dir),
                "--input",
                str(src),
                "--output",
                str(single),
                "--no-progress",
            ]
        )
        == 0
    )
    # --address: the test's Ray (without it the command starts and stops a local one)
    assert (
        cli.main(
            [
                "run",
                "sentence-embeddings",
                "--model",
                str(minilm_dir),
                "--input",
                str(src),
                "--output",
                str(distributed),
                "--ray",
                "--address",
                local_ray,
                "--actors",
                "2",
                "--threads-per-actor",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"{len(SENTENCES)} rows (0 with an error)" in err and "tokens/s on 2 actor(s) x 1 thread(s)" in err
    want = [json.loads(line) for line in single.read_text().splitlines()]
    got = read_output(distributed)
    assert [r["row"] for r in got] == [w["index"] for w in want]
    diff = max(
        np.abs(np.array(r["embedding"], np.float32) - np.array(w["result"], np.float32)).max()
        for r, w in zip(got, want)
    )
    assert diff <= 1e-6
    # errors stay one line
    assert (
        cli.main(
            [
                "run",
                "sentence-embeddings",
                "--model",
                str(minilm_dir),
                "--input",
                str(tmp_path / "nope"),
                "--output",
                str(tmp_path / "o"),
                "--ray",
                "--address",
                local_ray,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "input not found" in err


def test_gpu_plan_and_cpu_stand_in():
    """The CUDA plan: one GPU per actor, the triton backend; the CPU plan: actors x threads = CPUs."""
    assert plan_resources("auto", None, None, {"CPU": 16, "GPU": 4}) == (
        "cuda",
        4,
        1,
        {"num_gpus": 1, "num_cpus": 1},
    )
    assert plan_resources("auto", None, None, {"CPU": 8}) == ("cpu", 8, 1, {"num_cpus": 1})
    assert plan_resources("cpu", 2, None, {"CPU": 8, "GPU": 1}) == ("cpu", 2, 4, {"num_cpus": 4})
    assert plan_resources("cpu", None, 2, {"CPU": 8}) == ("cpu", 4, 2, {"num_cpus": 2})
    with pytest.raises(JobError, match="no GPU"):
        plan_resources("cuda", None, None, {"CPU": 8})
    with pytest.raises(JobError, match="needs 6 CPUs"):
        plan_resources("cpu", 3, 2, {"CPU": 4})


def test_serve_app_gpu_replicas_put_the_model_on_the_gpu(minilm_dir):
    """num_gpus: each replica's service gets device "cuda" (the auto backend is then triton); an explicit
    device stays; CPU replicas keep the default. Checked on the bound application, no Ray cluster needed."""
    from distilbert_fast.ray import serve_app

    def bound(**kw):
        app = serve_app(str(minilm_dir), **kw)
        d = getattr(app, "_bound_deployment", None)
        if d is None:
            pytest.skip("this Ray version's Application does not expose its bound deployment")
        return d.init_args[0], d.ray_actor_options

    settings, actor = bound(num_gpus=1)
    assert settings["device"] == "cuda" and "backend" not in settings and actor["num_gpus"] == 1
    assert bound(num_gpus=1, device="cuda:0")[0]["device"] == "cuda:0"
    assert "device" not in bound(threads_per_replica=2)[0]
    with pytest.raises(ValueError, match="device must be"):
        serve_app(str(minilm_dir), device="gpu")


def test_serve_app_smoke(local_ray, minilm_dir):
    """Ray Serve: one replica of the `distilbert-fast serve` app answers /embed like the pipeline, /health,
    and a malformed request with the server's 422."""
    import socket

    import httpx
    from ray import serve

    from distilbert_fast.ray import serve_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(serve_app(str(minilm_dir), num_replicas=1, threads_per_replica=1), route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            assert client.get("/health").status_code == 200
            r = client.post("/embed", json={"inputs": SENTENCES[:3]})
            assert r.status_code == 200, r.text
            expected = pipeline("sentence-embeddings", model=minilm_dir).run(
                SENTENCES[:3], return_tensors="np"
            )
            assert np.abs(np.array(r.json(), np.float32) - expected).max() <= 1e-5
            bad = client.post("/embed", json={"inputs": 3})
            assert bad.status_code == 422 and "inputs" in bad.text
    finally:
        serve.shutdown()


def _batch(task: str, texts: list[str]):
    import pyarrow as pa

    from distilbert_fast.ray.io import input_fields

    cols = {"file": ["f"] * len(texts), "row": list(range(len(texts))), "error": [None] * len(texts)}
    for f in input_fields(task):
        cols[f] = texts if f == "text" else [None] * len(texts)
    return pa.table({k: pa.array(v, pa.int64() if k == "row" else pa.string()) for k, v in cols.items()})


def test_multihead_predictor_matches_the_model(minilm_dir, tmp_path):
    """head=[...] on a DistilBertModelWithHeads checkpoint: a column per head with the softmax of that head's
    logits (the actor's code, run in this process)."""
    import torch

    from distilbert_fast import DistilBertModelWithHeads, DistilBertTokenizer

    model = DistilBertModelWithHeads.from_pretrained(minilm_dir)
    model.add_classification_head("topic", num_labels=3)
    model.add_classification_head("polarity", num_labels=2, id2label={0: "neg", 1: "pos"})
    model.save_pretrained(tmp_path)
    for f in TOKENIZER_FILES:
        shutil.copy(Path(minilm_dir) / f, tmp_path / f)
    texts = SENTENCES[:5]
    pred = Predictor("text-classification", str(tmp_path), head=["topic", "polarity"], batch_size=2)
    out = pred(_batch("text-classification", texts)).to_pylist()
    tok = DistilBertTokenizer.from_pretrained(tmp_path)
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = [model.eval()(**enc, head=h).logits.softmax(-1) for h in ("topic", "polarity")]
    for i, row in enumerate(out):
        assert row["error"] is None and row["tokens"] == int(enc["attention_mask"][i].sum())
        for h, probs in zip(("topic", "polarity"), logits):
            got = {d["label"]: d["score"] for d in row[h]}
            labels = model.get_labels_dict(h) or {k: f"LABEL_{k}" for k in range(probs.shape[1])}
            assert max(abs(got[labels[k]] - probs[i, k].item()) for k in range(probs.shape[1])) <= 1e-5
    with pytest.raises(ValueError, match="no head 'nope'"):
        Predictor("text-classification", str(tmp_path), head="nope")


def test_gpu_code_path_with_a_cpu_stand_in(models, tmp_path):
    """What a GPU actor runs (the triton backend), on CPU tensors under Triton's interpreter: same outputs as
    the default backend. The plan that sends actors to GPUs is tested above."""
    os.environ.setdefault("TRITON_INTERPRET", "1")
    small = tmp_path / "tiny"
    hf_model("DistilBertModel", seed=4, vocab_size=30522).save_pretrained(small)
    for f in TOKENIZER_FILES:
        shutil.copy(Path(models["fill-mask"]) / f, small / f)
    batch = _batch("sentence-embeddings", SENTENCES[:3])
    try:
        gpu_like = Predictor("sentence-embeddings", str(small), backend="triton", device="cpu")(batch)
    except (ValueError, RuntimeError) as e:  # triton imported before TRITON_INTERPRET was set
        pytest.skip(f"triton interpreter unavailable in this process: {e}")
    assert Predictor("sentence-embeddings", str(small), device="cpu").pipe.model.backend != "triton"
    cpu = Predictor("sentence-embeddings", str(small), device="cpu")(batch)
    a = np.array(gpu_like["embedding"].to_pylist(), np.float32)
    b = np.array(cpu["embedding"].to_pylist(), np.float32)
    assert np.abs(a - b).max() <= 1e-5


def test_parquet_and_text_rows_are_numbered_and_checked(local_ray, tmp_path):
    """The reader alone (no model): parquet records and .txt lines get their file + row id; a null text is
    an error row; blank .txt lines are not rows (as in `distilbert-fast run`)."""
    import pyarrow as pa

    from distilbert_fast.ray.io import RowSource, expand_inputs

    pq.write_table(
        pa.table({"text": ["a", None, "c"], "text_pair": [None, None, "d"], "other": [1, 2, 3]}),
        tmp_path / "p.parquet",
    )
    paths, fs, kind = expand_inputs(str(tmp_path / "*.parquet"))
    rows = ray.data.read_datasource(RowSource(paths, "text-classification", kind, fs), num_cpus=0).take_all()
    assert [(r["row"], r["text"], r["text_pair"], r["error"]) for r in rows] == [
        (0, "a", None, None),
        (1, None, None, 'record 1: missing field "text"'),
        (2, "c", "d", None),
    ]
    (tmp_path / "t.txt").write_bytes(b"one\n\n  \ntwo\r\n\xff\xfe\nthree")
    paths, fs, kind = expand_inputs(str(tmp_path / "t.txt"))
    rows = ray.data.read_datasource(RowSource(paths, "fill-mask", kind, fs), num_cpus=0).take_all()
    assert [(r["row"], r["text"], r["error"]) for r in rows] == [
        (0, "one", None),
        (1, "two", None),
        (2, None, "line 5: not valid UTF-8"),
        (3, "three", None),
    ]


def test_blocks_follow_the_estimated_rows(local_ray, tmp_path):
    """The read is split into blocks of about rows_per_call rows (one actor call each), from the first file's
    bytes per row: parquet from its footer, text from its lines."""
    import pyarrow as pa

    from distilbert_fast.ray.io import RowSource
    from distilbert_fast.ray.job import MAX_BLOCKS_PER_FILE, read_blocks

    lines = [f"row number {i} " + "x" * (i % 7) for i in range(3000)]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = RowSource([str(tmp_path / "t.txt")], "sentence-embeddings", ".txt")
    size = (tmp_path / "t.txt").stat().st_size
    assert src.bytes_per_row() == pytest.approx(size / 3000)
    assert src.bytes_per_row(sample=1000) == pytest.approx(size / 3000, rel=0.2)  # from the first lines
    assert read_blocks(size, src.bytes_per_row(), 512, 1) == 6  # ceil(3000 / 512)
    assert read_blocks(size, src.bytes_per_row(), 100_000, 1) == 1
    assert read_blocks(size, src.bytes_per_row(), 1, 1) == MAX_BLOCKS_PER_FILE  # capped per file
    assert read_blocks(10, 5.0, 512, 7) == 7  # at least one block (read task) per file
    assert read_blocks(10, 5.0, 512, 1, actors=4) == 4  # and one per actor
    pq.write_table(pa.table({"text": lines}), tmp_path / "p.parquet")
    psrc = RowSource([str(tmp_path / "p.parquet")], "sentence-embeddings", ".parquet")
    assert psrc.bytes_per_row() == pytest.approx((tmp_path / "p.parquet").stat().st_size / 3000)


def test_result_writer_replaces_a_rerun_call_and_cleans_partial_files(tmp_path):
    """One file per call, named after its first row: a call that runs again (its actor was killed) replaces
    its file instead of adding rows; temporary files of a killed writer are removed at the end."""
    import pyarrow as pa

    from distilbert_fast.ray.io import ResultWriter, prepare_output, remove_partial_files

    out = tmp_path / "out.jsonl"
    prepare_output(str(out), overwrite=False)
    table = pa.table(
        {"file": ["/in/a.txt"] * 3, "row": pa.array([5, 6, 7], pa.int64()), "x": [1.5, 2.0, 3.25]}
    )
    writer = ResultWriter(str(out), ".jsonl")
    name = writer.write(table)
    assert name == writer.write(table) and name.startswith("part-") and name.endswith("-000000000005.jsonl")
    assert writer.name(table.slice(1)) != name
    (out / f".{name}.123.tmp").write_text("{partial")
    assert sorted(os.listdir(out)) == sorted([name, f".{name}.123.tmp"])
    assert remove_partial_files(str(out)) == 1 and os.listdir(out) == [name]
    rows = [json.loads(line) for line in (out / name).read_text().splitlines()]
    assert rows == table.to_pylist()  # floats exact, one object per row
    pwriter = ResultWriter(str(tmp_path / "pq"), ".parquet")
    prepare_output(str(tmp_path / "pq"), overwrite=False)
    assert pq.read_table(tmp_path / "pq" / pwriter.write(table)).equals(table)
    prepare_output(str(out), overwrite=True)  # --overwrite empties the folder
    assert os.listdir(out) == []


def test_read_tasks_do_not_import_torch(local_ray, tmp_path):
    """RowSource ships by value (job.ship_io_by_value): a fresh Ray worker unpickles it and reads rows
    without importing distilbert_fast, and so without torch (~1.3 s of CPU per worker process)."""
    from ray import cloudpickle

    from distilbert_fast.ray.io import RowSource
    from distilbert_fast.ray.job import ship_io_by_value

    (tmp_path / "t.txt").write_text("one\n\ntwo\n")
    ship_io_by_value()
    blob = cloudpickle.dumps(RowSource([str(tmp_path / "t.txt")], "fill-mask", ".txt"))

    def probe(blob):  # a local function: shipped by value, so the worker never imports this test module
        import pickle
        import sys

        src = pickle.loads(blob)
        path = src._paths()[0]
        with open(path, "rb") as f:
            texts = [r["text"] for t in src._read_stream(f, path) for r in t.to_pylist()]
        return texts, "torch" in sys.modules, "distilbert_fast" in sys.modules

    # its own runtime_env: a new worker process, not one that earlier tests filled with imports
    fresh = ray.remote(num_cpus=0, runtime_env={"env_vars": {"DBF_TEST_FRESH_WORKER": str(time.time())}})
    assert ray.get(fresh(probe).remote(blob)) == (["one", "two"], False, False)


def test_predictor_runs_torch_on_one_thread_with_its_thread_count(minilm_dir):
    """Model load and every call run on the Predictor's own thread (one OpenMP team), with `threads`
    torch threads there (omp_set_num_threads is per thread)."""
    import threading

    import torch

    pred = Predictor("sentence-embeddings", str(minilm_dir), threads=1)
    where = pred._torch_thread.submit(lambda: (threading.get_ident(), torch.get_num_threads())).result()
    assert where[0] != threading.get_ident() and where[1] == 1
    out = pred(_batch("sentence-embeddings", SENTENCES[:2]))
    assert out.num_rows == 2 and out["error"].null_count == 2


def test_bad_nice_is_refused_before_any_ray_work(tmp_path, minilm_dir, capsys):
    (tmp_path / "t.txt").write_text("one\n")
    argv = ["run", "sentence-embeddings", "--model", str(minilm_dir), "--input", str(tmp_path / "t.txt")]
    assert cli.main([*argv, "--output", str(tmp_path / "o"), "--ray", "--nice", "25"]) == 2
    assert "--nice: expected an integer 0-19, got '25'" in capsys.readouterr().err
    for bad in (-1, 20, 1.5, True):
        with pytest.raises(JobError, match="nice must be an int in 0..19"):
            run(
                "sentence-embeddings", str(minilm_dir), str(tmp_path / "t.txt"), str(tmp_path / "o"), nice=bad
            )
