"""The triton backend compiled for a real GPU: every head, losses, 16-bit weights and CUDA graphs on CUDA
tensors, against transformers on the same GPU.

CI has no GPU: the whole module skips there (the kernels are proven under TRITON_INTERPRET=1 by
test_ops_triton.py / test_backend_parity.py). On a CUDA machine run it with the compiled kernels:

    TRITON_INTERPRET=0 python -m pytest -q tests/test_cuda.py tests/test_ops_triton.py tests/test_backend_triton.py

Shapes are the ones the interpreter cannot afford: 1 x 1, 4 x 33, 2 x 257 and 1 x 512, mixed right padding.
transformers runs fp32 on the GPU with TF32 off (torch's default), so fp32 must agree to 1e-4 (relative to the
largest |value|); fp16 / bf16 are held to test_backend_parity's cosine bounds against the fp32 reference.
"""

from __future__ import annotations

import copy
import importlib
import os

import pytest
import torch
from helpers import HEADS, assert_close, hf_model, make_inputs, parallel_heads_model
from test_backend_parity import FIELDS, compare, counting
from test_loss_parity import LOSS_HEADS, PER_TOKEN, labels_for

import distilbert_fast as dbf
from distilbert_fast import cuda_graphs

if not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip(
        "needs a CUDA GPU and the compiled Triton kernels (run with TRITON_INTERPRET=0)",
        allow_module_level=True,
    )

SHAPES = ((1, 1), (4, 33), (2, 257), (1, 512))
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def cuda_pair(class_name, tmp_path, dtype=torch.float32, seed=5, **cfg):
    """(transformers fp32 on the GPU, ours on the GPU in `dtype` with backend="auto", op-call counter)."""
    hf = hf_model(class_name, seed=seed, **cfg)
    hf.save_pretrained(tmp_path)
    ours = getattr(dbf, class_name).from_pretrained(tmp_path, dtype=dtype, device="cuda")
    assert ours.backend == "triton", "backend='auto' must pick triton for a CUDA model"
    return hf.cuda(), ours, counting(ours, "triton")


def close_16bit(got, hf16, ref, mask, what):
    """16-bit against the fp32 reference: on the real tokens, no more than twice the error of transformers
    itself run in the same 16-bit dtype (a per-field bound that adapts to how much each head amplifies
    rounding; 2-label logits of random weights are a worst case no fixed cosine bound fits)."""
    real = mask.bool()
    for name in FIELDS:
        rv = getattr(ref, name, None)
        if rv is None:
            continue
        fv, hv = getattr(got, name).float(), getattr(hf16, name).float()
        assert torch.isfinite(fv).all(), f"{what} {name}: non-finite values"
        if rv.shape[: real.dim()] == real.shape:
            rv, fv, hv = rv[real], fv[real], hv[real]
        ours_err, hf_err = (fv - rv).abs().max().item(), (hv - rv).abs().max().item()
        assert ours_err <= 2 * hf_err + 1e-3 * rv.abs().max().item(), (
            f"{what} {name}: max error {ours_err:.3g} vs transformers' own 16-bit error {hf_err:.3g}"
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("class_name", HEADS)
def test_every_head_equals_transformers_on_cuda(class_name, dtype, tmp_path):
    hf, ours, calls = cuda_pair(class_name, tmp_path, dtype, dim=64, n_heads=2)
    for batch, seq in SHAPES:
        ids, mask = make_inputs(class_name, batch, seq, seed=seq)
        ids, mask = ids.cuda(), mask.cuda()
        with torch.inference_mode():
            got, ref = ours(ids, attention_mask=mask), hf(ids, attention_mask=mask)
        what = f"cuda {class_name} {dtype} {batch}x{seq}"
        fields = [f for f in FIELDS if getattr(got, f, None) is not None]
        assert fields and all(getattr(got, f).device.type == "cuda" for f in fields), what
        assert all(getattr(got, f).dtype == dtype for f in fields), what
        if dtype == torch.float32:
            compare(got, ref, mask, 1e-4, what)
        else:
            with torch.inference_mode():
                hf16 = copy.deepcopy(hf).to(dtype)(ids, attention_mask=mask)
            close_16bit(got, hf16, ref, mask, what)
    assert calls["attention"] == len(SHAPES) * ours.config.n_layers, "the triton attention did not run"


@pytest.mark.parametrize("activation", ["gelu_new", "relu", "silu"])
def test_activations_and_sinusoidal_positions_on_cuda(activation, tmp_path):
    hf, ours, _ = cuda_pair(
        "DistilBertForMaskedLM", tmp_path, activation=activation, sinusoidal_pos_embds=True
    )
    ids, mask = (t.cuda() for t in make_inputs("DistilBertForMaskedLM", 4, 33, seed=1))
    with torch.inference_mode():
        compare(ours(ids, attention_mask=mask), hf(ids, attention_mask=mask), mask, 1e-4, activation)


@pytest.mark.parametrize("scenario", ["ignore_padding", "at_padding"])
@pytest.mark.parametrize("class_name", LOSS_HEADS)
def test_loss_equals_transformers_on_cuda(class_name, scenario, tmp_path):
    if scenario == "at_padding" and class_name not in (*PER_TOKEN, "DistilBertForQuestionAnswering"):
        pytest.skip("sequence-level labels have no padded positions")
    hf, ours, calls = cuda_pair(class_name, tmp_path, seed=7)
    ids, mask = make_inputs(class_name, 5, 41, seed=11)
    mask.view(-1, 41)[1, 20:] = 0
    kwargs = labels_for(class_name, scenario, ids, mask, torch.Generator().manual_seed(3))
    ids, mask = ids.cuda(), mask.cuda()
    kwargs = {k: v.cuda() for k, v in kwargs.items()}
    with torch.inference_mode():
        r, f = hf(ids, attention_mask=mask, **kwargs), ours(ids, attention_mask=mask, **kwargs)
    assert_close(f.loss, r.loss, rel=1e-5, what=f"{class_name} {scenario} loss")
    assert calls["attention"] == ours.config.n_layers


def test_fully_masked_rows_head_mask_and_left_padding_on_cuda(tmp_path):
    hf, ours, _ = cuda_pair("DistilBertForSequenceClassification", tmp_path)
    ids, mask = (t.cuda() for t in make_inputs("DistilBertModel", 3, 33, seed=4))
    # head_mask follows adapter-transformers (transformers 5 ignores it): our reference ops are the truth.
    ref = dbf.DistilBertForSequenceClassification.from_pretrained(tmp_path, backend="torch", device="cuda")
    head_mask = torch.tensor([[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 1.0]], device="cuda")
    with torch.inference_mode():
        got = ours(ids, attention_mask=mask, head_mask=head_mask).logits
        want = ref(ids, attention_mask=mask, head_mask=head_mask).logits
        assert_close(got, want, rel=1e-4, what="head_mask")
        left = mask.flip(-1)
        assert_close(ours(ids, attention_mask=left).logits, hf(ids, attention_mask=left).logits, rel=1e-4)
        mask[1] = 0  # a fully masked row: finite, like the CPU backends
        assert torch.isfinite(ours.distilbert(ids, attention_mask=mask).last_hidden_state).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_cuda_graphs_equal_the_eager_forward(dtype, tmp_path):
    """Real capture and replay: every bucket, outputs that survive the next replay, the eager fallbacks."""
    hf, ours, _ = cuda_pair("DistilBertForTokenClassification", tmp_path, dtype)
    eager = dbf.DistilBertForTokenClassification.from_pretrained(tmp_path, dtype=dtype, device="cuda")
    runner = cuda_graphs.CudaGraphRunner(ours, buckets=((1, 32), (4, 64), (8, 128)))
    outs = []
    for batch, seq, seed in ((1, 7, 1), (1, 32, 2), (3, 50, 3), (8, 128, 4), (2, 9, 5)):
        ids, mask = (t.cuda() for t in make_inputs("DistilBertModel", batch, seq, seed=seed))
        with torch.inference_mode():
            got, want = runner(ids, attention_mask=mask), eager(ids, attention_mask=mask)
        assert got.logits.shape == want.logits.shape
        real = mask.bool()
        assert_close(
            got.logits[real].float(),
            want.logits[real].float(),
            rel=1e-4 if dtype == torch.float32 else 2e-2,
            what=f"{batch}x{seq}",
        )
        outs.append((got.logits.clone(), got.logits))
    for kept, returned in outs:  # later replays must not overwrite what an earlier call returned
        assert torch.equal(kept, returned)
    ids, mask = (t.cuda() for t in make_inputs("DistilBertModel", 9, 20, seed=6))  # larger than every bucket
    with torch.inference_mode():
        got = runner(ids, attention_mask=mask)
        assert_close(
            got.logits[mask.bool()].float(), eager(ids, attention_mask=mask).logits[mask.bool()].float()
        )
        left = mask.flip(-1)  # not right padding: the eager path, same result
        got = runner(ids[:4], attention_mask=left[:4])
        want = eager(ids[:4], attention_mask=left[:4])
        assert_close(got.logits[left[:4].bool()].float(), want.logits[left[:4].bool()].float())


def test_use_cuda_graphs_from_pretrained_and_multi_head_with_adapters(tmp_path):
    hf, ours, _ = cuda_pair("DistilBertModel", tmp_path)
    graphed = dbf.DistilBertModel.from_pretrained(tmp_path, device="cuda", use_cuda_graphs=True)
    ids, mask = (t.cuda() for t in make_inputs("DistilBertModel", 2, 40, seed=2))
    with torch.inference_mode():
        compare(
            graphed(ids, attention_mask=mask), hf(ids, attention_mask=mask), mask, 1e-4, "use_cuda_graphs"
        )

    # DistilBertModelWithHeads with a Parallel adapter setup: one head per channel, on a captured graph.
    model = parallel_heads_model()  # backend auto: cpp (or torch) on the CPU
    ids, mask = make_inputs("DistilBertModel", 3, 10, seed=11)
    with torch.inference_mode():
        ref = model(ids, attention_mask=mask)  # on the CPU
    model.to("cuda")
    assert model.backend == "triton"
    ids, mask = ids.cuda(), mask.cuda()
    with torch.inference_mode():
        eager = model(ids, attention_mask=mask)
        cuda_graphs.use_cuda_graphs(model, buckets=((4, 16),))
        replayed = model(ids, attention_mask=mask)
    real = mask.bool().cpu()
    for what, out in (("eager", eager), ("CUDA graph", replayed)):
        assert_close(out[0].logits.cpu(), ref[0].logits, rel=1e-4, what=f"multi-head classification, {what}")
        assert_close(
            out[1].logits.cpu()[real], ref[1].logits[real], rel=1e-4, what=f"multi-head tagging, {what}"
        )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_linear_kernel_and_the_cublas_dispatch_on_cuda(dtype):
    """linear_fused without an epilogue to fuse runs cuBLASLt on CUDA; the Triton kernel still serves a config
    override and every activation / residual call. Both against F.linear (+ act, + residual) in fp32."""
    L = importlib.import_module(
        "distilbert_fast.ops.triton.linear"
    )  # the module (the package re-exports a function)
    g = torch.Generator().manual_seed(0)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for M in (1, 33, 257, 512, 4096):
        x = torch.randn(M, 768, generator=g).to("cuda", dtype)
        w = (torch.randn(2304, 768, generator=g) * 768**-0.5).to("cuda", dtype)
        b = torch.randn(2304, generator=g).to("cuda", dtype)
        r = torch.randn(M, 2304, generator=g).to("cuda", dtype)
        ref = torch.nn.functional.linear(x.float(), w.float(), b.float())
        cfg = L._config(M, 2304, 768, dtype)
        assert_close(L.linear_fused(x, w, b).float(), ref, rel=tol, what=f"cuBLAS M={M}")
        assert_close(L.linear_fused(x, w, b, config=cfg).float(), ref, rel=tol, what=f"kernel M={M}")
        got = L.linear_fused(x, w, b, "gelu", residual=r).float()
        want = torch.nn.functional.gelu(ref) + r.float()
        assert_close(got, want, rel=tol, what=f"kernel gelu + residual M={M}")


def test_serve_on_cuda_matches_the_cpu_pipeline(minilm_dir):
    """`distilbert-fast serve --device cuda` (and Ray Serve replicas with num_gpus): the service's model runs on
    the GPU and /embed answers what the CPU pipeline computes."""
    import asyncio

    import numpy as np

    pytest.importorskip("fastapi")
    from distilbert_fast.pipelines import pipeline
    from distilbert_fast.serve import InferenceService, ServeConfig

    texts = ["The cat sat on the mat.", "A quick brown fox.", "Rain again today, and tomorrow too."]
    service = InferenceService(ServeConfig(model=str(minilm_dir), device="cuda"))
    try:
        assert service.info()["device"].startswith("cuda") and service.info()["backend"] == "triton"
        got = np.asarray(asyncio.run(service.handle("/embed", {"inputs": texts})), dtype=np.float32)
    finally:
        service.close()
    want = pipeline("sentence-embeddings", model=str(minilm_dir)).run(texts, return_tensors="np")
    assert np.abs(got - want).max() <= 1e-4
