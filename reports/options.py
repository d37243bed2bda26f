"""A report's statistics options and their defaults: the one place they are written down.

``harness report`` takes them as ``--baseline``, ``--ci-method``, ``--resamples`` and
``--clusters`` and stores the chosen values in the manifest's ``report`` entry; the report at the
end of ``harness run`` has no such entry and uses the defaults. The statistics functions take
their defaults from here too. Light imports only: the command line reads this module.
"""

from __future__ import annotations

CI_METHODS = ("percentile", "bca")
CLUSTER_MODES = ("auto", "on", "off")

DEFAULT_CI_METHOD = "percentile"
DEFAULT_RESAMPLES = 10_000
DEFAULT_CLUSTERS = "auto"
DEFAULT_ALPHA = 0.05

# Keys as the statistics code reads them (``B``: bootstrap resamples); ``alpha`` has no option.
DEFAULTS = {"baseline": None, "method": DEFAULT_CI_METHOD, "B": DEFAULT_RESAMPLES, "clusters": DEFAULT_CLUSTERS,
            "alpha": DEFAULT_ALPHA}

_LABELS = {"percentile": "percentile", "bca": "BCa"}


def report_options(manifest: dict) -> dict:
    """The statistics options of a report: the defaults, updated by the manifest's ``report``
    entry (set by ``harness report``), plus ``seed`` (the run's seed)."""
    opts = dict(DEFAULTS)
    opts.update(manifest.get("report") or {})
    opts["seed"] = manifest.get("config", {}).get("seed", 0)
    return opts


def is_default(chosen: dict) -> bool:
    """Whether every option in ``chosen`` (a subset of :data:`DEFAULTS`' keys) has its default."""
    return all(value == DEFAULTS[key] for key, value in chosen.items())


def ci_method_label(method: str) -> str:
    """How a report names a bootstrap interval method: ``percentile`` or ``BCa``."""
    return _LABELS.get(method, method)
