"""Evidence condition ``swapped_docs``: every search returns another question's passages.

Before any search, :meth:`prepare` fixes a seeded derangement of the run's items (the seed comes
from the run seed, so every arm gets the same donors and arms stay paired): each item's donor is a
different item with a different question text. A search for item ``i`` then shows what the
retriever returns for the donor's question (as many passages as the search itself returned),
whatever the arm asked for: well-formed, on-topic-looking evidence that does not answer this
question. The donor is stable across searches, samples and reruns.
"""

from __future__ import annotations

import random

from harness.checks import checked_docs
from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.seeding import derive_seed

MAX_TRIES = 10_000  # rejection sampling of the derangement (about e tries when questions differ)


@hookimpl
def register_evidence(register):
    register(SwappedDocs)


def question_derangement(items, seed: int) -> dict[str, str]:
    """item id -> donor item id: a uniformly random derangement of the items (ids sorted first)
    in which no item's donor has the same question text (whitespace and case ignored)."""
    by_id = {i.id: " ".join(i.prefix.lower().split()) for i in items}
    ids = sorted(by_id)
    if len(set(by_id.values())) < 2:
        raise BadInput("the swapped_docs condition needs at least 2 items with different questions",
                       param_hint="--limit")
    rng = random.Random(seed)
    for _ in range(MAX_TRIES):
        perm = ids[:]
        rng.shuffle(perm)
        if all(by_id[a] != by_id[b] for a, b in zip(ids, perm)):
            return dict(zip(ids, perm))
    raise BadInput("the swapped_docs condition found no donor for every item: too many items share one question",
                   param_hint="--task")


class SwappedDocs:
    name = "swapped_docs"
    description = "another question's passages: what the retriever returns for a donor item's question (seeded)"
    min_items = 2

    def __init__(self):
        self.donor: dict[str, str] = {}
        self.question: dict[str, str] = {}
        self.retriever = None
        self.retriever_name = "?"
        self._cache: dict[tuple[str, int], list] = {}

    def prepare(self, ctx, items) -> None:
        self.donor = question_derangement(items, derive_seed(ctx.config["seed"], "swapped_docs-derangement"))
        self.question = {i.id: i.prefix for i in items}
        self.retriever = ctx.retriever
        self.retriever_name = (ctx.config.get("retriever") or {}).get("name", "?")

    def source(self, item) -> str:
        """The donor item whose question's passages ``item`` is shown."""
        return self.donor[item.id]

    def observe(self, item, query, docs):
        k = len(docs)
        if k == 0:
            return []
        donor = self.donor[item.id]
        if (donor, k) not in self._cache:
            question = self.question[donor]
            got = checked_docs(self.retriever_name, [question], self.retriever.retrieve([question], k), k)
            self._cache[(donor, k)] = got[0]
        return list(self._cache[(donor, k)])
