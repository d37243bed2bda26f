"""Plain data types shared by the core and plugins (no heavy imports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One evaluation item: a text prefix and its true suffix. ``cluster`` groups items that
    share a source (for cluster-aware statistics)."""

    id: str
    prefix: str
    suffix: str
    cluster: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Arm:
    """A model checkpoint to evaluate, resolved from the arms file or a bare spec."""

    name: str
    model: str
    backend: str = "hf"
    dtype: str = "auto"
    device: str = "auto"
    think_open: str = "<think>"
    think_close: str = "</think>"
    trust_remote_code: bool = False
    prompt_prefix: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class GenRequest:
    """Sample ``n`` continuations of ``prompt_ids``. ``seeds`` has one seed per sample.
    Generation stops at EOS, at ``max_new_tokens``, or when the decoded continuation contains
    one of ``stop_strings`` (the returned ids then end before the token where it starts).
    When ``score_ids`` is given, every completion also carries ``score_logprobs``: the
    teacher-forced log-probs of ``score_ids`` right after the prompt (a backend may compute them
    in the same prefill, as the ``hf`` backend does, or by a separate scoring call).
    ``affinity`` (the item id) lets a backend with several servers send every request of one item
    to the same server, so a later stage finds the earlier one in its prefix cache. ``prefix_len``
    says that the first ``prefix_len`` prompt ids are shared with other requests (the probe: the
    item's prompt before the thought; a thought prompt is all prefix): a backend may compute them
    once and keep their KV cache (the ``hf`` backend does, always splitting such a prompt there)."""

    prompt_ids: list[int]
    n: int
    seeds: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ()
    score_ids: list[int] | None = None
    affinity: str | None = None
    prefix_len: int = 0


@dataclass
class Completion:
    """One sampled continuation: token ids as sampled, their text, and why it ended
    (``"stop"`` for a stop string, ``"eos"``, or ``"length"``); ``score_logprobs`` answers the
    request's ``score_ids`` (None when it had none). ``cached_tokens`` is how many prompt tokens
    a server found in its prefix cache (None when the backend does not say)."""

    token_ids: list[int]
    text: str
    finish_reason: str
    score_logprobs: list[float] | None = None
    cached_tokens: int | None = None


@dataclass
class ScoreRequest:
    """Teacher-forced scoring of ``continuation_ids`` after ``context_ids``."""

    context_ids: list[int]
    continuation_ids: list[int]


@dataclass
class Thought:
    """A thought inserted between the open and close tags, as token ids. ``closed`` says whether
    a sampled thought ended by the model writing the close tag (None if not sampled). ``info``:
    JSON-able facts about how an intervention made it (another arm's thought, re-encoded, left
    unchanged), stored with its thoughts.jsonl row and on each record as ``thought_info``."""

    token_ids: list[int]
    text: str
    closed: bool | None = None
    source_item: str | None = None
    info: dict = field(default_factory=dict)


@dataclass
class JudgePair:
    predicted: str
    reference: str
    prefix: str = ""


@dataclass
class Comparison:
    """Two continuations of the same prefix for a pairwise judge (online DPO, the ``pairwise``
    eval); the judge is told which is shown first, and the caller randomises or alternates that
    order. ``reference`` is the true suffix when the caller has one ("" when not): a judge that
    scores against it (``embedding``) needs it, others may ignore it."""

    prefix: str
    first: str
    second: str
    reference: str = ""


@dataclass
class Verdict:
    """``reward`` is 1, 0, or None when the judge's answer was invalid. For a pairwise
    comparison, ``score`` is the first continuation's win share: 1.0, 0.0, or 0.5 for a tie."""

    reward: int | None
    score: float | None = None
    invalid: bool = False
    raw: str | None = None
