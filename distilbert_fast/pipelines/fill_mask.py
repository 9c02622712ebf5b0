"""fill-mask: the masked-LM head on the [MASK] rows only, transformers' top-k postprocessing."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..modeling import (
    DistilBertForMaskedLM,
)
from .base import Pipeline, PipelineInputError, check_int

logger = logging.getLogger("distilbert_fast")


# ----------------------------------------------------------------------------------------------------------
# fill-mask
# ----------------------------------------------------------------------------------------------------------
class FillMaskPipeline(Pipeline):
    """transformers' FillMaskPipeline: top_k (default 5) predictions per [MASK], optional `targets`.

    Output per input: [{"score", "token", "token_str", "sequence"}]; with several masks in one input, one such
    list per mask. A list input of length 1 returns its result un-nested, as transformers does.
    """

    task = "fill-mask"
    model_class = DistilBertForMaskedLM
    _param_defaults = {"top_k": 5, "targets": None}

    def __call__(self, inputs, **kwargs):
        params, engine = self._split_call_kwargs(kwargs)
        if isinstance(inputs, str):
            return self._results([inputs], params, engine)[0]
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"inputs: fill-mask takes a str or a list of str, got {type(inputs).__name__}")
        outputs = self._results(list(inputs), params, engine)
        return outputs[0] if len(outputs) == 1 else outputs

    def _target_ids(self, targets) -> np.ndarray:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"fill-mask: targets must be a str or a list of str, got {targets!r}")
        vocab = self.tokenizer.get_vocab()
        target_ids = []
        for target in targets:
            id_ = vocab.get(target)
            if id_ is None:
                input_ids = self.tokenizer(
                    target,
                    add_special_tokens=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                    max_length=1,
                    truncation=True,
                )["input_ids"]
                if len(input_ids) == 0:
                    logger.warning(
                        f"The specified target token `{target}` does not exist in the model "
                        "vocabulary. We cannot replace it with anything meaningful, ignoring it"
                    )
                    continue
                id_ = input_ids[0]
                logger.warning(
                    f"The specified target token `{target}` does not exist in the model "
                    f"vocabulary. Replacing with `{self.tokenizer.convert_ids_to_tokens(id_)}`."
                )
            target_ids.append(id_)
        target_ids = list(set(target_ids))  # same order as transformers
        if len(target_ids) == 0:
            raise ValueError("fill-mask: targets: at least one target must be provided when passed.")
        return np.array(target_ids)

    def _params(self, params):
        params = dict(params)
        params["top_k"] = check_int("top_k", params["top_k"], 1, self.task)
        params["target_ids"] = None if params["targets"] is None else self._target_ids(params["targets"])
        if self.tokenizer.mask_token_id is None:
            raise ValueError("fill-mask: the tokenizer does not define a mask_token")
        return params

    def _run_encoded(self, items, encodings, params, engine):
        top_k, target_ids = params["top_k"], params["target_ids"]
        mask_id = self.tokenizer.mask_token_id
        if not encodings:
            return []
        sequences = self._ids(encodings)
        positions = []
        for i, ids in enumerate(sequences):
            pos = [j for j, t in enumerate(ids) if t == mask_id]
            if not pos:
                raise PipelineInputError(
                    f"fill-mask: no mask_token ({self.tokenizer.mask_token}) found on the input"
                    f"{' (after truncation)' if len(ids) >= self.max_length else ''}",
                    i,
                )
            positions.append(pos)
        model = self.model
        ops = self._ops()

        def head(rows, lengths, extras):
            offsets = np.cumsum([0] + lengths[:-1])
            flat = [int(o) + p for o, pos in zip(offsets, extras) for p in pos]
            h = rows.index_select(0, torch.tensor(flat, device=rows.device))  # only the [MASK] rows
            logits = model.head_rows(ops, h).float().cpu()
            return list(logits.split([len(p) for p in extras], dim=0))

        all_logits = self._forward(sequences, head, positions, engine)
        return [
            self._postprocess(ids, pos, logits, top_k, target_ids)
            for ids, pos, logits in zip(sequences, positions, all_logits)
        ]

    def _postprocess(self, input_ids, masked_index, logits, top_k, target_ids):
        if target_ids is not None and target_ids.shape[0] < top_k:
            top_k = target_ids.shape[0]
        probs = logits.softmax(dim=-1)
        if target_ids is not None:
            probs = probs[..., target_ids]
        top_k = min(top_k, probs.shape[-1])
        values, predictions = probs.topk(top_k)
        input_ids = np.asarray(input_ids)
        pad = self.tokenizer.pad_token_id
        result = []
        single_mask = values.shape[0] == 1
        for i, (_values, _predictions) in enumerate(zip(values.tolist(), predictions.tolist())):
            row = []
            for v, p in zip(_values, _predictions):
                tokens = input_ids.copy()
                if target_ids is not None:
                    p = target_ids[p].tolist()
                tokens[masked_index[i]] = p
                tokens = tokens[np.where(tokens != pad)]
                sequence = self.tokenizer.decode(tokens, skip_special_tokens=single_mask)
                row.append(
                    {"score": v, "token": p, "token_str": self.tokenizer.decode([p]), "sequence": sequence}
                )
            result.append(row)
        return result[0] if single_mask else result
