"""Intervention ``cross_arm``: another arm's ``normal`` thought for the same item.

Needs at least 2 arms. The donor is the ``donor`` option (an arm of the run; that arm itself
gets the next arm's), by default the next arm in the run's arm order (the last arm's donor is
the first); sample ``s`` of an item gets the donor's ``normal`` sample ``s`` of that item.
Because the pipeline keeps one model in memory at a time, the class sets ``requires_arms``:
every arm's ``normal`` thoughts are made (and stored) before any arm's other conditions, and
the donor's are read back from thoughts.jsonl.

Token ids travel as they are when both arms have the same tokenizer; otherwise the donor's text
is encoded with the recipient's tokenizer. "Same tokenizer" is decided from the thoughts
themselves: every donor thought's ids decode, with the recipient's tokenizer, to exactly the
donor's text (ids out of the recipient's vocabulary, or any other decoding, mean another
tokenizer). Each thought records ``info = {"source_arm": DONOR, "reencoded": bool}``; the record
carries it as ``thought_info`` and the report counts the re-encoded samples.
"""

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option
from harness.types import Thought


@hookimpl
def register_interventions(register):
    register(CrossArmThought)


def donor_arm(arm_names: list[str], recipient: str, donor: str | None) -> str:
    """The donor for ``recipient``: ``donor`` when given (the donor arm itself gets the next arm's),
    else the next arm in ``arm_names`` (wrapping)."""
    if donor and donor != recipient:
        return donor
    k = arm_names.index(recipient)
    return arm_names[(k + 1) % len(arm_names)]


def same_tokens(backend, thoughts) -> bool:
    """Whether ``backend`` decodes every thought's ids to exactly its text."""
    for t in thoughts:
        try:
            if backend.decode(list(t.token_ids)) != t.text:
                return False
        except Exception:  # an id outside this vocabulary: another tokenizer
            return False
    return True


class CrossArmThought:
    name = "cross_arm"
    description = "another arm's normal thought for the same item (default donor: the next arm); re-encoded if " \
                  "the tokenizers differ"
    requires = ("normal",)
    requires_arms = True
    options = (Option("donor", str, None, "the arm whose normal thoughts are used (default: the next arm "
                      "in the run's order, wrapping)"),)

    def __init__(self, options=None):
        self.donor = (options or {}).get("donor")

    @classmethod
    def check_setup(cls, options, arms, arms_table):
        names = [a.name for a in arms]
        if len(names) < 2:
            raise BadInput(f"the cross_arm intervention needs at least 2 arms (another arm's thought), the run "
                           f"has {len(names)}", param_hint="--arm")
        donor = options.get("donor")
        if donor and donor not in names:
            raise BadInput(f"cross_arm intervention: donor={donor!r} is not an arm of this run "
                           f"({', '.join(names)})", param_hint="--intervention")

    def thoughts(self, ctx, items, samples, needed):
        names = [a.name for a in ctx.run.arms]
        donor = donor_arm(names, ctx.arm.name, self.donor)
        given = ctx.arm_thoughts(donor, "normal")
        lacking = [i.id for i in items if i.id not in given]
        if lacking:
            raise RuntimeError(f"cross_arm: arm {donor!r} has no stored normal thoughts for item {lacking[0]!r}")
        # decided over all the donor's thoughts, so every chunk of items decides the same way
        same = same_tokens(ctx.backend, [t for row in given.values() for t in row])
        out = {}
        for item in items:
            row = []
            for s in range(samples):
                t = given[item.id][s]
                if same:
                    ids, text = list(t.token_ids), t.text
                else:
                    ids = list(ctx.backend.encode(t.text))
                    text = ctx.backend.decode(ids)
                row.append(Thought(ids, text, closed=t.closed, source_item=item.id,
                                   info={"source_arm": donor, "reencoded": not same}))
            out[item.id] = row
        return out
