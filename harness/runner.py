"""``harness run``: validate everything, open the run store, run the eval, write the report.

All validation (plugin names, arms and model paths, judge and task options, the task's data)
happens before the run directory is created, so a run that fails validation leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import click

from harness.errors import BadInput

from harness import __version__
from harness.arms import load_arms, resolve_arm
from harness.modelspec import resolve_path
from harness.pipeline import RunContext
from harness.plugins import registry
from harness.store import ITEMS, SAMPLES, THOUGHTS, RunStore, config_hash

_SECRET_WORDS = ("key", "token", "secret", "password")


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict:
    out = {"python": platform.python_version(), "harness": __version__}
    for dist in ("torch", "transformers", "tokenizers", "numpy", "scipy", "pluggy", "click"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _public(options: dict) -> dict:
    """Options without values whose keys look like secrets (those come from the environment)."""
    return {k: ("<redacted>" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in options.items()}


def execute(p: dict) -> None:
    started = time.time()
    eval_cls = registry("evals").get(p["eval_name"], "--plugin")
    defaults = dict(eval_cls.defaults)
    arms_table = load_arms(p["arms_file"])
    arms = []
    for name in p["arm_names"]:
        arm = resolve_arm(name, arms_table)
        registry("backends").get(arm.backend, "backend")
        resolve_path(arm)  # missing model path: fails naming the arm and the path
        if arm.name in {a.name for a in arms}:
            raise BadInput(f"arm {arm.name!r} given twice", param_hint="--arm")
        arms.append(arm)
    interventions = list(p["interventions"] or defaults.get("interventions", ()))
    ireg = registry("interventions")
    for name in interventions:
        ireg.get(name, "--intervention")
    judge = registry("judges").get(p["judge_name"], "--judge")(p["judge_options"], arms_table)
    task_options = dict(p["task_options"])
    if p["data_file"]:
        task_options["data"] = p["data_file"]
    task = registry("tasks").get(p["task_name"], "--task")(task_options)
    items = task.items()
    limit = p["limit"] or defaults.get("limit")
    items = items[:limit] if limit else items
    if "swapped" in interventions and len(items) < 2:
        raise BadInput("the swapped intervention needs at least 2 items", param_hint="--limit")

    def pick(key):
        return p[key] if p.get(key) is not None else defaults[key]

    config = {
        "eval": eval_cls.name,
        "arms": [a.to_json() for a in arms],
        "interventions": interventions,
        "task": task.config(),
        "judge": judge.config(),
        "samples": pick("samples"),
        "limit": limit,
        "seed": p["seed"],
        "thought_max_tokens": pick("thought_max_tokens"),
        "suffix_max_tokens": pick("suffix_max_tokens"),
        "temperature": pick("temperature"),
        "top_p": pick("top_p"),
        "options": _public(p["options"]),
        "item_ids_sha": hashlib.sha256("\n".join(i.id for i in items).encode()).hexdigest()[:16],
    }
    out = Path(p["out"] or Path("runs") / f"{eval_cls.name}-{config_hash(config)[:10]}")
    store = RunStore(out)
    manifest = {"record_type": getattr(eval_cls, "record_type", eval_cls.name), "config": config,
                "command": p["argv"], "versions": _versions(), "git_sha": _git_sha(),
                "item_ids": [i.id for i in items], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    resuming = store.open(manifest)
    if not resuming:
        store.append([{"id": i.id, "prefix": i.prefix, "suffix": i.suffix, "cluster": i.cluster, "meta": i.meta}
                      for i in items], ITEMS)
    before = len(store.read())
    click.echo(f"{'resuming' if resuming else 'new run'}: {out}  ({before} records already done)", err=True)

    backends, resolved = {}, {}

    def make_backend(arm):
        if arm.name not in backends:
            backends.clear()  # one arm's model in memory at a time
            backends[arm.name] = registry("backends").get(arm.backend)(arm)
            if hasattr(backends[arm.name], "info"):  # device, dtype, model class as actually loaded
                resolved[arm.name] = backends[arm.name].info()
        return backends[arm.name]

    ctx = RunContext(eval_cls.name, dict(config, options=p["options"]), arms, items, judge, store, ireg.classes,
                     make_backend, quiet=p["quiet"])
    try:
        eval_cls().run(ctx)
    except BaseException:
        # A new run that failed before writing any work (a model that cannot load, say) leaves
        # no directory behind; a run with finished work keeps it for resuming.
        if not resuming and not store.read(SAMPLES) and not store.read(THOUGHTS):
            shutil.rmtree(out, ignore_errors=True)
        raise
    s = ctx.stats
    tps = s["generated_tokens"] / s["generation_s"] if s["generation_s"] else None
    invocations = store.manifest().get("invocations", [])
    invocations.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                        "wall_s": round(time.time() - started, 1), "new_records": s["new_records"],
                        "generated_tokens": s["generated_tokens"], "generation_s": round(s["generation_s"], 2),
                        "generated_tok_per_s": round(tps, 1) if tps else None, "backends": resolved})
    store.update_manifest(invocations=invocations)

    from harness.report import console_summary, load_run, render_report

    records, manifest = load_run(store)
    summary, _ = render_report(store, records, manifest)
    judge_cfg = ", ".join(f"{k}={v}" for k, v in config["judge"].items() if k != "name" and not isinstance(v, dict))
    click.echo(f"\n{eval_cls.name}: {len(items)} items x {config['samples']} samples; judge {config['judge']['name']}"
               f"{f' ({judge_cfg})' if judge_cfg else ''}; 95% bootstrap CIs over items "
               f"(* = whole sources resampled)\n")
    click.echo(console_summary(records, manifest, summary))
    rate = f", {tps:.0f} generated tok/s" if tps else ""
    click.echo(f"\n{s['new_records']} new records ({s['generated_tokens']} tokens generated{rate}) "
               f"in {time.time() - started:.0f}s")
    click.echo(f"report: {out / 'report.md'}")
