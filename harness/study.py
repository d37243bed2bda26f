"""``harness study STUDY.toml [--out DIR]``: several evals over the same arms, one combined report.

A study file is TOML::

    arms = ["tiny-qwen3", "smollm2-135m"]   # required: every eval runs on these arms
    arms_file = "arms.toml"                 # optional, next to the study file, else in the working directory
    out = "runs/my-study"                   # optional default of --out (relative to the working directory)
    seed = 0                                # optional run seed of every eval (an eval may set its own)

    [[eval]]
    plugin = "pairwise"                     # required: the eval (harness list evals)
    name = "pairwise"                       # optional run-dir name under OUT (default: the plugin)
    limit = 8
    samples = 1
    judge = "embedding"
    judge_options = { threshold = 0.6 }
    options = { original = true }

Each ``[[eval]]`` table takes the ``harness run`` settings by their RunRequest name: ``samples``,
``limit``, ``seed``, ``judge`` (or ``judge_name``), ``judge_options``, ``task`` / ``task_names`` (a
string or a list), ``task_options`` (``{ "gsm8k.fewshot" = 2 }`` or ``{ gsm8k = { fewshot = 2 } }``
for one task), ``data_file`` (relative to the study file when that file exists there, else as
given), ``interventions``, ``options``, ``thought_max_tokens``, ``suffix_max_tokens``,
``max_new_tokens``, ``temperature``, ``top_p``, ``backend`` (or ``backend_name``), ``backend_urls``,
``retriever`` (or ``retriever_name``), ``retriever_options``, ``dtype``.
Option values are passed as ``--option KEY=VALUE`` would pass them (booleans as true/false).

The whole file is checked before any run starts: an unknown key, a wrong type, an unknown plugin,
a setting the eval does not take or two evals with one run-dir name is one line naming the study
file and the eval entry (exit 2). Then each eval runs with :func:`harness.runner.execute` into
``OUT/<name>/``, a normal run directory (rerunning the study resumes every eval). An eval that
fails is recorded in the index with its one-line error and the others still run; the command
exits 1 at the end. ``OUT/report.md`` holds an index (eval, run dir, records, status) and each
eval's own ``report.md`` under its table's heading.
"""

from __future__ import annotations

import math
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from harness.errors import BadInput
from harness.runner import GEN_KEYS, RunRequest

TITLES = {
    "pairwise": "Continued pretraining: pairwise continuation quality",
    "nll": "Thinking SFT: interleaved NLL",
    "reward_gate": "RLMT reward gate",
    "reasoning": "Reasoning",
    "thought_probe": "Thought-use probe",
    "search_r1": "Tool use: Search-R1 evaluation",
}
TOP_KEYS = {"arms", "arms_file", "out", "seed", "eval", "train"}
ALIASES = {"judge": "judge_name", "task": "task_names", "backend": "backend_name", "retriever": "retriever_name"}
INT_KEYS = ("samples", "limit", "thought_max_tokens", "suffix_max_tokens", "max_new_tokens")
TABLE_KEYS = ("judge_options", "task_options", "options", "retriever_options")
LIST_KEYS = ("task_names", "interventions", "backend_urls")
STR_KEYS = ("judge_name", "data_file", "backend_name", "retriever_name", "dtype")
EVAL_KEYS = {"plugin", "name", "seed", "temperature", "top_p", *INT_KEYS, *TABLE_KEYS, *LIST_KEYS, *STR_KEYS}
REPORT = "report.md"


class StudyFailed(click.ClickException):
    """Some evals of the study failed (the others ran and the combined report is written): exit 1."""

    exit_code = 1


@dataclass
class Entry:
    name: str
    plugin: str
    request: RunRequest


@dataclass
class Study:
    path: Path
    arms: tuple[str, ...]
    arms_file: str | None
    out: str | None
    seed: int
    entries: list[Entry] = field(default_factory=list)
    steps: list = field(default_factory=list)  # harness.study_train.TrainStep, run before the evals


def _scalar(value) -> str:
    """An option value as ``KEY=VALUE`` on the command line would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _table(value, where: str, key: str, nested: bool) -> dict:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: {key} must be a table, e.g. {key} = {{ name = \"value\" }}")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict) and nested:  # { gsm8k = { fewshot = 2 } } is "gsm8k.fewshot" = 2
            out.update({f"{k}.{sub}": _scalar(x) for sub, x in _table(v, where, f"{key}.{k}", False).items()})
        elif isinstance(v, (dict, list)):
            raise BadInput(f"{where}: {key}.{k} must be a string, number or boolean")
        else:
            out[k] = _scalar(v)
    return out


def _int(value, where: str, key: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise BadInput(f"{where}: {key} must be an integer >= {low}, not {value!r}")
    return value


def _entry(raw, index: int, study: Study, base: Path) -> Entry:
    where = f"{study.path}: [[eval]] #{index + 1}"
    if not isinstance(raw, dict):
        raise BadInput(f"{where}: must be a table")
    plugin = raw.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise BadInput(f"{where}: needs plugin = \"NAME\" (harness list evals)")
    where += f" (plugin {plugin})"
    given = {}
    for key, value in raw.items():
        canon = ALIASES.get(key, key)
        if canon not in EVAL_KEYS:
            raise BadInput(f"{where}: unknown key {key!r}; valid: {', '.join(sorted(EVAL_KEYS | set(ALIASES)))}")
        if canon in given:
            raise BadInput(f"{where}: {key!r} given twice (as {canon} and an alias)")
        given[canon] = value
    kw = {}
    for key, value in given.items():
        if key in INT_KEYS:
            kw[key] = _int(value, where, key)
        elif key == "seed":
            kw[key] = _int(value, where, key, low=0)
        elif key in ("temperature", "top_p"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (key == "top_p" and not 0 < value <= 1):
                raise BadInput(f"{where}: {key} must be a finite number{' in (0, 1]' if key == 'top_p' else ' >= 0'}, "
                               f"not {value!r}")
            kw[key] = float(value)
        elif key in TABLE_KEYS:
            kw[key] = _table(value, where, key, nested=key == "task_options")
        elif key in LIST_KEYS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
                raise BadInput(f"{where}: {key} must be a string or a list of strings")
            kw[key] = tuple(items)
        elif key in STR_KEYS or key in ("name", "plugin"):
            if not isinstance(value, str) or not value:
                raise BadInput(f"{where}: {key} must be a non-empty string")
            kw[key] = value
    name = kw.pop("name", plugin)
    kw.pop("plugin")
    if "/" in name or name in (".", "..") or name == REPORT:
        raise BadInput(f"{where}: name {name!r} is not a directory name")
    if "data_file" in kw and (base / kw["data_file"]).exists():
        kw["data_file"] = str(base / kw["data_file"])
    kw.setdefault("seed", study.seed)
    request = RunRequest(eval_name=plugin, arm_names=study.arms, arms_file=study.arms_file, quiet=True,
                         argv=tuple(sys.argv), **kw)
    return Entry(name, plugin, request)


def _check_entry(entry: Entry, where: str) -> None:
    """What can be checked without loading data or models: the plugin, the settings it takes."""
    from harness.plugins import registry
    from harness.protocols import member

    reg = registry("evals")
    if entry.plugin not in reg.classes:
        raise BadInput(f"{where}: unknown plugin {entry.plugin!r}; evals: {', '.join(reg.names())}")
    cls = reg.classes[entry.plugin]
    defaults = dict(cls.defaults)
    p = entry.request
    for key in GEN_KEYS:
        if getattr(p, key) is not None and key not in defaults:
            takes = ", ".join(k for k in GEN_KEYS if k in defaults)
            raise BadInput(f"{where}: eval {entry.plugin!r} has no {key} setting (it takes {takes})")
    if not member(cls, "evals", "uses_judge") and (p.judge_name or p.judge_options):
        raise BadInput(f"{where}: eval {entry.plugin!r} grades its own answers and takes no judge")
    if not member(cls, "evals", "uses_retriever") and (p.retriever_name or p.retriever_options):
        raise BadInput(f"{where}: eval {entry.plugin!r} does no retrieval and takes no retriever")


PACKAGED = Path(__file__).parent / "studies"


def find_study(value) -> Path:
    """``value`` as a path, else the packaged study of that name (``cpu``, ``reference``)."""
    path = Path(value)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    packaged = PACKAGED / f"{value}.toml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGED.glob("*.toml")))
    raise BadInput(f"{value}: no such study file, and no packaged study of that name (packaged: {names})")


def load_study(path) -> Study:
    """The study file (or packaged study name), parsed and checked (one-line :class:`BadInput`
    naming the file and entry)."""
    path = find_study(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the study file ({exc.strerror or exc})")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML: {' '.join(str(exc).split())}")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise BadInput(f"{path}: unknown top-level key {unknown[0]!r}; valid: {', '.join(sorted(TOP_KEYS))}")
    arms = data.get("arms")
    if not isinstance(arms, list) or not arms or not all(isinstance(a, str) and a for a in arms):
        raise BadInput(f"{path}: arms must be a non-empty list of arm names, e.g. arms = [\"tiny-qwen3\"]")
    if len(set(arms)) < len(arms):
        raise BadInput(f"{path}: an arm is listed twice in arms")
    base = path.parent
    arms_file = data.get("arms_file")
    if arms_file is not None:
        if not isinstance(arms_file, str) or not arms_file:
            raise BadInput(f"{path}: arms_file must be a path")
        found = next((p for p in (base / arms_file, Path(arms_file)) if p.is_file()), None)
        if found is None:
            raise BadInput(f"{path}: arms_file {arms_file!r} is not a file (it is read next to the study file, "
                           "else in the working directory)")
        arms_file = str(found)
    out = data.get("out")
    if out is not None and (not isinstance(out, str) or not out):
        raise BadInput(f"{path}: out must be a directory path")
    study = Study(path, tuple(arms), arms_file, out, _int(data.get("seed", 0), str(path), "seed", low=0))
    from harness.arms import load_arms, resolve_arm
    from harness.study_train import TRAIN_DIR, parse_steps

    table = load_arms(study.arms_file)
    study.steps = parse_steps(data.get("train"), path, set(table))
    evals = data.get("eval")
    if not isinstance(evals, list) or not evals:
        raise BadInput(f"{path}: no [[eval]] tables; add one per eval, e.g. [[eval]] plugin = \"pairwise\"")
    for i, raw in enumerate(evals):
        entry = _entry(raw, i, study, base)
        where = f"{path}: [[eval]] #{i + 1} (plugin {entry.plugin})"
        if entry.name == TRAIN_DIR and study.steps:
            raise BadInput(f"{where}: run-dir name {TRAIN_DIR!r} holds the trained arms; give the eval another name")
        if entry.name in {e.name for e in study.entries}:
            raise BadInput(f"{where}: run-dir name {entry.name!r} is used twice; give each a distinct name = \"...\"")
        _check_entry(entry, where)
        study.entries.append(entry)
    trained = {s.name for s in study.steps}
    for arm in study.arms:
        if arm not in trained:
            resolve_arm(arm, table)
    return study


def _records(run_dir: Path) -> int | None:
    from harness.store import RunStore

    store = RunStore(run_dir)
    if not store.manifest_path.exists():
        return None
    from harness.runs import load_run

    return len(load_run(store)[0])


def _one_line(exc: BaseException) -> str:
    text = exc.format_message() if isinstance(exc, click.ClickException) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _demote(markdown: str, levels: int = 2) -> str:
    """A run's report with its headings moved down under the study's own."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def combined_report(study: Study, out: Path, results: list[dict], train_errors: dict | None = None) -> str:
    """The study's report: an index, then each eval's report under its table's heading."""
    from harness.study_train import index_lines

    lines = [f"# Study report: {study.path.name}", "", f"- Arms: {', '.join(study.arms)}", "",
             *index_lines(study.steps, out, train_errors or {}),
             "| eval | plugin | run dir | records | new | status |", "| --- | --- | --- | ---: | ---: | --- |"]
    for r in results:
        status = "ok" if r["error"] is None else "FAILED: " + r["error"].replace("|", "\\|")
        lines.append(f"| {r['name']} | {r['plugin']} | {r['name']}/ | {r['records'] if r['records'] is not None else '-'}"
                     f" | {r['new'] if r['new'] is not None else '-'} | {status} |")
    lines.append("")
    counts = {}
    for r in results:
        counts[r["plugin"]] = counts.get(r["plugin"], 0) + 1
    for r in results:
        title = TITLES.get(r["plugin"], r["plugin"])
        if counts[r["plugin"]] > 1 or r["name"] != r["plugin"]:
            title += f" ({r['name']})"
        lines += [f"## {title}", "", f"Run: `{out / r['name']}`", ""]
        if r["error"] is not None:
            lines += [f"FAILED: {r['error']}", ""]
        report = out / r["name"] / REPORT
        if report.is_file():
            lines += [_demote(report.read_text(encoding="utf-8")), ""]
        elif r["error"] is None:
            lines += ["(no report.md)", ""]
    return "\n".join(lines)


def _train(study: Study, out: Path) -> tuple[tuple, dict]:
    """Run the study's ``[[train]]`` steps in order: (the trained arms, errors by step name)."""
    from harness.arms import load_arms
    from harness.study_train import run_step, step_dir, trained_arm

    table, trained, errors = load_arms(study.arms_file), {}, {}
    for step in study.steps:
        click.echo(f"\n== train {step.name} ({step.stage} from {step.arm}) -> {step_dir(out, step)}", err=True)
        try:
            out.mkdir(parents=True, exist_ok=True)
            run_step(step, out, study.arms_file, study.seed, trained)
        except (click.ClickException, Exception) as exc:  # an interrupt still stops the study
            errors[step.name] = _one_line(exc)
            click.echo(f"train {step.name}: FAILED: {errors[step.name]}", err=True)
            break
        trained[step.name] = table[step.name] = trained_arm(step, out, table)
    return tuple(trained.values()), errors


def run_study(path, out=None) -> list[dict]:
    """Check the study, train its ``[[train]]`` arms, run each eval (resuming), write
    OUT/report.md; raise :class:`StudyFailed` when a step or an eval failed."""
    from harness.runner import execute

    study = load_study(path)
    out = Path(out or study.out or Path("runs") / f"study-{study.path.stem}")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} is a file, not a study directory", param_hint="--out")
    extra_arms, train_errors = _train(study, out)
    if train_errors:
        (out / REPORT).write_text(combined_report(study, out, [], train_errors), encoding="utf-8")
        name = next(iter(train_errors))
        raise StudyFailed(f"[[train]] {name} failed, so no eval ran: {train_errors[name]}; see {out / REPORT}")
    results = []
    for entry in study.entries:
        run_dir = out / entry.name
        before = _records(run_dir) or 0
        click.echo(f"\n== {entry.name} ({entry.plugin}) -> {run_dir}", err=True)
        error = None
        try:
            out.mkdir(parents=True, exist_ok=True)
            execute(replace(entry.request, out=str(run_dir), extra_arms=extra_arms))
        except (click.ClickException, Exception) as exc:  # an interrupt still stops the study
            error = _one_line(exc)
            click.echo(f"{entry.name}: FAILED: {error}", err=True)
        try:
            records = _records(run_dir)
        except Exception as exc:  # unreadable records: the error says so
            records, error = None, error or _one_line(exc)
        results.append({"name": entry.name, "plugin": entry.plugin, "records": records, "error": error,
                        "new": None if records is None else records - before})
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(combined_report(study, out, results), encoding="utf-8")
    click.echo(f"\nstudy report: {out / REPORT}")
    failed = [r["name"] for r in results if r["error"] is not None]
    if failed:
        raise StudyFailed(f"{len(failed)} of {len(results)} evals failed ({', '.join(failed)}); "
                          f"see {out / REPORT}")
    return results
