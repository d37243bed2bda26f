"""Retrievers: what a tool-use eval (``search_r1``) searches with (``--retriever NAME``, options with
``--retriever-option KEY=VALUE``). ``bm25`` searches a local JSONL corpus in-process; ``http`` asks
a running retrieval server (Search-R1's ``/retrieve`` or ReSearch/FlashRAG's ``/batch_search``).
Contract: ``harness.protocols.KINDS["retrievers"]``; what they return is checked by
:func:`harness.checks.checked_docs`."""
