"""Judge ``llm``: any arm as a judge, through that arm's backend, with a strict verdict parser.

The judge model sees the true and predicted suffix (and optionally the prefix) between marker
lines; any marker text inside the judged texts is neutralised, and only the judge's own
completion is parsed. The completion's first non-empty line must be exactly ``YES`` or ``NO``
(case and a trailing period ignored); anything else is recorded as invalid (reward null) and
reported — never counted as a vote.

``compare()`` (online DPO) shows the prefix and two continuations as A and B; the answer's first
non-empty line must be exactly ``A`` or ``B``.

Options: ``arm`` (an arm name or model spec; required), ``template`` (a file path; placeholders
``{prefix}``, ``{reference}``, ``{predicted}``), ``pair_template`` (placeholders ``{prefix}``,
``{first}``, ``{second}``), ``max_tokens`` (default 8),
``include_prefix`` (default false), ``chat`` (default false: the prompt goes to the judge arm as
plain text, a completion; true: it is wrapped as one user message in the arm's chat template,
through its backend's ``chat_prompt``). The judge arm may use any backend, a server (``openai``)
included; its server URLs are not part of the recorded config.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from harness.errors import BadInput

from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
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

PAIR_TEMPLATE = """You compare two continuations of the same text. Decide which continuation is the \
better next passage: coherent, fluent, on topic and consistent with the text.
<<<TEXT>>>
{prefix}
<<<END TEXT>>>
<<<CONTINUATION A>>>
{first}
<<<END CONTINUATION A>>>
<<<CONTINUATION B>>>
{second}
<<<END CONTINUATION B>>>
Answer with exactly one letter, A or B.
Answer:"""

_MARKER = re.compile(r"<<<|>>>")
_VERDICT = re.compile(r"^\s*(yes|no)\s*\.?\s*$", re.IGNORECASE)
_CHOICE = re.compile(r"^\s*(a|b)\s*\.?\s*$", re.IGNORECASE)


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


TEMPLATE_FIELDS = ("prefix_block", "prefix", "reference", "predicted")
PAIR_TEMPLATE_FIELDS = ("prefix", "first", "second")


def read_template(option: str, path: str | None, builtin: str, fields: tuple[str, ...]) -> str:
    """The template in ``path`` (or ``builtin``), checked now: a missing file, an unreadable one,
    or braces that are not the named placeholders are one-line errors before any generation."""
    if not path:
        return builtin
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"llm judge {option} file not found: {path}", param_hint="--judge-option") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"llm judge {option} file {path}: {exc}", param_hint="--judge-option") from None
    hint = f"placeholders: {', '.join('{' + f + '}' for f in fields)}; write a literal brace as {{{{ or }}}}"
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise BadInput(f"llm judge {option} {path}: {exc} ({hint})", param_hint="--judge-option") from None
    unknown = sorted(names - set(fields))
    if unknown:
        raise BadInput(f"llm judge {option} {path}: unknown placeholder {{{unknown[0]}}} ({hint})",
                       param_hint="--judge-option")
    try:
        text.format(**{f: "" for f in fields})
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise BadInput(f"llm judge {option} {path}: {exc} ({hint})", param_hint="--judge-option") from None
    return text


def parse_choice(completion: str) -> float | None:
    """1.0 when the first non-empty line is exactly A, 0.0 for B, None for anything else."""
    for line in completion.splitlines():
        if line.strip():
            m = _CHOICE.match(line)
            return None if m is None else float(m.group(1).lower() == "a")
    return None


class LLMJudge:
    name = "llm"
    description = "an arm judges predicted vs true suffix (YES/NO); invalid answers are recorded, not counted"

    options = (Option("arm", str, None, "the judging arm (a name from the arms file, a path or a Hub id)",
                      required=True),
               Option("template", str, None, "a judge prompt file with {prefix_block}, {prefix}, {reference}, "
                      "{predicted} (default: built in)"),
               Option("pair_template", str, None, "a pairwise prompt file for compare() (default: built in)"),
               Option("max_tokens", int, 8, "tokens the judge may answer with", low=1),
               Option("include_prefix", bool, False, "show the judge the prefix too"),
               Option("chat", bool, False, "send the prompt through the arm's chat template"))

    def __init__(self, options=None, arms=None):
        from harness.arms import resolve_arm

        o = parse_options(self.options, options or {}, "llm judge", "--judge-option")
        self.arm = resolve_arm(o["arm"], arms or {})
        from harness.plugins import registry

        check = getattr(registry("backends").get(self.arm.backend, "--judge-option arm"), "check", None)
        if check is not None:  # a server backend's arm without a URL fails here, not after generation
            try:
                check(self.arm)
            except BadInput as exc:
                raise BadInput(f"judge arm {self.arm.name!r}: {exc.message} (--backend-url applies to the run's "
                               "arms only: give the judge's arm its own url option in the arms file)",
                               param_hint="--judge-option arm") from exc
        else:  # as the runner does for run arms: the judge's model path (dtype, device) must be valid now
            from harness.modelspec import ModelSpecError, resolve_path

            try:
                resolve_path(self.arm)
            except (BadInput, ModelSpecError) as exc:
                raise BadInput(f"judge {exc.message}", param_hint="--judge-option arm") from exc  # "judge arm 'x': ..."
        template = o["template"]
        self.template = read_template("template", template, TEMPLATE, TEMPLATE_FIELDS)
        self.template_source = template or "builtin"
        pair_template = o["pair_template"]
        self.pair_template = read_template("pair_template", pair_template, PAIR_TEMPLATE, PAIR_TEMPLATE_FIELDS)
        self.pair_template_source = pair_template or "builtin"
        self.max_tokens, self.include_prefix, self.chat = o["max_tokens"], o["include_prefix"], o["chat"]
        self._backend = None

    def config(self) -> dict:
        arm = self.arm.to_json()  # where a judge model is served does not change the run (as for run arms)
        arm["options"] = {k: v for k, v in arm["options"].items() if k not in ("urls", "url")}
        cfg = {"name": self.name, "arm": arm, "template": self.template_source,
               "pair_template": self.pair_template_source,
               "max_tokens": self.max_tokens, "include_prefix": self.include_prefix}
        if self.chat:  # recorded only when on, so configs (and run directories) from before stay the same
            cfg["chat"] = True
        return cfg

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

    def _complete(self, prompts: list[str]) -> list[str]:
        if self.chat:
            prompts = [self.backend.chat_prompt([{"role": "user", "content": p}]) for p in prompts]
        requests = [GenRequest(self.backend.encode(p), n=1, seeds=[0], max_new_tokens=self.max_tokens,
                               temperature=0.0) for p in prompts]
        return [out[0].text for out in self.backend.generate(requests)]

    def judge(self, pairs):
        if not pairs:
            return []
        verdicts = []
        for raw in self._complete([self.prompt(p) for p in pairs]):
            reward = parse_verdict(raw)
            verdicts.append(Verdict(reward=reward, invalid=reward is None, raw=raw))
        return verdicts

    def compare(self, comparisons):
        """Which of two continuations is better (A = ``first``); anything but A or B is invalid."""
        if not comparisons:
            return []
        prompts = [self.pair_template.format(prefix=neutralise(c.prefix), first=neutralise(c.first),
                                             second=neutralise(c.second)) for c in comparisons]
        verdicts = []
        for raw in self._complete(prompts):
            score = parse_choice(raw)
            verdicts.append(Verdict(reward=None if score is None else int(score), score=score,
                                    invalid=score is None, raw=raw))
        return verdicts
