"""question-answering: transformers 4.x's QuestionAnsweringPipeline (doc_stride windows, span
decoding) on the per-token start/end head.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..modeling import (
    DistilBertForQuestionAnswering,
)
from .base import Pipeline, check_bool, check_int, split_rows, to_float_numpy


# ----------------------------------------------------------------------------------------------------------
# question answering
# ----------------------------------------------------------------------------------------------------------
def _decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int, undesired_tokens: np.ndarray
):
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


def _select_starts_ends(
    start,
    end,
    p_mask,
    attention_mask,
    min_null_score=1000000,
    top_k=1,
    handle_impossible_answer=False,
    max_answer_len=15,
):
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
    _param_defaults = {
        "top_k": 1,
        "doc_stride": None,
        "max_seq_len": None,
        "max_question_len": 64,
        "max_answer_len": 15,
        "handle_impossible_answer": False,
        "align_to_words": True,
        "padding": None,
    }

    def __call__(self, *args, **kwargs):
        examples = self._parse_examples(args, kwargs)
        params, engine = self._split_call_kwargs(kwargs)
        results = self._results(examples, params, engine)
        return results[0] if len(results) == 1 else results

    def run(self, inputs, **kwargs):
        if isinstance(inputs, (str, dict)) or not isinstance(inputs, Sequence):
            raise ValueError(
                f"inputs: run() takes a list of {{'question', 'context'}} dicts, got {type(inputs).__name__}"
            )
        params, engine = self._split_call_kwargs(kwargs)
        return self._results([self._normalize(x) for x in inputs], params, engine)

    @staticmethod
    def _normalize(item) -> tuple[str, str]:
        if not isinstance(item, dict):
            raise ValueError(
                f"inputs: question-answering takes {{'question': ..., 'context': ...}} dicts, "
                f"got {type(item).__name__}"
            )
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
            raise ValueError(
                f"question-answering needs question= and context= (missing: "
                f"{', '.join(missing)}), or a {'question', 'context'} dict, or a list of them"
            )
        if isinstance(inputs, dict):
            inputs = [inputs]
        elif isinstance(inputs, (list, tuple)):
            inputs = list(inputs)
        else:
            raise ValueError(
                f"inputs: question-answering takes {{'question', 'context'}} dicts, got "
                f"{type(inputs).__name__}"
            )
        return [self._normalize(x) for x in inputs]

    _needs_inputs = True  # answers are cut from the context
    _ids_only = False  # windows, sequence ids and offsets: tokenizers.Encoding
    _truncates = False  # long contexts run as overlapping windows: nothing is cut

    def _items(self, inputs):
        return [self._normalize(x) for x in inputs]

    def _params(self, params):
        return self._check_qa_params(params)

    def _check_encodings(self, encodings):
        super()._check_encodings(encodings)
        for i, e in enumerate(encodings):
            if e.n_sequences != 2:
                raise ValueError(
                    f"encodings[{i}]: question-answering needs (question, context) pair encodings"
                )

    def _check_qa_params(self, params):
        p = dict(params)
        p["top_k"] = check_int("top_k", p["top_k"], 1, self.task)
        p["max_answer_len"] = check_int("max_answer_len", p["max_answer_len"], 1, self.task)
        p["max_question_len"] = check_int("max_question_len", p["max_question_len"], 1, self.task)
        p["handle_impossible_answer"] = check_bool(
            "handle_impossible_answer", p["handle_impossible_answer"], self.task
        )
        p["align_to_words"] = check_bool("align_to_words", p["align_to_words"], self.task)
        if p["padding"] not in (None, False, True, "do_not_pad", "longest", "max_length"):
            raise ValueError(
                f"question-answering: padding must be a bool or a padding strategy, got {p['padding']!r}"
            )
        if p["max_seq_len"] is None:
            p["max_seq_len"] = min(self.max_length, 384)
        else:
            p["max_seq_len"] = check_int("max_seq_len", p["max_seq_len"], 4, self.task)
            if p["max_seq_len"] > self.model.config.max_position_embeddings:
                raise ValueError(
                    f"question-answering: max_seq_len={p['max_seq_len']} exceeds the model's "
                    f"max_position_embeddings={self.model.config.max_position_embeddings}"
                )
        if p["doc_stride"] is None:
            p["doc_stride"] = min(p["max_seq_len"] // 2, 128)
        else:
            p["doc_stride"] = check_int("doc_stride", p["doc_stride"], 0, self.task)
        if p["doc_stride"] > p["max_seq_len"]:
            raise ValueError(
                f"question-answering: doc_stride ({p['doc_stride']}) is larger than max_seq_len "
                f"({p['max_seq_len']})"
            )
        return p

    def _truncate_question(self, questions: list[str], max_question_len: int) -> list[str]:
        enc = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for q, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"]):
            out.append(q[: offsets[max_question_len - 1][1]] if len(ids) > max_question_len else q)
        return out

    def _results(self, examples, params, engine):
        # examples: already normalized (question, context) tuples (__call__ and run() normalize them)
        p = self._check_qa_params(params)
        return self._run_encoded(examples, self._encode(examples, p) if examples else [], p, engine)

    def _encode(self, examples, p):
        """One Encoding per example: its first window, the next ones in `.overflowing`."""
        questions = self._truncate_question([q for q, _ in examples], p["max_question_len"])
        contexts = [c for _, c in examples]
        try:
            enc = self.tokenizer(
                questions,
                contexts,
                truncation="only_second",
                max_length=p["max_seq_len"],
                stride=p["doc_stride"],
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
        except ValueError as e:
            raise ValueError(
                f"question-answering: cannot split the context into windows of max_seq_len="
                f"{p['max_seq_len']} tokens overlapping by doc_stride={p['doc_stride']} ({e}); "
                "use a smaller doc_stride or a shorter question (max_question_len)"
            ) from None
        sample_of = enc["overflow_to_sample_mapping"]
        # the rows are each example's first window followed by its overflowing ones
        return [e for w, e in enumerate(enc.encodings) if w == 0 or sample_of[w] != sample_of[w - 1]]

    def _run_encoded(self, examples, first_windows, p, engine):
        if not first_windows:
            return []
        contexts = [c for _, c in examples]
        encodings, windows = [], []
        for first in first_windows:
            rows = [first, *first.overflowing]
            windows.append(list(range(len(encodings), len(encodings) + len(rows))))
            encodings.extend(rows)
        ids_of = [e.ids for e in encodings]
        model = self.model

        ops = self._ops()

        def head(rows, lengths, _):
            return [to_float_numpy(t) for t in split_rows(model.head_rows(ops, rows), lengths)]

        logits = self._forward(ids_of, head, None, engine)

        cls_id = self.tokenizer.cls_token_id
        results = []
        for ex, rows in enumerate(windows):
            context = contexts[ex]
            min_null_score = 1000000  # large and positive
            answers: list[dict] = []
            for w in rows:
                e = encodings[w]
                ids = np.asarray(ids_of[w])
                p_mask = np.asarray([[tok != 1 for tok in e.sequence_ids]])
                if cls_id is not None:
                    p_mask[0, np.nonzero(ids == cls_id)[0]] = 0  # keep [CLS] (the null answer) allowed
                attention_mask = np.ones((1, len(ids)), dtype=np.int64)
                start, end = logits[w][None, :, 0], logits[w][None, :, 1]
                starts, ends, scores, min_null_score = _select_starts_ends(
                    start,
                    end,
                    p_mask,
                    attention_mask,
                    min_null_score,
                    p["top_k"],
                    p["handle_impossible_answer"],
                    p["max_answer_len"],
                )
                for s, t, score in zip(starts, ends, scores):
                    start_index, end_index = _get_indices(e, s, t, 1, p["align_to_words"])
                    target = context[start_index:end_index]
                    same = next((a for a in answers if a["answer"].lower() == target.lower()), None)
                    if same:
                        same["score"] += score.item()
                    else:
                        answers.append(
                            {"score": score.item(), "start": start_index, "end": end_index, "answer": target}
                        )
            if p["handle_impossible_answer"]:
                answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
            answers = sorted(answers, key=lambda x: x["score"], reverse=True)[: p["top_k"]]
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
