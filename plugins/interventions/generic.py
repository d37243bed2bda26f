"""Intervention ``generic``: the same short, content-free scaffold thought for every item.

The text is configurable per run with ``--option generic_thought=...``.
"""

from harness.hookspecs import hookimpl
from harness.types import Thought

DEFAULT_TEXT = "Let me consider what the passage is explaining and continue it clearly and accurately."


@hookimpl
def register_interventions(register):
    register(GenericThought)


class GenericThought:
    name = "generic"
    description = "a short neutral scaffold thought, identical for every item"
    requires = ()
    run_options = {"generic_thought": "the thought's text"}

    def thoughts(self, ctx, items, samples, needed):
        text = ctx.config.get("options", {}).get("generic_thought", DEFAULT_TEXT)
        ids = ctx.backend.encode(text)
        return {item.id: [Thought(list(ids), text) for _ in range(samples)] for item in items}
