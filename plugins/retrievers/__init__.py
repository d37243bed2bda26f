"""Retrievers: what a tool-use eval (``search_r1``) searches with (``--retriever NAME``, options with
``--retriever-option KEY=VALUE``). ``bm25`` searches a local JSONL corpus in-process; ``http`` asks
a running retrieval server (Search-R1's ``/retrieve`` or ReSearch/FlashRAG's ``/batch_search``).
Contract: ``harness.protocols.KINDS["retrievers"]``; what they return is checked by
:func:`harness.checks.checked_docs`."""


def retrieve_unique(queries, topk: int, search) -> list[list[dict]]:
    """``retrieve()``'s common frame: each distinct non-blank query searched once by
    ``search(unique_queries, k) -> {query: [Doc]}``, answers handed back per query (fresh dicts);
    a blank query, or ``topk`` < 1, finds nothing."""
    queries = [str(q) for q in queries]
    k = int(topk)
    unique = list(dict.fromkeys(q for q in queries if q.strip()))
    found = search(unique, k) if unique and k > 0 else {}
    return [[dict(d) for d in found.get(q, [])] for q in queries]
