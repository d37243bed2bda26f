"""Report sections for ``pairwise`` runs: wins / ties / losses per pair with the win share, the
study's "wins / decided" form, CIs and the sign test; the judge's position diagnostics; the
arms' continuation lengths.

Rows come from :func:`reports.pairwise.summarize`, computed once from ``samples.jsonl``.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from reports.markdown import md_table
from reports.stats import ci_basis, fmt_ci, fmt_p


@hookimpl
def register_report_sections(register):
    register(PairwiseSection)
    register(PairwiseJudgeSection)
    register(PairwiseContinuationsSection)


def _pct(est, lo=None, hi=None) -> str:
    if est is None:
        return "-"
    return f"{100 * est:.2f} %" + (f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else "")


def _share(stat: dict, digits: int = 3) -> str:
    if stat.get("degenerate"):
        return fmt_ci({"estimate": stat["estimate"]}, digits) + " (all items equal)"
    return fmt_ci(stat, digits) + ("*" if stat.get("clustered") else "")


def _rate(d: dict) -> str:
    return "-" if not d["n"] else f"{d['k']}/{d['n']} = " + _pct(d["rate"], *d["ci"])


def _judge_name(manifest) -> str:
    if manifest.get("judges"):  # runs judged by several judges (reports.combine): each arm is labelled with its own
        return "per arm label"
    return (manifest["config"].get("judge") or {}).get("name", "?")


class _PairwiseSection:
    def applies(self, manifest) -> bool:
        return manifest.get("record_type") == "pairwise"


class PairwiseSection(_PairwiseSection):
    name = "pairwise-main"
    description = "per pair of arms: wins / ties / losses / invalid, win share, wins over decided, sign test"

    def _rows(self, summary, full: bool):
        out = []
        for p in summary.get("pairs", []):
            row = [p["arm_a"], p["arm_b"], p["items"], p["wins"], p["ties"], p["losses"], p["invalid"],
                   _share(p["win_share"]), p["decided_text"]]
            if full:
                b = p["decided_bootstrap"]
                row += [_pct(p["decided_rate"], *p["decided_wilson"]) if p["decided"] else "-",
                        _pct(b["estimate"], b["ci_low"], b["ci_high"]) + ("*" if b["clustered"] else "")
                        if b["ci_low"] is not None else _pct(b["estimate"])]
            t = p["sign_test"]
            row += [f"{t['a_items']} / {t['b_items']} / {t['tied_items']}",
                    "-" if t["p_value"] is None else f"{fmt_p(t['p_value'])} ({fmt_p(p['p_holm'])})"]
            out.append(row)
        return out

    def _headers(self, full: bool):
        head = ["A", "B", "Items", "A wins", "Ties", "B wins", "Invalid", "A win share, ties 0.5 [95% CI]",
                "A wins / decided"]
        if full:
            head += ["Wilson 95% CI", "Bootstrap 95% CI"]
        return head + ["Items A / B / tied", "Sign test p (Holm)"]

    def render(self, records, manifest, summary) -> str:
        if not summary.get("pairs"):
            return ""
        table = md_table(self._headers(True), self._rows(summary, True), right=set(range(2, 13)))
        cfg = manifest["config"]
        thought = str((cfg.get("options") or {}).get("thought", "")).lower() in ("1", "true", "yes", "on")
        return (f"## Pairwise continuation quality (judge {_judge_name(manifest)})\n\n"
                f"Each arm continues every held-out prefix {'after its own thought ' if thought else ''}"
                f"({cfg['samples']} sample(s) per item; A's sample s against B's sample s); the judge compares "
                "the two continuations in both orders. A wins when both orders prefer A, B when both prefer B; "
                "orders that disagree are a tie. An invalid verdict (or a judge call that failed after retries) "
                "in either order leaves that comparison out and is counted under Invalid. `original` is the true "
                "suffix. Win share: A's share with ties as 0.5, an item's samples averaged first. Wins / decided: "
                "wins over untied comparisons (the reference study's form), with a Wilson interval (comparisons as "
                "independent) and a bootstrap interval over items (ratio of sums). Sign test: exact, two-sided, on "
                f"untied items (item share above or below 0.5); Holm across the pairs. {ci_basis(manifest)}; "
                "`*`: whole sources resampled.\n\n" + table)

    def console(self, records, manifest, summary) -> str:
        if not summary.get("pairs"):
            return ""
        return md_table(self._headers(False), self._rows(summary, False), right=set(range(2, 11)))


class PairwiseJudgeSection(_PairwiseSection):
    name = "pairwise-judge"
    description = "the pairwise judge's position consistency and first-position win rate, invalid and failed calls"

    def render(self, records, manifest, summary) -> str:
        pairs = summary.get("pairs", [])
        if not pairs:
            return ""
        j = summary["judge"]
        rows = [[p["label"], _rate(p["position_consistency"]), _rate(p["first_position_wins"]),
                 p["invalid_verdicts"], p["judge_errors"]] for p in pairs]
        rows.append(["All pairs", _rate(j["position_consistency"]), _rate(j["first_position_wins"]),
                     j["invalid_verdicts"], j["judge_errors"]])
        table = md_table(["Pair", "Position-consistent [95% CI]", "First shown wins [95% CI]", "Invalid verdicts",
                          "Failed calls"], rows)
        return ("## Judge diagnostics\n\nPosition-consistent: comparisons whose two orders gave the same preference, "
                "of those with both verdicts valid. First shown wins: single verdicts that preferred the continuation "
                "shown first, of those that preferred one (ties left out). An unbiased judge is near 100 % and 50 %. "
                "Wilson 95% intervals. Failed calls: verdicts lost to a judge call that raised after retries (also "
                "counted as invalid).\n\n" + table)


class PairwiseContinuationsSection(_PairwiseSection):
    name = "pairwise-continuations"
    description = "per arm: continuation tokens and truncation rate of the judged continuations"

    def render(self, records, manifest, summary) -> str:
        cells: dict[str, dict] = {}
        for r in summary.get("metrics", []):
            if r["condition"] == "continuation":
                cells.setdefault(r["arm"], {})[r["metric"]] = r
        if not cells:
            return ""
        rows = [[arm, c["suffix_tokens"]["n_samples"], _share(c["suffix_tokens"], 1),
                 _share(c["truncated"])] for arm, c in cells.items()]
        table = md_table(["Arm", "Continuations", "Tokens [95% CI]", "Truncated [95% CI]"], rows)
        return ("## Continuations\n\nTruncated: the continuation reached the token limit "
                f"({manifest['config'].get('suffix_max_tokens')}). {ci_basis(manifest)}.\n\n" + table)
