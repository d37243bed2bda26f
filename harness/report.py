"""Build a run's (or several runs') report from records alone: summary rows, Markdown, HTML, JSON.

A plugin's part of the report cannot take the report down. When a report section's ``applies``,
``render`` or ``console``, or the eval's ``summarize``, raises, that part's place in ``report.md``
is one line, ``FAILED: report section 'NAME' (plugin PLUGIN) raised in render(): TYPE: MESSAGE``;
the other sections are rendered, ``summary["failures"]`` lists what failed, and
:func:`render_report` writes ``summary.json`` and ``report.md`` before it raises
:class:`SectionFailed` (exit 1). Without a summary (``summarize`` failed) no section is rendered.
"""

from __future__ import annotations

import click

from harness.plugins import registry
from harness.redact import redact_text
from harness.runs import load_run
from harness.store import RunStore

__all__ = ["SectionFailed", "build_report", "console_summary", "load_run", "render_report"]

MAX_ERROR_CHARS = 300  # of an exception's message in a failure line


class SectionFailed(click.ClickException):
    """Part of a report raised; the rest was written. Exit 1.

    ``failures``: the ``summary["failures"]`` rows (``part``, ``name``, ``plugin``, ``method``,
    ``error``, ``message``); ``summary``, ``markdown``: the report as built. ``console``: the
    compact tables of the sections that worked, printed (to stdout) before the error, because
    ``harness run`` ends with this exception where it would have printed them."""

    exit_code = 1

    def __init__(self, failures: list[dict], rest: str | None = None, summary: dict | None = None,
                 markdown: str | None = None, console: str = ""):
        self.failures, self.summary, self.markdown, self.console = failures, summary, markdown, console
        rest = f"; {rest}" if rest else ""
        if len(failures) == 1:
            super().__init__(failures[0]["message"] + rest)
        else:
            super().__init__(f"{len(failures)} parts of the report raised{rest}:"
                             + "".join(f"\n  {f['message']}" for f in failures))

    def show(self, file=None) -> None:
        if self.console:
            click.echo(self.console)
        super().show(file)


def _call(failures: list, part: str, name: str, plugin: str, method: str, fn):
    """``(fn(), None)``, or ``(None, failure)`` with the failure appended to ``failures`` when
    ``fn`` raises (an ``Exception``: an interrupt still stops the report)."""
    try:
        return fn(), None
    except Exception as exc:
        text = " ".join(str(exc).split())
        if len(text) > MAX_ERROR_CHARS:
            text = text[:MAX_ERROR_CHARS - 3] + "..."
        error = redact_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
        failure = {"part": part, "name": name, "plugin": plugin, "method": method, "error": error,
                   "message": f"{part} {name!r} (plugin {plugin}) raised in {method}(): {error}"}
        failures.append(failure)
        return None, failure


def _failed_line(failure: dict) -> str:
    return f"FAILED: {failure['message']}"


def _sections(manifest, failures: list):
    """Yield ``(name, plugin, section, failure)`` per report section, in registration order:
    ``section`` when it applies to this run, ``failure`` when making it or its ``applies`` raised
    (else None); sections that do not apply are left out."""
    reg = registry("report_sections")
    for name, cls in reg.classes.items():
        plugin = reg.sources.get(name, "?")
        section, failed = _call(failures, "report section", name, plugin, "__init__", cls)
        if section is not None:
            applies, failed = _call(failures, "report section", name, plugin, "applies",
                                    lambda: section.applies(manifest))
            section = section if applies else None
        if section is not None or failed is not None:
            yield name, plugin, section, failed


def console_summary(records: list[dict], manifest: dict, summary: dict) -> str:
    """What a run prints at its end: each applicable report section's compact ``console()`` text
    (a ``FAILED:`` line in the place of a section that raised)."""
    if not records:
        return ""
    texts = []
    for name, plugin, section, failed in _sections(manifest, []):
        if section is not None and hasattr(section, "console"):
            text, failed = _call([], "report section", name, plugin, "console",
                                 lambda: section.console(records, manifest, summary))
            texts.append(text)
        if failed is not None:
            texts.append(_failed_line(failed))
    return "\n\n".join(t for t in texts if t)


def _task_label(task: dict) -> str:
    """``name (data)`` plus the settings that pick a study variant: source, split, few-shot."""
    extra = [f"source={task['source']}" if task.get("source") else "",
             f"split by {task['split_by']}" if task.get("split_by") else "",
             f"{task['fewshot']}-shot" if task.get("fewshot") else ""]
    return f"{task['name']} ({', '.join([str(task.get('data'))] + [e for e in extra if e])})"


def _header(records, manifest) -> list[str]:
    """The run's settings, from whatever its config holds (evals differ in what they take)."""
    cfg = manifest["config"]
    lines = [f"# {cfg['eval']} report", ""]
    if len(manifest.get("runs", [])) > 1:
        lines.append(f"- Runs: {', '.join(manifest['runs'])} (paired on their shared items)")
    tasks = cfg.get("tasks") or ([cfg["task"]] if cfg.get("task") else [])
    lines += [f"- Arms: {', '.join(a['name'] for a in cfg['arms'])}",
              f"- Tasks: {', '.join(_task_label(t) for t in tasks)}; "
              f"{len(manifest.get('item_ids', []))} items"]
    conditions = f"Conditions: {', '.join(cfg['interventions'])}; " if cfg.get("interventions") else ""
    lines.append(f"- {conditions}{cfg['samples']} samples per item; seed {cfg['seed']}")
    if cfg.get("judge") and not manifest.get("judges"):  # several judges: under "Differs between runs"
        lines.append(f"- Judge: {cfg['judge']}")
    limits = [f"{label} <= {cfg[key]} tokens" for key, label in (
        ("thought_max_tokens", "thought"), ("suffix_max_tokens", "suffix"), ("max_new_tokens", "completion"))
        if key in cfg]
    lines += [f"- Sampling: temperature {cfg['temperature']}, top_p {cfg['top_p']}, " + ", ".join(limits),
              f"- Records: {len(records)}"]
    throughput = [f"{inv['generated_tok_per_s']:.0f}" for inv in manifest.get("invocations", [])
                  if inv.get("generated_tok_per_s")]
    if throughput:
        lines.append(f"- Generated tokens/s per invocation: {', '.join(throughput)}")
    notes = {}
    for inv in manifest.get("invocations", []):
        for arm, info in (inv.get("backends") or {}).items():
            for note in info.get("notes", []):
                notes.setdefault(note, []).append(arm)
    for note, arms in notes.items():
        lines.append(f"- Backend note ({', '.join(dict.fromkeys(arms))}): {note}")
    for key, values in (manifest.get("differences") or {}).items():
        lines.append(f"- Differs between runs: {key} = " + "; ".join(f"{v} ({run})" for run, v in values.items()))
    lines += [f"- {note}" for note in manifest.get("notes") or []]  # how runs were paired (reports.combine)
    return lines + [""]


def build_report(records: list[dict], manifest: dict) -> tuple[dict, str]:
    """(summary, markdown) from records and a (possibly combined) manifest. The eval's
    ``summarize`` computes every row once; the report sections render from it. What raised is in
    ``summary["failures"]`` (absent when nothing did) and in its place in the markdown; a section's
    ``console()`` is tried too, so that a run's report names a section that would fail there."""
    name = manifest["config"]["eval"]
    evals = registry("evals")
    eval_cls = evals.classes.get(name)
    summary = {"eval": name, "n_records": len(records)}
    failures: list[dict] = []
    lines = _header(records, manifest)
    summary_failed = None
    if eval_cls is not None and hasattr(eval_cls, "summarize") and records:
        _, summary_failed = _call(failures, "eval", name, evals.sources.get(name, "?"), "summarize",
                                  lambda: summary.update(eval_cls().summarize(records, manifest)))
    if summary_failed is not None:
        lines += [_failed_line(summary_failed), "", "No report section was rendered: they show the eval's summary.", ""]
    sections = _sections(manifest, failures) if records and summary_failed is None else []
    for name, plugin, section, failed in sections:
        own = [failed]
        if section is not None:
            text, failed = _call(failures, "report section", name, plugin, "render",
                                 lambda: section.render(records, manifest, summary))
            own.append(failed)
            if text:
                lines += [text, ""]
            if hasattr(section, "console"):
                own.append(_call(failures, "report section", name, plugin, "console",
                                 lambda: section.console(records, manifest, summary))[1])
        own = [_failed_line(f) for f in own if f is not None]
        if own:
            lines += own + [""]
    if failures:
        summary["failures"] = failures
    return summary, "\n".join(lines)


def render_report(store: RunStore, records: list[dict], manifest: dict) -> tuple[dict, str]:
    """Write a run's ``summary.json`` and ``report.md``; return (summary, markdown). When part of
    the report raised, both files are written first, then :class:`SectionFailed` is raised."""
    summary, markdown = build_report(records, manifest)
    store.write_json("summary.json", summary)
    store.write_text("report.md", markdown)
    if summary.get("failures"):
        raise SectionFailed(summary["failures"], f"the rest of the report was written to {store.root / 'report.md'} "
                            "and summary.json", summary, markdown, console_summary(records, manifest, summary))
    return summary, markdown
