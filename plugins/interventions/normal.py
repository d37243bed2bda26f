"""Intervention ``normal``: the arm samples its own thought after the open tag."""

from harness.hookspecs import hookimpl


@hookimpl
def register_interventions(register):
    register(NormalThought)


class NormalThought:
    name = "normal"
    description = "the arm's own sampled thought (stops at the close tag or thought_max_tokens)"
    requires = ()

    def thoughts(self, ctx, items, samples, needed):
        return ctx.sample_thoughts(items, samples, self.name)
