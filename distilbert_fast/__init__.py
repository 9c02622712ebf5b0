"""distilbert_fast: DistilBERT inference with fused kernels; every output matches Hugging Face transformers."""

from . import cuda_graphs  # noqa: F401  registers model.enable_cuda_graphs()'s runner (runtime layer)
from .adapters import Parallel, Stack
from .config import DistilBertConfig
from .heads import DistilBertAdapterModel, DistilBertModelWithHeads, MultiHeadOutput
from .hf import optimize
from .modeling import (
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    DistilBertPreTrainedModel,
)
from .ops import available_backends
from .outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

__version__ = "0.1.0"


def __getattr__(name):
    # The tokenizer pulls in the `tokenizers` library; import it only when asked for.
    if name in ("DistilBertTokenizer", "DistilBertTokenizerFast"):  # one class, as in transformers 5
        from .tokenization import DistilBertTokenizer

        return DistilBertTokenizer
    if name == "pipeline":
        from .pipelines import pipeline

        return pipeline
    raise AttributeError(f"module 'distilbert_fast' has no attribute {name!r}")


__all__ = [
    "DistilBertConfig",
    "DistilBertModel",
    "DistilBertPreTrainedModel",
    "DistilBertForMaskedLM",
    "DistilBertForSequenceClassification",
    "DistilBertForMultipleChoice",
    "DistilBertForTokenClassification",
    "DistilBertForQuestionAnswering",
    "DistilBertTokenizer",
    "DistilBertTokenizerFast",
    "available_backends",
    "optimize",
    "pipeline",
    "ModelOutput",
    "BaseModelOutput",
    "MaskedLMOutput",
    "SequenceClassifierOutput",
    "MultipleChoiceModelOutput",
    "TokenClassifierOutput",
    "QuestionAnsweringModelOutput",
    "__version__",
    "DistilBertModelWithHeads",
    "DistilBertAdapterModel",
    "MultiHeadOutput",
    "Stack",
    "Parallel",
]
