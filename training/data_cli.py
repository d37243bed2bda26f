"""``harness data``: validate interleaved-thinking data and augment raw chunks with a teacher.

Added to the CLI through the ``register_commands`` hook. Torch-free at import: a teacher or a
tokenizer is only built inside the commands that need one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from tasks.loading import DataError, read_rows
from tasks.thought_spans import CLOSE, OPEN
from training.data import sample_data


@hookimpl
def register_commands(cli):
    cli.add_command(data)


def _arm(name: str, arms_file: str | None, param_hint: str):
    """Resolve an arm the way ``harness run`` does (an unknown arm or backend is a BadInput)."""
    from harness.arms import load_arms, resolve_arm
    from harness.plugins import registry

    try:
        arm = resolve_arm(name, load_arms(arms_file))
    except BadInput as exc:
        raise BadInput(exc.message.removeprefix("--arm: "), param_hint=param_hint) from exc
    registry("backends").get(arm.backend, "backend")
    return arm


def _backend(arm):
    """The arm's backend object (loading the model happens on its first use)."""
    from harness.plugins import registry

    return registry("backends").get(arm.backend)(arm)


def _write_jsonl(fh, rows) -> None:
    fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    fh.flush()


def _finished_ids(path: Path) -> set[str]:
    """Ids in a JSONL output file. A last line cut off by a killed run is removed first so that
    appending goes on from a clean line."""
    if not path.exists():
        return set()
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        keep = raw.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(keep)
        raw = raw[:keep]
    ids = set()
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{n}: not a row written by harness data augment ({exc})") from exc
    return ids


@click.group()
def data():
    """Interleaved-thinking data: validate files, augment raw chunks with a teacher's thoughts.

    \b
    harness data validate sample
    harness data augment sample --teacher smollm2-135m --mode insert --out thoughts.jsonl
    """


def _tag(ctx, param, value: str) -> str:
    if not value:
        raise BadInput("a thought tag cannot be empty", param_hint=param.opts[0])
    return value


_tag_options = [
    click.option("--think-open", default=OPEN, show_default=True, callback=_tag, help="Tag that opens a thought."),
    click.option("--think-close", default=CLOSE, show_default=True, callback=_tag, help="Tag that closes a thought."),
    click.option("--text-column", default="text", show_default=True, help="Column with the text."),
    click.option("--split", default="train", show_default=True, help="Split, for a Hub dataset id."),
    click.option("--arms-file", type=click.Path(), help="TOML arms file extending the packaged one."),
]


def _with(options):
    def wrap(f):
        for opt in reversed(options):
            f = opt(f)
        return f
    return wrap


@data.command()
@click.argument("file")
@_with(_tag_options)
@click.option("--original-column", default="original", show_default=True,
              help="Column with the raw chunk; rows that have it must give it back once thoughts are stripped.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Longest allowed row (thoughts and tags included).")
@click.option("--arm", help="Count lengths in this arm's tokens (default: whitespace words).")
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
@click.option("--write-valid", type=click.Path(dir_okay=False), help="Write the valid rows to this JSONL file.")
@click.option("--show", type=click.IntRange(min=0), default=20, show_default=True, help="Malformed rows listed.")
@click.pass_context
def validate(ctx, file, think_open, think_close, text_column, split, arms_file, original_column, max_tokens, arm,
             as_json, write_valid, show):
    """Check interleaved-thinking rows and print a data audit.

    FILE is a JSONL or parquet file, a Hub dataset id, or `sample` (the packaged 32 rows). A row is
    valid when its tags are balanced and not nested, it has at least one non-empty thought, it
    gives back its original (when it has one) once thoughts are stripped, and it fits --max-tokens.
    Malformed rows are listed as FILE:LINE: problem.

    Exit status: 0 when every row is valid, 1 when some row is malformed (or the file cannot be
    read), 2 for bad options or an unknown arm.
    """
    from training.interleaved import audit, check_row, format_audit

    source = sample_data("interleaved") if file == "sample" else file
    count_tokens = None
    if arm is not None:
        backend = _backend(_arm(arm, arms_file, "--arm"))
        count_tokens = lambda s: len(backend.encode(s))  # noqa: E731
    rows = read_rows(source, split=split)
    if not rows:
        raise DataError(f"no rows in {source}")
    options = dict(text_column=text_column, original_column=original_column, open_tag=think_open,
                   close_tag=think_close, max_tokens=max_tokens, count_tokens=count_tokens)
    checks = [check_row(r, **options) for r in rows]
    summary = audit(rows, checks=checks, show=show, **options)
    if write_valid:
        with open(write_valid, "w", encoding="utf-8") as fh:
            _write_jsonl(fh, ({k: v for k, v in r.items() if not k.startswith("_")}
                              for r, c in zip(rows, checks) if c["ok"]))
        click.echo(f"wrote {summary['valid_rows']} valid rows to {write_valid}", err=True)
    if as_json:
        click.echo(json.dumps(dict(summary, source=source), indent=2))
    else:
        click.echo(f"{source}\n\n{format_audit(summary)}")
    ctx.exit(1 if summary["malformed_rows"] else 0)


@data.command()
@click.argument("file")
@click.option("--teacher", required=True, help="Arm that writes the thoughts (harness list arms, a Hub id or a path).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="JSONL file the kept rows are appended to; rows already in it are skipped.")
@click.option("--mode", type=click.Choice(["rewrite", "insert"]), default="rewrite", show_default=True,
              help="rewrite: the teacher copies the chunk and adds thoughts; insert: the teacher writes one "
                   "thought at each point the harness picks (robust with small teachers).")
@click.option("--limit", type=click.IntRange(min=1), help="Use the first N rows of FILE.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; each thought's seed derives from it.")
@click.option("--every-words", type=click.IntRange(min=1), default=60, show_default=True,
              help="About one thought per this many words.")
@click.option("--max-thought-tokens", type=click.IntRange(min=1), default=48, show_default=True,
              help="insert: most tokens of one thought.")
@click.option("--max-new-tokens", type=click.IntRange(min=1),
              help="rewrite: most tokens of the rewritten chunk (default: its tokens plus room for thoughts).")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1), default=0.95, show_default=True)
@click.option("--chat", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Prompt through the teacher's chat template (auto: when it has one).")
@click.option("--id-column", default="id", show_default=True, help="Column with row ids (rows without one get row00000, row00001, ...).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Rows per generate call; each finished chunk is appended at once.")
@click.option("--retry-rejected", is_flag=True, help="Also redo rows already in OUT.rejected.jsonl.")
@click.option("--keep-unfinished", is_flag=True,
              help="insert: keep rows whose thoughts hit --max-thought-tokens before the close tag (rejected by default).")
@_with(_tag_options)
def augment(file, teacher, out, mode, limit, seed, every_words, max_thought_tokens, max_new_tokens, temperature,
            top_p, chat, id_column, chunk_size, retry_rejected, keep_unfinished, think_open, think_close, text_column, split,
            arms_file):
    """Add a teacher's thoughts to raw chunks; keep the rows that validate.

    FILE is a JSONL or parquet file, a Hub dataset id, or `sample` (the packaged raw chunks).
    Kept rows go to OUT (id, text, original, teacher, mode and the source's other columns),
    rejected ones with their problems to OUT.rejected.jsonl (OUT's .jsonl replaced). Rows already in either file are
    skipped, so a killed run resumes without redoing finished rows.
    """
    from training.interleaved import audit, augment_rows, format_audit

    source = sample_data("chunks") if file == "sample" else file
    teacher_arm = _arm(teacher, arms_file, "--teacher")
    out_path = Path(out)
    rej_path = out_path.with_suffix(".rejected.jsonl") if out_path.suffix == ".jsonl" else Path(f"{out}.rejected.jsonl")
    if os.path.abspath(source) == os.path.abspath(out_path):
        raise BadInput("OUT must differ from FILE", param_hint="--out")
    rows = read_rows(source, split=split)[:limit]
    seen: dict[str, int] = {}
    for n, row in enumerate(rows):
        row_id = str(row.get(id_column) or f"row{n:05d}")
        if row_id in seen:
            raise DataError(f"{row['_source']}:{row['_line']}: duplicate id {row_id!r} (first at line {seen[row_id]})")
        seen[row_id] = row["_line"]
        row[id_column] = row_id
    done = _finished_ids(out_path)
    rejected_before = _finished_ids(rej_path)
    skip = done | (set() if retry_rejected else rejected_before)
    todo = [r for r in rows if r[id_column] not in skip]
    kept_n = rejected_n = 0
    if todo:
        backend = _backend(teacher_arm)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        options = dict(mode=mode, seed=seed, every_words=every_words, max_thought_tokens=max_thought_tokens,
                       temperature=temperature, top_p=top_p, chat={"auto": "auto", "on": True, "off": False}[chat],
                       text_column=text_column, id_column=id_column, open_tag=think_open, close_tag=think_close,
                       max_new_tokens=max_new_tokens, keep_unfinished=keep_unfinished)
        with open(out_path, "a", encoding="utf-8") as keep_fh, open(rej_path, "a", encoding="utf-8") as rej_fh:
            for start in range(0, len(todo), chunk_size):
                kept, rejected = augment_rows(todo[start:start + chunk_size], backend, **options)
                _write_jsonl(keep_fh, (r for r, _ in kept))
                _write_jsonl(rej_fh, (dict(r, problems=c["problems"]) for r, c in rejected))
                kept_n, rejected_n = kept_n + len(kept), rejected_n + len(rejected)
                click.echo(f"{min(start + chunk_size, len(todo))}/{len(todo)} rows: kept {kept_n}, "
                           f"rejected {rejected_n}", err=True)
    click.echo(f"this run: kept {kept_n}, rejected {rejected_n}; skipped {len(rows) - len(todo)} "
               f"rows already done")
    if out_path.exists() and out_path.stat().st_size:
        kept_rows = read_rows(str(out_path))
        summary = audit(kept_rows, text_column="text", original_column="original",
                        open_tag=think_open, close_tag=think_close)
        click.echo(f"{out_path} ({len(kept_rows)} rows kept in all; rejected rows: {rej_path})\n\n"
                   f"{format_audit(summary)}")
    else:
        click.echo(f"{out_path}: no rows kept (rejected rows: {rej_path})")
