"""The ``hf`` backend's prefix store: prompts' KV caches kept for later prompts that start with them.

The thought probe prefills an item's prefix once for its thoughts (stage 1) and again for every
suffix prompt (stage 2: prefix + thought + close tag), which is most of a CPU run's prefill. Its
requests say so with ``prefix_len``: a prompt that is all prefix (stage 1) leaves its KV cache
here (one row, on the model's device); a longer one (stage 2) runs only the tokens after its
prefix, on top of the stored cache, or of one computed for it when the store lacks it (and then
kept), so its numbers do not depend on what the store held. Entries are evicted least recently
used first once their tensors pass ``max_bytes``.
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixStore:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, tuple[list, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0  # split prompts whose prefix was stored
        self.reused_tokens = 0  # prefix tokens those did not run again

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, ids, kv: list[tuple]) -> None:
        """Keep ``kv`` (per layer ``(keys, values)``, one row) as the cache of prompt ``ids``."""
        key = tuple(ids)
        if key in self.entries:
            self.entries.move_to_end(key)
            return
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if size > self.max_bytes:
            return
        self.entries[key] = (kv, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            old, (_, old_size) = self.entries.popitem(last=False)
            self.bytes -= old_size

    def get(self, ids) -> list | None:
        """The stored kv of prompt ``ids`` (None when it is not stored)."""
        hit = self.entries.get(tuple(ids))
        if hit is None:
            return None
        self.entries.move_to_end(tuple(ids))
        return hit[0]

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0
