"""CUDA graphs for small batches (runtime layer): capture the whole forward once per (batch, seq) bucket, then
replay it.

At batch 1 x 128 DistilBERT-base does ~11 GFLOP in ~40 kernel launches: the GPU work is a few tens of
microseconds and Python + launch overhead dominates. A CUDA graph replays all launches with one call.

A graph needs static shapes and no host synchronisation, so the captured forward cannot pack tokens
(`nonzero`, `int(lens.max())`). It runs a *static* layout instead (packing.Layout.static): every (b, s) slot
of the bucket is a row, and the attention kernel gets cu_seqlens = [0, S, 2S, ...] plus `seqused` = the
per-sequence real-token counts computed on the device from the mask. Keys past seqused[b] are skipped, exactly
like the packed path, so for right-padded masks every real token's output equals the packed / reference
result (padding rows compute values that are discarded, as transformers does). Masks with holes or left
padding, and shapes larger than every bucket, run the ordinary eager forward.

The runner sits above the models and calls them with explicit arguments (the op table, the static layout):
`DistilBertModel.encode_rows` then the class's `run_head` (or, for DistilBertModelWithHeads, its
`plan_call` + `run_heads`, adapters included). Nothing is patched. `static_forward` is that graph body as a
plain function: the tests run it on CPU under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch

from .heads import DistilBertModelWithHeads, MultiHeadOutput
from .modeling import DistilBertForMultipleChoice, register_call_runner
from .ops import OpTable, resolve_backend
from .outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    ModelOutput,
    QuestionAnsweringModelOutput,
    TokenClassifierOutput,
)
from .packing import Layout

DEFAULT_BUCKETS = ((1, 32), (1, 64), (1, 128), (1, 256), (1, 512), (8, 128), (8, 512), (32, 128), (32, 512))

# Outputs whose fields are (B, S, ...) per token; every other tensor field is (B, ...) per sequence.
PER_TOKEN_FIELDS: dict[type, tuple[str, ...]] = {
    BaseModelOutput: ("last_hidden_state",),
    MaskedLMOutput: ("logits",),
    TokenClassifierOutput: ("logits",),
    QuestionAnsweringModelOutput: ("start_logits", "end_logits"),
}


def check_graphable(model) -> None:
    """Raise NotImplementedError for models whose plain call is not a (B, S) -> (B, ...) graph body."""
    if isinstance(model, DistilBertForMultipleChoice):
        raise NotImplementedError("CUDA graphs: DistilBertForMultipleChoice takes 3-D inputs; run it eagerly")
    if isinstance(model, DistilBertModelWithHeads):
        heads, _ = model.plan_call()
        kinds = [model.heads[h].head_type for h in heads]
        if "multiple_choice" in kinds:
            raise NotImplementedError(
                "CUDA graphs: a multiple_choice head groups rows by choice; run it eagerly"
            )
    elif model.has_parallel_adapters:  # a static class's outputs would hold k copies of the batch
        raise NotImplementedError("CUDA graphs: a Parallel adapter setup on a static class; run it eagerly")


def static_forward(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, table: OpTable | None = None
):
    """model(input_ids, attention_mask) on the static padded layout, graph-capturable (no host syncs).

    input_ids, attention_mask: (B, S) with right padding. table: the op table for every op (default: the
    triton table for the inputs' device). Returns the model's usual output object (labels-free)."""
    table = table or resolve_backend("triton", input_ids.device)
    B, S = input_ids.shape
    layout = Layout.static(B, S, attention_mask)
    base = model.base_model
    if isinstance(model, DistilBertModelWithHeads):
        heads, run = model.plan_call()
        enc = base.encode_rows(table, layout, input_ids, adapters=run)
        return model.run_heads(table, enc, heads, run)
    # the active adapters (adapters/mixin.py), as an eager call without adapter_names runs them
    return model.run_head(table, base.encode_rows(table, layout, input_ids, adapters=model.adapter_run()))


def slice_output(out, B: int, S: int):
    """The first B sequences (and S positions of per-token fields) of an output computed on a bucket, as
    fresh tensors (the graph's static outputs are overwritten by the next replay)."""
    if isinstance(out, MultiHeadOutput):
        heads = [slice_output(o, B, S) for o in out.head_outputs]
        return MultiHeadOutput(head_outputs=heads, loss=None)
    per_token = PER_TOKEN_FIELDS.get(type(out), ())
    values = {}
    for f in dataclasses.fields(out):
        v = getattr(out, f.name)
        if isinstance(v, torch.Tensor):
            v = (v[:B, :S] if f.name in per_token else v[:B]).clone()
        values[f.name] = v
    return type(out)(**values)


def check_device(model) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError(
            "CudaGraphRunner needs a CUDA GPU (CUDA graphs capture GPU kernel launches); "
            "torch.cuda.is_available() is False. Run the model eagerly on CPU instead."
        )
    if model.device.type != "cuda":
        raise RuntimeError(
            f"CudaGraphRunner: the model is on {model.device}; move it first: model.to('cuda')"
        )


class CudaGraphRunner:
    """Bucketed CUDA-graph replay of `model` (any class but multiple choice, DistilBertModelWithHeads with its
    active adapters and heads included) for inference.

        runner = CudaGraphRunner(model.cuda().half(), buckets=((1, 32), (1, 128), (8, 128)))
        out = runner(input_ids, attention_mask)   # same output type and values as model(...)

    Inputs are padded up to the smallest bucket (batch, seq) that holds them; graphs are captured lazily on
    a bucket's first use (or all at once with capture_all()) and share one memory pool. A multi-head model's
    graphs are keyed by its adapter setup and heads too, so changing them captures anew. Outputs are fresh
    tensors (cloned from the graph's static outputs). Not thread-safe: one runner per stream."""

    def __init__(self, model, buckets=None, warmup: int = 2):
        check_device(model)
        check_graphable(model)
        self.model = model.eval()
        self.table = resolve_backend("triton", model.device)
        buckets = buckets or DEFAULT_BUCKETS
        max_pos = model.config.max_position_embeddings
        self.buckets = sorted(
            {(int(b), int(s)) for b, s in buckets if s <= max_pos}, key=lambda t: (t[0] * t[1], t)
        )
        if not self.buckets:
            raise ValueError(f"CudaGraphRunner: no usable bucket in {buckets} (seq must be <= {max_pos})")
        self.warmup = warmup
        self.graphs: dict[tuple, tuple] = {}
        self.pool = None
        self.pad_id = model.config.pad_token_id or 0
        self.warned = False

    def bucket_for(self, batch: int, seq: int) -> tuple[int, int] | None:
        for b, s in self.buckets:
            if b >= batch and s >= seq:
                return b, s
        return None

    def graph_key(self, bucket: tuple[int, int]) -> tuple:
        """What a captured graph depends on besides its shape: a multi-head model's adapter setup and heads."""
        if isinstance(self.model, DistilBertModelWithHeads):
            heads, run = self.model.plan_call()
            return (*bucket, repr(None if run is None else run.setup), tuple(heads))
        setup = self.model.adapter_setup()  # a static class's active adapters
        return bucket if setup is None else (*bucket, repr(setup))

    def capture_all(self) -> CudaGraphRunner:
        for bucket in self.buckets:
            self.graph(bucket)
        return self

    def graph(self, bucket):
        key = self.graph_key(bucket)
        if key not in self.graphs:
            check_graphable(self.model)
            self.graphs[key] = self.capture(bucket)
        return self.graphs[key]

    @torch.inference_mode()
    def capture(self, bucket):
        """(graph, static input_ids, static attention_mask, static outputs) for one bucket."""
        b, s = bucket
        device = self.model.device
        ids = torch.full((b, s), self.pad_id, dtype=torch.long, device=device)
        mask = torch.ones((b, s), dtype=torch.long, device=device)
        # Warm up on a side stream: compiles the Triton kernels and the allocator's blocks outside capture.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(max(1, self.warmup)):
                static_forward(self.model, ids, mask, self.table)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = static_forward(self.model, ids, mask, self.table)
        self.pool = graph.pool()
        return graph, ids, mask, out

    def eager(self, input_ids, attention_mask, why):
        if not self.warned:
            self.warned = True
            warnings.warn(f"CudaGraphRunner: {why}; running eagerly", RuntimeWarning, stacklevel=3)
        with torch.inference_mode():
            # nn.Module.__call__, not model(...): the model routes plain calls back to this runner.
            return torch.nn.Module.__call__(self.model, input_ids, attention_mask=attention_mask)

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ModelOutput:
        if input_ids.dim() != 2:
            raise ValueError(f"CudaGraphRunner: input_ids must be (batch, seq), got {tuple(input_ids.shape)}")
        B, S = input_ids.shape
        device = self.model.device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = torch.ones((B, S), dtype=torch.long, device=device)
        attention_mask = attention_mask.to(device)
        bucket = self.bucket_for(B, S)
        if bucket is None:
            return self.eager(input_ids, attention_mask, f"shape ({B}, {S}) exceeds every bucket")
        keep = attention_mask.bool()
        lens = keep.sum(1)
        ok = (
            (keep == (torch.arange(S, device=device) < lens[:, None])).all()
            & (lens > 0).all()
            & (input_ids >= 0).all()
            & (input_ids < self.model.config.vocab_size).all()
        )
        if not bool(ok):  # the one host sync per call: picks the path, guards the gather
            return self.eager(
                input_ids,
                attention_mask,
                "the mask is not right padding of non-empty rows (or ids are out of range)",
            )
        graph, ids_buf, mask_buf, out = self.graph(bucket)
        ids_buf.fill_(self.pad_id)
        mask_buf.zero_()
        ids_buf[:B, :S].copy_(input_ids)
        mask_buf[:B, :S].copy_(attention_mask)
        graph.replay()
        return slice_output(out, B, S)


def use_cuda_graphs(model, buckets=None):
    """model.set_call_runner(CudaGraphRunner(model, buckets)): plain inference calls replay graphs."""
    return model.set_call_runner(CudaGraphRunner(model, buckets))


register_call_runner("cuda_graphs", CudaGraphRunner)

__all__ = [
    "CudaGraphRunner",
    "DEFAULT_BUCKETS",
    "PER_TOKEN_FIELDS",
    "check_graphable",
    "slice_output",
    "static_forward",
    "use_cuda_graphs",
]
