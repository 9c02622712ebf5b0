"""Input rows of batch jobs: what one line of a .txt / .jsonl file (or one parquet record) means for a task,
and pipeline results as JSON-able values. Shared by `distilbert-fast run` (cli.py) and the Ray Data job
(ray.py), so both accept exactly the same rows and write exactly the same results.

    parse_line(line, kind, task)   # kind ".txt" | ".jsonl" -> the pipeline input, or RowError(reason)
    parse_record(obj, task)        # a dict (JSON object, parquet record) -> the pipeline input, or RowError
    jsonable(result)               # tensors / numpy -> lists and Python scalars
"""

from __future__ import annotations

import json
from typing import Any

QA_TASK = "question-answering"


class RowError(ValueError):
    """One input row cannot be used for the task; str(e) is the reason, without the row's location."""


def parse_line(line: str, kind: str, task: str) -> Any:
    """One non-blank line (without its newline) of a .txt (the text itself) or .jsonl file."""
    if kind == ".txt":
        if task == QA_TASK:
            raise RowError('question-answering needs a .jsonl input with "question" and "context" fields')
        return line
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise RowError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    return parse_record(obj, task)


def parse_record(obj: Any, task: str) -> Any:
    """A JSON object / parquet record: {"text"} (+ optional "text_pair" for text-classification), or
    {"question", "context"} for question-answering. Other fields are ignored. (A parquet reader drops null
    values first, so that a null column reads as a missing field.)"""
    if not isinstance(obj, dict):
        raise RowError(f"expected a JSON object, got {type(obj).__name__}")
    fields = ("question", "context") if task == QA_TASK else ("text",)
    for field in fields:
        if field not in obj:
            raise RowError(f'missing field "{field}"')
        if not isinstance(obj[field], str) or (task == QA_TASK and not obj[field]):
            raise RowError(f'field "{field}" must be a non-empty string')
    if task == QA_TASK:
        return {"question": obj["question"], "context": obj["context"]}
    pair = obj.get("text_pair")
    if task == "text-classification" and pair is not None:
        if not isinstance(pair, str):
            raise RowError('field "text_pair" must be a string')
        return {"text": obj["text"], "text_pair": pair}
    return obj["text"]


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and callable(x.tolist):  # torch tensors, numpy arrays and scalars
        return x.tolist()
    return x
