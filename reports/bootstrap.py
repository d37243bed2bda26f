"""Bootstrap intervals over items (pure numpy/scipy): the resampling half of
:mod:`reports.paired_stats`, which re-exports the public functions and states the conventions.

The unit of resampling is the item (or a whole cluster of items that share a source); columns of
one resample share its items, so differences between columns are paired; items are put in a
canonical order before resampling; everything random takes ``seed``
(``np.random.default_rng(seed)``). Results are plain dicts ready for ``json.dumps``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

from reports.options import CI_METHODS, DEFAULT_ALPHA, DEFAULT_CI_METHOD, DEFAULT_RESAMPLES

# Elements of the [chunk, n] index/count arrays built per chunk of resamples (~16 MB of int64).
_CHUNK_ELEMENTS = 2_000_000

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


def bootstrap_means_matrix(values, B: int = DEFAULT_RESAMPLES, seed: int = 0, clusters=None, keys=None,
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


def percentile_ci(boots, estimate: float, alpha: float = DEFAULT_ALPHA, n: int | None = None) -> dict:
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


def bootstrap_ci(values, B: int = DEFAULT_RESAMPLES, seed: int = 0, alpha: float = DEFAULT_ALPHA,
                 method: str = DEFAULT_CI_METHOD, clusters=None, keys=None) -> dict:
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
    if method not in CI_METHODS:
        raise ValueError(f"method must be {' or '.join(map(repr, CI_METHODS))}, got {method!r}")
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


def paired_diff_ci(a, b, B: int = DEFAULT_RESAMPLES, seed: int = 0, alpha: float = DEFAULT_ALPHA,
                   method: str = DEFAULT_CI_METHOD, clusters=None, keys=None) -> dict:
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

