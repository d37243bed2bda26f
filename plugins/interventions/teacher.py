"""Intervention ``teacher``: the dataset's own thought at the split point.

Interleaved-thinking rows (``<think>...</think>`` inside prose) are split by the ``chunks`` task
right before a thought; that thought, the one the data's author (or teacher model) wrote after
the prefix, is kept in ``item.meta["reference_thought"]``. This condition puts it between the
tags, encoded with the arm's tokenizer (it exists only as text), the same thought for every
sample. Items without one (plain passages) are skipped: they get no record under this condition,
and the manifest's ``skipped_items`` and the report count them.
"""

from harness.hookspecs import hookimpl
from harness.types import Thought

META_KEY = "reference_thought"


@hookimpl
def register_interventions(register):
    register(TeacherThought)


def teacher_text(item) -> str:
    value = (item.meta or {}).get(META_KEY)
    return value.strip() if isinstance(value, str) else ""


class TeacherThought:
    name = "teacher"
    description = "the data's own thought at the split point (interleaved rows); items without one are skipped"
    requires = ()

    def applies(self, item) -> bool:
        return bool(teacher_text(item))

    def thoughts(self, ctx, items, samples, needed):
        out = {}
        for item in items:
            ids = list(ctx.backend.encode(teacher_text(item)))
            text = ctx.backend.decode(ids)
            out[item.id] = [Thought(list(ids), text) for _ in range(samples)]
        return out
