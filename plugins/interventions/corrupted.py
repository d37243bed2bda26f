"""Intervention ``corrupted``: the arm's own thought with its facts swapped for others.

The numbers (``1850``, ``3.5``) and mid-sentence capitalised words (``Paris``, ``NASA``; a word
that starts a sentence is left alone) of the arm's ``normal`` thought are each replaced by
another one of the same kind from the run's passage pool: every number and mid-sentence
capitalised word in the prefixes of the run's items. Picks are seeded per (run seed, arm, item,
``corrupted``, sample). Only the changed spans are encoded anew with the arm's tokenizer; the
other tokens keep the ids the arm sampled. A thought with nothing to replace (or whose only
candidates have no other value in the pool) is used unchanged and flagged:
``info = {"unchanged": true}`` (else ``{"replaced": N}``); the report counts them.
"""

import random
import re

from harness.hookspecs import hookimpl
from harness.types import Thought

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
CAPITALISED = re.compile(r"\b[A-Z][A-Za-z]+\b")
SENTENCE_START = ".!?:;\"'(\n"


@hookimpl
def register_interventions(register):
    register(CorruptedThought)


def targets(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of each number and mid-sentence capitalised word in ``text``."""
    found = [(m.start(), m.end(), "number") for m in NUMBER.finditer(text)]
    for m in CAPITALISED.finditer(text):
        before = text[:m.start()].rstrip(" \t")
        if before and before[-1] not in SENTENCE_START:
            found.append((m.start(), m.end(), "word"))
    return sorted(found)


def passage_pool(texts) -> dict[str, list[str]]:
    """Every number and mid-sentence capitalised word of ``texts``, per kind, sorted."""
    pool: dict[str, set] = {"number": set(), "word": set()}
    for text in texts:
        for a, b, kind in targets(text):
            pool[kind].add(text[a:b])
    return {k: sorted(v) for k, v in pool.items()}


def token_offsets(backend, ids: list[int], text: str) -> dict[int, int]:
    """Token index -> character offset in ``text`` where the decoding of the first ``k`` ids ends,
    for the indices where that decoding is a prefix of ``text`` (not inside a character)."""
    out = {0: 0}
    for k in range(1, len(ids) + 1):
        prefix = backend.decode(ids[:k])
        if text.startswith(prefix) and len(prefix) >= max(out.values()):
            out[k] = len(prefix)
    out[len(ids)] = len(text)
    return out


def corrupt(backend, ids: list[int], pool: dict[str, list[str]], rng: random.Random) -> tuple[list[int], int]:
    """(new ids, spans replaced): each target span replaced by another pool entry of its kind; the
    tokens covering changed spans are re-encoded, the rest kept."""
    text = backend.decode(ids)
    picks = []
    for a, b, kind in targets(text):
        others = [w for w in pool.get(kind, []) if w != text[a:b]]
        if others:
            picks.append((a, b, rng.choice(others)))
    if not picks:
        return list(ids), 0
    offsets = token_offsets(backend, ids, text)
    ranges = []  # (first token, end token, [(a, b, replacement)]) covering the picks, merged
    for a, b, new in picks:
        ka = max(k for k, off in offsets.items() if off <= a)
        kb = min(k for k, off in offsets.items() if off >= b)
        if ranges and ka < ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(kb, ranges[-1][1]), ranges[-1][2] + [(a, b, new)])
        else:
            ranges.append((ka, kb, [(a, b, new)]))
    out, at = [], 0
    for ka, kb, spans in ranges:
        start, seg = offsets[ka], ""
        cursor = start
        for a, b, new in spans:
            seg += text[cursor:a] + new
            cursor = b
        seg += text[cursor:offsets[kb]]
        out += list(ids[at:ka]) + list(backend.encode(seg))
        at = kb
    return out + list(ids[at:]), len(picks)


class CorruptedThought:
    name = "corrupted"
    description = "the arm's normal thought with its numbers and names swapped for others from the passages " \
                  "(seeded); unchanged ones flagged"
    requires = ("normal",)

    def thoughts(self, ctx, items, samples, needed):
        pool = passage_pool(i.prefix for i in ctx.all_items)
        normal = needed["normal"]
        out = {}
        for item in items:
            row = []
            for s in range(samples):
                rng = random.Random(ctx.seed(item.id, "corrupted", s))
                ids, n = corrupt(ctx.backend, list(normal[item.id][s].token_ids), pool, rng)
                info = {"replaced": n} if n else {"unchanged": True}
                row.append(Thought(ids, ctx.backend.decode(ids), source_item=item.id, info=info))
            out[item.id] = row
        return out
