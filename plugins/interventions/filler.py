"""Intervention ``filler``: a content-free thought as long, in tokens, as the arm's own.

The length control: sample ``s`` of an item gets as many tokens as that item's ``normal``
sample ``s``, all filler. The filler is the recipient tokenizer's ids of ``unit`` (default
``"."``, one token in the usual vocabularies) repeated, and cut to exactly that many tokens, so
the thought reads "......" and has the own thought's token count whatever the tokenizer. The ids
go in as they are (never decoded and re-encoded, which could merge the dots).
"""

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option
from harness.types import Thought


@hookimpl
def register_interventions(register):
    register(FillerThought)


def filler_ids(unit_ids: list[int], n: int) -> list[int]:
    """``unit_ids`` repeated and cut to exactly ``n`` ids."""
    if n <= 0:
        return []
    return (list(unit_ids) * (n // len(unit_ids) + 1))[:n]


class FillerThought:
    name = "filler"
    description = "neutral filler ('.' tokens) of the same token count as the arm's normal thought"
    requires = ("normal",)
    options = (Option("unit", str, ".", "the filler text, repeated (as the arm's token ids) to the thought's length"),)

    def __init__(self, options=None):
        self.unit = (options or {}).get("unit", ".")
        if not self.unit:
            raise BadInput("filler intervention: unit is empty", param_hint="--intervention")

    def thoughts(self, ctx, items, samples, needed):
        normal = needed["normal"]
        unit = list(ctx.backend.encode(self.unit))
        if not unit:
            raise BadInput(f"filler intervention: unit={self.unit!r} encodes to no tokens for arm "
                           f"{ctx.arm.name!r}", param_hint="--intervention")
        out = {}
        for item in items:
            row = []
            for s in range(samples):
                ids = filler_ids(unit, len(normal[item.id][s].token_ids))
                row.append(Thought(ids, ctx.backend.decode(ids)))
            out[item.id] = row
        return out
