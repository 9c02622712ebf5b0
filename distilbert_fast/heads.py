"""DistilBertModelWithHeads: one shared encoder, named flexible heads, bottleneck adapters (adapters.py).

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

from __future__ import annotations

import copy
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint as ckpt
from .adapters import (
    ADAPTER_CONFIG_MAP,
    LIBRARY_VERSION,
    Activation,
    AdapterCompositionBlock,
    AdapterRun,
    AdaptersConfig,
    Parallel,
    Stack,
    adapter_config_hash,
    adapter_module,
    attach_adapter_layers,
    layer_norm,
    linear_act,
    parse_composition,
    parse_heads_from_composition,
    resolve_adapter_config,
    _ACTIVATION_RENAME,
)
from .config import DistilBertConfig
from .modeling import DistilBertModel, DistilBertPreTrainedModel, Encoded
from .outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

logger = logging.getLogger("distilbert_fast")

ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, ADAPTER_SAFE_WEIGHTS_NAME = (
    "adapter_config.json",
    "pytorch_adapter.bin",
    "adapter.safetensors",
)
HEAD_CONFIG_NAME, HEAD_WEIGHTS_NAME, HEAD_SAFE_WEIGHTS_NAME = (
    "head_config.json",
    "pytorch_model_head.bin",
    "model_head.safetensors",
)
LIBRARY_MODEL_CLASS = "DistilBertAdapterModel"


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


class TaggingHead(PredictionHead):
    head_type = "tagging"

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


class QuestionAnsweringHead(PredictionHead):
    head_type = "question_answering"

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
                mods.append(nn.LayerNorm(E, eps=1e-12))  # the library: layer_norm_eps, absent -> 1e-12
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


def _rename(key: str, renames) -> str:
    for pattern, repl in renames:
        new, count = re.subn(pattern, repl, key)
        if count:
            return new
    return key


# ----------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------
class DistilBertModelWithHeads(DistilBertPreTrainedModel):
    """One DistilBERT encoder, any number of named heads, bottleneck adapters; see the module docstring."""

    head_types = tuple(MODEL_HEAD_MAP)

    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        self.distilbert = DistilBertModel(config, backend)
        for block in self.distilbert.transformer.layer:
            attach_adapter_layers(block)
        self.heads = nn.ModuleDict()
        self._active_heads: list[str] = []
        self.adapters_config = AdaptersConfig()
        # A model saved by the adapters library (or by us) lists its adapters and heads in config.json.
        extra = config.__dict__.get("_extra", {})
        adapters, heads = extra.get("adapters"), extra.get("prediction_heads")
        self.post_init()
        for name, cfg in (AdaptersConfig.configs_from_dict(adapters) if adapters else {}).items():
            self.add_adapter(name, cfg)
        for name, head_cfg in (heads or {}).items():
            self.add_prediction_head_from_config(name, dict(head_cfg), overwrite_ok=True)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.distilbert.get_input_embeddings()

    def get_position_embeddings(self) -> nn.Embedding:
        return self.distilbert.get_position_embeddings()

    def tie_weights(self) -> None:
        if not getattr(self, "heads", None) or not self.config.tie_word_embeddings:
            return
        emb = self.get_input_embeddings()
        for head in self.heads.values():
            out = head.get_output_embeddings()
            if out is not None and out.weight.shape == emb.weight.shape:
                out.weight = emb.weight

    def _tied_keys(self) -> set[str]:
        emb = self.get_input_embeddings().weight
        return {
            f"heads.{n}.{len(h) - 1}.weight"
            for n, h in self.heads.items()
            if h.get_output_embeddings() is not None and h.get_output_embeddings().weight is emb
        }

    # -- heads -----------------------------------------------------------------------------------------------
    @property
    def active_head(self) -> str | list[str] | None:
        if not self._active_heads:
            return None
        return self._active_heads[0] if len(self._active_heads) == 1 else list(self._active_heads)

    @active_head.setter
    def active_head(self, value) -> None:
        if value is None or value == "":
            self._active_heads = []
            return
        names = [value] if isinstance(value, str) else list(value)
        unknown = [n for n in names if n not in self.heads]
        if unknown:
            raise ValueError(
                f"Model does not contain a head with name(s) {unknown}; heads: {list(self.heads)}"
            )
        self._active_heads = names
        if isinstance(value, str):  # as the library: a single active head also sets the config's label maps
            label2id = self.heads[value].config.get("label2id")
            if label2id:
                self.config.id2label = {int(i): str(lab) for lab, i in label2id.items()}
                self.config.label2id = {str(lab): int(i) for lab, i in label2id.items()}

    def add_prediction_head(self, head: PredictionHead, overwrite_ok: bool = False, set_active: bool = True):
        if head.name in self.heads and not overwrite_ok:
            raise ValueError(
                f"Model already contains a head with name '{head.name}'. Use overwrite_ok=True to "
                "force overwrite."
            )
        if "label2id" in head.config and head.config["label2id"] is None:
            n = head.config.get("num_labels", head.config.get("num_choices"))
            if n is not None:
                head.config["label2id"] = {f"LABEL_{i}": i for i in range(n)}
        head.apply(self._init_weights)
        p = next(self.parameters())
        head.to(device=p.device, dtype=p.dtype)
        head.train(self.training)
        self.heads[head.name] = head
        self.tie_weights()
        if set_active:
            self.active_head = head.name

    def add_prediction_head_from_config(
        self, head_name: str, config: dict, overwrite_ok: bool = False, set_active: bool = True
    ) -> None:
        config = dict(config)
        head_type = config.pop("head_type")
        id2label = config.pop("id2label", None)
        label2id = config.pop("label2id", None)
        if id2label is None and label2id is not None:
            id2label = {int(i): lab for lab, i in label2id.items()}
        if id2label is not None:
            config["id2label"] = {int(i): lab for i, lab in id2label.items()}
        if head_type not in MODEL_HEAD_MAP:
            raise ValueError(
                f"head type {head_type!r} is not supported on DistilBERT; supported: {self.head_types}"
            )
        cls = MODEL_HEAD_MAP[head_type]
        if head_type in ("classification", "multilabel_classification"):
            config.pop("multilabel", None)
        if head_type == "masked_lm":
            config.pop("id2label", None)
        self.add_prediction_head(
            cls(self.config, head_name, **config), overwrite_ok=overwrite_ok, set_active=set_active
        )

    def add_classification_head(
        self,
        head_name,
        num_labels=2,
        layers=2,
        activation_function="tanh",
        overwrite_ok=False,
        multilabel=False,
        id2label=None,
        use_pooler=False,
    ):
        cls = MultiLabelClassificationHead if multilabel else ClassificationHead
        self.add_prediction_head(
            cls(self.config, head_name, num_labels, layers, activation_function, id2label, use_pooler),
            overwrite_ok,
        )

    def add_multiple_choice_head(
        self,
        head_name,
        num_choices=2,
        layers=2,
        activation_function="tanh",
        overwrite_ok=False,
        id2label=None,
        use_pooler=False,
    ):
        self.add_prediction_head(
            MultipleChoiceHead(
                self.config, head_name, num_choices, layers, activation_function, id2label, use_pooler
            ),
            overwrite_ok,
        )

    def add_tagging_head(
        self, head_name, num_labels=2, layers=1, activation_function="tanh", overwrite_ok=False, id2label=None
    ):
        self.add_prediction_head(
            TaggingHead(self.config, head_name, num_labels, layers, activation_function, id2label),
            overwrite_ok,
        )

    def add_qa_head(
        self, head_name, num_labels=2, layers=1, activation_function="tanh", overwrite_ok=False, id2label=None
    ):
        self.add_prediction_head(
            QuestionAnsweringHead(self.config, head_name, num_labels, layers, activation_function, id2label),
            overwrite_ok,
        )

    def add_masked_lm_head(self, head_name, activation_function="gelu", layers=2, overwrite_ok=False):
        self.add_prediction_head(
            BertStyleMaskedLMHead(
                self.config, head_name, layers=layers, activation_function=activation_function
            ),
            overwrite_ok,
        )

    def delete_head(self, head_name: str) -> None:
        if head_name not in self.heads:
            logger.info("No prediction head '%s' found for deletion. Skipping.", head_name)
            return
        del self.heads[head_name]
        self._active_heads = [h for h in self._active_heads if h != head_name]

    def get_prediction_heads_config(self) -> dict:
        return {name: copy.deepcopy(head.config) for name, head in self.heads.items()}

    def get_labels_dict(self, head_name: str | None = None):
        head_name = head_name or self.active_head
        if head_name is None or not isinstance(head_name, str):
            raise ValueError("No head name given and no single active head in the model")
        label2id = self.heads[head_name].config.get("label2id")
        return None if label2id is None else {int(i): lab for lab, i in label2id.items()}

    def get_labels(self, head_name: str | None = None):
        d = self.get_labels_dict(head_name)
        return None if d is None else list(d.values())

    # -- adapters --------------------------------------------------------------------------------------------
    @property
    def active_adapters(self):
        return self.adapters_config.active_setup

    @active_adapters.setter
    def active_adapters(self, setup) -> None:
        self.set_active_adapters(setup)

    @property
    def has_parallel_adapters(self) -> bool:
        s = self.adapters_config.active_setup
        return s is not None and s.parallel_channels > 1

    def has_adapters(self) -> bool:
        return len(self.adapters_config) > 0

    def _adapter_layers(self):
        for i, block in enumerate(self.distilbert.transformer.layer):
            yield i, block.attention_adapters
            yield i, block.output_adapters

    def add_adapter(
        self,
        adapter_name: str,
        config=None,
        overwrite_ok: bool = False,
        set_active: bool = False,
        **config_overrides,
    ) -> None:
        """config: "seq_bn" | "double_seq_bn" | "par_bn" | "name[key=value]" | dict | BnConfig; keyword
        overrides (reduction_factor=, non_linearity=, leave_out=, ...) replace config fields."""
        cfg = resolve_adapter_config(config, **config_overrides)
        if adapter_name in self.adapters_config:
            if not overwrite_ok:
                raise ValueError(f"An adapter with the name '{adapter_name}' has already been added.")
            self.delete_adapter(adapter_name)
        p = next(self.parameters())
        for i, layer in self._adapter_layers():
            m = adapter_module(adapter_name, cfg, self.config.dim, i, layer.location_key)
            if m is not None:
                m.to(device=p.device, dtype=p.dtype)
                m.train(self.training)
                layer.adapters[adapter_name] = m
        self.adapters_config.adapters[adapter_name] = cfg
        if set_active:
            self.set_active_adapters(adapter_name)

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.adapters_config:
            logger.info("No adapter '%s' found for deletion. Skipping.", adapter_name)
            return
        for _, layer in self._adapter_layers():
            if adapter_name in layer.adapters:
                del layer.adapters[adapter_name]
        del self.adapters_config.adapters[adapter_name]
        active = self.adapters_config.active_setup
        if active is not None and adapter_name in active.flatten():
            self.adapters_config.active_setup = None

    def _check_setup(self, setup) -> None:
        missing = sorted(setup.flatten() - set(self.adapters_config.adapters))
        if missing:
            raise ValueError(
                f"No adapter(s) with name {missing} found; adapters: {list(self.adapters_config)}"
            )

    def set_active_adapters(self, adapter_setup, skip_layers=None) -> None:
        """Adapters (a name, a list, Stack(...), Parallel(...)) used by every forward that passes no
        adapter_names. As the library, the head(s) named like the setup's last adapter(s) become active."""
        if skip_layers:
            raise NotImplementedError("skip_layers is not supported")
        setup = parse_composition(adapter_setup)
        if setup is not None:
            self._check_setup(setup)
        self.adapters_config.active_setup = setup
        if setup is not None:
            heads = parse_heads_from_composition(setup)
            heads = [heads] if isinstance(heads, str) else heads
            if heads and all(h in self.heads for h in heads):
                self.active_head = heads if len(heads) > 1 else heads[0]

    def adapter_summary(self) -> str:
        rows = ["name, config, parameters, active"]
        active = self.active_adapters.flatten() if self.active_adapters is not None else set()
        for name, cfg in self.adapters_config.adapters.items():
            n = sum(
                p.numel()
                for _, layer in self._adapter_layers()
                if name in layer.adapters
                for p in layer.adapters[name].parameters()
            )
            kind = next(
                (
                    k
                    for k in ("seq_bn", "double_seq_bn", "par_bn")
                    if ADAPTER_CONFIG_MAP[k].replace(
                        reduction_factor=cfg.reduction_factor,
                        non_linearity=cfg.non_linearity,
                        leave_out=cfg.leave_out,
                    )
                    == cfg
                ),
                "bottleneck",
            )
            rows.append(f"{name}, {kind}, {n}, {name in active}")
        return "\n".join(rows)

    # -- forward ---------------------------------------------------------------------------------------------
    def _heads_for_call(self, head, adapter_names, setup) -> list[str]:
        if head is not None:
            names = [head] if isinstance(head, str) else list(head)
        elif adapter_names is not None and setup is not None and self.heads:
            implied = parse_heads_from_composition(setup, reference_heads=self.heads)
            implied = [implied] if isinstance(implied, str) else implied
            names = implied if implied and all(h in self.heads for h in implied) else list(self._active_heads)
        else:
            names = list(self._active_heads)
        unknown = [h for h in names if h not in self.heads]
        if unknown:
            raise ValueError(f"Unknown head_name(s) {unknown}; heads: {list(self.heads)}")
        return names

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        position_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        token_type_ids=None,
        head=None,
        adapter_names=None,
        **head_kwargs,
    ):
        """head: a head name or a list of names (one encoder pass, one output per head); default: active_head.
        adapter_names: a name, a list (Stack), Stack(...) or Parallel(...); default: the active adapters.
        head_kwargs: labels / start_positions / end_positions, passed to every head."""
        unknown = sorted(set(head_kwargs) - {"labels", "start_positions", "end_positions"})
        if unknown:
            raise TypeError(f"forward() got unexpected keyword argument(s) {unknown}")
        # (B, C, S) multiple-choice inputs run as B*C sequences, as in the library
        if input_ids is not None and input_ids.dim() > 2:
            input_ids = input_ids.reshape(-1, input_ids.size(-1))
        if attention_mask is not None and attention_mask.dim() > 2:
            attention_mask = attention_mask.reshape(-1, attention_mask.size(-1))
        if inputs_embeds is not None and inputs_embeds.dim() > 3:
            inputs_embeds = inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])
        if position_ids is not None and position_ids.dim() > 2:
            position_ids = position_ids.reshape(-1, position_ids.size(-1))

        setup = (
            parse_composition(adapter_names)
            if adapter_names is not None
            else self.adapters_config.active_setup
        )
        if setup is not None:
            self._check_setup(setup)
        heads = self._heads_for_call(head, adapter_names, setup)
        run = AdapterRun(setup) if setup is not None else None
        enc = self.distilbert.encode(
            input_ids,
            attention_mask,
            inputs_embeds,
            position_ids,
            head_mask,
            bool(output_hidden_states),
            bool(output_attentions),
            adapters=run,
        )
        if not heads:
            out = BaseModelOutput(
                last_hidden_state=enc.padded(), hidden_states=enc.hidden_states, attentions=enc.attentions
            )
            return out if return_dict is not False else out.to_tuple()

        ops = self._ops_for_call(bool(output_attentions))
        channels = run.channels if run is not None else 1
        if channels > 1:
            if len(heads) != channels:
                raise ValueError(
                    f"The number of parallel adapters ({channels}) and the number of heads "
                    f"({len(heads)}: {heads}) must match."
                )
            n = enc.hidden.shape[0] // channels
            views = [
                Encoded(enc.hidden[i * n : (i + 1) * n], run.base_layout, enc.hidden_states, enc.attentions)
                for i in range(channels)
            ]  # channel i: rows of copy i of the batch
        else:
            views = [enc] * len(heads)
        outs = [
            self.heads[h].run(ops, v, attention_mask, return_dict, **head_kwargs)
            for h, v in zip(heads, views)
        ]
        if len(outs) == 1:
            return outs[0]
        losses = [o["loss"] if isinstance(o, ModelOutput) and "loss" in o else None for o in outs]
        loss = torch.stack(losses).sum() if all(x is not None for x in losses) else None
        return MultiHeadOutput(head_outputs=outs, loss=loss)

    def prepare_for_inference(self) -> "DistilBertModelWithHeads":
        """eval() and build the backend's prepacked weights (encoder, active adapters, every head) now."""
        self.eval()
        if self.ops.packed:
            ids = torch.full((1, 2), self.config.pad_token_id or 0, dtype=torch.long, device=self.device)
            setup = self.adapters_config.active_setup
            with torch.no_grad():
                run = AdapterRun(setup) if setup is not None and setup.parallel_channels == 1 else None
                enc = self.distilbert.encode(ids, adapters=run)
                for head in self.heads.values():
                    if not isinstance(head, MultipleChoiceHead):
                        head.run(self.ops, enc, None, True)
        return self

    # -- adapter / head folders (the library's formats) ------------------------------------------------------
    def _folder_config(self, name: str, config: dict, **extra) -> dict:
        return {
            "config": config,
            "hidden_size": self.config.dim,
            "model_class": LIBRARY_MODEL_CLASS,
            "model_name": str(getattr(self, "name_or_path", "") or ""),
            "model_type": "distilbert",
            "name": name,
            "version": LIBRARY_VERSION,
            **extra,
        }

    @staticmethod
    def _write(
        directory: Path,
        config_name: str,
        config: dict,
        state: dict,
        safe: bool,
        bin_name: str,
        safe_name: str,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / config_name).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        state = {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}
        if safe:
            from safetensors.torch import save_file

            save_file(state, str(directory / safe_name), metadata={"format": "pt"})
        else:
            torch.save(state, directory / bin_name)

    @staticmethod
    def _read_weights(directory: Path, bin_name: str, safe_name: str) -> dict[str, torch.Tensor]:
        if (directory / safe_name).is_file():
            return ckpt._load_safetensors_file(directory / safe_name)
        if (directory / bin_name).is_file():
            return ckpt._load_torch_file(directory / bin_name)  # torch.load(weights_only=True)
        raise ckpt.CheckpointError(f"no {safe_name} or {bin_name} in '{directory}'")

    def save_adapter(
        self,
        save_directory,
        adapter_name: str,
        with_head: bool = True,
        meta_dict: dict | None = None,
        use_safetensors: bool = False,
    ) -> None:
        """adapter_config.json + pytorch_adapter.bin (or adapter.safetensors), and the same-named head."""
        if adapter_name not in self.adapters_config:
            raise ValueError(f"No adapter with name '{adapter_name}' found")
        cfg = self._folder_config(
            adapter_name, self.adapters_config.get(adapter_name).to_dict(), **(meta_dict or {})
        )
        key = f".adapters.{adapter_name}."
        state = {k: v for k, v in self.state_dict().items() if key in k}
        self._write(
            Path(save_directory),
            ADAPTER_CONFIG_NAME,
            cfg,
            state,
            use_safetensors,
            ADAPTER_WEIGHTS_NAME,
            ADAPTER_SAFE_WEIGHTS_NAME,
        )
        if with_head and adapter_name in self.heads:
            self.save_head(save_directory, adapter_name, use_safetensors=use_safetensors)

    def save_all_adapters(
        self, save_directory, with_head: bool = True, use_safetensors: bool = False
    ) -> None:
        for name in self.adapters_config:
            self.save_adapter(
                os.path.join(save_directory, name),
                name,
                with_head=with_head,
                meta_dict={"config_id": adapter_config_hash(self.adapters_config.get(name))},
                use_safetensors=use_safetensors,
            )

    def load_adapter(
        self,
        adapter_name_or_path,
        config=None,
        load_as: str | None = None,
        with_head: bool = True,
        set_active: bool = False,
        leave_out=None,
        id2label=None,
        use_safetensors: bool = False,
        **kwargs,
    ) -> str:
        """Load an adapter folder saved by the adapters library (or save_adapter). Returns its name."""
        directory = Path(adapter_name_or_path)
        if not (directory / ADAPTER_CONFIG_NAME).is_file():
            raise ckpt.CheckpointError(
                f"'{directory}' is not an adapter folder (no {ADAPTER_CONFIG_NAME}); loading "
                "adapters from the Hub is not supported"
            )
        meta = json.loads((directory / ADAPTER_CONFIG_NAME).read_text(encoding="utf-8"))
        cfg_dict = dict(meta["config"])
        if "version" not in meta and cfg_dict.get("non_linearity") in _ACTIVATION_RENAME:
            cfg_dict["non_linearity"] = _ACTIVATION_RENAME[cfg_dict["non_linearity"]]  # pre-"version" files
        if meta.get("hidden_size") not in (None, self.config.dim):
            raise ckpt.CheckpointError(
                f"adapter '{directory}' was trained for hidden_size {meta['hidden_size']}, "
                f"this model has dim {self.config.dim}"
            )
        cfg = resolve_adapter_config(cfg_dict)
        if leave_out:
            cfg = cfg.replace(leave_out=sorted(set(cfg.leave_out) | set(leave_out)))
        old_name = meta.get("name")
        name = load_as or old_name
        self.add_adapter(name, cfg, overwrite_ok=True)
        state = self._read_weights(directory, ADAPTER_WEIGHTS_NAME, ADAPTER_SAFE_WEIGHTS_NAME)
        if old_name and name != old_name:
            state = {k.replace(f"adapters.{old_name}.", f"adapters.{name}."): v for k, v in state.items()}
        self._load_part(
            state, lambda k: f".adapters.{name}." in k, str(directory), skip_unexpected=bool(leave_out)
        )
        if with_head and (
            (directory / HEAD_SAFE_WEIGHTS_NAME).is_file() or (directory / HEAD_WEIGHTS_NAME).is_file()
        ):
            self.load_head(directory, load_as=load_as, id2label=id2label, set_active=set_active)
        if set_active:
            self.set_active_adapters(name)
        return name

    def save_head(self, save_directory, head_name: str, use_safetensors: bool = False) -> None:
        """head_config.json + pytorch_model_head.bin (or model_head.safetensors)."""
        if head_name not in self.heads:
            raise ValueError(f"Unknown head_name '{head_name}'.")
        extra = {}
        label2id = self.heads[head_name].config.get("label2id")
        if label2id:
            extra = {"label2id": label2id, "id2label": {str(i): lab for lab, i in label2id.items()}}
        cfg = self._folder_config(head_name, copy.deepcopy(self.heads[head_name].config))
        cfg.update({k: v for k, v in extra.items() if k not in cfg})
        prefix = f"heads.{head_name}."
        state = {k: v for k, v in self.state_dict().items() if k.startswith(prefix)}
        self._write(
            Path(save_directory),
            HEAD_CONFIG_NAME,
            cfg,
            state,
            use_safetensors,
            HEAD_WEIGHTS_NAME,
            HEAD_SAFE_WEIGHTS_NAME,
        )

    def save_all_heads(self, save_directory, use_safetensors: bool = False) -> None:
        for name in self.heads:
            self.save_head(os.path.join(save_directory, name), name, use_safetensors=use_safetensors)

    def load_head(
        self,
        save_directory,
        load_as: str | None = None,
        id2label=None,
        set_active: bool = True,
        use_safetensors: bool = False,
        **kwargs,
    ) -> str:
        directory = Path(save_directory)
        if not (directory / HEAD_CONFIG_NAME).is_file():
            raise ckpt.CheckpointError(f"'{directory}' is not a head folder (no {HEAD_CONFIG_NAME})")
        meta = json.loads((directory / HEAD_CONFIG_NAME).read_text(encoding="utf-8"))
        state = self._read_weights(directory, HEAD_WEIGHTS_NAME, HEAD_SAFE_WEIGHTS_NAME)
        model_class = meta.get("model_class", LIBRARY_MODEL_CLASS)
        if model_class in STATIC_TO_FLEX_HEAD_MAP:  # a static transformers head saved by the library
            name = load_as or meta.get("name") or "default"
            head_cfg, renames = static_head_config(model_class, name, meta.get("label2id"))
            state = {_rename(k, renames): v for k, v in state.items()}
            old = name
        else:
            old = meta.get("name")
            name = load_as or old
            head_cfg = dict(meta["config"])
        if not name:
            raise ValueError(
                "Could not identify a name for the prediction head to be loaded. Please specify 'load_as'."
            )
        if id2label:
            head_cfg["label2id"] = {lab: int(i) for i, lab in id2label.items()}
        self.add_prediction_head_from_config(name, head_cfg, overwrite_ok=True, set_active=set_active)
        # The library selects a head's weights by the substring "heads.NAME", so its folder for head "mlm"
        # also
        # holds any "heads.mlm2.*": keep only this head's own keys.
        own = f"heads.{name if model_class in STATIC_TO_FLEX_HEAD_MAP else old}."
        state = {k: v for k, v in state.items() if k.startswith(own)}
        if old and old != name:
            state = {k.replace(f"heads.{old}.", f"heads.{name}.", 1): v for k, v in state.items()}
        self._load_part(state, lambda k: k.startswith(f"heads.{name}."), str(directory))
        return name

    def _load_part(self, state: dict, owns, where: str, skip_unexpected: bool = False) -> None:
        """Load the model keys selected by `owns` from `state`, strictly (missing / unexpected / mis-shaped
        keys are one error). The tied MLM projector (= word embeddings) is skipped."""
        model_state = self.state_dict()
        tied = self._tied_keys()
        # a file saved from a base model (no "distilbert." prefix) lines up with ours
        state = {
            ("distilbert." + k if k not in model_state and "distilbert." + k in model_state else k): v
            for k, v in state.items()
        }
        expected = {k: tuple(v.shape) for k, v in model_state.items() if owns(k) and k not in tied}
        state = {k: v for k, v in state.items() if k not in tied}
        missing, unexpected, mismatched = ckpt.diff_state_dict(expected, state)
        if skip_unexpected:
            unexpected = []
        if missing or unexpected or mismatched:
            raise ckpt.CheckpointError(ckpt.format_load_error(missing, unexpected, mismatched, where))
        with torch.no_grad():
            self.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)

    # -- whole models ----------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory, safe_serialization: bool = True, max_shard_size=None) -> None:
        """config.json (with the library's "adapters" and "prediction_heads") + model.safetensors: loadable by
        the adapters library's DistilBertAdapterModel.from_pretrained and by ours."""
        os.makedirs(save_directory, exist_ok=True)
        d = self.config.to_dict()
        d["architectures"] = [LIBRARY_MODEL_CLASS]
        d["dtype"] = str(self.dtype).removeprefix("torch.")
        d["adapters"] = self.adapters_config.to_dict()
        d["prediction_heads"] = self.get_prediction_heads_config()
        Path(save_directory, "config.json").write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
        tied = self._tied_keys()
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items() if k not in tied}
        if safe_serialization:
            ckpt.save_state_dict(state, save_directory, max_shard_size=max_shard_size)
        else:
            for stale in ("model.safetensors", "model.safetensors.index.json"):
                if os.path.exists(os.path.join(save_directory, stale)):
                    os.remove(os.path.join(save_directory, stale))
            torch.save(state, os.path.join(save_directory, "pytorch_model.bin"))

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id,
        *,
        config: DistilBertConfig | None = None,
        dtype: Any = None,
        device: Any = None,
        backend: str | None = None,
        revision: str | None = None,
        cache_dir=None,
        local_files_only: bool = False,
        token: str | None = None,
        output_loading_info: bool = False,
        torch_dtype: Any = None,
        **config_overrides,
    ):
        """A model saved by the adapters library's save_pretrained (adapters + heads from config.json), by
        ours, or any DistilBERT checkpoint (a transformers DistilBertFor* head becomes the flex head
        "default")."""
        from .loading import _resolve_dtype

        dtype = dtype if dtype is not None else torch_dtype
        model_dir = ckpt.resolve_model_dir(
            path_or_repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        raw = ckpt.read_config_dict(model_dir)
        notes: list[str] = []
        state = ckpt.load_state_dict(model_dir)
        if raw.get("model_type") == "bert":
            config_dict = ckpt.bert_config_to_distilbert(raw)
            state, notes = ckpt.convert_bert_state_dict(state, raw)
        else:
            config_dict = dict(raw)
        if config is None:
            config = DistilBertConfig.from_dict(config_dict, **config_overrides)
        model = cls(config, backend=backend)
        arch = (raw.get("architectures") or [None])[0]
        if arch in STATIC_TO_FLEX_HEAD_MAP and "default" not in model.heads:
            head_cfg, renames = static_head_config(arch, "default", raw.get("label2id"))
            model.add_prediction_head_from_config("default", head_cfg, overwrite_ok=True)
            state = {_rename(k, renames): v for k, v in state.items()}
        model_state = model.state_dict()
        state = ckpt.strip_or_add_prefix(state, set(model_state), prefix="distilbert.")
        tied = model._tied_keys() | ({"distilbert.vocab_projector.weight", "vocab_projector.weight"})
        expected = {k: tuple(v.shape) for k, v in model_state.items() if k not in tied}
        state = {k: v for k, v in state.items() if k not in tied}
        missing, unexpected, mismatched = ckpt.diff_state_dict(expected, state)
        strict = lambda k: not k.startswith("heads.")  # noqa: E731  encoder + adapters strict, heads flexible
        bad = (
            [k for k in missing if strict(k)],
            [k for k in unexpected if strict(k) and k.startswith("distilbert.")],
            mismatched,
        )
        if any(bad):
            raise ckpt.CheckpointError(ckpt.format_load_error(*bad, str(model_dir)))
        with torch.no_grad():
            model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
        model.tie_weights()
        if missing:
            notes.append(
                f"Some weights of {cls.__name__} were not in the checkpoint at {model_dir} and are newly "
                f"initialized: {sorted(missing)}"
            )
        if unexpected:
            notes.append(
                f"Weights in the checkpoint at {model_dir} not used by {cls.__name__}: {sorted(unexpected)}"
            )
        for note in notes:
            logger.warning(note)
        target = _resolve_dtype(dtype, raw, state)
        if target is not None or device is not None:
            model.to(device=device, dtype=target)
        model.prepare_for_inference()
        model.name_or_path = str(path_or_repo_id)
        model.loading_info = {
            "missing_keys": sorted(missing),
            "unexpected_keys": sorted(unexpected),
            "mismatched_keys": mismatched,
            "notes": notes,
        }
        return (model, model.loading_info) if output_loading_info else model


DistilBertAdapterModel = DistilBertModelWithHeads

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
    "Stack",
    "Parallel",
    "AdapterCompositionBlock",
]
