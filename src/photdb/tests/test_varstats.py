"""Running-sum variability statistics: incremental in any order == recomputed == direct."""

from __future__ import annotations

import numpy as np
import pytest

from photdb.variability import variability_indices
from photdb.varstats import (
    RefOutlierConfig,
    add_points,
    empty_sums,
    finalize,
    needs_neighbours,
    sums_from_points,
)


def _survey(rng, n_src=40, n_img=9):
    """Light curves of n_src sources on n_img images (some points missing)."""
    t = np.sort(rng.uniform(59300, 59400, n_img))
    t[4] = t[3]  # two images at the same time: ties go by image id
    img = np.arange(100, 100 + n_img)
    e = rng.uniform(0.005, 0.05, (n_img, n_src))
    d = rng.normal(0.0, e)
    d[:, :5] += rng.uniform(0.3, 1.0, 5)  # variables (offsets on every point here)
    have = rng.random((n_img, n_src)) > 0.15
    det = np.abs(d / e) > 5
    return t, img, d, e, have, det


def _incremental(t, img, d, e, have, det, order):
    n_src = d.shape[1]
    sums = empty_sums(n_src)
    seen = np.zeros_like(have)
    for k in order:
        inside = needs_neighbours(sums, np.full(n_src, t[k]), np.full(n_src, img[k]), have[k])
        before = (np.full(n_src, np.nan), np.full(n_src, np.nan))
        after = (np.full(n_src, np.nan), np.full(n_src, np.nan))
        for j in np.flatnonzero(inside):  # the stored neighbours, as the database gives them
            pts = [(t[i], img[i], i) for i in range(len(t)) if seen[i, j]]
            prev = max(p for p in pts if (p[0], p[1]) < (t[k], img[k]))[2]
            nxt = min(p for p in pts if (p[0], p[1]) > (t[k], img[k]))[2]
            before[0][j], before[1][j] = d[prev, j], e[prev, j]
            after[0][j], after[1][j] = d[nxt, j], e[nxt, j]
        sums = add_points(sums, np.full(n_src, t[k]), np.full(n_src, img[k]), d[k], e[k],
                          counted=have[k], detected=det[k] & have[k], significance=d[k] / e[k],
                          before=before, after=after)  # fmt: skip
        seen[k] = have[k]
    return sums


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_in_any_order_equals_recomputed(seed):
    rng = np.random.default_rng(seed)
    t, img, d, e, have, det = _survey(rng)
    k, j = np.nonzero(have)
    uid, ref = sums_from_points(j, t[k], img[k], d[k, j], e[k, j], det[k, j], d[k, j] / e[k, j])
    assert np.array_equal(uid, np.arange(d.shape[1]))
    for order in (np.arange(len(t)), np.arange(len(t))[::-1], rng.permutation(len(t))):
        inc = _incremental(t, img, d, e, have, det, order)
        for name, a in inc.as_dict().items():
            b = getattr(ref, name)
            assert np.allclose(a, b, rtol=1e-10, atol=1e-12, equal_nan=True), name


def test_statistics_match_direct_definitions():
    rng = np.random.default_rng(5)
    t, img, d, e, have, det = _survey(rng, n_src=12)
    k, j = np.nonzero(have)
    _, sums = sums_from_points(j, t[k], img[k], d[k, j], e[k, j], det[k, j], d[k, j] / e[k, j])
    ref_mag = rng.uniform(15, 21, 12)
    st = finalize(sums, ref_mag, np.full(12, 0.01))
    for s in range(12):
        order = np.lexsort((img, t))
        sel = order[have[order, s]]
        m, err = ref_mag[s] + d[sel, s], e[sel, s]
        vi = variability_indices(m, err)
        assert st.n_epochs[s] == vi.n
        assert st.mean_mag[s] == pytest.approx(vi.mean_mag, abs=1e-9)
        assert st.chi2nu[s] == pytest.approx(vi.chi2nu, rel=1e-8)
        assert st.amplitude[s] == pytest.approx(vi.amplitude, abs=1e-9)
        dd = d[sel, s]
        eta = np.sum(np.diff(dd) ** 2) / np.sum((dd - dd.mean()) ** 2)
        assert st.eta[s] == pytest.approx(eta, rel=1e-8)
        p = (dd[:-1] / err[:-1]) * (dd[1:] / err[1:])
        assert st.stetson_j[s] == pytest.approx(np.mean(np.sign(p) * np.sqrt(np.abs(p))))
        assert st.n_det[s] == det[sel, s].sum()


def test_reference_outlier_flags_offset_not_variability_nor_noise():
    rng = np.random.default_rng(3)
    n_img, n = 6, 3000
    e = np.full((n_img, n), 0.02)
    d = rng.normal(0.0, e)  # constant stars, reference right
    d[:, :100] += 0.15  # reference wrong by 0.15 mag: every epoch off by the same
    d[:, 100:200] += rng.uniform(-0.5, 0.5, (n_img, 100))  # variables
    k, j = np.nonzero(np.ones_like(d, bool))
    det = np.abs(d[k, j] / e[k, j]) >= 6
    _, sums = sums_from_points(j, k * 1.0, k, d[k, j], e[k, j], det, d[k, j] / e[k, j])
    st = finalize(sums, np.full(n, 18.0), np.full(n, 0.01), config=RefOutlierConfig())
    assert st.ref_outlier[:100].all()
    assert st.ref_offset[:100] == pytest.approx(0.15, abs=0.03)
    assert st.ref_outlier[100:200].sum() <= 2  # a variable rarely looks constant
    assert not st.ref_outlier[200:].any()
    # one epoch far off (a cosmic ray) does not hide the offset; without detections: no flag
    d[:, :100] += 0.25  # offset 0.4 mag ...
    d[2, :100] += 0.12  # ... and one epoch 6σ further off
    _, sums = sums_from_points(j, k * 1.0, k, d[k, j], e[k, j], det, d[k, j] / e[k, j])
    st = finalize(sums, np.full(n, 18.0), np.full(n, 0.01))
    assert np.median(st.chi2nu[:100]) > 4  # the χ² test alone would not call them consistent
    assert st.ref_outlier[:100].all()
    _, sums = sums_from_points(j, k * 1.0, k, d[k, j], e[k, j], det & False, d[k, j] / e[k, j])
    assert not finalize(sums, np.full(n, 18.0), np.full(n, 0.01)).ref_outlier.any()


def test_missing_neighbours_refused():
    sums = empty_sums(1)
    one = dict(counted=[True], detected=[False], significance=[0.0])
    sums = add_points(sums, [1.0], [1], [0.1], [0.01], **one)
    sums = add_points(sums, [3.0], [3], [0.1], [0.01], **one)
    with pytest.raises(ValueError, match="neighbours"):
        add_points(sums, [2.0], [2], [0.1], [0.01], **one)
