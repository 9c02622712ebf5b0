"""`optimize(hf_model)`: run an existing transformers DistilBERT through distilbert_fast, in place.

The transformers model object stays what the caller holds: same class, `.config`, `.device`, `.to()`,
`.eval()`, `save_pretrained`, usable inside `transformers.pipeline(...)`. Only its `forward` is replaced by
one that runs our encoder and heads (op table: fused C++ kernels, padding-free) and returns transformers'
own output classes.

No weights are copied: our module tree is built on the meta device and then handed the transformers
model's Parameter objects, so both trees share every tensor (and `.to(dtype)` on the transformers model,
which swaps `param.data` in place, moves both). The backend's prepacked GEMM weights are the only extra
memory, and they are rebuilt automatically when the shared weights change.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import torch

from .config import DistilBertConfig
from .modeling import MODEL_CLASSES, DistilBertPreTrainedModel
from .ops.int8 import check_quantize, quantize_model_

_FORWARD_ARGS = (
    "input_ids",
    "attention_mask",
    "head_mask",
    "inputs_embeds",
    "labels",
    "start_positions",
    "end_positions",
    "position_ids",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "token_type_ids",
)
# transformers' generic forward kwargs that carry no meaning for an encoder-only DistilBERT.
_IGNORED_KWARGS = {"use_cache", "cache_position", "past_key_values"}


def _share_parameters(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Point every parameter of `ours` at the same-named Parameter object of `theirs` (names are equal by
    construction: our modules use transformers' checkpoint names). Tied weights come out tied."""
    ours_names = {n for n, _ in ours.named_parameters(remove_duplicate=False)}
    theirs_params = dict(theirs.named_parameters(remove_duplicate=False))
    missing = sorted(ours_names - set(theirs_params))
    if missing:
        raise ValueError(
            f"optimize(): the transformers model lacks parameters distilbert_fast needs: {missing[:5]}"
        )
    for name, param in theirs_params.items():
        if name not in ours_names:
            continue
        module_path, _, leaf = name.rpartition(".")
        setattr(ours.get_submodule(module_path) if module_path else ours, leaf, param)


def _hf_output_class(ours_out: Any):
    import transformers.modeling_outputs as mo

    return getattr(mo, type(ours_out).__name__)


def optimize(
    hf_model: torch.nn.Module,
    dtype: torch.dtype | None = None,
    backend: str | None = "auto",
    quantize: str | None = None,
):
    """Make a transformers DistilBert* model (any head class) run on distilbert_fast. Returns the same object.

    dtype: optionally cast the model first (e.g. torch.bfloat16). backend: "auto" | "cpp" | "triton" |
    "torch"; "auto" picks by the model's device (triton on CUDA, cpp on CPU). quantize="int8": the encoder's
    GEMMs run int8 (ops/int8); the shared float weights are replaced by their dequantized int8 values.
    Call `distilbert_fast.hf.restore(model)` to get transformers' own forward back.
    """
    name = type(hf_model).__name__
    config = getattr(hf_model, "config", None)
    if name not in MODEL_CLASSES or getattr(config, "model_type", None) != "distilbert":
        raise TypeError(
            f"optimize() expects a transformers DistilBert* model ({sorted(MODEL_CLASSES)}), got {name}"
        )
    if dtype is not None:
        hf_model.to(dtype)

    cfg = DistilBertConfig.from_dict(
        {k: v for k, v in config.to_dict().items() if k not in ("transformers_version",)}
    )
    with torch.device("meta"):  # no allocation: every parameter is replaced by the shared one below
        ours: DistilBertPreTrainedModel = MODEL_CLASSES[name](cfg, backend=backend)
    _share_parameters(ours, hf_model)
    ours.set_backend(backend)  # resolve "auto" with the shared weights' device (built on meta above)
    if check_quantize(quantize) == "int8":
        quantize_model_(ours)
    resolved_on = [ours.device]
    ours.train(hf_model.training)
    base = ours if name == "DistilBertModel" else ours.distilbert
    hf_base = hf_model if name == "DistilBertModel" else hf_model.distilbert

    def forward(self, *args, **kwargs):
        # Positional arguments follow transformers' own forward signature.
        bound = self._dbf_signature.bind(*args, **kwargs).arguments
        extra = bound.pop("kwargs", {})
        unknown = set(extra) - _IGNORED_KWARGS - set(_FORWARD_ARGS)
        if unknown:
            raise TypeError(f"{name}.forward() got unexpected keyword arguments {sorted(unknown)}")
        call = {k: v for k, v in {**bound, **extra}.items() if k in _FORWARD_ARGS}
        # Buffers are re-created (not shared) by .to(); take the current position_ids each call.
        base.position_ids = hf_base.embeddings.position_ids
        if ours.training != self.training:
            ours.train(self.training)
        if backend in (None, "auto") and ours.device != resolved_on[0]:
            # hf_model.to(device) moved the shared weights but not our (unregistered) module: follow it.
            ours.set_backend(backend)
            resolved_on[0] = ours.device
        out = ours(**{**call, "return_dict": True})
        hf_out = _hf_output_class(out)(**dict(out.items()))
        return hf_out if call.get("return_dict", True) is not False else hf_out.to_tuple()

    hf_model.__dict__["_dbf_model"] = ours  # not a registered submodule: state_dict / parameters unchanged
    sig = inspect.signature(type(hf_model).forward)
    hf_model.__dict__["_dbf_signature"] = sig.replace(
        parameters=[p for p in sig.parameters.values() if p.name != "self"]
    )
    hf_model.forward = types.MethodType(forward, hf_model)
    if not hf_model.training:
        with torch.no_grad():
            base.position_ids = hf_base.embeddings.position_ids
            ours.prepare_for_inference()
    return hf_model


def restore(hf_model: torch.nn.Module) -> torch.nn.Module:
    """Undo optimize(): transformers' own forward again."""
    for key in ("forward", "_dbf_model", "_dbf_signature"):
        hf_model.__dict__.pop(key, None)
    return hf_model
