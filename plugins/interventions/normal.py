"""Intervention ``normal``: the arm samples its own thought after the open tag."""

from harness.hookspecs import hookimpl
from harness.types import GenRequest, Thought


@hookimpl
def register_interventions(register):
    register(NormalThought)


class NormalThought:
    name = "normal"
    description = "the arm's own sampled thought (stops at the close tag or thought_max_tokens)"
    requires = ()

    def thoughts(self, ctx, items, samples, needed):
        cfg = ctx.config
        stop = ctx.arm.think_close.strip()
        requests = [GenRequest(ctx.prompt_ids(item), n=samples,
                               seeds=[ctx.seed(item.id, self.name, s, "thought") for s in range(samples)],
                               max_new_tokens=cfg["thought_max_tokens"], temperature=cfg["temperature"],
                               top_p=cfg["top_p"], stop_strings=(stop,) if stop else (),
                               affinity=item.id)
                    for item in items]
        outs = ctx.generate(requests, desc=f"{ctx.arm.name} normal: thoughts")
        return {item.id: [Thought(c.token_ids, c.text, closed=c.finish_reason == "stop") for c in out]
                for item, out in zip(items, outs)}
