"""distilbert_fast: DistilBERT inference with fused kernels; every output matches Hugging Face transformers."""
from .config import DistilBertConfig
from .modeling import (
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    DistilBertPreTrainedModel,
)
from .adapters import Parallel, Stack
from .heads import DistilBertAdapterModel, DistilBertModelWithHeads, MultiHeadOutput
from .hf import optimize
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
    if name == "DistilBertTokenizer":
        from .tokenization import DistilBertTokenizer

        return DistilBertTokenizer
    if name == "pipeline":
        from .pipelines import pipeline

        return pipeline
    raise AttributeError(f"module 'distilbert_fast' has no attribute {name!r}")


__all__ = [
    "DistilBertConfig", "DistilBertModel", "DistilBertPreTrainedModel", "DistilBertForMaskedLM",
    "DistilBertForSequenceClassification", "DistilBertForMultipleChoice", "DistilBertForTokenClassification",
    "DistilBertForQuestionAnswering", "DistilBertTokenizer", "available_backends", "optimize", "pipeline", "ModelOutput",
    "BaseModelOutput", "MaskedLMOutput", "SequenceClassifierOutput", "MultipleChoiceModelOutput",
    "TokenClassifierOutput", "QuestionAnsweringModelOutput", "__version__",
    "DistilBertModelWithHeads", "DistilBertAdapterModel", "MultiHeadOutput", "Stack", "Parallel",
]
