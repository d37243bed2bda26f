"""Interleaved-thinking data: parse, check, audit and augment rows of prose with inserted thoughts.

An interleaved row is an ordinary prose chunk with short thoughts inserted as ``<think>...</think>``
spans (tags configurable), e.g. ``"The pitch drops. <think>next: why the siren slides</think> This
is why..."``. Removing the spans must give back the original chunk after whitespace normalisation.

* the format itself (balanced, non-empty spans; the plain text) is :mod:`tasks.thought_spans`,
  shared with the ``chunks`` task; :func:`normalise_ws` is the comparison with the original.
* :func:`check_row`, :func:`audit`, :func:`format_audit`: validation and a data audit.
* :func:`augment_rows`: a teacher (any harness backend) adds thoughts to raw chunks, either by
  rewriting the whole chunk (``rewrite``) or by writing one thought at each point the harness picks
  (``insert``). Every thought comes from the teacher; rows that do not validate are rejected.

Torch-free: the backend does all model work.
"""

from __future__ import annotations

import re
from collections import Counter

from harness.seeding import derive_seed
from harness.types import GenRequest
from tasks.loading import DataError
from tasks.thought_spans import CLOSE, OPEN, MalformedThoughts, parse_thoughts
from training.metrics import mean

# -- the format ---------------------------------------------------------------------------------
def normalise_ws(s: str) -> str:
    """Collapse every whitespace run to one space and strip the ends."""
    return " ".join(s.split())


def _coverage(original: str, stripped: str) -> float:
    """Fraction of ``original``'s words (as a multiset) that are present in ``stripped``."""
    want, have = Counter(original.split()), Counter(stripped.split())
    total = sum(want.values())
    return 1.0 if total == 0 else sum(min(n, have[w]) for w, n in want.items()) / total


def _first_difference(original: str, stripped: str) -> str:
    a, b = original.split(), stripped.split()
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"word {i + 1} is {y!r}, expected {x!r}"
    return f"{len(b)} words, expected {len(a)}"


# -- checking -----------------------------------------------------------------------------------
def check_row(row: dict, *, text_column: str = "text", original_column: str | None = "original",
              open_tag: str = OPEN, close_tag: str = CLOSE, max_tokens: int | None = None,
              count_tokens=None) -> dict:
    """Check one interleaved row; returns a dict:

    ``ok``, ``problems`` (short strings, ``"kind: detail"``), ``thoughts`` (count),
    ``thought_words``, ``text_words`` (words of the stripped text), ``raw_word_coverage`` (the
    fraction of the original's words, as a multiset, present in the stripped text; None without
    an original), ``preserved`` (stripped text == original after :func:`normalise_ws`; None when
    the row has no original column) and ``length`` (of the full interleaved text, tags included:
    ``count_tokens(text)`` tokens when given, else whitespace words).

    A row is ok when its tags are balanced and not nested, it has at least one non-empty thought,
    ``preserved`` is not False, and ``length <= max_tokens`` when that is set.
    """
    out = dict(ok=False, problems=[], thoughts=0, thought_words=0, text_words=0,
               raw_word_coverage=None, preserved=None, length=None)
    text = row.get(text_column)
    if not isinstance(text, str) or not text.strip():
        out["problems"].append(f"missing text: no text in column {text_column!r}")
        return out
    out["length"] = count_tokens(text) if count_tokens is not None else len(text.split())
    if max_tokens is not None and out["length"] > max_tokens:
        out["problems"].append(f"too long: {out['length']} > {max_tokens}")
    try:
        parsed = parse_thoughts(text, open_tag, close_tag)
    except MalformedThoughts as exc:
        out["problems"].insert(0, exc.reason)
        return out
    thoughts = [t.content for t in parsed.thoughts]
    stripped = parsed.stripped()
    out["thoughts"] = len(thoughts)
    out["thought_words"] = sum(len(t.split()) for t in thoughts)
    out["text_words"] = len(stripped.split())
    if not thoughts:
        out["problems"].append("no thoughts")
    if original_column is not None and original_column in row:
        original = row[original_column]
        if not isinstance(original, str) or not original.strip():
            out["problems"].append(f"missing original: no text in column {original_column!r}")
            out["preserved"] = False
        else:
            out["raw_word_coverage"] = _coverage(original, stripped)
            out["preserved"] = normalise_ws(stripped) == normalise_ws(original)
            if not out["preserved"]:
                out["problems"].append(f"not preserved: {_first_difference(original, stripped)}")
    out["ok"] = not out["problems"]
    return out


def where(row: dict, index: int) -> str:
    """``FILE:LINE`` for rows from :func:`tasks.loading.read_rows`, else ``row N`` (1-based)."""
    if "_source" in row and "_line" in row:
        return f"{row['_source']}:{row['_line']}"
    return f"row {index + 1}"


def audit(rows, *, show: int = 20, checks: list[dict] | None = None, **options) -> dict:
    """Audit rows with :func:`check_row` (``options`` are its keyword options; ``checks`` reuses
    results already computed, one per row).

    Returns ``rows``, ``valid_rows``, ``malformed_rows``, ``problems`` (count per kind),
    ``thoughts`` (total in valid rows), ``mean_thoughts_per_row`` and ``mean_thought_words`` (words
    per thought; both over valid rows), ``mean_raw_word_coverage`` (over rows that have an original
    and parse), ``max_length`` (over all rows), ``length_unit`` and ``malformed`` (the first
    ``show`` malformed rows as ``"FILE:LINE: problem; problem"``).
    """
    rows = list(rows)
    if checks is None:
        checks = [check_row(r, **options) for r in rows]
    valid = [c for c in checks if c["ok"]]
    kinds = Counter(p.split(":", 1)[0] for c in checks for p in c["problems"])
    thoughts = sum(c["thoughts"] for c in valid)
    lengths = [c["length"] for c in checks if c["length"] is not None]
    malformed = [f"{where(r, i)}: {'; '.join(c['problems'])}"
                 for i, (r, c) in enumerate(zip(rows, checks)) if not c["ok"]]
    return {
        "rows": len(rows),
        "valid_rows": len(valid),
        "malformed_rows": len(rows) - len(valid),
        "problems": dict(sorted(kinds.items())),
        "thoughts": thoughts,
        "mean_thoughts_per_row": mean([c["thoughts"] for c in valid]),
        "mean_thought_words": sum(c["thought_words"] for c in valid) / thoughts if thoughts else None,
        "mean_raw_word_coverage": mean([c["raw_word_coverage"] for c in checks]),
        "max_length": max(lengths) if lengths else None,
        "length_unit": "tokens" if options.get("count_tokens") is not None else "words",
        "malformed": malformed[:show],
    }


def format_audit(summary: dict) -> str:
    """A short Markdown table of an :func:`audit` summary, then problems and malformed rows."""
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    cov = summary["mean_raw_word_coverage"]
    lines = [
        "| rows | valid | malformed | thoughts/row | words/thought | raw word coverage | max length |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {summary['rows']} | {summary['valid_rows']} | {summary['malformed_rows']} "
        f"| {num(summary['mean_thoughts_per_row'], '.2f')} | {num(summary['mean_thought_words'], '.1f')} "
        f"| {'-' if cov is None else f'{100 * cov:.1f}%'} "
        f"| {num(summary['max_length'], 'd')} {summary['length_unit'] if summary['max_length'] is not None else ''} |",
    ]
    if summary["problems"]:
        lines += ["", "problems: " + ", ".join(f"{k} {n}" for k, n in summary["problems"].items())]
    if summary["malformed"]:
        shown = len(summary["malformed"])
        more = summary["malformed_rows"] - shown
        lines += ["", f"malformed rows (first {shown}):" if more else "malformed rows:"]
        lines += [f"  {m}" for m in summary["malformed"]]
        if more:
            lines.append(f"  ... and {more} more")
    return "\n".join(lines)


# -- augmenting with a teacher -------------------------------------------------------------------
_BOUNDARY = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(]?[A-Z0-9])")


def insertion_points(text: str, every_words: int = 60) -> list[int]:
    """Character offsets of sentence ends (before the following whitespace) where thoughts go:
    about one every ``every_words`` words, never within ``every_words // 2`` words of the previous
    point or of the end. A text too short for that gets one point, at the sentence end nearest its
    middle; a single sentence gets none."""
    total = len(text.split())
    bounds = [(m.end(), len(text[:m.end()].split())) for m in _BOUNDARY.finditer(text)]
    bounds = [(pos, w) for pos, w in bounds if 0 < w < total]
    gap = max(1, every_words // 2)
    points, last = [], 0
    while True:
        cands = [(pos, w) for pos, w in bounds if w - last >= gap and total - w >= gap]
        if not cands:
            break
        pos, last = min(cands, key=lambda b: abs(b[1] - (last + every_words)))
        points.append(pos)
    if not points and bounds:
        points = [min(bounds, key=lambda b: abs(b[1] - total / 2))[0]]
    return points


def _use_chat(backend, chat) -> bool:
    if chat not in (True, False, "auto"):
        raise ValueError(f"chat must be True, False or 'auto', got {chat!r}")
    if chat is False:
        return False
    if not hasattr(backend, "chat_prompt"):
        if chat is True:
            raise DataError("the teacher has no chat_prompt(); use chat=False")
        return False
    if chat is True:
        return True
    try:  # "auto": the chat template when the teacher has one that works
        backend.chat_prompt([{"role": "user", "content": "hello"}])
        return True
    except Exception:
        return False


def rewrite_prompt(chunk: str, n_thoughts: int, open_tag: str, close_tag: str, chat: bool) -> str:
    """The instruction for ``rewrite`` mode (plain completion form unless ``chat``)."""
    task = (f"Copy the passage exactly, word for word, and insert about {n_thoughts} short thoughts "
            f"(5 to 20 words each) at natural points between sentences, each wrapped in {open_tag} and "
            f"{close_tag}. A thought anticipates what comes next, notes a cause, or links to an earlier "
            "point. Do not change, add or remove any word of the passage.")
    if chat:
        return (f"{task} Reply with the passage only, between <annotated> and </annotated>.\n\n"
                f"<passage>\n{chunk}\n</passage>")
    return f"{task}\n\n<passage>\n{chunk}\n</passage>\n\n<annotated>\n"


def insert_prompt(so_far: str, chat: bool) -> str:
    """The instruction for one thought in ``insert`` mode (the caller appends the open tag)."""
    if chat:
        return ("Here is the beginning of a passage:\n\n" + so_far + "\n\nWrite one short thought "
                "(5 to 20 words) that a careful reader might have at this point: what is likely to come "
                "next, why something happens, or how it links to an earlier point. Reply with the "
                "thought only.")
    return ("The passage below is annotated with short thoughts a careful reader has while reading "
            "(5 to 20 words each): what is likely to come next, why something happens, or how it "
            "links to an earlier point.\n\n" + so_far)


def augment_rows(rows, backend, *, mode: str = "rewrite", seed: int = 0, every_words: int = 60,
                 max_thought_tokens: int = 48, temperature: float = 0.7, top_p: float = 0.95,
                 chat="auto", text_column: str = "text", id_column: str = "id",
                 open_tag: str = OPEN, close_tag: str = CLOSE, teacher: str | None = None,
                 max_new_tokens: int | None = None, keep_unfinished: bool = False) -> tuple[list, list]:
    """Ask the teacher ``backend`` to add thoughts to each raw row; returns ``(kept, rejected)``,
    each a list of ``(new_row, check)`` with ``check`` from :func:`check_row` against the original.

    A new row is ``{"id", "text" (interleaved), "original" (the raw chunk), "teacher", "mode"}``
    plus the source row's other columns (not those starting with ``_``). Ids come from
    ``id_column``, else ``row{N:05d}`` from the row's position. Sampling seeds are
    ``derive_seed(seed, row_id, point_index)``, so a rerun is identical on the ``hf`` backend.

    ``mode="rewrite"``: the teacher copies the chunk and inserts about one thought per
    ``every_words`` words itself; its completion is the interleaved text (``max_new_tokens``
    defaults to the chunk's tokens plus room for the thoughts). ``mode="insert"``: the harness
    picks sentence ends (:func:`insertion_points`), asks for one thought at each given the raw text
    so far (prompt ending with the open tag, generation stopping at the close tag, at most
    ``max_thought_tokens``) and builds the text itself, keeping the original whitespace; a row
    with a thought that hit ``max_thought_tokens`` before the close tag is rejected unless
    ``keep_unfinished``.

    ``chat``: True uses ``backend.chat_prompt``, False a plain completion prompt, ``"auto"`` the
    chat template when the backend has one that works.
    """
    if mode not in ("rewrite", "insert"):
        raise ValueError(f"mode must be 'rewrite' or 'insert', got {mode!r}")
    use_chat = _use_chat(backend, chat)
    if teacher is None:
        teacher = getattr(getattr(backend, "arm", None), "name", None) or type(backend).__name__

    def render(content: str) -> str:
        return backend.chat_prompt([{"role": "user", "content": content}]) if use_chat else content

    jobs = []  # (new_row, early problems, [(prompt_ids, point offset)], chunk)
    for n, row in enumerate(rows):
        row_id = str(row.get(id_column) or f"row{n:05d}")
        chunk = row.get(text_column)
        new = {k: v for k, v in row.items() if not k.startswith("_") and k != text_column}
        new.update(id=row_id, text=None, original=chunk, teacher=teacher, mode=mode)
        problems, requests = [], []
        if not isinstance(chunk, str) or not chunk.strip():
            problems.append(f"missing text: no text in column {text_column!r}")
        elif open_tag in chunk or close_tag in chunk:
            problems.append(f"already interleaved: the source text contains {open_tag} or {close_tag}")
        elif mode == "rewrite":
            n_thoughts = max(1, round(len(chunk.split()) / every_words))
            prompt = render(rewrite_prompt(chunk, n_thoughts, open_tag, close_tag, use_chat))
            budget = max_new_tokens or (len(backend.encode(chunk)) + 16
                                        + n_thoughts * (max_thought_tokens + len(backend.encode(open_tag + close_tag))))
            requests.append((GenRequest(backend.encode(prompt), 1, [derive_seed(seed, row_id, 0)], budget,
                                        temperature, top_p, ("</annotated>",)), None))
        else:
            points = insertion_points(chunk, every_words)
            if not points:
                problems.append("no insertion point: the text has no sentence boundary")
            for k, at in enumerate(points):
                prompt = render(insert_prompt(chunk[:at], use_chat)) + ("" if use_chat else " ") + open_tag
                requests.append((GenRequest(backend.encode(prompt), 1, [derive_seed(seed, row_id, k)],
                                            max_thought_tokens, temperature, top_p, (close_tag,)), at))
        jobs.append((new, problems, requests, chunk))

    flat = [req for _, _, reqs, _ in jobs for req, _ in reqs]
    outputs = iter(backend.generate(flat) if flat else [])
    kept, rejected = [], []
    for new, problems, requests, chunk in jobs:
        completions = [next(outputs)[0] for _ in requests]
        texts = [c.text for c in completions]
        if mode == "rewrite" and texts:
            text = texts[0].split("<annotated>", 1)[-1]  # a chat reply may repeat the opening marker
            new["text"] = text.split("</annotated>", 1)[0].strip()
        elif mode == "insert" and texts:
            parts, prev = [], 0
            for (_, at), thought in zip(requests, texts):
                thought = normalise_ws(thought.split(close_tag)[0])
                parts += [chunk[prev:at], f" {open_tag}{thought}{close_tag}"]
                prev = at
            new["text"] = "".join(parts + [chunk[prev:]])
        if problems:
            check = dict(check_row({}, text_column="text"), problems=problems)
        else:
            check = check_row(new, original_column="original", open_tag=open_tag, close_tag=close_tag)
            cut = [k for k, c in enumerate(completions) if c.finish_reason == "length"]
            if mode == "insert" and cut and not keep_unfinished:  # cut off mid-sentence: not a finished thought
                check["problems"].append(f"unfinished thought: thought {cut[0] + 1} hit max_thought_tokens "
                                         f"({len(cut)} of {len(completions)})")
                check["ok"] = False
        (kept if check["ok"] else rejected).append((new, check))
    return kept, rejected
