"""Losses on the packed backends equal transformers' on padded batches (issue 10, item 1).

transformers computes hidden states at padded query positions too (they attend to the real keys only), and
its losses read them: MLM / token-classification labels that are not -100 at padding, and the QA start/end
cross-entropy over the whole padded length. The packed backends compute those positions as extra query rows
(packing.Layout.packed_from_mask(extra=), varlen attention with `seqused` keys) only for calls whose loss
reads them; every other call stays padding-free. Each case: loss <= 1e-5 relative to transformers, every
output the loss reads equal too, the backend's own attention ran (no silent fallback), and the row count says
which layout ran.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import assert_close, hf_model, make_inputs
from test_backend_parity import BACKENDS

import distilbert_fast as dbf
from distilbert_fast import ops
from distilbert_fast.modeling import DistilBertPreTrainedModel

LOSS_HEADS = [
    "DistilBertForMaskedLM",
    "DistilBertForTokenClassification",
    "DistilBertForQuestionAnswering",
    "DistilBertForSequenceClassification",
    "DistilBertForMultipleChoice",
]
PER_TOKEN = ("DistilBertForMaskedLM", "DistilBertForTokenClassification")
# (batch, seq): the interpreter runs every Triton program in Python, so its shape is the smallest.
SHAPE = {"torch": (4, 17), "cpp": (5, 23), "triton": (3, 11)}


def rows_seen(model, backend):
    """Install `backend`'s table with a recorder of the attention rows (queries) of every call."""
    table = ops.resolve_backend(backend)
    rows = []

    def attention(q, k, v, layout, *args):
        rows.append(q.shape[0])
        return table.attention(q, k, v, layout, *args)

    wrapped = dataclasses.replace(table, attention=attention)
    for m in model.modules():
        if isinstance(m, DistilBertPreTrainedModel):
            m.ops = wrapped
    return rows


def labels_for(class_name, scenario, ids, mask, g):
    """Loss kwargs. scenario: "ignore_padding" (-100 / in-range positions at real tokens only), "at_padding"
    (labels or QA positions at padded slots too)."""
    B, S = ids.shape[0], ids.shape[-1]
    real = mask.bool()
    if class_name in PER_TOKEN:
        n = 101 if class_name == "DistilBertForMaskedLM" else 2
        labels = torch.randint(0, n, (B, S), generator=g)
        if scenario == "ignore_padding":
            labels[~real] = -100
        labels[0, 0] = -100  # a real -100 too
        return dict(labels=labels)
    if class_name == "DistilBertForQuestionAnswering":
        lens = mask.sum(1)
        if scenario == "ignore_padding":  # answers inside the real tokens (padded logits still count: HF)
            start = torch.stack([torch.randint(0, int(n), (1,), generator=g)[0] for n in lens])
            end = torch.minimum(start + 2, lens - 1)
        else:  # answers at padded slots, and out of range (clamped to S, ignored)
            start = torch.full((B,), S - 1)
            end = torch.randint(0, S + 5, (B,), generator=g)
            end[0] = S + 7
        return dict(start_positions=start, end_positions=end)
    if class_name == "DistilBertForMultipleChoice":
        return dict(labels=torch.randint(0, ids.shape[1], (B,), generator=g))
    return dict(labels=torch.randint(0, 2, (B,), generator=g))


@pytest.mark.parametrize("scenario", ["ignore_padding", "at_padding"])
@pytest.mark.parametrize("class_name", LOSS_HEADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_equals_transformers_on_padded_batches(backend, class_name, scenario, tmp_path):
    if scenario == "at_padding" and class_name not in (*PER_TOKEN, "DistilBertForQuestionAnswering"):
        pytest.skip("sequence-level labels have no padded positions")
    hf = hf_model(class_name, seed=7)
    hf.save_pretrained(tmp_path)
    ours = getattr(dbf, class_name).from_pretrained(tmp_path, backend=backend)
    rows = rows_seen(ours, backend)
    B, S = SHAPE[backend]
    ids, mask = make_inputs(class_name, B, S, seed=11)
    mask.view(-1, S)[1, S // 2 :] = 0  # at least one padded sequence, whatever the random lengths
    kwargs = labels_for(class_name, scenario, ids, mask, torch.Generator().manual_seed(3))
    with torch.inference_mode():
        r = hf(ids, attention_mask=mask, **kwargs)
        f = ours(ids, attention_mask=mask, **kwargs)
    what = f"{backend} {class_name} {scenario}"
    assert_close(f.loss, r.loss, rel=1e-5, what=f"{what} loss")
    if class_name == "DistilBertForQuestionAnswering":  # the loss reads every slot's logit
        assert_close(f.start_logits, r.start_logits, rel=1e-5, what=f"{what} start_logits")
        assert_close(f.end_logits, r.end_logits, rel=1e-5, what=f"{what} end_logits")
    elif class_name in PER_TOKEN:  # every position the loss reads
        read = kwargs["labels"] != -100
        assert_close(f.logits[read], r.logits[read], rel=1e-5, what=f"{what} logits")
    n_layers = ours.config.n_layers
    assert len(rows) == n_layers, f"{what}: the backend's attention did not run"
    real, padded = int(mask.sum()), mask.numel()
    if backend == "torch":
        assert rows[0] == padded
    elif scenario == "ignore_padding" and class_name != "DistilBertForQuestionAnswering":
        assert rows[0] == real, f"{what}: labels ignore padding, the call must stay padding-free"
    elif class_name == "DistilBertForQuestionAnswering":
        assert rows[0] == padded  # every slot: queries only at the padded ones
    else:  # real tokens plus the labelled padded slots, no more
        assert rows[0] == int((mask.bool() | (kwargs["labels"] != -100)).sum())


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_labels_stays_padding_free(backend, tmp_path):
    hf = hf_model("DistilBertForQuestionAnswering", seed=1)
    hf.save_pretrained(tmp_path)
    ours = dbf.DistilBertForQuestionAnswering.from_pretrained(tmp_path, backend=backend)
    rows = rows_seen(ours, backend)
    ids, mask = make_inputs("DistilBertModel", 3, 11, seed=2)
    mask[1, 4:] = 0
    with torch.inference_mode():
        ours(ids, attention_mask=mask)
    assert rows[0] == (mask.numel() if backend == "torch" else int(mask.sum()))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.values[0] != "triton"])
def test_fully_masked_row_with_labels_runs_exactly(backend, tmp_path):
    """A sequence without real tokens whose padded slots carry labels: transformers' softmax is uniform over
    the masked keys there; that call runs the padded reference ops (rare), so the loss still matches."""
    hf = hf_model("DistilBertForTokenClassification", seed=2)
    hf.save_pretrained(tmp_path)
    ours = dbf.DistilBertForTokenClassification.from_pretrained(tmp_path, backend=backend)
    ids, mask = make_inputs("DistilBertModel", 3, 9, seed=5)
    mask[2] = 0
    labels = torch.randint(0, 2, (3, 9))
    with torch.inference_mode():
        assert_close(
            ours(ids, attention_mask=mask, labels=labels).loss,
            hf(ids, attention_mask=mask, labels=labels).loss,
            rel=1e-5,
            what="fully masked row",
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_with_heads_qa_and_mlm_losses_equal_the_reference_path(backend):
    cfg = dbf.DistilBertConfig(vocab_size=101, dim=32, n_heads=4, n_layers=2, hidden_dim=48)
    torch.manual_seed(0)
    ref = dbf.DistilBertModelWithHeads(cfg, backend="torch")
    ref.add_qa_head("qa")
    ref.add_masked_lm_head("mlm")
    ref.eval()
    ours = dbf.DistilBertModelWithHeads(cfg, backend=backend)
    ours.add_qa_head("qa")
    ours.add_masked_lm_head("mlm")
    ours.load_state_dict(ref.state_dict())
    ours.eval()
    ids, mask = make_inputs("DistilBertModel", 3, 11, seed=4)
    mask[1, 5:] = 0
    labels = torch.randint(0, 101, (3, 11))
    start, end = torch.tensor([10, 10, 1]), torch.tensor([10, 9, 2])
    with torch.inference_mode():
        for head, kw in (
            ("qa", dict(start_positions=start, end_positions=end)),
            ("mlm", dict(labels=labels)),
        ):
            r = ref(ids, attention_mask=mask, head=head, **kw)
            f = ours(ids, attention_mask=mask, head=head, **kw)
            assert_close(f.loss, r.loss, rel=1e-5, what=f"{backend} with-heads {head}")


def test_cpp_seqused_keys_only(tmp_path):
    """The kernel contract: rows past seqused[s] are queries only; their outputs equal attention of those
    queries over the first seqused[s] keys (reference: a per-sequence masked softmax)."""
    if "cpp" not in dbf.available_backends():
        pytest.skip("cpp backend unavailable")
    from distilbert_fast.ops import cpp

    g = torch.Generator().manual_seed(0)
    lens, used, H, hd = [5, 9, 1, 4], [3, 9, 1, 0], 2, 8
    N = sum(lens)
    for dtype, rel in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        q, k, v = (torch.randn(N, H * hd, generator=g).to(dtype) for _ in range(3))
        cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
        out = cpp.varlen_attention(
            q, k, v, cu, max(lens), H, hd**-0.5, None, torch.tensor(used, dtype=torch.int32)
        )
        expect = torch.zeros(N, H * hd)
        for a, n, u in zip(cu[:-1].tolist(), lens, used):
            if u == 0:
                continue  # no keys: zeros
            qs, ks, vs = (t[a : a + n].float().view(n, H, hd).transpose(0, 1) for t in (q, k, v))
            p = torch.softmax(qs @ ks[:, :u].transpose(1, 2) * hd**-0.5, -1)
            expect[a : a + n] = (p @ vs[:, :u]).transpose(0, 1).reshape(n, H * hd)
        assert_close(out.float(), expect, rel=rel, what=f"seqused {dtype}")


def test_fine_tuning_round_trip_with_train_adapter(tmp_path):
    """A saved classifier, re-headed for 5 labels, two training steps with train_adapter: the encoder is
    unchanged, the adapter and the head changed; save_adapter + load_adapter into a fresh model gives the same
    outputs (the packed cpp path when built)."""
    hf = hf_model("DistilBertForSequenceClassification", seed=6, id2label={0: "a", 1: "b", 2: "c"})
    hf.save_pretrained(tmp_path / "clf")
    model = dbf.DistilBertModelWithHeads.from_pretrained(tmp_path / "clf")
    model.add_classification_head("task", num_labels=5)
    model.add_adapter("task", config="seq_bn")
    model.add_adapter("other", config="seq_bn")
    model.train_adapter("task")
    assert model.training and model.active_adapters.flatten() == {"task"}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # as the library: the encoder and the other adapter frozen, the named adapter and the heads trainable
    assert trainable and all(".adapters.task." in n or n.startswith("heads.") for n in trainable)
    assert any(".adapters.task." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    ids, mask = make_inputs("DistilBertModel", 4, 9, seed=8)
    labels = torch.tensor([0, 4, 2, 1])
    for _ in range(2):
        opt.zero_grad()
        model(ids, attention_mask=mask, labels=labels, head="task").loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (".adapters.task." in n or n.startswith("heads.task.")), n
    model.save_adapter(tmp_path / "task", "task")
    model.eval()
    fresh = dbf.DistilBertModelWithHeads.from_pretrained(tmp_path / "clf")
    fresh.load_adapter(tmp_path / "task", set_active=True)
    with torch.inference_mode():
        a = model(ids, attention_mask=mask, head="task", adapter_names="task").logits
        b = fresh(ids, attention_mask=mask, head="task").logits
    assert_close(b, a, rel=1e-5, what="reloaded adapter")
    model.freeze_model(False)
    assert all(p.requires_grad for p in model.distilbert.parameters())
