"""BERT checkpoints -> DistilBERT, exactly where that is possible (config and state dict)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .common import (
    CheckpointError,
    short_list,
)

# --------------------------------------------------------------------------------------------
# BERT -> DistilBERT
# --------------------------------------------------------------------------------------------

_BERT_DEFAULTS: dict[str, Any] = {
    # transformers.BertConfig defaults, used when an (old) config.json omits a field
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
_SUPPORTED_ACTIVATIONS = ("gelu", "relu", "silu", "gelu_new")
_DISTILBERT_LN_EPS = 1e-12

# BERT architecture -> (DistilBERT architecture, head kind)
_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "BertModel": ("DistilBertModel", "base"),
    "BertForMaskedLM": ("DistilBertForMaskedLM", "mlm"),
    "BertForPreTraining": ("DistilBertForMaskedLM", "mlm"),
    "BertLMHeadModel": ("DistilBertForMaskedLM", "mlm"),
    "BertForNextSentencePrediction": ("DistilBertModel", "base"),
    "BertForTokenClassification": ("DistilBertForTokenClassification", "token"),
    "BertForQuestionAnswering": ("DistilBertForQuestionAnswering", "qa"),
    "BertForSequenceClassification": ("DistilBertForSequenceClassification", "sequence"),
    "BertForMultipleChoice": ("DistilBertForMultipleChoice", "choice"),
}


def _bert_get(cfg: Mapping[str, Any], key: str) -> Any:
    value = cfg.get(key)
    return _BERT_DEFAULTS[key] if value is None else value


def bert_config_to_distilbert(bert_cfg: Mapping[str, Any]) -> dict:
    """Map a BERT ``config.json`` dict to an equivalent DistilBERT config dict.

    Raises :class:`CheckpointError` for BERT features DistilBERT cannot reproduce exactly.
    """
    if not isinstance(bert_cfg, Mapping):
        raise CheckpointError(
            f"bert_cfg must be a dict (config.json contents), got {type(bert_cfg).__name__}"
        )
    model_type = bert_cfg.get("model_type")
    if model_type is not None and model_type != "bert":
        raise CheckpointError(
            f"bert_cfg has model_type {model_type!r}; only 'bert' checkpoints can be converted"
        )

    problems: list[str] = []
    eps = _bert_get(bert_cfg, "layer_norm_eps")
    if not isinstance(eps, (int, float)) or not math.isclose(float(eps), _DISTILBERT_LN_EPS, rel_tol=1e-6):
        problems.append(f"layer_norm_eps={eps!r} (DistilBERT hard-codes LayerNorm eps 1e-12)")
    pos_type = bert_cfg.get("position_embedding_type", "absolute")
    if pos_type not in (None, "absolute"):
        problems.append(
            f"position_embedding_type={pos_type!r} (DistilBERT only has absolute position embeddings)"
        )
    act = _bert_get(bert_cfg, "hidden_act")
    if act not in _SUPPORTED_ACTIVATIONS:
        problems.append(f"hidden_act={act!r} (supported: {', '.join(_SUPPORTED_ACTIVATIONS)})")
    if bert_cfg.get("is_decoder"):
        problems.append("is_decoder=True (DistilBERT is a bidirectional encoder)")
    if bert_cfg.get("add_cross_attention"):
        problems.append("add_cross_attention=True (DistilBERT has no cross-attention)")
    hidden, heads = _bert_get(bert_cfg, "hidden_size"), _bert_get(bert_cfg, "num_attention_heads")
    if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0 or hidden % heads:
        problems.append(f"hidden_size={hidden!r} is not divisible by num_attention_heads={heads!r}")

    architectures = bert_cfg.get("architectures") or []
    if isinstance(architectures, str):
        architectures = [architectures]
    mapped: list[str] = []
    for arch in architectures:
        if arch not in _ARCHITECTURES:
            problems.append(
                f"architecture {arch!r} has no DistilBERT equivalent (known: {', '.join(_ARCHITECTURES)}); "
                f"remove it from 'architectures' to convert the encoder only"
            )
        elif _ARCHITECTURES[arch][0] not in mapped:
            mapped.append(_ARCHITECTURES[arch][0])
    if problems:
        raise CheckpointError("cannot convert this BERT config to DistilBERT exactly: " + "; ".join(problems))

    cfg: dict[str, Any] = {
        "model_type": "distilbert",
        "vocab_size": _bert_get(bert_cfg, "vocab_size"),
        "max_position_embeddings": _bert_get(bert_cfg, "max_position_embeddings"),
        "sinusoidal_pos_embds": False,
        "n_layers": _bert_get(bert_cfg, "num_hidden_layers"),
        "n_heads": heads,
        "dim": hidden,
        "hidden_dim": _bert_get(bert_cfg, "intermediate_size"),
        "dropout": _bert_get(bert_cfg, "hidden_dropout_prob"),
        "attention_dropout": _bert_get(bert_cfg, "attention_probs_dropout_prob"),
        "activation": act,
        "initializer_range": _bert_get(bert_cfg, "initializer_range"),
        "pad_token_id": bert_cfg.get("pad_token_id", _BERT_DEFAULTS["pad_token_id"]),
    }
    if mapped:
        cfg["architectures"] = mapped
    for key in ("id2label", "label2id", "problem_type", "tie_word_embeddings", "dtype", "torch_dtype"):
        if key in bert_cfg:
            cfg[key] = bert_cfg[key]
    return cfg


_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def _normalize_bert_key(key: str) -> str:
    if key.startswith("bert."):
        key = key[len("bert.") :]
    if key.endswith(".gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith(".beta"):
        key = key[: -len("beta")] + "bias"
    return key


def _head_kind(bert_cfg: Mapping[str, Any]) -> str | None:
    architectures = bert_cfg.get("architectures") or []
    if isinstance(architectures, str):
        architectures = [architectures]
    kinds = {_ARCHITECTURES[a][1] for a in architectures if a in _ARCHITECTURES}
    for kind in ("token", "sequence", "choice"):
        if kind in kinds:
            return kind
    return None


def convert_bert_state_dict(
    sd: Mapping[str, torch.Tensor], bert_cfg: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Convert a BERT state dict (any of the ``Bert*`` models) to DistilBERT names.

    Returns ``(new_sd, notes)``: encoder keys carry the ``distilbert.`` prefix, heads are at the top
    level (``vocab_transform``/``vocab_layer_norm``/``vocab_projector``, ``classifier``,
    ``qa_outputs``). The token-type embedding of segment 0 is folded into the position embeddings,
    so the result is exact for inputs whose ``token_type_ids`` are all 0. Unconvertible parts that
    DistilBERT does not need (pooler, next-sentence head, sequence-classification head) are dropped
    with a note; unknown keys raise :class:`CheckpointError`.
    """
    cfg = bert_config_to_distilbert(bert_cfg)  # validates: raises for non-exact features
    n_layers = cfg["n_layers"]
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"sd must be a state dict (name -> tensor), got {type(sd).__name__}")

    src: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"BERT state dict entry {key!r} is not name -> tensor")
        norm = _normalize_bert_key(key)
        if norm in src:
            raise CheckpointError(
                f"BERT state dict has both {origin[norm]!r} and {key!r} for the same weight"
            )
        src[norm] = value
        origin[norm] = key

    notes: list[str] = []
    out: dict[str, torch.Tensor] = {}
    missing: list[str] = []

    def take(key: str, required: bool = True) -> torch.Tensor | None:
        if key in src:
            return src.pop(key)
        if required:
            missing.append(key)
        return None

    # ---- embeddings
    word = take("embeddings.word_embeddings.weight")
    pos = take("embeddings.position_embeddings.weight")
    token_type = take("embeddings.token_type_embeddings.weight", required=False)
    src.pop("embeddings.position_ids", None)
    src.pop("embeddings.token_type_ids", None)
    if word is not None:
        out["distilbert.embeddings.word_embeddings.weight"] = word
    if pos is not None:
        if token_type is not None:
            if token_type.ndim != 2 or pos.ndim != 2 or token_type.shape[-1] != pos.shape[-1]:
                raise CheckpointError(
                    f"token_type_embeddings {tuple(token_type.shape)} does not fit position_embeddings "
                    f"{tuple(pos.shape)}"
                )
            pos = (pos.float() + token_type[0].float()).to(pos.dtype)
            notes.append(
                "token_type_embeddings[0] folded into position_embeddings: exact for token_type_ids == 0 "
                "(single-segment inputs); DistilBERT cannot represent segment ids != 0"
            )
        out["distilbert.embeddings.position_embeddings.weight"] = pos
    for p in ("weight", "bias"):
        t = take(f"embeddings.LayerNorm.{p}")
        if t is not None:
            out[f"distilbert.embeddings.LayerNorm.{p}"] = t

    # ---- encoder layers
    for i in range(n_layers):
        for bert_name, distil_name in _LAYER_MAP.items():
            for p in ("weight", "bias"):
                t = take(f"encoder.layer.{i}.{bert_name}.{p}")
                if t is not None:
                    out[f"distilbert.transformer.layer.{i}.{distil_name}.{p}"] = t

    # ---- pooler
    if any(k.startswith("pooler.") for k in src):
        for k in [k for k in src if k.startswith("pooler.")]:
            del src[k]
        notes.append("BERT pooler dropped: DistilBERT has no pooler")

    # ---- masked-LM head
    if any(k.startswith("cls.predictions.") for k in src):
        for p in ("weight", "bias"):
            t = take(f"cls.predictions.transform.dense.{p}")
            if t is not None:
                out[f"vocab_transform.{p}"] = t
            t = take(f"cls.predictions.transform.LayerNorm.{p}")
            if t is not None:
                out[f"vocab_layer_norm.{p}"] = t
        # transformers (5.x) semantics: a decoder weight/bias present in the checkpoint is used as is
        # (tying only fills in the one that is absent), otherwise the tied source is used.
        decoder = take("cls.predictions.decoder.weight", required=False)
        if decoder is not None:
            out["vocab_projector.weight"] = decoder
            if word is not None and not (decoder.shape == word.shape and torch.equal(decoder, word)):
                notes.append("cls.predictions.decoder.weight differs from the word embeddings: kept untied")
        elif word is not None:
            out["vocab_projector.weight"] = word  # tied: the very same tensor as the input embeddings
        bias = take("cls.predictions.bias", required=False)
        decoder_bias = take("cls.predictions.decoder.bias", required=False)
        if decoder_bias is not None:
            same = bias is not None and bias.shape == decoder_bias.shape and torch.equal(bias, decoder_bias)
            if bias is not None and not same:
                notes.append(
                    "cls.predictions.decoder.bias differs from cls.predictions.bias: used the decoder bias"
                )
            bias = decoder_bias
        if bias is None:
            missing.append("cls.predictions.bias")
        else:
            out["vocab_projector.bias"] = bias

    # ---- next-sentence head
    if any(k.startswith("cls.seq_relationship.") for k in src):
        for k in [k for k in src if k.startswith("cls.seq_relationship.")]:
            del src[k]
        notes.append("BERT next-sentence-prediction head (cls.seq_relationship) dropped: DistilBERT has none")

    # ---- classification heads
    if any(k.startswith("classifier.") for k in src):
        kind = _head_kind(bert_cfg)
        if kind == "token":
            for p in ("weight", "bias"):
                t = take(f"classifier.{p}")
                if t is not None:
                    out[f"classifier.{p}"] = t
        elif kind in ("sequence", "choice"):
            for k in [k for k in src if k.startswith("classifier.")]:
                del src[k]
            what = "sequence-classification" if kind == "sequence" else "multiple-choice"
            notes.append(
                f"BERT {what} head dropped: it reads the pooler (dense+tanh on [CLS]) while DistilBERT uses "
                f"pre_classifier+ReLU, so there is no exact equivalent; pre_classifier/classifier must be "
                f"re-initialised and fine-tuned"
            )
        else:
            raise CheckpointError(
                "the BERT state dict has a 'classifier' head but bert_cfg['architectures'] does not say "
                "whether it is BertForTokenClassification (converted) or BertForSequenceClassification "
                "(dropped); set 'architectures' in the config"
            )

    # ---- question answering head
    if any(k.startswith("qa_outputs.") for k in src):
        for p in ("weight", "bias"):
            t = take(f"qa_outputs.{p}")
            if t is not None:
                out[f"qa_outputs.{p}"] = t

    if missing:
        raise CheckpointError(
            f"BERT state dict is missing {len(missing)} tensor(s) needed for DistilBERT "
            f"({n_layers} layers per config): {short_list(missing)}"
        )
    if src:
        raise CheckpointError(
            f"BERT state dict has {len(src)} key(s) with no DistilBERT equivalent: "
            f"{short_list(origin[k] for k in src)}"
        )
    return out, notes
