"""Teacher-forced log-probabilities: used by backends' ``score()``, NLL metrics and training."""

from __future__ import annotations


def continuation_logprobs(model, pairs, pad_id: int, device, max_batch_tokens: int = 8192, grad: bool = False):
    """Per-token log-probs of each continuation given its context.

    ``pairs`` is a list of ``(context_ids, continuation_ids)``; returns a list of 1-D float
    tensors (on CPU unless ``grad``), one log-prob per continuation token. Rows are left-padded
    and batched by length so that rows x length stays under ``max_batch_tokens``.
    """
    import torch

    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    out: list = [None] * len(pairs)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order):
            longest = len(pairs[order[end]][0]) + len(pairs[order[end]][1])
            if (end - start + 1) * longest > max_batch_tokens:
                break
            end += 1
        batch = [order[i] for i in range(start, end)]
        start = end
        for i in batch:
            if not pairs[i][0]:
                raise ValueError("continuation_logprobs needs at least one context token")
        seqs = [list(pairs[i][0]) + list(pairs[i][1]) for i in batch]
        width = max(len(s) for s in seqs)
        keep = max(len(pairs[i][1]) for i in batch)
        # Left padding puts every continuation at the end, so only the last keep + 1 positions
        # need logits (the vocabulary projection dominates the cost on long contexts).
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx:
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                           logits_to_keep=keep + 1).logits[:, :-1]
            for r, i in enumerate(batch):
                k = len(pairs[i][1])
                if k == 0:
                    out[i] = logits.new_zeros(0).float()
                    continue
                row = logits[r, keep - k:].float().log_softmax(-1)
                target = ids[r, width - k:].to(row.device)
                lp = row.gather(-1, target[:, None])[:, 0]
                out[i] = lp if grad else lp.cpu()
    return out
