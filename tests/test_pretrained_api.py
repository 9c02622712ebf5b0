"""transformers' PreTrainedModel surface on every class (issue 10, item 3), compared with transformers' own
models on the same weights: resizing (token and position embeddings), the embedding accessors, gradient
checkpointing, from_config, init_weights, num_parameters, base_model, main_input_name."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers import HEADS, assert_close, hf_model, make_inputs

import distilbert_fast as dbf

FIELDS = ("logits", "start_logits", "end_logits", "last_hidden_state")
FAST = "cpp" if "cpp" in dbf.available_backends() else "torch"


def _pair(class_name, tmp_path, backend=FAST):
    hf = hf_model(class_name, seed=4)
    hf.save_pretrained(tmp_path)
    return hf, getattr(dbf, class_name).from_pretrained(tmp_path, backend=backend)


def _same_outputs(ours, hf, ids, mask, what):
    with torch.inference_mode():
        f, r = ours(ids, attention_mask=mask), hf(ids, attention_mask=mask)
    real = mask.bool()
    for name in FIELDS:
        rv = getattr(r, name, None)
        if rv is not None:
            fv = getattr(f, name)
            if rv.shape[: real.dim()] == real.shape:
                rv, fv = rv[real], fv[real]
            assert_close(fv, rv, rel=1e-5, what=f"{what} {name}")


@pytest.mark.parametrize("class_name", HEADS)
def test_resize_token_embeddings_like_transformers(class_name, tmp_path):
    hf, ours = _pair(class_name, tmp_path)
    ids, mask = make_inputs(class_name, 2, 9, seed=1)
    _same_outputs(ours, hf, ids, mask, "before")  # also builds the cpp prepacked weights
    for n, pad in ((130, None), (117, 8), (60, None)):
        e_hf = hf.resize_token_embeddings(n, pad_to_multiple_of=pad, mean_resizing=False)
        e_ours = ours.resize_token_embeddings(n, pad_to_multiple_of=pad, mean_resizing=False)
        assert e_ours is ours.get_input_embeddings() and e_ours.num_embeddings == e_hf.num_embeddings
        assert ours.config.vocab_size == hf.config.vocab_size == e_hf.num_embeddings
        out = ours.get_output_embeddings()
        if class_name == "DistilBertForMaskedLM":
            assert out.weight is e_ours.weight  # the tied decoder follows
            assert out.bias.shape == hf.get_output_embeddings().bias.shape
        else:
            assert out is None and hf.get_output_embeddings() is None
        # New rows are random in both libraries: give ours transformers' values, then every output matches,
        # new token ids included, on the fast backend (no stale prepacked decoder weight survives).
        missing, unexpected = ours.load_state_dict(hf.state_dict(), strict=False)
        assert not unexpected and set(missing) <= {"vocab_projector.weight"}
        ids2 = torch.randint(0, e_hf.num_embeddings, ids.shape)
        _same_outputs(ours, hf, ids2, mask, f"resized to {e_hf.num_embeddings}")
    assert ours.resize_token_embeddings() is ours.get_input_embeddings()  # no-op, as transformers


def test_mean_resizing_and_untied_decoder(tmp_path):
    hf, ours = _pair("DistilBertForMaskedLM", tmp_path)
    old = ours.get_input_embeddings().weight.detach().clone()
    ours.resize_token_embeddings(120)  # mean_resizing=True: transformers' default
    new = ours.get_input_embeddings().weight
    assert torch.equal(new[:101], old)
    assert_close(new[101:], old.mean(0).expand(19, -1), rel=1e-3, what="mean rows")
    cfg = dbf.DistilBertConfig(
        vocab_size=50, dim=16, n_heads=2, n_layers=1, hidden_dim=8, tie_word_embeddings=False
    )
    m = dbf.DistilBertForMaskedLM(cfg, backend="torch")
    w = m.vocab_projector.weight.detach().clone()
    m.resize_token_embeddings(64, mean_resizing=False)
    assert m.vocab_projector.weight is not m.get_input_embeddings().weight
    assert m.vocab_projector.weight.shape == (64, 16) and torch.equal(m.vocab_projector.weight[:50], w)
    assert m(torch.tensor([[63, 1]])).logits.shape == (1, 2, 64)


@pytest.mark.parametrize("class_name", ["DistilBertModel", "DistilBertForQuestionAnswering"])
@pytest.mark.parametrize("sinusoidal", [False, True])
def test_resize_position_embeddings_like_transformers(class_name, sinusoidal, tmp_path):
    hf = hf_model(class_name, seed=2, sinusoidal_pos_embds=sinusoidal)
    hf.save_pretrained(tmp_path)
    ours = getattr(dbf, class_name).from_pretrained(tmp_path, backend=FAST)
    hf_base = hf if class_name == "DistilBertModel" else hf.distilbert
    from distilbert_fast.modeling import create_sinusoidal_embeddings

    for n in (600, 100):
        if not sinusoidal:  # transformers 5's sinusoidal branch raises AttributeError: check ours alone there
            hf_base.resize_position_embeddings(n)
        ours.resize_position_embeddings(n)
        assert ours.config.max_position_embeddings == n
        assert ours.get_position_embeddings().weight.shape == (n, 32)
        if not sinusoidal:  # rows past the old table are random in both: take transformers'
            ours.get_position_embeddings().weight.data.copy_(hf_base.embeddings.position_embeddings.weight)
        else:  # the table recomputed for n positions; its first rows are transformers' table
            assert torch.equal(ours.get_position_embeddings().weight, create_sinusoidal_embeddings(n, 32))
        ids, mask = make_inputs(class_name, 2, 40, seed=3)
        _same_outputs(ours, hf, ids, mask, f"positions {n}")
        if n > 520:  # ours also runs the longer sequences (transformers keeps a 520-long position_ids buffer)
            with torch.inference_mode():
                assert ours(torch.ones(1, 540, dtype=torch.long))[0].shape[1] == 540


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    _, ours = _pair("DistilBertForSequenceClassification", tmp_path, backend="torch")
    ids, mask = make_inputs("DistilBertModel", 3, 11, seed=2)
    labels = torch.tensor([0, 1, 1])
    grads = []
    for enable in (False, True):
        ours.zero_grad()
        if enable:
            ours.gradient_checkpointing_enable()
        assert ours.is_gradient_checkpointing is enable
        ours.train()
        torch.manual_seed(0)  # same dropout masks: checkpoint replays the RNG state
        ours(ids, attention_mask=mask, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in ours.named_parameters() if p.grad is not None})
    ours.gradient_checkpointing_disable()
    assert not ours.is_gradient_checkpointing
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        assert_close(grads[1][n], grads[0][n], rel=1e-6, what=n)


@pytest.mark.parametrize("class_name", HEADS)
def test_small_surface_matches_transformers(class_name, tmp_path):
    hf, ours = _pair(class_name, tmp_path)
    hf_cls = getattr(transformers, class_name)
    assert ours.main_input_name == hf.main_input_name == "input_ids"
    assert isinstance(ours.base_model, dbf.DistilBertModel)
    assert type(hf.base_model).__name__ == "DistilBertModel"
    for only_trainable, exclude_embeddings in ((False, False), (True, False), (False, True)):
        kw = dict(only_trainable=only_trainable, exclude_embeddings=exclude_embeddings)
        assert ours.num_parameters(**kw) == hf.num_parameters(**kw), kw
    ours.base_model.embeddings.requires_grad_(False)
    hf.base_model.embeddings.requires_grad_(False)
    assert ours.num_parameters(only_trainable=True) == hf.num_parameters(only_trainable=True)
    fresh = getattr(dbf, class_name).from_config(ours.config)
    fresh_hf = hf_cls._from_config(hf.config)
    assert fresh.num_parameters() == fresh_hf.num_parameters()
    assert type(fresh) is type(ours) and fresh.config.to_dict() == ours.config.to_dict()
    w = fresh.base_model.embeddings.word_embeddings.weight
    before = w.detach().clone()
    fresh.init_weights()
    assert not torch.equal(before, fresh.base_model.embeddings.word_embeddings.weight)
    assert torch.all(fresh.base_model.embeddings.word_embeddings.weight[0] == 0)  # padding row, as HF
    emb = torch.nn.Embedding(77, 32)
    ours.set_input_embeddings(emb)
    assert ours.get_input_embeddings() is emb and ours.config.vocab_size == 77
