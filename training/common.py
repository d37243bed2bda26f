"""What the training stages share: the policy and its frozen reference, generation through the
``hf`` backend on the live policy, prefix/suffix examples, resume state, and the checkpoint
(HF format, usable as ``--arm DIR``) with its lineage and metrics.

A stage's output directory holds, when finished: the model and tokenizer files, ``lineage.json``
(stage, parent arm and its own lineage, config, data hash, versions) and ``metrics.json``.
While training, ``.train_state/`` holds the latest resume point (model, optimiser, step, metrics);
a rerun with the same config continues from it, a different config is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import click

from harness.errors import BadInput

LINEAGE = "lineage.json"
METRICS = "metrics.json"
STATE_DIR = ".train_state"


@dataclass
class Setup:
    """Options every stage takes (``harness train STAGE --help``)."""

    arm: str = field(default="", metadata={"help": "Arm to train (arm name, local HF dir, .gguf or random:<preset>).",
                                               "required": True})
    data: str = field(default="sample", metadata={"help": "Training data: JSONL/parquet file, Hub dataset id, "
                                                          "or 'sample' (the stage's packaged sample)."})
    out: str = field(default="", metadata={"help": "Output directory: the new checkpoint (usable as --arm DIR).",
                                               "required": True})
    seed: int = field(default=0, metadata={"help": "Seed for data order, sampling and tie-breaks."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:N or auto."})
    dtype: str = field(default="float32", metadata={"help": "Master weight dtype (bf16 autocast is used on CUDA)."})
    save_every: int = field(default=50, metadata={"help": "Steps between resume points (0: only at the end)."})
    log_every: int = field(default=1, metadata={"help": "Steps between printed log lines."})


def seeded(seed: int, *parts) -> int:
    from harness.seeding import derive_seed

    return derive_seed(seed, *parts)


# -- numbers shared by the stages' metrics ---------------------------------------------------
def repetition_rate(text: str, n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same text (0 when too short)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def alpha_ratio(text: str) -> float:
    """Letters over non-space characters (1.0 for empty text)."""
    chars = [c for c in text if not c.isspace()]
    return 1.0 if not chars else sum(c.isalpha() for c in chars) / len(chars)


def is_artifact(text: str, max_repetition: float = 0.3, min_alpha: float = 0.6) -> bool:
    """A degenerate sample: heavy 4-gram repetition or mostly non-letters."""
    return repetition_rate(text) > max_repetition or alpha_ratio(text) < min_alpha


def mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def peak_memory_gib(device) -> float:
    """Peak accelerator memory allocated, or the process's peak resident memory on CPU."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


# -- policy, reference, backend --------------------------------------------------------------
class Policy:
    """The arm being trained: model, tokenizer, accelerator, and an ``hf`` backend that samples
    from the live weights (generation inside training reuses the harness backend)."""

    def __init__(self, setup: Setup, arms_file=None):
        import torch
        from accelerate import Accelerator

        from harness.arms import load_arms, resolve_arm
        from harness.modelspec import load_model, resolve_path

        arm = resolve_arm(setup.arm, load_arms(arms_file))
        resolve_path(arm)
        if arm.backend != "hf":
            raise BadInput(f"arm {arm.name!r} uses backend {arm.backend!r}; training needs weights in-process "
                           "(backend hf)", param_hint="--arm")
        want_cpu = setup.device == "cpu" or (setup.device == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=want_cpu, mixed_precision="no" if want_cpu else "bf16")
        device = str(self.accelerator.device) if setup.device == "auto" else setup.device
        self.parent = arm
        self.arm = replace(arm, device=device, dtype=setup.dtype)
        self.model, self.tokenizer, self.device = load_model(self.arm)
        self.model.train()
        self.seed = setup.seed

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def backend(self):
        """An ``hf`` backend over the live (unwrapped) policy weights."""
        from plugins.backends.hf import HFBackend

        return HFBackend.from_loaded(self.arm, self.unwrapped(), self.tokenizer, self.device)

    def frozen_copy(self):
        """A frozen copy of the current weights (the reference model of DPO and RLMT)."""
        import copy

        ref = copy.deepcopy(self.unwrapped())
        ref.eval().requires_grad_(False)
        return ref

    def optimizer(self, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.95)):
        import torch

        opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=lr,
                                betas=betas, weight_decay=weight_decay)
        self.model, opt = self.accelerator.prepare(self.model, opt)
        return opt

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def sync_if(self, last: bool):
        """Context for one backward pass: gradients are all-reduced only on a process's ``last``
        pass of a step, so processes with different numbers of micro-batches stay in step."""
        import contextlib

        return contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)

    def idle_backward(self) -> None:
        """A zero-loss backward for a process with nothing to learn from this step (every
        process must join each step's gradient all-reduce)."""
        self.accelerator.backward(sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad))

    def gather(self, items: list) -> list:
        """Every process's ``items`` concatenated (the list itself in a single process), so step
        metrics cover the whole batch under ``accelerate launch``."""
        if self.accelerator.num_processes == 1:
            return items
        from accelerate.utils import gather_object

        return gather_object(items)


def load_judge(name: str, options: dict, arms_file=None, need: str = "judge"):
    """A judge plugin by name; ``need="compare"`` requires pairwise comparison support."""
    from harness.arms import load_arms
    from harness.plugins import registry

    reg = registry("judges")
    cls = reg.get(name, "--judge")
    if need == "compare" and not hasattr(cls, "compare"):
        able = [n for n in reg.names() if hasattr(reg.classes[n], "compare")]
        raise BadInput(f"judge {name!r} cannot compare two continuations; judges that can: {', '.join(able)}",
                       param_hint="--judge")
    return cls(options, load_arms(arms_file))


# -- examples ---------------------------------------------------------------------------------
@dataclass
class Example:
    """One training prefix and its true suffix, as token ids and text."""

    id: str
    prefix: str
    suffix: str
    prefix_ids: list[int]
    suffix_ids: list[int]


def sample_data(kind: str) -> str:
    """The packaged sample: ``chunks`` (32 plain passages) or ``interleaved`` (the same passages
    with thoughts inserted)."""
    from importlib import resources

    name = {"chunks": "sample_chunks.jsonl", "interleaved": "sample_interleaved.jsonl"}[kind]
    return str(resources.files("tasks").joinpath("data", name))


def load_examples(data: str, policy: Policy, prefix_tokens: int, suffix_tokens: int, sample: str = "chunks",
                  prefix_words: int = 288, suffix_words: int = 96) -> list[Example]:
    """Prefix/suffix examples from the ``chunks`` task's reader: plain rows are split on words,
    interleaved rows right before a thought (thoughts removed). The prefix keeps its last
    ``prefix_tokens`` tokens, the suffix its first ``suffix_tokens``. ``data="sample"`` is the
    packaged ``sample`` set."""
    from tasks.chunks import ChunksTask

    task = ChunksTask({"data": sample_data(sample) if data == "sample" else data,
                       "prefix_words": prefix_words, "suffix_words": suffix_words})
    out = []
    for item in task.items():
        p_ids = policy.encode(item.prefix)[-prefix_tokens:]
        s_ids = policy.encode(" " + item.suffix)[:suffix_tokens]
        out.append(Example(item.id, policy.tokenizer.decode(p_ids), policy.tokenizer.decode(s_ids), p_ids, s_ids))
    return out


def step_batch(examples: list, step: int, per_step: int, seed: int) -> list:
    """The examples of ``step``: consecutive slices of a seeded permutation, reshuffled per epoch."""
    import random

    n = len(examples)
    out = []
    for k in range(step * per_step, (step + 1) * per_step):
        epoch, pos = divmod(k, n)
        order = list(range(n))
        random.Random(seeded(seed, "order", epoch)).shuffle(order)
        out.append(examples[order[pos]])
    return out


def data_fingerprint(data: str, sample: str = "chunks") -> dict:
    """Where the data came from and a sha256 of its bytes (local files) for the lineage."""
    path = Path(sample_data(sample) if data == "sample" else data).expanduser()
    if path.is_file():
        return {"source": data, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {"source": data, "sha256": None, "note": "Hub dataset: pinned by id only"}


# -- output, lineage, resume ------------------------------------------------------------------
def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _versions() -> dict:
    from harness.runner import _versions as v

    return v()


class Output:
    """The stage's output directory: resume state, metrics, and the final checkpoint."""

    def __init__(self, out: str, stage: str, config: dict):
        if not out:
            raise BadInput("--out is required (the directory the new checkpoint is written to)", param_hint="--out")
        self.root = Path(out)
        self.stage = stage
        self.config = config
        self.digest = config_digest(config)
        lineage = self.root / LINEAGE
        if lineage.exists():
            old = json.loads(lineage.read_text())
            if old.get("config_digest") == self.digest:
                self.finished = True
                return
            raise BadInput(f"{self.root} already holds a finished {old.get('stage')} checkpoint with another config; "
                           "use another --out", param_hint="--out")
        ours = (self.root / STATE_DIR).exists() or (self.root / METRICS).exists()
        if self.root.exists() and any(self.root.iterdir()) and not ours:
            raise BadInput(f"{self.root} exists and is not a training output; use another --out", param_hint="--out")
        self.finished = False

    def load_state(self):
        """(step, metrics, model state, optimiser state) of the last resume point, or None."""
        import torch

        path = self.root / STATE_DIR / "state.pt"
        if not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config_digest"] != self.digest:
            diff = sorted(k for k in set(state["config"]) | set(self.config)
                          if state["config"].get(k) != self.config.get(k))
            raise BadInput(f"{self.root} holds an unfinished {state['stage']} run with another config (differs in: "
                           f"{', '.join(diff)}); use another --out or the same settings", param_hint="--out")
        return state

    def resume(self, policy: Policy, optimizer, total_steps: int) -> tuple[int, dict | None]:
        """Load the last resume point into the policy and optimiser: (step, metrics), or (0, None)."""
        state = self.load_state()
        if state is None:
            return 0, None
        policy.unwrapped().load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        echo(policy, f"resuming {self.stage} at step {state['step']}/{total_steps} from {self.root}")
        return state["step"], state["metrics"]

    def save_state(self, policy: Policy, optimizer, step: int, metrics: dict) -> None:
        """Write the resume point atomically (main process only)."""
        import torch

        if not policy.is_main:
            return
        d = self.root / STATE_DIR
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"state.pt.tmp{os.getpid()}"
        torch.save({"stage": self.stage, "config": self.config, "config_digest": self.digest, "step": step,
                    "metrics": metrics, "model": policy.unwrapped().state_dict(),
                    "optimizer": optimizer.state_dict()}, tmp)
        os.replace(tmp, d / "state.pt")
        self.write_json(METRICS, dict(metrics, complete=False))

    def write_json(self, name: str, obj) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
        os.replace(tmp, self.root / name)

    def finish(self, policy: Policy, metrics: dict, data: dict) -> None:
        """Save the checkpoint, then ``metrics.json``, then ``lineage.json`` last (its presence
        marks the output finished), then drop the resume state."""
        policy.accelerator.wait_for_everyone()
        if not policy.is_main:
            return
        model = policy.unwrapped()
        model.save_pretrained(self.root)
        policy.tokenizer.save_pretrained(self.root)
        self.write_json(METRICS, dict(metrics, complete=True))
        parent = policy.parent
        parent_lineage = None
        parent_dir = Path(parent.model).expanduser()
        if (parent_dir / LINEAGE).is_file():
            parent_lineage = json.loads((parent_dir / LINEAGE).read_text())
        from harness.runner import _git_sha

        self.write_json(LINEAGE, {
            "stage": self.stage,
            "parent": {"arm": parent.name, "model": parent.model, "lineage": parent_lineage},
            "arm_settings": {k: v for k, v in asdict(parent).items() if k not in ("name", "model", "device", "dtype")},
            "config": self.config, "config_digest": self.digest, "data": data,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_sha": _git_sha(), "versions": _versions(),
        })
        shutil.rmtree(self.root / STATE_DIR, ignore_errors=True)


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


def log_line(step: int, total: int, row: dict, keys: list[str]) -> str:
    parts = [f"step {step}/{total}"]
    for k in keys:
        v = row.get(k)
        if v is None:
            continue
        parts.append(f"{k} {fmt(v)}")
    return "  ".join(parts)


def fmt(v) -> str:
    """Floats to 4 significant digits, large ones as whole numbers."""
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def config_of(*parts) -> dict:
    """A flat JSON-able config from the stage's dataclasses (``arm``/``out`` kept as given)."""
    out = {}
    for p in parts:
        out.update({f.name: getattr(p, f.name) for f in fields(p)})
    for k in ("log_every", "save_every", "device"):  # how to run, not what is trained
        out.pop(k, None)
    return out


def echo(policy: Policy, text: str) -> None:
    if policy.is_main:
        click.echo(text, err=True)
