"""Helpers shared by the tests (import them from here: `from helpers import hf_model, assert_close`): small
random transformers models of every DistilBERT class, padded random inputs, real sentences, comparison with
scale. conftest.py re-exports them for tests that still import from conftest."""

from __future__ import annotations

import torch

HEADS = [
    "DistilBertModel",
    "DistilBertForMaskedLM",
    "DistilBertForSequenceClassification",
    "DistilBertForMultipleChoice",
    "DistilBertForTokenClassification",
    "DistilBertForQuestionAnswering",
]


def small_config(**overrides) -> dict:
    cfg = dict(
        vocab_size=101,
        dim=32,
        n_heads=4,
        n_layers=2,
        hidden_dim=48,
        max_position_embeddings=520,
        dropout=0.1,
        attention_dropout=0.1,
    )
    cfg.update(overrides)
    return cfg


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int, skip: tuple[str, ...] = ()) -> None:
    """Give every parameter a fresh random value (LayerNorm weights around 1), so a swapped or missed
    weight cannot hide behind transformers' init (unit LayerNorms, zero biases)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if any(s in name for s in skip):
            continue
        noise = torch.randn(p.shape, generator=g) * 0.1
        if "LayerNorm" in name or "layer_norm" in name:
            p.copy_(1.0 + noise if name.endswith("weight") else noise)
        else:
            p.copy_(noise * 1.5)


def hf_model(class_name: str, seed: int = 0, **cfg):
    import transformers

    config = transformers.DistilBertConfig(**small_config(**cfg), attn_implementation="eager")
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(config)
    skip = ("position_embeddings",) if config.sinusoidal_pos_embds else ()
    randomize_(model, seed, skip)
    return model.eval()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5, what: str = "") -> float:
    """max |a - e| <= rel * scale, scale = max(1, max |e|). Returns the max abs diff."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    diff = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    scale = max(1.0, expected.abs().max().item() if expected.numel() else 0.0)
    assert diff <= rel * scale, f"{what}: max abs diff {diff:.3g} > {rel:g} * scale {scale:.3g}"
    return diff


def make_inputs(class_name: str, batch: int, seq: int, seed: int, vocab: int = 101, choices: int = 3):
    """Random ids with a padded batch: row 0 full, others with random lengths (at least one token)."""
    g = torch.Generator().manual_seed(seed)
    lead = (batch, choices) if class_name == "DistilBertForMultipleChoice" else (batch,)
    ids = torch.randint(1, vocab, (*lead, seq), generator=g)
    lengths = torch.randint(1, seq + 1, lead, generator=g)
    lengths.view(-1)[0] = seq
    mask = (torch.arange(seq) < lengths[..., None]).long()
    return ids, mask


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on stage.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "She didn't think the café on Rue de Rivoli would still be open at midnight!",
    "Hi",
]


def parallel_heads_model(backend=None):
    """DistilBertModelWithHeads (small config) with adapters "a" and "b" active as Parallel("a", "b") and one
    head per channel (classification "a", tagging "b"); every weight nudged so the adapters count."""
    import distilbert_fast as dbf

    torch.manual_seed(0)
    model = dbf.DistilBertModelWithHeads(dbf.DistilBertConfig(**small_config()), backend=backend).eval()
    model.add_adapter("a", config="seq_bn", reduction_factor=4)
    model.add_adapter("b", config="seq_bn", reduction_factor=8)
    model.add_classification_head("a", num_labels=3)
    model.add_tagging_head("b", num_labels=5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # adapters start as identity: make them count
    model.set_active_adapters(dbf.Parallel("a", "b"))
    return model
