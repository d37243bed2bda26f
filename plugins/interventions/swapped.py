"""Intervention ``swapped``: each item gets another item's ``normal`` thought from the same arm.

Items are paired by a seeded derangement (no item keeps its own thought); sample ``s`` of item
``i`` receives sample ``s`` of item ``perm[i]``. The donor is recorded as ``thought_source``.
"""

import random

from harness.hookspecs import hookimpl
from harness.types import Thought


@hookimpl
def register_interventions(register):
    register(SwappedThought)


def derangement(ids: list[str], seed: int) -> dict[str, str]:
    """A uniformly random derangement of ``ids`` (sorted first, so input order does not matter)."""
    ids = sorted(ids)
    if len(ids) < 2:
        raise ValueError("the swapped intervention needs at least 2 items")
    rng = random.Random(seed)
    while True:  # rejection sampling: about e tries on average
        perm = ids[:]
        rng.shuffle(perm)
        if all(a != b for a, b in zip(ids, perm)):
            return dict(zip(ids, perm))


class SwappedThought:
    name = "swapped"
    description = "another item's normal thought from the same arm (seeded derangement)"
    requires = ("normal",)
    min_items = 2  # a donor from another item

    def thoughts(self, ctx, items, samples, needed):
        donor = derangement([i.id for i in ctx.all_items], ctx.seed("swapped-derangement"))
        normal = needed["normal"]
        return {item.id: [Thought(normal[donor[item.id]][s].token_ids, normal[donor[item.id]][s].text,
                                  closed=normal[donor[item.id]][s].closed, source_item=donor[item.id])
                          for s in range(samples)] for item in items}
