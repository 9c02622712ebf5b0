"""The whole model through the triton op table (padding-free, packed rows) against the reference path: every
head class on tiny random transformers checkpoints, masks, head_mask, inputs_embeds, 16-bit weights, the
CUDA-graph body (static layout), and the real all-MiniLM-L6-v2 weights.

Runs under TRITON_INTERPRET=1 (set below, before anything imports triton) on CPU: slow per kernel, so the
configs are tiny; each test also asserts that the triton kernels really ran (a call counter wraps the table).
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import collections  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="triton is not installed (pip install 'distilbert_fast[triton]')")

import distilbert_fast as dbf  # noqa: E402
import distilbert_fast.ops.triton as T  # noqa: E402
from conftest import HEADS, assert_close, hf_model  # noqa: E402
from distilbert_fast.modeling import DistilBertPreTrainedModel  # noqa: E402
from distilbert_fast.ops import OpTable  # noqa: E402
from distilbert_fast.ops.triton import _utils  # noqa: E402
from test_loading import SENTENCES  # noqa: E402
from test_modeling import make_inputs as _make_inputs  # noqa: E402

if not T.AVAILABLE:
    pytest.skip(f"triton backend unavailable: {T.IMPORT_ERROR}", allow_module_level=True)
if not _utils.INTERPRET and not torch.cuda.is_available():
    pytest.skip("distilbert_fast.ops.triton was imported before TRITON_INTERPRET=1 was set and there is no "
                "GPU: set TRITON_INTERPRET=1 in the environment (or in conftest.py)", allow_module_level=True)

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
        if rv.dim() >= real.dim() and rv.shape[:real.dim()] == real.shape:  # per-token: real tokens only
            rv, fv = rv[real], fv[real]
        assert_close(fv, rv, rel=rel, what=f"{what} {name}")


@pytest.mark.parametrize("cfg", [dict(activation="gelu"), dict(activation="gelu_new", dim=64, n_heads=2)],
                         ids=["gelu-hd8", "gelu_new-hd32"])
@pytest.mark.parametrize("class_name", HEADS)
def test_triton_equals_reference_fp32(class_name, cfg, tmp_path):
    ref, fast, calls = pair(class_name, tmp_path, **cfg)
    ids, mask = make_inputs(class_name, 3, 19, seed=3)  # mixed lengths, right padding
    with torch.inference_mode():
        r, f = ref(ids, attention_mask=mask), fast(ids, attention_mask=mask)
    compare(f, r, mask, 1e-4, class_name)
    n_layers = fast.config.n_layers
    assert calls["embeddings"] == 1 and calls["qkv"] == calls["attention"] == n_layers
    assert calls["add_layer_norm"] == 2 * n_layers


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_triton_other_activations_and_sinusoidal(activation, tmp_path):
    ref, fast, calls = pair("DistilBertForMaskedLM", tmp_path, activation=activation,
                            sinusoidal_pos_embds=True)
    ids, mask = make_inputs("DistilBertForMaskedLM", 2, 11, seed=1)
    with torch.inference_mode():
        compare(fast(ids, attention_mask=mask), ref(ids, attention_mask=mask), mask, 1e-4, activation)
    assert calls["layer_norm"] == 1  # the MLM head's vocab_layer_norm


def test_triton_single_token_no_mask_head_mask_and_inputs_embeds(tmp_path):
    ref, fast, calls = pair("DistilBertModel", tmp_path, dim=64, n_heads=2)
    with torch.inference_mode():
        ids = torch.randint(1, 101, (1, 1), device=DEVICE)  # length 1, no mask
        assert_close(fast(ids)[0], ref(ids)[0], rel=1e-4, what="1 token")
        ids, mask = make_inputs("DistilBertModel", 3, 17, seed=2)
        hm = torch.tensor([[1.0, 0.0], [0.5, 1.0]], device=DEVICE)  # per-layer head mask, one head fully off
        assert_close(fast(ids, attention_mask=mask, head_mask=hm)[0][mask.bool()],
                     ref(ids, attention_mask=mask, head_mask=hm)[0][mask.bool()], rel=1e-4, what="head_mask")
        embeds = torch.randn(3, 17, 64, device=DEVICE)
        assert_close(fast(inputs_embeds=embeds, attention_mask=mask)[0][mask.bool()],
                     ref(inputs_embeds=embeds, attention_mask=mask)[0][mask.bool()], rel=1e-4,
                     what="inputs_embeds")
    assert calls["embeddings"] == 3


def test_triton_fallbacks_left_padding_fully_masked_and_training(tmp_path):
    ref, fast, calls = pair("DistilBertForSequenceClassification", tmp_path)
    ids, mask = make_inputs("DistilBertModel", 3, 9, seed=4)
    with torch.inference_mode():
        left = mask.flip(-1)  # left padding: the model runs the padded reference path for this batch
        assert_close(fast(ids, attention_mask=left).logits, ref(ids, attention_mask=left).logits, rel=1e-4,
                     what="left padding")
        mask[1] = 0  # a fully masked row: finite output
        out = fast.distilbert(ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(out).all()
    fast.train()  # grad needed: reference ops, autograd works
    fast(ids, attention_mask=mask, labels=torch.tensor([0, 1, 1], device=DEVICE)).loss.backward()
    assert fast.classifier.weight.grad is not None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("class_name", ["DistilBertModel", "DistilBertForQuestionAnswering"])
def test_triton_16bit_close_to_fp32(class_name, dtype, tmp_path):
    ref, fast, _ = pair(class_name, tmp_path, dtype=dtype, dim=64, n_heads=2)
    assert fast.dtype == dtype
    ids, mask = make_inputs(class_name, 3, 33, seed=6)
    with torch.inference_mode():
        r, f = ref(ids, attention_mask=mask), fast(ids, attention_mask=mask)
    real = mask.bool()
    for name in FIELDS:
        rv = getattr(r, name, None)
        if rv is None:
            continue
        fv = getattr(f, name).float()
        assert torch.isfinite(fv).all()
        if name == "last_hidden_state":
            cos = torch.nn.functional.cosine_similarity(fv[real], rv[real], dim=-1)
            assert cos.min() >= 0.999, f"{dtype} last_hidden_state cosine {cos.min():.5f}"
        else:
            cos = torch.nn.functional.cosine_similarity(fv[real], rv[real], dim=0)
            assert cos >= 0.99, f"{name} cosine {cos:.4f}"


@pytest.mark.parametrize("class_name", ["DistilBertModel", "DistilBertForSequenceClassification",
                                        "DistilBertForTokenClassification"])
def test_cuda_graph_body_static_layout_equals_reference(class_name, tmp_path):
    # static_forward is what CudaGraphRunner captures: every padded slot is a row, keys limited by seqused.
    ref, fast, _ = pair(class_name, tmp_path)
    ids, mask = make_inputs(class_name, 4, 13, seed=8)
    mask[3] = 0  # a bucket-padding row (no tokens at all): finite, discarded by the runner
    with torch.inference_mode():
        r = ref(ids[:3], attention_mask=mask[:3])
        s = T.static_forward(fast, ids, mask)
    for name in FIELDS:
        sv = getattr(s, name, None)
        if sv is not None:
            assert torch.isfinite(sv).all()
    compare(type(s)(**{f: (v[:3] if isinstance(v, torch.Tensor) else v) for f, v in s.items()}), r, mask[:3],
            1e-4, "static")
    assert fast.ops.name == "triton"  # the model's own table is restored afterwards


def test_availability_flags_and_table():
    import subprocess
    import sys

    assert T.AVAILABLE and T.IMPORT_ERROR is None
    table = T.op_table()
    assert table.name == "triton" and table.packed
    if torch.cuda.is_available():
        return
    # without CUDA and without the interpreter: importable, unavailable, clear errors
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import distilbert_fast.ops.triton as T\n"
            "assert not T.AVAILABLE, T.IMPORT_ERROR\n"
            "print(T.IMPORT_ERROR)\n"
            "try:\n    T.op_table()\nexcept RuntimeError as e:\n    print('raised:', e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert "no CUDA device" in out.stdout and "raised: the triton backend is unavailable" in out.stdout


def test_cuda_graph_runner_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the runner is exercised by bench/bench_gpu.py")
    hf_model("DistilBertModel").save_pretrained(tmp_path)
    model = dbf.DistilBertModel.from_pretrained(tmp_path, backend="torch")
    with pytest.raises(RuntimeError, match="CUDA"):
        T.CudaGraphRunner(model)


def test_cuda_graph_runner_call_path_with_a_stand_in_graph(tmp_path, monkeypatch):
    # Everything of CudaGraphRunner but the capture itself: bucket choice, padding the inputs into the static
    # buffers, the eager fallback, slicing the static outputs. The stand-in "graph" replays by running the
    # captured body (static_forward) on the static buffers and copying into the static outputs.
    from distilbert_fast.ops.triton import cuda_graphs

    class StandInGraph:
        def __init__(self, runner, ids, mask, out):
            self.args = runner, ids, mask, out

        def replay(self):
            runner, ids, mask, out = self.args
            new = cuda_graphs.static_forward(runner.model, ids, mask, runner.table)
            for name, v in new.items():
                getattr(out, name).copy_(v)

    def capture(self, bucket):
        ids = torch.zeros(bucket, dtype=torch.long, device=DEVICE)
        mask = torch.ones(bucket, dtype=torch.long, device=DEVICE)
        with torch.inference_mode():
            out = cuda_graphs.static_forward(self.model, ids, mask, self.table)
        return StandInGraph(self, ids, mask, out), ids, mask, out

    monkeypatch.setattr(cuda_graphs, "_check_device", lambda model: None)
    monkeypatch.setattr(cuda_graphs.CudaGraphRunner, "_capture", capture)
    for class_name in ("DistilBertForTokenClassification", "DistilBertForSequenceClassification"):
        ref, fast, _ = pair(class_name, tmp_path / class_name)
        runner = T.CudaGraphRunner(fast, buckets=((1, 8), (4, 16), (2, 32)))
        assert runner.bucket_for(3, 10) == (4, 16) and runner.bucket_for(1, 40) is None
        ids, mask = make_inputs(class_name, 3, 10, seed=9)
        with torch.inference_mode():
            r = ref(ids, attention_mask=mask)
        got = runner(ids, mask)  # padded into the (4, 16) bucket
        assert got.logits.shape == r.logits.shape
        compare(got, r, mask, 1e-4, f"runner {class_name}")
        assert (4, 16) in runner._graphs
        with pytest.warns(RuntimeWarning, match="right padding"):
            left = runner(ids, mask.flip(-1))  # left padding: eager forward, still exact
        with torch.inference_mode():
            assert_close(left.logits, ref(ids, attention_mask=mask.flip(-1)).logits, rel=1e-4, what="eager")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_triton_real_minilm(minilm_dir, dtype):
    tok = dbf.DistilBertTokenizer.from_pretrained(minilm_dir)
    enc = tok(SENTENCES[:4], padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"].to(DEVICE), enc["attention_mask"].to(DEVICE)
    ref = dbf.DistilBertModel.from_pretrained(minilm_dir, backend="torch").to(DEVICE)
    fast = dbf.DistilBertModel.from_pretrained(minilm_dir, backend="torch", dtype=dtype).to(DEVICE)
    table, calls = counting_table()
    use_table(fast, table)
    with torch.inference_mode():
        r = ref(ids, attention_mask=mask)[0][mask.bool()]
        f = fast(ids, attention_mask=mask)[0][mask.bool()].float()
    assert calls["attention"] == 6
    if dtype == torch.float32:
        assert_close(f, r, rel=1e-4, what="MiniLM triton fp32")
    else:
        assert torch.nn.functional.cosine_similarity(f, r, dim=-1).min() >= 0.999
