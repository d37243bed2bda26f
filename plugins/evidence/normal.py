"""Evidence condition ``normal``: the passages exactly as the retriever returned them."""

from harness.hookspecs import hookimpl


@hookimpl
def register_evidence(register):
    register(NormalEvidence)


class NormalEvidence:
    name = "normal"
    description = "the retrieved passages as the retriever returned them"

    def observe(self, item, query, docs):
        return list(docs)
