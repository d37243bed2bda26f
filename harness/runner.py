"""``harness run``: validate everything, open the run store, run the eval, write the report.

All validation (plugin names, arms and model paths, judge and task options, the task's data)
happens before the run directory is created, so a run that fails validation leaves nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

from harness.arms import load_arms, resolve_arm
from harness.checks import check_items, checked_config
from harness.conditions import create, declared_options, parse_condition
from harness.errors import BadInput
from harness.fingerprint import items_sha, model_fingerprint
from harness.modelspec import ModelSpecError, resolve_path
from harness.pipeline import RunContext
from harness.plugins import registry
from harness.protocols import KINDS, member
from harness.provenance import git_sha, versions
from harness.redact import redact, redact_argv
from harness.store import SAMPLES, THOUGHTS, RunStore, config_hash


def _fingerprint(arm) -> dict | None:
    """The arm's local model files' fingerprint (None for Hub ids, presets, served models)."""
    try:
        return model_fingerprint(*resolve_path(arm))
    except ModelSpecError:  # a server backend's arm may name a model only the server knows
        return None


def _arm_config(arm, fingerprint: dict | None) -> dict:
    """The arm as recorded in the run's config: server URLs are left out (where a model is
    served does not change the run, so a resume may use other servers; invocations record them);
    a local model's fingerprint is in, so a resume over changed weights is refused."""
    d = arm.to_json()
    d["options"] = {k: v for k, v in d["options"].items() if k not in ("urls", "url")}
    if fingerprint:
        d["fingerprint"] = fingerprint["sha"]
    return d


def _check_options(options: dict, eval_cls, intervention_classes: list) -> None:
    """Every ``--option`` key is one the eval or a chosen intervention reads (``run_options``)."""
    kind = member(eval_cls, "evals", "conditions")
    known = dict(member(eval_cls, "evals", "run_options"))
    for cls in intervention_classes:
        known.update(member(cls, kind, "run_options"))
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = ", ".join(f"{k} ({v})" for k, v in sorted(known.items())) or "none for this eval and interventions"
        readers = [n for n, c in registry(kind).classes.items() if unknown[0] in member(c, kind, "run_options")]
        hint = f" ({unknown[0]} is read by intervention {', '.join(readers)}: add --intervention)" if readers else ""
        raise BadInput(f"unknown option {unknown[0]!r}; valid: {valid}{hint}", param_hint="--option")
    check = member(eval_cls, "evals", "check_options")
    if check is not None:
        check(options)


# Generation settings an eval may take; it takes those its ``defaults`` name.
GEN_KEYS = ("thought_max_tokens", "suffix_max_tokens", "max_new_tokens", "temperature", "top_p")


def _task_options(task_names: list[str], options: dict, data_file) -> dict[str, dict]:
    """Per task: ``KEY=VALUE`` options apply to every task, ``TASK.KEY=VALUE`` to that task only."""
    out = {t: {} for t in task_names}
    for key, value in options.items():
        task, dot, sub = key.partition(".")
        if dot and task in out:
            out[task][sub] = value
        elif dot and task not in out and sub:
            raise BadInput(f"--task-option {key}: {task!r} is not one of this run's tasks ({', '.join(task_names)})",
                           param_hint="--task-option")
        else:
            for t in out:
                out[t][key] = value
    if data_file:
        if len(task_names) > 1:
            raise BadInput("--data-file needs a single --task; with several, use --task-option TASK.data=PATH",
                           param_hint="--data-file")
        out[task_names[0]]["data"] = data_file
    return out


def load_items(task_names: list[str], options: dict, data_file, limit) -> tuple[list, list]:
    """(items, task configs): each task's items (its first ``limit``), in task order; ids must be
    unique across tasks."""
    reg = registry("tasks")
    per_task = _task_options(task_names, options, data_file)
    items, configs, seen = [], [], {}
    for name in task_names:
        # PLUGIN:NAME picks one task of a catalogue plugin (lm_eval:gsm8k): it gets name=NAME
        plugin, colon, arg = name.partition(":")
        task = reg.create(plugin, dict(per_task[name], **({"name": arg} if colon else {})), param_hint="--task")
        mine = task.items()
        check_items(name, mine)
        mine = mine[:limit] if limit else mine
        clash = {i.id for i in mine} & set(seen)
        if clash:
            raise BadInput(f"task {name!r} repeats item ids of task {seen[next(iter(clash))]!r} "
                           f"(e.g. {sorted(clash)[0]!r})", param_hint="--task")
        seen.update({i.id: name for i in mine})
        items += mine
        configs.append(checked_config("tasks", name, task.config()))
    return items, configs


@dataclass(frozen=True)
class RunRequest:
    """What ``harness run`` was asked for, as given on the command line (None: the eval's default)."""

    eval_name: str = "thought_probe"
    arm_names: tuple[str, ...] = ("smollm2-135m",)
    arms_file: str | None = None
    extra_arms: tuple = ()  # Arms added to the arms table by name (a study's trained arms)
    interventions: tuple[str, ...] = ()
    task_names: tuple[str, ...] = ()
    task_options: dict = field(default_factory=dict)
    data_file: str | None = None
    judge_name: str | None = None
    judge_options: dict = field(default_factory=dict)
    retriever_name: str | None = None
    retriever_options: dict = field(default_factory=dict)
    samples: int | None = None
    limit: int | None = None
    seed: int = 0
    thought_max_tokens: int | None = None
    suffix_max_tokens: int | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    options: dict = field(default_factory=dict)
    backend_name: str | None = None
    backend_urls: tuple[str, ...] = ()
    dtype: str | None = None  # every arm's dtype (--dtype), overriding the arms file
    out: str | None = None
    quiet: bool = False
    argv: tuple[str, ...] = ()


def _resolve_arms(p: RunRequest, arms_table: dict) -> list:
    """Each ``--arm`` resolved, put on ``--backend``/``--backend-url``/``--dtype`` if given, and checked by its
    backend (server backends) or for its model path, before anything is written."""
    backends = registry("backends")
    arms = []
    for name in p.arm_names:
        arm = resolve_arm(name, arms_table)
        if p.backend_name:
            arm = replace(arm, backend=p.backend_name)
        if p.dtype:
            arm = replace(arm, dtype=p.dtype)
        backend_cls = backends.get(arm.backend, "--backend" if p.backend_name else "backend")
        if p.backend_urls:
            if not member(backend_cls, "backends", "takes_url"):
                raise BadInput(f"arm {arm.name!r} uses backend {arm.backend!r}, which takes no server URL",
                               param_hint="--backend-url")
            arm = replace(arm, options={**arm.options, "urls": list(p.backend_urls)})
        (member(backend_cls, "backends", "check") or resolve_path)(arm)
        if arm.name in {a.name for a in arms}:
            raise BadInput(f"arm {arm.name!r} given twice", param_hint="--arm")
        arms.append(arm)
    return arms


def _conditions(specs: list[str], reg) -> list:
    """Each ``--intervention`` spec (``NAME`` or ``NAME:KEY=VALUE,...``) parsed and checked against
    its class's declared options; the same condition twice (after normalising) is refused."""
    out = []
    for spec in specs:
        reg.get(spec.partition(":")[0].strip(), "--intervention")  # an unknown name lists the valid ones
        cond = parse_condition(spec, reg.classes, reg.singular)
        if declared_options(reg.classes[cond.plugin]):
            create(reg.classes[cond.plugin], cond.name)  # its constructor's checks, before any work
        if cond.name in {c.name for c in out}:
            raise BadInput(f"condition {cond.name!r} given twice", param_hint="--intervention")
        out.append(cond)
    return out


def _plugins_used(eval_cls, interventions, judge_name, retriever_name, task_names, arms) -> dict:
    """Provenance of every plugin the run uses (part of the config: changed plugin code is a
    different run)."""
    kind = member(eval_cls, "evals", "conditions")
    prov = {"eval": registry("evals").provenance(eval_cls.name),
            "interventions": {n: registry(kind).provenance(n) for n in interventions},
            "tasks": {n: registry("tasks").provenance(n.partition(":")[0]) for n in task_names},
            "backends": {a.backend: registry("backends").provenance(a.backend) for a in arms}}
    if judge_name:
        prov["judge"] = registry("judges").provenance(judge_name)
    if retriever_name:
        prov["retriever"] = registry("retrievers").provenance(retriever_name)
    return prov


def execute(p: RunRequest) -> None:
    started = time.time()
    if p.out:
        RunStore(p.out).check_target()  # a file, or a directory of other things: refused before any work
    eval_cls = registry("evals").get(p.eval_name, "--plugin")
    defaults = dict(eval_cls.defaults)
    arms_table = load_arms(p.arms_file)
    arms_table.update({a.name: a for a in p.extra_arms})
    arms = _resolve_arms(p, arms_table)
    for key in GEN_KEYS:
        if getattr(p, key) is not None and key not in defaults:
            takes = ", ".join("--" + k.replace("_", "-") for k in GEN_KEYS if k in defaults)
            raise BadInput(f"eval {eval_cls.name!r} has no {key} setting (it takes {takes})",
                           param_hint="--" + key.replace("_", "-"))
    kind = member(eval_cls, "evals", "conditions")
    ireg = registry(kind)
    conditions = _conditions(list(p.interventions or defaults.get("interventions", ())), ireg)
    interventions = [c.name for c in conditions]
    plugin_names = list(dict.fromkeys(c.plugin for c in conditions))
    _check_options(p.options, eval_cls, [ireg.classes[n] for n in plugin_names])
    judge = judge_name = None
    if member(eval_cls, "evals", "uses_judge"):
        judge_name = p.judge_name or "embedding"
        judge = registry("judges").create(judge_name, p.judge_options, arms_table, param_hint="--judge")
    elif p.judge_name or p.judge_options:
        raise BadInput(f"eval {eval_cls.name!r} grades its own answers and takes no judge", param_hint="--judge")
    retriever = retriever_name = None
    if member(eval_cls, "evals", "uses_retriever"):
        retriever_name = p.retriever_name or "bm25"
        retriever = registry("retrievers").create(retriever_name, p.retriever_options, param_hint="--retriever")
    elif p.retriever_name or p.retriever_options:
        raise BadInput(f"eval {eval_cls.name!r} does no retrieval and takes no retriever", param_hint="--retriever")
    task_names = list(p.task_names or defaults.get("tasks", ("chunks",)))
    if len(set(task_names)) < len(task_names):
        raise BadInput(f"a task is given twice: {', '.join(task_names)}", param_hint="--task")
    limit = p.limit or defaults.get("limit")
    items, task_configs = load_items(task_names, p.task_options, p.data_file, limit)
    for name in plugin_names:
        need = member(ireg.classes[name], kind, "min_items")
        if len(items) < need:
            raise BadInput(f"the {name} intervention needs at least {need} items, the run has {len(items)}",
                           param_hint="--limit")
    if any(m.name == "check_setup" for m in KINDS[kind].members):
        for c in conditions:  # what a condition cannot do with these arms (a teacher arm, a donor arm)
            check_condition = member(ireg.classes[c.plugin], kind, "check_setup")
            if check_condition is not None:
                check_condition(c.options, arms, arms_table)

    check = member(eval_cls, "evals", "check_setup")
    if check is not None:  # what the eval cannot do with these arms, judge or items: refused before any work
        check(arms, judge, {"options": p.options, "interventions": interventions,
                            "judge": judge.config() if judge is not None else None,
                            "retriever": retriever.config() if retriever is not None else None}, items)

    def pick(key):
        return getattr(p, key) if getattr(p, key) is not None else defaults[key]

    fingerprints = {a.name: _fingerprint(a) for a in arms}
    config = redact({
        "eval": eval_cls.name,
        "arms": [_arm_config(a, fingerprints[a.name]) for a in arms],
        "interventions": interventions,
        # options of conditions given with some (every declared key, defaults too); absent otherwise
        **({"condition_options": {c.name: c.options for c in conditions if c.given}}
           if any(c.given for c in conditions) else {}),
        "tasks": task_configs,
        "judge": checked_config("judges", judge_name, judge.config()) if judge is not None else None,
        **({"retriever": checked_config("retrievers", retriever_name, retriever.config())}
           if retriever is not None else {}),
        "samples": pick("samples"),
        "limit": limit,
        "seed": p.seed,
        **{k: pick(k) for k in GEN_KEYS if k in defaults},
        "options": p.options,
        "items_sha": items_sha(items),
        "plugins": _plugins_used(eval_cls, plugin_names, judge_name, retriever_name, task_names, arms),
    })
    out = Path(p.out or Path("runs") / f"{eval_cls.name}-{config_hash(config)[:10]}")
    store = RunStore(out)
    manifest = {"record_type": member(eval_cls, "evals", "record_type"), "config": config,
                "command": redact_argv(list(p.argv)), "versions": versions(), "git_sha": git_sha(),
                "fingerprints": redact({k: v for k, v in fingerprints.items() if v}),
                "item_ids": [i.id for i in items], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    resuming = store.open(manifest, [{"id": i.id, "prefix": i.prefix, "suffix": i.suffix, "cluster": i.cluster,
                                      "meta": i.meta} for i in items])
    try:
        _execute(p, eval_cls, config, (arms, arms_table), items, (judge, retriever), ireg, store, resuming, started)
    finally:
        store.unlock()
        if retriever is not None and member(retriever, "retrievers", "close"):
            retriever.close()


def _execute(p, eval_cls, config, arms, items, graders, ireg, store, resuming, started) -> None:
    judge, retriever = graders
    arms, arms_table = arms
    out = store.root
    before = len(store.read(SAMPLES))
    store.read(THOUGHTS)  # foreign or conflicting records stop the run here, before any work
    click.echo(f"{'resuming' if resuming else 'new run'}: {out}  ({before} records already done)", err=True)

    backends, resolved = {}, {}

    def release() -> None:
        """Record each open backend's final info() (device, dtype, server counters), then close it
        (a launched server stops) before the next arm's backend starts."""
        for name, b in list(backends.items()):
            if member(b, "backends", "info"):
                resolved[name] = b.info()
            if member(b, "backends", "close"):
                b.close()
        backends.clear()

    def make_backend(arm):
        if arm.name not in backends:
            release()  # one arm's model (or server) at a time
            backends[arm.name] = registry("backends").get(arm.backend)(arm)
            if member(backends[arm.name], "backends", "info"):  # device, dtype, model class as loaded
                resolved[arm.name] = backends[arm.name].info()
        return backends[arm.name]

    ctx = RunContext(eval_cls.name, dict(config, options=p.options), arms, items, judge, store, ireg.classes,
                     make_backend, quiet=p.quiet, retriever=retriever, arms_table=arms_table)
    try:
        eval_cls().run(ctx)
    except BaseException:
        # A new run that failed before writing any work (a model that cannot load, say) removes
        # what it wrote (its directory, if it made it); a run with finished work keeps it for resuming.
        try:
            release()
        except Exception:  # the run's own error is the one to report
            pass
        if not resuming and not (out / SAMPLES).exists() and not (out / THOUGHTS).exists():
            store.discard()
        raise
    release()
    s = ctx.stats
    tps = s["generated_tokens"] / s["generation_s"] if s["generation_s"] else None
    invocations = store.manifest().get("invocations", [])
    invocations.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                        "wall_s": round(time.time() - started, 1), "new_records": s["new_records"],
                        "generated_tokens": s["generated_tokens"], "generation_s": round(s["generation_s"], 2),
                        "generated_tok_per_s": round(tps, 1) if tps else None, "backends": redact(resolved)})
    store.update_manifest(invocations=invocations)

    from harness.report import SectionFailed, console_summary, load_run, render_report

    records, manifest = load_run(store)
    failed = None
    try:
        summary, _ = render_report(store, records, manifest)
    except SectionFailed as exc:  # the records and the rest of the report are written: say so, then fail
        failed, summary = exc, exc.summary
        failed.console = ""  # printed below with the run's header, not again by the error
    judged = ""
    if config["judge"]:
        judge_cfg = ", ".join(f"{k}={v}" for k, v in config["judge"].items() if k != "name" and not isinstance(v, dict))
        judged = f"; judge {config['judge']['name']}{f' ({judge_cfg})' if judge_cfg else ''}"
    click.echo(f"\n{eval_cls.name}: {len(items)} items x {config['samples']} samples{judged}; 95% bootstrap CIs "
               f"over items (* = whole sources resampled)\n")
    click.echo(console_summary(records, manifest, summary))
    rate = f", {tps:.0f} generated tok/s" if tps else ""
    click.echo(f"\n{s['new_records']} new records ({s['generated_tokens']} tokens generated{rate}) "
               f"in {time.time() - started:.0f}s")
    click.echo(f"report: {out / 'report.md'}")
    if failed is not None:
        raise failed
