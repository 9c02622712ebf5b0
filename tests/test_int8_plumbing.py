"""quantize="int8" end to end: from_pretrained, save -> load round trip, pipelines, optimize(), the CLI and
the multi-head model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import hf_model
from safetensors.torch import load_file

import distilbert_fast as dbf
from distilbert_fast.ops import int8

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, minilm_dir):
    from distilbert_fast import DistilBertTokenizer

    root = tmp_path_factory.mktemp("int8")
    hf_model("DistilBertForSequenceClassification", seed=3, vocab_size=30522, num_labels=3).save_pretrained(
        root
    )
    DistilBertTokenizer.from_pretrained(minilm_dir).save_pretrained(root)
    return root


def _ids():
    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (3, 17))
    mask = torch.ones(3, 17, dtype=torch.long)
    mask[1, 9:] = 0
    return ids, mask


def test_from_pretrained_quantize_save_load_bit_identical(ckpt, tmp_path):
    fp = dbf.DistilBertForSequenceClassification.from_pretrained(ckpt)
    q = dbf.DistilBertForSequenceClassification.from_pretrained(ckpt, quantize="int8")
    ids, mask = _ids()
    with torch.no_grad():
        a, b = fp(ids, attention_mask=mask).logits, q(ids, attention_mask=mask).logits
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=5e-2)  # int8 ran, and stays close

    q.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "distilbert_fast_int8"
    state = load_file(tmp_path / "model.safetensors")
    key = "distilbert.transformer.layer.0.ffn.lin1"
    assert state[key + ".weight_int8"].dtype == torch.int8 and key + ".weight" not in state
    assert state[key + ".weight_scale"].dtype == torch.float32

    back = dbf.DistilBertForSequenceClassification.from_pretrained(tmp_path)  # no re-quantization
    for name, t in q.state_dict().items():
        assert torch.equal(t, back.state_dict()[name]), name
    with torch.no_grad():
        assert torch.equal(back(ids, attention_mask=mask).logits, b)
    with pytest.raises(ValueError, match="quantize must be"):
        dbf.DistilBertModel.from_pretrained(ckpt, quantize="int4")


def test_pipeline_and_bf16(ckpt):
    from distilbert_fast.pipelines import pipeline

    texts = ["a fine film", "a terrible, long and boring film with no plot at all"]
    fp = pipeline("text-classification", model=str(ckpt))(texts)
    q = pipeline("text-classification", model=str(ckpt), quantize="int8")(texts)
    assert [r["label"] for r in fp] == [r["label"] for r in q]
    model = dbf.DistilBertForSequenceClassification.from_pretrained(ckpt)
    qb = pipeline("text-classification", model=model, quantize="int8", dtype=torch.bfloat16)(texts)
    assert int8.is_quantized_config(model.config) and model.dtype == torch.bfloat16
    assert all(abs(x["score"] - y["score"]) < 5e-2 for x, y in zip(fp, qb))


def test_optimize_quantize(ckpt):
    from distilbert_fast.hf import optimize

    hf = hf_model("DistilBertModel", seed=5, vocab_size=30522)
    ids, mask = _ids()
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).last_hidden_state
        optimize(hf, quantize="int8")
        got = hf(ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert not torch.equal(ref, got)
    assert torch.nn.functional.cosine_similarity(ref[keep], got[keep]).min() > 0.99


def test_multi_head_model_int8():
    from distilbert_fast.heads import DistilBertModelWithHeads

    torch.manual_seed(0)
    cfg = dbf.DistilBertConfig(vocab_size=2000, dim=64, n_heads=4, n_layers=2, hidden_dim=96)
    model = DistilBertModelWithHeads(cfg).eval()
    model.add_classification_head("a", num_labels=2)
    model.add_tagging_head("b", num_labels=3)
    ids, mask = _ids()
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, head="a").logits
        int8.quantize_model_(model)
        model.prepare_for_inference()
        got = model(ids, attention_mask=mask, head="a").logits
        tags = model(ids, attention_mask=mask, head="b").logits
    assert not torch.equal(ref, got) and torch.allclose(ref, got, atol=5e-2)
    assert torch.isfinite(tags).all()


def test_cli_run_quantize(ckpt, tmp_path):
    inp, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    inp.write_text("a fine film\nan awful film\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "distilbert_fast",
            "run",
            "text-classification",
            "--model",
            str(ckpt),
            "--input",
            str(inp),
            "--output",
            str(out),
            "--quantize",
            "int8",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all("label" in str(r["result"]) for r in rows)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "distilbert_fast",
            "run",
            "text-classification",
            "--model",
            str(ckpt),
            "--input",
            str(inp),
            "--output",
            str(tmp_path / "x.jsonl"),
            "--quantize",
            "int4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "--quantize" in bad.stderr


def test_cli_convert_and_bench_quantize(ckpt, tmp_path, capsys):
    """`--quantize int8` on convert writes the int8 checkpoint from_pretrained(quantize="int8") saves; on
    bench it times the int8 model."""
    from distilbert_fast.cli import main

    dst = tmp_path / "q"
    assert main(["convert", str(ckpt), str(dst), "--quantize", "int8"]) == 0
    assert "int8 GEMMs" in capsys.readouterr().err
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "distilbert_fast_int8"
    converted = dbf.DistilBertForSequenceClassification.from_pretrained(dst)
    direct = dbf.DistilBertForSequenceClassification.from_pretrained(ckpt, quantize="int8")
    ids, mask = _ids()
    with torch.no_grad():
        assert torch.equal(
            converted(ids, attention_mask=mask).logits, direct(ids, attention_mask=mask).logits
        )
    texts = tmp_path / "t.txt"
    texts.write_text("a fine film\nan awful film\n", encoding="utf-8")
    assert (
        main(["bench", "--model", str(ckpt), "--input", str(texts), "--runs", "1", "--quantize", "int8"]) == 0
    )
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("distilbert_fast"))
    assert "float32+int8" in line
