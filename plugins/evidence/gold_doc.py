"""Evidence condition ``gold_doc``: the item's gold passage(s) put first in every search's results.

Applies only to items whose data names gold passages (``item.meta["gold_docs"]``: a list of
``{"id", "contents"}``); the others are skipped under this condition and counted in the report.
The number of passages shown stays the retriever's: gold passages first, then the retrieved ones
that are not gold, cut to as many as the search returned (the last ones drop out). A search that
returned nothing shows the gold passages alone.
"""

from harness.hookspecs import hookimpl


@hookimpl
def register_evidence(register):
    register(GoldDoc)


class GoldDoc:
    name = "gold_doc"
    description = "the item's gold passage(s) first in every search's results (items with gold passages only)"

    def applies(self, item) -> bool:
        return bool(item.meta.get("gold_docs"))

    def observe(self, item, query, docs):
        gold = [{"id": str(d["id"]), "contents": d["contents"], "score": None} for d in item.meta["gold_docs"]]
        ids = {d["id"] for d in gold}
        merged = gold + [d for d in docs if str(d["id"]) not in ids]
        return merged[:len(docs) or len(gold)]
