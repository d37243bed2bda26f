"""Intervention ``generic``: a short, content-free scaffold thought.

By default each (item, sample) gets one of the packaged neutral scaffolds
(``generic_scaffolds.txt``, written for this project), picked by a seed of (run seed, item, sample), not the arm: the same pick on every rerun and for
every arm (so arm-vs-arm deltas of the generic condition compare like with like), several
scaffolds per item. ``--option generic_thoughts=FILE`` rotates your own instead (UTF-8 text, one scaffold per
line; blank lines and lines starting with ``#`` are skipped); ``--option generic_thought=TEXT``
puts one text in every thought (the behaviour before the rotation; the earlier default text was
"Let me consider what the passage is explaining and continue it clearly and accurately.").

Each record's ``thought`` is the scaffold it used; the report's "Avg thought words" of the
generic condition is the mean length of the scaffolds as assigned (:func:`mean_words` gives the
mean of a set).
"""

from importlib import resources
from pathlib import Path

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.seeding import derive_seed
from harness.types import Thought

SCAFFOLDS_FILE = "generic_scaffolds.txt"


@hookimpl
def register_interventions(register):
    register(GenericThought)


def parse_scaffolds(text: str, where: str) -> list[str]:
    """The scaffolds of a file's text: one per non-blank line not starting with ``#``."""
    lines = [line.strip() for line in text.splitlines()]
    scaffolds = [line for line in lines if line and not line.startswith("#")]
    if not scaffolds:
        raise BadInput(f"{where}: no scaffold thoughts (one per line; '#' lines are comments)", param_hint="--option")
    return scaffolds


def packaged_scaffolds() -> list[str]:
    text = resources.files("plugins.interventions").joinpath(SCAFFOLDS_FILE).read_text(encoding="utf-8")
    return parse_scaffolds(text, f"package:{SCAFFOLDS_FILE}")


def read_scaffolds(path: str) -> list[str]:
    """The scaffolds in the user's ``generic_thoughts`` file (a one-line BadInput if unreadable)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"generic_thoughts={path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                       param_hint="--option") from None
    except OSError as exc:
        raise BadInput(f"generic_thoughts={path}: cannot read it ({exc.strerror or exc})", param_hint="--option") from None
    return parse_scaffolds(text, f"generic_thoughts={path}")


def mean_words(scaffolds: list[str]) -> float:
    """Mean whitespace words per scaffold."""
    return sum(len(s.split()) for s in scaffolds) / len(scaffolds)


def scaffolds_for(options: dict) -> list[str]:
    """The run's scaffolds: ``generic_thought`` (one text), ``generic_thoughts`` (a file), else the
    packaged set."""
    if "generic_thought" in options and "generic_thoughts" in options:
        raise BadInput("give generic_thought=TEXT (one text) or generic_thoughts=FILE (one per line), not both",
                       param_hint="--option")
    if "generic_thought" in options:
        return [options["generic_thought"]]
    if "generic_thoughts" in options:
        return read_scaffolds(options["generic_thoughts"])
    return packaged_scaffolds()


def _description() -> str:
    try:
        packaged = packaged_scaffolds()
    except Exception:  # a broken install still registers; the run then names the missing file
        return "a short neutral scaffold thought per (item, sample), rotated by seed"
    return (f"a short neutral scaffold thought per (item, sample): one of {len(packaged)} packaged "
            f"(mean {mean_words(packaged):.1f} words), rotated by seed")


class GenericThought:
    name = "generic"
    description = _description()
    requires = ()
    run_options = {"generic_thought": "one thought text for every item and sample",
                   "generic_thoughts": "a file of scaffold thoughts, one per line, rotated per (item, sample) by seed"}

    def thoughts(self, ctx, items, samples, needed):
        scaffolds = scaffolds_for(ctx.config.get("options", {}))
        ids = {text: list(ctx.backend.encode(text)) for text in dict.fromkeys(scaffolds)}
        out = {}
        for item in items:
            picks = [scaffolds[derive_seed(ctx.config["seed"], "generic", item.id, s) % len(scaffolds)]
                     for s in range(samples)]
            out[item.id] = [Thought(list(ids[text]), text) for text in picks]
        return out
