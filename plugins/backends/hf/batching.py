"""The ``hf`` backend's running decode batch, which continuous batching refills.

A :class:`DecodeBatch` holds the rows being decoded: their KV cache, left-padded attention mask,
next positions, next-token logits and per-row generators. :meth:`DecodeBatch.add` prefills new
prompts (scoring their ``score_ids`` in the same forward), expands each prompt's cache to its
``n`` samples and merges the rows into the running batch: both sides' caches and masks are
right-aligned by padding the shorter one on the left (positions come from each row's own mask,
so a row's numbers do not depend on the padding). :meth:`keep` drops finished rows and
:meth:`step` feeds one sampled token per row.

torch is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations


def out_cache(out):
    """The KV cache a forward() returned (``cache`` in newer transformers, else ``past_key_values``);
    the same as :func:`plugins.backends.hf.kernels.out_cache`, which this module cannot import
    without an import cycle through the package."""
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def _layers(cache) -> list[tuple]:
    """Each layer's (keys, values), ``[batch, heads, positions, head_dim]``."""
    if getattr(cache, "layers", None) is not None:
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers 4.x: per-layer lists


def _set_layers(cache, kv: list[tuple]) -> None:
    if getattr(cache, "layers", None) is not None:
        for layer, (k, v) in zip(cache.layers, kv):
            layer.keys, layer.values = k, v
    else:
        cache.key_cache = [k for k, _ in kv]
        cache.value_cache = [v for _, v in kv]


def mergeable(cache) -> bool:
    """Whether rows of two such caches can be merged: every layer a plain dynamic layer (a
    sliding-window or linear-attention layer keeps state that left padding would break)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return all(type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
                   for layer in layers)
    return type(cache).__name__ == "DynamicCache" and hasattr(cache, "key_cache")


def _pad_left(t, width: int, dim: int):
    """``t`` padded with zeros on the left of ``dim`` up to ``width``."""
    import torch

    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class DecodeBatch:
    """The live rows of one sampling-settings group. ``rows[b]`` is the caller's label of batch
    row ``b`` (a (request, sample) pair); every per-row tensor follows that order."""

    def __init__(self, model, pad_id: int, device, cache_kw: str):
        self.model, self.pad_id, self.device, self.cache_kw = model, pad_id, device, cache_kw
        self.cache = self.attn = self.next_pos = self.logits = None
        self.rows: list = []
        self.gens: list = []
        self.can_merge = True  # False once the model's cache turns out not to be mergeable

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, reqs, labels) -> list:
        """Prefill ``reqs`` (one forward for all), expand each to its ``n`` sample rows labelled
        ``labels`` (``n`` per request, in order) with generators seeded from ``seeds``, and merge
        them into the batch. Returns each request's ``score_ids`` log-probs (None without)."""
        import torch

        width = max(len(r.prompt_ids) for r in reqs)
        extra = max(len(r.score_ids or ()) for r in reqs)
        # Prompts left-padded to ``width``; ids to score follow each prompt (right-padded), so one
        # prefill both scores them and fills the KV cache, which is then cropped back to the prompts.
        ids = torch.full((len(reqs), width + extra), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(reqs), width + extra), dtype=torch.long)
        for b, r in enumerate(reqs):
            if not r.prompt_ids:
                raise ValueError("empty prompt")
            ids[b, width - len(r.prompt_ids):width] = torch.tensor(r.prompt_ids)
            attn[b, width - len(r.prompt_ids):width] = 1
            if r.score_ids:
                ids[b, width:width + len(r.score_ids)] = torch.tensor(r.score_ids)
                attn[b, width:width + len(r.score_ids)] = 1
        dev = self.device
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True,
                             logits_to_keep=extra + 1)
            cache = out_cache(out)
            # out.logits[:, j] comes from position width - 1 + j: j = 0 predicts the first new
            # token, j >= 1 scores score_ids[j - 1].
            scored = [None] * len(reqs)
            for b, r in enumerate(reqs):
                if r.score_ids is not None:
                    target = torch.tensor(r.score_ids, device=dev, dtype=torch.long)
                    lp = out.logits[b, :len(r.score_ids)].float().log_softmax(-1)
                    scored[b] = lp.gather(-1, target[:, None])[:, 0].tolist()
            if extra:
                cache.crop(-extra)
            first_logits = out.logits[:, 0, :]
            del out
            expand = torch.tensor([b for b, r in enumerate(reqs) for _ in range(r.n)], device=dev)
            cache.batch_select_indices(expand)  # prefill once, expand to n samples per prompt
            attn = attn[:, :width][expand]
            next_pos = pos[:, width - 1][expand] + 1
            logits = first_logits[expand]
        for r in reqs:
            for s in r.seeds:
                g = torch.Generator(device=dev)
                g.manual_seed(int(s) % (2**63))
                self.gens.append(g)
        if self.cache is None:
            self.cache, self.attn, self.next_pos, self.logits = cache, attn, next_pos, logits
        else:
            self._merge(cache, attn, next_pos, logits)
        self.rows += list(labels)
        self.can_merge = self.can_merge and mergeable(self.cache)
        return scored

    def _merge(self, cache, attn, next_pos, logits) -> None:
        import torch

        self._trim()
        width = max(self.attn.shape[1], attn.shape[1])
        merged = [(torch.cat([_pad_left(k0, width, 2), _pad_left(k1, width, 2)]),
                   torch.cat([_pad_left(v0, width, 2), _pad_left(v1, width, 2)]))
                  for (k0, v0), (k1, v1) in zip(_layers(self.cache), _layers(cache))]
        _set_layers(self.cache, merged)
        self.attn = torch.cat([_pad_left(self.attn, width, 1), _pad_left(attn, width, 1)])
        self.next_pos = torch.cat([self.next_pos, next_pos])
        self.logits = torch.cat([self.logits, logits])

    def _trim(self) -> None:
        """Drop the leading positions that are padding in every row (rows that held them left)."""
        lead = int(self.attn.any(0).int().argmax())
        if lead:
            self.attn = self.attn[:, lead:]
            _set_layers(self.cache, [(k[:, :, lead:], v[:, :, lead:]) for k, v in _layers(self.cache)])

    def keep(self, keep: list[int]) -> None:
        """Keep only batch rows ``keep`` (in order); :meth:`step` comes next."""
        import torch

        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[b] for b in keep]
        self.gens = [self.gens[b] for b in keep]
        if not keep:
            self.cache = self.attn = self.next_pos = self.logits = None
            return
        sel = torch.tensor(keep, device=self.device)
        self.cache.batch_select_indices(sel)
        self.attn, self.next_pos = self.attn[sel], self.next_pos[sel]
        self.logits = None  # spent: :meth:`step` makes the kept rows' next ones

    def step(self, tokens: list[int]) -> None:
        """Feed each row its sampled token; ``logits`` become the next token's."""
        import torch

        self.attn = torch.cat([self.attn, self.attn.new_ones((len(self.rows), 1))], dim=1)
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor(tokens, device=self.device)[:, None], attention_mask=self.attn,
                             position_ids=self.next_pos[:, None], use_cache=True, **{self.cache_kw: self.cache})
        self.cache = out_cache(out)
        self.logits = out.logits[:, -1, :]
        self.next_pos = self.next_pos + 1
