"""DistilBertModelWithHeads: one shared encoder, named flexible heads, bottleneck adapters (adapters/, shared
with every model class).

The heads are the `adapters` library's flexible heads (v1.3: adapters/heads/base.py, language_modeling.py)
with the same module layout, so their parameter names (`heads.NAME.<index>.weight`) and head_config.json
files are the library's:

  classification / multilabel_classification / multiple_choice (layers=2, tanh), on the [CLS] row:
      [Dropout, Linear(D, D), act, Dropout, Linear(D, num_labels | 1)]
  tagging / question_answering (layers=1), on every token row:
      [Dropout, Linear(D, num_labels)]
  masked_lm (layers=2, gelu), on every token row, the projector tied to the word embeddings:
      [Linear(D, D), act, LayerNorm, Linear(D, V)]

`forward(..., head="a")` runs one head, `head=["a", "b"]` runs several heads on ONE encoder pass (a
MultiHeadOutput, one output per head, in order). With a Parallel adapter setup the batch is replicated at the
first adapter layer and head i reads channel i. Per-token heads run on the encoder's rows (only the real
tokens on the packed backends) and unpack once; sequence heads read the [CLS] rows.

Formats (the library's): adapter folders (adapter_config.json + adapter.safetensors | pytorch_adapter.bin),
head folders (head_config.json + model_head.safetensors | pytorch_model_head.bin), whole models saved by its
save_pretrained (config.json with "adapters" and "prediction_heads"), static DistilBertFor* checkpoints
(converted to a flex head "default" as the library does). `.bin` files are read with weights_only=True.
"""

from ..adapters import AdapterCompositionBlock, Parallel, Stack
from .folders import LIBRARY_MODEL_CLASS, HeadAndAdapterFolders
from .model import DistilBertAdapterModel, DistilBertModelWithHeads
from .prediction import (
    MODEL_HEAD_MAP,
    STATIC_TO_FLEX_HEAD_MAP,
    BertStyleMaskedLMHead,
    ClassificationHead,
    MultiHeadOutput,
    MultiLabelClassificationHead,
    MultipleChoiceHead,
    PredictionHead,
    QuestionAnsweringHead,
    TaggingHead,
    static_head_config,
)

__all__ = [
    "DistilBertModelWithHeads",
    "DistilBertAdapterModel",
    "MultiHeadOutput",
    "PredictionHead",
    "ClassificationHead",
    "MultiLabelClassificationHead",
    "MultipleChoiceHead",
    "TaggingHead",
    "QuestionAnsweringHead",
    "BertStyleMaskedLMHead",
    "MODEL_HEAD_MAP",
    "STATIC_TO_FLEX_HEAD_MAP",
    "static_head_config",
    "HeadAndAdapterFolders",
    "LIBRARY_MODEL_CLASS",
    "Stack",
    "Parallel",
    "AdapterCompositionBlock",
]
