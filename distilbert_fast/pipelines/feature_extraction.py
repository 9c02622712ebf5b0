"""feature-extraction (token vectors) and sentence-embeddings (mean pooling + L2 norm, ours)."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn.functional as F

from ..modeling import (
    DistilBertPreTrainedModel,
)
from .base import Pipeline, check_bool, check_int, split_rows


# ----------------------------------------------------------------------------------------------------------
# feature extraction and sentence embeddings
# ----------------------------------------------------------------------------------------------------------
class FeatureExtractionPipeline(Pipeline):
    """transformers' FeatureExtractionPipeline: per text the last hidden state, (1, tokens, dim) -- nested
    lists, or a tensor with return_tensors=True. A single str returns one such value."""

    task = "feature-extraction"
    model_class = DistilBertPreTrainedModel
    _param_defaults = {"return_tensors": False, "truncation": None}

    def __call__(self, inputs, **kwargs):
        params, engine = self._split_call_kwargs(kwargs)
        if isinstance(inputs, str):
            return self._results([inputs], params, engine)[0]
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"inputs: feature-extraction takes a str or a list of str, got {type(inputs).__name__}"
            )
        return self._results(list(inputs), params, engine)

    def _params(self, params):
        params = dict(params)
        params["return_tensors"] = check_bool("return_tensors", params["return_tensors"], self.task)
        if params["truncation"] not in (None, True, False, "longest_first", "only_first", "do_not_truncate"):
            raise ValueError(f"feature-extraction: truncation must be a bool, got {params['truncation']!r}")
        return params

    def _run_encoded(self, items, encodings, params, engine):
        if not encodings:
            return []

        def head(rows, lengths, _):
            return [t.detach().cpu().clone() for t in split_rows(rows, lengths)]

        feats = self._forward(self._ids(encodings), head, None, engine)
        return [f.unsqueeze(0) if params["return_tensors"] else f.unsqueeze(0).tolist() for f in feats]


class SentenceEmbeddingPipeline(Pipeline):
    """Sentence embeddings, the sentence-transformers recipe: mean of the last hidden state over the real
    tokens, then L2 normalisation (normalize=False to skip it).

    A list of n texts returns an (n, dim) float32 torch tensor (return_tensors="np": numpy array); a single
    str returns a (dim,) vector. Inputs are truncated to `max_length` tokens: by default the `max_seq_length`
    of a sentence-transformers `sentence_bert_config.json` next to the checkpoint, else the model's limit.
    """

    task = "sentence-embeddings"
    model_class = DistilBertPreTrainedModel
    _param_defaults = {"normalize": True, "return_tensors": "pt", "max_length": None}

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.default_max_length = self.max_length
        st_max = _sentence_transformers_max_length(getattr(model, "name_or_path", None))
        if st_max is not None:
            self.default_max_length = min(self.max_length, st_max)

    def __call__(self, inputs, **kwargs):
        params, engine = self._split_call_kwargs(kwargs)
        if isinstance(inputs, str):
            return self._results([inputs], params, engine)[0]
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"inputs: sentence-embeddings takes a str or a list of str, got {type(inputs).__name__}"
            )
        return self._results(list(inputs), params, engine)

    def _params(self, params):
        params = dict(params)
        params["normalize"] = check_bool("normalize", params["normalize"], self.task)
        rt = params["return_tensors"]
        if rt not in ("pt", "np"):
            raise ValueError(f"sentence-embeddings: return_tensors must be 'pt' or 'np', got {rt!r}")
        max_length = params["max_length"]
        if max_length is None:
            max_length = self.default_max_length
        params["max_length"] = min(check_int("max_length", max_length, 2, self.task), self.max_length)
        return params

    def _encode(self, items, params):
        return self._tokenize(items, max_length=params["max_length"]).encodings

    def _run_encoded(self, items, encodings, params, engine):
        normalize, rt = params["normalize"], params["return_tensors"]
        dim = self.model.config.dim
        if encodings:

            def head(rows, lengths, _):
                rows = rows.float()
                seg = torch.repeat_interleave(
                    torch.arange(len(lengths), device=rows.device), torch.tensor(lengths, device=rows.device)
                )
                sums = torch.zeros(len(lengths), rows.shape[1], device=rows.device).index_add_(0, seg, rows)
                pooled = sums / torch.tensor(lengths, device=rows.device, dtype=torch.float32).unsqueeze(1)
                if normalize:
                    pooled = F.normalize(pooled, p=2, dim=1)
                return list(pooled.cpu())

            emb = torch.stack(self._forward(self._ids(encodings), head, None, engine))
        else:
            emb = torch.zeros(0, dim)
        return emb.numpy() if rt == "np" else emb


def _sentence_transformers_max_length(path: Any) -> int | None:
    if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
        return None
    cfg = os.path.join(path, "sentence_bert_config.json")
    try:
        with open(cfg, encoding="utf-8") as f:
            value = json.load(f).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 1 else None
