"""What only the triton backend does: its availability flags, and the CUDA-graph runtime (cuda_graphs.py)
whose captured body (static layout) runs here on CPU: the body against the reference path, the runner's
bucketing / padding / eager fallback / output slicing with a stand-in graph, and the multi-head model with
Parallel adapters. Its parity with transformers is test_backend_parity.py.

Runs under TRITON_INTERPRET=1 (conftest.py) on CPU: slow per kernel, so the configs are tiny; the tests
assert that the triton kernels really ran (a call counter wraps the table).
"""

from __future__ import annotations

import collections
import os

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install 'distilbert_fast[triton]')")

from helpers import assert_close, hf_model, parallel_heads_model  # noqa: E402
from helpers import make_inputs as _make_inputs  # noqa: E402

import distilbert_fast as dbf  # noqa: E402
import distilbert_fast.ops.triton as T  # noqa: E402
from distilbert_fast import cuda_graphs  # noqa: E402
from distilbert_fast.modeling import DistilBertPreTrainedModel  # noqa: E402
from distilbert_fast.ops import OpTable  # noqa: E402
from distilbert_fast.ops.triton import _utils  # noqa: E402

if not T.AVAILABLE:
    pytest.skip(f"triton backend unavailable: {T.IMPORT_ERROR}", allow_module_level=True)
if not _utils.INTERPRET and not torch.cuda.is_available():
    pytest.skip(
        "distilbert_fast.ops.triton was imported before TRITON_INTERPRET=1 was set and there is no "
        "GPU: set TRITON_INTERPRET=1 in the environment (or in conftest.py)",
        allow_module_level=True,
    )

DEVICE = "cpu" if _utils.INTERPRET else "cuda"
OPS = ("embeddings", "qkv", "linear", "add_layer_norm", "layer_norm", "attention")


def counting_table():
    """The triton table, exactly as the lead wires it, with a call counter around each op."""
    calls = collections.Counter()

    def counted(name):
        fn = getattr(T, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    table = OpTable(name="triton", packed=True, **{name: counted(name) for name in OPS})
    return table, calls


def use_table(model, table):
    for m in model.modules():
        if isinstance(m, DistilBertPreTrainedModel):
            m.ops = table
    return model


def pair(class_name, tmp_path, dtype=None, **cfg):
    hf_model(class_name, seed=5, **cfg).save_pretrained(tmp_path)
    ref = getattr(dbf, class_name).from_pretrained(tmp_path, backend="torch").to(DEVICE)
    fast = getattr(dbf, class_name).from_pretrained(tmp_path, backend="torch", dtype=dtype).to(DEVICE)
    table, calls = counting_table()
    return ref, use_table(fast, table), calls


def make_inputs(*args, **kwargs):
    return tuple(t.to(DEVICE) for t in _make_inputs(*args, **kwargs))


FIELDS = ("logits", "start_logits", "end_logits", "last_hidden_state")


def compare(fast_out, ref_out, mask, rel, what):
    real = mask.bool()
    for name in FIELDS:
        rv = getattr(ref_out, name, None)
        if rv is None:
            continue
        fv = getattr(fast_out, name).float()
        if rv.dim() >= real.dim() and rv.shape[: real.dim()] == real.shape:  # per-token: real tokens only
            rv, fv = rv[real], fv[real]
        assert_close(fv, rv, rel=rel, what=f"{what} {name}")


@pytest.mark.parametrize(
    "class_name",
    ["DistilBertModel", "DistilBertForSequenceClassification", "DistilBertForTokenClassification"],
)
def test_cuda_graph_body_static_layout_equals_reference(class_name, tmp_path):
    # static_forward is what CudaGraphRunner captures: every padded slot is a row, keys limited by seqused.
    ref, fast, _ = pair(class_name, tmp_path)
    ids, mask = make_inputs(class_name, 4, 13, seed=8)
    mask[3] = 0  # a bucket-padding row (no tokens at all): finite, discarded by the runner
    with torch.inference_mode():
        r = ref(ids[:3], attention_mask=mask[:3])
        s = cuda_graphs.static_forward(fast, ids, mask)
    for name in FIELDS:
        sv = getattr(s, name, None)
        if sv is not None:
            assert torch.isfinite(sv).all()
    compare(
        type(s)(**{f: (v[:3] if isinstance(v, torch.Tensor) else v) for f, v in s.items()}),
        r,
        mask[:3],
        1e-4,
        "static",
    )
    assert fast.ops.name == "triton"  # the model's own table is restored afterwards


def test_availability_flags_and_table():
    import subprocess
    import sys

    assert T.AVAILABLE and T.IMPORT_ERROR is None
    table = dbf.ops.resolve_backend("triton")
    assert table.name == "triton" and table.packed
    if torch.cuda.is_available():
        return
    # without CUDA and without the interpreter: importable, unavailable, clear errors
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = (
        "import distilbert_fast.ops.triton as T\n"
        "assert not T.AVAILABLE, T.IMPORT_ERROR\n"
        "print(T.IMPORT_ERROR)\n"
        "from distilbert_fast import ops\n"
        "try:\n    ops.resolve_backend('triton')\nexcept RuntimeError as e:\n    print('raised:', e)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert out.returncode == 0, out.stderr
    assert "no CUDA device" in out.stdout
    assert "raised: backend='triton' was requested but is unavailable" in out.stdout


def test_cuda_graph_runner_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the runner is exercised by bench/bench_gpu.py")
    hf_model("DistilBertModel").save_pretrained(tmp_path)
    model = dbf.DistilBertModel.from_pretrained(tmp_path, backend="torch")
    with pytest.raises(RuntimeError, match="CUDA"):
        cuda_graphs.CudaGraphRunner(model)


def test_cuda_graph_runner_call_path_with_a_stand_in_graph(tmp_path, monkeypatch):
    # Everything of CudaGraphRunner but the capture itself: bucket choice, padding the inputs into the static
    # buffers, the eager fallback, slicing the static outputs. The stand-in "graph" replays by running the
    # captured body (static_forward) on the static buffers and copying into the static outputs.
    class StandInGraph:
        def __init__(self, runner, ids, mask, out):
            self.args = runner, ids, mask, out

        def replay(self):
            runner, ids, mask, out = self.args
            new = cuda_graphs.static_forward(runner.model, ids, mask, runner.table)
            for o, n in zip(getattr(out, "head_outputs", [out]), getattr(new, "head_outputs", [new])):
                for name, v in n.items():
                    getattr(o, name).copy_(v)

    def capture(self, bucket):
        ids = torch.zeros(bucket, dtype=torch.long, device=DEVICE)
        mask = torch.ones(bucket, dtype=torch.long, device=DEVICE)
        with torch.inference_mode():
            out = cuda_graphs.static_forward(self.model, ids, mask, self.table)
        return StandInGraph(self, ids, mask, out), ids, mask, out

    monkeypatch.setattr(cuda_graphs, "check_device", lambda model: None)
    monkeypatch.setattr(cuda_graphs.CudaGraphRunner, "capture", capture)
    for class_name in ("DistilBertForTokenClassification", "DistilBertForSequenceClassification"):
        ref, fast, _ = pair(class_name, tmp_path / class_name)
        runner = cuda_graphs.CudaGraphRunner(fast, buckets=((1, 8), (4, 16), (2, 32)))
        assert runner.bucket_for(3, 10) == (4, 16) and runner.bucket_for(1, 40) is None
        ids, mask = make_inputs(class_name, 3, 10, seed=9)
        with torch.inference_mode():
            r = ref(ids, attention_mask=mask)
        got = runner(ids, mask)  # padded into the (4, 16) bucket
        assert got.logits.shape == r.logits.shape
        compare(got, r, mask, 1e-4, f"runner {class_name}")
        assert (4, 16) in runner.graphs
        with pytest.warns(RuntimeWarning, match="right padding"):
            left = runner(ids, mask.flip(-1))  # left padding: eager forward, still exact
        with torch.inference_mode():
            assert_close(left.logits, ref(ids, attention_mask=mask.flip(-1)).logits, rel=1e-4, what="eager")


def test_cuda_graph_runner_multi_head_model_with_parallel_adapters(tmp_path, monkeypatch):
    # DistilBertModelWithHeads through the runner: the static body runs the active Parallel adapter setup
    # (the batch replicated at the first adapter layer, static layout included) and one head per channel; a
    # per-sequence head (classification) is sliced by sequence only, a per-token head (tagging) by token.
    model = parallel_heads_model(backend="torch")
    model.to(DEVICE)
    ids, mask = make_inputs("DistilBertModel", 3, 10, seed=11)
    with torch.inference_mode():
        ref = model(ids, attention_mask=mask)  # eager, reference ops
        fast = cuda_graphs.static_forward(model, *(torch.nn.functional.pad(t, (0, 6)) for t in (ids, mask)))
    sliced = cuda_graphs.slice_output(fast, 3, 10)
    assert isinstance(sliced, dbf.MultiHeadOutput) and len(sliced) == 2
    assert sliced[0].logits.shape == ref[0].logits.shape == (3, 3)
    assert sliced[1].logits.shape == ref[1].logits.shape == (3, 10, 5)
    assert_close(sliced[0].logits, ref[0].logits, rel=1e-4, what="multi-head classification")
    real = mask.bool()
    assert_close(sliced[1].logits[real], ref[1].logits[real], rel=1e-4, what="multi-head tagging")

    monkeypatch.setattr(cuda_graphs, "check_device", lambda model: None)
    runner = cuda_graphs.CudaGraphRunner(model, buckets=((4, 16),))
    key = runner.graph_key((4, 16))
    assert "Parallel" in key[2] and key[3] == ("a", "b")
    model.add_multiple_choice_head("mc", num_choices=2)
    model.active_head = "mc"
    with pytest.raises(NotImplementedError, match="multiple_choice"):
        cuda_graphs.check_graphable(model)
