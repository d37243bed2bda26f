"""Intervention ``blank``: an empty thought (open tag immediately followed by the close tag)."""

from harness.hookspecs import hookimpl
from harness.types import Thought


@hookimpl
def register_interventions(register):
    register(BlankThought)


class BlankThought:
    name = "blank"
    description = "an empty thought"
    requires = ()

    def thoughts(self, ctx, items, samples, needed):
        return {item.id: [Thought([], "") for _ in range(samples)] for item in items}
