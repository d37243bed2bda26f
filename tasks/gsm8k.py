"""Task ``gsm8k``: grade-school math word problems (openai/gsm8k, config ``main``, split ``test``,
1,319 rows of ``{question, answer}``).

The row's ``answer`` is a worked solution (with ``<<a*b=c>>`` calculator annotations) ending in
``#### <number>``; the gold is that number with thousands separators removed. GSM8K rows have no
id, so an item's id is the row index: ``gsm8k/test-0000`` (the split name, then the 0-based row).
``meta['solution']`` keeps the worked solution without the annotations and the final line.

Few-shot (``fewshot=K``, the reference study used 2): the item's prefix carries K worked examples
before its own question, each written as the reasoning eval's plain prompt writes a problem,
``<question>\\n\\nSolution: <worked solution>\\nThe final answer is \\\\boxed{<number>}.`` and joined
by ``\\n\\nProblem: `` up to the item's question, so the plain prompt (``Problem: `` + prefix + the
instruction + ``Solution:``) reads as K solved problems and then the item. The shots are the first
K rows of ``fewshot_data`` (a local file in the GSM8K schema, e.g. a copy of the train split, or a
Hub id whose ``train`` split is read) or, by default, 4 examples written for this project
(``tasks/data/reasoning/gsm8k_shots.jsonl``). ``meta`` records ``fewshot`` (K), ``fewshot_data``
and ``question`` (the item's own question); a shot that is one of the items is refused.

Options: ``data`` (path, ``sample`` or Hub id; default openai/gsm8k), ``split``, ``config``,
``fewshot`` (int, default 0), ``fewshot_data`` (path or Hub id; default: the packaged shots).
"""

from __future__ import annotations

import re
from dataclasses import replace

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option
from tasks.benchmarks import BenchmarkTask, fixture_path, text, where
from tasks.loading import DataError, read_rows

_CALC = re.compile(r"<<[^<>]*>>")
SHOTS = "gsm8k_shots.jsonl"  # packaged worked examples, written for this project
MAX_SHOTS = 8


@hookimpl
def register_tasks(register):
    register(GSM8KTask)


def parse_gold(answer: str, where_: str) -> tuple[str, str]:
    """(gold number, worked solution) from a GSM8K ``answer`` ending in ``#### <number>``."""
    if "####" not in answer:
        raise DataError(f"{where_}: GSM8K answer has no '#### <number>' final line")
    solution, gold = answer.rsplit("####", 1)
    gold = gold.strip().replace(",", "")
    if not gold:
        raise DataError(f"{where_}: GSM8K answer has nothing after '####'")
    return gold, _CALC.sub("", solution).strip()


def shot_text(question: str, solution: str, gold: str) -> str:
    """One worked example as the plain prompt writes a problem, with its solution and boxed answer."""
    return f"{question}\n\nSolution: {solution}\nThe final answer is \\boxed{{{gold}}}."


class GSM8KTask(BenchmarkTask):
    name = "gsm8k"
    description = "GSM8K grade-school math word problems, gold = number after #### (openai/gsm8k test, 1,319)"
    hub_id = "openai/gsm8k"
    hub_config = "main"
    hub_split = "test"
    expected_count = 1319
    grader = "math"
    fixture = "gsm8k.jsonl"
    extra_options = (
        Option("fewshot", int, 0, "worked examples in each item's prefix (the reference study: 2)", low=0,
               high=MAX_SHOTS),
        Option("fewshot_data", str, None, "GSM8K-schema file (or Hub id, train split) whose first rows are the "
                                          "shots (default: 4 packaged examples)"),
    )

    def __init__(self, options=None):
        super().__init__(options)
        if self.options["fewshot_data"] is not None and not self.options["fewshot"]:
            raise BadInput("gsm8k task: fewshot_data is given but fewshot is 0 (give fewshot=K too)",
                           param_hint="--task-option")

    def parse(self, row, n):
        question = text(row, "question")
        gold, solution = parse_gold(text(row, "answer"), where(row))
        return f"{self.options['split']}-{n:04d}", question, gold, {"solution": solution}

    def shots_source(self) -> str:
        return self.options["fewshot_data"] or fixture_path(SHOTS)

    def shots(self) -> list[tuple[str, str]]:
        """(question, shot text) of the first ``fewshot`` rows of the shots source."""
        k, source = self.options["fewshot"], self.shots_source()
        rows = read_rows(source, split="train", config="main")
        if len(rows) < k:
            raise DataError(f"{source}: fewshot={k} needs {k} rows, the file has {len(rows)}")
        out = []
        for row in rows[:k]:
            question = text(row, "question")
            gold, solution = parse_gold(text(row, "answer"), where(row))
            out.append((question, shot_text(question, solution, gold)))
        return out

    def items(self):
        items = super().items()
        k = self.options["fewshot"]
        if not k:
            return items
        shots = self.shots()
        questions = {item.prefix: item.id for item in items}
        for question, _ in shots:
            if question in questions:
                raise DataError(f"{self.shots_source()}: a few-shot example is item {questions[question]!r} itself "
                                "(take the shots from the train split)")
        lead = "\n\nProblem: ".join(t for _, t in shots)
        recorded = self.config()["fewshot_data"]
        return [replace(item, prefix=f"{lead}\n\nProblem: {item.prefix}",
                        meta={**item.meta, "fewshot": k, "fewshot_data": recorded, "question": item.prefix})
                for item in items]

    def config(self) -> dict:
        config = super().config()
        if self.options["fewshot"] and self.options["fewshot_data"] is None:
            config["fewshot_data"] = f"package:reasoning/{SHOTS}"
        return config
