"""The interleaved-thinking format: prose with thoughts inserted as ``<think>...</think>`` spans.

One parser for every reader of the format (the ``chunks`` task, ``harness data validate`` and
``augment``, SFT): :func:`parse_thoughts` either returns the spans with their character offsets
or raises :class:`MalformedThoughts` naming what is wrong. The rule, the same everywhere:

* tags are balanced: every open tag is closed before the next open tag (no nesting), and no
  close tag comes without an open tag;
* no thought is empty: a span holding nothing but whitespace is refused (there is no reader for
  which an empty thought means anything: the ``chunks`` task would give it as the reference
  thought, SFT would teach it);
* the tags are any two non-empty strings (``think_open``/``think_close`` options).

The plain text (thoughts removed) comes two ways: :meth:`Interleaved.plain` cuts the spans out
exactly, whitespace left as it is (the ``chunks`` task splits that into words);
:meth:`Interleaved.stripped` also drops the spaces or tabs right before each span, which undoes
an insertion as ``text <think>...</think>`` exactly (``"a. <think>t</think> b"`` gives ``"a. b"``).

Torch-free and dependency-free (the format is used by the CLI's light commands).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.loading import DataError

OPEN, CLOSE = "<think>", "</think>"


class MalformedThoughts(DataError):
    """Unbalanced, nested or empty thought tags; ``reason`` is a short human-readable string
    whose part before the first colon is the kind of problem (``"unbalanced tags"``,
    ``"nested tags"``, ``"empty thought"``), after it where (``"... at char N"``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Thought:
    """One span: ``text[start:end]`` is the open tag, ``content`` (raw, whitespace kept) and the
    close tag."""

    start: int
    end: int
    content: str


@dataclass(frozen=True)
class Interleaved:
    """A parsed text: the text itself and its thought spans, in order."""

    text: str
    thoughts: tuple[Thought, ...]

    def segments(self) -> list[tuple[str, str]]:
        """``("text", s)`` and ``("thought", content)`` pieces in order; text pieces keep their
        whitespace and empty ones are left out."""
        out, pos = [], 0
        for t in self.thoughts:
            if t.start > pos:
                out.append(("text", self.text[pos:t.start]))
            out.append(("thought", t.content))
            pos = t.end
        if pos < len(self.text):
            out.append(("text", self.text[pos:]))
        return out

    def plain(self, start: int = 0, end: int | None = None) -> str:
        """``text[start:end]`` with the (parts of) spans in it cut out; nothing else changes."""
        return self._cut(start, len(self.text) if end is None else end, space_before=False)

    def stripped(self) -> str:
        """The text without its spans, each taking the spaces or tabs right before it along."""
        return self._cut(0, len(self.text), space_before=True)

    def _cut(self, start: int, end: int, space_before: bool) -> str:
        pieces, pos = [], start
        for t in self.thoughts:
            if t.end <= pos:
                continue
            if t.start >= end:
                break
            cut = t.start
            while space_before and cut > pos and self.text[cut - 1] in " \t":
                cut -= 1
            pieces.append(self.text[pos:cut])
            pos = t.end
        pieces.append(self.text[pos:end])
        return "".join(pieces)


def parse_thoughts(text: str, open_tag: str = OPEN, close_tag: str = CLOSE) -> Interleaved:
    """Parse ``text``'s thought spans (see the module docstring for the rule).

    Raises :class:`MalformedThoughts` for a close tag without an open tag, an open tag that is
    never closed, an open tag inside a thought, or a thought that is empty (whitespace only);
    :class:`ValueError` for an empty tag."""
    if not open_tag or not close_tag:
        raise ValueError(f"thought tags must be non-empty, got {open_tag!r} and {close_tag!r}")
    thoughts: list[Thought] = []
    pos = 0
    while True:
        o, c = text.find(open_tag, pos), text.find(close_tag, pos)
        if o < 0 and c < 0:
            break
        if c >= 0 and (o < 0 or c < o):
            raise MalformedThoughts(f"unbalanced tags: {close_tag} at char {c} without {open_tag}")
        inner_start = o + len(open_tag)
        c = text.find(close_tag, inner_start)
        nested = text.find(open_tag, inner_start)
        if nested >= 0 and (c < 0 or nested < c):
            raise MalformedThoughts(f"nested tags: {open_tag} at char {nested} opens inside the thought at "
                                    f"char {o} (a missing {close_tag}?)")
        if c < 0:
            raise MalformedThoughts(f"unbalanced tags: {open_tag} at char {o} is never closed")
        content = text[inner_start:c]
        if not content.strip():
            raise MalformedThoughts(f"empty thought: the {open_tag} at char {o} holds no text before its "
                                    f"{close_tag}")
        pos = c + len(close_tag)
        thoughts.append(Thought(o, pos, content))
    return Interleaved(text, tuple(thoughts))


def strip_thoughts(text: str, open_tag: str = OPEN, close_tag: str = CLOSE) -> str:
    """``parse_thoughts(text, open_tag, close_tag).stripped()``."""
    return parse_thoughts(text, open_tag, close_tag).stripped()
