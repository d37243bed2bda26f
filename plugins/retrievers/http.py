"""Retriever ``http``: a client for a running retrieval server, in one of two wire formats.

``protocol=search_r1`` (Search-R1's ``search_r1/search/retrieval_server.py``)::

    POST {url}/retrieve  {"queries": [q, ...], "topk": k, "return_scores": true}
    ->  {"result": [[{"document": {"id": ..., "contents": ...}, "score": s}, ...], ...]}

Entries without ``score`` (a server answering as for ``return_scores: false``, i.e. the document
itself in place of ``{"document", "score"}``) get score None.

``protocol=research`` (ReSearch / ReCall's ``scripts/serving/retriever_serving.py`` over FlashRAG)::

    POST {url}/batch_search  {"query": [q, ...], "top_n": k, "return_score": true}
    ->  [[[doc, ...], ...], [[score, ...], ...]]     (without scores: [[doc, ...], ...])
    POST {url}/search        {"query": q, "top_n": k, "return_score": true}
    ->  [[doc, ...], [score, ...]]                    (without scores: [doc, ...])

A batch of one query goes to ``/search`` (that server refuses an empty query there, so empty
queries are never sent: they find nothing), larger batches to ``/batch_search``.

In both formats a document is ``{"id", "contents"}``; one without ``contents`` but with ``title``
and ``text`` gets ``contents = title + "\\n" + text``; one without an id gets ``sha256:`` and the
first 16 hex digits of its contents' sha256. Replies longer than ``topk`` are cut to ``topk``.

Options (``--retriever-option``): ``url`` (required), ``protocol``, ``timeout`` (seconds per
request), ``retries``, ``backoff`` (seconds before the first retry, doubling), ``concurrency``
(requests in flight), ``batch_size`` (queries per request). Requests go through
:class:`harness.serving.ServerPool`: connection errors, timeouts, 408/429/5xx and replies that are
not JSON are retried with backoff; then, or at once for another HTTP error or a JSON reply of the
wrong shape, one :class:`RetrieverServerError` naming the server (credentials redacted).
"""

from __future__ import annotations

import hashlib
import numbers

import click

from harness.hookspecs import hookimpl
from harness.options import Option
from harness.redact import redact_text
from plugins.retrievers import retrieve_unique

HINT = "--retriever-option"
PROTOCOLS = ("search_r1", "research")


@hookimpl
def register_retrievers(register):
    register(HTTPRetriever)


class RetrieverServerError(click.ClickException):
    """The retrieval server could not answer, or answered something that is not a search result."""


def doc_from_reply(doc) -> dict | None:
    """One document of a server's reply as ``{"id", "contents"}`` (None: not a document)."""
    if not isinstance(doc, dict):
        return None
    contents = doc.get("contents")
    if not isinstance(contents, str):
        title, text = doc.get("title"), doc.get("text")
        if not isinstance(text, str):
            return None
        contents = f"{title}\n{text}" if isinstance(title, str) else text
    doc_id = doc.get("id", doc.get("doc_id"))
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id:
        doc_id = "sha256:" + hashlib.sha256(contents.encode()).hexdigest()[:16]
    return {"id": doc_id, "contents": contents}


def _score(value):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def _is_docs(value) -> bool:
    return isinstance(value, list) and all(isinstance(d, dict) for d in value)


def _is_scores(value) -> bool:
    return isinstance(value, list) and all(isinstance(s, numbers.Real) and not isinstance(s, bool) for s in value)


def parse_search_r1(reply, n: int) -> list[list[tuple]]:
    """Per query ``[(doc, score), ...]`` from a ``/retrieve`` reply (ValueError: not one)."""
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, list) or len(result) != n or not all(isinstance(r, list) for r in result):
        raise ValueError(f'expected {{"result": [...]}} with one list per query ({n})')
    out = []
    for entries in result:
        row = []
        for e in entries:
            if isinstance(e, dict) and isinstance(e.get("document"), dict):
                doc, score = e["document"], e.get("score")
            else:
                doc, score = e, None
            parsed = doc_from_reply(doc)
            if parsed is None:
                raise ValueError("a result entry is neither {\"document\": {...}, \"score\": ...} nor a document")
            row.append((parsed, _score(score)))
        out.append(row)
    return out


def parse_research(reply, n: int, single: bool) -> list[list[tuple]]:
    """Per query ``[(doc, score), ...]`` from a ``/search`` (``single``) or ``/batch_search`` reply."""
    if single:
        if isinstance(reply, list) and len(reply) == 2 and _is_docs(reply[0]) and _is_scores(reply[1]) \
                and len(reply[0]) == len(reply[1]):
            groups, scores = [reply[0]], [reply[1]]
        elif _is_docs(reply):
            groups, scores = [reply], [[None] * len(reply)]
        else:
            raise ValueError("expected [[doc, ...], [score, ...]] or [doc, ...]")
    else:
        paired = isinstance(reply, list) and len(reply) == 2 and all(
            isinstance(part, list) and len(part) == n and all(isinstance(g, list) for g in part) for part in reply) \
            and all(_is_scores(s) for s in reply[1]) and all(_is_docs(g) for g in reply[0])
        if paired and all(len(g) == len(s) for g, s in zip(*reply)):
            groups, scores = reply
        elif isinstance(reply, list) and len(reply) == n and all(_is_docs(g) for g in reply):
            groups, scores = reply, [[None] * len(g) for g in reply]
        else:
            raise ValueError(f"expected [[[doc, ...] per query], [[score, ...] per query]] for {n} queries")
    out = []
    for docs, ss in zip(groups, scores):
        row = []
        for doc, score in zip(docs, ss):
            parsed = doc_from_reply(doc)
            if parsed is None:
                raise ValueError("a document has no string contents (or title and text)")
            row.append((parsed, _score(score)))
        out.append(row)
    return out


class HTTPRetriever:
    name = "http"
    description = "a running retrieval server: Search-R1 /retrieve or ReSearch/FlashRAG /batch_search"

    options = (
        Option("url", str, None, "the server's base URL, e.g. http://127.0.0.1:8000", required=True),
        Option("protocol", str, "search_r1", "wire format: search_r1 (/retrieve) or research (/batch_search, "
               "/search)", choices=PROTOCOLS),
        Option("timeout", float, 60.0, "seconds one request may take", low=0.001),
        Option("retries", int, 3, "retries of a failed request (connection error, timeout, 5xx, not JSON)", low=0),
        Option("backoff", float, 0.5, "seconds before the first retry (doubling, at most 8)", low=0),
        Option("concurrency", int, 4, "requests in flight at once", low=1),
        Option("batch_size", int, 64, "queries per request", low=1),
    )

    def __init__(self, options=None):
        from harness.options import parse_options
        from harness.serving import ServerPool

        o = parse_options(self.options, dict(options or {}), "http retriever", HINT)
        self.url = o["url"].strip().rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            from harness.errors import BadInput

            raise BadInput(f"http retriever: url={redact_text(self.url)!r} is not an http:// or https:// URL",
                           param_hint=HINT)
        self.public_url = redact_text(self.url)
        self.protocol, self.retries, self.batch_size = o["protocol"], o["retries"], o["batch_size"]
        self.pool = ServerPool([self.url], concurrency=o["concurrency"], retries=o["retries"],
                               timeout=o["timeout"], backoff=o["backoff"], log=lambda msg: None)

    def config(self) -> dict:
        return {"url": self.public_url, "protocol": self.protocol}

    def _job(self, queries: list[str], k: int) -> tuple[str, dict, None]:
        if self.protocol == "search_r1":
            return "/retrieve", {"queries": queries, "topk": k, "return_scores": True}, None
        if len(queries) == 1:
            return "/search", {"query": queries[0], "top_n": k, "return_score": True}, None
        return "/batch_search", {"query": queries, "top_n": k, "return_score": True}, None

    def _post_all(self, jobs):
        from harness.serving import ServerError

        try:
            return self.pool.map(jobs)
        except ServerError as exc:
            dead = self.pool.stats["dead_servers"]
            if dead:
                why = (f"did not answer after {self.retries + 1} tries ({dead[-1]['error']}); "
                       "finished records are kept, rerun the same command to resume")
            else:
                why = f"refused the request ({exc.message})"
            raise RetrieverServerError(redact_text(f"http retriever: server {self.public_url} {why}")) from None

    def retrieve(self, queries, topk: int) -> list[list[dict]]:
        return retrieve_unique(queries, topk, self._search)

    def _search(self, unique: list[str], k: int) -> dict[str, list[dict]]:
        batches = [unique[i:i + self.batch_size] for i in range(0, len(unique), self.batch_size)]
        jobs = [self._job(batch, k) for batch in batches]
        found = {}
        for (path, _, _), batch, reply in zip(jobs, batches, self._post_all(jobs)):
            try:
                if self.protocol == "search_r1":
                    rows = parse_search_r1(reply, len(batch))
                else:
                    rows = parse_research(reply, len(batch), single=path == "/search")
            except ValueError as exc:
                raise RetrieverServerError(redact_text(
                    f"http retriever: server {self.public_url}{path} (protocol {self.protocol}) sent an "
                    f"unexpected reply: {exc}; got {str(reply)[:200]}")) from None
            for q, row in zip(batch, rows):
                found[q] = [dict(doc, score=score) for doc, score in row[:k]]
        return found

    def close(self) -> None:
        pass
