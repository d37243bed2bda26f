"""Task ``gpqa_diamond``: graduate-level science multiple choice (Idavidrein/gpqa, config
``gpqa_diamond``, split ``train``, 198 rows). The dataset is gated on the Hub: accept its terms
there and set ``HF_TOKEN`` in the environment, or pass a local copy with ``data=PATH``.

Rows have ``Question``, ``Correct Answer``, ``Incorrect Answer 1..3``, ``Record ID``,
``High-level domain``, ``Subdomain``, ... The prefix is the question followed by the four options
labelled ``A)`` to ``D)``; the gold (suffix) is the letter of the correct one. The options are
shuffled per question with ``random.Random(seed)`` where ``seed`` is an integer from
``sha256(f"{shuffle_seed}:{Record ID}")``: the same order on every load and machine (lm-eval's
shuffle is unseeded), different across questions, and changed by ``shuffle_seed``.
``meta['choices']`` lists the option texts as displayed and ``meta['choice_order']`` their
original indices (0 = the correct answer, 1..3 = Incorrect Answer 1..3).

``source=hendrydong`` reads the reference study's copy instead: ``hendrydong/gpqa_diamond_mc``
(split ``test``, 198 rows, not gated), whose rows hold a ready ``problem`` (the question, then the
four options as ``(A) ...`` to ``(D) ...`` lines in a fixed order, then an instruction "Please write
your final answer in the form of \\boxed{A}, ...") and a ``solution`` with the boxed letter
(``\\boxed{C}``), plus ``domain``. The options keep the dataset's order (``shuffle_seed`` does
not apply); the prefix is the problem without that closing instruction (the eval adds its own);
the gold is the boxed letter. ``meta['choices']`` lists the option texts when the ``(A)``-``(D)``
(or ``A)``, ``A.``) lines are found, else it is null. Rows have no id: an item is named by its row,
``gpqa_diamond/test-0000``.

Options: ``data`` (path, ``sample`` or Hub id; default: the source's Hub id), ``split``, ``config``,
``source`` (``idavidrein``, default, or ``hendrydong``), ``shuffle_seed`` (int, default 0;
idavidrein only).
"""

from __future__ import annotations

import hashlib
import random
import re

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option
from tasks.benchmarks import BenchmarkTask, Source, native_id, optional_text, text, where
from tasks.loading import DataError

LETTERS = "ABCD"
ANSWER_COLUMNS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
# hendrydong/gpqa_diamond_mc: the closing instruction, the option lines, the boxed gold letter
_MC_INSTRUCTION = re.compile(r"\s*Please write your final answer in the form of.*\Z", re.DOTALL | re.IGNORECASE)
_MC_OPTION_STYLES = (re.compile(r"^[ \t]*\(([A-D])\)[ \t]*(.*?)[ \t]*$", re.MULTILINE),
                     re.compile(r"^[ \t]*([A-D])[.)][ \t]+(.*?)[ \t]*$", re.MULTILINE))
_MC_BOXED = re.compile(r"\\boxed\s*\{\s*\(?([A-Da-d])\)?\s*\}")


@hookimpl
def register_tasks(register):
    register(GPQADiamondTask)


def choice_order(shuffle_seed: int, record_id: str) -> list[int]:
    """A seeded permutation of the four answer indices (0 = correct) for one question."""
    digest = hashlib.sha256(f"{shuffle_seed}:{record_id}".encode()).digest()
    order = list(range(len(ANSWER_COLUMNS)))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


def mc_choices(problem: str) -> list[str] | None:
    """The four option texts of a ready multiple-choice problem, in order, or None when its
    ``(A)``-``(D)`` (or ``A)``/``A.``) lines are not all there exactly once."""
    for style in _MC_OPTION_STYLES:
        found = style.findall(problem)
        if [letter for letter, _ in found] == list(LETTERS):
            return [choice.strip() for _, choice in found]
    return None


def mc_gold(row: dict) -> str:
    """The gold letter of a ``hendrydong/gpqa_diamond_mc`` row: the last ``\\boxed{X}`` of its
    ``solution``, or a bare letter."""
    solution = text(row, "solution")
    boxed = _MC_BOXED.findall(solution)
    letter = boxed[-1] if boxed else solution.strip("() .")
    if len(letter) != 1 or letter.upper() not in LETTERS:
        raise DataError(f"{where(row)}: 'solution' {solution[:60]!r} holds no choice letter A-D (expected \\boxed{{A}})")
    return letter.upper()


class GPQADiamondTask(BenchmarkTask):
    name = "gpqa_diamond"
    description = ("GPQA Diamond graduate-level science multiple choice, gold = letter (Idavidrein/gpqa, gated, "
                   "198; source=hendrydong: the study's fixed-order copy)")
    sources = {
        "idavidrein": Source("Idavidrein/gpqa", "gpqa_diamond", "train", 198, "gpqa_diamond.jsonl",
                             "gated, choices shuffled by shuffle_seed"),
        "hendrydong": Source("hendrydong/gpqa_diamond_mc", None, "test", 198, "gpqa_diamond_mc.jsonl",
                             "the reference study's: choices in the dataset's fixed order"),
    }
    grader = "choice"
    extra_options = (Option("shuffle_seed", int, None, "seed of each question's choice order (source=idavidrein; "
                                                       "default 0)"),)

    def __init__(self, options=None):
        super().__init__(options)
        if self.source_name == "hendrydong" and self.options["shuffle_seed"] is not None:
            raise BadInput("gpqa_diamond task: shuffle_seed applies to source=idavidrein; source=hendrydong "
                           "keeps the dataset's choice order", param_hint="--task-option")
        if self.source_name == "idavidrein" and self.options["shuffle_seed"] is None:
            self.options["shuffle_seed"] = 0

    def hub_hint(self) -> str:
        if self.source_name != "idavidrein":
            return super().hub_hint()
        return (f"{self.hub_id} is gated on the Hugging Face Hub: accept its terms at "
                f"https://huggingface.co/datasets/{self.hub_id} and set HF_TOKEN in the environment "
                f"(the datasets library reads it). {super().hub_hint()}")

    def parse(self, row, n):
        if self.source_name == "hendrydong":
            return self.parse_mc(row, n)
        record_id = native_id(row, "Record ID")
        question = text(row, "Question")
        answers = [text(row, column) for column in ANSWER_COLUMNS]
        order = choice_order(self.options["shuffle_seed"], record_id)
        choices = [answers[i] for i in order]
        letter = LETTERS[order.index(0)]
        options = "\n".join(f"{LETTERS[k]}) {choice}" for k, choice in enumerate(choices))
        meta = {"choices": choices, "choice_order": order, "correct_answer": answers[0],
                "domain": optional_text(row, "High-level domain"),
                "subdomain": optional_text(row, "Subdomain")}
        return record_id, f"{question}\n\n{options}", letter, meta

    def parse_mc(self, row, n):
        """A ``hendrydong/gpqa_diamond_mc`` row: its problem as given (options in its order), less
        the closing instruction; the boxed letter as gold."""
        problem = _MC_INSTRUCTION.sub("", text(row, "problem")).strip()
        if not problem:
            raise DataError(f"{where(row)}: 'problem' holds only the answer instruction")
        letter = mc_gold(row)
        choices = mc_choices(problem)
        meta = {"choices": choices, "correct_answer": choices[LETTERS.index(letter)] if choices else None,
                "domain": optional_text(row, "domain")}
        return f"{self.options['split']}-{n:04d}", problem, letter, meta
