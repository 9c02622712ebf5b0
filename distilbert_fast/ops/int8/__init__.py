"""int8 inference: per-channel int8 weights, dynamic per-token int8 activations quantized by the kernels
that produce them, oneDNN u8 x s8 GEMMs.

How a model becomes int8 (`quantize_model_`): every encoder nn.Linear gets two buffers, `weight_int8`
(int8, (out, in)) and `weight_scale` (fp32, (out,)), and its float weight is replaced by the dequantized
weight (q * scale), so every path (the reference table for autograd / attentions, the Triton table)
computes with the same effective weights. The LayerNorms whose output feeds a quantized GEMM are marked
(`_dbf_int8_out`); the op tables (`with_int8`) dispatch per module on those marks, so a quantized model runs
int8 on whatever backend it is switched to, with no model-level branching.

The data flow inside one layer (cpp backend):
  add_layer_norm_quant  -> y (fp, the residual) + its uint8 rows + per-token scales, one pass
  qkv                   -> oneDNN u8s8 GEMM (fp32 out = int32 sum * w_scale), int8_epilogue (* x_scale + b)
  attention (fp32/bf16) -> quantize_rows (the context rows)  -> out_lin GEMM + epilogue
  add_layer_norm_quant  -> lin1 GEMM + epilogue (bias + GELU + quantize the GELU rows, one pass) -> lin2
The quantized rows travel from the kernel that made them to the GEMM that consumes them through a
one-slot, thread-local hand-off keyed by the float tensor's identity: every op still returns its true float
result, and a GEMM whose input did not come from such a kernel quantizes it itself (quantize_rows).
"""

from __future__ import annotations

import dataclasses
import threading

import torch
from torch import nn

from . import reference

SCHEME = {
    "quant_method": "distilbert_fast_int8",
    "bits": 8,
    "weights": "per_channel_symmetric",
    "activations": "dynamic_per_token_symmetric",
}
QUANTIZE_CHOICES = (None, "int8")
_MARK = "_dbf_int8_out"  # on a LayerNorm / Embeddings LayerNorm: its output feeds a quantized GEMM


# --- the model side ------------------------------------------------------------------------------------------
def check_quantize(quantize) -> str | None:
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    return quantize


def is_quantized(lin: nn.Module) -> bool:
    return "weight_int8" in lin._buffers


def encoder_linears(encoder) -> list[nn.Linear]:
    """The GEMMs that run int8: q, k, v, out_lin, lin1, lin2 of every layer (heads stay in float)."""
    out = []
    for block in encoder.transformer.layer:
        a, f = block.attention, block.ffn
        out += [a.q_lin, a.k_lin, a.v_lin, a.out_lin, f.lin1, f.lin2]
    return out


def mark_structure_(encoder) -> None:
    """Register the int8 buffers (empty) on every encoder linear and mark the LayerNorms whose output a
    quantized GEMM reads: the structure a quantized checkpoint's state_dict loads into."""
    for lin in encoder_linears(encoder):
        if not is_quantized(lin):
            lin.register_buffer(
                "weight_int8", torch.zeros(lin.weight.shape, dtype=torch.int8, device=lin.weight.device)
            )
            lin.register_buffer(
                "weight_scale", torch.ones(lin.weight.shape[0], dtype=torch.float32, device=lin.weight.device)
            )
    layers = list(encoder.transformer.layer)
    encoder.embeddings.LayerNorm.__dict__[_MARK] = True
    for i, block in enumerate(layers):
        block.sa_layer_norm.__dict__[_MARK] = True
        # the last layer's output goes to the (float) heads: quantizing it would be wasted work
        block.output_layer_norm.__dict__[_MARK] = i + 1 < len(layers)


@torch.no_grad()
def quantize_model_(model) -> None:
    """Quantize the encoder of `model` in place (weights per output channel, once) and mark its structure."""
    encoder = model.base_model
    mark_structure_(encoder)
    for lin in encoder_linears(encoder):
        q, s = reference.quantize_weight(lin.weight)
        lin.weight_int8.copy_(q)
        lin.weight_scale.copy_(s)
    sync_float_weights_(model)
    # config keeps unknown keys in _extra, which config.json round-trips
    model.config._extra["quantization_config"] = dict(SCHEME)


@torch.no_grad()
def float_weight_keys(model) -> set[str]:
    """state_dict keys of the float weights a quantized checkpoint does not store (int8 + scale instead)."""
    return {
        f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear) and is_quantized(m)
    }


def is_quantized_config(config) -> bool:
    qc = getattr(config, "quantization_config", None)
    return isinstance(qc, dict) and qc.get("quant_method") == SCHEME["quant_method"]


@torch.no_grad()
def sync_float_weights_(model) -> None:
    """Set every quantized linear's float weight to its dequantized int8 weight (after loading int8 buffers)."""
    for lin in encoder_linears(model.base_model):
        lin.weight.copy_(reference.dequantize_weight(lin.weight_int8, lin.weight_scale, lin.weight.dtype))


# --- the hand-off of quantized rows ---------------------------------------------------------------------------
class _Slot(threading.local):
    y = q = s = None


_slot = _Slot()


def _put(y, q, s):
    _slot.y, _slot.q, _slot.s = y, q, s
    return y


_UNWRITTEN = "_dbf_int8_unwritten"


def unwritten(shape, dtype):
    """The stand-in for an activation whose values were never stored, only handed off quantized (the FFN's
    GELU rows on the cpp backend): the right shape and dtype at no memory cost, NaN wherever it is read, and
    refused by _take, so a consumer other than the next int8 GEMM cannot go silently wrong."""
    t = torch.full((1,) * len(shape), float("nan"), dtype=dtype).expand(*shape)
    setattr(t, _UNWRITTEN, True)
    return t


def _take(x, quantize_rows):
    """The uint8 rows + scales of x: from the kernel that produced x when it was the last to hand off,
    else quantized here. The slot is emptied so no tensor outlives its use."""
    if _slot.y is x:
        q, s = _slot.q, _slot.s
        _slot.y = _slot.q = _slot.s = None
        return q, s
    _slot.y = _slot.q = _slot.s = None
    if getattr(x, _UNWRITTEN, False):
        raise RuntimeError(
            "int8: an activation that was only handed off quantized (the FFN's GELU output) reached a GEMM "
            "other than the one it was quantized for; this is a bug in the caller of the op table"
        )
    return quantize_rows(x)


# --- op tables ------------------------------------------------------------------------------------------------
def with_int8(table, kernels):
    """`table` with int8 dispatch in front of its module ops: quantized modules run on `kernels`
    (CppKernels or TorchKernels), every other module on the table's own op."""
    base = table

    def embeddings(emb, input_ids, inputs_embeds, position_ids):
        if input_ids is not None and emb.LayerNorm.__dict__.get(_MARK):
            ln = emb.LayerNorm
            return _put(
                *kernels.embeddings_quant(
                    input_ids,
                    position_ids,
                    emb.word_embeddings.weight,
                    emb.position_embeddings.weight,
                    ln.weight,
                    ln.bias,
                    ln.eps,
                )
            )
        return base.embeddings(emb, input_ids, inputs_embeds, position_ids)

    def add_layer_norm(ln, x, residual):
        if ln.__dict__.get(_MARK):
            return _put(*kernels.add_layer_norm_quant(x, residual, ln.weight, ln.bias, ln.eps))
        return base.add_layer_norm(ln, x, residual)

    def qkv(attn, x):
        if not is_quantized(attn.q_lin):
            return base.qkv(attn, x)
        y = kernels.linear(attn, [attn.q_lin, attn.k_lin, attn.v_lin], x, None, False)
        return y.chunk(3, dim=1)

    def linear(lin, x, act=None):
        if not is_quantized(lin):
            return base.linear(lin, x, act)
        # an activated output (FFN lin1) feeds the next quantized GEMM: quantize it in the same pass
        return kernels.linear(lin, [lin], x, act, act is not None)

    def linear_add_layer_norm(lin, x, ln, residual):
        if not is_quantized(lin):
            return base.linear_add_layer_norm(lin, x, ln, residual)
        fused = getattr(kernels, "linear_add_layer_norm", None)
        if fused is None:  # the reference kernels: the two steps
            return add_layer_norm(ln, linear(lin, x), residual)
        # the LayerNorm's rows are quantized too when they feed a quantized GEMM (all but the last layer's)
        return fused(lin, x, ln, residual, bool(ln.__dict__.get(_MARK)))

    return dataclasses.replace(
        base,
        embeddings=embeddings,
        qkv=qkv,
        linear=linear,
        add_layer_norm=add_layer_norm,
        linear_add_layer_norm=linear_add_layer_norm,
    )


def _cat(linears, name):
    ts = [lin._buffers[name] if name in lin._buffers else lin._parameters[name] for lin in linears]
    if any(t is None for t in ts):
        return None
    return ts[0] if len(ts) == 1 else torch.cat(ts)


class TorchKernels:
    """The int8 path of the torch backend: reference math, no prepacking."""

    embeddings_quant = staticmethod(reference.embeddings_quant)
    add_layer_norm_quant = staticmethod(reference.layer_norm_quant)

    @staticmethod
    def linear(owner, linears, x, act, want_quant):
        q, s = _take(x, reference.quantize_rows)
        bias = _cat(linears, "bias")
        acc = reference.int_matmul(q, _cat(linears, "weight_int8")).float() * _cat(linears, "weight_scale")
        y, q2, s2 = reference.epilogue(acc, s, bias, act, x.dtype, want_quant)
        return _put(y, q2, s2) if want_quant else y


__all__ = [
    "SCHEME",
    "QUANTIZE_CHOICES",
    "check_quantize",
    "is_quantized",
    "encoder_linears",
    "mark_structure_",
    "quantize_model_",
    "sync_float_weights_",
    "float_weight_keys",
    "is_quantized_config",
    "with_int8",
    "unwritten",
    "TorchKernels",
    "reference",
]
