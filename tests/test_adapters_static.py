"""Adapters on every static class (DistilBertModel and the five DistilBertFor* classes) against golden outputs
of the `adapters` library (1.3.0) with `adapters.init(model)` on transformers' static classes (issue 10,
item 2).

The golden files (tests/fixtures/adapters/static/) come from tests/fixtures/make_adapter_fixtures.py
(static_fixtures): a tiny random DistilBERT of every class with a seq_bn adapter "s", a double_seq_bn "d"
and a houlsby "h" (tanh), saved by the library's save_pretrained (adapter weights in model.safetensors,
"adapters" in config.json) and save_adapter (with the class's static head); every class x setup (none,
single seq_bn, single double_seq_bn, Stack, Parallel) output; and for a train_adapter setup per head class,
the library's loss and the gradient of every trainable parameter after one backward. Dropout is 0 in the
fixture config, so a training step is deterministic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # like test_backend_triton: before anything imports triton

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import assert_close, hf_model, make_inputs  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import distilbert_fast as dbf  # noqa: E402
from distilbert_fast import Parallel, Stack  # noqa: E402
from distilbert_fast.adapters import AdapterCompositionBlock  # noqa: E402
from distilbert_fast.ops import OpTable  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures" / "adapters" / "static"
META = json.loads((FIX / "cases.json").read_text())
INPUTS = load_file(str(FIX / "inputs.safetensors"))
EXPECTED = load_file(str(FIX / "expected.safetensors"))
CLASSES = META["classes"]
CASES = {f"{c['cls']}/{c['setup_id']}": c for c in META["cases"]}
HAS_CPP = "cpp" in dbf.available_backends()
FIELDS = {
    "DistilBertModel": ["last_hidden_state"],
    "DistilBertForQuestionAnswering": ["start_logits", "end_logits"],
}
LABELS = {
    "DistilBertForMaskedLM": lambda: {"labels": INPUTS["mlm_labels"]},
    "DistilBertForSequenceClassification": lambda: {"labels": INPUTS["seq_labels"]},
    "DistilBertForMultipleChoice": lambda: {"labels": INPUTS["mc_labels"]},
    "DistilBertForTokenClassification": lambda: {"labels": INPUTS["tok_labels"]},
    "DistilBertForQuestionAnswering": lambda: {
        "start_positions": INPUTS["start_positions"],
        "end_positions": INPUTS["end_positions"],
    },
}


def setup_of(d):
    return None if d is None else AdapterCompositionBlock.from_dict(d)


def inputs(cls_name: str, labels: bool = False) -> dict:
    mc = cls_name == "DistilBertForMultipleChoice"
    kw = {
        "input_ids": INPUTS["mc_ids" if mc else "ids"],
        "attention_mask": INPUTS["mc_mask" if mc else "mask"],
    }
    if labels:
        kw.update(LABELS[cls_name]())
    return kw


def load(cls_name: str, backend: str = "torch", **kw):
    return getattr(dbf, cls_name).from_pretrained(FIX / cls_name, backend=backend, **kw)


_MODELS: dict = {}


def cached(cls_name: str, backend: str):
    key = (cls_name, backend)
    if key not in _MODELS:
        _MODELS[key] = load(cls_name, backend)
    return _MODELS[key]


def check(cls_name: str, setup_id: str, out, real_only: bool, rel: float, what: str = "") -> None:
    """Compare a call's outputs with the library's, on every position or (packed paths) the real tokens."""
    mask = inputs(cls_name)["attention_mask"]
    real = mask.reshape(-1, mask.shape[-1]).bool()  # (B', S): the sequences the encoder ran
    for field in FIELDS.get(cls_name, ["logits"]):
        exp, act = EXPECTED[f"{cls_name}/{setup_id}/{field}"], out[field]
        assert act.shape == exp.shape, (
            f"{cls_name}/{setup_id} {field}: {tuple(act.shape)} != {tuple(exp.shape)}"
        )
        if (
            real_only
            and act.dim() >= 2
            and act.shape[0] % real.shape[0] == 0
            and act.shape[1] == real.shape[1]
        ):
            keep = real.repeat(act.shape[0] // real.shape[0], 1)  # Parallel: k copies of the batch
            act, exp = act[keep], exp[keep]
        assert_close(act.float(), exp, rel=rel, what=f"{what}{cls_name}/{setup_id} {field}")


# ---- golden parity: every class x setup, reference (every position) and cpp (packed, real tokens) ---------
def test_fixture_grid_is_complete():
    assert set(CLASSES) == set(dbf.modeling.MODEL_CLASSES)
    for cls_name in CLASSES:
        for setup_id in ("none", "seq_bn", "double_seq_bn", "stack"):
            assert f"{cls_name}/{setup_id}" in CASES
    assert sum(c["setup_id"] == "parallel" for c in CASES.values()) == 3
    assert set(META["train"]) == set(CLASSES) - {"DistilBertModel"}
    assert META["adapters_version"] == "1.3.0"


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("case_id", list(CASES))
def test_static_class_matches_adapters_library(case_id, backend):
    if backend == "cpp" and not HAS_CPP:
        pytest.skip("cpp backend unavailable")
    case = CASES[case_id]
    model = cached(case["cls"], backend)
    assert model.backend == backend and sorted(model.adapters_config) == ["d", "h", "s"]
    with torch.inference_mode():
        out = model(**inputs(case["cls"]), adapter_names=setup_of(case["setup"]))
    check(
        case["cls"],
        case["setup_id"],
        out,
        real_only=backend != "torch",
        rel=1e-5 if backend == "torch" else 1e-4,
    )


@pytest.mark.parametrize("cls_name", CLASSES)
def test_active_adapters_are_the_default(cls_name):
    model = load(cls_name)
    assert model.active_adapters is None
    model.set_active_adapters(Stack("s", "d"))
    assert model.active_adapters == Stack("s", "d") and model.base_model.active_adapters == Stack("s", "d")
    with torch.inference_mode():
        out = model(**inputs(cls_name))  # no adapter_names: the active setup
    check(cls_name, "stack", out, real_only=False, rel=1e-5)
    model.active_adapters = None  # the property setter, as the library
    with torch.inference_mode():
        out = model(**inputs(cls_name))
    check(cls_name, "none", out, real_only=False, rel=1e-5)


@pytest.mark.skipif(not HAS_CPP, reason="cpp backend unavailable")
def test_cpp_static_adapters_run_packed_through_the_op_table():
    """On cpp the adapter GEMMs get only the real-token rows (ops.linear), one row block per Parallel channel."""
    model = load("DistilBertForTokenClassification", "cpp")
    ops, rows = model.ops, []
    table = OpTable(
        **{
            **ops.__dict__,
            "linear": lambda lin, x, act=None: (rows.append((lin, x.shape[0])), ops.linear(lin, x, act))[1],
        }
    )
    saved = [(m, m.ops) for m in model.modules() if isinstance(m, dbf.DistilBertPreTrainedModel)]
    try:
        for m, _ in saved:
            m.ops = table
        with torch.inference_mode():
            out = model(**inputs("DistilBertForTokenClassification"), adapter_names=Parallel("d", "h"))
    finally:
        for m, o in saved:
            m.ops = o
    check("DistilBertForTokenClassification", "parallel", out, real_only=True, rel=1e-4)
    n_real = int(INPUTS["mask"].sum())
    ups = {
        id(a.adapter_up): n
        for block in model.distilbert.transformer.layer
        for loc in (block.attention_adapters, block.output_adapters)
        for n, a in loc.adapters.items()
    }
    seen = [(ups[id(lin)], n) for lin, n in rows if id(lin) in ups]
    assert seen == [("d", n_real), ("h", n_real)] * 4, seen  # 2 layers x 2 locations, each channel its rows


@pytest.fixture(scope="module")
def triton_table():
    pytest.importorskip("triton", reason="triton is not installed")
    import distilbert_fast.ops.triton as T

    if not T.AVAILABLE:
        pytest.skip(f"triton backend unavailable: {T.IMPORT_ERROR}")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("runs the Triton kernels on CPU tensors under TRITON_INTERPRET=1")
    return OpTable(
        name="triton",
        packed=True,
        **{
            n: getattr(T, n)
            for n in ("embeddings", "qkv", "linear", "add_layer_norm", "layer_norm", "attention")
        },
    )


@pytest.mark.parametrize(
    "case_id", ["DistilBertForSequenceClassification/stack", "DistilBertForQuestionAnswering/double_seq_bn"]
)
def test_triton_static_class_matches_adapters_library(triton_table, case_id):
    case = CASES[case_id]
    model = load(case["cls"])
    for m in model.modules():
        if isinstance(m, dbf.DistilBertPreTrainedModel):
            m.ops = triton_table
    with torch.inference_mode():
        out = model(**inputs(case["cls"]), adapter_names=setup_of(case["setup"]))
    check(case["cls"], case["setup_id"], out, real_only=True, rel=1e-4, what="triton ")


def test_cuda_graph_body_runs_the_active_adapters(triton_table):
    """static_forward (what CudaGraphRunner captures) runs a static class's active adapters, like eager."""
    from distilbert_fast import cuda_graphs

    model = load("DistilBertForSequenceClassification")
    model.set_active_adapters("d")
    with torch.inference_mode():
        out = cuda_graphs.static_forward(model, INPUTS["ids"], INPUTS["mask"], triton_table)
    check("DistilBertForSequenceClassification", "double_seq_bn", out, real_only=False, rel=1e-4)
    model.set_active_adapters(Parallel("d", "h"))
    with pytest.raises(NotImplementedError, match="Parallel"):
        cuda_graphs.check_graphable(model)


# ---- train_adapter: the library's trainable set, loss and gradients; steps move only what it trains -------
@pytest.mark.parametrize("cls_name", sorted(META["train"]))
def test_train_adapter_gives_the_library_gradients(cls_name):
    spec = META["train"][cls_name]
    model = load(cls_name)
    model.train_adapter(setup_of(spec["setup"]))
    assert model.training and model.active_adapters == setup_of(spec["setup"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(spec["trainable"])
    out = model(**inputs(cls_name, labels=True))
    assert_close(out.loss.detach().reshape(1), EXPECTED[f"train/{cls_name}/loss"], rel=1e-5, what="loss")
    out.loss.backward()
    for n, p in model.named_parameters():
        if n in trainable:
            # gradients of a tiny fp32 model through two layers: 1e-5 of the largest gradient entry
            assert_close(
                p.grad, EXPECTED[f"train/{cls_name}/grad/{n}"], rel=1e-5, what=f"{cls_name} grad {n}"
            )
        else:
            assert p.grad is None, n


@pytest.mark.parametrize("cls_name", sorted(META["train"]))
def test_train_adapter_steps_change_only_the_trained_weights(cls_name):
    spec = META["train"][cls_name]
    model = load(cls_name)
    model.train_adapter(setup_of(spec["setup"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(**inputs(cls_name, labels=True)).loss.backward()
        opt.step()
    trained = set(spec["trainable"])
    # qa_outputs.bias adds the same value at every position of the softmax over positions: zero gradient
    moves = trained - {"qa_outputs.bias"}
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) == (n not in moves), n
    names = setup_of(spec["setup"]).flatten()
    assert any(f".adapters.{a}." in n for n in trained for a in names)
    # the other adapters (and the base model) stayed frozen
    assert not any(".adapters.h." in n for n in trained)


def test_train_adapter_on_the_base_model_and_train_embeddings():
    model = load("DistilBertModel")
    model.train_adapter("s")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.s." in n for n in trainable)
    mlm = load("DistilBertForMaskedLM")
    mlm.train_adapter("d", train_embeddings=True)
    assert mlm.distilbert.embeddings.word_embeddings.weight.requires_grad  # = the tied projector
    mlm.train_adapter("d")  # as the library: the tied projector (weight and bias) frozen
    assert not mlm.vocab_projector.weight.requires_grad and not mlm.vocab_projector.bias.requires_grad
    assert mlm.vocab_transform.weight.requires_grad
    summary = mlm.adapter_summary(as_dict=True)
    rows = {r["name"]: r for r in summary}
    assert rows["d"]["train"] and not rows["s"]["train"] and rows["d"]["active"] and not rows["s"]["active"]
    assert not rows["Full model"]["train"]
    mlm.freeze_model(False)
    assert all(p.requires_grad for p in mlm.distilbert.parameters())


# ---- the "Must show": a fine-tuning round trip on a static class ----------------------------------
def test_fine_tuning_round_trip_on_a_static_class(tmp_path):
    """A saved 3-label classifier loaded with num_labels=5 (ignore_mismatched_sizes, as transformers), two
    train_adapter steps, save_adapter (with the class's static head), load_adapter into a fresh model: same
    outputs, on the reference path and on the packed cpp path."""
    hf = hf_model("DistilBertForSequenceClassification", seed=6, id2label={0: "a", 1: "b", 2: "c"})
    hf.save_pretrained(tmp_path / "clf")
    cls = dbf.DistilBertForSequenceClassification
    model = cls.from_pretrained(tmp_path / "clf", num_labels=5, ignore_mismatched_sizes=True, backend="torch")
    assert model.classifier.out_features == 5 and model.config.num_labels == 5
    model.add_adapter("task", config="seq_bn")
    model.add_adapter("other", config="double_seq_bn")
    model.train_adapter("task")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        n for n, _ in model.named_parameters() if ".adapters.task." in n or not n.startswith("distilbert.")
    }
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    ids, mask = make_inputs("DistilBertModel", 4, 9, seed=8)
    labels = torch.tensor([0, 4, 2, 1])
    for _ in range(2):
        opt.zero_grad()
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        assert (not torch.equal(p, before[n])) == (n in trainable), n
    model.save_adapter(tmp_path / "task", "task")
    files = sorted(f.name for f in (tmp_path / "task").iterdir())
    assert files == [
        "adapter_config.json",
        "head_config.json",
        "pytorch_adapter.bin",
        "pytorch_model_head.bin",
    ]
    head_cfg = json.loads((tmp_path / "task" / "head_config.json").read_text())
    assert head_cfg["model_class"] == "DistilBertForSequenceClassification" and head_cfg["num_labels"] == 5
    model.eval()
    with torch.inference_mode():
        expected = model(ids, attention_mask=mask, adapter_names="task").logits
    for backend in ["torch"] + (["cpp"] if HAS_CPP else []):
        fresh = cls.from_pretrained(
            tmp_path / "clf", num_labels=5, ignore_mismatched_sizes=True, backend=backend
        )
        assert fresh.load_adapter(tmp_path / "task", set_active=True) == "task"
        assert fresh.active_adapters == Stack("task")
        with torch.inference_mode():
            got = fresh(ids, attention_mask=mask).logits
        assert_close(got, expected, rel=1e-5 if backend == "torch" else 1e-4, what=f"reloaded on {backend}")


# ---- the library's folders and whole-model files ----------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_library_adapter_folders_load_into_every_class(backend):
    if backend == "cpp" and not HAS_CPP:
        pytest.skip("cpp backend unavailable")
    real_only, rel = backend != "torch", 1e-5 if backend == "torch" else 1e-4
    # the classifier's own folder: adapter + static head (zeroed first, so the folder must restore it)
    model = load("DistilBertForSequenceClassification", backend)
    model.delete_adapter("d")
    with torch.no_grad():
        model.classifier.weight.zero_()
    assert model.load_adapter(FIX / "adapter_d_DistilBertForSequenceClassification") == "d"
    with torch.inference_mode():
        out = model(**inputs("DistilBertForSequenceClassification"), adapter_names="d")
    check("DistilBertForSequenceClassification", "double_seq_bn", out, real_only, rel)
    # a base model's folder (keys without "distilbert.") into a head class, and a head class's into the base
    for cls_name, folder in (
        ("DistilBertForTokenClassification", "adapter_d_DistilBertModel"),
        ("DistilBertModel", "adapter_d_DistilBertForSequenceClassification"),
        ("DistilBertForMaskedLM", "adapter_d_DistilBertForMaskedLM"),  # static MLM head, tied projector
    ):
        model = load(cls_name, backend)
        model.delete_adapter("d")
        assert model.load_adapter(FIX / folder, load_as="d") == "d"
        with torch.inference_mode():
            out = model(**inputs(cls_name), adapter_names="d")
        check(cls_name, "double_seq_bn", out, real_only, rel, what=f"{folder} -> ")


def test_static_class_folder_loads_into_the_multi_head_model():
    """The library's folder of a static classifier's adapter: the multi-head model turns its head into a flex
    head named like the adapter (the library's static-to-flex conversion) and gives the classifier's outputs."""
    multi = dbf.DistilBertModelWithHeads.from_pretrained(FIX / "DistilBertModel", backend="torch")
    multi.delete_adapter("d")
    assert multi.load_adapter(FIX / "adapter_d_DistilBertForSequenceClassification", set_active=True) == "d"
    assert multi.heads["d"].config["head_type"] == "classification" and multi.active_head == "d"
    with torch.inference_mode():
        out = multi(**inputs("DistilBertForSequenceClassification"))
    check("DistilBertForSequenceClassification", "double_seq_bn", out, False, 1e-5)


def test_another_class_head_is_skipped_with_a_warning(caplog):
    model = load("DistilBertForTokenClassification")
    model.delete_adapter("d")
    classifier = model.classifier.weight.detach().clone()
    with caplog.at_level("WARNING", logger="distilbert_fast"):
        model.load_adapter(FIX / "adapter_d_DistilBertForSequenceClassification")
    assert "does not match" in caplog.text and torch.equal(model.classifier.weight, classifier)
    with torch.inference_mode():
        out = model(**inputs("DistilBertForTokenClassification"), adapter_names="d")
    check("DistilBertForTokenClassification", "double_seq_bn", out, False, 1e-5)


def test_save_formats_match_the_library(tmp_path):
    model = load("DistilBertForSequenceClassification")
    model.save_adapter(tmp_path / "d", "d")
    lib = FIX / "adapter_d_DistilBertForSequenceClassification"
    for name in ("pytorch_adapter.bin", "pytorch_model_head.bin"):
        ours = torch.load(tmp_path / "d" / name, weights_only=True)
        theirs = torch.load(lib / name, weights_only=True)
        assert set(ours) == set(theirs), name
        for k in theirs:
            assert torch.equal(ours[k], theirs[k]), k
    for name in ("adapter_config.json", "head_config.json"):
        ours = json.loads((tmp_path / "d" / name).read_text())
        theirs = json.loads((lib / name).read_text())
        ours.pop("model_name"), theirs.pop("model_name")  # the path each was loaded from
        assert ours == theirs, name
    # whole model: the library's keys and "adapters" entry; from_pretrained gives the model back
    model.save_pretrained(tmp_path / "whole")
    assert set(load_file(str(tmp_path / "whole" / "model.safetensors"))) == set(
        load_file(str(FIX / "DistilBertForSequenceClassification" / "model.safetensors"))
    )
    cfg = json.loads((tmp_path / "whole" / "config.json").read_text())
    lib_cfg = json.loads((FIX / "DistilBertForSequenceClassification" / "config.json").read_text())
    assert cfg["adapters"]["adapters"] == lib_cfg["adapters"]["adapters"]
    assert cfg["adapters"]["config_map"] == lib_cfg["adapters"]["config_map"]
    model.delete_adapter("h")
    model.save_pretrained(tmp_path / "fewer")
    back = dbf.DistilBertForSequenceClassification.from_pretrained(tmp_path / "fewer", backend="torch")
    assert sorted(back.adapters_config) == ["d", "s"]
    with torch.inference_mode():
        out = back(**inputs("DistilBertForSequenceClassification"), adapter_names=Stack("s", "d"))
    check("DistilBertForSequenceClassification", "stack", out, False, 1e-5)


# ---- the API on every class ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls_name", CLASSES)
def test_adapter_methods_on_every_class(cls_name):
    cls = getattr(dbf, cls_name)
    model = cls(
        dbf.DistilBertConfig(vocab_size=50, dim=32, n_heads=4, n_layers=2, hidden_dim=48), backend="torch"
    ).eval()
    assert not model.has_adapters() and model.active_adapters is None
    model.add_adapter("a", config="seq_bn", reduction_factor=4)
    model.add_adapter("b", config="double_seq_bn[reduction_factor=8]", set_active=True)
    assert model.active_adapters == Stack("b") and model.base_model.adapters_config is model.adapters_config
    with pytest.raises(ValueError, match="already been added"):
        model.add_adapter("a")
    with torch.no_grad():  # visible adapters (bert init makes them tiny)
        for n, p in model.named_parameters():
            if ".adapters." in n:
                p.normal_(0, 0.5)
    ids = torch.randint(1, 50, (2, 3, 6) if cls_name == "DistilBertForMultipleChoice" else (2, 6))
    field = FIELDS.get(cls_name, ["logits"])[0]
    with torch.inference_mode():
        active = model(ids)[field]
        named = model(ids, adapter_names="b")[field]
        plain = model(ids, adapter_names=None)[field]  # None = the active setup, as the library
        with pytest.warns(FutureWarning, match="deprecated"):  # as the library
            stacked = model(ids, adapter_names=["a", "b"])[field]  # a list is a Stack
    assert torch.equal(active, named) and torch.equal(active, plain)
    model.set_active_adapters(None)
    with torch.inference_mode():
        base = model(ids)[field]
    assert not torch.allclose(base, named) and not torch.allclose(stacked, named)
    with pytest.raises(ValueError, match="No adapter"):
        model(ids, adapter_names="nope")
    rows = model.adapter_summary(as_dict=True)
    n_a = sum(p.numel() for n, p in model.named_parameters() if ".adapters.a." in n)
    assert [r["name"] for r in rows] == ["a", "b", "Full model"] and rows[0]["#param"] == n_a
    text = model.adapter_summary()
    assert "bottleneck" in text and "Full model" in text
    model.freeze_model()
    assert not any(p.requires_grad for p in model.base_model.parameters())
    model.freeze_model(False)
    model.set_active_adapters("a")
    model.delete_adapter("a")
    assert model.active_adapters is None and "a" not in model.adapters_config
    assert not any(".adapters.a." in n for n, _ in model.named_parameters())
    if cls_name in ("DistilBertForSequenceClassification", "DistilBertForTokenClassification"):
        model.add_adapter("c", config="double_seq_bn")
        labels = torch.zeros((2,) if "Sequence" in cls_name else (2, 6), dtype=torch.long)
        with torch.inference_mode():
            out = model(ids, adapter_names=Parallel("b", "c"))  # no labels: one copy per channel
            assert out.logits.shape[0] == 4
            with pytest.raises(ValueError, match="Parallel"):
                model(ids, adapter_names=Parallel("b", "c"), labels=labels)


def test_multi_head_model_shares_the_implementation():
    from distilbert_fast.adapters import ModelAdaptersMixin

    for cls in [dbf.DistilBertModelWithHeads, *(getattr(dbf, c) for c in CLASSES)]:
        assert issubclass(cls, ModelAdaptersMixin)
        for method in (
            "add_adapter",
            "delete_adapter",
            "train_adapter",
            "freeze_model",
            "adapter_summary",
            "save_adapter",
            "load_adapter",
        ):
            assert getattr(cls, method) is getattr(ModelAdaptersMixin, method), (cls, method)
