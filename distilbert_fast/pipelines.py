"""Task pipelines on distilbert_fast models, with the output formats of transformers' pipelines.

    from distilbert_fast.pipelines import pipeline
    clf = pipeline("text-classification", model="path/to/checkpoint")
    clf("a great movie")                      # [{'label': ..., 'score': ...}], as transformers
    clf(["a", "b"], top_k=None)               # every label, sorted, per input

Tasks (aliases): text-classification (sentiment-analysis), fill-mask, question-answering,
token-classification (ner), feature-extraction, sentence-embeddings (ours: mean pooling + L2 norm).

How a call runs: the inputs are tokenized in one batched call; the sequences (or, for question answering,
the doc_stride windows) are sorted by length and run `batch_size` at a time through the encoder under
`torch.inference_mode()` -- on the cpp backend that runs padding-free on the real tokens only; the task
head runs on the real-token rows of the encoder output (the masked-LM head only on the [MASK] rows); the
results are put back in input order and post-processed exactly as transformers does (the postprocessing
code mirrors transformers' pipelines line by line: same numpy ops, same dtypes, same tie handling).

Deliberate differences from transformers, all where transformers would fail or cannot be matched:
* inputs longer than the model accepts are truncated to min(tokenizer.model_max_length,
  config.max_position_embeddings) tokens (transformers raises an indexing error for text-classification,
  fill-mask and feature-extraction);
* question-answering reimplements transformers 4.x's QuestionAnsweringPipeline (removed in v5) with a fast
  tokenizer; `max_question_len` (only honoured by 4.x's slow-tokenizer path) truncates the question here too.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .modeling import (
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    DistilBertPreTrainedModel,
)

logger = logging.getLogger("distilbert_fast")

# Progress bar by default when a call has more inputs than this.
PROGRESS_THRESHOLD = 256

_UNSET = object()  # "argument not given" where None is a meaningful value (text-classification top_k)


class PipelineInputError(ValueError):
    """One input of a call cannot be processed: `reason`, and `input_index` (0-based, in the call's list)."""

    def __init__(self, reason: str, input_index: int):
        super().__init__(f"{reason} (input {input_index})")
        self.reason = reason
        self.input_index = input_index


# ----------------------------------------------------------------------------------------------------------
# argument helpers
# ----------------------------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int, task: str | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        where = f"{task}: " if task else ""
        raise ValueError(f"{where}{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_bool(name: str, value: Any, task: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{task}: {name} must be True or False, got {value!r}")
    return bool(value)


def _check_progress(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"progress must be True, False or None (automatic), got {value!r}")
    return value


def _resolve_device(device: Any) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise ValueError(f"device must be a torch.device, a string such as 'cpu', or an int (-1 = cpu, "
                         f"k = cuda:k), got {device!r}")
    if isinstance(device, int):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device={device!r} is not a valid torch device ({e})") from None


def _to_float_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


# ----------------------------------------------------------------------------------------------------------
# base class: batching engine
# ----------------------------------------------------------------------------------------------------------
class Pipeline:
    """Common machinery: tokenization helpers and the sorted, batched, padding-free model runner.

    Subclasses define `task`, `model_class`, `_param_defaults` (the call arguments they accept) and
    `_results(inputs, params) -> list` (one result per input). `__call__` adds transformers' single-input
    conventions; `run(list_of_inputs, **params)` always returns one result per input, in order.
    """

    task: str = ""
    model_class: type = DistilBertPreTrainedModel
    _param_defaults: dict[str, Any] = {}

    def __init__(self, model: DistilBertPreTrainedModel, tokenizer: Any, *, batch_size: int = 32,
                 device: Any = None, progress: bool | None = None, **defaults: Any):
        if not isinstance(model, self.model_class):
            raise ValueError(f"model: the {self.task} pipeline needs a distilbert_fast "
                             f"{self.model_class.__name__}, got {type(model).__name__}")
        if tokenizer is None or not callable(tokenizer):
            raise ValueError(f"tokenizer: expected a DistilBertTokenizer, got {type(tokenizer).__name__}")
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.progress = _check_progress(progress)
        if device is not None:
            model.to(_resolve_device(device))
            model.prepare_for_inference()
        self.model = model
        self.tokenizer = tokenizer
        self._defaults = self._check_params(defaults)
        limits = [model.config.max_position_embeddings]
        model_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 10**18:
            limits.append(model_max)
        self.max_length = min(limits)

    # -- public ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def encoder(self) -> DistilBertModel:
        return self.model if isinstance(self.model, DistilBertModel) else self.model.distilbert

    def run(self, inputs: Sequence[Any], **kwargs: Any) -> list:
        """One result per input, in input order (no un-batching of single inputs)."""
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            raise ValueError(f"inputs: run() takes a list of inputs, got {type(inputs).__name__}")
        params, engine = self._split_call_kwargs(kwargs)
        return self._results(list(inputs), params, engine)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(task={self.task!r}, model={type(self.model).__name__}, "
                f"backend={self.model.backend!r}, dtype={self.model.dtype}, batch_size={self.batch_size})")

    # -- parameters ----------------------------------------------------------------------------------------
    def _check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self._param_defaults))
        if unknown:
            accepted = sorted(set(self._param_defaults) | {"batch_size", "progress"})
            raise ValueError(f"{self.task}: unknown argument(s) {', '.join(unknown)}; accepted: "
                             f"{', '.join(accepted)}")
        return dict(params)

    def _split_call_kwargs(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        engine = {"batch_size": self.batch_size, "progress": self.progress}
        if "batch_size" in kwargs:
            engine["batch_size"] = _check_int("batch_size", kwargs.pop("batch_size"), 1)
        if "progress" in kwargs:
            engine["progress"] = _check_progress(kwargs.pop("progress"))
        params = {**self._param_defaults, **self._defaults, **self._check_params(kwargs)}
        return params, engine

    # -- tokenization --------------------------------------------------------------------------------------
    def _tokenize(self, texts: list, **kwargs: Any):
        kwargs.setdefault("truncation", True)
        kwargs.setdefault("max_length", self.max_length)
        return self.tokenizer(texts, **kwargs)

    # -- the engine ----------------------------------------------------------------------------------------
    def _forward(self, sequences: list[list[int]], head: Callable, extras: list | None,
                 engine: dict[str, Any]) -> list:
        """Run every token-id sequence through the encoder and `head`; results in input order.

        Sequences are sorted by length (longest first) and batched `batch_size` at a time, right-padded;
        the encoder packs the real tokens (cpp backend) so padding costs nothing. `head(rows, lengths,
        extras)` gets the real-token rows of the batch, sequence after sequence ((sum(lengths), dim)), and
        returns one output per sequence.
        """
        n = len(sequences)
        results: list = [None] * n
        if n == 0:
            return results
        batch_size = engine["batch_size"]
        show = engine["progress"] if engine["progress"] is not None else n > PROGRESS_THRESHOLD
        order = sorted(range(n), key=lambda i: len(sequences[i]), reverse=True)
        pad_id = self.tokenizer.pad_token_id
        pad_id = self.model.config.pad_token_id or 0 if pad_id is None else pad_id
        device = self.device
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=self.task, unit="seq", file=sys.stderr, dynamic_ncols=True)
        try:
            with torch.inference_mode():
                for b0 in range(0, n, batch_size):
                    idx = order[b0:b0 + batch_size]
                    lengths = [len(sequences[i]) for i in idx]
                    if min(lengths) == 0:
                        i = idx[lengths.index(0)]
                        raise PipelineInputError(f"{self.task}: the input tokenized to zero tokens", i)
                    S = lengths[0]
                    ids = np.full((len(idx), S), pad_id, dtype=np.int64)
                    mask = np.zeros((len(idx), S), dtype=np.int64)
                    for r, i in enumerate(idx):
                        ids[r, :lengths[r]] = sequences[i]
                        mask[r, :lengths[r]] = 1
                    ids_t = torch.from_numpy(ids).to(device)
                    mask_t = torch.from_numpy(mask).to(device)
                    enc = self.encoder.encode(ids_t, attention_mask=mask_t)
                    rows = enc.hidden  # (B*S, D) padded or (real tokens, D) packed
                    if rows.shape[0] != sum(lengths):
                        rows = rows.index_select(0, mask_t.reshape(-1).nonzero().squeeze(1))
                    outs = head(rows, lengths, None if extras is None else [extras[i] for i in idx])
                    for i, out in zip(idx, outs):
                        results[i] = out
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
        return results

    def _ops(self):
        return self.model._ops_for_call(False)

    # -- to implement --------------------------------------------------------------------------------------
    def _results(self, inputs: list, params: dict[str, Any], engine: dict[str, Any]) -> list:
        raise NotImplementedError

    def _check_texts(self, inputs: list) -> list[str]:
        for i, x in enumerate(inputs):
            if not isinstance(x, str):
                raise ValueError(f"inputs: {self.task} takes a str or a list of str; item {i} is "
                                 f"{type(x).__name__}")
        return inputs


def _split_rows(x: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    return list(x.split(lengths, dim=0))


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
        raise ValueError(f"inputs: text-classification takes a str, a {{'text', 'text_pair'}} dict or a list "
                         f"of those, got {type(inputs).__name__}")

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
            raise ValueError(f"text-classification: function_to_apply must be one of "
                             f"{_CLASSIFICATION_FUNCTIONS} (or None for the model's default), got {value!r}")
        return name.lower()

    def _results(self, inputs, params, engine):
        top_k = params["top_k"]
        legacy = top_k is _UNSET
        if legacy:
            top_k = 1
        elif top_k is not None:
            top_k = _check_int("top_k", top_k, 1, self.task)
        function = self._function(params["function_to_apply"])

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
                raise ValueError(f"inputs: text-classification takes a str or a {{'text', 'text_pair'}} "
                                 f"dict; item {i} is {x!r:.80}")
        if not batch:
            return []
        enc = self._tokenize(batch)
        model = self.model

        def head(rows, lengths, _):
            starts = torch.tensor([0] + lengths[:-1], device=rows.device).cumsum(0)
            first = rows.index_select(0, starts)  # the [CLS] row of every sequence
            pooled = F.relu(model.pre_classifier(first))
            return list(_to_float_numpy(model.classifier(model.dropout(pooled))))

        logits = self._forward(enc["input_ids"], head, None, engine)
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


# ----------------------------------------------------------------------------------------------------------
# fill-mask
# ----------------------------------------------------------------------------------------------------------
class FillMaskPipeline(Pipeline):
    """transformers' FillMaskPipeline: top_k (default 5) predictions per [MASK], optional `targets`.

    Output per input: [{"score", "token", "token_str", "sequence"}]; with several masks in one input, one such
    list per mask. A list input of length 1 returns its result un-nested, as transformers does.
    """

    task = "fill-mask"
    model_class = DistilBertForMaskedLM
    _param_defaults = {"top_k": 5, "targets": None}

    def __call__(self, inputs, **kwargs):
        params, engine = self._split_call_kwargs(kwargs)
        if isinstance(inputs, str):
            return self._results([inputs], params, engine)[0]
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"inputs: fill-mask takes a str or a list of str, got {type(inputs).__name__}")
        outputs = self._results(list(inputs), params, engine)
        return outputs[0] if len(outputs) == 1 else outputs

    def _target_ids(self, targets) -> np.ndarray:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"fill-mask: targets must be a str or a list of str, got {targets!r}")
        vocab = self.tokenizer.get_vocab()
        target_ids = []
        for target in targets:
            id_ = vocab.get(target)
            if id_ is None:
                input_ids = self.tokenizer(target, add_special_tokens=False, return_attention_mask=False,
                                           return_token_type_ids=False, max_length=1,
                                           truncation=True)["input_ids"]
                if len(input_ids) == 0:
                    logger.warning(f"The specified target token `{target}` does not exist in the model "
                                   "vocabulary. We cannot replace it with anything meaningful, ignoring it")
                    continue
                id_ = input_ids[0]
                logger.warning(f"The specified target token `{target}` does not exist in the model "
                               f"vocabulary. Replacing with `{self.tokenizer.convert_ids_to_tokens(id_)}`.")
            target_ids.append(id_)
        target_ids = list(set(target_ids))  # same order as transformers
        if len(target_ids) == 0:
            raise ValueError("fill-mask: targets: at least one target must be provided when passed.")
        return np.array(target_ids)

    def _results(self, inputs, params, engine):
        self._check_texts(inputs)
        top_k = _check_int("top_k", params["top_k"], 1, self.task)
        target_ids = None if params["targets"] is None else self._target_ids(params["targets"])
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            raise ValueError("fill-mask: the tokenizer does not define a mask_token")
        if not inputs:
            return []
        enc = self._tokenize(inputs)
        sequences = enc["input_ids"]
        positions = []
        for i, ids in enumerate(sequences):
            pos = [j for j, t in enumerate(ids) if t == mask_id]
            if not pos:
                raise PipelineInputError(
                    f"fill-mask: no mask_token ({self.tokenizer.mask_token}) found on the input"
                    f"{' (after truncation)' if len(ids) >= self.max_length else ''}", i)
            positions.append(pos)
        model = self.model
        ops = self._ops()

        def head(rows, lengths, extras):
            offsets = np.cumsum([0] + lengths[:-1])
            flat = [int(o) + p for o, pos in zip(offsets, extras) for p in pos]
            h = rows.index_select(0, torch.tensor(flat, device=rows.device))  # only the [MASK] rows
            h = ops.linear(model.vocab_transform, h, model.config.activation)
            h = ops.layer_norm(model.vocab_layer_norm, h)
            logits = ops.linear(model.vocab_projector, h).float().cpu()
            return list(logits.split([len(p) for p in extras], dim=0))

        all_logits = self._forward(sequences, head, positions, engine)
        return [self._postprocess(ids, pos, logits, top_k, target_ids)
                for ids, pos, logits in zip(sequences, positions, all_logits)]

    def _postprocess(self, input_ids, masked_index, logits, top_k, target_ids):
        if target_ids is not None and target_ids.shape[0] < top_k:
            top_k = target_ids.shape[0]
        probs = logits.softmax(dim=-1)
        if target_ids is not None:
            probs = probs[..., target_ids]
        top_k = min(top_k, probs.shape[-1])
        values, predictions = probs.topk(top_k)
        input_ids = np.asarray(input_ids)
        pad = self.tokenizer.pad_token_id
        result = []
        single_mask = values.shape[0] == 1
        for i, (_values, _predictions) in enumerate(zip(values.tolist(), predictions.tolist())):
            row = []
            for v, p in zip(_values, _predictions):
                tokens = input_ids.copy()
                if target_ids is not None:
                    p = target_ids[p].tolist()
                tokens[masked_index[i]] = p
                tokens = tokens[np.where(tokens != pad)]
                sequence = self.tokenizer.decode(tokens, skip_special_tokens=single_mask)
                row.append({"score": v, "token": p, "token_str": self.tokenizer.decode([p]),
                            "sequence": sequence})
            result.append(row)
        return result[0] if single_mask else result


# ----------------------------------------------------------------------------------------------------------
# token classification
# ----------------------------------------------------------------------------------------------------------
AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """transformers' TokenClassificationPipeline (NER).

    aggregation_strategy: "none" (one dict per token: entity, score, index, word, start, end) or "simple" /
    "first" / "average" / "max" (grouped: entity_group, score, word, start, end); ignore_labels defaults to
    ["O"]. Scores are python floats (transformers returns numpy float32 scalars of the same value).
    """

    task = "token-classification"
    model_class = DistilBertForTokenClassification
    _param_defaults = {"aggregation_strategy": "none", "ignore_labels": None}

    def __call__(self, inputs, **kwargs):
        params, engine = self._split_call_kwargs(kwargs)
        if isinstance(inputs, str):
            return self._results([inputs], params, engine)[0]
        if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
            raise ValueError("inputs: token-classification takes a str or a non-empty list of str")
        return self._results(list(inputs), params, engine)

    def _results(self, inputs, params, engine):
        self._check_texts(inputs)
        strategy = getattr(params["aggregation_strategy"], "value", params["aggregation_strategy"])
        if not isinstance(strategy, str) or strategy.lower() not in AGGREGATION_STRATEGIES:
            raise ValueError(f"token-classification: aggregation_strategy must be one of "
                             f"{AGGREGATION_STRATEGIES}, got {params['aggregation_strategy']!r}")
        strategy = strategy.lower()
        ignore_labels = params["ignore_labels"]
        if ignore_labels is None:
            ignore_labels = ["O"]
        elif isinstance(ignore_labels, str) or not isinstance(ignore_labels, (list, tuple, set)):
            raise ValueError(f"token-classification: ignore_labels must be a list of labels, got "
                             f"{ignore_labels!r}")
        if not inputs:
            return []
        enc = self._tokenize(inputs, return_special_tokens_mask=True, return_offsets_mapping=True)
        model = self.model

        def head(rows, lengths, _):
            return [_to_float_numpy(t) for t in _split_rows(model.classifier(model.dropout(rows)), lengths)]

        all_logits = self._forward(enc["input_ids"], head, None, engine)
        out = []
        for i, logits in enumerate(all_logits):
            maxes = np.max(logits, axis=-1, keepdims=True)
            shifted_exp = np.exp(logits - maxes)
            scores = shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)
            pre = self._gather_pre_entities(inputs[i], enc["input_ids"][i], scores, enc["offset_mapping"][i],
                                            enc["special_tokens_mask"][i], strategy)
            grouped = self._aggregate(pre, strategy)
            entities = [e for e in grouped
                        if e.get("entity", None) not in ignore_labels
                        and e.get("entity_group", None) not in ignore_labels]
            out.append([_plain(e) for e in entities])
        return out

    def _word_aware(self) -> bool:
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
        return bool(backend is not None and getattr(backend.model, "continuing_subword_prefix", None))

    def _gather_pre_entities(self, sentence, input_ids, scores, offset_mapping, special_tokens_mask,
                             strategy):
        pre_entities = []
        word_aware = self._word_aware()
        for idx, token_scores in enumerate(scores):
            if special_tokens_mask[idx]:
                continue
            word = self.tokenizer.convert_ids_to_tokens(int(input_ids[idx]))
            start_ind, end_ind = offset_mapping[idx]
            word_ref = sentence[start_ind:end_ind]
            if word_aware:
                is_subword = len(word) != len(word_ref)
            else:
                if strategy in ("first", "average", "max"):
                    warnings.warn("Tokenizer does not support real words, using fallback heuristic",
                                  UserWarning)
                is_subword = start_ind > 0 and " " not in sentence[start_ind - 1:start_ind + 1]
            if int(input_ids[idx]) == self.tokenizer.unk_token_id:
                word = word_ref
                is_subword = False
            pre_entities.append({"word": word, "scores": token_scores, "start": start_ind, "end": end_ind,
                                 "index": idx, "is_subword": is_subword})
        return pre_entities

    def _aggregate(self, pre_entities, strategy):
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for pre_entity in pre_entities:
                entity_idx = pre_entity["scores"].argmax()
                score = pre_entity["scores"][entity_idx]
                entities.append({"entity": id2label[int(entity_idx)], "score": score,
                                 "index": pre_entity["index"], "word": pre_entity["word"],
                                 "start": pre_entity["start"], "end": pre_entity["end"]})
        else:
            entities = self._aggregate_words(pre_entities, strategy)
        if strategy == "none":
            return entities
        return self._group_entities(entities)

    def _aggregate_word(self, entities, strategy):
        id2label = self.model.config.id2label
        word = self.tokenizer.convert_tokens_to_string([e["word"] for e in entities])
        if strategy == "first":
            scores = entities[0]["scores"]
            idx = scores.argmax()
            score = scores[idx]
            entity = id2label[int(idx)]
        elif strategy == "max":
            max_entity = max(entities, key=lambda e: e["scores"].max())
            scores = max_entity["scores"]
            idx = scores.argmax()
            score = scores[idx]
            entity = id2label[int(idx)]
        else:  # average
            scores = np.stack([e["scores"] for e in entities])
            average_scores = np.nanmean(scores, axis=0)
            entity_idx = average_scores.argmax()
            entity = id2label[int(entity_idx)]
            score = average_scores[entity_idx]
        return {"entity": entity, "score": score, "word": word, "start": entities[0]["start"],
                "end": entities[-1]["end"]}

    def _aggregate_words(self, entities, strategy):
        word_entities = []
        word_group = None
        for entity in entities:
            if word_group is None:
                word_group = [entity]
            elif entity["is_subword"]:
                word_group.append(entity)
            else:
                word_entities.append(self._aggregate_word(word_group, strategy))
                word_group = [entity]
        if word_group is not None:
            word_entities.append(self._aggregate_word(word_group, strategy))
        return word_entities

    def _group_sub_entities(self, entities):
        entity = entities[0]["entity"].split("-", 1)[-1]
        scores = np.nanmean([e["score"] for e in entities])
        tokens = [e["word"] for e in entities]
        return {"entity_group": entity, "score": np.mean(scores),
                "word": self.tokenizer.convert_tokens_to_string(tokens),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    @staticmethod
    def _get_tag(entity_name: str) -> tuple[str, str]:
        if entity_name.startswith("B-"):
            return "B", entity_name[2:]
        if entity_name.startswith("I-"):
            return "I", entity_name[2:]
        return "I", entity_name  # not in B-/I- format: a continuation

    def _group_entities(self, entities):
        entity_groups = []
        disagg: list = []
        for entity in entities:
            if not disagg:
                disagg.append(entity)
                continue
            bi, tag = self._get_tag(entity["entity"])
            _, last_tag = self._get_tag(disagg[-1]["entity"])
            if tag == last_tag and bi != "B":
                disagg.append(entity)
            else:
                entity_groups.append(self._group_sub_entities(disagg))
                disagg = [entity]
        if disagg:
            entity_groups.append(self._group_sub_entities(disagg))
        return entity_groups


def _plain(entity: dict) -> dict:
    """numpy scalars -> python scalars (JSON-serialisable), key order kept."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in entity.items()}


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
            raise ValueError(f"inputs: feature-extraction takes a str or a list of str, got "
                             f"{type(inputs).__name__}")
        return self._results(list(inputs), params, engine)

    def _results(self, inputs, params, engine):
        self._check_texts(inputs)
        return_tensors = _check_bool("return_tensors", params["return_tensors"], self.task)
        if params["truncation"] not in (None, True, False, "longest_first", "only_first", "do_not_truncate"):
            raise ValueError(f"feature-extraction: truncation must be a bool, got {params['truncation']!r}")
        if not inputs:
            return []
        enc = self._tokenize(inputs)

        def head(rows, lengths, _):
            return [t.detach().cpu().clone() for t in _split_rows(rows, lengths)]

        feats = self._forward(enc["input_ids"], head, None, engine)
        return [f.unsqueeze(0) if return_tensors else f.unsqueeze(0).tolist() for f in feats]


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
            raise ValueError(f"inputs: sentence-embeddings takes a str or a list of str, got "
                             f"{type(inputs).__name__}")
        return self._results(list(inputs), params, engine)

    def _results(self, inputs, params, engine):
        self._check_texts(inputs)
        normalize = _check_bool("normalize", params["normalize"], self.task)
        rt = params["return_tensors"]
        if rt not in ("pt", "np"):
            raise ValueError(f"sentence-embeddings: return_tensors must be 'pt' or 'np', got {rt!r}")
        max_length = params["max_length"]
        if max_length is None:
            max_length = self.default_max_length
        max_length = min(_check_int("max_length", max_length, 2, self.task), self.max_length)
        dim = self.model.config.dim
        if inputs:
            enc = self._tokenize(inputs, max_length=max_length)

            def head(rows, lengths, _):
                rows = rows.float()
                seg = torch.repeat_interleave(torch.arange(len(lengths), device=rows.device),
                                              torch.tensor(lengths, device=rows.device))
                sums = torch.zeros(len(lengths), rows.shape[1], device=rows.device).index_add_(0, seg, rows)
                pooled = sums / torch.tensor(lengths, device=rows.device, dtype=torch.float32).unsqueeze(1)
                if normalize:
                    pooled = F.normalize(pooled, p=2, dim=1)
                return list(pooled.cpu())

            emb = torch.stack(self._forward(enc["input_ids"], head, None, engine))
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


# ----------------------------------------------------------------------------------------------------------
# question answering
# ----------------------------------------------------------------------------------------------------------
def _decode_spans(start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int,
                  undesired_tokens: np.ndarray):
    """transformers 4.x `decode_spans`: top-k (start, end) of the outer product start x end, upper-triangular
    with a max_answer_len band; start/end (1, L)."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired_spans = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def _select_starts_ends(start, end, p_mask, attention_mask, min_null_score=1000000, top_k=1,
                        handle_impossible_answer=False, max_answer_len=15):
    """transformers 4.x `select_starts_ends`: softmax over the allowed tokens of one window ([CLS] + context),
    null score from [CLS], then the best spans. All arrays (1, L)."""
    undesired_tokens = np.abs(np.array(p_mask) - 1)  # 1 = may be part of an answer
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # mask [CLS]
    starts, ends, scores = _decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


class QuestionAnsweringPipeline(Pipeline):
    """Extractive QA with transformers 4.x QuestionAnsweringPipeline semantics (v5 removed it).

    Call as qa(question=..., context=...) (str or lists), qa({"question", "context"}), qa([dicts]) or
    qa(question, context). The context is split into windows of max_seq_len tokens overlapping by doc_stride;
    per window, softmax over [CLS] + context tokens of the start and end logits, span score = p_start * p_end
    for start <= end < start + max_answer_len; the top_k spans of every window are mapped to character
    offsets (whole words with align_to_words=True), equal answers across windows add up their scores, and
    with handle_impossible_answer the empty answer scores the minimum over windows of p_start[CLS] *
    p_end[CLS]. Result: {"score", "start", "end", "answer"} or, when more than one answer remains, a list
    sorted by score; one result per example, a single example un-nested.
    """

    task = "question-answering"
    model_class = DistilBertForQuestionAnswering
    _param_defaults = {"top_k": 1, "doc_stride": None, "max_seq_len": None, "max_question_len": 64,
                       "max_answer_len": 15, "handle_impossible_answer": False, "align_to_words": True,
                       "padding": None}

    def __call__(self, *args, **kwargs):
        examples = self._parse_examples(args, kwargs)
        params, engine = self._split_call_kwargs(kwargs)
        results = self._results(examples, params, engine)
        return results[0] if len(results) == 1 else results

    def run(self, inputs, **kwargs):
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            raise ValueError(f"inputs: run() takes a list of {{'question', 'context'}} dicts, got "
                             f"{type(inputs).__name__}")
        params, engine = self._split_call_kwargs(kwargs)
        return self._results([self._normalize(x) for x in inputs], params, engine)

    @staticmethod
    def _normalize(item) -> tuple[str, str]:
        if not isinstance(item, dict):
            raise ValueError(f"inputs: question-answering takes {{'question': ..., 'context': ...}} dicts, "
                             f"got {type(item).__name__}")
        for k in ("question", "context"):
            if k not in item:
                raise ValueError(f"inputs: a dict with keys question and context is needed; {k!r} is missing")
            if item[k] is None:
                raise ValueError(f"{k} cannot be None")
            if not isinstance(item[k], str):
                raise ValueError(f"{k} must be a str, got {type(item[k]).__name__}")
            if len(item[k]) == 0:
                raise ValueError(f"{k} cannot be empty")
        return item["question"], item["context"]

    def _parse_examples(self, args, kwargs) -> list[tuple[str, str]]:
        """transformers' QuestionAnsweringArgumentHandler (pops question/context/X/data from kwargs)."""
        if args:
            if len(args) == 1:
                inputs = args[0]
            elif len(args) == 2 and {type(a) for a in args} == {str}:
                inputs = [{"question": args[0], "context": args[1]}]
            else:
                inputs = list(args)
        elif "X" in kwargs:
            inputs = kwargs.pop("X")
        elif "data" in kwargs:
            inputs = kwargs.pop("data")
        elif "question" in kwargs and "context" in kwargs:
            q, c = kwargs.pop("question"), kwargs.pop("context")
            if isinstance(q, list) and isinstance(c, str):
                inputs = [{"question": x, "context": c} for x in q]
            elif isinstance(q, list) and isinstance(c, list):
                if len(q) != len(c):
                    raise ValueError("question and context lists don't have the same lengths")
                inputs = [{"question": x, "context": y} for x, y in zip(q, c)]
            elif isinstance(q, str) and isinstance(c, str):
                inputs = [{"question": q, "context": c}]
            else:
                raise ValueError("question/context: pass strings or lists of strings")
        else:
            missing = [k for k in ("question", "context") if k not in kwargs]
            raise ValueError(f"question-answering needs question= and context= (missing: "
                             f"{', '.join(missing)}), or a {'question', 'context'} dict, or a list of them")
        if isinstance(inputs, dict):
            inputs = [inputs]
        elif isinstance(inputs, (list, tuple)):
            inputs = list(inputs)
        else:
            raise ValueError(f"inputs: question-answering takes {{'question', 'context'}} dicts, got "
                             f"{type(inputs).__name__}")
        return [self._normalize(x) for x in inputs]

    def _check_qa_params(self, params):
        p = dict(params)
        p["top_k"] = _check_int("top_k", p["top_k"], 1, self.task)
        p["max_answer_len"] = _check_int("max_answer_len", p["max_answer_len"], 1, self.task)
        p["max_question_len"] = _check_int("max_question_len", p["max_question_len"], 1, self.task)
        p["handle_impossible_answer"] = _check_bool("handle_impossible_answer", p["handle_impossible_answer"],
                                                    self.task)
        p["align_to_words"] = _check_bool("align_to_words", p["align_to_words"], self.task)
        if p["padding"] not in (None, False, True, "do_not_pad", "longest", "max_length"):
            raise ValueError(f"question-answering: padding must be a bool or a padding strategy, got "
                             f"{p['padding']!r}")
        if p["max_seq_len"] is None:
            p["max_seq_len"] = min(self.max_length, 384)
        else:
            p["max_seq_len"] = _check_int("max_seq_len", p["max_seq_len"], 4, self.task)
            if p["max_seq_len"] > self.model.config.max_position_embeddings:
                raise ValueError(f"question-answering: max_seq_len={p['max_seq_len']} exceeds the model's "
                                 f"max_position_embeddings={self.model.config.max_position_embeddings}")
        if p["doc_stride"] is None:
            p["doc_stride"] = min(p["max_seq_len"] // 2, 128)
        else:
            p["doc_stride"] = _check_int("doc_stride", p["doc_stride"], 0, self.task)
        if p["doc_stride"] > p["max_seq_len"]:
            raise ValueError(f"question-answering: doc_stride ({p['doc_stride']}) is larger than max_seq_len "
                             f"({p['max_seq_len']})")
        return p

    def _truncate_question(self, questions: list[str], max_question_len: int) -> list[str]:
        enc = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for q, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"]):
            out.append(q[:offsets[max_question_len - 1][1]] if len(ids) > max_question_len else q)
        return out

    def _results(self, examples, params, engine):
        p = self._check_qa_params(params)
        if not examples:
            return []
        questions = self._truncate_question([q for q, _ in examples], p["max_question_len"])
        contexts = [c for _, c in examples]
        try:
            enc = self.tokenizer(questions, contexts, truncation="only_second", max_length=p["max_seq_len"],
                                 stride=p["doc_stride"], return_overflowing_tokens=True,
                                 return_offsets_mapping=True)
        except ValueError as e:
            raise ValueError(f"question-answering: cannot split the context into windows of max_seq_len="
                             f"{p['max_seq_len']} tokens overlapping by doc_stride={p['doc_stride']} ({e}); "
                             "use a smaller doc_stride or a shorter question (max_question_len)") from None
        encodings = enc.encodings
        sample_of = enc["overflow_to_sample_mapping"]
        model = self.model

        def head(rows, lengths, _):
            return [_to_float_numpy(t) for t in _split_rows(model.qa_outputs(model.dropout(rows)), lengths)]

        logits = self._forward(enc["input_ids"], head, None, engine)
        windows: list[list[int]] = [[] for _ in examples]
        for w, s in enumerate(sample_of):
            windows[s].append(w)

        cls_id = self.tokenizer.cls_token_id
        results = []
        for ex, rows in enumerate(windows):
            context = contexts[ex]
            min_null_score = 1000000  # large and positive
            answers: list[dict] = []
            for w in rows:
                e = encodings[w]
                ids = np.asarray(enc["input_ids"][w])
                p_mask = np.asarray([[tok != 1 for tok in e.sequence_ids]])
                if cls_id is not None:
                    p_mask[0, np.nonzero(ids == cls_id)[0]] = 0  # keep [CLS] (the null answer) allowed
                attention_mask = np.ones((1, len(ids)), dtype=np.int64)
                start, end = logits[w][None, :, 0], logits[w][None, :, 1]
                starts, ends, scores, min_null_score = _select_starts_ends(
                    start, end, p_mask, attention_mask, min_null_score, p["top_k"],
                    p["handle_impossible_answer"], p["max_answer_len"])
                for s, t, score in zip(starts, ends, scores):
                    start_index, end_index = _get_indices(e, s, t, 1, p["align_to_words"])
                    target = context[start_index:end_index]
                    same = next((a for a in answers if a["answer"].lower() == target.lower()), None)
                    if same:
                        same["score"] += score.item()
                    else:
                        answers.append({"score": score.item(), "start": start_index, "end": end_index,
                                        "answer": target})
            if p["handle_impossible_answer"]:
                answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
            answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:p["top_k"]]
            results.append(answers[0] if len(answers) == 1 else answers)
        return results


def _get_indices(enc, s, e, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    if align_to_words:
        try:
            start_word = enc.token_to_word(s)
            end_word = enc.token_to_word(e)
            start_index = enc.word_to_chars(start_word, sequence_index=sequence_index)[0]
            end_index = enc.word_to_chars(end_word, sequence_index=sequence_index)[1]
        except Exception:
            # [CLS] (and tokenizers without words) have no word: keep to the token offsets.
            start_index = enc.offsets[s][0]
            end_index = enc.offsets[e][1]
    else:
        start_index = enc.offsets[s][0]
        end_index = enc.offsets[e][1]
    return int(start_index), int(end_index)


# ----------------------------------------------------------------------------------------------------------
# factory
# ----------------------------------------------------------------------------------------------------------
TASKS: dict[str, type[Pipeline]] = {
    "text-classification": TextClassificationPipeline,
    "fill-mask": FillMaskPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "token-classification": TokenClassificationPipeline,
    "feature-extraction": FeatureExtractionPipeline,
    "sentence-embeddings": SentenceEmbeddingPipeline,
}
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
# The class from_pretrained builds for a task given a checkpoint path.
TASK_MODEL_CLASSES: dict[str, type[DistilBertPreTrainedModel]] = {
    "text-classification": DistilBertForSequenceClassification,
    "fill-mask": DistilBertForMaskedLM,
    "question-answering": DistilBertForQuestionAnswering,
    "token-classification": DistilBertForTokenClassification,
    "feature-extraction": DistilBertModel,
    "sentence-embeddings": DistilBertModel,
}


def supported_tasks() -> list[str]:
    return list(TASKS) + list(TASK_ALIASES)


def resolve_task(task: Any) -> str:
    if isinstance(task, str) and task in TASK_ALIASES:
        return TASK_ALIASES[task]
    if not isinstance(task, str) or task not in TASKS:
        aliases = ", ".join(f"{a} -> {t}" for a, t in TASK_ALIASES.items())
        raise ValueError(f"task: unknown task {task!r}; supported tasks: {', '.join(TASKS)} "
                         f"(aliases: {aliases})")
    return task


def pipeline(task: str, model: Any = None, tokenizer: Any = None, *, dtype: Any = None,
             backend: str | None = None, batch_size: int = 32, device: Any = None,
             progress: bool | None = None, **kwargs: Any) -> Pipeline:
    """Build a pipeline for `task` on a distilbert_fast model.

    model: a checkpoint directory / Hugging Face cache repo id (loaded with the task's model class; BERT
    checkpoints are converted) or a distilbert_fast model instance. tokenizer: None (loaded from the model
    path), a path, or a DistilBertTokenizer. dtype / backend: as `from_pretrained` (applied to an instance
    too). batch_size: sequences per forward pass. device: where to run (default: where the model is).
    progress: tqdm bar on stderr (None: only for calls with more than 256 inputs). Remaining keyword
    arguments become the default call arguments of the pipeline (e.g. top_k=3).
    """
    task = resolve_task(task)
    cls = TASKS[task]
    _check_int("batch_size", batch_size, 1)
    _check_progress(progress)
    if model is None:
        raise ValueError("model: pass a checkpoint directory, a Hugging Face cache repo id or a "
                         "distilbert_fast model instance")
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        model = TASK_MODEL_CLASSES[task].from_pretrained(path, dtype=dtype, backend=backend)
    elif isinstance(model, DistilBertPreTrainedModel):
        path = getattr(model, "name_or_path", None)
        if backend is not None:
            model.set_backend(backend)
        if dtype is not None:
            if isinstance(dtype, str):
                dtype = getattr(torch, dtype, dtype)
            if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
                raise ValueError(f"dtype must be a floating torch.dtype (e.g. torch.bfloat16) or None, got "
                                 f"{dtype!r}")
            model.to(dtype=dtype)
        model.prepare_for_inference()
    else:
        raise ValueError(f"model: expected a checkpoint path or a distilbert_fast model, got "
                         f"{type(model).__name__}")

    if tokenizer is None:
        if not path:
            raise ValueError("tokenizer: the model instance has no name_or_path to load a tokenizer from; "
                             "pass tokenizer=")
        tokenizer = path
    if isinstance(tokenizer, (str, os.PathLike)):
        from .tokenization import DistilBertTokenizer

        tokenizer = DistilBertTokenizer.from_pretrained(tokenizer)
    return cls(model, tokenizer, batch_size=batch_size, device=device, progress=progress, **kwargs)


__all__ = [
    "pipeline", "Pipeline", "PipelineInputError", "TextClassificationPipeline", "FillMaskPipeline",
    "QuestionAnsweringPipeline", "TokenClassificationPipeline", "FeatureExtractionPipeline",
    "SentenceEmbeddingPipeline", "TASKS", "TASK_ALIASES", "TASK_MODEL_CLASSES", "supported_tasks",
    "resolve_task",
]
