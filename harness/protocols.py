"""The plugin contract, as code: one declaration per plugin kind.

Each kind lists its members: required ones (a class without them is refused when it registers)
and optional ones with the default the harness uses when a class leaves them out. The registry
checks classes against this at load time, the core reads optional members through
:func:`member`, the boundary checks in :mod:`harness.checks` hold what plugins hand back to it,
and ``docs/writing-plugins.md`` carries the tables :func:`markdown` renders from it (a test keeps
the two equal: ``python -m harness.protocols`` prints them).

Plugins do not subclass anything: a plain class with the members below is a plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from harness.search_schema import SearchRecord, SearchTurn

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Member:
    """One member of a plugin class. ``kind``: "attr", "method" (called on an instance) or
    "classmethod" (called on the class). ``type`` is checked for attributes at registration."""

    name: str
    kind: str
    doc: str
    required: bool = False
    default: Any = _NO_DEFAULT
    type: type | tuple | None = None

    @property
    def shown_default(self) -> str:
        if self.required:
            return "required"
        if self.default is _NO_DEFAULT:
            return "optional"
        return f"default `{self.default!r}`" if not callable(self.default) else "default: see text"


@dataclass(frozen=True)
class Kind:
    """A plugin kind: the hook that registers it, what selects it, and its members."""

    name: str  # registry key, e.g. "interventions"
    singular: str  # e.g. "intervention"
    hook: str
    selected_by: str
    constructed: str
    members: tuple[Member, ...]

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)


_NAME = Member("name", "attr", "unique name of this kind (what the command line selects)", True, type=str)
_DESCRIPTION = Member("description", "attr", "one line shown by `harness list`", True, type=str)
_RUN_OPTIONS = Member("run_options", "attr", "`--option` keys it reads, key -> one-line description; any "
                      "other key is refused before the run", default={}, type=dict)

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("evals", "eval", "register_evals", "`harness run --plugin NAME`", "`Eval()`", (
        _NAME, _DESCRIPTION,
        Member("defaults", "attr", "settings used where no flag is given: `samples`, and any of `limit`, "
               "`interventions`, `tasks`, `thought_max_tokens`, `suffix_max_tokens`, `max_new_tokens`, "
               "`temperature`, `top_p` it takes (a flag it has no default for is refused)", True, type=dict),
        Member("run", "method", "`run(ctx)`: do the work for `ctx` (a `harness.pipeline.RunContext`), "
               "appending records with `ctx.store.append(rows)` and skipping those already stored", True),
        Member("record_type", "attr", "stored in the manifest; report sections decide by it (default: `name`)",
               type=str),
        Member("uses_judge", "attr", "whether `--judge` applies (False: the eval grades its own answers)",
               default=True, type=bool),
        Member("uses_retriever", "attr", "whether `--retriever` applies: the harness creates the retriever "
               "(default `bm25`) and hands it over as `ctx.retriever`", default=False, type=bool),
        Member("conditions", "attr", "the plugin kind its `--intervention` names come from: `interventions` "
               "(thoughts) or `evidence` (retrieved passages)", default="interventions", type=str),
        Member("summarize", "method", "`summarize(records, manifest) -> dict`, merged into summary.json; "
               "its `metrics` rows follow `MetricRow`"),
        _RUN_OPTIONS,
        Member("check_options", "classmethod", "`check_options(options)`: raise `BadInput` for a bad "
               "`--option` value, before the run directory exists"),
        Member("check_setup", "classmethod", "`check_setup(arms, judge, config, items)`: raise `BadInput` for "
               "a run it cannot do (too few arms, a judge without `compare`), before the run directory exists; "
               "`config` holds `options`, `interventions` and `judge`"),
        Member("regrade", "method", "`regrade(records, manifest, **options) -> records`: grade stored records "
               "again without generating (`harness rescore RUN_DIR`; without it the eval's runs cannot be rescored)"),
        Member("regrade_options", "attr", "`harness rescore` flags it takes (`harness.options.Option`; "
               "`--KEY VALUE`), passed to `regrade` as keyword arguments", default=(), type=tuple),
        Member("graded_field", "attr", "the record field `harness rescore` counts before and after "
               "(true values), e.g. `correct`", type=str),
        Member("rejudge", "method", "`rejudge(records, items, judge) -> records`: the stored records judged "
               "again by `judge` (`items`: item id -> `Item`), one record back per record with only its judge "
               "fields changed, no generation (`harness rejudge RUN --judge NAME`; without it the eval's runs "
               "cannot be rejudged)"),
    )),
    Kind("interventions", "intervention", "register_interventions",
         "`--intervention NAME` (or `NAME:KEY=VALUE,...` for one that declares `options`)",
         "`Intervention()`, or `Intervention(options)` when it declares `options`", (
        _NAME, _DESCRIPTION,
        Member("thoughts", "method", "`thoughts(ctx, items, samples, needed) -> {item_id: [Thought] * samples}` "
               "for every item in `items` (`ctx`: a `harness.pipeline.ArmContext`); each `Thought` has "
               "`token_ids` (a list of ints, never including the tags) and `text` decoded from them", True),
        Member("requires", "attr", "names of interventions whose thoughts it needs, handed over as "
               "`needed[name]` in the same shape; checked when it registers", default=(), type=tuple),
        Member("min_items", "attr", "fewest items a run must have for it (e.g. 2 for a donor from "
               "another item)", default=1, type=int),
        _RUN_OPTIONS,
        Member("options", "attr", "declared condition options (`harness.options.Option`), given as "
               "`--intervention NAME:KEY=VALUE,KEY=VALUE` and checked before the run; the condition is recorded "
               "as that spec normalised (keys sorted, values as parsed: `truncated:fraction=0.25`), so one "
               "intervention gives several conditions; shown by `harness list interventions`", default=(),
               type=tuple),
        Member("requires_arms", "attr", "True: its `requires` are made for every arm of the run first (stored in "
               "thoughts.jsonl, one model at a time) before any arm's other conditions, and `thoughts()` may "
               "read another arm's with `ctx.arm_thoughts(arm_name, condition)`", default=False, type=bool),
        Member("check_setup", "classmethod", "`check_setup(options, arms, arms_table)`: raise `BadInput` for a "
               "run it cannot do (too few arms, an unknown teacher arm), before the run directory exists; "
               "`options` as parsed, `arms` the run's arms, `arms_table` every arm name the run knows"),
        Member("applies", "method", "`applies(item) -> bool`: False skips the item under this condition (no "
               "thought, no record; the manifest's `skipped_items` and the report count it), e.g. no teacher "
               "thought in the data"),
        Member("close", "method", "`close()`: release what it loaded (a second model), called when its thoughts "
               "for one arm are done"),
    )),
    Kind("evidence", "evidence condition", "register_evidence",
         "`--intervention NAME` of an eval whose `conditions` is `evidence`", "`Condition()`", (
        _NAME, _DESCRIPTION,
        Member("observe", "method", "`observe(item, query, docs) -> [Doc]`: the passages the model reads "
               "after searching `query` for `item`, given what the retriever returned (`docs`, best first; "
               "each a dict with `id`, `contents`, `score`)", True),
        Member("prepare", "method", "`prepare(ctx, items)`: called once per arm before any search "
               "(`ctx`: the eval's `harness.pipeline.RunContext`, with `ctx.retriever`), e.g. to fix a seeded "
               "donor per item"),
        Member("applies", "method", "`applies(item) -> bool`: False skips the item under this condition "
               "(counted in the report), e.g. no gold passage in the data"),
        Member("min_items", "attr", "fewest items a run must have for it (e.g. 2 for a donor from "
               "another item)", default=1, type=int),
        _RUN_OPTIONS,
    )),
    Kind("retrievers", "retriever", "register_retrievers", "`--retriever NAME`", "`Retriever(options)`", (
        _NAME, _DESCRIPTION,
        Member("retrieve", "method", "`retrieve(queries, topk) -> [[Doc]]`: per query up to `topk` passages, "
               "best first, each a dict with `id` (str), `contents` (str; its first line is the title) and "
               "`score` (float or None)", True),
        Member("config", "method", "`config() -> dict`, JSON-able, everything that decides what it returns "
               "(corpus hash, index settings, server URL without credentials; the harness adds `name`)", True),
        Member("options", "attr", "declared `--retriever-option`s (`harness.options.Option`), shown by "
               "`harness list retrievers`", default=(), type=tuple),
        Member("close", "method", "`close()`: release an index or a connection pool (called at the end of the run)"),
    )),
    Kind("backends", "backend", "register_backends", "an arm's `backend = \"NAME\"` or `--backend NAME`",
         "`Backend(arm)`", (
        _NAME, _DESCRIPTION,
        Member("encode", "method", "`encode(text) -> [int]`, without special tokens", True),
        Member("decode", "method", "`decode(ids) -> str`", True),
        Member("eos_ids", "attr", "set of end-of-sequence ids (a property is fine)", True),
        Member("generate", "method", "`generate(requests, progress=None)`: per `GenRequest` a list of `n` "
               "`Completion`, sample i drawn with `seeds[i]`; `score_logprobs` answers `score_ids`", True),
        Member("score", "method", "`score(requests)`: per `ScoreRequest` the per-token log-probs of "
               "`continuation_ids` after `context_ids`", True),
        Member("chat_prompt", "method", "`chat_prompt(messages) -> str` in the model's chat template"),
        Member("info", "method", "`info() -> dict` recorded per invocation; its `notes` are printed in the report"),
        Member("close", "method", "`close()`: release a model, process or server (called before the next arm)"),
        Member("check", "classmethod", "`check(arm)`: refuse an arm before the run directory exists "
               "(default: the model path must exist)"),
        Member("takes_url", "attr", "True: `--backend-url` (repeatable) fills `arm.options[\"urls\"]`",
               default=False, type=bool),
    )),
    Kind("judges", "judge", "register_judges", "`--judge NAME`", "`Judge(options, arms)`", (
        _NAME, _DESCRIPTION,
        Member("judge", "method", "`judge(pairs) -> [Verdict]`, one per `JudgePair`; `reward` 1, 0 or None "
               "with `invalid=True` when its answer cannot be parsed", True),
        Member("config", "method", "`config() -> dict`, JSON-able resolved options (the harness adds `name`)", True),
        Member("compare", "method", "`compare(comparisons) -> [Verdict]` for pairwise preference: `score` is "
               "the first continuation's win share (1, 0 or 0.5)"),
        Member("options", "attr", "declared `--judge-option`s (`harness.options.Option`), shown by "
               "`harness list judges`", default=(), type=tuple),
    )),
    Kind("tasks", "task", "register_tasks", "`--task NAME`", "`Task(options)`", (
        _NAME, _DESCRIPTION,
        Member("items", "method", "`items() -> [Item]`: ids unique, non-empty and stable across calls; "
               "prefixes non-empty", True),
        Member("config", "method", "`config() -> dict`, JSON-able, everything that decides the items "
               "(the harness adds `name`)", True),
        Member("score_samples", "classmethod", "`score_samples(config, rows) -> [(correct, extracted, "
               "reason)]` for items whose `meta[\"grader\"]` is the task's own"),
        Member("options", "attr", "declared `--task-option`s (`harness.options.Option`), shown by "
               "`harness list tasks`", default=(), type=tuple),
    )),
    Kind("report_sections", "report section", "register_report_sections", "every report whose run it applies to",
         "`Section()`", (
        _NAME, _DESCRIPTION,
        Member("applies", "method", "`applies(manifest) -> bool`, usually by `manifest[\"record_type\"]`", True),
        Member("render", "method", "`render(records, manifest, summary) -> str` Markdown (\"\" to skip)", True),
        Member("console", "method", "`console(records, manifest, summary) -> str` printed after `harness run`"),
    )),
)}


def member(obj, kind: str, name: str):
    """``obj``'s member ``name``, or the kind's declared default when it has none."""
    m = KINDS[kind].member(name)
    value = getattr(obj, name, None if m.default is _NO_DEFAULT else m.default)
    if name == "record_type" and value is None:
        return obj.name
    return value


def missing_members(cls, kind: str) -> list[str]:
    """What ``cls`` lacks or has wrong for ``kind``: a list of short problems (empty: fine)."""
    problems = []
    for m in KINDS[kind].members:
        has = hasattr(cls, m.name)
        if m.required and not has:
            problems.append(f"has no {m.name!r}")
            continue
        if not has:
            continue
        value = getattr(cls, m.name)
        if m.kind in ("method", "classmethod") and not callable(value):
            problems.append(f"{m.name!r} is not callable")
        elif m.kind == "attr" and m.type is not None and not isinstance(value, m.type) \
                and not isinstance(value, property):
            want = m.type if isinstance(m.type, tuple) else (m.type,)
            problems.append(f"{m.name!r} is {type(value).__name__}, not {' or '.join(t.__name__ for t in want)}")
        elif m.name in ("name", "description") and not value.strip():
            problems.append(f"{m.name!r} is empty")
    requires = getattr(cls, "requires", ())
    if kind == "interventions" and isinstance(requires, tuple) and not all(isinstance(r, str) for r in requires):
        problems.append("'requires' holds something that is not a name")
    return problems


# -- record schemas (what lands in the run directory) ---------------------------------------------

class ThoughtRow(TypedDict):
    """A line of ``thoughts.jsonl``."""

    arm: str
    condition: str
    item_id: str
    sample: int
    token_ids: list[int]
    text: str
    closed: bool | None  # the model wrote the close tag itself (None: not sampled)
    source_item: str | None  # the item whose thought this is (swapped: the donor)
    info: dict  # only where the intervention set any: how it was made (cross_arm: source_arm, reencoded)


class ProbeRecord(TypedDict):
    """A line of ``samples.jsonl`` written by the probe pipeline (reward gate, thought probe)."""

    eval: str
    arm: str
    condition: str
    item_id: str
    sample: int
    cluster: str | None
    thought: str
    thought_tokens: int
    thought_closed: bool | None
    thought_source: str | None
    thought_info: dict  # only where the thought has any: its thoughts.jsonl row's ``info``
    suffix: str  # the arm's predicted suffix
    suffix_tokens: int
    finish_reason: str  # "stop", "eos" or "length"
    reward: int | None  # 1, 0, or None when the judge's answer was invalid
    judge_score: float | None
    judge_invalid: bool
    judge_raw: str | None
    suffix_logprob: float | None  # mean teacher-forced log-prob per token of the true suffix
    true_suffix_tokens: int
    seed: int
    cached_tokens: int | None


class ReasoningRecord(TypedDict):
    """A line of ``samples.jsonl`` written by the ``reasoning`` eval (``condition`` is the benchmark)."""

    eval: str
    arm: str
    condition: str
    benchmark: str
    item_id: str
    problem_id: str
    sample: int
    cluster: str | None
    grader: str  # "math", "choice" or a task's own
    answer: str  # the gold answer
    prompt_style: str
    prompt_tokens: int
    completion: str
    completion_tokens: int
    finish_reason: str
    seed: int
    cached_tokens: int | None
    extracted: str | None
    extract_how: str | None
    correct: bool
    grade_reason: str  # "match", "mismatch", "... (retried)", "timeout", ...
    answer_key: str | None  # the answer's math-equivalence class: what maj@k votes on


class MetricRow(TypedDict, total=False):
    """A row of ``summary["metrics"]``: one metric of one arm x condition, estimated over items."""

    arm: str
    condition: str
    dataset: str  # where an eval's cells are also per dataset (search): its name, or "macro"
    metric: str
    estimate: float | None  # mean over items of each item's mean over its samples (pooled metrics: say so)
    ci_low: float | None
    ci_high: float | None
    se: float | None
    n_items: int
    n_samples: int
    count: int  # where a row has one: the hits behind a share (pooled, or items for a group share)
    samples_per_item: list[int] | None  # [fewest, most] samples behind one item's value (uneven if they differ)
    ci_method: str  # e.g. "percentile", "bca", "wilson ...", "percentile (ratio of sums)" for pooled shares
    clustered: bool  # whole sources were resampled
    degenerate: bool  # every item scored the same


class ComparisonRow(TypedDict, total=False):
    """A row of ``summary["comparisons"]``: a paired difference ``a - b`` over shared items."""

    kind: str  # "conditions" or "arms"
    arm_a: str
    condition_a: str
    arm_b: str
    condition_b: str
    metric: str
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_holm: float | None
    test: str
    n_shared: int
    mde: float | None


SCHEMAS = {"thoughts.jsonl": ThoughtRow, "samples.jsonl (probe)": ProbeRecord,
           "samples.jsonl (reasoning)": ReasoningRecord, "samples.jsonl (search)": SearchRecord,
           "samples.jsonl (search) turns": SearchTurn, "summary.json metrics": MetricRow,
           "summary.json comparisons": ComparisonRow}


def markdown() -> str:
    """The contract's tables for ``docs/writing-plugins.md`` (between its contract markers)."""
    import typing

    lines = []
    for kind in KINDS.values():
        lines += [f"#### {kind.singular.capitalize()} (`{kind.hook}`)", "",
                  f"Selected by {kind.selected_by}; created as {kind.constructed}.", "",
                  "| member | kind | | what |", "| --- | --- | --- | --- |"]
        lines += [f"| `{m.name}` | {m.kind} | {m.shown_default} | {m.doc} |" for m in kind.members]
        lines.append("")
    for title, schema in SCHEMAS.items():
        hints = typing.get_type_hints(schema)
        lines += [f"#### `{title}` fields", "", ", ".join(f"`{k}`" for k in hints), ""]
    return "\n".join(lines).rstrip() + "\n"


START, END = "<!-- contract:start -->\n", "<!-- contract:end -->"


def write_into(path: str) -> None:
    """Replace the tables between the contract markers of the Markdown file ``path``."""
    with open(path, encoding="utf-8") as fh:
        doc = fh.read()
    head, rest = doc.split(START, 1)
    tail = rest.split(END, 1)[1]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + START + markdown() + END + tail)


if __name__ == "__main__":  # python -m harness.protocols [--write docs/writing-plugins.md]
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_into(sys.argv[2])
    else:
        print(markdown(), end="")
