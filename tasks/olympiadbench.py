"""Task ``olympiadbench``: text-only, English, open-ended olympiad math (Hothan/OlympiadBench,
config ``OE_TO_maths_en_COMP``, split ``train``, 675 rows).

Rows have ``id`` (int), ``question``, ``context`` (shared setup of a problem series, or null),
``final_answer`` (a list of LaTeX strings such as ``["$\\frac{1}{2}$"]``), ``solution`` (a list),
``is_multiple_answer``, ``unit``, ``answer_type``, ``subfield``, ... The prefix is the context
(when present) then the question; the gold is ``final_answer`` with the surrounding ``$`` of each
entry stripped, joined with ``", "``.

``source=simplerl`` reads the reference study's copy instead: ``zwhe99/simplerl-OlympiadBench``
(split ``test``, no config), the SimpleRL evaluation set in the same OlympiadBench schema
(``question``, ``final_answer`` as a list, ``id``, ...; ``problem`` / ``answer`` are accepted too,
and a row without ``id`` is named by its row number, ``olympiadbench/test-0007``). Its rule, as in
the study: the first 300 rows, then every row with more than one answer dropped (more than one
``final_answer`` entry, or ``is_multiple_answer`` true): 220 problems. ``config()`` records the
rule and how many rows it dropped; the rule applies to a local copy (``data=PATH``) too.

Options: ``data`` (path, ``sample`` or Hub id; default: the source's Hub id), ``split``,
``config``, ``source`` (``hothan``, default, or ``simplerl``).
"""

from __future__ import annotations

import re

from harness.hookspecs import hookimpl
from tasks.benchmarks import BenchmarkTask, Source, as_list, native_id, optional_text, scalar, text, where
from tasks.loading import DataError

_DOLLAR = re.compile(r"(?<!\\)\$")
SIMPLERL_FIRST_ROWS = 300  # the study's cut of zwhe99/simplerl-OlympiadBench, before dropping


@hookimpl
def register_tasks(register):
    register(OlympiadBenchTask)


def strip_math(answer: str) -> str:
    """``"$\\frac{1}{2}$"`` -> ``"\\frac{1}{2}"``: drop the math-mode ``$`` delimiters (escaped
    ``\\$`` signs are kept)."""
    return re.sub(r"\s+", " ", _DOLLAR.sub("", answer)).strip()


def parse_gold(row: dict, columns: tuple[str, ...] = ("final_answer",)) -> tuple[str, list[str]]:
    """(gold string, list of answers) from the first of ``columns`` the row has (``final_answer``);
    DataError when it is missing or empty."""
    column = next((c for c in columns if row.get(c) is not None), columns[0])
    answers = as_list(row.get(column))
    if answers is None:
        raise DataError(f"{where(row)}: missing column {' or '.join(map(repr, columns))} (a list of answer strings)")
    answers = [strip_math(str(a)) for a in answers if a is not None and str(a).strip()]
    answers = [a for a in answers if a]
    if not answers:
        raise DataError(f"{where(row)}: empty {column!r}")
    return ", ".join(answers), answers


SIMPLERL_QUESTION = ("question", "problem")
SIMPLERL_ANSWER = ("final_answer", "answer")


def multiple_answers(row: dict) -> bool:
    """Whether a row has more than one answer: several non-empty ``final_answer`` (or ``answer``)
    entries, or ``is_multiple_answer`` true."""
    column = next((c for c in SIMPLERL_ANSWER if row.get(c) is not None), None)
    answers = [a for a in (as_list(row.get(column)) or []) if a is not None and str(a).strip()] if column else []
    return len(answers) > 1 or bool(scalar(row.get("is_multiple_answer")))


class OlympiadBenchTask(BenchmarkTask):
    name = "olympiadbench"
    description = ("OlympiadBench open-ended English competition math, text-only (Hothan/OlympiadBench "
                   "OE_TO_maths_en_COMP, 675; source=simplerl: the study's 220)")
    sources = {
        "hothan": Source("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train", 675, "olympiadbench.jsonl",
                         "OE_TO_maths_en_COMP, 675"),
        "simplerl": Source("zwhe99/simplerl-OlympiadBench", None, "test", 220, "olympiadbench_simplerl.jsonl",
                           f"the reference study's: first {SIMPLERL_FIRST_ROWS} rows, multi-answer rows dropped, 220"),
    }
    grader = "math"

    def __init__(self, options=None):
        super().__init__(options)
        self.n_dropped: int | None = None

    def select(self, rows):
        if self.source_name != "simplerl":
            return rows
        head = rows[:SIMPLERL_FIRST_ROWS]
        kept = [(n, row) for n, row in head if not multiple_answers(row)]
        self.n_dropped = len(head) - len(kept)
        return kept

    def source_config(self) -> dict:
        if self.source_name != "simplerl":
            return {}
        return {"first_rows": SIMPLERL_FIRST_ROWS, "drop_multi_answer": True, "n_dropped": self.n_dropped}

    def parse(self, row, n):
        if self.source_name == "simplerl":
            item_id = native_id(row, "id") if scalar(row.get("id")) is not None else f"{self.options['split']}-{n:04d}"
            question = text(row, next((c for c in SIMPLERL_QUESTION if optional_text(row, c)), SIMPLERL_QUESTION[0]))
            gold, answers = parse_gold(row, SIMPLERL_ANSWER)
        else:
            item_id = native_id(row, "id")
            question = text(row, "question")
            gold, answers = parse_gold(row)
        context = optional_text(row, "context")
        prefix = f"{context}\n\n{question}" if context else question
        multiple = scalar(row.get("is_multiple_answer"))
        meta = {"answers": answers,
                "is_multiple_answer": bool(multiple) if multiple is not None else len(answers) > 1,
                "unit": optional_text(row, "unit"),
                "answer_type": optional_text(row, "answer_type"),
                "subfield": optional_text(row, "subfield")}
        return item_id, prefix, gold, meta
