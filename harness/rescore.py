"""``harness rescore RUN_DIR``: grade a run's stored records again, without generating, by its eval.

The run's eval (``manifest["config"]["eval"]``) does the grading through its ``regrade(records,
manifest, **options)`` (``harness.protocols.KINDS["evals"]``); the flags after ``RUN_DIR`` are the
ones its ``regrade_options`` declare (``--KEY VALUE`` or ``--KEY=VALUE``). The command takes the
run's lock, keeps the old records as ``samples.jsonl.bak-<time>``, writes the regraded ones, records
the rescore in the manifest (with the eval's ``graded_field`` counted before and after) and renders
the report again. Light imports only: the command line loads this module.
"""

from __future__ import annotations

import time

import click

from harness.errors import BadInput


def _flags(args: list[str]) -> dict[str, str]:
    """``["--workers", "2", "--timeout=3"]`` -> ``{"workers": "2", "timeout": "3"}``."""
    out, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise BadInput(f"unexpected argument {arg!r} (flags are --KEY VALUE)", param_hint="rescore")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise BadInput(f"--{key} needs a value", param_hint="rescore")
            value, i = args[i + 1], i + 1
        out[key.replace("-", "_")] = value
        i += 1
    return out


def _count(records, field: str | None) -> int | None:
    return None if field is None else sum(bool(r.get(field)) for r in records)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.pass_context
def rescore(ctx, run_dir):
    """Regrade a run's records with its eval's grading (no generation), then rewrite its report.

    Flags after RUN_DIR belong to the run's eval (reasoning: --workers N grading processes,
    --timeout SECONDS per answer, default 5). The old samples file is kept as
    samples.jsonl.bak-<time>; the manifest records each rescore."""
    from harness.options import parse_options
    from harness.plugins import registry
    from harness.protocols import member
    from harness.report import load_run, render_report
    from harness.store import RunStore

    store = RunStore(run_dir)
    manifest = store.manifest()
    name = manifest["config"]["eval"]
    evals = registry("evals")
    cls = evals.get(name, "RUN_DIR")
    if member(cls, "evals", "regrade") is None:
        able = ", ".join(n for n, c in evals.classes.items() if member(c, "evals", "regrade") is not None)
        raise click.ClickException(f"{run_dir} is a {name} run, and the {name} eval cannot regrade its records "
                                   f"(evals that can: {able or 'none'})")
    options = parse_options(member(cls, "evals", "regrade_options"), _flags(ctx.args), f"{name} rescore",
                            "rescore")
    field = member(cls, "evals", "graded_field")
    store.lock()  # a run still writing this directory, or another rescore, is refused
    try:
        records = store.read()
        before = _count(records, field)
        started = time.time()
        records = cls().regrade(records, manifest, **options)
        after = _count(records, field)
        backup = store.rewrite(records)
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "records": len(records), "backup": backup,
                 "options": options}
        if field is not None:
            entry.update({f"{field}_before": before, f"{field}_after": after})
        store.update_manifest(rescored=manifest.get("rescored", []) + [entry])
    finally:
        store.unlock()
    records, manifest = load_run(store)
    render_report(store, records, manifest)
    counted = f": {before} -> {after} {field}" if field is not None else ""
    click.echo(f"rescored {len(records)} records in {time.time() - started:.1f}s{counted}; previous records kept "
               f"in {backup}; report: {store.root / 'report.md'}")
