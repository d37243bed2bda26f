"""What every training stage takes: the shared options (:class:`Setup`) and the flat config a
stage records (:func:`config_of`; it goes into the resume check and ``lineage.json``).

The rest of what the stages share has its own module: ``training/policy.py`` (the model being
trained, judges), ``training/data.py`` (examples, batches, data fingerprints),
``training/metrics.py`` (step numbers, text statistics and log lines) and ``training/output.py``
(the output directory: resume points and the final checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


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


def config_of(*parts) -> dict:
    """A flat JSON-able config from the stage's dataclasses (``arm``/``out`` kept as given)."""
    out = {}
    for p in parts:
        out.update({f.name: getattr(p, f.name) for f in fields(p)})
    for k in ("log_every", "save_every", "device"):  # how to run, not what is trained
        out.pop(k, None)
    return out
