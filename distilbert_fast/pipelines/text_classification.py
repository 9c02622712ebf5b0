"""text-classification (sentiment-analysis): the [CLS] head, transformers' postprocessing."""

from __future__ import annotations

import numpy as np
import torch

from ..modeling import (
    DistilBertForSequenceClassification,
)
from .base import Pipeline, check_int, to_float_numpy

_UNSET = object()  # "argument not given" where None is a meaningful value (top_k)


# ----------------------------------------------------------------------------------------------------------
# text classification
# ----------------------------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    maxes = np.max(x, axis=-1, keepdims=True)
    shifted_exp = np.exp(x - maxes)
    return shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)


_CLASSIFICATION_FUNCTIONS = ("sigmoid", "softmax", "none")


class TextClassificationPipeline(Pipeline):
    """transformers' TextClassificationPipeline (v5 semantics).

    * `top_k` not given: one {"label", "score"} dict per input (the argmax); a single str input returns a
      one-element list, as transformers does.
    * `top_k=k` (int) or `top_k=None` (all labels): a list of dicts per input sorted by score.
    * `function_to_apply`: "softmax" | "sigmoid" | "none"; default from config.problem_type / num_labels:
      regression -> none, multi_label_classification or num_labels == 1 -> sigmoid, else softmax.
    * inputs: str, {"text": ..., "text_pair": ...}, or a list of those.
    """

    task = "text-classification"
    model_class = DistilBertForSequenceClassification
    _param_defaults = {"top_k": _UNSET, "function_to_apply": None}

    def __call__(self, inputs, **kwargs):
        legacy_single = "top_k" not in kwargs
        single = isinstance(inputs, (str, dict))
        params, engine = self._split_call_kwargs(kwargs)
        results = self._results([inputs] if single else self._as_list(inputs), params, engine)
        if not single:
            return results
        # transformers: a single str is wrapped in a list unless top_k was passed to this call.
        return [results[0]] if isinstance(inputs, str) and legacy_single else results[0]

    @staticmethod
    def _as_list(inputs) -> list:
        if isinstance(inputs, (list, tuple)):
            return list(inputs)
        raise ValueError(
            f"inputs: text-classification takes a str, a {{'text', 'text_pair'}} dict or a list "
            f"of those, got {type(inputs).__name__}"
        )

    def _function(self, value) -> str:
        if value is None:
            cfg = self.model.config
            if cfg.problem_type == "regression":
                return "none"
            if cfg.problem_type == "multi_label_classification" or cfg.num_labels == 1:
                return "sigmoid"
            if cfg.problem_type == "single_label_classification" or cfg.num_labels > 1:
                return "softmax"
            return getattr(cfg, "function_to_apply", "none") if hasattr(cfg, "function_to_apply") else "none"
        name = getattr(value, "value", value)
        if isinstance(name, str) and name.lower() == "default":
            return self._function(None)
        if not isinstance(name, str) or name.lower() not in _CLASSIFICATION_FUNCTIONS:
            raise ValueError(
                f"text-classification: function_to_apply must be one of "
                f"{_CLASSIFICATION_FUNCTIONS} (or None for the model's default), got {value!r}"
            )
        return name.lower()

    def _params(self, params):
        params = dict(params)
        if params["top_k"] is not _UNSET and params["top_k"] is not None:
            params["top_k"] = check_int("top_k", params["top_k"], 1, self.task)
        params["function_to_apply"] = self._function(params["function_to_apply"])
        return params

    def _items(self, inputs):
        batch: list = []
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                batch.append(x)
            elif isinstance(x, dict) and isinstance(x.get("text"), str) and set(x) <= {"text", "text_pair"}:
                pair = x.get("text_pair")
                if pair is not None and not isinstance(pair, str):
                    raise ValueError(f"inputs: item {i}: text_pair must be a str, got {type(pair).__name__}")
                batch.append((x["text"], pair) if pair else x["text"])
            else:
                raise ValueError(
                    f"inputs: text-classification takes a str or a {{'text', 'text_pair'}} "
                    f"dict; item {i} is {x!r:.80}"
                )
        return batch

    def _run_encoded(self, items, encodings, params, engine):
        top_k = params["top_k"]
        legacy = top_k is _UNSET
        if legacy:
            top_k = 1
        function = params["function_to_apply"]
        if not encodings:
            return []
        model = self.model
        ops = self._ops()

        def head(rows, lengths, _):
            starts = torch.tensor([0] + lengths[:-1], device=rows.device).cumsum(0)
            first = rows.index_select(0, starts)  # the [CLS] row of every sequence
            return list(to_float_numpy(model.head_rows(ops, first)))

        logits = self._forward(self._ids(encodings), head, None, engine)
        id2label = model.config.id2label
        out = []
        for row in logits:
            if function == "sigmoid":
                scores = _sigmoid(row)
            elif function == "softmax":
                scores = _softmax(row)
            else:
                scores = row
            if top_k == 1 and legacy:
                out.append({"label": id2label[scores.argmax().item()], "score": scores.max().item()})
                continue
            dict_scores = [{"label": id2label[i], "score": score.item()} for i, score in enumerate(scores)]
            dict_scores.sort(key=lambda d: d["score"], reverse=True)
            if top_k is not None:
                dict_scores = dict_scores[:top_k]
            out.append(dict_scores)
        return out
