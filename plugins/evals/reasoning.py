"""Eval ``reasoning``: k sampled solutions per problem, answers extracted and graded.

Defaults follow the reference study: GSM8K, MATH-500, GPQA-Diamond and OlympiadBench, 8 samples
per problem, temperature 0.6, top_p 0.95, up to 512 new tokens. One record per sample holds the
completion, the extracted answer, the grade and why, so ``harness rescore RUN_DIR`` can regrade
without generating again (:meth:`Reasoning.regrade`). Math answers are graded by math-verify in a
process pool with a per-item deadline; multiple choice by the letter.

Prompt styles (``--option prompt=...``, or per arm ``options = { reasoning_prompt = ... }``):
``plain`` (default; ``Problem: ...`` and an instruction, for base models), ``chat`` (the arm's chat
template) or ``think`` (plain, then the arm's open tag: the completion starts inside a thought,
and an answer counts only after the close tag).
"""

from __future__ import annotations

import math

import click

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option
from harness.types import GenRequest

INSTRUCTION = {
    "math": "Solve the problem. Reason step by step, then give the final answer in \\boxed{}.",
    "choice": "Answer the question. Reason step by step, then give the letter of the correct choice in \\boxed{}.",
}
STYLES = ("plain", "chat", "think")
# Base models keep writing new problems after answering; a plain prompt stops there.
PLAIN_STOPS = ("\nProblem:", "\n\nProblem ")


@hookimpl
def register_evals(register):
    register(Reasoning)


def prompt_style(arm, options: dict) -> str:
    style = arm.options.get("reasoning_prompt", options.get("prompt", "plain"))
    if style not in STYLES:
        raise click.BadParameter(f"arm {arm.name!r}: prompt style {style!r}; valid: {', '.join(STYLES)}")
    return style


def build_prompt(backend, arm, item, style: str) -> tuple[list[int], tuple[str, ...]]:
    """(prompt token ids, stop strings) for one problem in one prompt style."""
    if item.meta.get("raw_prompt"):  # the task built its own prompt (lm-eval tasks): used as it is
        return backend.encode(item.prefix), tuple(item.meta.get("until") or ())
    instruction = INSTRUCTION[item.meta["grader"]]
    if style == "chat":
        text = backend.chat_prompt([{"role": "user", "content": f"{item.prefix}\n\n{instruction}"}])
        return backend.encode(text), ()
    text = f"{arm.prompt_prefix}Problem: {item.prefix}\n\n{instruction}\n\nSolution:"
    if style == "think":
        return backend.encode(text + " ") + backend.encode(arm.think_open), PLAIN_STOPS
    return backend.encode(text), PLAIN_STOPS


def grade_rows(rows: list[dict], pool, arms: dict, tasks: list[dict]) -> None:
    """Extract and grade each record's completion in place (``extracted``, ``extract_how``,
    ``correct``, ``grade_reason``, ``answer_key``). ``arms``: name -> arm config; ``tasks``: the run's
    task configs.

    Extraction sees the gold (several boxes are joined when it has several answers) and whether the
    output was truncated (finish reason "length": no fallback rules). ``math`` answers go to the
    grading pool and ``choice`` letters are compared here. ``answer_key`` is what maj@k votes on: for
    math, a canonical representative of the answer's math-equivalence class among its problem's
    samples in ``rows`` (the gold for correct answers), so "0.5" and "\\frac12" are one vote; for
    choice, the letter. Any other grader is the task's own: its class's ``score_samples(task config,
    rows)`` returns ``(correct, extracted, reason)`` per row (lm-eval tasks score with their filters
    and metric) and maj@k votes on the exact extracted string."""
    from harness.plugins import registry
    from tasks.grading import answer_keys, extract_answer, grade_choice

    math_jobs, by_task = [], {}
    for r in rows:
        if r["grader"] not in ("math", "choice"):
            by_task.setdefault(r["benchmark"], []).append(r)
            continue
        arm = arms[r["arm"]]
        r["extracted"], r["extract_how"] = extract_answer(
            r["completion"], r["grader"], think_open=arm["think_open"], think_close=arm["think_close"],
            opened=r["prompt_style"] == "think", truncated=r.get("finish_reason") == "length", gold=r["answer"])
        if r["grader"] == "choice":
            g = grade_choice(r["answer"], r["extracted"])
            r["correct"], r["grade_reason"] = g.correct, g.reason
            r["answer_key"] = r["extracted"].upper() if r["extracted"] is not None else None
        else:
            math_jobs.append(r)
    for r, g in zip(math_jobs, pool.grade([(r["answer"], r["extracted"]) for r in math_jobs])):
        r["correct"], r["grade_reason"] = g.correct, g.reason
    problems: dict[tuple, list[dict]] = {}
    for r in math_jobs:
        problems.setdefault((r["arm"], r["benchmark"], r["item_id"]), []).append(r)
    keys = answer_keys([(group[0]["answer"], [r["extracted"] for r in group], [bool(r["correct"]) for r in group])
                        for group in problems.values()], pool)
    for group, group_keys in zip(problems.values(), keys):
        for r, key in zip(group, group_keys):
            r["answer_key"] = key
    configs = {t.get("benchmark", t["name"]): t for t in tasks}
    for bench, group in by_task.items():
        task_cls = registry("tasks").get(configs[bench]["name"], "--task")
        for r, (ok, extracted, reason) in zip(group, task_cls.score_samples(configs[bench], group)):
            r["correct"], r["extracted"], r["extract_how"], r["grade_reason"] = ok, extracted, "task", reason


def pool_settings(options: dict) -> tuple[int | None, float]:
    """(grading workers or None for the default, seconds per answer) from ``--option``
    ``grade_workers`` (an integer >= 1) and ``grade_timeout`` (a finite number >= 0.1, default 5)."""
    workers, timeout = options.get("grade_workers"), options.get("grade_timeout", 5.0)
    if workers not in (None, ""):
        try:
            number = int(workers)
        except (TypeError, ValueError):
            number = None
        if number is None or number < 1:
            raise BadInput(f"grade_workers={workers!r} is not an integer >= 1", param_hint="--option")
        workers = number
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0.1:
        raise BadInput(f"grade_timeout={timeout!r} is not a finite number of seconds >= 0.1", param_hint="--option")
    return workers or None, seconds


def make_pool(options: dict):
    from tasks.grading import GradingPool

    workers, timeout = pool_settings(options)
    return GradingPool(workers=workers, timeout_s=timeout)


class Reasoning:
    name = "reasoning"
    description = "k samples per problem, answers graded (math-verify / choice letter): Mean@k, Pass@k, maj@k"
    record_type = "reasoning"
    uses_judge = False
    defaults = {"samples": 8, "limit": None, "tasks": ("gsm8k", "math500", "gpqa_diamond", "olympiadbench"),
                "max_new_tokens": 512, "temperature": 0.6, "top_p": 0.95}
    chunk_items = 16
    run_options = {"prompt": "prompt style: plain, chat or think", "grade_workers": "grading processes",
                   "grade_timeout": "seconds to grade one answer"}
    graded_field = "correct"
    regrade_options = (Option("workers", int, None, "grading processes (default: up to 4)", low=1),
                       Option("timeout", float, 5.0, "seconds one answer may take to grade before it counts as "
                              "wrong (reason: timeout)", low=0.1))

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse bad ``--option`` values before any work (the runner calls this before the run
        directory exists)."""
        pool_settings(options)
        if options.get("prompt", "plain") not in STYLES:
            raise BadInput(f"prompt={options['prompt']!r}; valid: {', '.join(STYLES)}", param_hint="--option")

    def run(self, ctx) -> None:
        """Per arm, problems in chunks: generate k samples, grade, append the chunk's records."""
        from harness.pipeline import ArmContext
        from harness.store import SAMPLES

        cfg = ctx.config
        k = cfg["samples"]
        done = {(r["arm"], r["item_id"], r["sample"]) for r in ctx.store.read(SAMPLES)}
        arm_cfg = {a.name: a.to_json() for a in ctx.arms}
        with make_pool(cfg["options"]) as pool:
            for arm in ctx.arms:
                pending = [i for i in ctx.items if any((arm.name, i.id, s) not in done for s in range(k))]
                if not pending:
                    continue
                style = prompt_style(arm, cfg["options"])
                actx = ArmContext(arm, ctx.make_backend(arm), cfg, ctx.items, ctx)
                for start in range(0, len(pending), self.chunk_items):
                    part = pending[start:start + self.chunk_items]
                    rows = self._chunk(actx, part, style, done)
                    bar = actx.bar(f"{arm.name}: grading", len(rows))
                    grade_rows(rows, pool, arm_cfg, cfg["tasks"])
                    bar.update(len(rows))
                    ctx.store.append(rows)
                    ctx.stats["new_records"] += len(rows)
                actx.close_bars()

    def _chunk(self, actx, items, style, done) -> list[dict]:
        cfg, arm = actx.config, actx.arm
        requests, owners = [], []
        for item in items:
            todo = [s for s in range(cfg["samples"]) if (arm.name, item.id, s) not in done]
            if not todo:
                continue
            ids, stops = build_prompt(actx.backend, arm, item, style)
            requests.append(GenRequest(ids, n=len(todo), seeds=[actx.seed(item.id, "reasoning", s) for s in todo],
                                       max_new_tokens=cfg["max_new_tokens"], temperature=cfg["temperature"],
                                       top_p=cfg["top_p"], stop_strings=stops, affinity=item.id))
            owners.append((item, todo, len(ids)))
        outs = actx.generate(requests, desc=f"{arm.name}: solutions")
        rows = []
        for (item, todo, n_prompt), comps in zip(owners, outs):
            for s, c in zip(todo, comps):
                rows.append({
                    "eval": "reasoning", "arm": arm.name, "condition": item.meta["benchmark"],
                    "benchmark": item.meta["benchmark"], "item_id": item.id, "problem_id": item.id, "sample": s,
                    "cluster": item.cluster, "grader": item.meta["grader"], "answer": item.meta["answer"],
                    "prompt_style": style, "prompt_tokens": n_prompt, "completion": c.text,
                    "completion_tokens": len(c.token_ids), "finish_reason": c.finish_reason,
                    "seed": actx.seed(item.id, "reasoning", s), "cached_tokens": c.cached_tokens,
                })
        return rows

    def regrade(self, records, manifest, workers=None, timeout=5.0) -> list[dict]:
        """Re-extract and regrade every record's completion (``harness rescore RUN_DIR --workers N
        --timeout SECONDS``), in place."""
        from tasks.grading import GradingPool

        with GradingPool(workers=workers, timeout_s=timeout) as pool:
            grade_rows(records, pool, {a["name"]: a for a in manifest["config"]["arms"]}, manifest["config"]["tasks"])
        return records

    def summarize(self, records, manifest) -> dict:
        from reports.reasoning import summarize

        return summarize(records, manifest)
