"""``harness rejudge RUN --judge NAME [--judge-option K=V ...] --out NEW``: a run's generations judged again.

Every thought and predicted suffix (or continuation) of RUN is kept as it is and judged again by
another judge into NEW, a run directory like any other, so ``harness report RUN NEW`` pairs the two
judges item by item (``reports.combine``: each arm shown as ``arm [judge]``). Nothing is generated:
no backend is created.

- NEW holds the source's ``items.jsonl`` and ``thoughts.jsonl`` (copied) and one record per source
  record, its judge fields replaced by the eval's ``rejudge(records, items, judge)``
  (``harness.protocols.KINDS["evals"]``); evals without it are refused, naming those with it.
- NEW's config is the source's with the new judge (and its plugin's provenance) and
  ``rejudged_from`` (the source's config hash); the manifest's ``rejudged_from`` also names the
  source directory. A rerun resumes: records already judged are kept, the rest are judged in
  chunks appended as they finish, so a killed rejudge loses at most the chunk in flight. NEW is
  locked and checked as ``harness run`` checks ``--out`` (a different run or other files refused).
- Verdicts go through the content-keyed cache of :mod:`harness.verdict_cache` (``--no-cache`` to
  bypass it), so judging the same texts with the same judge again costs no judge call.

Bad input (an unknown judge or option, a run whose eval cannot be rejudged, NEW equal to RUN) is
one line, exit 2, before anything is written. Light imports only: the command line loads this module.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

import click

from harness.errors import BadInput

CHUNK_RECORDS = 64  # source records judged (and appended) per chunk


def _able(evals) -> str:
    from harness.protocols import member

    return ", ".join(n for n, c in evals.classes.items() if member(c, "evals", "rejudge") is not None) or "none"


def _arm(d: dict):
    from harness.types import Arm

    names = {f.name for f in fields(Arm)}
    return Arm(**{k: v for k, v in d.items() if k in names})


def _items(src, cfg: dict, manifest: dict) -> list:
    """The source's items from its items.jsonl, checked against its config's ``items_sha``."""
    from harness.fingerprint import items_sha
    from harness.store import ITEMS
    from harness.types import Item

    items = [Item(r["id"], r["prefix"], r["suffix"], r.get("cluster"), r.get("meta") or {})
             for r in src.read(ITEMS) if isinstance(r.get("id"), str)]
    if cfg.get("items_sha") and items_sha(items) != cfg["items_sha"]:
        raise BadInput(f"{src.root / ITEMS} does not hold the run's items (their hash differs from the "
                       "manifest's items_sha); rerun `harness run` on it to restore them", param_hint="RUN")
    missing = set(manifest.get("item_ids") or []) - {i.id for i in items}
    if missing:
        raise BadInput(f"{src.root / ITEMS} lacks items of the run (e.g. {sorted(missing)[0]!r})", param_hint="RUN")
    return items


def _read_source(src) -> tuple[list[dict], list[dict]]:
    """The source's records and thoughts, read under its lock (a run still writing it is refused)."""
    from harness.store import THOUGHTS

    try:
        src.lock()
    except PermissionError:  # a read-only run directory: nobody writes it
        return src.read(), src.read(THOUGHTS)
    try:
        return src.read(), src.read(THOUGHTS)
    finally:
        src.unlock()


def _checked(eval_name: str, sent: list[dict], got) -> list[dict]:
    """The eval's ``rejudge`` return: one record per record sent, with the same keys in order."""
    from harness.checks import PluginReturnError, label
    from harness.store import record_key

    who = label("evals", eval_name)
    if not isinstance(got, (list, tuple)) or len(got) != len(sent):
        n = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
        raise PluginReturnError(f"{who} rejudge() returned {n} record(s) for {len(sent)}")
    for a, b in zip(sent, got):
        if not isinstance(b, dict) or record_key(b) != record_key(a):
            got_key = record_key(b) if isinstance(b, dict) else repr(b)
            raise PluginReturnError(f"{who} rejudge() returned a record for {got_key} where {record_key(a)} was "
                                    "sent (one record back per record, in order)")
    return list(got)


def rejudge_run(run_dir, judge_name: str, judge_options: dict, out, arms_file=None, use_cache: bool = True,
                quiet: bool = False, argv: tuple = ()) -> Path:
    """Judge RUN's records again into ``out`` (see the module docstring); returns ``out``."""
    from harness.arms import load_arms
    from harness.checks import checked_config
    from harness.plugins import registry
    from harness.protocols import member
    from harness.redact import redact
    from harness.store import RunStore, config_hash
    from harness.verdict_cache import CachedJudge, VerdictStore

    started = time.time()
    src = RunStore(run_dir)
    manifest = src.manifest()
    cfg = manifest["config"]
    evals = registry("evals")
    cls = evals.get(cfg["eval"], "RUN")
    name = cls.name
    if member(cls, "evals", "rejudge") is None:
        why = " (it grades its own answers; no judge is involved)" if not member(cls, "evals", "uses_judge") else ""
        raise BadInput(f"{run_dir} is a {name} run, and the {name} eval cannot rejudge its records{why}; "
                       f"evals that can: {_able(evals)}", param_hint="RUN")
    if Path(out).resolve() == src.root.resolve():
        raise BadInput(f"{out} is the run being rejudged; give a new directory (the source is never changed)",
                       param_hint="--out")
    target = RunStore(out)
    target.check_target()
    arms = [_arm(a) for a in cfg.get("arms", [])]
    table = load_arms(arms_file)  # for a judge that runs an arm (llm): these, then the run's own arms
    for a in arms:
        table.setdefault(a.name, a)
    judges = registry("judges")
    judge = judges.create(judge_name, judge_options, table, param_hint="--judge")
    judge_cfg = redact(checked_config("judges", judge_name, judge.config()))
    provenance = judges.provenance(judge_name)
    cached = CachedJudge(judge, judge_cfg, provenance, VerdictStore() if use_cache else None)
    items = _items(src, cfg, manifest)
    check = member(cls, "evals", "check_setup")
    if check is not None:  # e.g. pairwise: a judge without compare()
        check(arms, cached, {"options": cfg.get("options") or {}, "interventions": cfg.get("interventions") or [],
                             "judge": judge_cfg, "retriever": cfg.get("retriever")}, items)
    records, thoughts = _read_source(src)
    source_hash = manifest.get("config_hash") or config_hash(cfg)
    new_cfg = dict(cfg, judge=judge_cfg, rejudged_from=source_hash,
                   plugins=dict(cfg.get("plugins") or {}, judge=provenance))
    keep = {k: v for k, v in manifest.items() if k not in ("config_hash", "created", "command", "rejudged_from",
                                                            "rescored", "report", "invocations")}
    new_manifest = dict(keep, config=new_cfg, command=_argv(argv), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        invocations=list(manifest.get("invocations") or []),  # how the records were generated
                        rejudged_from={"path": str(src.root.resolve()), "config_hash": source_hash,
                                       "judge": cfg.get("judge"), "command": manifest.get("command")})
    try:
        resuming = target.open(new_manifest, [{"id": i.id, "prefix": i.prefix, "suffix": i.suffix,
                                               "cluster": i.cluster, "meta": i.meta} for i in items])
    except click.ClickException:
        target.unlock()
        raise
    try:
        done = _judge_all(target, cls, name, records, thoughts, {i.id: i for i in items}, cached, resuming, quiet)
        invocations = target.manifest().get("invocations", [])
        invocations.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                            "wall_s": round(time.time() - started, 1), "new_records": len(records) - done,
                            "generated_tokens": 0,
                            "rejudge": {"judge_calls": cached.calls, "judged": cached.judged,
                                        "cache_hits": cached.hits,
                                        "cache": str(cached.store.path) if cached.store is not None else None}})
        target.update_manifest(invocations=invocations)
    finally:
        target.unlock()
        if cached.store is not None:
            cached.store.close()
    _finish(target, cfg, judge_cfg, len(records), done, cached, started, run_dir)
    return target.root


def _argv(argv) -> list:
    from harness.redact import redact_argv

    return redact_argv(list(argv))


def _judge_all(target, cls, name, records, thoughts, items, cached, resuming, quiet) -> int:
    """Copy the thoughts, then judge every source record not in ``target`` yet, chunk by chunk;
    returns how many were there already. A new run that fails before its first record is removed."""
    from tqdm.auto import tqdm

    from harness.store import SAMPLES, THOUGHTS, record_key

    try:
        have = target.read(THOUGHTS) if (target.root / THOUGHTS).exists() else []
        if have != thoughts:
            target.write_text(THOUGHTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in thoughts))
        done = {record_key(r) for r in target.read()}
        pending = [r for r in records if record_key(r) not in done]
        evaluator = cls()
        bar = tqdm(total=len(pending), desc=f"{name}: rejudging", unit="record", leave=False, disable=quiet)
        for start in range(0, len(pending), CHUNK_RECORDS):
            part = pending[start:start + CHUNK_RECORDS]
            target.append(_checked(name, part, evaluator.rejudge(part, items, cached)))
            bar.update(len(part))
        bar.close()
    except BaseException:
        if not resuming and not (target.root / SAMPLES).exists():
            (target.root / THOUGHTS).unlink(missing_ok=True)  # a copy this invocation wrote
            target.discard()
        raise
    return len(records) - len(pending)


def _finish(target, cfg, judge_cfg, total, done, cached, started, run_dir) -> None:
    from harness.report import console_summary, load_run, render_report

    records, manifest = load_run(target)
    summary, _ = render_report(target, records, manifest)
    click.echo(console_summary(records, manifest, summary))
    shown = ", ".join(f"{k}={v}" for k, v in judge_cfg.items() if k != "name" and not isinstance(v, dict))
    where = f"the verdict cache ({cached.store.path})" if cached.store is not None else "no cache (--no-cache)"
    click.echo(f"\nrejudged {total - done} of {total} records ({done} already done) with judge {judge_cfg['name']}"
               f"{f' ({shown})' if shown else ''} in {time.time() - started:.1f}s: {cached.judged} judged in "
               f"{cached.calls} call(s), {cached.hits} from {where}; no generation")
    click.echo(f"report: {target.root / 'report.md'}  (judges side by side: harness report {run_dir} {target.root})")
