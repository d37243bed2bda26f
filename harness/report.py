"""Build a run's (or several runs') report from records alone: summary rows, Markdown, HTML, JSON."""

from __future__ import annotations

from harness.plugins import registry
from harness.store import RunStore


def _sections(manifest):
    sections = (cls() for cls in registry("report_sections").classes.values())
    return [s for s in sections if s.applies(manifest)]


def console_summary(records: list[dict], manifest: dict, summary: dict) -> str:
    """What a run prints at its end: each applicable report section's compact ``console()`` text."""
    if not records:
        return ""
    texts = [s.console(records, manifest, summary) for s in _sections(manifest) if hasattr(s, "console")]
    return "\n\n".join(t for t in texts if t)


def _task_label(task: dict) -> str:
    return f"{task['name']} ({task.get('data')})"


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
    if cfg.get("judge"):
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
    return lines + [""]


def build_report(records: list[dict], manifest: dict) -> tuple[dict, str]:
    """(summary, markdown) from records and a (possibly combined) manifest. The eval's
    ``summarize`` computes every row once; the report sections render from it."""
    eval_cls = registry("evals").classes.get(manifest["config"]["eval"])
    summary = {"eval": manifest["config"]["eval"], "n_records": len(records)}
    if eval_cls is not None and hasattr(eval_cls, "summarize") and records:
        summary.update(eval_cls().summarize(records, manifest))
    lines = _header(records, manifest)
    for section in _sections(manifest) if records else []:
        text = section.render(records, manifest, summary)
        if text:
            lines += [text, ""]
    return summary, "\n".join(lines)


def load_run(store: RunStore) -> tuple[list[dict], dict]:
    """A run's records and its manifest, as a report reads them."""
    return store.read(), dict(store.manifest(), runs=[str(store.root)])


def render_report(store: RunStore, records: list[dict], manifest: dict) -> tuple[dict, str]:
    """Write a run's ``summary.json`` and ``report.md``; return (summary, markdown)."""
    summary, markdown = build_report(records, manifest)
    store.write_json("summary.json", summary)
    store.write_text("report.md", markdown)
    return summary, markdown
