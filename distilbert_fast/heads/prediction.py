"""The flex prediction heads of DistilBertModelWithHeads (the `adapters` library's v1.3 heads: same module
layout, so the same parameter names and head_config.json), the multi-head output, and the conversion of a
transformers DistilBertFor* head into a flex head. Every head runs on the encoder's rows through the op
table (PredictionHead.mlp); per-token heads unpack once.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import (
    Activation,
    layer_norm,
    linear_act,
)
from ..config import DistilBertConfig
from ..modeling import Encoded
from ..ops.reference import LAYER_NORM_EPS
from ..outputs import (
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


# ----------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------
@dataclass
class MultiHeadOutput(ModelOutput):
    """One output per head (`out[i]`, `for o in out`, `len(out)`); loss: the sum if every head has one."""

    head_outputs: list | None = None
    loss: torch.Tensor | None = None

    @property
    def logits(self) -> torch.Tensor:
        return torch.vstack([o["logits"] for o in self.head_outputs])

    def __getitem__(self, k):
        return self.head_outputs[k] if isinstance(k, int) else super().__getitem__(k)

    def __iter__(self):
        return iter(self.head_outputs)

    def __len__(self):
        return len(self.head_outputs)


# ----------------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------------
def _label2id(id2label):
    return {label: int(i) for i, label in id2label.items()} if id2label is not None else None


class PredictionHead(nn.Sequential):
    """A named head: an nn.Sequential laid out exactly like the library's (so the state-dict keys match) plus
    `config`, the dict saved as head_config.json["config"]."""

    head_type = ""

    def __init__(self, name: str, config: dict):
        super().__init__()
        self.name = name
        self.config = config

    def build(self, model_config: DistilBertConfig) -> None:
        D = model_config.dim
        p = self.config.get("dropout_prob") or 0.0  # the library falls back to classifier_dropout: none here
        act = self.config.get("activation_function")
        bias = self.config.get("bias", True)
        mods: list[nn.Module] = []
        for l_id in range(self.config["layers"]):
            mods.append(nn.Dropout(p))
            if l_id < self.config["layers"] - 1:
                mods.append(nn.Linear(D, D))
                if act:
                    mods.append(Activation(act))
            elif "num_labels" in self.config:
                mods.append(nn.Linear(D, self.config["num_labels"], bias=bias))
            elif "num_choices" in self.config:
                mods.append(nn.Linear(D, 1, bias=bias))
            else:
                mods.append(nn.Linear(D, D, bias=bias))
                if act:
                    mods.append(Activation(act))
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def get_output_embeddings(self) -> nn.Linear | None:
        return None

    def mlp(self, ops, x: torch.Tensor, modules=None) -> torch.Tensor:
        """Run the head's modules on rows (n, D) through the op table; Linear+activation fused if possible."""
        mods = list(self if modules is None else modules)
        i = 0
        while i < len(mods):
            m = mods[i]
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if isinstance(m, nn.Linear):
                if isinstance(nxt, Activation):
                    x = linear_act(ops, m, x, nxt)
                    i += 1
                else:
                    x = ops.linear(m, x)
            elif isinstance(m, nn.LayerNorm):
                x = layer_norm(ops, m, x)
            else:  # Dropout (identity in eval), a lone Activation
                x = m(x)
            i += 1
        return x

    def run(self, ops, enc: Encoded, attention_mask, return_dict, **kwargs):
        raise NotImplementedError

    @staticmethod
    def _finish(out: ModelOutput, return_dict):
        return out if return_dict is not False else out.to_tuple()


class ClassificationHead(PredictionHead):
    head_type = "classification"

    def __init__(
        self,
        model_config,
        head_name,
        num_labels=2,
        layers=2,
        activation_function="tanh",
        id2label=None,
        use_pooler=False,
        bias=True,
        dropout_prob=None,
    ):
        if use_pooler:
            raise ValueError("DistilBERT has no pooler: use_pooler must be False")
        super().__init__(
            head_name,
            {
                "head_type": self.head_type,
                "num_labels": num_labels,
                "layers": layers,
                "activation_function": activation_function,
                "label2id": _label2id(id2label),
                "use_pooler": use_pooler,
                "bias": bias,
                "dropout_prob": dropout_prob,
            },
        )
        self.build(model_config)

    def logits(self, ops, enc: Encoded):
        return self.mlp(ops, enc.first_tokens())  # (B, num_labels) from the [CLS] rows

    def loss(self, logits, labels):
        if self.config["num_labels"] == 1:
            return F.mse_loss(logits.view(-1), labels.view(-1))
        return F.cross_entropy(logits.view(-1, self.config["num_labels"]), labels.view(-1))

    def run(self, ops, enc, attention_mask, return_dict, labels=None, **kwargs):
        logits = self.logits(ops, enc)
        loss = None if labels is None else self.loss(logits, labels)
        return self._finish(
            SequenceClassifierOutput(loss, logits, enc.hidden_states, enc.attentions), return_dict
        )


class MultiLabelClassificationHead(ClassificationHead):
    head_type = "multilabel_classification"

    def loss(self, logits, labels):
        return F.binary_cross_entropy_with_logits(logits, labels.float())


class MultipleChoiceHead(PredictionHead):
    head_type = "multiple_choice"

    def __init__(
        self,
        model_config,
        head_name,
        num_choices=2,
        layers=2,
        activation_function="tanh",
        id2label=None,
        use_pooler=False,
        dropout_prob=None,
    ):
        if use_pooler:
            raise ValueError("DistilBERT has no pooler: use_pooler must be False")
        super().__init__(
            head_name,
            {
                "head_type": self.head_type,
                "num_choices": num_choices,
                "layers": layers,
                "activation_function": activation_function,
                "label2id": _label2id(id2label),
                "use_pooler": use_pooler,
                "dropout_prob": dropout_prob,
            },
        )
        self.build(model_config)

    def run(self, ops, enc, attention_mask, return_dict, labels=None, **kwargs):
        logits = self.mlp(ops, enc.first_tokens()).view(-1, self.config["num_choices"])  # (B, C)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return self._finish(
            MultipleChoiceModelOutput(loss, logits, enc.hidden_states, enc.attentions), return_dict
        )


class PerTokenHead(PredictionHead):
    """A head on every token row (tagging, QA): the same constructor and config keys."""

    def __init__(
        self,
        model_config,
        head_name,
        num_labels=2,
        layers=1,
        activation_function="tanh",
        id2label=None,
        dropout_prob=None,
    ):
        super().__init__(
            head_name,
            {
                "head_type": self.head_type,
                "num_labels": num_labels,
                "layers": layers,
                "activation_function": activation_function,
                "label2id": _label2id(id2label),
                "dropout_prob": dropout_prob,
            },
        )
        self.build(model_config)


class TaggingHead(PerTokenHead):
    head_type = "tagging"

    def run(self, ops, enc, attention_mask, return_dict, labels=None, **kwargs):
        logits = enc.layout.unpack(self.mlp(ops, enc.hidden))  # rows (N, L) -> (B, S, L)
        loss = None
        if labels is not None:
            L = self.config["num_labels"]
            if attention_mask is not None:  # only real tokens count, as the library
                labels = torch.where(
                    attention_mask.reshape(-1) == 1, labels.reshape(-1), torch.tensor(-100).type_as(labels)
                )
            loss = F.cross_entropy(logits.reshape(-1, L), labels.reshape(-1))
        return self._finish(
            TokenClassifierOutput(loss, logits, enc.hidden_states, enc.attentions), return_dict
        )


class QuestionAnsweringHead(PerTokenHead):
    head_type = "question_answering"

    def run(self, ops, enc, attention_mask, return_dict, start_positions=None, end_positions=None, **kwargs):
        logits = enc.layout.unpack(self.mlp(ops, enc.hidden))  # (B, S, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))  # (B, S)
        loss = None
        if start_positions is not None and end_positions is not None:
            S = start_logits.size(1)
            sp = start_positions.squeeze(-1) if start_positions.dim() > 1 else start_positions
            ep = end_positions.squeeze(-1) if end_positions.dim() > 1 else end_positions
            sp, ep = sp.clamp(0, S), ep.clamp(0, S)
            loss = (
                F.cross_entropy(start_logits, sp, ignore_index=S)
                + F.cross_entropy(end_logits, ep, ignore_index=S)
            ) / 2
        return self._finish(
            QuestionAnsweringModelOutput(loss, start_logits, end_logits, enc.hidden_states, enc.attentions),
            return_dict,
        )


class BertStyleMaskedLMHead(PredictionHead):
    head_type = "masked_lm"

    def __init__(
        self,
        model_config,
        head_name,
        vocab_size=None,
        embedding_size=None,
        layers=2,
        activation_function="gelu",
        layer_norm=True,
        bias=True,
        shift_labels=False,
    ):
        super().__init__(
            head_name,
            {
                "head_type": self.head_type,
                "vocab_size": vocab_size or model_config.vocab_size,
                "embedding_size": embedding_size or model_config.dim,
                "layers": layers,
                "activation_function": activation_function,
                "layer_norm": layer_norm,
                "bias": bias,
                "shift_labels": shift_labels,
                "label2id": None,
            },
        )
        self.build(model_config)

    def build(self, model_config):
        D, E = model_config.dim, self.config["embedding_size"]
        act = self.config["activation_function"]
        mods: list[nn.Module] = []
        for l_id in range(self.config["layers"] - 1):
            mods.append(nn.Linear(D if l_id == 0 else E, E))
            if act:
                mods.append(Activation(act))
            if self.config["layer_norm"]:
                mods.append(
                    nn.LayerNorm(E, eps=LAYER_NORM_EPS)
                )  # the library: layer_norm_eps, absent -> 1e-12
        mods.append(nn.Linear(E, self.config["vocab_size"], bias=self.config["bias"]))
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def get_output_embeddings(self) -> nn.Linear:
        return self[len(self) - 1]

    def run(self, ops, enc, attention_mask, return_dict, labels=None, **kwargs):
        logits = enc.layout.unpack(self.mlp(ops, enc.hidden))  # rows (N, V) -> (B, S, V)
        loss = None
        if labels is not None:
            if self.config["shift_labels"]:
                loss = F.cross_entropy(
                    logits[..., :-1, :].reshape(-1, logits.size(-1)), labels[..., 1:].reshape(-1)
                )
            else:
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))
        return self._finish(MaskedLMOutput(loss, logits, enc.hidden_states, enc.attentions), return_dict)


MODEL_HEAD_MAP = {
    cls.head_type: cls
    for cls in (
        ClassificationHead,
        MultiLabelClassificationHead,
        TaggingHead,
        MultipleChoiceHead,
        QuestionAnsweringHead,
        BertStyleMaskedLMHead,
    )
}

# transformers' static DistilBERT heads -> a flex head "default" (the library's STATIC_TO_FLEX_HEAD_MAP)
STATIC_TO_FLEX_HEAD_MAP = {
    "DistilBertForSequenceClassification": (
        {"head_type": "classification", "layers": 2, "activation_function": "relu"},
        [None, "pre_classifier", None, None, "classifier"],
    ),
    "DistilBertForMultipleChoice": (
        {"head_type": "multiple_choice", "layers": 2, "activation_function": "relu"},
        [None, "pre_classifier", None, None, "classifier"],
    ),
    "DistilBertForTokenClassification": (
        {"head_type": "tagging", "layers": 1, "activation_function": None},
        [None, "classifier"],
    ),
    "DistilBertForQuestionAnswering": (
        {"head_type": "question_answering", "layers": 1, "activation_function": None},
        [None, "qa_outputs"],
    ),
    "DistilBertForMaskedLM": (
        {
            "head_type": "masked_lm",
            "layers": 2,
            "activation_function": "gelu",
            "layer_norm": True,
            "bias": True,
        },
        ["vocab_transform", None, "vocab_layer_norm", "vocab_projector"],
    ),
}


def static_head_config(model_class: str, head_name: str, label2id: dict | None):
    """-> (head config, [(regex, replacement)]): a transformers DistilBertFor* head as a flex head."""
    config, layers = STATIC_TO_FLEX_HEAD_MAP[model_class]
    config = copy.deepcopy(config)
    label2id = label2id or {f"LABEL_{i}": i for i in range(2)}
    if config["head_type"] == "multiple_choice":
        config["num_choices"], config["label2id"] = len(label2id), label2id
    elif config["head_type"] != "masked_lm":
        config["num_labels"], config["label2id"] = len(label2id), label2id
    renames = [(rf"{re.escape(n)}\.(\S+)", f"heads.{head_name}.{i}.\\1") for i, n in enumerate(layers) if n]
    return config, renames


def rename_key(key: str, renames) -> str:
    for pattern, repl in renames:
        new, count = re.subn(pattern, repl, key)
        if count:
            return new
    return key
