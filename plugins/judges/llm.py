"""Judge ``llm``: any arm as a judge, through that arm's backend, with a strict verdict parser.

The judge model sees the true and predicted suffix (and optionally the prefix) between marker
lines; any marker text inside the judged texts is neutralised, and only the judge's own
completion is parsed. The completion's first non-empty line must be exactly ``YES`` or ``NO``
(case and a trailing period ignored); anything else is recorded as invalid (reward null) and
reported — never counted as a vote.

Options: ``arm`` (an arm name or model spec; required), ``template`` (a file path; placeholders
``{prefix}``, ``{reference}``, ``{predicted}``), ``max_tokens`` (default 8),
``include_prefix`` (default false).
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from harness.errors import BadInput

from harness.hookspecs import hookimpl
from harness.types import GenRequest, Verdict

TEMPLATE = """You compare two continuations of the same text. Decide whether the PREDICTED continuation \
says essentially the same thing as the TRUE continuation.
{prefix_block}<<<TRUE>>>
{reference}
<<<END TRUE>>>
<<<PREDICTED>>>
{predicted}
<<<END PREDICTED>>>
Answer with exactly one word, YES or NO.
Answer:"""

_MARKER = re.compile(r"<<<|>>>")
_VERDICT = re.compile(r"^\s*(yes|no)\s*\.?\s*$", re.IGNORECASE)


@hookimpl
def register_judges(register):
    register(LLMJudge)


def neutralise(text: str) -> str:
    """Stop judged text from closing or opening a delimited block."""
    return _MARKER.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)


def parse_verdict(completion: str) -> int | None:
    """1 for YES, 0 for NO, None for anything else (the first non-empty line must be the verdict)."""
    for line in completion.splitlines():
        if line.strip():
            m = _VERDICT.match(line)
            return None if m is None else int(m.group(1).lower() == "yes")
    return None


class LLMJudge:
    name = "llm"
    description = "an arm judges predicted vs true suffix (YES/NO); invalid answers are recorded, not counted"

    def __init__(self, options=None, arms=None):
        from harness.arms import resolve_arm

        options = dict(options or {})
        arm = options.pop("arm", None)
        if arm is None:
            raise BadInput("the llm judge needs --judge-option arm=NAME", param_hint="--judge-option")
        self.arm = resolve_arm(arm, arms or {})
        template = options.pop("template", None)
        self.template = Path(template).read_text() if template else TEMPLATE
        self.template_source = template or "builtin"
        self.max_tokens = int(options.pop("max_tokens", 8))
        self.include_prefix = str(options.pop("include_prefix", "false")).lower() in ("1", "true", "yes")
        if options:
            raise BadInput(
                f"unknown llm judge options {sorted(options)}; valid: arm, template, max_tokens, include_prefix",
                param_hint="--judge-option")
        self._backend = None

    def config(self) -> dict:
        return {"name": self.name, "arm": self.arm.to_json(), "template": self.template_source,
                "max_tokens": self.max_tokens, "include_prefix": self.include_prefix}

    @property
    def backend(self):
        if self._backend is None:
            from harness.plugins import registry

            self._backend = registry("backends").get(self.arm.backend)(self.arm)
        return self._backend

    def prompt(self, pair) -> str:
        block = f"<<<PREFIX>>>\n{neutralise(pair.prefix)}\n<<<END PREFIX>>>\n" if self.include_prefix else ""
        return self.template.format(prefix_block=block, prefix=neutralise(pair.prefix),
                                    reference=neutralise(pair.reference), predicted=neutralise(pair.predicted))

    def judge(self, pairs):
        if not pairs:
            return []
        requests = [GenRequest(self.backend.encode(self.prompt(p)), n=1, seeds=[0], max_new_tokens=self.max_tokens,
                               temperature=0.0) for p in pairs]
        outs = self.backend.generate(requests)
        verdicts = []
        for out in outs:
            raw = out[0].text
            reward = parse_verdict(raw)
            verdicts.append(Verdict(reward=reward, invalid=reward is None, raw=raw))
        return verdicts
