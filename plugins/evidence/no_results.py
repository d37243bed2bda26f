"""Evidence condition ``no_results``: every search comes back empty (the observation says that no
results were found), so the arm must answer from what it knows."""

from harness.hookspecs import hookimpl


@hookimpl
def register_evidence(register):
    register(NoResults)


class NoResults:
    name = "no_results"
    description = "every search returns nothing (the observation says no results were found)"

    def observe(self, item, query, docs):
        return []
