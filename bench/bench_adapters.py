#!/usr/bin/env python
"""DistilBertModelWithHeads: k heads on one encoder pass vs k separate forward passes, and the cost of
bottleneck adapters (seq_bn, double_seq_bn, Stack, Parallel) vs the plain model.

    python bench/bench_adapters.py                       # DistilBERT-base shape, cpp backend, fp32
    python bench/bench_adapters.py --quick               # small model, few rounds (smoke test)
    python bench/bench_adapters.py --backend torch --dtype bfloat16 --batch 16 --seq 128 --rounds 7

Random weights (no hub), a mixed-length batch (real tokens ~60% of the padded slots, right padding). All
variants of a table are timed interleaved, round-robin (bench/common.py), so the noise of a shared machine
hits them alike; the figure is real (unpadded) input tokens per second from the median round. For
Parallel(a, b) the encoder above the first adapter runs on 2 copies of the batch and each input token gets
both adapters' outputs: tokens/s counts input tokens once. Prints markdown; --json PATH writes raw samples.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent))
import common  # noqa: E402
import torch  # noqa: E402

import distilbert_fast as dbf  # noqa: E402
from distilbert_fast import Parallel, Stack  # noqa: E402

HEADS = {  # name -> how to add it (the MLM head, a 768 x 30522 GEMM per token, is opt-in: --mlm)
    "cls": lambda m: m.add_classification_head("cls", num_labels=3),
    "tag": lambda m: m.add_tagging_head("tag", num_labels=9),
    "qa": lambda m: m.add_qa_head("qa"),
    "mlc": lambda m: m.add_classification_head("mlc", num_labels=5, multilabel=True),
    "mlm": lambda m: m.add_masked_lm_head("mlm"),
}


def build(args) -> dbf.DistilBertModelWithHeads:
    if args.quick:
        cfg = dbf.DistilBertConfig(vocab_size=30522, dim=256, n_heads=4, n_layers=4, hidden_dim=1024)
    else:
        cfg = dbf.DistilBertConfig()  # distilbert-base: 6 layers, 768, 12 heads, FFN 3072
    torch.manual_seed(0)
    model = dbf.DistilBertModelWithHeads(cfg, backend=args.backend)
    for name in args.heads:
        HEADS[name](model)
    model.add_adapter("seq_a", config="seq_bn")
    model.add_adapter("seq_b", config="seq_bn")
    model.add_adapter("dbl_a", config="double_seq_bn")
    dtype = getattr(torch, args.dtype)
    model.to(dtype)
    return model.prepare_for_inference()


def batch(args, vocab: int):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, vocab, (args.batch, args.seq), generator=g)
    lens = torch.randint(max(2, int(0.2 * args.seq)), args.seq + 1, (args.batch,), generator=g)
    lens[0] = args.seq
    mask = (torch.arange(args.seq)[None, :] < lens[:, None]).long()
    ids[:, 0] = 101
    return ids * mask, mask


def timed(fns: dict, args) -> dict[str, dict]:
    samples = common.run_interleaved(fns, rounds=args.rounds, warmup=1, budget_s=args.budget)
    return {name: common.summarize(s) for name, s in samples.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="auto", choices=["auto", "cpp", "torch", "triton"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--budget", type=float, default=240.0, help="seconds per table before stopping early")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--mlm", action="store_true", help="include the masked-LM head in the multi-head table")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.seq, args.rounds = min(args.batch, 8), min(args.seq, 64), min(args.rounds, 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.heads = ["cls", "tag", "qa", "mlc"] + (["mlm"] if args.mlm else [])

    model = build(args)
    ids, mask = batch(args, model.config.vocab_size)
    tokens = int(mask.sum())
    common.log(
        f"backend={model.backend} dtype={args.dtype} batch={args.batch}x{args.seq} real tokens={tokens} "
        f"({tokens / ids.numel():.0%} of padded slots) threads={torch.get_num_threads()}"
    )

    def call(**kw):
        def f():
            with torch.inference_mode():
                model(ids, attention_mask=mask, **kw)

        return f

    report = {
        "machine": common.machine_info(),
        "args": {k: v for k, v in vars(args).items()},
        "tokens": tokens,
        "tables": {},
    }
    out = [
        f"# bench_adapters ({model.backend}, {args.dtype}, batch {args.batch}x{args.seq}, "
        f"{tokens} real tokens, median of up to {args.rounds} rounds)\n"
    ]

    # -- k heads: one pass vs k passes -----------------------------------------------------------------------
    fns = {}
    for k in range(1, len(args.heads) + 1):
        heads = args.heads[:k]
        fns[f"{k} heads, one pass"] = call(head=heads)
        if k > 1:
            fns[f"{k} heads, {k} passes"] = (lambda hs: lambda: [call(head=h)() for h in hs])(heads)
    stats = timed(fns, args)
    report["tables"]["heads"] = stats
    rows = []
    for k in range(2, len(args.heads) + 1):
        one, sep = stats[f"{k} heads, one pass"]["median_s"], stats[f"{k} heads, {k} passes"]["median_s"]
        rows.append(
            [
                f"{k} ({', '.join(args.heads[:k])})",
                common.fmt_rate(tokens / one),
                common.fmt_rate(tokens / sep),
                common.fmt_ratio(sep / one),
                f"{stats[f'{k} heads, one pass']['rel_iqr']:.0%}",
            ]
        )
    out.append("## k heads: one encoder pass vs k separate forward passes (input tokens/s)\n")
    out.append(common.markdown_table(["heads", "one pass", "k passes", "speed-up", "noise (IQR)"], rows))

    # -- adapter overhead ------------------------------------------------------------------------------------
    variants = {
        "plain (no adapter)": dict(adapter_names=None, head="cls"),
        "seq_bn": dict(adapter_names="seq_a", head="cls"),
        "double_seq_bn": dict(adapter_names="dbl_a", head="cls"),
        "Stack(seq_bn, seq_bn)": dict(adapter_names=Stack("seq_a", "seq_b"), head="cls"),
        "Parallel(seq_bn, seq_bn), 2 heads": dict(
            adapter_names=Parallel("seq_a", "seq_b"), head=["cls", "tag"]
        ),
        "2 x seq_bn, 2 passes (what Parallel replaces)": None,
    }
    fns = {name: call(**kw) for name, kw in variants.items() if kw is not None}
    fns["2 x seq_bn, 2 passes (what Parallel replaces)"] = lambda: (
        call(adapter_names="seq_a", head="cls")(),
        call(adapter_names="seq_b", head="tag")(),
    )
    stats = timed(fns, args)
    report["tables"]["adapters"] = stats
    base = stats["plain (no adapter)"]["median_s"]
    rows = [
        [
            name,
            common.fmt_rate(tokens / s["median_s"]),
            f"{(s['median_s'] / base - 1) * 100:+.1f}%",
            f"{s['rel_iqr']:.0%}",
        ]
        for name, s in stats.items()
    ]
    out.append("\n## Adapter overhead vs the plain model (input tokens/s, head cls)\n")
    out.append(common.markdown_table(["setup", "tokens/s", "time vs plain", "noise (IQR)"], rows))
    n_params = {n: sum(p.numel() for p in model.adapter_params(n)) for n in ("seq_a", "dbl_a")}
    out.append(
        f"\nAdapter parameters: seq_bn {n_params['seq_a']:,}, double_seq_bn {n_params['dbl_a']:,} "
        f"(encoder {model.distilbert.num_parameters():,})."
    )
    text = "\n".join(out)
    print(text)
    if args.json:
        common.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
