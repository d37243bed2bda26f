"""Intervention ``reversed``: the arm's own ``normal`` thought with its tokens in reverse order.

The thought keeps exactly the tokens the arm sampled but reads them back to front. Compared with
``normal`` and ``blank`` it separates two explanations of a helpful thought: its tokens alone, or
the thought as a sequence (the built-in ``shuffled`` asks the same with a seeded random order).
"""

from harness.hookspecs import hookimpl
from harness.types import Thought


@hookimpl
def register_interventions(register):
    register(ReversedThought)


class ReversedThought:
    name = "reversed"
    description = "the arm's normal thought with its token ids in reverse order"
    requires = ("normal",)

    def thoughts(self, ctx, items, samples, needed):
        normal = needed["normal"]  # {item_id: [Thought, ...]}, one per sample
        out = {}
        for item in items:
            backwards = []
            for s in range(samples):
                ids = list(reversed(normal[item.id][s].token_ids))
                backwards.append(Thought(ids, ctx.backend.decode(ids), source_item=item.id))
            out[item.id] = backwards
        return out
