"""CUDA graphs for small batches: capture the whole forward once per (batch, seq) bucket, then replay.

At batch 1 x 128 DistilBERT-base does ~11 GFLOP in ~40 kernel launches: the GPU work is a few tens of
microseconds and Python + launch overhead dominates. A CUDA graph replays all launches with one call.

A graph needs static shapes and no host synchronisation, so the captured forward cannot pack tokens
(`nonzero`, `int(lens.max())`). It runs a *static* layout instead: every (b, s) slot of the bucket is a row,
and the attention kernel gets cu_seqlens = [0, S, 2S, ...] plus `seqused` = the per-sequence real-token
counts computed on the device from the mask. Keys past seqused[b] are skipped, exactly like the packed path,
so for right-padded masks every real token's output equals the packed / reference result (padding rows
compute values that are discarded, as transformers does). Masks with holes or left padding, and shapes
larger than every bucket, run the ordinary eager forward.

`static_forward` is that graph body as a plain function: the tests run it on CPU under TRITON_INTERPRET=1.
"""
from __future__ import annotations

import dataclasses
import warnings

import torch

DEFAULT_BUCKETS = ((1, 32), (1, 64), (1, 128), (1, 256), (1, 512), (8, 128), (8, 512), (32, 128), (32, 512))


def _layout_class():
    from distilbert_fast.packing import Layout

    @dataclasses.dataclass
    class StaticLayout(Layout):
        """Padded rows (pack/unpack/first_rows are views) that still carry cu_seqlens for the varlen kernel,
        and seqused: real (right-padded) tokens per sequence, (B,) int32 on the device."""
        seqused: torch.Tensor | None = None

    return StaticLayout


_STATIC_LAYOUT = None


def _per_token_fields(model) -> tuple[str, ...]:
    from distilbert_fast.modeling import DistilBertForSequenceClassification

    if isinstance(model, DistilBertForSequenceClassification):
        return ()
    return ("last_hidden_state", "logits", "start_logits", "end_logits")


def _base(model):
    from distilbert_fast.modeling import DistilBertForMultipleChoice, DistilBertModel

    if isinstance(model, DistilBertForMultipleChoice):
        raise NotImplementedError("CudaGraphRunner: DistilBertForMultipleChoice takes 3-D inputs; "
                                  "run it eagerly")
    return model if isinstance(model, DistilBertModel) else model.distilbert


def static_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, table=None):
    """model(input_ids, attention_mask) on the static padded layout, graph-capturable (no host syncs).

    input_ids, attention_mask: (B, S) with right padding. Uses the triton op table (default) for every op.
    Returns the model's usual output object."""
    global _STATIC_LAYOUT
    from distilbert_fast.modeling import DistilBertPreTrainedModel, Encoded

    from . import op_table

    if _STATIC_LAYOUT is None:
        _STATIC_LAYOUT = _layout_class()
    table = table or op_table()
    base = _base(model)
    B, S = input_ids.shape
    device = input_ids.device
    layout = _STATIC_LAYOUT(B, S, None, packed=False,
                            cu_seqlens=torch.arange(0, (B + 1) * S, S, dtype=torch.int32, device=device),
                            max_seqlen=S, seqused=attention_mask.sum(1, dtype=torch.int32))

    def encode(input_ids=None, attention_mask=None, inputs_embeds=None, position_ids=None, head_mask=None,
               output_hidden_states=False, output_attentions=False):
        pos = base.position_ids[:, :S].expand(B, S).reshape(-1)
        x = base.embeddings(table, input_ids.reshape(-1), None, pos)  # (B*S, D)
        for block in base.transformer.layer:
            x, _ = block(table, x, layout, None, False)
        return Encoded(x, layout, None, None)

    saved = [(m, m.ops) for m in model.modules() if isinstance(m, DistilBertPreTrainedModel)]
    base.__dict__["encode"] = encode  # instance attribute shadows the method for this call only
    try:
        for m, _ in saved:
            m.ops = table
        # nn.Module.__call__, not model(...): a model with enable_cuda_graphs() would route back to the runner.
        return torch.nn.Module.__call__(model, input_ids, attention_mask=attention_mask)
    finally:
        del base.__dict__["encode"]
        for m, ops in saved:
            m.ops = ops


def _check_device(model) -> None:
    if not torch.cuda.is_available():
        raise RuntimeError("CudaGraphRunner needs a CUDA GPU (CUDA graphs capture GPU kernel launches); "
                           "torch.cuda.is_available() is False. Run the model eagerly on CPU instead.")
    if model.device.type != "cuda":
        raise RuntimeError(f"CudaGraphRunner: the model is on {model.device}; "
                           "move it first: model.to('cuda')")


class CudaGraphRunner:
    """Bucketed CUDA-graph replay of `model` (any head but multiple choice) for inference.

        runner = CudaGraphRunner(model.cuda().half(), buckets=((1, 32), (1, 128), (8, 128)))
        out = runner(input_ids, attention_mask)   # same output type and values as model(...)

    Inputs are padded up to the smallest bucket (batch, seq) that holds them; graphs are captured lazily on
    a bucket's first use (or all at once with capture_all()) and share one memory pool. Outputs are fresh
    tensors (cloned from the graph's static outputs). Not thread-safe: one runner per stream."""

    def __init__(self, model, buckets=DEFAULT_BUCKETS, warmup: int = 2):
        _check_device(model)
        _base(model)
        from . import op_table

        self.model = model.eval()
        self.table = op_table()
        max_pos = model.config.max_position_embeddings
        self.buckets = sorted({(int(b), int(s)) for b, s in buckets if s <= max_pos},
                              key=lambda t: (t[0] * t[1], t))
        if not self.buckets:
            raise ValueError(f"CudaGraphRunner: no usable bucket in {buckets} (seq must be <= {max_pos})")
        self.warmup = warmup
        self._graphs: dict[tuple[int, int], tuple] = {}
        self._pool = None
        self._per_token = _per_token_fields(model)
        self._pad_id = model.config.pad_token_id or 0
        self._warned = False

    def bucket_for(self, batch: int, seq: int) -> tuple[int, int] | None:
        for b, s in self.buckets:
            if b >= batch and s >= seq:
                return b, s
        return None

    def capture_all(self) -> "CudaGraphRunner":
        for bucket in self.buckets:
            self._graph(bucket)
        return self

    def _graph(self, bucket):
        if bucket not in self._graphs:
            self._graphs[bucket] = self._capture(bucket)
        return self._graphs[bucket]

    @torch.inference_mode()
    def _capture(self, bucket):
        """(graph, static input_ids, static attention_mask, static outputs) for one bucket."""
        b, s = bucket
        device = self.model.device
        ids = torch.full((b, s), self._pad_id, dtype=torch.long, device=device)
        mask = torch.ones((b, s), dtype=torch.long, device=device)
        # Warm up on a side stream: compiles the Triton kernels and the allocator's blocks outside capture.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(max(1, self.warmup)):
                static_forward(self.model, ids, mask, self.table)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = static_forward(self.model, ids, mask, self.table)
        self._pool = graph.pool()
        return graph, ids, mask, out

    def _eager(self, input_ids, attention_mask, why):
        if not self._warned:
            self._warned = True
            warnings.warn(f"CudaGraphRunner: {why}; running eagerly", RuntimeWarning, stacklevel=3)
        with torch.inference_mode():
            return torch.nn.Module.__call__(self.model, input_ids, attention_mask=attention_mask)

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
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
            return self._eager(input_ids, attention_mask, f"shape ({B}, {S}) exceeds every bucket")
        keep = attention_mask.bool()
        lens = keep.sum(1)
        ok = ((keep == (torch.arange(S, device=device) < lens[:, None])).all() & (lens > 0).all()
              & (input_ids >= 0).all() & (input_ids < self.model.config.vocab_size).all())
        if not bool(ok):  # the one host sync per call: picks the path, guards the gather
            return self._eager(input_ids, attention_mask, "the mask is not right padding of non-empty rows "
                               "(or ids are out of range)")
        graph, ids_buf, mask_buf, out = self._graph(bucket)
        ids_buf.fill_(self._pad_id)
        mask_buf.zero_()
        ids_buf[:B, :S].copy_(input_ids)
        mask_buf[:B, :S].copy_(attention_mask)
        graph.replay()
        return self._slice(out, B, S)

    def _slice(self, out, B, S):
        values = {}
        for f in dataclasses.fields(out):
            v = getattr(out, f.name)
            if isinstance(v, torch.Tensor):
                v = (v[:B, :S] if f.name in self._per_token else v[:B]).clone()
            values[f.name] = v
        return type(out)(**values)


def use_cuda_graphs(model, buckets=DEFAULT_BUCKETS) -> CudaGraphRunner:
    """Convenience: CudaGraphRunner(model, buckets)."""
    return CudaGraphRunner(model, buckets)


__all__ = ["CudaGraphRunner", "DEFAULT_BUCKETS", "static_forward", "use_cuda_graphs"]
