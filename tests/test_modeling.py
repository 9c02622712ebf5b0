"""Model parity with transformers for every head class, on random small configs, through from_pretrained."""

from __future__ import annotations

import pytest
import torch
from helpers import HEADS, assert_close, hf_model, make_inputs, small_config

import distilbert_fast as dbf


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    # This file pins down transformers-exact semantics (pad positions included) on the reference path;
    # the fused backends are compared against it in test_backend_*.py.
    monkeypatch.setenv("DISTILBERT_FAST_BACKEND", "torch")


CONFIGS = {
    "gelu": dict(activation="gelu"),
    "relu": dict(activation="relu", n_heads=2),
    "silu": dict(activation="silu", n_layers=3),
    "gelu_new-sinusoidal": dict(activation="gelu_new", sinusoidal_pos_embds=True),
    "head_dim_32": dict(dim=64, n_heads=2, hidden_dim=80),
}


def load_pair(class_name, tmp_path, cfg_name, seed=0, **extra):
    hf = hf_model(class_name, seed=seed, **CONFIGS[cfg_name], **extra)
    hf.save_pretrained(tmp_path / "ckpt")
    ours = getattr(dbf, class_name).from_pretrained(tmp_path / "ckpt")
    return hf, ours


def compare_outputs(ours, ref, what):
    for name in ("loss", "logits", "start_logits", "end_logits", "last_hidden_state"):
        r = getattr(ref, name, None)
        if r is not None:
            assert_close(getattr(ours, name), r, what=f"{what}.{name}")
    assert len(ours.hidden_states) == len(ref.hidden_states)
    for i, (a, b) in enumerate(zip(ours.hidden_states, ref.hidden_states)):
        assert_close(a, b, what=f"{what}.hidden_states[{i}]")
    assert len(ours.attentions) == len(ref.attentions)
    for i, (a, b) in enumerate(zip(ours.attentions, ref.attentions)):
        assert_close(a, b, what=f"{what}.attentions[{i}]")


@pytest.mark.parametrize("cfg_name", list(CONFIGS))
@pytest.mark.parametrize("class_name", HEADS)
def test_parity_every_head(class_name, cfg_name, tmp_path):
    hf, ours = load_pair(class_name, tmp_path, cfg_name, seed=hash(cfg_name) % 1000)
    assert ours.loading_info["missing_keys"] == [] and ours.loading_info["unexpected_keys"] == []
    for batch, seq in ((1, 1), (3, 33), (2, 17)):
        ids, mask = make_inputs(class_name, batch, seq, seed=seq)
        kw = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        with torch.no_grad():
            compare_outputs(ours(**kw), hf(**kw), f"{class_name}[{cfg_name}] {batch}x{seq}")


@pytest.mark.parametrize("seq", [257, 512])
def test_parity_long_sequences(seq, tmp_path):
    hf, ours = load_pair("DistilBertModel", tmp_path, "gelu")
    ids, mask = make_inputs("DistilBertModel", 2, seq, seed=seq)
    with torch.no_grad():
        assert_close(
            ours(ids, attention_mask=mask).last_hidden_state,
            hf(ids, attention_mask=mask).last_hidden_state,
            what=f"len {seq}",
        )


def test_fully_masked_row_is_finite_and_matches(tmp_path):
    hf, ours = load_pair("DistilBertModel", tmp_path, "gelu")
    ids, mask = make_inputs("DistilBertModel", 3, 9, seed=1)
    mask[1] = 0
    with torch.no_grad():
        out = ours(ids, attention_mask=mask, output_attentions=True)
        ref = hf(ids, attention_mask=mask)
    assert torch.isfinite(out.last_hidden_state).all()
    assert torch.isfinite(torch.stack(out.attentions)).all()
    assert_close(out.last_hidden_state, ref.last_hidden_state, what="fully masked")


def test_sinusoidal_table_equals_transformers():
    import transformers

    cfg = small_config(sinusoidal_pos_embds=True, dim=30, n_heads=3)
    hf = transformers.DistilBertModel(transformers.DistilBertConfig(**cfg))
    ours = dbf.DistilBertModel(dbf.DistilBertConfig(**cfg))
    torch.testing.assert_close(
        ours.embeddings.position_embeddings.weight, hf.embeddings.position_embeddings.weight, rtol=0, atol=0
    )


# --- losses ------------------------------------------------------------------------------------------------
def _labels(class_name, ids, mask, kind, g):
    B, S = ids.shape[0], ids.shape[-1]
    if class_name == "DistilBertForMaskedLM":
        labels = torch.randint(0, 101, (B, S), generator=g)
        return dict(labels=labels.masked_fill(mask == 0, -100))
    if class_name == "DistilBertForTokenClassification":
        return dict(labels=torch.randint(0, 2, (B, S), generator=g).masked_fill(mask == 0, -100))
    if class_name == "DistilBertForMultipleChoice":
        return dict(labels=torch.randint(0, ids.shape[1], (B,), generator=g))
    if class_name == "DistilBertForQuestionAnswering":
        # includes positions past the end, which transformers clamps and ignores
        return dict(
            start_positions=torch.randint(0, S + 4, (B,), generator=g),
            end_positions=torch.randint(0, S + 4, (B, 1), generator=g),
        )
    if kind == "single":
        return dict(labels=torch.randint(0, 3, (B,), generator=g))
    if kind == "multi":
        return dict(labels=torch.randint(0, 2, (B, 3), generator=g).float())
    if kind == "regression":
        return dict(labels=torch.randn(B, generator=g))
    return dict(labels=torch.randn(B, 3, generator=g))  # regression with 3 outputs (explicit problem_type)


LOSS_CASES = [
    ("DistilBertForMaskedLM", None, {}),
    ("DistilBertForTokenClassification", None, {}),
    ("DistilBertForMultipleChoice", None, {}),
    ("DistilBertForQuestionAnswering", None, {}),
    ("DistilBertForSequenceClassification", "single", dict(num_labels=3)),
    ("DistilBertForSequenceClassification", "multi", dict(num_labels=3)),
    ("DistilBertForSequenceClassification", "regression", dict(num_labels=1)),
    ("DistilBertForSequenceClassification", "regression3", dict(num_labels=3, problem_type="regression")),
]


@pytest.mark.parametrize("class_name,kind,extra", LOSS_CASES)
def test_losses_match(class_name, kind, extra, tmp_path):
    hf, ours = load_pair(class_name, tmp_path, "gelu", seed=7, **extra)
    g = torch.Generator().manual_seed(3)
    ids, mask = make_inputs(class_name, 4, 13, seed=5)
    labels = _labels(class_name, ids, mask, kind, g)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, **labels)
        out = ours(input_ids=ids, attention_mask=mask, **labels)
    assert out.loss is not None and out.loss.dim() == 0
    assert_close(out.loss, ref.loss, what=f"{class_name} {kind} loss")
    assert ours.config.problem_type == hf.config.problem_type


@pytest.mark.parametrize(
    "class_name", ["DistilBertForSequenceClassification", "DistilBertForQuestionAnswering"]
)
def test_training_gradients_match(class_name, tmp_path):
    # dropout 0 so the two training-mode passes are deterministic; autograd through the reference path.
    zero = dict(dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, qa_dropout=0.0)
    hf, ours = load_pair(class_name, tmp_path, "gelu", seed=11, **zero)
    hf.train(), ours.train()
    ids, mask = make_inputs(class_name, 3, 10, seed=2)
    labels = _labels(class_name, ids, mask, "single", torch.Generator().manual_seed(0))
    if "labels" in labels:
        labels["labels"] = labels["labels"].clamp(max=1)
    hf(input_ids=ids, attention_mask=mask, **labels).loss.backward()
    ours(input_ids=ids, attention_mask=mask, **labels).loss.backward()
    hp = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, name
        assert_close(p.grad, hp[name].grad, rel=1e-4, what=f"grad {name}")


def test_dropout_active_in_train_mode(tmp_path):
    _, ours = load_pair("DistilBertModel", tmp_path, "gelu")
    ids, mask = make_inputs("DistilBertModel", 2, 12, seed=0)
    ours.train()
    a = ours(ids, attention_mask=mask).last_hidden_state
    b = ours(ids, attention_mask=mask).last_hidden_state
    assert not torch.equal(a, b)
    a.sum().backward()
    ours.eval()
    with torch.no_grad():
        assert torch.equal(ours(ids, attention_mask=mask)[0], ours(ids, attention_mask=mask)[0])


# --- inputs ------------------------------------------------------------------------------------------------
def test_inputs_embeds_position_ids_token_type_ids(tmp_path):
    hf, ours = load_pair("DistilBertModel", tmp_path, "gelu")
    ids, mask = make_inputs("DistilBertModel", 2, 12, seed=4)
    pos = torch.randint(0, 500, (2, 12))
    embeds = torch.randn(2, 12, 32)
    with torch.no_grad():
        assert_close(
            ours(inputs_embeds=embeds, attention_mask=mask)[0],
            hf(inputs_embeds=embeds, attention_mask=mask)[0],
            what="inputs_embeds",
        )
        assert_close(
            ours(ids, attention_mask=mask, position_ids=pos)[0],
            hf(ids, attention_mask=mask, position_ids=pos)[0],
            what="position_ids",
        )
        tt = torch.randint(0, 2, ids.shape)
        assert torch.equal(
            ours(ids, attention_mask=mask, token_type_ids=tt)[0], ours(ids, attention_mask=mask)[0]
        )


def test_left_padding_matches(tmp_path):
    hf, ours = load_pair("DistilBertForSequenceClassification", tmp_path, "gelu")
    ids, mask = make_inputs("DistilBertModel", 3, 10, seed=8)
    mask = mask.flip(-1)  # pads on the left
    with torch.no_grad():
        assert_close(
            ours(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits, what="left pad"
        )


def _zero_head_reference(hf, layer_scales):
    """transformers has no head_mask in v5: scaling head h's attention probs by m equals scaling the columns
    of out_lin that read head h's context by m."""
    import copy

    ref = copy.deepcopy(hf)
    hd = ref.config.dim // ref.config.n_heads
    with torch.no_grad():
        for layer, scales in zip(
            ref.distilbert.transformer.layer if hasattr(ref, "distilbert") else ref.transformer.layer,
            layer_scales,
        ):
            w = layer.attention.out_lin.weight
            for h, m in enumerate(scales.tolist()):
                w[:, h * hd : (h + 1) * hd] *= m
    return ref


@pytest.mark.parametrize("shape", ["per_head", "per_layer"])
def test_head_mask(shape, tmp_path):
    hf, ours = load_pair("DistilBertForSequenceClassification", tmp_path, "gelu")
    L, H = ours.config.n_layers, ours.config.n_heads
    g = torch.Generator().manual_seed(1)
    head_mask = (
        (torch.rand(H, generator=g) > 0.5).float() if shape == "per_head" else torch.rand(L, H, generator=g)
    )
    head_mask.view(-1)[0] = 0.0
    scales = [head_mask] * L if shape == "per_head" else list(head_mask)
    ref = _zero_head_reference(hf, scales)
    ids, mask = make_inputs("DistilBertModel", 3, 11, seed=6)
    with torch.no_grad():
        out = ours(ids, attention_mask=mask, head_mask=head_mask, output_attentions=True)
        assert_close(out.logits, ref(ids, attention_mask=mask).logits, what="head_mask")
    assert torch.all(out.attentions[0][:, 0] == 0)
    with pytest.raises(ValueError, match="head_mask"):
        ours(ids, attention_mask=mask, head_mask=torch.ones(H + 1))


def test_output_containers_behave_like_hf(tmp_path):
    _, ours = load_pair("DistilBertForQuestionAnswering", tmp_path, "gelu")
    ids, mask = make_inputs("DistilBertModel", 2, 7, seed=0)
    with torch.no_grad():
        out = ours(ids, attention_mask=mask)
        tup = ours(ids, attention_mask=mask, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 2
    assert torch.equal(out[0], out.start_logits) and torch.equal(out["end_logits"], tup[1])
    assert out.keys() == ["start_logits", "end_logits"] and out.to_tuple()[1] is out.end_logits
    assert "loss" not in out


# --- errors ------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    m = dbf.DistilBertModel(dbf.DistilBertConfig(**small_config())).eval()
    ids = torch.randint(0, 101, (2, 5))
    cases = [
        (dict(input_ids=ids.float()), "input_ids"),
        (dict(input_ids=ids[0]), "input_ids"),
        (dict(input_ids=ids + 200), "vocab_size"),
        (dict(input_ids=ids, attention_mask=torch.ones(2, 4)), "attention_mask"),
        (dict(input_ids=ids, inputs_embeds=torch.randn(2, 5, 32)), "exactly one"),
        (dict(), "exactly one"),
        (dict(inputs_embeds=torch.randn(2, 5, 31)), "inputs_embeds"),
        (dict(input_ids=torch.randint(0, 101, (1, 600))), "max_position_embeddings"),
        (dict(input_ids=ids, position_ids=torch.full((2, 5), 999)), "position_ids"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            m(**kwargs)


def test_config_validation_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        dbf.DistilBertConfig(dim=30, n_heads=4)
    with pytest.raises(ValueError, match="activation"):
        dbf.DistilBertConfig(activation="swish2")
    with pytest.raises(ValueError, match="problem_type"):
        dbf.DistilBertConfig(problem_type="ranking")
    cfg = dbf.DistilBertConfig(
        **small_config(),
        id2label={0: "neg", 1: "pos", 2: "neutral"},
        architectures=["DistilBertForSequenceClassification"],
        custom_key={"a": 1},
    )
    assert cfg.num_labels == 3 and cfg.label2id["pos"] == 1 and cfg.hidden_size == 32
    cfg.save_pretrained(tmp_path)
    again = dbf.DistilBertConfig.from_pretrained(tmp_path)
    assert again == cfg and again.custom_key == {"a": 1} and again.id2label[2] == "neutral"
    import transformers

    hf_cfg = transformers.DistilBertConfig.from_pretrained(tmp_path)
    assert hf_cfg.num_labels == 3 and hf_cfg.dim == 32 and hf_cfg.id2label[2] == "neutral"
