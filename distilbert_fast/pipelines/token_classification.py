"""token-classification (ner): per-token head, transformers' entity aggregation strategies."""

from __future__ import annotations

import warnings

import numpy as np

from ..modeling import (
    DistilBertForTokenClassification,
)
from .base import Pipeline, split_rows, to_float_numpy

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

    _needs_inputs = True  # entity words are cut from the text
    _ids_only = False  # offsets and special tokens: tokenizers.Encoding

    def _params(self, params):
        params = dict(params)
        strategy = getattr(params["aggregation_strategy"], "value", params["aggregation_strategy"])
        if not isinstance(strategy, str) or strategy.lower() not in AGGREGATION_STRATEGIES:
            raise ValueError(
                f"token-classification: aggregation_strategy must be one of "
                f"{AGGREGATION_STRATEGIES}, got {params['aggregation_strategy']!r}"
            )
        params["aggregation_strategy"] = strategy.lower()
        ignore_labels = params["ignore_labels"]
        if ignore_labels is None:
            ignore_labels = ["O"]
        elif isinstance(ignore_labels, str) or not isinstance(ignore_labels, (list, tuple, set)):
            raise ValueError(
                f"token-classification: ignore_labels must be a list of labels, got {ignore_labels!r}"
            )
        params["ignore_labels"] = ignore_labels
        return params

    def _run_encoded(self, items, encodings, params, engine):
        strategy, ignore_labels = params["aggregation_strategy"], params["ignore_labels"]
        if not encodings:
            return []
        inputs = items
        model = self.model

        ops = self._ops()

        def head(rows, lengths, _):
            return [to_float_numpy(t) for t in split_rows(model.head_rows(ops, rows), lengths)]

        all_logits = self._forward(self._ids(encodings), head, None, engine)
        out = []
        for i, logits in enumerate(all_logits):
            maxes = np.max(logits, axis=-1, keepdims=True)
            shifted_exp = np.exp(logits - maxes)
            scores = shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)
            e = encodings[i]
            pre = self._gather_pre_entities(
                inputs[i], e.ids, scores, e.offsets, e.special_tokens_mask, strategy
            )
            grouped = self._aggregate(pre, strategy)
            entities = [
                e
                for e in grouped
                if e.get("entity", None) not in ignore_labels
                and e.get("entity_group", None) not in ignore_labels
            ]
            out.append([_plain(e) for e in entities])
        return out

    def _word_aware(self) -> bool:
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
        return bool(backend is not None and getattr(backend.model, "continuing_subword_prefix", None))

    def _gather_pre_entities(
        self, sentence, input_ids, scores, offset_mapping, special_tokens_mask, strategy
    ):
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
                    warnings.warn(
                        "Tokenizer does not support real words, using fallback heuristic",
                        UserWarning,
                        stacklevel=2,
                    )
                is_subword = start_ind > 0 and " " not in sentence[start_ind - 1 : start_ind + 1]
            if int(input_ids[idx]) == self.tokenizer.unk_token_id:
                word = word_ref
                is_subword = False
            pre_entities.append(
                {
                    "word": word,
                    "scores": token_scores,
                    "start": start_ind,
                    "end": end_ind,
                    "index": idx,
                    "is_subword": is_subword,
                }
            )
        return pre_entities

    def _aggregate(self, pre_entities, strategy):
        id2label = self.model.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for pre_entity in pre_entities:
                entity_idx = pre_entity["scores"].argmax()
                score = pre_entity["scores"][entity_idx]
                entities.append(
                    {
                        "entity": id2label[int(entity_idx)],
                        "score": score,
                        "index": pre_entity["index"],
                        "word": pre_entity["word"],
                        "start": pre_entity["start"],
                        "end": pre_entity["end"],
                    }
                )
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
        return {
            "entity": entity,
            "score": score,
            "word": word,
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

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
        return {
            "entity_group": entity,
            "score": np.mean(scores),
            "word": self.tokenizer.convert_tokens_to_string(tokens),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

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
