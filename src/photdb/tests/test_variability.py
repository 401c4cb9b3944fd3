"""Tests of photdb.variability with known truth."""

import numpy as np
import pytest

from photdb.variability import (
    VariabilityConfig,
    combine_references,
    count_detections,
    detect_variables,
    rank_variables,
    repeat_counts,
    select_repeated,
    variability_indices,
)


def test_detect_variables_significance_definition():
    mag = np.array([17.0, 17.3, 16.0, np.nan, 18.0])
    err = np.array([0.01, 0.01, 0.03, 0.01, 0.0])
    ref = np.array([17.0, 17.0, 16.5, 17.0, 18.0])
    referr = np.array([0.0, 0.01, 0.04, 0.01, 0.0])
    is_var, sig = detect_variables(mag, err, ref, referr)
    assert sig[0] == 0.0
    assert sig[1] == pytest.approx(0.3 / np.sqrt(2e-4))
    assert sig[2] == pytest.approx(-10.0)  # brighter on the search image: negative
    assert np.isnan(sig[3]) and np.isnan(sig[4])
    assert is_var.tolist() == [False, True, False, False, False]
    lax, _ = detect_variables(mag, err, ref, referr, config=VariabilityConfig(nsigma=5.0))
    assert lax.tolist() == [False, True, True, False, False]


def test_detect_variables_false_positive_rate():
    """Gaussian noise with correct errors: no 15-sigma events in 10^5 sources."""
    rng = np.random.default_rng(0)
    n = 100_000
    err, referr = rng.uniform(0.01, 0.1, n), rng.uniform(0.005, 0.05, n)
    ref = rng.uniform(15, 21, n)
    mag = ref + rng.normal(0, 1, n) * np.hypot(err, referr)
    mag[:100] += 2.0  # 100 real variables, all > 2 / 0.112 = 17.9 sigma
    is_var, sig = detect_variables(mag, err, ref, referr)
    assert is_var[100:].sum() == 0
    assert is_var[:100].all()
    assert np.std(sig[100:]) == pytest.approx(1.0, abs=0.01)


def test_repeat_counts_histogram():
    # object 7 detected 3 times, 5 twice, 1 and 2 once
    ids = np.array([7, 5, 7, 1, 5, 7, 2])
    t = repeat_counts(ids)
    assert t["num"].tolist() == [3, 2, 1]
    assert t["count"].tolist() == [1, 1, 2]
    per = count_detections(ids)
    assert per["refsource_id"].tolist() == [7, 5, 1, 2]
    assert per["num"].tolist() == [3, 2, 1, 1]
    assert select_repeated(ids).tolist() == [7, 5]
    assert select_repeated(ids, config=VariabilityConfig(min_repeats=3)).tolist() == [7]


def test_variability_indices_constant_and_variable():
    rng = np.random.default_rng(1)
    err = np.full(2000, 0.02)
    const = 17.0 + rng.normal(0, 0.02, 2000)
    vi = variability_indices(const, err)
    assert vi.n == 2000
    assert vi.mean_mag == pytest.approx(17.0, abs=0.002)
    assert vi.mean_magerr == pytest.approx(0.02 / np.sqrt(2000))
    assert vi.chi2nu == pytest.approx(1.0, abs=0.15)
    assert vi.mad_std == pytest.approx(0.02, rel=0.06)
    assert abs(vi.stetson_j) < 0.1
    sine = 17.0 + 0.5 * np.sin(np.linspace(0, 20, 2000)) + rng.normal(0, 0.02, 2000)
    vv = variability_indices(sine, err)
    assert vv.chi2nu > 100
    assert vv.stetson_j > 2
    assert 1.0 < vv.amplitude < 1.2  # 2 x 0.5 plus the noise extremes
    assert vv.robust_amplitude == pytest.approx(2 * 0.5 * np.sin(np.radians(90 - 18)), abs=0.08)
    # NaNs ignored, degenerate cases
    assert variability_indices([17.0, np.nan], [0.01, 0.01]).n == 1
    assert np.isnan(variability_indices([], []).mean_mag)


def test_rank_variables_matches_scalar_version():
    rng = np.random.default_rng(2)
    ids, mags, errs = [], [], []
    amps = {10: 0.0, 11: 0.3, 12: 0.05, 13: 1.0}
    for oid, amp in amps.items():
        n = 30
        ids += [oid] * n
        errs.append(np.full(n, 0.02))
        mags.append(16 + amp * np.sin(np.arange(n)) + rng.normal(0, 0.02, n))
    ids += [99]  # single point
    mags.append([18.0])
    errs.append([0.02])
    ids = np.array(ids)
    mags, errs = np.concatenate(mags), np.concatenate(errs)
    perm = rng.permutation(ids.size)
    t = rank_variables(ids[perm], mags[perm], errs[perm])
    assert t["id"].tolist() == [13, 11, 12, 10, 99]
    for row in t[:4]:
        sel = ids[perm] == row["id"]
        vi = variability_indices(mags[perm][sel], errs[perm][sel])
        assert row["chi2nu"] == pytest.approx(vi.chi2nu)
        assert row["stetson_j"] == pytest.approx(vi.stetson_j)
        assert row["mean_mag"] == pytest.approx(vi.mean_mag)
        assert row["amplitude"] == pytest.approx(vi.amplitude)
    assert t["n"][-1] == 1 and np.isnan(t["chi2nu"][-1])


def test_combine_references_rejects_single_artefact():
    rng = np.random.default_rng(3)
    nsrc = 5000
    true = rng.uniform(15, 20, nsrc)
    err = np.full((4, nsrc), 0.01)
    mags = true + rng.normal(0, 0.01, (4, nsrc))
    art = rng.random(nsrc) < 0.1
    which = rng.integers(0, 4, nsrc)
    mags[which[art], np.flatnonzero(art)] += 0.8  # an artefact on one reference
    for method in ("median", "mean"):
        m, e, n = combine_references(mags, err, method=method)
        assert np.max(np.abs(m - true)) < 0.05
        assert np.all(n[art] <= 3) and np.mean(n[art] == 3) > 0.97
        assert np.mean(n[~art]) > 3.9
    # only three references: still protected
    m3, _, n3 = combine_references(mags[:3], err[:3])
    hit = art & (which < 3)
    assert np.max(np.abs(m3[hit] - true[hit])) < 0.05
    assert np.all(n3[hit] <= 2)
    # a plain mean of the same data is not
    assert np.max(np.abs(mags[:3].mean(axis=0)[hit] - true[hit])) > 0.2


def test_combine_references_missing_and_few():
    mags = np.array([[17.0, np.nan, 15.0, np.nan], [17.5, 16.0, np.nan, np.nan]])
    errs = np.full_like(mags, 0.02)
    m, e, n = combine_references(mags, errs, method="mean")
    assert m[0] == pytest.approx(17.25)  # two values: nothing rejected
    assert e[0] == pytest.approx(0.02 / np.sqrt(2))
    assert m[1] == 16.0 and m[2] == 15.0
    assert np.isnan(m[3]) and np.isnan(e[3])
    assert n.tolist() == [2, 1, 1, 0]
    with pytest.raises(ValueError):
        combine_references(mags, errs, method="mode")
