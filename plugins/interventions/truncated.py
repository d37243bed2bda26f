"""Intervention ``truncated``: the first ``fraction`` of the arm's own ``normal`` thought, by tokens.

Sample ``s`` of an item keeps the first ``floor(fraction * n)`` token ids of that item's
``normal`` sample ``s`` (``n`` its length); ``fraction`` defaults to 0.5. The ids are cut, never
re-encoded. Several fractions are several conditions:
``--intervention truncated:fraction=0.25 --intervention truncated:fraction=0.75``.
"""

import math

from harness.hookspecs import hookimpl
from harness.options import Option
from harness.types import Thought


@hookimpl
def register_interventions(register):
    register(TruncatedThought)


def keep_tokens(n: int, fraction: float) -> int:
    """How many of ``n`` tokens a ``fraction`` keeps: ``floor(fraction * n)`` (exact for 0 and 1)."""
    return min(n, math.floor(fraction * n + 1e-9))


class TruncatedThought:
    name = "truncated"
    description = "the first fraction of the arm's normal thought, by tokens (floor(fraction x length))"
    requires = ("normal",)
    options = (Option("fraction", float, 0.5, "share of the thought's tokens kept, from its start",
                      low=0.0, high=1.0),)

    def __init__(self, options=None):
        self.fraction = (options or {}).get("fraction", 0.5)

    def thoughts(self, ctx, items, samples, needed):
        normal = needed["normal"]
        out = {}
        for item in items:
            cut = []
            for s in range(samples):
                ids = list(normal[item.id][s].token_ids)
                ids = ids[:keep_tokens(len(ids), self.fraction)]
                cut.append(Thought(ids, ctx.backend.decode(ids), source_item=item.id))
            out[item.id] = cut
        return out
