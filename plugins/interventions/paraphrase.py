"""Intervention ``paraphrase``: the arm's own thought rewritten by a teacher arm, in new tokens.

A teacher arm (``arm=NAME``: an arm name, a path or a Hub id, on any backend) is asked to
rewrite each ``normal`` thought keeping its meaning (a short instruction prompt, greedy, at most
``max_tokens`` tokens, stopping at a blank line). The paraphrase's text is then encoded with the
recipient arm's tokenizer: the point is the same meaning in other tokens, so unlike the other
controls this one re-encodes text. An empty thought stays empty.

The run's ``make_backend`` keeps one arm's model at a time, so the teacher gets its own backend
instance (from the backends registry, like the ``llm`` judge's), created when its first thought
is needed and closed when the arm's paraphrases are done (``close()``); while it runs, the
recipient's model is loaded as well. A teacher that is the recipient arm itself reuses its
backend. Each thought records ``info = {"paraphrased_by": TEACHER}``.
"""

import time

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option
from harness.types import GenRequest, Thought

PROMPT = ("Rewrite the following note in different words. Keep its meaning; do not add anything.\n\n"
          "Note: {thought}\n\nRewritten note:")


@hookimpl
def register_interventions(register):
    register(ParaphrasedThought)


def _teacher_arm(name: str, arms_table: dict):
    from harness.arms import resolve_arm

    try:
        return resolve_arm(name, arms_table or {})
    except BadInput as exc:
        why = exc.message.partition(": ")[2] if exc.message.startswith("--") else exc.message
        raise BadInput(f"paraphrase intervention: teacher {why}", param_hint="--intervention") from None


class ParaphrasedThought:
    name = "paraphrase"
    description = "the arm's normal thought rewritten by a teacher arm (arm=NAME, greedy), encoded with the arm's " \
                  "tokenizer"
    requires = ("normal",)
    options = (Option("arm", str, None, "the teacher arm that rewrites (an arm name, a path or a Hub id)",
                      required=True),
               Option("max_tokens", int, 96, "most tokens of a paraphrase", low=1),
               Option("chat", bool, False, "send the instruction through the teacher's chat template"))

    def __init__(self, options=None):
        o = options or {}
        self.teacher, self.max_tokens, self.chat = o.get("arm"), o.get("max_tokens", 96), o.get("chat", False)
        self._backend = None
        self._owned = False

    @classmethod
    def check_setup(cls, options, arms, arms_table):
        from harness.modelspec import ModelSpecError, resolve_path
        from harness.plugins import registry

        arm = _teacher_arm(options["arm"], arms_table)
        backend = registry("backends").get(arm.backend, "--intervention")
        try:
            (getattr(backend, "check", None) or resolve_path)(arm)
        except (BadInput, ModelSpecError) as exc:
            why = exc.message.partition(": ")[2] if exc.message.startswith("--") else str(exc)
            raise BadInput(f"paraphrase intervention: teacher arm {arm.name!r}: {why}",
                           param_hint="--intervention") from None

    def _teacher(self, ctx):
        if self._backend is None:
            if not self.teacher:
                raise BadInput("the paraphrase intervention needs an option: --intervention paraphrase:arm=...",
                               param_hint="--intervention")
            arm = _teacher_arm(self.teacher, getattr(ctx.run, "arms_table", {}))
            if arm.name == ctx.arm.name:
                self._backend, self._owned = ctx.backend, False
            else:
                from harness.plugins import registry

                self._backend, self._owned = registry("backends").get(arm.backend)(arm), True
        return self._backend

    def close(self) -> None:
        if self._owned and hasattr(self._backend, "close"):
            self._backend.close()
        self._backend, self._owned = None, False

    def paraphrase(self, ctx, texts: list[str]) -> dict[str, str]:
        """Each distinct non-empty text -> its paraphrase (greedy)."""
        todo = sorted({t.strip() for t in texts if t.strip()})
        if not todo:
            return {}
        teacher = self._teacher(ctx)
        prompts = [PROMPT.format(thought=t) for t in todo]
        if self.chat:
            prompts = [teacher.chat_prompt([{"role": "user", "content": p}]) for p in prompts]
        requests = [GenRequest(teacher.encode(p), n=1, seeds=[0], max_new_tokens=self.max_tokens, temperature=0.0,
                               stop_strings=("\n\n",)) for p in prompts]
        bar = ctx.bar(f"{ctx.arm.name} paraphrase: teacher", len(requests))
        start = time.perf_counter()
        outs = teacher.generate(requests, progress=bar.update)
        ctx.run.stats["generation_s"] += time.perf_counter() - start  # the run's throughput counts the teacher's
        ctx.run.stats["generated_tokens"] += sum(len(c.token_ids) for out in outs for c in out)
        return {t: out[0].text.strip() for t, out in zip(todo, outs)}

    def thoughts(self, ctx, items, samples, needed):
        normal = needed["normal"]
        rewritten = self.paraphrase(ctx, [normal[i.id][s].text for i in items for s in range(samples)])
        out = {}
        for item in items:
            row = []
            for s in range(samples):
                text = rewritten.get(normal[item.id][s].text.strip(), "")
                ids = list(ctx.backend.encode(text)) if text else []
                row.append(Thought(ids, ctx.backend.decode(ids), source_item=item.id,
                                   info={"paraphrased_by": self.teacher}))
            out[item.id] = row
        return out
