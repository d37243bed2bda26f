"""The models a stage uses: the policy being trained (with its frozen reference and an ``hf``
backend over the live weights) and the judges that score its samples."""

from __future__ import annotations

from dataclasses import replace

from harness.errors import BadInput
from training.common import Setup


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
    return reg.create(name, options, load_arms(arms_file), param_hint="--judge")
