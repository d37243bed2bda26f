"""Render ``summary.json`` and ``report.md`` for a run directory from its records alone."""

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


def render_report(store: RunStore) -> tuple[dict, str]:
    """Write ``summary.json`` and ``report.md``; return (summary, markdown)."""
    manifest = store.manifest()
    records = store.read()
    eval_cls = registry("evals").classes.get(manifest["config"]["eval"])
    summary = {"eval": manifest["config"]["eval"], "n_records": len(records)}
    if eval_cls is not None and hasattr(eval_cls, "summarize") and records:
        summary.update(eval_cls().summarize(records, manifest))
    cfg = manifest["config"]
    lines = [f"# {cfg['eval']} report", "",
             f"- Arms: {', '.join(a['name'] for a in cfg['arms'])}",
             f"- Task: {cfg['task']['name']} ({cfg['task'].get('data')}), {len(manifest.get('item_ids', []))} items",
             f"- Conditions: {', '.join(cfg.get('interventions', []))}; {cfg['samples']} samples per item; seed {cfg['seed']}",
             f"- Judge: {cfg['judge']}",
             f"- Sampling: temperature {cfg['temperature']}, top_p {cfg['top_p']}, thought <= {cfg['thought_max_tokens']} "
             f"tokens, suffix <= {cfg['suffix_max_tokens']} tokens",
             f"- Records: {len(records)} in samples.jsonl", ""]
    for cls in registry("report_sections").classes.values():
        section = cls()
        if section.applies(manifest) and records:
            text = section.render(records, manifest)
            if text:
                lines += [text, ""]
    markdown = "\n".join(lines)
    store.write_json("summary.json", summary)
    store.write_text("report.md", markdown)
    return summary, markdown
