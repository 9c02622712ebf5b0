"""Request bodies (text-embeddings-inference's JSON shapes, plus the tasks TEI lacks) as strict pydantic
models: a wrong type is an error naming the field, never a silent coercion ("1" is not a bool)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Direction = Literal["right", "Right", "left", "Left"]
AdapterNames = str | list[str] | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EmbedRequest(_Request):
    inputs: str | list[str]
    normalize: bool = True
    truncate: bool | None = None  # None: the server's default (no truncation: too long is an error)
    truncation_direction: Direction = "right"
    prompt_name: str | None = None


class OpenAIEmbeddingsRequest(BaseModel):
    # OpenAI clients send extra fields (user, ...): accept and ignore them, as OpenAI does.
    model_config = ConfigDict(extra="ignore", strict=True)
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class PredictRequest(_Request):
    # TEI: a str, a [text, text_pair] pair, or a list of those (a list of exactly two strings is one pair)
    inputs: str | list[str | list[str]]
    raw_scores: bool = False
    truncate: bool | None = None
    truncation_direction: Direction = "right"
    head: str | None = None  # DistilBertModelWithHeads: which head (default: the active head)
    adapter_names: AdapterNames = None  # DistilBertModelWithHeads: adapter(s) stacked for this request


class RerankRequest(_Request):
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Direction = "right"


class TokenizeRequest(_Request):
    inputs: str | list[str]
    add_special_tokens: bool = True
    prompt_name: str | None = None


class FillMaskRequest(_Request):
    inputs: str | list[str]
    top_k: int = Field(default=5, ge=1, le=1000)
    truncate: bool | None = None


class QAItem(_Request):
    question: str = Field(min_length=1)
    context: str = Field(min_length=1)


class QuestionAnsweringRequest(_Request):
    inputs: QAItem | list[QAItem]
    top_k: int = Field(default=1, ge=1, le=100)
    max_answer_len: int = Field(default=15, ge=1, le=512)
    handle_impossible_answer: bool = False


class TokenClassificationRequest(_Request):
    inputs: str | list[str]
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = "none"
    truncate: bool | None = None


def describe(error: ValidationError) -> str:
    """One line naming the field: `field `inputs.2`: Input should be a valid string`. A union reports one
    error per member; the deepest location is the most specific, and its messages are joined."""
    found: dict[str, list[dict]] = {}
    for e in error.errors():
        # union members add their type to the location ("inputs.list[str].2"): keep the body's own path
        path = ".".join(str(p) for p in e["loc"] if not _is_type_tag(p)) or "body"
        found.setdefault(path, []).append(e)
    field = max(found, key=lambda k: k.count(".") + (k != "body"))
    errors = found[field]
    if errors[0]["type"] == "extra_forbidden":
        return f"field `{field}`: unknown field"
    if errors[0]["type"] == "missing":
        return f"field `{field}`: required field is missing"
    messages = list(dict.fromkeys(e["msg"] for e in errors))
    return f"field `{field}`: {' or '.join(messages)}"


def _is_type_tag(part) -> bool:
    return isinstance(part, str) and (
        part in ("str", "bool", "int", "float", "none", "QAItem")
        or part.startswith(("list[", "function-", "literal["))
    )
