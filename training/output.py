"""A stage's output directory ``OUT``: resume points while training, then the final checkpoint.

Everything at ``OUT``'s top level is final; everything in progress lives in ``OUT/.train_state/``:

- ``state.pt``: the latest resume point (model, optimiser, step, metrics), written at every
  ``--save-every`` step and always after the last step; ``metrics.json`` beside it is a readable
  copy of its metrics (``complete: false``);
- ``final.tmp/``: the final checkpoint being written (weights, tokenizer, ``metrics.json``,
  ``lineage.json``); once complete it is renamed to ``final/`` in one step (the commit);
- ``final/``: the committed checkpoint, whose files are then moved into ``OUT`` one by one,
  ``config.json`` last, so ``OUT`` is loadable as ``--arm OUT`` only once every file is there.

A rerun first removes half-written files (``*.tmp*``), completes the moves of a committed
checkpoint, and then either returns (finished, same config), resumes from ``state.pt``, or
starts over. The config check ignores ``out``, so a moved unfinished output resumes where it lies.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import click

from harness.errors import BadInput
from harness.provenance import git_sha, versions
from harness.store import atomic_write, config_hash

LINEAGE = "lineage.json"
METRICS = "metrics.json"
CONFIG = "config.json"  # what makes a directory an HF model directory: moved into OUT last
STATE_DIR = ".train_state"
STATE = "state.pt"
STAGING = "final.tmp"
FINAL = "final"
NOT_DIGESTED = ("out",)  # where the output is written is not what is trained


def config_digest(config: dict, leave_out=NOT_DIGESTED) -> str:
    """A short hash of the config, without ``out`` (a moved output keeps its identity)."""
    return config_hash({k: v for k, v in config.items() if k not in leave_out})


def save_due(done: int, total: int, every: int) -> bool:
    """Whether a resume point is written after ``done`` of ``total`` steps: every ``every``
    steps (0: never in between) and always after the last one."""
    return done >= total or bool(every and done % every == 0)


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (a temporary file renamed over ``path``)."""
    atomic_write(path, json.dumps(obj, indent=2, default=float) + "\n")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class Output:
    """The stage's output directory: resume state, metrics, and the final checkpoint."""

    def __init__(self, out: str, stage: str, config: dict):
        if not out:
            raise BadInput("--out is required (the directory the new checkpoint is written to)", param_hint="--out")
        self.root = Path(out)
        self.state_dir = self.root / STATE_DIR
        self.stage = stage
        self.config = config
        self.digest = config_digest(config)
        # outputs of versions that hashed ``out`` too still resume or count as finished in place
        self.accepted = {self.digest, config_digest(config, leave_out=())}
        if self.root.exists() and not self.root.is_dir():
            raise BadInput(f"{self.root} is a file, not a directory; use another --out", param_hint="--out")
        self.clean()
        self.publish()
        lineage = self.root / LINEAGE
        if lineage.exists():
            old = json.loads(lineage.read_text())
            if old.get("config_digest") in self.accepted:
                shutil.rmtree(self.state_dir, ignore_errors=True)  # left by a kill after the last move
                self.finished = True
                return
            raise BadInput(f"{self.root} already holds a finished {old.get('stage')} checkpoint with another config; "
                           "use another --out", param_hint="--out")
        ours = self.state_dir.exists() or (self.root / METRICS).exists()  # top-level metrics: older versions
        if self.root.exists() and any(self.root.iterdir()) and not ours:
            raise BadInput(f"{self.root} exists and is not a training output; use another --out", param_hint="--out")
        self.finished = False

    def clean(self) -> None:
        """Remove what a killed run left half-written: ``state.pt.tmp<pid>``, JSON temporaries
        and the unfinished ``final.tmp/`` (the resume point before them is intact)."""
        if self.state_dir.is_dir():
            for p in self.state_dir.iterdir():
                if ".tmp" in p.name:
                    _remove(p)
        for name in (METRICS, LINEAGE):  # top-level temporaries of older versions
            for p in self.root.glob(f".{name}.tmp*"):
                _remove(p)

    def publish(self) -> None:
        """Move a committed ``final/`` checkpoint into ``OUT`` (``config.json`` last), then drop
        the resume state. Idempotent, so a rerun completes the moves of a killed one; a file
        already moved (by another process of the same launch) is skipped."""
        final = self.state_dir / FINAL
        if not final.is_dir():
            return
        last = (METRICS, LINEAGE, CONFIG)
        names = sorted(p.name for p in final.iterdir())
        for name in [n for n in names if n not in last] + [n for n in last if n in names]:
            try:
                os.replace(final / name, self.root / name)
            except FileNotFoundError:
                pass
        try:
            final.rmdir()
        except OSError:
            pass
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def load_state(self):
        """(step, metrics, model state, optimiser state) of the last resume point, or None."""
        import torch

        path = self.state_dir / STATE
        if not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config_digest"] not in self.accepted:
            diff = sorted(k for k in set(state["config"]) | set(self.config)
                          if state["config"].get(k) != self.config.get(k) and k not in NOT_DIGESTED)
            why = {"data_sha256": "data_sha256: the data file's content changed",
                   "arm_fingerprint": "arm_fingerprint: the arm's model files changed"}
            raise BadInput(f"{self.root} holds an unfinished {state['stage']} run with another config (differs in: "
                           f"{', '.join(why.get(k, k) for k in diff) or 'out'}); use another --out or the same settings",
                           param_hint="--out")
        return state

    def resume(self, policy, optimizer, total_steps: int) -> tuple[int, dict | None]:
        """Load the last resume point into the policy and optimiser: (step, metrics), or (0, None)."""
        state = self.load_state()
        if state is None:
            return 0, None
        policy.unwrapped().load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if policy.is_main:
            click.echo(f"resuming {self.stage} at step {state['step']}/{total_steps} from {self.root}", err=True)
        return state["step"], state["metrics"]

    def save_state(self, policy, optimizer, step: int, metrics: dict) -> None:
        """Write the resume point atomically (main process only), then its readable metrics."""
        import torch

        if not policy.is_main:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f"{STATE}.tmp{os.getpid()}"
        torch.save({"stage": self.stage, "config": self.config, "config_digest": self.digest, "step": step,
                    "metrics": metrics, "model": policy.unwrapped().state_dict(),
                    "optimizer": optimizer.state_dict()}, tmp)
        os.replace(tmp, self.state_dir / STATE)
        self.write_json(METRICS, dict(metrics, complete=False), self.state_dir)

    def write_json(self, name: str, obj, folder: Path | None = None) -> None:
        write_json((folder or self.root) / name, obj)

    def lineage(self, policy, data: dict) -> dict:
        parent = policy.parent
        parent_lineage = None
        parent_dir = Path(parent.model).expanduser()
        if (parent_dir / LINEAGE).is_file():
            parent_lineage = json.loads((parent_dir / LINEAGE).read_text())
        return {
            "stage": self.stage,
            "parent": {"arm": parent.name, "model": parent.model, "lineage": parent_lineage},
            "arm_settings": {k: v for k, v in asdict(parent).items() if k not in ("name", "model", "device", "dtype")},
            "config": self.config, "config_digest": self.digest, "data": data,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_sha": git_sha(), "versions": versions(),
        }

    def finish(self, policy, metrics: dict, data: dict) -> None:
        """Write the checkpoint (weights, tokenizer, ``metrics.json``, ``lineage.json``) into
        ``.train_state/final.tmp/``, commit it by renaming that to ``final/``, then publish it
        into ``OUT``. A kill before the commit leaves the resume point of the last step, so the
        rerun rewrites the checkpoint without redoing any step; a kill after it is completed by
        the rerun's :meth:`publish`. The main process writes; every process returns once ``OUT``
        is complete."""
        policy.accelerator.wait_for_everyone()
        if policy.is_main:
            staging = self.state_dir / STAGING
            _remove(staging)
            staging.mkdir(parents=True)
            policy.unwrapped().save_pretrained(staging)
            policy.tokenizer.save_pretrained(staging)
            self.write_json(METRICS, dict(metrics, complete=True), staging)
            self.write_json(LINEAGE, self.lineage(policy, data), staging)
            os.replace(staging, self.state_dir / FINAL)  # the commit
            self.publish()
        policy.accelerator.wait_for_everyone()


def lineage_chain(path: str) -> list[str]:
    """The stages from the base model to the checkpoint at ``path``, e.g. ['random:tiny-qwen3', 'dpo', 'sft']."""
    lineage_path = Path(path) / LINEAGE
    if not lineage_path.is_file():
        return [path]
    chain = []
    node = json.loads(lineage_path.read_text())
    while node is not None:
        chain.append(node["stage"])
        parent = node["parent"]
        node = parent.get("lineage")
        if node is None:
            chain.append(parent["model"])
    return chain[::-1]
