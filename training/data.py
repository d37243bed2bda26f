"""A stage's data: the packaged samples, prefix/suffix examples from the ``chunks`` task's
reader, the seeded batch of each step, and the data's fingerprints (lineage, resume check)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.seeding import derive_seed
from training.common import Setup
from training.policy import Policy


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
        random.Random(derive_seed(seed, "order", epoch)).shuffle(order)
        out.append(examples[order[pos]])
    return out


def data_fingerprint(data: str, sample: str = "chunks") -> dict:
    """Where the data came from and a sha256 of its bytes (local files) for the lineage."""
    path = Path(sample_data(sample) if data == "sample" else data).expanduser()
    if path.is_file():
        from harness.fingerprint import file_sha256

        return {"source": data, "sha256": file_sha256(path)}
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
