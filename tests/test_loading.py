"""from_pretrained / save_pretrained at the model level: round trips with transformers, flexible heads,
strict encoder, sharded/.bin formats, hub cache ids, BERT conversion on the real MiniLM weights."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from helpers import HEADS, SENTENCES, assert_close, hf_model, make_inputs, small_config

import distilbert_fast as dbf
from distilbert_fast.checkpoint import CheckpointError


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    # This file pins down transformers-exact semantics (pad positions included) on the reference path;
    # the fused backends are compared against it in test_backend_*.py.
    monkeypatch.setenv("DISTILBERT_FAST_BACKEND", "torch")


@pytest.mark.parametrize("class_name", HEADS)
def test_round_trip_ours_to_transformers_and_back(class_name, tmp_path):
    import transformers

    torch.manual_seed(0)
    ours = getattr(dbf, class_name)(dbf.DistilBertConfig(**small_config(activation="gelu_new"))).eval()
    ours.save_pretrained(tmp_path / "a")
    hf = getattr(transformers, class_name).from_pretrained(tmp_path / "a", attn_implementation="eager").eval()
    hf.save_pretrained(tmp_path / "b")
    back = getattr(dbf, class_name).from_pretrained(tmp_path / "b")
    ids, mask = make_inputs(class_name, 2, 9, seed=3)
    with torch.no_grad():
        a, h, b = (
            m(input_ids=ids, attention_mask=mask).to_tuple()
            if isinstance(m, dbf.DistilBertPreTrainedModel)
            else m(input_ids=ids, attention_mask=mask).to_tuple()
            for m in (ours, hf, back)
        )
    for x, y, z in zip(a, h, b):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_sharded_and_bin_formats(tmp_path):
    hf = hf_model("DistilBertForMaskedLM", seed=2)
    hf.save_pretrained(tmp_path / "ref")
    ref = dbf.DistilBertForMaskedLM.from_pretrained(tmp_path / "ref")
    ref.save_pretrained(tmp_path / "sharded", max_shard_size=20_000)
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ref.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin").exists()
    ids, mask = make_inputs("DistilBertModel", 2, 8, seed=1)
    with torch.no_grad():
        expect = hf(ids, attention_mask=mask).logits
        for d in ("sharded", "bin"):
            got = dbf.DistilBertForMaskedLM.from_pretrained(tmp_path / d)(ids, attention_mask=mask).logits
            assert_close(got, expect, what=d)
    # transformers reads our shards too
    import transformers

    t = transformers.DistilBertForMaskedLM.from_pretrained(tmp_path / "sharded").eval()
    with torch.no_grad():
        assert_close(t(ids, attention_mask=mask).logits, expect, what="hf reads shards")


def test_tied_vocab_projector(tmp_path):
    hf_model("DistilBertForMaskedLM").save_pretrained(tmp_path)
    m = dbf.DistilBertForMaskedLM.from_pretrained(tmp_path)
    assert m.vocab_projector.weight is m.distilbert.embeddings.word_embeddings.weight


def test_base_checkpoint_into_head_reports_new_keys(tmp_path):
    hf_model("DistilBertModel").save_pretrained(tmp_path / "base")
    m, info = dbf.DistilBertForSequenceClassification.from_pretrained(
        tmp_path / "base", num_labels=4, output_loading_info=True
    )
    assert set(info["missing_keys"]) == {
        "pre_classifier.weight",
        "pre_classifier.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert m.classifier.weight.shape == (4, 32)
    # the encoder is the checkpoint's, exactly
    base = dbf.DistilBertModel.from_pretrained(tmp_path / "base")
    ids, mask = make_inputs("DistilBertModel", 2, 6, seed=0)
    with torch.no_grad():
        assert torch.equal(m.distilbert(ids, attention_mask=mask)[0], base(ids, attention_mask=mask)[0])


def test_head_checkpoint_into_other_head_and_base(tmp_path):
    hf_model("DistilBertForMaskedLM").save_pretrained(tmp_path / "mlm")
    m, info = dbf.DistilBertForTokenClassification.from_pretrained(tmp_path / "mlm", output_loading_info=True)
    assert "vocab_transform.weight" in info["unexpected_keys"]
    assert "classifier.weight" in info["missing_keys"]
    base, info = dbf.DistilBertModel.from_pretrained(tmp_path / "mlm", output_loading_info=True)
    assert info["missing_keys"] == [] and "vocab_layer_norm.weight" in info["unexpected_keys"]


def _edit_checkpoint(src, dst, edit):
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    sd = load_file(dst / "model.safetensors")
    edit(sd)
    save_file(sd, dst / "model.safetensors", metadata={"format": "pt"})


def test_strict_encoder_errors_list_everything(tmp_path):
    hf_model("DistilBertModel").save_pretrained(tmp_path / "ok")

    def edit(sd):
        del sd["transformer.layer.0.attention.q_lin.weight"]
        sd["transformer.layer.1.ffn.lin1.weight"] = torch.randn(7, 32)
        sd["transformer.layer.9.ffn.lin1.weight"] = torch.randn(48, 32)

    _edit_checkpoint(tmp_path / "ok", tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as e:
        dbf.DistilBertModel.from_pretrained(tmp_path / "bad")
    msg = str(e.value)
    for key in (
        "transformer.layer.0.attention.q_lin.weight",
        "transformer.layer.1.ffn.lin1.weight",
        "transformer.layer.9.ffn.lin1.weight",
    ):
        assert key in msg


def test_mismatched_head_needs_opt_in(tmp_path):
    hf_model("DistilBertForSequenceClassification", num_labels=2).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="classifier.weight"):
        dbf.DistilBertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    m = dbf.DistilBertForSequenceClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True
    )
    assert m.classifier.weight.shape == (5, 32) and "classifier.weight" in m.loading_info["missing_keys"]


def test_truncated_and_pickle_checkpoints_refused(tmp_path):
    hf_model("DistilBertModel").save_pretrained(tmp_path / "ok")
    shutil.copytree(tmp_path / "ok", tmp_path / "trunc")
    p = tmp_path / "trunc" / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        dbf.DistilBertModel.from_pretrained(tmp_path / "trunc")

    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil").mkdir()
    shutil.copy(tmp_path / "ok" / "config.json", tmp_path / "evil" / "config.json")
    torch.save({"embeddings.word_embeddings.weight": Payload()}, tmp_path / "evil" / "pytorch_model.bin")
    with pytest.raises(CheckpointError):
        dbf.DistilBertModel.from_pretrained(tmp_path / "evil")
    assert not marker.exists()


def test_repo_id_from_offline_hub_cache(tmp_path, monkeypatch):
    hf_model("DistilBertForQuestionAnswering").save_pretrained(tmp_path / "src")
    cache = tmp_path / "cache"
    snap = cache / "models--acme--tiny-distilbert" / "snapshots" / ("a" * 40)
    shutil.copytree(tmp_path / "src", snap)
    (cache / "models--acme--tiny-distilbert" / "refs").mkdir()
    (cache / "models--acme--tiny-distilbert" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = dbf.DistilBertForQuestionAnswering.from_pretrained("acme/tiny-distilbert", cache_dir=cache)
    ref = dbf.DistilBertForQuestionAnswering.from_pretrained(tmp_path / "src")
    ids, mask = make_inputs("DistilBertModel", 1, 5, seed=0)
    with torch.no_grad():
        assert torch.equal(m(ids).start_logits, ref(ids).start_logits)
    with pytest.raises(CheckpointError, match="acme/missing"):
        dbf.DistilBertModel.from_pretrained("acme/missing", cache_dir=cache)


def test_bf16_load(tmp_path):
    hf_model("DistilBertModel", dim=64, n_heads=2, hidden_dim=80).save_pretrained(tmp_path)
    fp32 = dbf.DistilBertModel.from_pretrained(tmp_path)
    bf16 = dbf.DistilBertModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    ids, mask = make_inputs("DistilBertModel", 3, 20, seed=2)
    with torch.no_grad():
        a = fp32(ids, attention_mask=mask)[0][mask.bool()]
        b = bf16(ids, attention_mask=mask)[0][mask.bool()].float()
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() >= 0.999
    with pytest.raises(ValueError, match="dtype"):
        dbf.DistilBertModel.from_pretrained(tmp_path, dtype=torch.int8)


# --- real weights -----------------------------------------------------------------------------------------
def _tokenize(minilm_dir, texts):
    tok = dbf.DistilBertTokenizer.from_pretrained(minilm_dir)
    return tok(texts, padding=True, truncation=True, return_tensors="pt")


def test_minilm_bert_conversion_matches_transformers(minilm_dir, tmp_path):
    import transformers

    enc = _tokenize(minilm_dir, SENTENCES)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    bert = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    ours, info = dbf.DistilBertModel.from_pretrained(minilm_dir, output_loading_info=True)
    assert any("pooler" in n for n in info["notes"])
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    diff = assert_close(got[real], ref[real], rel=1e-4, what="MiniLM last_hidden_state")
    assert diff <= 1e-4

    # save as DistilBERT: transformers' DistilBertModel loads it and agrees
    ours.save_pretrained(tmp_path / "distil")
    cfg = json.loads((tmp_path / "distil" / "config.json").read_text())
    assert cfg["model_type"] == "distilbert" and cfg["dim"] == 384
    hf = transformers.DistilBertModel.from_pretrained(tmp_path / "distil", attn_implementation="eager").eval()
    with torch.no_grad():
        assert_close(
            hf(input_ids=ids, attention_mask=mask).last_hidden_state[real],
            ref[real],
            rel=1e-4,
            what="transformers DistilBertModel on converted MiniLM",
        )
