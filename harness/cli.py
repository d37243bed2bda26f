"""The ``harness`` command line. Importing this module does not import torch."""

from __future__ import annotations

import json
import sys

import click

from harness.errors import BadInput
from harness.options import parse_kv

from harness import __version__
from harness.plugins import broken_plugins, get_plugin_manager, plugin_summary, registry
from harness.protocols import member
from harness.redact import redact_text
from harness.rescore import rescore
from reports import options as report_defaults


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite (``nan`` and ``inf`` pass click's own range check)."""

    def convert(self, value, param, ctx):
        import math

        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            raise BadInput(f"{value!r} is not a finite number", param_hint=param.opts[0] if param else None)
        return value


class PluginGroup(click.Group):
    """The ``harness`` group: plugins' ``register_commands`` add their commands the first time a
    command is looked up or listed (so ``cli`` works the same from tests and the entry point)."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugins_added:
            PluginGroup._plugins_added = True
            get_plugin_manager().hook.register_commands(cli=self)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # a URL's password or an api_key never reaches the console
            exc.message = redact_text(exc.message)
            raise

    def get_command(self, ctx, cmd_name):
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return super().list_commands(ctx)


@click.group(cls=PluginGroup)
@click.version_option(__version__, prog_name="harness")
def cli():
    """Evaluate and probe small language-model checkpoints ("arms") with error bars.

    \b
    harness run --plugin thought_probe --arm smollm2-135m
    harness report runs/<run>
    harness list interventions
    """


@cli.command()
@click.option("--plugin", "eval_name", default="thought_probe", show_default=True, help="Eval to run (harness list evals).")
@click.option("--arm", "arm_names", multiple=True,
              help="Arm name, Hub id, local model dir or .gguf (repeatable; default smollm2-135m).")
@click.option("--arms-file", type=click.Path(), help="TOML arms file extending the packaged one.")
@click.option("--intervention", "interventions", multiple=True,
              help="Condition (repeatable; default: the eval's): a thought intervention, or an evidence condition "
                   "for a tool-use eval.")
@click.option("--task", "task_names", multiple=True,
              help="Task (repeatable; harness list tasks; default: the eval's, chunks for probe evals).")
@click.option("--task-option", multiple=True,
              help="Task option KEY=VALUE for every task, or TASK.KEY=VALUE for one (repeatable).")
@click.option("--data-file", help="Local JSONL/parquet file or Hub dataset id for the task.")
@click.option("--judge", "judge_name", help="Judge, for evals that judge (harness list judges; default embedding).")
@click.option("--judge-option", multiple=True, help="Judge option KEY=VALUE, e.g. threshold=0.7 (repeatable).")
@click.option("--retriever", "retriever_name",
              help="Retriever, for evals that search (harness list retrievers; default bm25).")
@click.option("--retriever-option", multiple=True, help="Retriever option KEY=VALUE, e.g. corpus=wiki.jsonl (repeatable).")
@click.option("--samples", type=click.IntRange(min=1), help="Samples per item and condition (default: the eval's).")
@click.option("--limit", type=click.IntRange(min=1), help="Use the first N items (default: the eval's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed; every sample's seed derives from it.")
@click.option("--thought-max-tokens", type=click.IntRange(min=1), help="Max sampled thought tokens (default: the eval's, 48).")
@click.option("--suffix-max-tokens", type=click.IntRange(min=1), help="Max predicted suffix tokens (default: the eval's, 128).")
@click.option("--temperature", type=FiniteFloat(min=0), help="Sampling temperature (default: the eval's, 1.0; 0 = greedy).")
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), help="Nucleus sampling mass (default: the eval's, 0.95).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="Max completion tokens (reasoning; default: the eval's, 512).")
@click.option("--option", "options", multiple=True, help="Eval/intervention option KEY=VALUE (repeatable).")
@click.option("--backend", "backend_name",
              help="Backend for every --arm, overriding the arm's own (harness list backends), e.g. openai.")
@click.option("--backend-url", "backend_urls", multiple=True,
              help="Server URL for arms on a server backend (repeatable: items are sharded over the servers).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]),
              help="Weights dtype for every --arm, overriding the arm's own (auto: bfloat16 on CUDA and on CPUs "
                   "with avx512_bf16/amx_bf16, else float32).")
@click.option("--out", type=click.Path(), help="Run directory (default: runs/<eval>-<config hash>).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(eval_name, arm_names, arms_file, interventions, task_names, task_option, data_file, judge_name, judge_option,
        retriever_name, retriever_option, samples, limit, seed, thought_max_tokens, suffix_max_tokens, temperature, top_p, max_new_tokens, options,
        backend_name, backend_urls, dtype, out, quiet):
    """Run an eval on one or more arms; rerunning resumes and skips finished records."""
    from harness.runner import RunRequest, execute

    execute(RunRequest(
        eval_name=eval_name, arm_names=arm_names or ("smollm2-135m",), arms_file=arms_file,
        interventions=interventions, task_names=task_names, task_options=parse_kv(task_option, "--task-option"),
        data_file=data_file, judge_name=judge_name, judge_options=parse_kv(judge_option, "--judge-option"),
        retriever_name=retriever_name, retriever_options=parse_kv(retriever_option, "--retriever-option"),
        samples=samples, limit=limit, seed=seed, thought_max_tokens=thought_max_tokens,
        suffix_max_tokens=suffix_max_tokens, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
        options=parse_kv(options, "--option"), backend_name=backend_name, backend_urls=backend_urls, dtype=dtype,
        out=out, quiet=quiet, argv=tuple(sys.argv)))


@cli.command(name="list")
@click.argument("kind", type=click.Choice(["evals", "interventions", "evidence", "retrievers", "backends", "judges", "tasks", "arms",
                                               "report_sections"]))
@click.option("--arms-file", type=click.Path(), help="Include arms from this TOML file.")
def list_(kind, arms_file):
    """List the names of one kind of plugin (or arms) with a one-line description."""
    if kind == "arms":
        from harness.arms import load_arms

        for name, arm in sorted(load_arms(arms_file).items()):
            click.echo(f"{name:<24} {arm.model}  (backend {arm.backend})")
        return
    reg = registry(kind)
    for name in reg.names():
        cls = reg.classes[name]
        click.echo(f"{name:<24} {cls.description}  [{reg.sources[name]}]")
        for opt in member(cls, kind, "options") if kind in ("judges", "tasks", "retrievers", "interventions") else ():
            click.echo(f"{'':<26}{opt.describe()}")
    for name, why in sorted(reg.refused.items()):
        click.echo(f"{name:<24} BROKEN: {why}")
    broken = [b for b in broken_plugins() if b["error"].startswith("import failed")]
    for b in broken:
        click.echo(f"{'(plugin ' + b['name'] + ')':<24} BROKEN: {b['error']} (dist {b['dist']})")


@cli.command()
def plugins():
    """Show loaded plugins and what each registers (JSON)."""
    click.echo(json.dumps(plugin_summary(), indent=2))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--baseline", help="Arm the others are compared with (default: every pair of arms).")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report here (default: print it; "
              "a single run's report.md and summary.json are always refreshed).")
@click.option("--ci-method", type=click.Choice(report_defaults.CI_METHODS), default=report_defaults.DEFAULT_CI_METHOD,
              show_default=True)
@click.option("--resamples", "B", type=click.IntRange(min=100), default=report_defaults.DEFAULT_RESAMPLES,
              show_default=True,
              help="Bootstrap resamples.")
@click.option("--clusters", type=click.Choice(report_defaults.CLUSTER_MODES), default=report_defaults.DEFAULT_CLUSTERS,
              show_default=True,
              help="Resample whole sources when items share one (auto: when some source has several items).")
def report(run_dirs, baseline, fmt, out, ci_method, B, clusters):
    """Report one run, or pair several runs that share items (e.g. arms run at different times)."""
    from harness.report import SectionFailed, build_report, render_report
    from harness.runs import load_runs
    from harness.store import RunStore
    from reports.options import is_default

    records, manifest = load_runs(run_dirs)
    arms = list(dict.fromkeys(r["arm"] for r in records))
    if baseline is not None and baseline not in arms:
        raise BadInput(f"unknown arm {baseline!r}; arms in these runs: {', '.join(arms)}", param_hint="--baseline")
    manifest["report"] = {"baseline": baseline, "method": ci_method, "B": B, "clusters": clusters}
    written = []  # where the report went, for the error when a part of it raised
    if len(run_dirs) == 1 and is_default(manifest["report"]):
        store = RunStore(run_dirs[0])
        try:
            summary, markdown = render_report(store, records, manifest)  # refresh the run's own
        except SectionFailed as exc:  # the files are written; say so after the report is out
            summary, markdown = exc.summary, exc.markdown
        written.append(f"{store.root / 'report.md'} and summary.json")
    else:
        summary, markdown = build_report(records, manifest)
    if fmt == "md":
        text = markdown
    elif fmt == "json":
        from reports.render import json_report

        text = json_report(summary, manifest)
    else:
        from reports.render import html_report

        text = html_report(markdown, summary, f"{manifest['config']['eval']} report")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"report: {out}", err=True)
        written.append(out)
    else:
        click.echo(text)
    if summary.get("failures"):
        raise SectionFailed(summary["failures"], "the rest of the report was "
                            + (f"written to {', '.join(written)}" if written else "printed"))


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False), metavar="STUDY")
@click.option("--out", type=click.Path(file_okay=False), help="Study directory (default: the file's out, "
              "else runs/study-<file name>); one run directory per eval under it.")
def study(study_file, out):
    """Run a study file's evals over the same arms; one combined OUT/report.md (rerun to resume).

    STUDY is a TOML file or a packaged study's name: `cpu` (all five tables on CPU in minutes) or
    `reference` (the reference study's settings)."""
    from harness.study import run_study

    run_study(study_file, out)


cli.add_command(rescore)  # regrades a run's records through its eval's regrade (harness/rescore.py)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False), metavar="RUN")
@click.option("--judge", "judge_name", required=True, help="The new judge (harness list judges).")
@click.option("--judge-option", multiple=True, help="Judge option KEY=VALUE (repeatable).")
@click.option("--arms-file", type=click.Path(), help="TOML arms file, for a judge that runs an arm (llm).")
@click.option("--out", required=True, type=click.Path(), help="The new run directory (never RUN itself).")
@click.option("--no-cache", is_flag=True, help="Judge everything again: neither read nor write the verdict cache.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def rejudge(run_dir, judge_name, judge_option, arms_file, out, no_cache, quiet):
    """Judge a probe, reward-gate or pairwise run's stored suffixes again with another judge, into a
    new run (no generation; rerun to resume). Verdicts are cached by content under
    $HARNESS_VERDICT_CACHE (default ~/.cache/harness/verdicts). `harness report RUN OUT` then pairs
    the two judges item by item."""
    from harness.rejudge import rejudge_run

    rejudge_run(run_dir, judge_name, parse_kv(judge_option, "--judge-option"), out, arms_file=arms_file,
                use_cache=not no_cache, quiet=quiet, argv=tuple(sys.argv))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False), metavar="RUN...")
@click.option("--out", type=click.Path(file_okay=False), help="Directory for index.html (default: RUN/view for one run).")
@click.option("--title", help="The page's title (default: the runs' directories).")
def view(run_dirs, out, title):
    """Browse runs' samples offline: one self-contained HTML page (filters, search, items side by
    side, sort by a sensitivity delta), opened from disk."""
    from harness.view import write_view

    path = write_view(run_dirs, out, title)
    click.echo(f"view: {path.resolve().as_uri()}", err=True)


def main():
    cli(prog_name="harness")

