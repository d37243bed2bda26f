"""The ``hf`` backend's running decode batch, which continuous batching refills.

A :class:`DecodeBatch` holds the rows being decoded: their KV cache, left-padded attention mask,
next positions, next-token logits and per-row generators. :meth:`DecodeBatch.add` prefills new
prompts (scoring their ``score_ids`` in the same forward; a prompt with a ``prefix_len`` runs
on top of its prefix's KV cache, kept in the backend's prefix store), expands each prompt's cache to its ``n`` samples
and merges the rows into the running batch: both sides' caches and masks are right-aligned by
padding the shorter one on the left (positions come from each row's own mask, so a row's numbers
do not depend on the padding). :meth:`keep` drops finished rows and :meth:`step` feeds one
sampled token per row.

The cache's layers keep ``spare`` free positions (:func:`growing_layer`), so a decode step writes
its keys and values in place instead of copying the whole cache to append one position (that copy
was most of a CPU decode step at a few hundred positions).

torch is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import functools


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


def _new_cache(kv: list[tuple]):
    """A transformers ``DynamicCache`` holding ``kv``."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(kv):
        cache.update(k, v, i)
    return cache


@functools.cache
def growing_layer():
    """A transformers ``DynamicLayer`` whose keys and values are views into buffers with ``spare``
    free positions: an update writes into them (a new buffer, ``spare`` positions larger, only when
    they are full or the layer's tensors were replaced). The numbers are the same as the plain
    layer's, which concatenates on every update."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        spare = 64
        _buf = None

        def _fits(self, add: int) -> bool:
            b = self._buf
            return (b is not None and self.keys.data_ptr() == b[0].data_ptr() and self.keys.stride() == b[0].stride()
                    and self.keys.shape[:2] == b[0].shape[:2] and self.keys.shape[-2] + add <= b[0].shape[-2])

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized or self.keys.numel() == 0:
                return super().update(key_states, value_states, *args, **kwargs)
            n, add = self.keys.shape[-2], key_states.shape[-2]
            if not self._fits(add):
                shape = (*self.keys.shape[:2], n + add + self.spare, self.keys.shape[-1])
                self._buf = (self.keys.new_empty(shape), self.values.new_empty(shape))
                self._buf[0][:, :, :n] = self.keys
                self._buf[1][:, :, :n] = self.values
            keys, values = self._buf
            keys[:, :, n:n + add] = key_states
            values[:, :, n:n + add] = value_states
            self.keys, self.values = keys[:, :, :n + add], values[:, :, :n + add]
            return self.keys, self.values

        def batch_select_indices(self, indices) -> None:
            if self._buf is not None and self._fits(0):  # select the buffers' rows, spare positions too
                n = self.keys.shape[-2]
                self._buf = tuple(torch.index_select(t, 0, indices) for t in self._buf)
                self.keys, self.values = self._buf[0][:, :, :n], self._buf[1][:, :, :n]
            else:
                super().batch_select_indices(indices)

    return GrowingLayer


def reserve(cache, spare: int) -> None:
    """Turn ``cache``'s plain dynamic layers into :func:`growing_layer` ones keeping ``spare`` free
    positions (nothing for other layer kinds, transformers 4.x caches or ``spare`` 0)."""
    layers = getattr(cache, "layers", None)
    if not spare or layers is None:
        return
    cls = growing_layer()
    for i, layer in enumerate(layers):
        if type(layer).__name__ == "DynamicLayer":
            grown = cls.__new__(cls)
            grown.__dict__.update(layer.__dict__)
            grown.spare = spare
            layers[i] = grown


def mergeable(cache) -> bool:
    """Whether rows of two such caches can be merged: every layer a plain dynamic layer (a
    sliding-window or linear-attention layer keeps state that left padding would break)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return all(type(layer).__name__ in ("DynamicLayer", "GrowingLayer") and getattr(layer, "keys", None) is not None
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
    row ``b`` (a (request, sample) pair); every per-row tensor follows that order. ``prefixes`` is
    the backend's :class:`plugins.backends.hf.prefix.PrefixStore` (None: every prompt runs whole)."""

    def __init__(self, model, pad_id: int, device, cache_kw: str, prefixes=None, spare: int = 64):
        self.model, self.pad_id, self.device, self.cache_kw = model, pad_id, device, cache_kw
        self.prefixes, self.spare = prefixes, spare
        self.cache = self.attn = self.next_pos = self.logits = None
        self.rows: list = []
        self.gens: list = []
        self.can_merge = True  # False once the model's cache turns out not to be mergeable

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, reqs, labels) -> list:
        """Prefill ``reqs``, expand each to its ``n`` sample rows labelled ``labels`` (``n`` per
        request, in order) with generators seeded from its ``seeds``, and merge them into the
        batch. Returns each request's ``score_ids`` log-probs (None without).

        A request whose ``prefix_len`` is shorter than its prompt always runs in two parts: the
        prefix's KV cache (from the prefix store, else computed here as a prompt of its own and
        stored), then the rest of the prompt on top of it, so its numbers are the same whether
        or not the store held the prefix (a resumed run, an evicted entry, the store off). Those
        run in one forward, the other prompts (whole, the prefix-only ones stored) in another."""
        found = [self._prefix(r) for r in reqs]
        if self.prefixes is not None:
            stored = [r for r, f in zip(reqs, found) if f]
            self.prefixes.hits += len(stored)
            self.prefixes.reused_tokens += sum(r.prefix_len for r in stored)
        missing = list(dict.fromkeys(tuple(r.prompt_ids[:r.prefix_len]) for r, f in zip(reqs, found) if f is None))
        if missing:
            made = dict(zip(missing, self._prefix_kv([list(m) for m in missing])))
            found = [made[tuple(r.prompt_ids[:r.prefix_len])] if f is None else f for r, f in zip(reqs, found)]
        starts = [sum(r.n for r in reqs[:b]) for b in range(len(reqs))]  # each request's first label
        scored: list = [None] * len(reqs)
        for split in (False, True):
            group = [b for b in range(len(reqs)) if bool(found[b]) == split]
            if group:
                for b, lp in zip(group, self._add([reqs[b] for b in group], [found[b] for b in group])):
                    scored[b] = lp
                self.rows += [labels[starts[b] + s] for b in group for s in range(reqs[b].n)]
        return scored

    def _prefix(self, r):
        """The stored KV cache of ``r``'s prefix: ``[]`` when ``r`` runs whole, None when it is
        split but its prefix is not stored."""
        if not 0 < r.prefix_len < len(r.prompt_ids):
            return []
        return self.prefixes.get(r.prompt_ids[:r.prefix_len]) if self.prefixes is not None else None

    def _prefix_kv(self, prompts) -> list[list[tuple]]:
        """Each of ``prompts`` run whole (left-padded, one forward): its KV cache, one row per
        layer, stored in the prefix store (when there is one)."""
        import torch

        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, width - len(p):] = torch.tensor(p)
            attn[b, width - len(p):] = 1
        ids, attn = ids.to(self.device), attn.to(self.device)
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0),
                             use_cache=True, logits_to_keep=1)
        layers = _layers(out_cache(out))
        kvs = [[(k[b:b + 1, :, width - len(p):].clone(), v[b:b + 1, :, width - len(p):].clone()) for k, v in layers]
               for b, p in enumerate(prompts)]
        if self.prefixes is not None:
            for p, kv in zip(prompts, kvs):
                self.prefixes.put(p, kv)
        return kvs

    def _add(self, reqs, found) -> list:
        """Prefill ``reqs`` (one forward), each prompt after its prefix's KV cache ``found[b]``
        (``[]`` for none), and merge their sample rows into the batch."""
        import torch

        # Row b: its prefix's keys and values end in column ``cached``; the forward runs the rest of
        # its prompt, left-padded so that every prompt ends in column width - 1 (padding between a
        # short rest and its prefix is masked out), then the ids to score (right-padded), so one
        # prefill both scores them and fills the KV cache, which is then cropped back to the prompts.
        plen = [len(r.prompt_ids[:r.prefix_len]) if f else 0 for r, f in zip(reqs, found)]
        cached = max(plen)
        tail = max(len(r.prompt_ids) - p for r, p in zip(reqs, plen))
        width = cached + tail
        extra = max(len(r.score_ids or ()) for r in reqs)
        ids = torch.full((len(reqs), tail + extra), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(reqs), width + extra), dtype=torch.long)
        for b, (r, p) in enumerate(zip(reqs, plen)):
            if not r.prompt_ids:
                raise ValueError("empty prompt")
            rest = r.prompt_ids[p:]
            ids[b, tail - len(rest):tail] = torch.tensor(rest)
            attn[b, cached - p:cached] = 1
            attn[b, width - len(rest):width] = 1
            if r.score_ids:
                ids[b, tail:tail + len(r.score_ids)] = torch.tensor(r.score_ids)
                attn[b, width:width + len(r.score_ids)] = 1
        kv = None  # the prefixes' caches, each ending in column ``cached``
        if cached:
            kv = [(k.new_zeros((len(reqs), k.shape[1], cached, k.shape[3])),
                   v.new_zeros((len(reqs), v.shape[1], cached, v.shape[3]))) for k, v in found[plen.index(cached)]]
            for b, p in enumerate(plen):
                for (k, v), (pk, pv) in zip(kv, found[b]):
                    k[b, :, cached - p:] = pk[0]
                    v[b, :, cached - p:] = pv[0]
        dev = self.device
        ids, attn = ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            more = {self.cache_kw: _new_cache(kv)} if kv is not None else {}
            out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos[:, cached:], use_cache=True,
                             logits_to_keep=extra + 1, **more)
            cache = out_cache(out)
            # out.logits[:, j] comes from column width - 1 + j: j = 0 predicts the first new
            # token, j >= 1 scores score_ids[j - 1].
            scored = [None] * len(reqs)
            for b, r in enumerate(reqs):
                if r.score_ids is not None:
                    target = torch.tensor(r.score_ids, device=dev, dtype=torch.long)
                    lp = out.logits[b, :len(r.score_ids)].float().log_softmax(-1)
                    scored[b] = lp.gather(-1, target[:, None])[:, 0].tolist()
            if self.prefixes is not None:
                for b, (r, p) in enumerate(zip(reqs, plen)):
                    n = len(r.prompt_ids)
                    if not p and r.prefix_len >= n:  # a prefix of later prompts (the probe's thought prompt)
                        self.prefixes.put(r.prompt_ids, [(k[b:b + 1, :, width - n:width].clone(),
                                                          v[b:b + 1, :, width - n:width].clone())
                                                         for k, v in _layers(cache)])
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
        reserve(self.cache, self.spare)
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
