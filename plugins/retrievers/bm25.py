"""Retriever ``bm25``: Lucene-style BM25 over a local JSONL corpus, in-process (the ``bm25s`` library).

The corpus is the Search-R1 / FlashRAG format: one JSON object per line with a string ``id`` and
``contents`` whose first line is the passage's title (blank lines are skipped; an integer id is
read as its decimal string). A line that is not a JSON object, an id or contents that is missing
or empty, or an id seen before is a one-line error naming ``file:line``.

Options (``--retriever-option``): ``corpus`` (default: the packaged fixture corpus
``tasks/data/search/corpus.jsonl``), ``stemmer`` (a Snowball algorithm of PyStemmer, e.g.
``english`` or ``porter``, or ``none``), ``stopwords`` (``en`` or ``none``), ``k1`` and ``b``
(defaults 0.9 and 0.4, Pyserini's, which Search-R1's BM25 server uses), ``cache`` (index directory;
default ``$HARNESS_CACHE/bm25``, i.e. ``~/.cache/harness/bm25``).

The index covers the whole ``contents`` (title included), lower-cased and split into words of two
or more characters. It is built at the first search and saved under ``cache`` in a directory
keyed by the corpus's sha256 and every setting that changes it (and the library versions), so a
later run with the same corpus and settings loads it instead of building it again.

``retrieve(queries, topk)`` returns, per query, the passages that match at least one query term
(score > 0, as a Lucene index does), at most ``topk``, best first; equal scores keep corpus order.
An empty query, or one whose words are all stopwords or unknown to the corpus, finds nothing.
Repeated queries in one call are scored once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option
from plugins.retrievers import retrieve_unique
from tasks.corpus import read_corpus

HINT = "--retriever-option"
PACKAGED = "tasks/data/search/corpus.jsonl"  # relative to the project's root (the ``tasks`` package)
INDEX_FORMAT = 1  # bump when what is saved in the cache changes


@hookimpl
def register_retrievers(register):
    register(BM25Retriever)


def packaged_corpus() -> Path:
    """The search fixture's corpus, shipped with the ``tasks`` package."""
    from tasks.flashrag import fixture_corpus_path

    return Path(fixture_corpus_path())


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class BM25Retriever:
    name = "bm25"
    description = "BM25 (Lucene variant) over a local JSONL corpus of {id, contents}, in-process; index cached"

    options = (
        Option("corpus", str, None, f"JSONL corpus of {{\"id\", \"contents\"}} rows (default: packaged {PACKAGED})"),
        Option("stemmer", str, "english", "PyStemmer algorithm (english, porter, ...) or none"),
        Option("stopwords", str, "en", "stopword list removed from passages and queries", choices=("en", "none")),
        Option("k1", float, 0.9, "BM25 term-frequency saturation", low=0),
        Option("b", float, 0.4, "BM25 length normalisation", low=0, high=1),
        Option("cache", str, None, "index cache directory (default $HARNESS_CACHE/bm25)"),
    )

    def __init__(self, options=None):
        from harness.options import parse_options

        o = parse_options(self.options, dict(options or {}), "bm25 retriever", HINT)
        self.stemmer_name = str(o["stemmer"]).strip().lower()
        if self.stemmer_name != "none":
            import Stemmer

            if self.stemmer_name not in Stemmer.algorithms():
                raise BadInput(f"bm25 retriever: stemmer={o['stemmer']!r}; valid: none, "
                               f"{', '.join(Stemmer.algorithms())}", param_hint=HINT)
        self.stopwords, self.k1, self.b = o["stopwords"], float(o["k1"]), float(o["b"])
        self.corpus_shown = o["corpus"] or f"package:{PACKAGED}"
        self.corpus_path = Path(o["corpus"]).expanduser() if o["corpus"] else packaged_corpus()
        self.ids, self.contents, self.sha256 = read_corpus(self.corpus_path, "bm25 retriever", HINT)
        if o["cache"]:
            self.cache_root = Path(o["cache"]).expanduser()
        else:
            from harness.modelspec import cache_dir

            self.cache_root = cache_dir() / "bm25"
        self.index_dir = self.cache_root / self.cache_key()
        self.index_built = False  # True once this instance built (not loaded) its index
        self._index = None
        self._stemmer = None
        self._lock = threading.Lock()

    # -- settings -------------------------------------------------------------------------
    def settings(self) -> dict:
        return {"method": "lucene", "k1": self.k1, "b": self.b, "stemmer": self.stemmer_name,
                "stopwords": self.stopwords, "lower": True, "token_pattern": "words of 2+ characters"}

    def versions(self) -> dict:
        return {"bm25s": _version("bm25s"), "PyStemmer": _version("PyStemmer") if self.stemmer_name != "none" else None}

    def cache_key(self) -> str:
        key = {"format": INDEX_FORMAT, "corpus_sha256": self.sha256, **self.settings(), **self.versions()}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    def config(self) -> dict:
        return {"corpus": self.corpus_shown, "corpus_sha256": self.sha256, "num_docs": len(self.ids),
                **self.settings(), "versions": self.versions()}

    # -- index ----------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        if self._stemmer is None and self.stemmer_name != "none":
            import Stemmer

            self._stemmer = Stemmer.Stemmer(self.stemmer_name)
        return bm25s.tokenize(texts, lower=True, stopwords=None if self.stopwords == "none" else self.stopwords,
                              stemmer=self._stemmer, return_ids=False, show_progress=False)

    def _load_or_build(self):
        with self._lock:
            if self._index is not None:
                return self._index
            import bm25s

            index = None
            if (self.index_dir / "params.index.json").is_file():
                try:
                    index = bm25s.BM25.load(str(self.index_dir), load_corpus=False)
                except (OSError, ValueError, KeyError):
                    index = None
                if index is None or index.scores.get("num_docs") != len(self.ids):
                    index = None  # a damaged cache entry: removed, and built again below
                    shutil.rmtree(self.index_dir, ignore_errors=True)
            if index is None:
                index = self._build()
            self._index = index
            return index

    def _build(self):
        import bm25s

        tokens = self._tokenize(self.contents)
        if not any(tokens):
            raise BadInput(f"bm25 retriever: no passage of {str(self.corpus_path)!r} has a word to index "
                           "(words of 2+ characters that are not stopwords)", param_hint=HINT)
        index = bm25s.BM25(method="lucene", k1=self.k1, b=self.b)
        index.index(tokens, show_progress=False)
        self.cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=self.cache_root))
        try:
            index.save(str(tmp))
            (tmp / "harness.json").write_text(json.dumps(
                {"corpus": str(self.corpus_path), "corpus_sha256": self.sha256, **self.settings(),
                 **self.versions()}, indent=1))
            try:
                os.replace(tmp, self.index_dir)  # atomic; another process may have saved it first
            except OSError:
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.index_built = True
        return index

    # -- search ---------------------------------------------------------------------------
    def _top(self, index, token_ids: list[int], k: int) -> list[dict]:
        import numpy as np

        scores = index.get_scores_from_ids(token_ids)
        hits = np.flatnonzero(scores > 0)
        if hits.size > k:  # keep every passage tied with the k-th score, then order them exactly
            kth = np.partition(scores[hits], hits.size - k)[hits.size - k]
            hits = hits[scores[hits] >= kth]
        picked = hits[np.lexsort((hits, -scores[hits]))][:k]
        return [{"id": self.ids[i], "contents": self.contents[i], "score": float(scores[i])} for i in picked.tolist()]

    def retrieve(self, queries, topk: int) -> list[list[dict]]:
        return retrieve_unique(queries, topk, self._search)

    def _search(self, unique: list[str], k: int) -> dict[str, list[dict]]:
        index = self._load_or_build()
        with self._lock:  # a PyStemmer stemmer is not thread-safe
            tokenized = self._tokenize(unique)
        found = {}
        for q, tokens in zip(unique, tokenized):
            token_ids = index.get_tokens_ids(tokens)
            found[q] = self._top(index, token_ids, k) if token_ids else []
        return found

    def close(self) -> None:
        self._index = None
