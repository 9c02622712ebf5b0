"""DistilBertModelWithHeads: one shared encoder, named flex heads (prediction.py), bottleneck adapters (the
adapter methods every class shares: adapters/mixin.py); head folders in folders.py, whole checkpoints through
the one loader (loading.py hooks).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from ..adapters import AdapterRun, parse_heads_from_composition
from ..config import DistilBertConfig
from ..modeling import DistilBertModel, DistilBertPreTrainedModel, Encoded
from ..outputs import (
    BaseModelOutput,
    ModelOutput,
)
from .folders import LIBRARY_MODEL_CLASS, HeadAndAdapterFolders
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
    rename_key,
    static_head_config,
)

logger = logging.getLogger("distilbert_fast")


# ----------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------
class DistilBertModelWithHeads(HeadAndAdapterFolders, DistilBertPreTrainedModel):
    """One DistilBERT encoder, any number of named heads, bottleneck adapters; see the module docstring."""

    head_types = tuple(MODEL_HEAD_MAP)

    def __init__(self, config: DistilBertConfig, backend: str | None = None):
        super().__init__(config, backend)
        # A model saved by the adapters library (or by us) lists its adapters and heads in config.json: the
        # encoder adds the adapters (adapters/mixin.py), the heads are added here.
        self.distilbert = DistilBertModel(config, backend)
        self.heads = nn.ModuleDict()
        self._active_heads: list[str] = []
        heads = config.__dict__.get("_extra", {}).get("prediction_heads")
        self.post_init()
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

    # -- adapters: the shared implementation (adapters/mixin.py, via DistilBertPreTrainedModel) plus heads ----
    def set_active_adapters(self, adapter_setup, skip_layers=None) -> None:
        """Adapters (a name, a list, Stack(...), Parallel(...)) used by every forward that passes no
        adapter_names. As the library, the head(s) named like the setup's last adapter(s) become active."""
        super().set_active_adapters(adapter_setup, skip_layers)
        setup = self.adapters_config.active_setup
        if setup is not None:
            heads = parse_heads_from_composition(setup)
            heads = [heads] if isinstance(heads, str) else heads
            if heads and all(h in self.heads for h in heads):
                self.active_head = heads if len(heads) > 1 else heads[0]

    def output_embedding_modules(self) -> list:
        """Every head's output projection tied to the word embeddings (masked_lm): frozen by train_adapter."""
        outs = [h.get_output_embeddings() for h in self.heads.values()]
        return [o for o in outs if o is not None]

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
        output_attentions, output_hidden_states, return_dict = self.call_flags(
            output_attentions, output_hidden_states, return_dict
        )
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

        heads, run = self.plan_call(head, adapter_names)
        src = input_ids if input_ids is not None else inputs_embeds
        enc = self.distilbert.encode(
            input_ids,
            attention_mask,
            inputs_embeds,
            position_ids,
            head_mask,
            bool(output_hidden_states),
            bool(output_attentions),
            adapters=run,
            need_rows=None if src is None else self.loss_rows(heads, tuple(src.shape[:2]), head_kwargs),
        )
        out = self.run_heads(
            self.ops_for_call(bool(output_attentions)), enc, heads, run, attention_mask, **head_kwargs
        )
        if return_dict is not False:
            return out
        if isinstance(out, MultiHeadOutput):  # one tuple per head, as the library
            return MultiHeadOutput(head_outputs=[o.to_tuple() for o in out.head_outputs], loss=out.loss)
        return out.to_tuple()

    def loss_rows(self, heads: list[str], shape: tuple[int, int], head_kwargs: dict):
        """(B, S) bool positions the heads' losses read, for encode's need_rows (padded ones included, so
        losses equal the library's on packed backends), or None. Tagging heads ignore padding themselves."""
        need = None
        for name in heads:
            h = self.heads[name]
            rows = None
            if (
                isinstance(h, QuestionAnsweringHead)
                and head_kwargs.get("start_positions") is not None
                and head_kwargs.get("end_positions") is not None
            ):
                rows = torch.ones(shape, dtype=torch.bool)  # cross-entropy over the whole padded length
            elif (
                isinstance(h, BertStyleMaskedLMHead)
                and isinstance(head_kwargs.get("labels"), torch.Tensor)
                and head_kwargs["labels"].numel() == shape[0] * shape[1]
            ):
                labels = head_kwargs["labels"].reshape(shape)
                rows = labels != -100
                if h.config["shift_labels"]:  # logits[:, :-1] meet labels[:, 1:]
                    rows = torch.cat([rows[:, 1:], torch.zeros_like(rows[:, :1])], dim=1)
            if rows is not None:
                need = rows.cpu() if need is None else need | rows.cpu()
        return need

    def plan_call(self, head=None, adapter_names=None) -> tuple[list[str], AdapterRun | None]:
        """(the heads a call runs, its adapter run or None) for forward's `head` / `adapter_names`
        arguments (defaults: the active heads and adapters)."""
        setup = self.adapter_setup(adapter_names)
        heads = self._heads_for_call(head, adapter_names, setup)
        return heads, (AdapterRun(setup) if setup is not None else None)

    def run_heads(
        self,
        ops,
        enc: Encoded,
        heads: list[str],
        run: AdapterRun | None = None,
        attention_mask=None,
        **head_kwargs,
    ):
        """The named heads on the encoder's rows through the op table: one output, a MultiHeadOutput for
        several heads, the base model's output for none. With Parallel adapters head i reads channel i."""
        if not heads:
            return BaseModelOutput(
                last_hidden_state=enc.padded(), hidden_states=enc.hidden_states, attentions=enc.attentions
            )
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
        outs = [self.heads[h].run(ops, v, attention_mask, True, **head_kwargs) for h, v in zip(heads, views)]
        if len(outs) == 1:
            return outs[0]
        losses = [o["loss"] if isinstance(o, ModelOutput) and "loss" in o else None for o in outs]
        loss = torch.stack(losses).sum() if all(x is not None for x in losses) else None
        return MultiHeadOutput(head_outputs=outs, loss=loss)

    def prepare_for_inference(self) -> DistilBertModelWithHeads:
        """eval(), the backend's process set-up (ops.prepare()) and its prepacked weights (encoder, active
        adapters, every head) now."""
        self.eval()
        self.ops.prepare()
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

    # -- whole models: the one loader (loading.py) through its hooks -----------------------------------------
    def remap_checkpoint_state(self, state: dict, raw_config: dict) -> dict:
        """A transformers DistilBertFor* checkpoint's head becomes the flex head "default" (the library's
        static-to-flex conversion): add the head and rename its keys."""
        arch = (raw_config.get("architectures") or [None])[0]
        if arch in STATIC_TO_FLEX_HEAD_MAP and "default" not in self.heads:
            # transformers 5 may save id2label without label2id: the label count comes from either
            label2id = (
                raw_config.get("label2id")
                or {v: int(k) for k, v in (raw_config.get("id2label") or {}).items()}
                or None
            )
            head_cfg, renames = static_head_config(arch, "default", label2id)
            self.add_prediction_head_from_config("default", head_cfg, overwrite_ok=True)
            state = {rename_key(k, renames): v for k, v in state.items()}
        return state

    def config_to_save(self) -> dict:
        """config.json with the library's "adapters" and "prediction_heads": loadable by the adapters
        library's DistilBertAdapterModel.from_pretrained and by ours."""
        d = super().config_to_save()
        d["architectures"] = [LIBRARY_MODEL_CLASS]
        d["adapters"] = self.adapters_config.to_dict()
        d["prediction_heads"] = self.get_prediction_heads_config()
        return d


DistilBertAdapterModel = DistilBertModelWithHeads
