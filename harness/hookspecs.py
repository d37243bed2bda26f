"""The whole plugin contract of the harness.

Every built-in eval, intervention, backend, judge, task and report section is a plugin that
implements one of these hooks, loaded through the same path as third-party plugins.

Each ``register_*`` hook receives a ``register`` callable. Call it once per class you provide;
the class must have a unique ``name`` (str) and a one-line ``description`` (str). Names are
global per kind: registering a name twice is an error naming both sources.

Plugin modules must import cheaply: import torch, transformers or other heavy libraries inside
the methods that need them, never at module top level (``harness --help`` stays torch-free).
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("harness")
hookimpl = HookimplMarker("harness")


@hookspec
def register_evals(register):
    """Register eval classes (``harness run --plugin NAME``).

    An eval class has ``name``, ``description``, a ``defaults`` dict (``samples``, ``limit``,
    ``interventions``, ...) and ``run(ctx)`` which takes a :class:`harness.pipeline.RunContext`
    and appends records through ``ctx.store``. It may define ``summarize(records, manifest)``
    returning a JSON-able summary dict.
    """


@hookspec
def register_interventions(register):
    """Register thought interventions (``--intervention NAME``).

    An intervention class has ``name``, ``description``, ``requires`` (a tuple of other
    intervention names whose thoughts it needs, e.g. ``("normal",)``), and
    ``thoughts(ctx, items, samples, needed)`` returning ``{item_id: [Thought, ...]}`` with one
    :class:`harness.types.Thought` per sample, each holding token ids (never re-tokenised text).
    ``needed`` maps each required name to its thoughts in the same shape.
    """


@hookspec
def register_backends(register):
    """Register generation backends (an arm's ``backend = NAME``).

    A backend class is constructed as ``Backend(arm)`` and provides ``encode(text)``,
    ``decode(ids)``, ``eos_ids``, ``generate(requests, progress=None)`` returning one list of
    :class:`harness.types.Completion` per :class:`harness.types.GenRequest` (``n`` each, in
    sample order, each sampled with its own seed), and ``score(requests)`` returning per-token
    log-probabilities of each :class:`harness.types.ScoreRequest` continuation under teacher
    forcing. It may provide ``chat_prompt(messages)``: the messages in the model's chat template,
    up to the assistant's turn (evals that offer a chat prompt need it), and ``info()``: a dict
    recorded per run in the manifest, whose ``notes`` (a list of strings, e.g. a caveat about how
    prompts reach a server) the report prints. A backend that talks to servers sets
    ``takes_url = True``: ``harness run --backend-url URL`` (repeatable) then puts the URLs in each
    arm's ``options["urls"]``; requests carry ``affinity`` (the item id) so one item's requests can
    go to one server, and completions may report ``cached_tokens``. A backend holding a process
    or a server may define ``close()``; the run calls it before the next arm's backend starts and
    at the end, after taking the final ``info()``.
    """


@hookspec
def register_judges(register):
    """Register judges (``--judge NAME``).

    A judge class is constructed as ``Judge(options, arms)`` (``options`` from
    ``--judge-option KEY=VALUE``; ``arms`` resolves arm names for model-based judges) and
    provides ``judge(pairs)`` where ``pairs`` is a list of :class:`harness.types.JudgePair`;
    it returns one :class:`harness.types.Verdict` per pair. A verdict whose answer could not be
    parsed has ``reward=None`` and ``invalid=True``: it is never counted as 0 or 1.
    ``config()`` returns the resolved options recorded in the manifest.

    A judge may also provide ``compare(comparisons)`` for pairwise preference (online DPO): one
    :class:`harness.types.Verdict` per :class:`harness.types.Comparison`, whose ``score`` is the
    first continuation's win share (1.0, 0.0, or 0.5 for a tie) and ``invalid=True`` when the
    answer could not be parsed (the caller drops that pair and counts it).
    """


@hookspec
def register_tasks(register):
    """Register tasks (``--task NAME``).

    A task class is constructed as ``Task(options)`` (``options`` from ``--task-option`` and
    ``--data-file``) and provides ``items()`` returning a list of :class:`harness.types.Item`
    with stable, deterministic ids, and ``config()`` for the manifest.
    """


@hookspec
def register_report_sections(register):
    """Register report sections rendered into ``report.md`` and printed after a run.

    A section class has ``name``, ``description``, ``applies(manifest)`` and
    ``render(records, manifest, summary)`` returning Markdown text (or ``""`` to skip); ``summary``
    is the eval's ``summarize(records, manifest)``, computed once per report, so a section shows
    rows from it rather than recomputing them. It may also define ``console(records, manifest,
    summary)`` returning a compact table printed at the end of ``harness run``. Everything comes
    from records alone, so every number shown can be recomputed from ``samples.jsonl``.
    """


@hookspec
def register_commands(cli):
    """Add extra click commands or groups to the ``harness`` CLI group ``cli``."""
