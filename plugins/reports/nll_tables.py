"""Report sections for ``nll`` runs: the per-arm table in the shape of the reference study's SFT
table (raw NLL, the NLL of the text with thoughts, thought / text / post-thought NLL, repetition
4-gram rate, tokens), and the paired arm deltas.

Rows come from :func:`reports.nll.summarize`, computed once from ``samples.jsonl``.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from reports.markdown import md_table
from reports.options import report_options
from reports.stats import comparison_table, fmt_cell

COLUMNS = (("raw_nll", "Raw NLL"), ("augmented_nll", "Augmented NLL"), ("thought_nll", "Thought NLL"),
           ("text_nll", "Text NLL"), ("post_thought_nll", "Post-thought NLL"),
           ("repetition_4gram_rate", "Repetition 4-gram rate"))
SHORT = ("raw_nll", "thought_nll", "text_nll", "post_thought_nll", "repetition_4gram_rate")


@hookimpl
def register_report_sections(register):
    register(NLLMainSection)
    register(NLLArmsSection)


def _cells(summary) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in summary.get("metrics", []):
        out.setdefault(r["arm"], {})[r["metric"]] = r
    return out


def _tokens(c: dict) -> str:
    row = c.get("tokens_scored")
    return "-" if not row or row.get("count") is None else f"{row['count']:,}"


def _basis(manifest) -> str:
    opts = report_options(manifest)
    return (f"95% CIs: bootstrap over rows (B={opts['B']:,}, seed {opts['seed']}; * = whole sources resampled); "
            "an NLL cell is the per-token mean pooled over its rows (sum of NLLs / tokens) and its interval the "
            "percentile interval of the resamples' ratios; the repetition rate is a mean over rows.")


class _NLLSection:
    def applies(self, manifest) -> bool:
        return manifest.get("record_type") == "nll"


class NLLMainSection(_NLLSection):
    name = "nll-main"
    description = "per arm: raw / augmented / thought / text / post-thought NLL, repetition 4-gram rate, tokens"

    def render(self, records, manifest, summary) -> str:
        cols = [k for k, _ in COLUMNS]
        head = ["Arm", "Tokenizer", *(f"{label} [95% CI]" for _, label in COLUMNS), "Tokens scored", "Rows",
                "Rows without thoughts"]
        body = []
        for arm, c in _cells(summary).items():
            tok = summary.get("tokenizers", {}).get(arm, {})
            rows = summary.get("rows", {}).get(arm, {})
            body.append([arm, f"{tok.get('tokenizer') or '-'} [{tok.get('tokenizer_sha') or '-'}]",
                         *(fmt_cell(c.get(k), 4) for k in cols), _tokens(c), rows.get("rows", "-"),
                         rows.get("without_thoughts", "-")])
        cfg = manifest["config"]
        opts = cfg.get("options", {})
        text = (f"## Interleaved-thinking NLL (nats per token)\n\nPer arm on the same rows, teacher-forced, scored by the "
                "arm's own tokenizer and think tags, with the code of `harness train sft`'s evals. Raw NLL: the row "
                "with its thoughts removed (the study's raw validation loss; `val_nll_raw`). Augmented NLL: every "
                "token of the row with its thoughts (the loss on the thinking format; `val_nll`). Thought NLL: thought "
                "tokens, tags included. Text NLL: the row's text tokens, read after its thoughts. Post-thought NLL: "
                f"the first {opts.get('post_thought_tokens', 16)} text tokens after each thought. Repetition 4-gram "
                f"rate: share of repeated word 4-grams in one continuation of up to {cfg.get('max_new_tokens')} tokens "
                "sampled from the first half of each row's raw tokens (temperature "
                f"{cfg.get('temperature')}, top_p {cfg.get('top_p')}, the same seed per row for every arm). Tokens "
                f"scored: raw plus augmented tokens over all rows. {_basis(manifest)}\n\n"
                + md_table(head, body, right=set(range(2, len(head)))))
        if summary.get("notes"):
            text += "\n\n" + "\n".join(f"- {n}" for n in summary["notes"])
        return text

    def console(self, records, manifest, summary) -> str:
        labels = dict(COLUMNS)
        head = ["Arm", *(labels[k] for k in SHORT), "Tokens"]
        body = [[arm, *(fmt_cell(c.get(k), 3) for k in SHORT), _tokens(c)] for arm, c in _cells(summary).items()]
        text = md_table(head, body, right=set(range(1, len(head))))
        tokenizers = summary.get("tokenizers", {})
        text += "\n\nscored by: " + "; ".join(f"{a}: {t.get('tokenizer')} [{t.get('tokenizer_sha')}]"
                                             for a, t in tokenizers.items())
        if summary.get("notes"):
            text += "\n" + "\n".join(f"note: {n}" for n in summary["notes"])
        rows = [r for r in summary.get("comparisons", []) if r["kind"] == "arms"]
        if rows:
            text += "\n\n" + comparison_table(_ordered(rows), dict(COLUMNS), lambda r: (f"{r['arm_a']} - {r['arm_b']}",
                                                                                       r["condition"]),
                                              second="Condition", digits=lambda m: 4, compact=True)
        return text


def _ordered(rows):
    order = [k for k, _ in COLUMNS]
    return sorted(rows, key=lambda r: (order.index(r["metric"]) if r["metric"] in order else len(order)))


class NLLArmsSection(_NLLSection):
    name = "nll-arms"
    description = "paired arm deltas of the pooled NLLs and the repetition rate on shared rows"

    def render(self, records, manifest, summary) -> str:
        rows = [r for r in summary.get("comparisons", []) if r["kind"] == "arms"]
        if not rows:
            return ""
        baseline = report_options(manifest)["baseline"]
        table = comparison_table(_ordered(rows), dict(COLUMNS), lambda r: (f"{r['arm_a']} - {r['arm_b']}",
                                                                          r["condition"]),
                                 left="A higher", right="B higher", second="Condition", digits=lambda m: 4)
        return (f"## Arm deltas ({f'baseline {baseline}' if baseline else 'every pair, later minus earlier'})\n\n"
                "`A - B` on the rows both arms scored. NLLs: the difference of the pooled per-token means, its CI "
                "from the same resampled rows for both arms; p from a paired permutation test that swaps the arms "
                "within each row. Repetition rate: mean per-row delta, paired bootstrap CI, sign-flip permutation "
                "test. p Holm-adjusted across a metric's rows; MDE: the smallest delta detectable with power 0.8 at "
                "alpha 0.05. A / B higher: share of rows where A's / B's own value is higher (for an NLL, worse; "
                f"Wilson intervals). {_basis(manifest)}\n\n" + table)
