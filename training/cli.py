"""``harness train {sft,dpo,rlmt}``: every stage setting is a flag, generated from the stage's
config dataclass so that defaults, help and the recorded config never drift apart."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields

import click

from harness.hookspecs import hookimpl


def _options(*classes):
    """click options for every field of the config dataclasses (``--snake-case`` names)."""
    def deco(fn):
        for cls in reversed(classes):
            for f in reversed(fields(cls)):
                default = f.default if f.default is not MISSING else None
                kind = {int: int, float: float, str: str}.get(type(default), str)
                required = f.metadata.get("required", False)
                fn = click.option("--" + f.name.replace("_", "-"), f.name, type=kind,
                                  default=None if required else default, required=required,
                                  show_default=not required, help=f.metadata.get("help", ""))(fn)
        return fn
    return deco


def _split(params: dict, *classes):
    out = []
    for cls in classes:
        out.append(cls(**{f.name: params.pop(f.name) for f in fields(cls)}))
    return out


def _kv(values) -> dict:
    from harness.options import parse_kv as kv

    return kv(values, "--judge-option")


def _done(out, stage: str) -> None:
    from training.metrics import fmt
    from training.output import METRICS, lineage_chain

    summary = json.loads((out.root / METRICS).read_text()).get("summary", {})
    click.echo(f"\n{stage} finished: {out.root}  (lineage: {' -> '.join(lineage_chain(str(out.root)))})")
    for k, v in summary.items():
        click.echo(f"  {k:<28} {fmt(v)}")
    click.echo(f"use it as an arm: harness run --arm {out.root} ...")


_ARMS_FILE = click.option("--arms-file", type=click.Path(), help="TOML arms file extending the packaged one.")
_JUDGE_OPTION = click.option("--judge-option", multiple=True, help="Judge option KEY=VALUE (repeatable).")


@click.group()
def train():
    """Train a new arm from an existing one; the output directory is an HF checkpoint with its
    lineage (lineage.json) and metrics (metrics.json). A killed run resumes from its last save.

    \b
    harness train dpo  --arm BASE --judge llm --judge-option arm=JUDGE --out ckpt/dpo
    harness train sft  --arm ckpt/dpo --data interleaved.jsonl --out ckpt/dpo-sft
    harness train rlmt --arm ckpt/dpo-sft --out ckpt/dpo-sft-rlmt
    """


def _stage_command(name: str, doc: str, config_cls, run, judged: bool):
    from training.common import Setup

    def command(arms_file=None, judge_option=(), **params):
        setup, cfg = _split(params, Setup, config_cls)
        out = run(setup, cfg, _kv(judge_option), arms_file) if judged else run(setup, cfg, arms_file)
        _done(out, name)

    command.__doc__ = doc
    command = _options(Setup, config_cls)(command)
    command = _ARMS_FILE(command)
    if judged:
        command = _JUDGE_OPTION(command)
    return train.command(name=name)(command)


def _sft(setup, cfg, arms_file):
    from training import sft

    return sft.train(setup, cfg, arms_file)


def _dpo(setup, cfg, judge_options, arms_file):
    from training import dpo

    return dpo.train(setup, cfg, judge_options, arms_file)


def _rlmt(setup, cfg, judge_options, arms_file):
    from training import rlmt

    return rlmt.train(setup, cfg, judge_options, arms_file)


def _register():
    from training.dpo import DPOConfig
    from training.rlmt import RLMTConfig
    from training.sft import SFTConfig

    _stage_command("sft", "Interleaved-thinking SFT: next-token loss over text with <think> spans.", SFTConfig, _sft,
                   judged=False)
    _stage_command("dpo", "Online DPO: K rollouts + the true suffix, all pairs judged, best vs worst.", DPOConfig, _dpo,
                   judged=True)
    _stage_command("rlmt", "RLMT: thought -> inserted close tag -> suffix, binary judge reward, Dr. GRPO + KL.",
                   RLMTConfig, _rlmt, judged=True)


_register()


@hookimpl
def register_commands(cli):
    """Add ``harness train``."""
    cli.add_command(train)
