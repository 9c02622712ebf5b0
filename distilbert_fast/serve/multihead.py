"""/predict on a DistilBertModelWithHeads: `head` and `adapter_names` per request.

The pipelines serve one fixed head, so this runs the model's own multi-head forward: all requests of a
batch that use the same adapters run ONE encoder pass, `model(ids, mask, head=[every head asked for],
adapter_names=...)`, and each request reads its head's logits. Post-processing is text-classification's
(softmax over the labels, sigmoid for one label or a multi-label head; raw_scores: the logits), sorted by
score as TEI's /predict answers.
"""

from __future__ import annotations

import numpy as np
import torch

from ..adapters import Stack

SEQUENCE_HEADS = ("classification", "multilabel_classification")


class MultiHeadRunner:
    def __init__(self, model, pad_token_id: int, batch_size: int):
        self.model = model
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size

    @property
    def heads(self) -> list[str]:
        return list(self.model.heads)

    @property
    def adapters(self) -> list[str]:
        return list(self.model.adapters_config)

    def default_head(self) -> str | None:
        active = self.model.active_head
        return active if isinstance(active, str) else None

    def head_type(self, name: str) -> str:
        return self.model.heads[name].config["head_type"]

    def labels(self, name: str) -> dict[int, str]:
        labels = self.model.get_labels_dict(name)
        n = self.model.heads[name].config["num_labels"]
        return labels if labels is not None else {i: f"LABEL_{i}" for i in range(n)}

    def run(self, adapters: tuple[str, ...] | None, items: list[tuple]) -> list:
        """items: (token ids, head, raw_scores) -> sorted [{"label", "score"}] per item. The ids come
        tokenized (and truncated) from the event loop; batches of similar lengths are padded here."""
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]), reverse=True)
        results: list = [None] * len(items)
        for b0 in range(0, len(order), self.batch_size):
            idx = order[b0 : b0 + self.batch_size]
            batch = [items[i] for i in idx]
            width = len(batch[0][0])  # the longest: sorted
            input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (ids, _, _) in enumerate(batch):
                input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                mask[r, : len(ids)] = 1
            heads = list(dict.fromkeys(x[1] for x in batch))
            setup = None if adapters is None else Stack(*adapters)
            kwargs = {} if setup is None else {"adapter_names": setup}
            device = self.model.device
            with torch.inference_mode():
                out = self.model(input_ids.to(device), attention_mask=mask.to(device), head=heads, **kwargs)
            outs = [out] if len(heads) == 1 else list(out)
            logits = {h: o["logits"].detach().to("cpu", torch.float32).numpy() for h, o in zip(heads, outs)}
            for r, i in enumerate(idx):
                _, head, raw = items[i]
                results[i] = self._scores(head, logits[head][r], raw)
        return results

    def _scores(self, head: str, row: np.ndarray, raw: bool) -> list[dict]:
        if raw:
            scores = row
        elif self.head_type(head) == "multilabel_classification" or row.shape[-1] == 1:
            scores = 1.0 / (1.0 + np.exp(-row))
        else:
            e = np.exp(row - row.max())
            scores = e / e.sum()
        labels = self.labels(head)
        out = [{"label": labels[i], "score": float(s)} for i, s in enumerate(scores)]
        out.sort(key=lambda d: d["score"], reverse=True)
        return out
