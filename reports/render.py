"""Write a report as Markdown, JSON rows, or a self-contained HTML page with plots.

The Markdown comes from the report sections (plugins); the JSON rows and the plots come from the
eval's summary (``metrics`` and ``comparisons`` rows), so every number and every bar is
recomputable from the records.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re

from reports.compare import METRICS


def json_report(summary: dict, manifest: dict) -> str:
    """``{"runs", "metrics": [...], "comparisons": [...]}`` (and ``"flags"`` when the eval has go/no-go
    flags, ``"failures"`` when a part of the report raised) as indented JSON."""
    keep_m = ("arm", "condition", "metric", "estimate", "ci_low", "ci_high", "n_items", "n_samples", "count",
              "samples_per_item", "ci_method", "clustered", "degenerate")
    keep_c = ("kind", "arm_a", "arm_b", "condition", "condition_a", "condition_b", "metric", "delta", "ci_low",
              "ci_high", "p_value", "p_holm", "test", "mde", "a_better", "a_better_ci", "b_better", "b_better_ci", "tie", "tie_ci", "n_shared",
              "clustered", "ci_method", "degenerate")
    out = {"eval": manifest["config"]["eval"], "runs": manifest.get("runs", []),
           "differences": manifest.get("differences", {}), "options": manifest.get("report", {}),
           "metrics": [{k: r.get(k) for k in keep_m} for r in summary.get("metrics", [])],
           "comparisons": [{k: r.get(k) for k in keep_c} for r in summary.get("comparisons", [])]}
    if summary.get("flags"):  # the eval's go/no-go flags (the probe's reward gate)
        out["flags"] = summary["flags"]
    if summary.get("failures"):  # parts of the report that raised (see harness.report)
        out["failures"] = summary["failures"]
    return json.dumps(out, indent=2) + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figures(summary: dict) -> list[tuple[str, str]]:
    """(caption, base64 PNG) per metric: bars with CIs per condition, and a forest plot of deltas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    rows = summary.get("metrics", [])
    plotted = summary.get("plotted") or METRICS  # the eval's headline metrics (default: the probe's)
    for metric, label in plotted.items():
        cells = [r for r in rows if r["metric"] == metric and r["estimate"] is not None]
        if not cells:
            continue
        arms = list(dict.fromkeys(r["arm"] for r in cells))
        conds = list(dict.fromkeys(r["condition"] for r in cells))
        width = 0.8 / len(arms)
        negative = any(r["estimate"] < 0 for r in cells)
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(conds) * max(1, len(arms) / 2), 3.2))
        for k, arm in enumerate(arms):
            xs, ys, lo, hi = [], [], [], []
            for j, c in enumerate(conds):
                r = next((r for r in cells if r["arm"] == arm and r["condition"] == c), None)
                if r is None:
                    continue
                xs.append(j + (k - (len(arms) - 1) / 2) * width)
                ys.append(r["estimate"])
                lo.append(r["estimate"] - (r["ci_low"] if r["ci_low"] is not None else r["estimate"]))
                hi.append((r["ci_high"] if r["ci_high"] is not None else r["estimate"]) - r["estimate"])
            if negative:  # log-likelihoods: points with CIs read better than bars hanging from 0
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=arm)
            else:
                ax.bar(xs, ys, width * 0.9, yerr=[lo, hi], capsize=3, label=arm)
        crowded = len(conds) > 4 or max(map(len, conds)) > 12  # many or long condition names: slanted labels
        ax.set_xticks(range(len(conds)), conds, rotation=30 if crowded else 0, ha="right" if crowded else "center",
                      fontsize=8 if crowded else None)
        ax.set_ylabel(label)
        if not negative:
            ax.axhline(0, color="black", linewidth=0.6)
        if len(arms) > 1:
            ax.legend(fontsize=8)
        ax.set_title(f"{label} per condition (95% CI)", fontsize=10)
        out.append((f"{label}: mean per arm and condition with 95% bootstrap CIs over items.", _png(fig)))
    comps = summary.get("comparisons", [])
    for metric, label in plotted.items():
        sel = [r for r in comps if r["metric"] == metric and r["delta"] is not None]
        if not sel:
            continue
        names = [f"{r['arm_a']} - {r['arm_b']} ({r['condition']})" if r["kind"] == "arms"
                 else f"{r['arm_a']}: {r['condition']}" for r in sel]
        fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.38 * len(sel)))
        ys = list(range(len(sel)))[::-1]
        for y, r in zip(ys, sel):
            lo = r["ci_low"] if r["ci_low"] is not None else r["delta"]
            hi = r["ci_high"] if r["ci_high"] is not None else r["delta"]
            colour = "tab:blue" if lo > 0 else "tab:red" if hi < 0 else "tab:gray"
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2)
            ax.plot([r["delta"]], [y], "o", color=colour)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, names, fontsize=8)
        ax.set_xlabel(f"paired delta in {label} (95% CI)")
        ax.set_title(f"Paired differences: {label}", fontsize=10)
        out.append((f"{label}: paired deltas with 95% CIs (blue: CI above 0, red: below 0, grey: includes 0).",
                    _png(fig)))
    return out


def _inline(text: str) -> str:
    text = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def markdown_to_html(markdown: str) -> str:
    """The subset of Markdown the report sections write: headings, bullet lists, paragraphs, tables."""
    out, table, bullets = [], [], []

    def flush():
        if table:
            head, body = table[0], table[2:]
            cells = lambda row: [c.strip() for c in row.strip().strip("|").split("|")]
            out.append("<div style='overflow-x:auto'><table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells(head)) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells(r)) + "</tr>"
                                           for r in body) + "</tbody></table></div>")
            table.clear()
        if bullets:
            out.append("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            bullets.append(line[2:])
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;
padding:4px 8px;text-align:right;white-space:nowrap}th{background:#f3f3f3}td:first-child,td:nth-child(2),th:first-child,
th:nth-child(2){text-align:left}code{background:#f3f3f3;padding:0 3px}figure{margin:1.5em 0}figcaption{font-size:13px;
color:#555}h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}p{max-width:70em}"""


def html_report(markdown: str, summary: dict, title: str) -> str:
    """One self-contained HTML page: the report's tables followed by its plots (inline PNGs)."""
    figs = "".join(f'<figure><img alt="{html.escape(c)}" src="data:image/png;base64,{b64}">'
                   f"<figcaption>{html.escape(c)}</figcaption></figure>" for c, b64 in figures(summary))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{markdown_to_html(markdown)}<h2>Plots</h2>{figs}</body></html>\n")
