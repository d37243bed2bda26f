"""Task ``chunks``: prefix / true-suffix items for the reward gate and thought probe.

Rows come from a local JSONL/parquet file, a Hub dataset id, or the packaged sample set
(32 passages of educational prose written for this project). A row either has explicit
``prefix``/``suffix`` columns, or one text column that is split deterministically on whitespace
words (model-independent, so every arm sees identical items): the suffix is the ``suffix_words``
words after the first ``prefix_words`` (or after all but the suffix, for shorter texts).

Interleaved-thinking rows (text with ``<think>...</think>`` spans, read by
:func:`tasks.thought_spans.parse_thoughts`, the same parser as ``harness data validate``) are
split at a thought: the prefix ends right before it, thoughts are stripped from prefix and
suffix, and the row's own thought is kept as ``meta['reference_thought']``. A row with
unbalanced or nested tags or an empty thought is a :class:`DataError` naming its file and line.

Options (``--task-option KEY=VALUE``): ``data``, ``split``, ``config``, ``id_column``,
``text_column``, ``prefix_column``, ``suffix_column``, ``cluster_column``, ``prefix_words``,
``suffix_words``, ``think_open``, ``think_close``.
"""

from __future__ import annotations

import re
from importlib import resources

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.types import Item
from tasks.loading import DataError, read_rows, require
from tasks.thought_spans import CLOSE, OPEN, MalformedThoughts, parse_thoughts

OPTIONS = (
    Option("data", str, None, "JSONL/parquet file or Hub dataset id (default: the packaged passages)"),
    Option("split", str, "train", "Hub split"),
    Option("config", str, None, "Hub config"),
    Option("id_column", str, "id", "column with the item id (default: row number)"),
    Option("text_column", str, "text", "column with the passage to split"),
    Option("prefix_column", str, "prefix", "column with a ready prefix (with suffix_column)"),
    Option("suffix_column", str, "suffix", "column with a ready suffix"),
    Option("cluster_column", str, "source", "column naming the item's source (cluster-aware statistics)"),
    Option("prefix_words", int, 288, "whitespace words of prefix", low=1),
    Option("suffix_words", int, 96, "whitespace words of true suffix", low=1),
    Option("think_open", str, OPEN, "open tag of interleaved thoughts in the text"),
    Option("think_close", str, CLOSE, "close tag of interleaved thoughts in the text"),
)


@hookimpl
def register_tasks(register):
    register(ChunksTask)


def sample_path() -> str:
    return str(resources.files("tasks").joinpath("data/sample_chunks.jsonl"))


def _words(text: str) -> list[str]:
    """Whitespace words that keep their trailing whitespace, so joins preserve paragraphs."""
    return re.findall(r"\S+\s*", text)


def split_text(text: str, prefix_words: int, suffix_words: int) -> tuple[str, str]:
    words = _words(text.strip())
    n_suffix = min(suffix_words, len(words) // 2)
    n_prefix = min(prefix_words, len(words) - n_suffix)
    return "".join(words[:n_prefix]).strip(), "".join(words[n_prefix:n_prefix + n_suffix]).strip()


def split_interleaved(text: str, open_tag: str, close_tag: str, prefix_words: int, suffix_words: int,
                      where: str) -> tuple[str, str, str]:
    """Split an interleaved-thinking text at a thought: (prefix, suffix, that thought).

    The chosen thought is the last one starting within ``prefix_words`` words of stripped text
    (or the first one). Text that :func:`tasks.thought_spans.parse_thoughts` refuses (unbalanced
    or nested tags, an empty thought) raises :class:`DataError` naming ``where`` and the problem."""
    try:
        parsed = parse_thoughts(text, open_tag, close_tag)
    except MalformedThoughts as exc:
        raise DataError(f"{where}: {exc.reason}") from exc
    thoughts = parsed.thoughts
    if not thoughts:
        raise DataError(f"{where}: no {open_tag}...{close_tag} thought to split at")
    plain_before = [len(_words(parsed.plain(0, t.start))) for t in thoughts]
    eligible = [k for k, w in enumerate(plain_before) if 0 < w <= prefix_words]
    k = eligible[-1] if eligible else next((k for k, w in enumerate(plain_before) if w > 0), None)
    if k is None:
        raise DataError(f"{where}: no thought has text before it to use as a prefix")
    t = thoughts[k]
    prefix = parsed.plain(0, t.start).strip()
    suffix_words_all = _words(parsed.plain(t.end).strip())
    suffix = "".join(suffix_words_all[:suffix_words]).strip()
    if not suffix:
        raise DataError(f"{where}: no text after the chosen thought to use as a suffix")
    return re.sub(r"[ \t]+", " ", prefix), re.sub(r"[ \t]+", " ", suffix), t.content.strip()


class ChunksTask:
    name = "chunks"
    description = "prefix/suffix chunks from JSONL, parquet or a Hub dataset (default: 32 packaged passages)"

    options = OPTIONS

    def __init__(self, options=None):
        self.options = parse_options(self.options, options or {}, "chunks task", "--task-option")
        for key in ("think_open", "think_close"):
            if not self.options[key]:
                raise BadInput(f"chunks task: {key} is empty (give the tag text)", param_hint="--task-option")

    def config(self) -> dict:
        return {"name": self.name, **self.options, "data": self.options["data"] or "package:sample_chunks"}

    def items(self) -> list[Item]:
        o = self.options
        rows = read_rows(o["data"] or sample_path(), split=o["split"], config=o["config"])
        items, seen = [], {}
        for n, row in enumerate(rows):
            where = f"{row['_source']}:{row['_line']}"
            item_id = str(row.get(o["id_column"]) or f"row{n:05d}")
            if item_id in seen:
                raise DataError(f"{where}: duplicate id {item_id!r} (first at line {seen[item_id]})")
            seen[item_id] = row["_line"]
            meta = {}
            if o["prefix_column"] in row and o["suffix_column"] in row:
                prefix, suffix = require(row, o["prefix_column"]), require(row, o["suffix_column"])
            else:
                half = [c for c in (o["prefix_column"], o["suffix_column"]) if c in row]
                if half and o["text_column"] not in row:
                    missing = o["suffix_column"] if half[0] == o["prefix_column"] else o["prefix_column"]
                    raise DataError(f"{where}: has a {half[0]!r} column but no {missing!r} column "
                                    f"(give both, or a {o['text_column']!r} column)")
                text = require(row, o["text_column"])
                if o["think_open"] in text or o["think_close"] in text:
                    prefix, suffix, thought = split_interleaved(text, o["think_open"], o["think_close"],
                                                                o["prefix_words"], o["suffix_words"], where)
                    meta["reference_thought"] = thought
                else:
                    prefix, suffix = split_text(text, o["prefix_words"], o["suffix_words"])
                if not prefix or not suffix:
                    raise DataError(f"{where}: text too short to split into prefix and suffix")
            cluster = row.get(o["cluster_column"])
            items.append(Item(item_id, prefix, suffix, None if cluster is None else str(cluster), meta))
        if not items:
            raise DataError(f"no items in {o['data'] or sample_path()}")
        return items
