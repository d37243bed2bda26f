"""The hooks of the harness's plugin system.

Every built-in eval, intervention, backend, judge, task and report section is a plugin that
implements one of these hooks, loaded through the same path as third-party plugins. Each
``register_*`` hook receives a ``register`` callable: call it once per class you provide.

What each class must and may have is declared once, in :mod:`harness.protocols` (``KINDS``), and
checked when it registers; ``docs/writing-plugins.md`` shows the same tables with a worked example.
Names are global per kind: registering a name twice is an error naming both sources.

Plugin modules must import cheaply: import torch, transformers or other heavy libraries inside
the methods that need them, never at module top level (``harness --help`` stays torch-free).
"""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("harness")
hookimpl = HookimplMarker("harness")


@hookspec
def register_evals(register):
    """Register eval classes (``harness run --plugin NAME``); members: harness.protocols.KINDS["evals"]."""


@hookspec
def register_interventions(register):
    """Register thought interventions (``--intervention NAME``); members:
    harness.protocols.KINDS["interventions"]. Thoughts are token ids, never re-tokenised text."""


@hookspec
def register_evidence(register):
    """Register evidence conditions (``--intervention NAME`` of a tool-use eval): what the model reads
    back after a search; members: harness.protocols.KINDS["evidence"]."""


@hookspec
def register_retrievers(register):
    """Register retrievers (``--retriever NAME``); members: harness.protocols.KINDS["retrievers"]."""


@hookspec
def register_backends(register):
    """Register generation backends (an arm's ``backend = NAME``); members:
    harness.protocols.KINDS["backends"]."""


@hookspec
def register_judges(register):
    """Register judges (``--judge NAME``); members: harness.protocols.KINDS["judges"]. An answer that
    cannot be parsed is ``reward=None, invalid=True``: never counted as 0 or 1."""


@hookspec
def register_tasks(register):
    """Register tasks (``--task NAME``); members: harness.protocols.KINDS["tasks"]."""


@hookspec
def register_report_sections(register):
    """Register report sections rendered into ``report.md`` and printed after a run; members:
    harness.protocols.KINDS["report_sections"]. Everything comes from records alone."""


@hookspec
def register_commands(cli):
    """Add extra click commands or groups to the ``harness`` CLI group ``cli``."""
