"""The ``hf`` backend's tensor kernels: seeded per-row sampling, the KV-cache keyword of the
installed transformers, and teacher-forced log-probabilities (the backend's ``score()``, NLL
metrics and training, which imports them through :mod:`training.logprobs`).

torch is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations


def sample_rows(logits, temperature: float, top_p: float, generators, top_k_first: int = 1024):
    """Sample one token per row, each row from its own seeded generator (temperature 0 = greedy).

    Nucleus sampling is exact: the candidates are the ``top_k_first`` most likely tokens when they
    already hold ``top_p`` of the mass (almost always), else the row's whole sorted vocabulary.
    Each row draws one uniform number from its generator and inverts its (truncated) CDF, so a
    row's token depends only on its own logits and seed, never on the rest of the batch (rows
    whose nucleus is wider than ``top_k_first`` are sorted and sampled on their own).
    """
    import torch

    if temperature <= 0:
        return logits.argmax(-1)
    scaled = logits.float()
    if temperature != 1.0:  # x / 1 == x exactly: skip a pass over the vocabulary
        scaled = scaled / temperature
    probs = scaled.softmax(-1)
    u = torch.cat([torch.rand(1, generator=g, device=g.device, dtype=torch.float64) for g in generators])
    if top_p >= 1.0:
        return _invert(probs, u)
    vocab = probs.shape[-1]
    k = min(top_k_first, vocab)
    vals, idx = probs.topk(k, dim=-1)
    pick = _nucleus(vals, idx, top_p, u)
    if k < vocab:
        short = (vals.sum(-1) < top_p).nonzero().flatten()
        if len(short):  # the nucleus is wider than top_k_first: sort those rows in full
            full_vals, full_idx = probs[short].sort(-1, descending=True)
            pick[short] = _nucleus(full_vals, full_idx, top_p, u[short])
    return pick


def _nucleus(vals, idx, top_p: float, u):
    """Sample from rows of probabilities ``vals`` sorted in descending order (token ids ``idx``)
    truncated to their ``top_p`` nucleus: a token stays while the mass before it is below top_p
    (the most likely token always stays)."""
    return idx.gather(-1, _invert(vals.masked_fill(vals.cumsum(-1) - vals >= top_p, 0.0), u)[:, None])[:, 0]


def _invert(vals, u):
    """Per row, the position where the CDF of the (unnormalised) ``vals`` first passes ``u``."""
    import torch

    cum = vals.double().cumsum(-1)
    total = cum[:, -1:]
    pick = torch.searchsorted(cum, u[:, None] * total, right=True)
    last_positive = (cum < total).sum(-1, keepdim=True)  # guards the u * total == total rounding edge
    return torch.minimum(pick, last_positive)[:, 0]


def cache_arg(model) -> str:
    """The forward() keyword for the KV cache: ``cache`` in newer transformers, else ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def out_cache(out):
    """The KV cache a forward() returned (``cache`` in newer transformers, else ``past_key_values``)."""
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def continuation_logprobs(model, pairs, pad_id: int, device, max_batch_tokens: int = 8192, grad: bool = False,
                          share_context: bool = False):
    """Per-token log-probs of each continuation given its context.

    ``pairs`` is a list of ``(context_ids, continuation_ids)``; returns a list of 1-D float
    tensors (on CPU unless ``grad``), one log-prob per continuation token. Rows are left-padded
    and batched by length so that rows x length stays under ``max_batch_tokens``.

    ``share_context``: pairs with the same context (a prompt's rollouts) run that context once
    and share its KV cache (:func:`shared_context_logprobs`), in chunks of as many rows as the
    padded path would batch; the numbers and gradients are the same, the compute much smaller
    when contexts are long.
    """
    if not share_context:
        return _padded_logprobs(model, pairs, pad_id, device, max_batch_tokens, grad)
    groups: dict[tuple, list[int]] = {}
    for i, (context, _) in enumerate(pairs):
        groups.setdefault(tuple(context), []).append(i)
    out: list = [None] * len(pairs)
    alone = [idx[0] for idx in groups.values() if len(idx) == 1]
    for context, idx in groups.items():
        if len(idx) == 1:
            continue  # nothing to share: batched with the other lone pairs below
        longest = max(len(pairs[i][1]) for i in idx)
        per = max(1, max_batch_tokens // max(1, len(context) + longest))
        for k in range(0, len(idx), per):
            part = idx[k:k + per]
            lps = shared_context_logprobs(model, list(context), [pairs[i][1] for i in part], pad_id, device, grad)
            for i, lp in zip(part, lps):
                out[i] = lp
    for i, lp in zip(alone, _padded_logprobs(model, [pairs[i] for i in alone], pad_id, device, max_batch_tokens,
                                              grad)):
        out[i] = lp
    return out


def shared_context_logprobs(model, context, continuations, pad_id: int, device, grad: bool = False):
    """Per-token log-probs of several continuations of one context: the context is run once
    (one row), its KV cache expanded to one row per continuation, and the right-padded
    continuations run on it. The same numbers as separate rows up to float rounding; with
    ``grad`` the gradient flows through the shared context too, so it equals the sum of the
    separate rows' gradients."""
    import torch

    if not context:
        raise ValueError("continuation_logprobs needs at least one context token")
    rows = [r for r, c in enumerate(continuations) if len(c)]
    out: list = [torch.zeros(0, device=device if grad else "cpu") for _ in continuations]
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        if rows:
            first = model(input_ids=torch.tensor([list(context)], device=device), use_cache=True, logits_to_keep=1)
            cache = _expand_cache(out_cache(first), len(rows))
            width = max(len(continuations[r]) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, :len(continuations[r])] = torch.tensor(list(continuations[r]), dtype=torch.long)
            # right padding: a real token never attends to the pads after it, so no mask is needed
            pos = torch.arange(len(context), len(context) + width)[None].expand(len(rows), -1)
            logits = model(input_ids=ids.to(device), position_ids=pos.to(device), use_cache=True,
                           **{cache_arg(model): cache}).logits
            head = first.logits[:, -1]  # predicts every continuation's first token
            for j, r in enumerate(rows):
                k = len(continuations[r])
                row = torch.cat([head, logits[j, :k - 1]]).float().log_softmax(-1)
                lp = row.gather(-1, ids[j, :k].to(row.device)[:, None])[:, 0]
                out[r] = lp if grad else lp.cpu()
    return out


def _expand_cache(cache, n: int):
    """``cache`` (batch 1) viewed as ``n`` rows. ``expand`` rather than indexing: its backward is a
    plain sum, whereas the backward of indexing with repeated indices accumulates in an order
    that differs from run to run on CPU (and training must give the same weights every run)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            layer.keys = layer.keys.expand(n, *layer.keys.shape[1:])
            layer.values = layer.values.expand(n, *layer.values.shape[1:])
    else:  # transformers 4.x: per-layer lists
        cache.key_cache = [k.expand(n, *k.shape[1:]) for k in cache.key_cache]
        cache.value_cache = [v.expand(n, *v.shape[1:]) for v in cache.value_cache]
    return cache


def _padded_logprobs(model, pairs, pad_id: int, device, max_batch_tokens: int, grad: bool):
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
