"""Tests for reports.paired_stats, checked against scipy and hand-computed answers."""

import json

import numpy as np
import pytest
from scipy import stats

from reports.paired_stats import (
    bootstrap_ci,
    bootstrap_means_matrix,
    holm,
    mcnemar,
    mde_paired,
    paired_diff_ci,
    paired_permutation_test,
    percentile_ci,
    sign_test,
    wilson,
)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _mean_diff(a, b, axis=-1):
    return np.mean(a - b, axis=axis)


def _width(res):
    return res["ci_high"] - res["ci_low"]


@pytest.fixture
def skewed():
    return np.random.default_rng(7).exponential(scale=2.0, size=120)


# --- bootstrap CIs against scipy -------------------------------------------------------------


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_ci_equals_scipy_on_the_same_random_stream(skewed, method):
    # Items are resampled in sorted order with the draws scipy makes, so on sorted data and the
    # same seed the two agree up to float rounding: this checks the BCa formula exactly.
    x = np.sort(skewed)
    B, seed = 4000, 11
    ours = bootstrap_ci(x, B=B, seed=seed, method=method)
    ref = stats.bootstrap((x,), _mean, n_resamples=B, vectorized=True, method=method.replace("bca", "BCa"),
                          rng=np.random.default_rng(seed))
    assert ours["method"] == method
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, rel=1e-9)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, rel=1e-9)
    assert ours["se"] == pytest.approx(ref.standard_error, rel=1e-9)
    assert ours["estimate"] == pytest.approx(x.mean(), rel=1e-12)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_ci_close_to_scipy_on_independent_streams(skewed, method):
    B = 20_000
    ours = bootstrap_ci(skewed, B=B, seed=1, method=method)
    ref = stats.bootstrap((skewed,), _mean, n_resamples=B, vectorized=True,
                          method=method.replace("bca", "BCa"), rng=np.random.default_rng(12345))
    # Monte Carlo error of a 2.5% quantile at B=20,000 is about 0.02 se; allow several times that.
    se = ref.standard_error
    tol = min(0.15 * se, 0.02 * skewed.std())
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=tol)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=tol)
    assert ours["se"] == pytest.approx(se, rel=0.03)


def test_bootstrap_ci_sanity(skewed):
    pct = bootstrap_ci(skewed, B=5000, seed=0)
    bca = bootstrap_ci(skewed, B=5000, seed=0, method="bca")
    for res in (pct, bca):
        assert res["ci_low"] < res["estimate"] < res["ci_high"]
        assert res["n"] == len(skewed) and res["degenerate"] is False
        # the SE is that of a mean of n items (not divided by sqrt(B))
        assert res["se"] == pytest.approx(skewed.std(ddof=1) / np.sqrt(len(skewed)), rel=0.1)
    # right-skewed data: BCa moves the interval up relative to the percentile interval
    assert bca["ci_low"] > pct["ci_low"] and bca["ci_high"] > pct["ci_high"]
    # the SE does not shrink with B
    assert bootstrap_ci(skewed, B=500, seed=0)["se"] == pytest.approx(pct["se"], rel=0.15)


def test_bootstrap_ci_coverage_on_normal_data():
    rng = np.random.default_rng(2024)
    hits = {"percentile": 0, "bca": 0}
    reps = 200
    for _ in range(reps):
        x = rng.normal(loc=1.0, size=40)
        for method in hits:
            res = bootstrap_ci(x, B=1000, seed=0, method=method)
            hits[method] += res["ci_low"] <= 1.0 <= res["ci_high"]
    for method, h in hits.items():
        assert 0.86 <= h / reps <= 0.99, (method, h)


def test_bootstrap_ci_degenerate_cases():
    empty = bootstrap_ci([])
    assert empty["n"] == 0 and all(empty[k] is None for k in ("estimate", "ci_low", "ci_high", "se"))
    one = bootstrap_ci([0.25])
    assert one["estimate"] == 0.25 and one["ci_low"] is None and one["ci_high"] is None and one["n"] == 1
    same = bootstrap_ci([0.5] * 7, method="bca")
    assert same["degenerate"] is True
    assert (same["estimate"], same["ci_low"], same["ci_high"], same["se"]) == (0.5, 0.5, 0.5, 0.0)
    one_cluster = bootstrap_ci([0.0, 1.0, 1.0], clusters=["s", "s", "s"])
    assert one_cluster["n_clusters"] == 1 and one_cluster["ci_low"] is None
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], method="basic")


def test_results_are_json_serialisable(skewed):
    results = [
        bootstrap_ci(skewed, B=200), bootstrap_ci(skewed, B=200, method="bca", clusters=np.arange(120) // 4),
        bootstrap_ci([]), paired_diff_ci(skewed, skewed[::-1], B=200), mcnemar([0, 1], [1, 1]),
        sign_test([1, -1, 0]), paired_permutation_test([1.0, 2.0]), wilson(3, 9),
        {"holm": holm([0.1, 0.2]), "mde": mde_paired(1.0, 50)},
    ]
    back = json.loads(json.dumps(results))
    assert back[0]["n"] == 120


# --- paired differences ----------------------------------------------------------------------


def _paired_data(n=150, seed=3):
    rng = np.random.default_rng(seed)
    item = rng.normal(size=n)  # shared item difficulty makes the arms strongly correlated
    a = item + rng.normal(scale=0.3, size=n) + 0.1
    b = item + rng.normal(scale=0.3, size=n)
    return a, b


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_paired_diff_ci_equals_scipy_paired_on_the_same_stream(method):
    a, b = _paired_data()
    order = np.argsort(a - b)  # our canonical order for a difference
    a, b = a[order], b[order]
    B, seed = 4000, 5
    ours = paired_diff_ci(a, b, B=B, seed=seed, method=method)
    ref = stats.bootstrap((a, b), _mean_diff, paired=True, vectorized=True, n_resamples=B,
                          method=method.replace("bca", "BCa"), rng=np.random.default_rng(seed))
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, rel=1e-9)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, rel=1e-9)
    assert ours["se"] == pytest.approx(ref.standard_error, rel=1e-9)
    assert ours["n_shared"] == len(a)


def test_paired_diff_ci_close_to_scipy_and_narrower_than_unpaired():
    a, b = _paired_data()
    B = 20_000
    ours = paired_diff_ci(a, b, B=B, seed=0)
    ref = stats.bootstrap((a, b), _mean_diff, paired=True, vectorized=True, n_resamples=B,
                          method="percentile", rng=np.random.default_rng(99))
    tol = 0.15 * ref.standard_error
    assert ours["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=tol)
    assert ours["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=tol)
    assert ours["estimate"] == pytest.approx(np.mean(a - b))
    assert ours["mean_a"] == pytest.approx(a.mean()) and ours["mean_b"] == pytest.approx(b.mean())
    # independent resampling of the two arms ignores the shared item effect: much wider
    se_unpaired = np.hypot(bootstrap_ci(a, B=B)["se"], bootstrap_ci(b, B=B, seed=1)["se"])
    assert ours["se"] < 0.5 * se_unpaired


def test_paired_diff_ci_rejects_misaligned_arrays():
    with pytest.raises(ValueError):
        paired_diff_ci([1.0, 2.0], [1.0])


# --- the resampling engine ------------------------------------------------------------------


def test_matrix_uses_the_same_items_for_every_column():
    x = np.random.default_rng(0).normal(size=(64, 1))
    m = bootstrap_means_matrix(np.hstack([x, 2 * x, x + 1.0]), B=3000, seed=4)
    assert m.shape == (3000, 3)
    np.testing.assert_allclose(m[:, 1], 2 * m[:, 0], rtol=1e-12)
    np.testing.assert_allclose(m[:, 2] - m[:, 0], 1.0, rtol=1e-12)


def test_matrix_does_not_depend_on_chunk_size():
    v = np.random.default_rng(1).random((50, 4))
    full = bootstrap_means_matrix(v, B=1000, seed=9)
    np.testing.assert_array_equal(full, bootstrap_means_matrix(v, B=1000, seed=9, chunk=7))
    np.testing.assert_array_equal(full, bootstrap_means_matrix(v, B=1000, seed=9, chunk=1000))
    clusters = np.arange(50) % 6
    np.testing.assert_array_equal(bootstrap_means_matrix(v, B=500, seed=9, clusters=clusters),
                                  bootstrap_means_matrix(v, B=500, seed=9, clusters=clusters, chunk=3))


def test_matrix_columns_and_deltas_agree_with_single_calls_given_keys():
    # With item ids as keys, separate calls resample the same items as the matrix does.
    a, b = _paired_data(n=80)
    ids = [f"item-{i:03d}" for i in range(80)]
    m = bootstrap_means_matrix(np.column_stack([a, b]), B=2000, seed=3, keys=ids)
    single = bootstrap_ci(a, B=2000, seed=3, keys=ids)
    from_matrix = percentile_ci(m[:, 0], a.mean(), n=80)
    for k in ("ci_low", "ci_high", "se"):
        assert from_matrix[k] == pytest.approx(single[k], rel=1e-12)
    delta = percentile_ci(m[:, 0] - m[:, 1], np.mean(a - b))
    paired = paired_diff_ci(a, b, B=2000, seed=3, keys=ids)
    for k in ("ci_low", "ci_high", "se"):
        assert delta[k] == pytest.approx(paired[k], rel=1e-9)


# --- properties -----------------------------------------------------------------------------


def test_results_do_not_depend_on_item_order(skewed):
    perm = np.random.default_rng(5).permutation(len(skewed))
    clusters = np.arange(len(skewed)) // 3
    ids = np.array([f"q{i}" for i in range(len(skewed))])
    for kwargs in ({}, {"method": "bca"}, {"clusters": clusters, "method": "bca"}, {"keys": ids}):
        base = bootstrap_ci(skewed, B=1000, seed=2, **kwargs)
        permuted = {k: (v[perm] if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
        assert bootstrap_ci(skewed[perm], B=1000, seed=2, **permuted) == base
    a, b = _paired_data()
    p2 = np.random.default_rng(6).permutation(len(a))
    assert paired_diff_ci(a[p2], b[p2], B=1000) == paired_diff_ci(a, b, B=1000)
    v = np.column_stack([a, b, a - b])
    np.testing.assert_array_equal(bootstrap_means_matrix(v[p2], B=500, seed=1),
                                  bootstrap_means_matrix(v, B=500, seed=1))
    d = a - b
    assert paired_permutation_test(d[p2], B=2000) == paired_permutation_test(d, B=2000)


def test_duplicating_items_narrows_the_ci(skewed):
    once = bootstrap_ci(skewed, B=4000, seed=0)
    twice = bootstrap_ci(np.concatenate([skewed, skewed]), B=4000, seed=0)
    assert twice["estimate"] == pytest.approx(once["estimate"])
    assert _width(twice) < _width(once)
    assert _width(twice) / _width(once) == pytest.approx(1 / np.sqrt(2), rel=0.1)


def test_one_item_per_cluster_is_the_plain_bootstrap(skewed):
    ids = np.arange(len(skewed))
    for method in ("percentile", "bca"):
        # same canonical order -> identical draws and identical jackknife
        assert bootstrap_ci(skewed, B=2000, method=method, clusters=ids, keys=ids) == {
            **bootstrap_ci(skewed, B=2000, method=method, keys=ids), "n_clusters": len(skewed)}
    # different order of the units -> different draws, same distribution
    plain = bootstrap_ci(skewed, B=20_000, seed=0)
    clustered = bootstrap_ci(skewed, B=20_000, seed=1, clusters=ids[::-1])
    for k in ("ci_low", "ci_high"):
        assert clustered[k] == pytest.approx(plain[k], abs=0.15 * plain["se"])


def test_correlated_clusters_widen_the_ci():
    rng = np.random.default_rng(8)
    G, size = 25, 8
    clusters = np.repeat(np.arange(G), size)
    x = rng.normal(scale=1.0, size=G)[clusters] + rng.normal(scale=0.3, size=G * size)
    plain = bootstrap_ci(x, B=5000)
    clustered = bootstrap_ci(x, B=5000, clusters=clusters)
    assert clustered["n_clusters"] == G
    assert _width(clustered) > 1.8 * _width(plain)
    # equal cluster sizes: the cluster bootstrap SE is that of a mean of G cluster means
    cluster_means = x.reshape(G, size).mean(axis=1)
    assert clustered["se"] == pytest.approx(cluster_means.std(ddof=1) / np.sqrt(G), rel=0.12)
    bca = bootstrap_ci(x, B=5000, clusters=clusters, method="bca")
    assert bca["method"] == "bca" and bca["ci_low"] < bca["estimate"] < bca["ci_high"]


def test_unequal_clusters_use_the_ratio_of_sums():
    # Cluster "big" has 3 items summing to 3, cluster "small" 1 item equal to 5. A resample of
    # two clusters has mean 1 (big, big), 5 (small, small) or 8/4 = 2 (one each): never 3.
    x = np.array([1.0, 1.0, 1.0, 5.0])
    m = bootstrap_means_matrix(x, B=4000, seed=0, clusters=["big", "big", "big", "small"])[:, 0]
    values, counts = np.unique(np.round(m, 12), return_counts=True)
    assert set(values) == {1.0, 2.0, 5.0}
    np.testing.assert_allclose(counts / 4000, [0.25, 0.5, 0.25], atol=0.03)


# --- binary paired tests ----------------------------------------------------------------------


def test_mcnemar_exact_matches_binomtest():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 2, size=60)
        b = np.where(rng.random(60) < 0.7, a, rng.integers(0, 2, size=60))
        res = mcnemar(a, b)
        b01 = int(np.sum((a == 0) & (b == 1)))
        b10 = int(np.sum((a == 1) & (b == 0)))
        assert (res["b01"], res["b10"]) == (b01, b10)
        if b01 + b10:
            assert res["p_value"] == pytest.approx(stats.binomtest(b10, b01 + b10, 0.5).pvalue, rel=1e-12)


def test_mcnemar_chi_square_and_no_discordant_pairs():
    a = [1] * 25 + [0] * 10 + [1] * 5
    b = [0] * 25 + [1] * 10 + [1] * 5
    res = mcnemar(a, b, exact=False)
    assert (res["b01"], res["b10"]) == (10, 25)
    assert res["statistic"] == pytest.approx(14 ** 2 / 35)  # (|25 - 10| - 1)^2 / 35 = 5.6
    assert res["p_value"] == pytest.approx(stats.chi2.sf(5.6, 1))
    same = [0, 1, 1, 0]
    assert mcnemar(same, same)["p_value"] == 1.0
    assert mcnemar(same, same, exact=False)["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar([0, 2], [0, 1])


def test_sign_test_matches_binomtest_and_ignores_zeros():
    d = np.array([0.5, 1.0, -0.2, 0.0, 0.0, 2.0, 3.0, -1.0, 0.1, 0.4])
    res = sign_test(d)
    assert (res["n_pos"], res["n_neg"], res["n_zero"]) == (6, 2, 2)
    assert res["p_value"] == pytest.approx(stats.binomtest(6, 8, 0.5).pvalue, rel=1e-12)
    assert sign_test([0.0, 0.0])["p_value"] == 1.0
    assert sign_test([])["p_value"] == 1.0


# --- permutation test -------------------------------------------------------------------------


def test_permutation_test_exact_hand_examples():
    # [1, 2, 3]: of the 8 sign patterns only +++ and --- reach |sum| = 6 -> p = 2/8.
    res = paired_permutation_test([1.0, 2.0, 3.0])
    assert res["method"] == "exact" and res["n_permutations"] == 8
    assert res["p_value"] == 0.25 and res["statistic"] == 2.0
    # [2, 1, -1]: observed sum 2; the 8 sign patterns give sums 2, 4, 0, 2, -2, 0, -4, -2, so
    # |sum| >= 2 in 6 of 8.
    assert paired_permutation_test([2.0, 1.0, -1.0])["p_value"] == 0.75
    assert paired_permutation_test([3.0, 1.0, 1.0])["p_value"] == 0.25  # only +++ and ---
    # zero observed mean: every pattern counts
    assert paired_permutation_test([1.0, -1.0])["p_value"] == 1.0
    empty = paired_permutation_test([])
    assert empty["p_value"] is None and empty["n"] == 0


def test_permutation_test_monte_carlo_agrees_with_exact():
    d = np.random.default_rng(4).normal(loc=0.4, size=14)
    exact = paired_permutation_test(d)
    mc = paired_permutation_test(d, B=20_000, seed=1, exact_max_n=0)
    assert mc["method"] == "monte_carlo" and exact["method"] == "exact"
    assert mc["p_value"] == pytest.approx(exact["p_value"], abs=0.015)


def test_permutation_test_p_value_range():
    strong = paired_permutation_test(np.full(40, 1.0) + np.linspace(0, 0.1, 40), B=999, seed=0)
    assert strong["p_value"] == 1 / 1000  # no flipped pattern reaches the observed mean
    null = paired_permutation_test(np.random.default_rng(1).normal(size=50), B=999, seed=0)
    assert 0 < null["p_value"] <= 1


# --- multiplicity, planning, proportions -------------------------------------------------------


def test_holm_hand_examples():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []


def test_mde_paired_known_answer():
    assert mde_paired(1.0, 100) == pytest.approx(0.28016, abs=1e-4)
    assert mde_paired(0.5, 400) == pytest.approx(0.28016 / 4, abs=1e-5)
    assert mde_paired(1.0, 100, alpha=0.05, power=0.5) == pytest.approx(0.19600, abs=1e-4)
    assert mde_paired(1.0, 0) is None


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (1, 1), (57, 200), (499, 500)])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_wilson_matches_scipy(k, n, alpha):
    res = wilson(k, n, alpha=alpha)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    assert res["ci_low"] == pytest.approx(ref.low, abs=1e-12)
    assert res["ci_high"] == pytest.approx(ref.high, abs=1e-12)
    assert res["estimate"] == k / n


def test_wilson_empty():
    assert wilson(0, 0)["estimate"] is None
