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

Options: ``data`` (path, ``sample`` or Hub id; default Idavidrein/gpqa), ``split``, ``config``,
``shuffle_seed`` (int, default 0).
"""

from __future__ import annotations

import hashlib
import random

from harness.hookspecs import hookimpl
from harness.options import Option
from tasks.benchmarks import BenchmarkTask, native_id, optional_text, text

LETTERS = "ABCD"
ANSWER_COLUMNS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")


@hookimpl
def register_tasks(register):
    register(GPQADiamondTask)


def choice_order(shuffle_seed: int, record_id: str) -> list[int]:
    """A seeded permutation of the four answer indices (0 = correct) for one question."""
    digest = hashlib.sha256(f"{shuffle_seed}:{record_id}".encode()).digest()
    order = list(range(len(ANSWER_COLUMNS)))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


class GPQADiamondTask(BenchmarkTask):
    name = "gpqa_diamond"
    description = "GPQA Diamond graduate-level science multiple choice, gold = letter (Idavidrein/gpqa, gated, 198)"
    hub_id = "Idavidrein/gpqa"
    hub_config = "gpqa_diamond"
    hub_split = "train"
    expected_count = 198
    grader = "choice"
    fixture = "gpqa_diamond.jsonl"
    extra_options = (Option("shuffle_seed", int, 0, "seed of each question's choice order"),)

    def hub_hint(self) -> str:
        return (f"{self.hub_id} is gated on the Hugging Face Hub: accept its terms at "
                f"https://huggingface.co/datasets/{self.hub_id} and set HF_TOKEN in the environment "
                f"(the datasets library reads it). {super().hub_hint()}")

    def parse(self, row, n):
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
