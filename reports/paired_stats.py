"""Statistics for paired comparisons between arms (pure numpy/scipy).

Conventions (Miller 2024, "Adding error bars to evals"):

* The unit of resampling is the *item*. When an item was sampled several times, average its
  samples first and pass one value per item.
* Arms are compared on shared items, and every arm is resampled with the *same* item indices, so
  a difference between arms is a paired difference.
* When items share a source (a passage, a document, a template), pass ``clusters`` and whole
  clusters are resampled instead of items.
* Everything random takes ``seed`` and uses ``np.random.default_rng(seed)``.
* The bootstrap standard error is the standard deviation of the bootstrap means; it is never
  divided by sqrt(B).
* Before resampling, items are put in a canonical order (by cluster, then by ``keys`` when given,
  then by value), so a result does not depend on the order the items were passed in.

Results are plain dicts of floats, ints, bools, strings and None, ready for ``json.dumps``.

The bootstrap intervals live in :mod:`reports.bootstrap` and are re-exported here; this module
adds the tests of "no difference", the Holm adjustment, the minimum detectable effect and Wilson
intervals.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import ndtri

from reports.bootstrap import (  # the bootstrap functions are re-exported: see __all__
    _CHUNK_ELEMENTS, _as_1d, _check_alpha, _check_B, bootstrap_ci, bootstrap_means_matrix, paired_diff_ci,
    percentile_ci)
from reports.options import DEFAULT_ALPHA, DEFAULT_RESAMPLES

# Relative tolerance when comparing resampled statistics with an observed one (float rounding).
_REL_TOL = 1e-10

__all__ = ["bootstrap_ci", "bootstrap_means_matrix", "holm", "mcnemar", "mde_paired", "paired_diff_ci",
           "paired_permutation_test", "percentile_ci", "sign_test", "wilson"]


# ---------------------------------------------------------------------------------------------
# tests of "no difference"


def _binary(x, name: str) -> np.ndarray:
    arr = _as_1d(x, name)
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must contain only 0 and 1")
    return arr.astype(int)


def mcnemar(a, b, exact: bool = True) -> dict:
    """McNemar's test for paired binary outcomes (``a``, ``b``: aligned 0/1 arrays).

    ``b01`` counts items with a=0, b=1 and ``b10`` items with a=1, b=0 (the discordant pairs).
    ``exact=True``: two-sided exact binomial test of ``b10`` out of ``b01 + b10`` at p=0.5 (equals
    ``scipy.stats.binomtest(b10, b01 + b10, 0.5).pvalue``); ``statistic`` is ``min(b01, b10)``.
    ``exact=False``: chi-square with one degree of freedom and continuity correction,
    ``statistic = max(|b01 - b10| - 1, 0)^2 / (b01 + b10)`` (the correction is not allowed to
    overshoot, so equal counts give p=1). With no discordant pairs, statistic 0 and p_value 1.
    """
    xa, xb = _binary(a, "a"), _binary(b, "b")
    if xa.shape != xb.shape:
        raise ValueError("a and b must be aligned (same length)")
    b01 = int(np.count_nonzero((xa == 0) & (xb == 1)))
    b10 = int(np.count_nonzero((xa == 1) & (xb == 0)))
    m = b01 + b10
    res = {"b01": b01, "b10": b10, "n": int(len(xa)), "exact": bool(exact)}
    if m == 0:
        res.update(statistic=0.0, p_value=1.0)
    elif exact:
        res.update(statistic=float(min(b01, b10)),
                   p_value=float(stats.binomtest(b10, m, 0.5).pvalue))
    else:
        stat = max(abs(b01 - b10) - 1, 0) ** 2 / m
        res.update(statistic=float(stat), p_value=float(stats.chi2.sf(stat, 1)))
    return res


def sign_test(diffs) -> dict:
    """Two-sided exact sign test that positive and negative paired differences are equally likely.

    Zero differences are dropped; the p-value is ``scipy.stats.binomtest(n_pos, n_pos + n_neg,
    0.5).pvalue`` (1.0 when every difference is zero or there are none).
    """
    d = _as_1d(diffs, "diffs")
    n_pos, n_neg = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
    m = n_pos + n_neg
    p = float(stats.binomtest(n_pos, m, 0.5).pvalue) if m else 1.0
    return {"n_pos": n_pos, "n_neg": n_neg, "n_zero": int(len(d) - m), "p_value": p}


def paired_permutation_test(diffs, B: int = DEFAULT_RESAMPLES, seed: int = 0,
                            exact_max_n: int = 16) -> dict:
    """Sign-flip permutation test of ``mean(diffs) = 0``, two-sided.

    Under the null each paired difference is symmetric about zero, so its sign can be flipped.
    With ``n <= exact_max_n`` all ``2^n`` sign patterns are enumerated and
    ``p = #{|flipped mean| >= |observed mean|} / 2^n`` (the identity pattern is among them).
    Otherwise ``B`` random patterns are drawn and ``p = (1 + #{...}) / (B + 1)``. Both are in
    (0, 1]. Comparisons allow a relative float tolerance. Returns ``{"statistic" (the observed
    mean), "p_value", "n", "method" ("exact" | "monte_carlo"), "n_permutations"}``; with no items
    the statistic and p-value are None.
    """
    d = np.sort(_as_1d(diffs, "diffs"))  # canonical order: the draws do not depend on input order
    n = len(d)
    if n == 0:
        return {"statistic": None, "p_value": None, "n": 0, "method": None, "n_permutations": 0}
    obs = abs(d.mean())
    tol = _REL_TOL * max(obs, np.abs(d).mean())
    if n <= exact_max_n:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1  # every sign pattern once
        signs = 1.0 - 2.0 * bits
        hits = np.count_nonzero(np.abs(signs @ d / n) >= obs - tol)
        total = len(signs)
        p, method = hits / total, "exact"
    else:
        _check_B(B)
        rng = np.random.default_rng(seed)
        chunk = max(1, _CHUNK_ELEMENTS // n)
        hits = 0
        for start in range(0, B, chunk):
            m = min(chunk, B - start)
            signs = 1.0 - 2.0 * rng.integers(0, 2, (m, n))
            hits += int(np.count_nonzero(np.abs(signs @ d / n) >= obs - tol))
        total = B
        p, method = (1 + hits) / (B + 1), "monte_carlo"
    return {"statistic": float(d.mean()), "p_value": float(p), "n": int(n), "method": method,
            "n_permutations": int(total)}


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With ``m`` p-values sorted ascending, the i-th smallest (i = 1..m) becomes
    ``max_{j <= i} min(1, (m - j + 1) * p_(j))``: monotone in the sorted order and capped at 1.
    Controls the family-wise error rate under any dependence. Rejecting where the adjusted p is
    <= alpha is the Holm step-down procedure.
    """
    p = _as_1d(pvalues, "pvalues")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be in [0, 1]")
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [float(v) for v in adjusted]


# ---------------------------------------------------------------------------------------------
# planning and proportions


def mde_paired(sd_diff: float, n: int, alpha: float = DEFAULT_ALPHA, power: float = 0.8) -> float | None:
    """Minimum detectable mean paired difference for a two-sided test (normal approximation).

    ``(z_{1-alpha/2} + z_{power}) * sd_diff / sqrt(n)``: the true mean difference that a level
    ``alpha`` two-sided test on ``n`` paired items, whose differences have standard deviation
    ``sd_diff``, detects with probability ``power``. Ignores the t correction (fine for n of a few
    dozen or more) and clustering. E.g. sd 1, n 100 -> 0.280. None when ``n`` is 0.
    """
    _check_alpha(alpha)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    if n < 0 or sd_diff < 0:
        raise ValueError("n and sd_diff must be non-negative")
    if n == 0:
        return None
    return float((ndtri(1 - alpha / 2) + ndtri(power)) * sd_diff / np.sqrt(n))


def wilson(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> dict:
    """Wilson score interval for a binomial proportion ``k / n`` (no continuity correction).

    With ``z = Phi^-1(1 - alpha/2)`` the interval is
    ``(k + z^2/2 ± z * sqrt(k (n - k) / n + z^2 / 4)) / (n + z^2)``, with the lower end set to 0
    when k = 0 and the upper end to 1 when k = n (as in ``scipy.stats.binomtest(k, n)
    .proportion_ci(method="wilson")``). Assumes independent trials. Returns ``{"estimate",
    "ci_low", "ci_high", "k", "n"}``; numbers are None when n is 0.
    """
    _check_alpha(alpha)
    if n < 0 or k < 0 or k > n or int(k) != k or int(n) != n:
        raise ValueError(f"need integers 0 <= k <= n, got k={k!r}, n={n!r}")
    if n == 0:
        return {"estimate": None, "ci_low": None, "ci_high": None, "k": 0, "n": 0}
    z = ndtri(1 - alpha / 2)
    centre = (k + z * z / 2) / (n + z * z)
    half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return {"estimate": float(k / n), "ci_low": float(lo), "ci_high": float(hi), "k": int(k),
            "n": int(n)}
