"""A study's ``[[train]]`` steps: arms the study trains itself before its evals run.

::

    arms = ["tiny-qwen3", "tiny-sft"]       # a trained arm is used by its name

    [[train]]
    name = "tiny-sft"                       # required: the new arm's name (not an existing arm)
    stage = "sft"                           # required: harness train STAGE
    arm = "tiny-qwen3"                      # required: the arm it starts from (or an earlier step's name)
    args = { steps = 8, lr = 1e-3 }         # optional: flags of harness train STAGE (--steps 8 --lr 0.001)

Each step runs ``harness train STAGE --arm ARM --out OUT/train/NAME [--arms-file F] [--seed S]
ARGS`` through the ``train`` command the training plugin adds to the CLI; steps run in the order
given, before any eval. The seed is the study's unless ``args`` sets one. A finished checkpoint
with the same settings is not trained again, a killed one resumes (``harness train`` does both),
and one trained with other settings is refused. The evals then see the checkpoint as an arm
called NAME, with its parent's device and dtype and the think tags and options its
``lineage.json`` carries. A step that fails stops the study before its evals.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import click

from harness.errors import BadInput

TRAIN_KEYS = {"name", "stage", "arm", "args"}
SET_BY_STUDY = {"arm", "out", "arms_file"}  # flags the study fills in itself
TRAIN_DIR = "train"


@dataclass
class TrainStep:
    name: str
    stage: str
    arm: str
    args: dict  # flag name (as in --help, without --) -> value as text


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def train_group(where: str) -> click.Group:
    """The ``harness train`` group, as the plugins' ``register_commands`` hooks add it to the CLI."""
    from harness.plugins import get_plugin_manager

    group = click.Group("harness")
    get_plugin_manager().hook.register_commands(cli=group)
    cmd = group.get_command(click.Context(group), "train")
    if not isinstance(cmd, click.Group):
        raise BadInput(f"{where}: [[train]] needs the `harness train` command, which is not available "
                       "(the training plugin did not load; see `harness plugins`)")
    return cmd


def parse_steps(raw, path: Path, known_arms: set[str]) -> list[TrainStep]:
    """The ``[[train]]`` tables, checked against ``harness train STAGE``'s flags before anything runs."""
    from harness.arms import looks_like_spec

    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise BadInput(f"{path}: train must be [[train]] tables")
    steps: list[TrainStep] = []
    train = train_group(str(path)) if raw else None
    for i, table in enumerate(raw):
        where = f"{path}: [[train]] #{i + 1}"
        unknown = sorted(set(table) - TRAIN_KEYS)
        if unknown:
            raise BadInput(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(TRAIN_KEYS))}")
        for key in ("name", "stage", "arm"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise BadInput(f"{where}: needs {key} = \"...\" (a non-empty string)")
        name, stage, arm = table["name"], table["stage"], table["arm"]
        where += f" ({name})"
        if "/" in name or name in (".", ".."):
            raise BadInput(f"{where}: name {name!r} is not a directory name")
        if name in known_arms or name in {s.name for s in steps}:
            raise BadInput(f"{where}: name {name!r} is an arm already; give the trained arm a new name")
        if arm not in known_arms and arm not in {s.name for s in steps} and not looks_like_spec(arm):
            raise BadInput(f"{where}: unknown arm {arm!r} to train from; valid: an arm of the arms file, a model "
                           f"path or Hub id, or an earlier [[train]] name ({', '.join(s.name for s in steps) or 'none yet'})")
        stage_cmd = train.get_command(click.Context(train), stage)
        if stage_cmd is None:
            raise BadInput(f"{where}: unknown stage {stage!r}; valid: {', '.join(train.list_commands(click.Context(train)))}")
        flags = {p.name for p in stage_cmd.params if isinstance(p, click.Option)}
        args = table.get("args", {})
        if not isinstance(args, dict):
            raise BadInput(f"{where}: args must be a table, e.g. args = {{ steps = 8 }}")
        parsed = {}
        for key, value in args.items():
            flag = key.replace("-", "_")
            if flag in SET_BY_STUDY:
                raise BadInput(f"{where}: args.{key} is set by the study (arm = ..., OUT/{TRAIN_DIR}/{name}, arms_file)")
            if flag not in flags:
                valid = ", ".join(sorted(f.replace("_", "-") for f in flags - SET_BY_STUDY))
                raise BadInput(f"{where}: harness train {stage} has no --{key.replace('_', '-')}; valid: {valid}")
            if isinstance(value, (dict, list)):
                raise BadInput(f"{where}: args.{key} must be a string, number or boolean")
            parsed[flag] = _scalar(value)
        steps.append(TrainStep(name, stage, arm, parsed))
    return steps


def step_dir(out: Path, step: TrainStep) -> Path:
    return out / TRAIN_DIR / step.name


def trained_arm(step: TrainStep, out: Path, table: dict):
    """The checkpoint of ``step`` as an arm called ``step.name``: its parent's device and dtype, the
    think tags, prompt prefix and options its lineage carries. ``table``: arms by name, earlier
    steps' arms included."""
    from harness.arms import resolve_arm, trained_settings

    parent = resolve_arm(step.arm, table)
    path = str(step_dir(out, step))
    return replace(parent, name=step.name, model=path, **{"options": {}, **trained_settings(path)})


def run_step(step: TrainStep, out: Path, arms_file: str | None, seed: int, trained: dict) -> None:
    """``harness train STAGE ...`` for one step (a finished checkpoint is kept, a killed one resumes).
    ``trained``: earlier steps' arms by name (a step may start from one)."""
    train = train_group("study")
    cmd = train.get_command(click.Context(train), step.stage)
    arm = trained[step.arm].model if step.arm in trained else step.arm
    args = ["--arm", arm, "--out", str(step_dir(out, step))]
    if arms_file:
        args += ["--arms-file", arms_file]
    values = {"seed": str(seed), **step.args}
    for flag, value in values.items():
        args += ["--" + flag.replace("_", "-"), value]
    cmd.main(args=args, prog_name=f"harness train {step.stage}", standalone_mode=False)


def index_lines(steps: list[TrainStep], out: Path, errors: dict[str, str]) -> list[str]:
    """The study report's table of trained arms."""
    if not steps:
        return []
    lines = ["Trained arms (`harness train`; each checkpoint's lineage.json and metrics.json are in its directory):", "",
             "| arm | stage | from | checkpoint | status |", "| --- | --- | --- | --- | --- |"]
    for s in steps:
        status = "ok" if s.name not in errors else "FAILED: " + errors[s.name].replace("|", "\\|")
        lines.append(f"| {s.name} | {s.stage} | {s.arm} | {TRAIN_DIR}/{s.name}/ | {status} |")
    return lines + [""]
