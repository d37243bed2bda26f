"""Intervention ``question``: a thought the arm samples itself, after being asked what comes next.

The prompt for the thought is the prefix, then a question, then the open tag; the thought is then
used like any other, in the standard stage-2 prompt (prefix, open tag, thought, close tag) that
does not show the question. Compared with ``normal`` it asks whether steering what the arm thinks
about changes how much the thought helps.
"""

from harness.hookspecs import hookimpl

QUESTION = "\nBefore continuing, think about what the next sentences will say."


@hookimpl
def register_interventions(register):
    register(QuestionThought)


class QuestionThought:
    name = "question"
    description = "a thought the arm samples after being asked what the passage says next"
    run_options = {"question": "the text put between the prefix and the open tag"}

    def thoughts(self, ctx, items, samples, needed):
        question = ctx.config["options"].get("question", QUESTION)
        return ctx.sample_thoughts(items, samples, self.name, between=question)
