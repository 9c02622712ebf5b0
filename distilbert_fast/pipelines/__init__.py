"""Task pipelines on distilbert_fast models, with the output formats of transformers' pipelines.

    from distilbert_fast.pipelines import pipeline
    clf = pipeline("text-classification", model="path/to/checkpoint")
    clf("a great movie")                      # [{'label': ..., 'score': ...}], as transformers
    clf(["a", "b"], top_k=None)               # every label, sorted, per input

Tasks (aliases): text-classification (sentiment-analysis), fill-mask, question-answering,
token-classification (ner), feature-extraction, sentence-embeddings (ours: mean pooling + L2 norm).

run() in two halves, for a server that tokenizes where a request arrives and runs the model elsewhere:
`encodings = clf.encode(texts)` (the tokenization run() does: tokenizers.Encoding per input; also
`truncation_side="left"` to keep the end of over-long inputs), then `clf.run_encoded(encodings, texts)`
(== clf.run(texts); token-classification and question-answering need the texts, the other tasks also take
plain lists of token ids).

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

import os
from typing import Any

import torch

from ..modeling import (
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    DistilBertPreTrainedModel,
)
from ..ops.int8 import check_quantize, is_quantized_config, quantize_model_
from .base import Pipeline, PipelineInputError, check_int, check_progress
from .feature_extraction import FeatureExtractionPipeline, SentenceEmbeddingPipeline
from .fill_mask import FillMaskPipeline
from .question_answering import QuestionAnsweringPipeline
from .text_classification import TextClassificationPipeline
from .token_classification import TokenClassificationPipeline

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
        raise ValueError(
            f"task: unknown task {task!r}; supported tasks: {', '.join(TASKS)} (aliases: {aliases})"
        )
    return task


def pipeline(
    task: str,
    model: Any = None,
    tokenizer: Any = None,
    *,
    dtype: Any = None,
    backend: str | None = None,
    batch_size: int = 32,
    device: Any = None,
    progress: bool | None = None,
    quantize: str | None = None,
    **kwargs: Any,
) -> Pipeline:
    """Build a pipeline for `task` on a distilbert_fast model.

    model: a checkpoint directory / Hugging Face cache repo id (loaded with the task's model class; BERT
    checkpoints are converted) or a distilbert_fast model instance. tokenizer: None (loaded from the model
    path), a path, or a DistilBertTokenizer. dtype / backend: as `from_pretrained` (applied to an instance
    too). batch_size: sequences per forward pass. device: where to run (default: where the model is).
    progress: tqdm bar on stderr (None: only for calls with more than 256 inputs). quantize: None or "int8"
    (as from_pretrained; an instance is quantized in place unless it already is). Remaining keyword
    arguments become the default call arguments of the pipeline (e.g. top_k=3).
    """
    task = resolve_task(task)
    cls = TASKS[task]
    check_int("batch_size", batch_size, 1)
    check_progress(progress)
    if model is None:
        raise ValueError(
            "model: pass a checkpoint directory, a Hugging Face cache repo id or a "
            "distilbert_fast model instance"
        )
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        model = TASK_MODEL_CLASSES[task].from_pretrained(
            path, dtype=dtype, backend=backend, quantize=quantize
        )
    elif isinstance(model, DistilBertPreTrainedModel):
        path = getattr(model, "name_or_path", None)
        if check_quantize(quantize) == "int8" and not is_quantized_config(model.config):
            quantize_model_(model)  # before a dtype cast: weights quantize from their loaded precision
        if backend is not None:
            model.set_backend(backend)
        if dtype is not None:
            if isinstance(dtype, str):
                dtype = getattr(torch, dtype, dtype)
            if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
                raise ValueError(
                    f"dtype must be a floating torch.dtype (e.g. torch.bfloat16) or None, got {dtype!r}"
                )
            model.to(dtype=dtype)
        model.prepare_for_inference()
    else:
        raise ValueError(
            f"model: expected a checkpoint path or a distilbert_fast model, got {type(model).__name__}"
        )

    if tokenizer is None:
        if not path:
            raise ValueError(
                "tokenizer: the model instance has no name_or_path to load a tokenizer from; pass tokenizer="
            )
        tokenizer = path
    if isinstance(tokenizer, (str, os.PathLike)):
        from ..tokenization import DistilBertTokenizer

        tokenizer = DistilBertTokenizer.from_pretrained(tokenizer)
    return cls(model, tokenizer, batch_size=batch_size, device=device, progress=progress, **kwargs)


__all__ = [
    "pipeline",
    "Pipeline",
    "PipelineInputError",
    "TextClassificationPipeline",
    "FillMaskPipeline",
    "QuestionAnsweringPipeline",
    "TokenClassificationPipeline",
    "FeatureExtractionPipeline",
    "SentenceEmbeddingPipeline",
    "TASKS",
    "TASK_ALIASES",
    "TASK_MODEL_CLASSES",
    "supported_tasks",
    "resolve_task",
]
