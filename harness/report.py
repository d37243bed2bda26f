"""Build a run's (or several runs') report from records alone: summary rows, Markdown, HTML, JSON."""

from __future__ import annotations

from harness.plugins import registry
from harness.store import RunStore


def console_summary(store: RunStore) -> str:
    """What a run prints at its end: each applicable report section's compact ``console()`` text."""
    manifest, records = store.manifest(), store.read()
    parts = []
    for cls in registry("report_sections").classes.values():
        section = cls()
        if records and hasattr(section, "console") and section.applies(manifest):
            text = section.console(records, manifest)
            if text:
                parts.append(text)
    return "\n\n".join(parts)


def _header(records, manifest) -> list[str]:
    cfg = manifest["config"]
    lines = [f"# {cfg['eval']} report", ""]
    if len(manifest.get("runs", [])) > 1:
        lines.append(f"- Runs: {', '.join(manifest['runs'])} (paired on their shared items)")
    lines += [f"- Arms: {', '.join(a['name'] for a in cfg['arms'])}",
              f"- Task: {cfg['task']['name']} ({cfg['task'].get('data')}), {len(manifest.get('item_ids', []))} items",
              f"- Conditions: {', '.join(cfg.get('interventions', []))}; {cfg['samples']} samples per item; "
              f"seed {cfg['seed']}",
              f"- Judge: {cfg['judge']}",
              f"- Sampling: temperature {cfg['temperature']}, top_p {cfg['top_p']}, thought <= "
              f"{cfg['thought_max_tokens']} tokens, suffix <= {cfg['suffix_max_tokens']} tokens",
              f"- Records: {len(records)}"]
    for key, values in (manifest.get("differences") or {}).items():
        lines.append(f"- Differs between runs: {key} = " + "; ".join(f"{v} ({run})" for run, v in values.items()))
    return lines + [""]


def build_report(records: list[dict], manifest: dict) -> tuple[dict, str]:
    """(summary, markdown) from records and a (possibly combined) manifest."""
    eval_cls = registry("evals").classes.get(manifest["config"]["eval"])
    summary = {"eval": manifest["config"]["eval"], "n_records": len(records)}
    if eval_cls is not None and hasattr(eval_cls, "summarize") and records:
        summary.update(eval_cls().summarize(records, manifest))
    lines = _header(records, manifest)
    for cls in registry("report_sections").classes.values():
        section = cls()
        if section.applies(manifest) and records:
            text = section.render(records, manifest)
            if text:
                lines += [text, ""]
    return summary, "\n".join(lines)


def render_report(store: RunStore) -> tuple[dict, str]:
    """Write a run's ``summary.json`` and ``report.md``; return (summary, markdown)."""
    manifest = dict(store.manifest(), runs=[str(store.root)])
    summary, markdown = build_report(store.read(), manifest)
    store.write_json("summary.json", summary)
    store.write_text("report.md", markdown)
    return summary, markdown
