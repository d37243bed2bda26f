"""Runs' records as pandas frames, built from plain data (:class:`reports.view.RunRecords`);
:mod:`harness.analysis` reads the run directories and calls these. pandas is imported inside the
functions, so importing this module stays light.

``samples_frame``: one row per record. Its columns are every field of the run's records (see
``harness.protocols``: probe records have ``condition``, ``thought``, ``suffix``, ``reward``,
``judge_score``, ``suffix_logprob`` ...; reasoning records ``benchmark``, ``completion``,
``extracted``, ``correct`` ...), then these run columns (:data:`RUN_COLUMNS`), the same for every
record of a run:

- ``run``: the run directory; ``eval``: the eval's name; ``record_type``: its record type
- ``model``, ``backend``: the record's arm's model (Hub id, path, ``random:...``) and backend
- ``judge``: the judge's name (None for evals that grade their own answers)
- ``samples``: samples per item and condition; ``run_seed``: the run's seed (a record's own
  ``seed`` is its sample's derived seed)
- ``temperature``, ``top_p``, ``thought_max_tokens``, ``suffix_max_tokens``, ``max_new_tokens``:
  the run's sampling settings (None where the eval does not take one)

A record field with the same name as a run column is kept as ``record_<name>`` (a record's
``eval``, which is its run's eval, is dropped instead).

``runs_frame``: one row per run, with the run columns above (but ``model`` and ``backend``) and
``arms`` (comma-joined names), ``models`` (comma-joined, in arm order), ``conditions``
(comma-joined interventions), ``tasks`` (comma-joined task names), ``n_items``, ``n_records``,
``created``, ``git_sha``, ``config_hash``, and, summed over the run's invocations, ``wall_s``,
``generated_tokens`` and ``invocations`` (their count).
"""

from __future__ import annotations

RUN_COLUMNS = ("run", "eval", "record_type", "model", "backend", "judge", "samples", "run_seed", "temperature",
               "top_p", "thought_max_tokens", "suffix_max_tokens", "max_new_tokens")
SETTINGS = ("temperature", "top_p", "thought_max_tokens", "suffix_max_tokens", "max_new_tokens")
RUNS_COLUMNS = ("run", "eval", "record_type", "arms", "models", "conditions", "tasks", "judge", "samples", "run_seed",
                *SETTINGS, "n_items", "n_records", "created", "git_sha", "config_hash", "wall_s", "generated_tokens",
                "invocations")


def _judge_name(cfg: dict):
    judge = cfg.get("judge")
    return judge.get("name") if isinstance(judge, dict) else judge


def run_columns(run) -> dict:
    """The run columns every record of ``run`` gets (but ``model`` and ``backend``, per arm)."""
    m = run.manifest
    cfg = m.get("config", {})
    return {"run": run.name, "eval": cfg.get("eval"), "record_type": m.get("record_type"), "judge": _judge_name(cfg),
            "samples": cfg.get("samples"), "run_seed": cfg.get("seed"), **{k: cfg.get(k) for k in SETTINGS}}


def sample_rows(run) -> list[dict]:
    """One dict per record of ``run``: its fields, then the run columns."""
    arms = {a.get("name"): a for a in run.manifest.get("config", {}).get("arms", [])}
    shared = run_columns(run)
    rows = []
    for record in run.records:
        row = {}
        for key, value in record.items():
            if key == "eval":
                continue
            row[f"record_{key}" if key in RUN_COLUMNS else key] = value
        arm = arms.get(record.get("arm"), {})
        row.update(shared, model=arm.get("model"), backend=arm.get("backend"))
        rows.append(row)
    return rows


def samples_frame(runs):
    """One row per record of ``runs`` (see the module docstring); run columns last."""
    import pandas as pd

    rows = [row for run in runs for row in sample_rows(run)]
    if not rows:
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    frame = pd.DataFrame.from_records(rows)
    first = [c for c in frame.columns if c not in RUN_COLUMNS]
    return frame[first + list(RUN_COLUMNS)]


def run_row(run) -> dict:
    """The runs frame's row for ``run``."""
    m = run.manifest
    cfg = m.get("config", {})
    arms = cfg.get("arms", [])
    invocations = m.get("invocations") or []
    row = run_columns(run)
    row.update(arms=",".join(str(a.get("name")) for a in arms), models=",".join(str(a.get("model")) for a in arms),
               conditions=",".join(cfg.get("interventions") or []),
               tasks=",".join(str(t.get("name")) for t in cfg.get("tasks") or [] if isinstance(t, dict)),
               n_items=len(m.get("item_ids") or run.items), n_records=len(run.records), created=m.get("created"),
               git_sha=m.get("git_sha"), config_hash=m.get("config_hash"),
               wall_s=sum(i.get("wall_s") or 0 for i in invocations),
               generated_tokens=sum(i.get("generated_tokens") or 0 for i in invocations),
               invocations=len(invocations))
    return {k: row.get(k) for k in RUNS_COLUMNS}


def runs_frame(runs):
    """One row per run (see the module docstring)."""
    import pandas as pd

    return pd.DataFrame.from_records([run_row(r) for r in runs], columns=list(RUNS_COLUMNS))
