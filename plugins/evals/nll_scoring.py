"""Teacher-forced NLL of interleaved-thinking rows, split by token kind, and the repetition rate
of sampled continuations: the one implementation behind the ``nll`` eval and the evals of
``harness train sft`` (which imports it from here).

A row is tokenised segment by segment, the way the probe builds its prompts: text ids, then
``encode(open tag) + encode(thought) + encode(close tag)``, then text ids, each piece encoded on its
own and concatenated, so every token is known to be thought (tags included) or text. Per row:

- ``raw``: the row's plain text (thoughts removed, :meth:`Interleaved.stripped`, whitespace runs
  collapsed), tokenised whole;
- ``all`` / ``thought`` / ``text``: every token / thought tokens / text tokens of the augmented row;
- ``post``: the first ``post_thought_tokens`` text tokens after each thought (the window runs on
  across text pieces shorter than it, and a new thought restarts it).

Both sequences are cut to ``max_tokens``. The first token of a sequence has no context and is never
scored; every other token's NLL is ``-log p(token | the tokens before it)``. A row's numbers are a
sum and a count per kind (:class:`RowNLL`), summed exactly (``math.fsum``), so a pooled per-token
mean over rows (``pooled``) is the same number whatever order or batches the rows came in.

Scoring goes through a backend's ``score()`` (one :class:`~harness.types.ScoreRequest` per sequence,
context = its first token): the ``hf`` backend batches them by token budget
(:func:`plugins.backends.hf.kernels.continuation_logprobs`, ``score_batch_tokens``), never one
forward per row.

The repetition rate (:func:`repetition_rate`): a continuation of ``rep_tokens`` tokens is sampled
from the first half (``len // 2`` tokens) of the row's raw ids, at temperature 1.0 and top_p 0.95,
with the seed ``derive_seed(seed, "sft-rep", row id)``; its decoded text's lowercased whitespace
word 4-grams are counted and the rate is the share that repeat an earlier 4-gram of the same text
(0.0 when it has fewer than 4 words). Rows with fewer than 4 raw tokens get none.

Light at import: no torch here (the backend does the model work).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.seeding import derive_seed
from harness.types import GenRequest, ScoreRequest
from tasks.thought_spans import Interleaved

TEXT, THOUGHT = 0, 1
KINDS = ("raw", "all", "thought", "text", "post")
REP_TEMPERATURE, REP_TOP_P, REP_MIN_TOKENS, REP_SEED_KEY = 1.0, 0.95, 4, "sft-rep"


@dataclass
class TokenizedRow:
    """One tokenised interleaved row: ids, a kind per token, post-thought flags, the ids of its
    plain text (thoughts removed), and how it was cut."""

    id: str
    ids: list[int]
    kinds: list[int]
    post: list[bool]
    raw_ids: list[int]
    raw_text: str
    thoughts: int = 0
    truncated: bool = False  # the augmented or the raw sequence was cut to max_tokens


@dataclass
class RowNLL:
    """A row's NLL sums (nats) and scored-token counts per kind (:data:`KINDS`)."""

    id: str
    sums: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def mean(self, kind: str) -> float | None:
        """Per-token mean of ``kind``; None when the row has no scored token of that kind."""
        return self.sums[kind] / self.counts[kind] if self.counts[kind] else None


def tokenize_interleaved(row_id: str, parsed: Interleaved, encode, open_tag: str, close_tag: str,
                         post_thought_tokens: int, max_tokens: int) -> TokenizedRow:
    """Tokenise a parsed row segment by segment with ``encode`` (text -> ids, no special tokens),
    the thoughts wrapped in ``open_tag``/``close_tag`` (the arm's tags)."""
    ids, kinds, post = [], [], []
    after = 0
    for kind, content in parsed.segments():
        if kind == "thought":
            piece = encode(open_tag) + encode(content) + encode(close_tag)
            ids += piece
            kinds += [THOUGHT] * len(piece)
            post += [False] * len(piece)
            after = post_thought_tokens
        else:
            piece = encode(content)
            ids += piece
            kinds += [TEXT] * len(piece)
            post += [i < after for i in range(len(piece))]
            after = max(0, after - len(piece))
    raw = " ".join(parsed.stripped().split())
    raw_ids = encode(raw)
    n = max_tokens
    return TokenizedRow(row_id, ids[:n], kinds[:n], post[:n], raw_ids[:n], raw, len(parsed.thoughts),
                        len(ids) > n or len(raw_ids) > n)


def score_rows(score, rows: list[TokenizedRow]) -> list[RowNLL]:
    """Per-row NLL sums and counts; ``score`` is a backend's ``score(requests)`` (per request the
    log-probs of its continuation). One call for every row's two sequences, so the backend batches
    them together."""
    requests, owners = [], []
    for k, r in enumerate(rows):
        for which, seq in (("aug", r.ids), ("raw", r.raw_ids)):
            if len(seq) > 1:
                requests.append(ScoreRequest(list(seq[:1]), list(seq[1:])))
                owners.append((k, which))
    lps = score(requests) if requests else []
    if len(lps) != len(requests):
        raise ValueError(f"score() returned {len(lps)} answers for {len(requests)} requests")
    out = [RowNLL(r.id, {k: 0.0 for k in KINDS}, {k: 0 for k in KINDS}) for r in rows]
    for (k, which), req, lp in zip(owners, requests, lps):
        if len(lp) != len(req.continuation_ids):
            raise ValueError(f"score() returned {len(lp)} log-probs for {len(req.continuation_ids)} tokens "
                             f"(row {rows[k].id!r})")
        nll = [-float(x) for x in lp]
        res = out[k]
        if which == "raw":
            res.sums["raw"], res.counts["raw"] = math.fsum(nll), len(nll)
            continue
        r = rows[k]
        sel = {"all": [True] * len(nll), "thought": [t == THOUGHT for t in r.kinds[1:]],
               "text": [t == TEXT for t in r.kinds[1:]], "post": r.post[1:]}
        for kind, mask in sel.items():
            picked = [v for v, m in zip(nll, mask) if m]
            res.sums[kind], res.counts[kind] = math.fsum(picked), len(picked)
    return out


def pooled(results, kind: str) -> float | None:
    """Per-token mean of ``kind`` pooled over rows (sum of NLLs over number of tokens); None
    without tokens of that kind. ``results``: :class:`RowNLL` or ``(sum, count)`` pairs."""
    pairs = [(r.sums[kind], r.counts[kind]) if isinstance(r, RowNLL) else r for r in results]
    n = sum(c for _, c in pairs)
    return math.fsum(s for s, _ in pairs) / n if n else None


def repetition_rate(text: str, n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier n-gram of the same text (0 when too short)."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def repetition_requests(rows: list[TokenizedRow], seed: int, rep_tokens: int, temperature: float = REP_TEMPERATURE,
                        top_p: float = REP_TOP_P) -> list[tuple[TokenizedRow, GenRequest]]:
    """(row, request) for the rows long enough to continue (see the module docstring)."""
    return [(r, GenRequest(r.raw_ids[:len(r.raw_ids) // 2], n=1, seeds=[derive_seed(seed, REP_SEED_KEY, r.id)],
                           max_new_tokens=rep_tokens, temperature=temperature, top_p=top_p))
            for r in rows if len(r.raw_ids) >= REP_MIN_TOKENS]


def sample_repetition(generate, rows: list[TokenizedRow], seed: int, rep_tokens: int,
                      temperature: float = REP_TEMPERATURE, top_p: float = REP_TOP_P) -> dict:
    """row id -> ``{"rate", "prompt_tokens", "completion", "completion_tokens", "finish_reason",
    "seed"}`` for each row long enough to continue; ``generate`` is a backend's ``generate(requests)``
    (or a wrapper of it). One call for all rows."""
    work = repetition_requests(rows, seed, rep_tokens, temperature, top_p)
    if not work:
        return {}
    outs = generate([req for _, req in work])
    result = {}
    for (r, req), out in zip(work, outs):
        c = out[0]
        result[r.id] = {"rate": repetition_rate(c.text), "prompt_tokens": len(req.prompt_ids), "completion": c.text,
                        "completion_tokens": len(c.token_ids), "finish_reason": c.finish_reason,
                        "seed": req.seeds[0]}
    return result
