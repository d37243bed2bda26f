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
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import ndtr, ndtri

# Elements of the [chunk, n] index/count arrays built per chunk of resamples (~16 MB of int64).
_CHUNK_ELEMENTS = 2_000_000
# Relative tolerance when comparing resampled statistics with an observed one (float rounding).
_REL_TOL = 1e-10


# ---------------------------------------------------------------------------------------------
# helpers


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def _check_B(B: int) -> None:
    if int(B) != B or B < 1:
        raise ValueError(f"B must be a positive integer, got {B!r}")


def _as_1d(values, name: str = "values") -> np.ndarray:
    x = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def _as_2d(values) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"values must be [n_items, n_cols], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite (no NaN or inf)")
    return x


def _ranks(labels, n: int, name: str) -> np.ndarray:
    """Integer codes of ``labels`` that follow their sorted order (equal labels, equal codes)."""
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have one entry per item ({n}), got shape {arr.shape}")
    return np.unique(arr, return_inverse=True)[1].reshape(n)


def _canonical_order(x: np.ndarray, keys=None, clusters=None) -> np.ndarray:
    """Row order used before resampling: by cluster, then key, then the value columns."""
    n = x.shape[0]
    sort_keys = [x[:, j] for j in range(x.shape[1] - 1, -1, -1)]  # least significant first
    if keys is not None:
        sort_keys.append(_ranks(keys, n, "keys"))
    if clusters is not None:
        sort_keys.append(_ranks(clusters, n, "clusters"))
    return np.lexsort(sort_keys)


def _cluster_table(x: np.ndarray, clusters) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster (in sorted key order): sums of each column [G, k] and item counts [G]."""
    codes = _ranks(clusters, x.shape[0], "clusters")
    G = int(codes.max()) + 1
    sums = np.zeros((G, x.shape[1]))
    np.add.at(sums, codes, x)
    sizes = np.bincount(codes, minlength=G).astype(float)
    return sums, sizes


def _resample_counts(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """[m, n] float counts: how often each of ``n`` units is drawn in each of ``m`` resamples of
    size ``n`` with replacement. Built from ``rng.integers(0, n, (m, n))``, the draws
    ``scipy.stats.bootstrap`` makes; successive calls continue one stream, so the resamples do
    not depend on how ``B`` is split into chunks (checked in the tests)."""
    idx = rng.integers(0, n, (m, n))
    idx += (np.arange(m) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(float)


def _empty_result(n: int) -> dict:
    return {"estimate": None, "ci_low": None, "ci_high": None, "se": None, "n": int(n)}


# ---------------------------------------------------------------------------------------------
# bootstrap


def bootstrap_means_matrix(values, B: int = 10_000, seed: int = 0, clusters=None, keys=None,
                           chunk: int | None = None) -> np.ndarray:
    """``B`` paired bootstrap means of each column of ``values``; returns an array [B, n_cols].

    ``values`` is [n_items, n_cols] (a 1-D array is one column), rows aligned on shared items,
    e.g. one column per arm. Every column of a resample uses the same resampled items, so
    differences between columns are paired. Without ``clusters`` each resample draws ``n`` items
    with replacement and its mean is ``counts @ values / n``. With ``clusters`` (one key per item)
    each resample draws ``G`` whole clusters with replacement (``G`` = number of clusters) and its
    mean is the chosen clusters' item sums over the number of items chosen (a ratio estimator).

    Items are first sorted by (cluster, ``keys``, values) so the result does not depend on the
    input order; pass ``keys`` (item ids) to make the order independent of the values too. The
    resamples are drawn in chunks of ``chunk`` (default: about 2M index entries per chunk); the
    result does not depend on ``chunk``. Assumes finite values and at least one item.
    """
    _check_B(B)
    x = _as_2d(values)
    if x.shape[0] == 0:
        raise ValueError("values has no items")
    order = _canonical_order(x, keys, clusters)
    return _bootstrap_sorted(x[order], None if clusters is None else np.asarray(clusters)[order],
                             B, seed, chunk)


def _bootstrap_sorted(x: np.ndarray, clusters, B: int, seed: int, chunk: int | None) -> np.ndarray:
    """``bootstrap_means_matrix`` on rows already in canonical order."""
    if clusters is None:
        unit_sums, unit_sizes = x, None
    else:
        unit_sums, unit_sizes = _cluster_table(x, clusters)
    units = unit_sums.shape[0]
    if chunk is None:
        chunk = max(1, _CHUNK_ELEMENTS // units)
    rng = np.random.default_rng(seed)
    out = np.empty((B, x.shape[1]))
    for start in range(0, B, chunk):
        m = min(chunk, B - start)
        counts = _resample_counts(rng, m, units)
        # counts @ unit_sums, via einsum's own loops rather than BLAS: for this skinny product
        # OpenBLAS threads cost more than they save and slow the rest of the loop on few cores.
        sums = np.einsum("mu,uk->mk", counts, unit_sums)
        if unit_sizes is None:
            out[start:start + m] = sums / units
        else:
            out[start:start + m] = sums / np.einsum("mu,u->m", counts, unit_sizes)[:, None]
    return out


def percentile_ci(boots, estimate: float, alpha: float = 0.05, n: int | None = None) -> dict:
    """Percentile interval from a 1-D array of bootstrap statistics ``boots``.

    Returns ``{"estimate", "ci_low", "ci_high", "se", "n"}``: the ``alpha/2`` and ``1 - alpha/2``
    quantiles of ``boots`` (linear interpolation, as numpy and scipy do) and their standard
    deviation (ddof=1) as the standard error. ``estimate`` is passed through (the statistic on the
    original data). Use it to turn columns of ``bootstrap_means_matrix`` (or differences between
    columns) into intervals.
    """
    _check_alpha(alpha)
    b = np.asarray(boots, dtype=float)
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2])
    se = float(np.std(b, ddof=1)) if len(b) > 1 else None
    return {"estimate": float(estimate), "ci_low": float(lo), "ci_high": float(hi), "se": se,
            "n": None if n is None else int(n)}


def _jackknife_means(x: np.ndarray, clusters) -> np.ndarray:
    """Leave-one-out means (leave-one-cluster-out with ``clusters``) of 1-D ``x``."""
    if clusters is None:
        return (x.sum() - x) / (len(x) - 1)
    sums, sizes = _cluster_table(x[:, None], clusters)
    return (x.sum() - sums[:, 0]) / (len(x) - sizes)


def _bca_levels(boots: np.ndarray, estimate: float, jack: np.ndarray, alpha: float):
    """BCa quantile levels (lower, upper), or None when they are not finite.

    Bias correction: z0 = Phi^-1 of the share of bootstrap statistics below the estimate, ties
    counted half (as ``scipy.stats.bootstrap`` does). Acceleration from the jackknife values:
    a = sum(d^3) / (6 * sum(d^2)^1.5) with d = mean(jack) - jack.
    """
    B = len(boots)
    share = (np.count_nonzero(boots < estimate) + np.count_nonzero(boots <= estimate)) / (2 * B)
    z0 = ndtri(share)
    d = jack.mean() - jack
    den = np.sum(d ** 2)
    a = np.sum(d ** 3) / (6.0 * den ** 1.5) if den > 0 else 0.0
    levels = []
    for z in (ndtri(alpha / 2), -ndtri(alpha / 2)):
        num = z0 + z
        levels.append(ndtr(z0 + num / (1 - a * num)))
    if not all(np.isfinite(levels)):
        return None
    return levels


def bootstrap_ci(values, B: int = 10_000, seed: int = 0, alpha: float = 0.05,
                 method: str = "percentile", clusters=None, keys=None) -> dict:
    """Mean of 1-D ``values`` (one value per item) with a bootstrap CI over items (or clusters).

    Returns ``{"estimate", "ci_low", "ci_high", "se", "n", "method", "degenerate"}`` (plus
    ``"n_clusters"`` with ``clusters``). ``estimate`` is the plain mean of the items; ``se`` is the
    standard deviation (ddof=1) of the ``B`` bootstrap means; the CI has level ``1 - alpha``.

    ``method="percentile"``: the alpha/2 and 1-alpha/2 quantiles of the bootstrap means.
    ``method="bca"``: bias-corrected and accelerated (Efron & Tibshirani 14.3), with the bias
    correction computed like ``scipy.stats.bootstrap`` (ties with the estimate count half) and the
    acceleration from leave-one-out means (leave-one-cluster-out with ``clusters``). If the BCa
    levels are not finite, the percentile interval is returned and ``method`` says so.

    ``keys`` (item ids) fix each item's position in the resampling order, so separate calls on
    arms that share item ids (same seed) resample the same items in every replicate.

    Degenerate cases: no items -> every number None; one item (or one cluster) -> estimate only;
    all values equal -> CI ``[v, v]``, se 0 and ``"degenerate": True``.
    """
    _check_alpha(alpha)
    _check_B(B)
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    x = _as_1d(values)
    n = len(x)
    res = _empty_result(n)
    res.update(method=method, degenerate=False)
    n_clusters = None
    if clusters is not None:
        n_clusters = len(np.unique(np.asarray(clusters))) if n else 0
        res["n_clusters"] = n_clusters
    if n == 0:
        return res
    order = _canonical_order(x[:, None], keys, clusters)
    x = x[order]
    clusters = None if clusters is None else np.asarray(clusters)[order]
    res["estimate"] = float(x.mean())
    if n == 1 or n_clusters == 1:
        return res
    if np.all(x == x[0]):
        res.update(ci_low=float(x[0]), ci_high=float(x[0]), se=0.0, degenerate=True)
        return res
    boots = _bootstrap_sorted(x[:, None], clusters, B, seed, None)[:, 0]
    res["se"] = float(np.std(boots, ddof=1)) if B > 1 else None
    levels = [alpha / 2, 1 - alpha / 2]
    if method == "bca":
        bca = _bca_levels(boots, res["estimate"], _jackknife_means(x, clusters), alpha)
        if bca is None:
            res["method"] = "percentile"  # BCa undefined here; fell back
        else:
            levels = bca
    lo, hi = np.quantile(boots, levels)
    res.update(ci_low=float(lo), ci_high=float(hi))
    return res


def paired_diff_ci(a, b, B: int = 10_000, seed: int = 0, alpha: float = 0.05,
                   method: str = "percentile", clusters=None, keys=None) -> dict:
    """Mean paired difference ``mean(a - b)`` over shared items, with a bootstrap CI.

    ``a`` and ``b`` are aligned 1-D arrays (entry i of both is the same item, each already
    averaged over its samples). Resampling items with the same indices for both arms is the same
    as resampling the differences, which is what is done; options are those of ``bootstrap_ci``.
    Returns ``bootstrap_ci``'s dict plus ``"n_shared"`` and the arm means ``"mean_a"``,
    ``"mean_b"`` (None when there are no items).
    """
    xa, xb = _as_1d(a, "a"), _as_1d(b, "b")
    if xa.shape != xb.shape:
        raise ValueError(f"a and b must be aligned (same length), got {len(xa)} and {len(xb)}")
    res = bootstrap_ci(xa - xb, B=B, seed=seed, alpha=alpha, method=method, clusters=clusters,
                       keys=keys)
    res["n_shared"] = int(len(xa))
    # exactly rounded sums, so the arm means do not depend on the item order either
    res["mean_a"] = math.fsum(xa) / len(xa) if len(xa) else None
    res["mean_b"] = math.fsum(xb) / len(xb) if len(xb) else None
    return res


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


def paired_permutation_test(diffs, B: int = 10_000, seed: int = 0,
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


def mde_paired(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
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


def wilson(k: int, n: int, alpha: float = 0.05) -> dict:
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
