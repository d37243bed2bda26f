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

``split_by=tokens`` splits by one named tokenizer's tokens instead (the reference study split
by the arm's tokens: prefix 256, suffix 128): ``tokenizer`` names it (an arm of the packaged arms
file such as ``tiny-qwen3``, a model spec ``random:tiny-qwen3`` / ``package:...`` / a Hub id, an
HF model directory, or a directory with only tokenizer files) and ``prefix_tokens`` /
``suffix_tokens`` set the lengths. The cut falls on a token boundary of the original text (never
inside a character), and the same rule for short texts applies. Items are then the same for every
arm only as text: an arm with another tokenizer sees a prefix of a different token length.
``config()`` records ``split_by`` and the lengths (and ``tokenizer``) that were used.

Options (``--task-option KEY=VALUE``): ``data``, ``split``, ``config``, ``id_column``,
``text_column``, ``prefix_column``, ``suffix_column``, ``cluster_column``, ``prefix_words``,
``suffix_words``, ``think_open``, ``think_close``, ``split_by``, ``tokenizer``, ``prefix_tokens``,
``suffix_tokens``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

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
    Option("split_by", str, "words", "split texts by whitespace words (same items for every arm) or by the "
                                     "tokens of `tokenizer`", choices=("words", "tokens")),
    Option("tokenizer", str, None, "with split_by=tokens: an arm name, model spec, Hub id or local tokenizer "
                                   "directory"),
    Option("prefix_tokens", int, 256, "with split_by=tokens: tokens of prefix", low=1),
    Option("suffix_tokens", int, 128, "with split_by=tokens: tokens of true suffix", low=1),
)
WORD_KEYS = ("prefix_words", "suffix_words")
TOKEN_KEYS = ("tokenizer", "prefix_tokens", "suffix_tokens")


@hookimpl
def register_tasks(register):
    register(ChunksTask)


def sample_path() -> str:
    return str(resources.files("tasks").joinpath("data/sample_chunks.jsonl"))


def _words(text: str) -> list[str]:
    """Whitespace words that keep their trailing whitespace, so joins preserve paragraphs."""
    return re.findall(r"\S+\s*", text)


class TokenPieces:
    """Cut text into one piece per token of a tokenizer, as pieces of the original text: piece
    ``k`` runs from where token ``k`` starts to where token ``k + 1`` starts (character offsets),
    so joining the pieces gives the text back exactly and counting them counts tokens. A character
    split over several byte-level tokens goes whole into the last of its pieces (the others are
    empty), so no cut falls inside a character."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> list[str]:
        if not text:
            return []
        tok = self.tokenizer
        if not getattr(tok, "is_fast", False):
            raise BadInput(f"chunks task: the tokenizer {type(tok).__name__} gives no character offsets (a "
                           "'fast' tokenizer is needed for split_by=tokens)", param_hint="--task-option")
        spans = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        starts, at = [], 0
        for a, _b in spans:
            at = max(at, min(a, len(text)))
            starts.append(at)
        if not starts:
            return [text]
        bounds = [0, *starts[1:], len(text)]
        return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def split_text(text: str, prefix_words: int, suffix_words: int, pieces=None) -> tuple[str, str]:
    """(prefix, suffix): ``suffix_words`` units after the first ``prefix_words`` (or after all but
    the suffix, for shorter texts). Units are whitespace words, or what ``pieces`` (e.g. a
    :class:`TokenPieces`) cuts the text into."""
    words = (pieces or _words)(text.strip())
    n_suffix = min(suffix_words, len(words) // 2)
    n_prefix = min(prefix_words, len(words) - n_suffix)
    return "".join(words[:n_prefix]).strip(), "".join(words[n_prefix:n_prefix + n_suffix]).strip()


def split_interleaved(text: str, open_tag: str, close_tag: str, prefix_words: int, suffix_words: int,
                      where: str, pieces=None) -> tuple[str, str, str]:
    """Split an interleaved-thinking text at a thought: (prefix, suffix, that thought).

    The chosen thought is the last one starting within ``prefix_words`` words of stripped text
    (or the first one); ``pieces`` counts other units (tokens) as in :func:`split_text`. Text that
    :func:`tasks.thought_spans.parse_thoughts` refuses (unbalanced or nested tags, an empty
    thought) raises :class:`DataError` naming ``where`` and the problem."""
    units = pieces or _words
    try:
        parsed = parse_thoughts(text, open_tag, close_tag)
    except MalformedThoughts as exc:
        raise DataError(f"{where}: {exc.reason}") from exc
    thoughts = parsed.thoughts
    if not thoughts:
        raise DataError(f"{where}: no {open_tag}...{close_tag} thought to split at")
    plain_before = [len(units(parsed.plain(0, t.start).strip())) for t in thoughts]
    eligible = [k for k, w in enumerate(plain_before) if 0 < w <= prefix_words]
    k = eligible[-1] if eligible else next((k for k, w in enumerate(plain_before) if w > 0), None)
    if k is None:
        raise DataError(f"{where}: no thought has text before it to use as a prefix")
    t = thoughts[k]
    prefix = parsed.plain(0, t.start).strip()
    suffix_words_all = units(parsed.plain(t.end).strip())
    suffix = "".join(suffix_words_all[:suffix_words]).strip()
    if not suffix:
        raise DataError(f"{where}: no text after the chosen thought to use as a suffix")
    return re.sub(r"[ \t]+", " ", prefix), re.sub(r"[ \t]+", " ", suffix), t.content.strip()


def load_split_tokenizer(spec: str):
    """The tokenizer ``spec`` names: an arm of the packaged arms file (its model's tokenizer), a
    directory holding only tokenizer files, or a model spec (``random:``, ``package:``, a Hub id,
    an HF directory, a ``.gguf`` file) read by :func:`harness.modelspec.load_tokenizer`."""
    from harness.arms import load_arms, looks_like_spec
    from harness.modelspec import ModelSpecError, load_tokenizer
    from harness.types import Arm

    arms = load_arms()
    if spec in arms:
        return load_tokenizer(arms[spec])
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelSpecError(f"chunks task: could not load the tokenizer in {path}: "
                                 f"{type(exc).__name__}: {exc}") from exc
    if looks_like_spec(spec):
        return load_tokenizer(Arm(name=spec, model=spec))
    raise BadInput(f"chunks task: tokenizer={spec!r} is not an arm ({', '.join(sorted(arms))}), a path or a "
                   "model spec", param_hint="--task-option")


class ChunksTask:
    name = "chunks"
    description = "prefix/suffix chunks from JSONL, parquet or a Hub dataset (default: 32 packaged passages)"

    options = OPTIONS

    def __init__(self, options=None):
        self.options = parse_options(self.options, options or {}, "chunks task", "--task-option")
        for key in ("think_open", "think_close"):
            if not self.options[key]:
                raise BadInput(f"chunks task: {key} is empty (give the tag text)", param_hint="--task-option")
        by_tokens = self.options["split_by"] == "tokens"
        if by_tokens and not (self.options["tokenizer"] or "").strip():
            raise BadInput("chunks task: split_by=tokens needs tokenizer=ARM_OR_PATH", param_hint="--task-option")
        defaults = {o.key: o.default for o in OPTIONS}
        unused = [k for k in (WORD_KEYS if by_tokens else TOKEN_KEYS) if self.options[k] != defaults[k]]
        if unused:  # a setting of the other split (the harness may hand over every default, so compare)
            raise BadInput(f"chunks task: {unused[0]} applies to split_by={'words' if by_tokens else 'tokens'}, "
                           f"not split_by={self.options['split_by']}", param_hint="--task-option")

    def config(self) -> dict:
        unused = WORD_KEYS if self.options["split_by"] == "tokens" else TOKEN_KEYS
        return {"name": self.name, **{k: v for k, v in self.options.items() if k not in unused},
                "data": self.options["data"] or "package:sample_chunks"}

    def items(self) -> list[Item]:
        o = self.options
        if o["split_by"] == "tokens":
            pieces, n_prefix, n_suffix = TokenPieces(load_split_tokenizer(o["tokenizer"])), o["prefix_tokens"], o["suffix_tokens"]
        else:
            pieces, n_prefix, n_suffix = None, o["prefix_words"], o["suffix_words"]
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
                                                                n_prefix, n_suffix, where, pieces)
                    meta["reference_thought"] = thought
                else:
                    prefix, suffix = split_text(text, n_prefix, n_suffix, pieces)
                if not prefix or not suffix:
                    raise DataError(f"{where}: text too short to split into prefix and suffix")
            cluster = row.get(o["cluster_column"])
            items.append(Item(item_id, prefix, suffix, None if cluster is None else str(cluster), meta))
        if not items:
            raise DataError(f"no items in {o['data'] or sample_path()}")
        return items
