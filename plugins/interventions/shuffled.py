"""Intervention ``shuffled``: the arm's own ``normal`` thought with its tokens in a random order.

The thought keeps exactly the token ids the arm sampled but loses their order (a seeded shuffle
per item and sample: seed of run seed, arm, item, ``shuffled``, sample). Compared with ``normal``
and ``blank`` it separates two explanations of a helpful thought: its tokens alone, or the
thought as a sequence. The ids are permuted, never re-encoded; ``text`` is their decoding.
"""

import random

from harness.hookspecs import hookimpl
from harness.types import Thought


@hookimpl
def register_interventions(register):
    register(ShuffledThought)


class ShuffledThought:
    name = "shuffled"
    description = "the arm's normal thought with its token ids in a seeded random order"
    requires = ("normal",)

    def thoughts(self, ctx, items, samples, needed):
        normal = needed["normal"]
        out = {}
        for item in items:
            shuffled = []
            for s in range(samples):
                ids = list(normal[item.id][s].token_ids)
                random.Random(ctx.seed(item.id, "shuffled", s)).shuffle(ids)
                shuffled.append(Thought(ids, ctx.backend.decode(ids), source_item=item.id))
            out[item.id] = shuffled
        return out
