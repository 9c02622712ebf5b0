"""Bottleneck adapters with the semantics of the `adapters` library (AdapterHub, v1.3), padding-free.

What the library does on DistilBERT, and so what this module does:

* Each TransformerBlock has two adapter locations: after self-attention ("mh_adapter", module
  `attention_adapters`) and after the FFN ("output_adapter", module `output_adapters`). Each holds
  `adapters.<name>` modules; parameter names equal the library's, e.g.
  `distilbert.transformer.layer.0.output_adapters.adapters.NAME.adapter_down.0.weight`.
* At a location the block's own residual + LayerNorm, LN(sub + x), is replaced by (sub = sublayer output,
  x = block input, LN = the block's LayerNorm):

      pre (first adapter):  residual = sub  (residual_before_ln=True)
                            h = LN(sub + x) if original_ln_before else sub
      each adapter:         h = up(act(down(h))) * scaling + residual   (Stack: the pre step before each)
      post (last adapter):  out = LN(h + x) if original_ln_after else h

  seq_bn (Pfeiffer): output adapter only, original_ln_before=True, relu, reduction 16:
      out = LN(A(LN(f + x)) + f + x)    -- the block's LayerNorm applied twice, like the library
  double_seq_bn (Houlsby): both locations, original_ln_before=False, swish:
      out = LN(A(s) + s + x)
* Composition: `Stack(a, b)` runs adapters one after another (pre step before each); `Parallel(a, b)`
  replicates the batch k times at the first location where one of its adapters lives (the library's
  `repeat` on the batch dimension), each channel then runs its own adapter and, at the end, its own head.
  Everything below that first adapter location is computed once.

Execution: adapters run on the encoder's token rows (only the real tokens on the packed backends). The
down/up projections go through the op table (`ops.linear`: a prepacked oneDNN GEMM on cpp, the activation
fused when the backend has it), every residual + LayerNorm through `ops.add_layer_norm`. Replicating packed
rows is a row `repeat` plus a replicated Layout (cu_seqlens offset per channel).

Every model class has the adapter methods (mixin.py: ModelAdaptersMixin, one implementation): add_adapter,
load_adapter, save_adapter, delete_adapter, set_active_adapters, active_adapters, train_adapter, freeze_model,
adapter_summary, and `adapter_names=` on forward. The package sits below the model layer (modeling.py mixes
ModelAdaptersMixin into DistilBertPreTrainedModel; TransformerBlock calls AdapterRun), and never imports it.

Not supported (clear error): PHM / Compacter layers, gating (UniPELT), invertible adapters, Fuse / Split /
BatchSplit / Average compositions, and the non-bottleneck methods (LoRA, prefix tuning, ...).
"""

from .activations import Activation, layer_norm, linear_act
from .composition import (
    ALLOWED_NESTINGS,
    AdapterCompositionBlock,
    Fuse,
    Parallel,
    Stack,
    parse_composition,
    parse_heads_from_composition,
)
from .configs import (
    ACTIVATION_RENAME,
    ADAPTER_CONFIG_MAP,
    DEFAULT_ADAPTER_CONFIG,
    LIBRARY_VERSION,
    AdaptersConfig,
    BnConfig,
    DoubleSeqBnConfig,
    ParBnConfig,
    SeqBnConfig,
    adapter_config_hash,
    resolve_adapter_config,
)
from .folders import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    HEAD_CONFIG_NAME,
    HEAD_SAFE_WEIGHTS_NAME,
    HEAD_WEIGHTS_NAME,
)
from .mixin import ModelAdaptersMixin
from .modules import Adapter, BottleneckLayer, ParallelAdapter, adapter_module, attach_adapter_layers
from .run import AdapterRun, replicate_layout

__all__ = [
    "AdapterCompositionBlock",
    "Stack",
    "Parallel",
    "Fuse",
    "ALLOWED_NESTINGS",
    "parse_composition",
    "parse_heads_from_composition",
    "BnConfig",
    "SeqBnConfig",
    "DoubleSeqBnConfig",
    "ParBnConfig",
    "ADAPTER_CONFIG_MAP",
    "DEFAULT_ADAPTER_CONFIG",
    "ACTIVATION_RENAME",
    "resolve_adapter_config",
    "adapter_config_hash",
    "Activation",
    "linear_act",
    "layer_norm",
    "Adapter",
    "ParallelAdapter",
    "BottleneckLayer",
    "adapter_module",
    "attach_adapter_layers",
    "AdapterRun",
    "AdaptersConfig",
    "replicate_layout",
    "LIBRARY_VERSION",
    "ModelAdaptersMixin",
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "ADAPTER_SAFE_WEIGHTS_NAME",
    "HEAD_CONFIG_NAME",
    "HEAD_WEIGHTS_NAME",
    "HEAD_SAFE_WEIGHTS_NAME",
]
