"""What the training stages share: the policy and its frozen reference, generation through the
``hf`` backend on the live policy, prefix/suffix examples, resume state, and the checkpoint
(HF format, usable as ``--arm DIR``) with its lineage and metrics.

The output directory (``Output``, resume points and the atomic final checkpoint) lives in
``training/output.py`` and is re-exported here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import click

from harness.errors import BadInput
from training.output import (LINEAGE, METRICS, STATE_DIR, Output, config_digest, lineage_chain,  # noqa: F401
                             save_due)


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
    save_every: int = field(default=50, metadata={"help": "Steps between resume points; the last step is always "
                                                          "one (0: only the last)."})
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


def input_fingerprints(setup: Setup, sample: str, arms_file=None) -> dict:
    """The training inputs' content, for the resume check: the data file's sha256 and the arm's
    local model fingerprint (None for Hub ids and presets), so a resume after the data were edited
    or the parent checkpoint was retrained in place is refused instead of mixing the two."""
    from harness.arms import load_arms, resolve_arm
    from harness.fingerprint import model_fingerprint
    from harness.modelspec import resolve_path

    fp = model_fingerprint(*resolve_path(resolve_arm(setup.arm, load_arms(arms_file))))
    return {"data_sha256": data_fingerprint(setup.data, sample)["sha256"], "arm_fingerprint": fp and fp["sha"]}


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
