"""Issue 10 item 1: the cost of exact losses on padded batches, by layout, on the cpp backend.

A 32x128 mixed-length batch (lengths uniform in [16, 128], right padding), DistilBERT-base shapes with random
weights, DistilBertForTokenClassification under inference_mode:
  packed       labels -100 at padding: padding-free (real tokens only)
  extra-rows   labels at every padded slot: real tokens + padded slots as query-only rows (what ships)
  extra-half   labels at half the padded slots: only those become extra rows
  static       the padded layout on the fused kernels: all B*S rows as queries, keys limited by seqused
  reference    the padded reference ops (the torch table)
Interleaved rounds, median per layout; run under `flock /tmp/dbf-bench.lock`.
"""

from __future__ import annotations

import statistics
import time

import torch

import distilbert_fast as dbf
from distilbert_fast import ops
from distilbert_fast.packing import Layout


def main(rounds: int = 7, B: int = 32, S: int = 128) -> None:
    torch.manual_seed(0)
    cfg = dbf.DistilBertConfig(num_labels=9)
    model = dbf.DistilBertForTokenClassification(cfg, backend="cpp").prepare_for_inference()
    lens = torch.randint(16, S + 1, (B,))
    lens[0] = S
    mask = (torch.arange(S) < lens[:, None]).long()
    ids = torch.randint(1000, 30000, (B, S)) * mask
    labels_all = torch.randint(0, 9, (B, S))
    labels_pad = labels_all.masked_fill(~mask.bool(), -100)
    labels_half = labels_all.clone()
    labels_half[:, ::2] = torch.where(mask.bool()[:, ::2], labels_half[:, ::2], -100)
    table = ops.resolve_backend("cpp")

    def static():
        lay = Layout.static(B, S, mask)
        enc = model.distilbert.encode_rows(table, lay, ids)
        return model.run_head(table, enc, labels_all)

    runs = {
        "packed": lambda: model(ids, attention_mask=mask, labels=labels_pad),
        "extra-rows": lambda: model(ids, attention_mask=mask, labels=labels_all),
        "extra-half": lambda: model(ids, attention_mask=mask, labels=labels_half),
        "static": static,
    }
    ref = dbf.DistilBertForTokenClassification(cfg, backend="torch").eval()
    ref.load_state_dict(model.state_dict())
    runs["reference"] = lambda: ref(ids, attention_mask=mask, labels=labels_all)
    times = {k: [] for k in runs}
    losses = {}
    with torch.inference_mode():
        for fn in runs.values():
            fn()
        for _ in range(rounds):
            for k, fn in runs.items():
                t = time.perf_counter()
                out = fn()
                times[k].append(time.perf_counter() - t)
                losses[k] = out.loss.item()
    real = int(mask.sum())
    print(f"{B}x{S}, real tokens {real} of {B * S} ({real / (B * S):.0%}), threads {torch.get_num_threads()}")
    base = statistics.median(times["packed"])
    for k, v in times.items():
        m = statistics.median(v)
        print(f"{k:11s} median {m * 1e3:8.1f} ms  x{m / base:.2f} of packed   loss {losses[k]:.7f}")


if __name__ == "__main__":
    main()
