"""Science tests of photdb.pipeline on a simulated crowded chip, against the sim truth.

One module fixture simulates a small survey (one 512 x 256 chip, r band, three
reference exposures - one of them carrying the artefacts - and four search epochs),
prepares every image once (mask, sky, crowdsource detection; two processes), builds
three references (the artefact reference alone, the two clean ones plus the artefact
one combined with :func:`reduce_reference_set`, and a stacked reference) and reduces
every search epoch against each.  The tests only look at the results.

Truth conventions used below
----------------------------
* A reference source is identified with the *brightest* true star within 1 pix of
  its position on the primary reference exposure.
* "Clean" stars: constant, no star brighter than 2.5 mag fainter within 1.5"
  (``neighbour_dist_arcsec``), never saturated or within 3 pix of a defect, no mask
  bit at the reference position, and no variable/transient/artefact within 3".
* The reference defines the photometric system (notebook): the truth a corrected
  search magnitude should reproduce is ``m_true(t) - 2.5 log10(response_ref)``, the
  true magnitude seen through the primary reference's response error, plus a
  constant.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pytest
from scipy.spatial import cKDTree

from photdb.pipeline import (
    PipelineConfig,
    ReferenceResult,
    SearchResult,
    build_stacked_reference,
    prepare_image,
    read_chip,
    reduce_reference,
    reduce_reference_set,
    reduce_search,
)
from photdb.sim import SimConfig, SimTruth, simulate_survey

CONFIG = PipelineConfig()
SIM = SimConfig(
    nx=512, ny=256, n_chips=1, filters=("r",), n_epochs=4, n_references=3, seed=11
)  # fmt: skip
#: Recoverable variable: true |Δmag| vs reference >= (15 + 3) σ, σ the pipeline's
#: combined error, so measurement noise (1σ) rarely pulls it under the 15σ cut.
RECOVERABLE_NSIGMA = 18.0
#: A cut the calibrated errors allow (floor, χ²/ν factor, per-magnitude factor and
#: blending term): the "set6" searches use it.
CALIBRATED_NSIGMA = 6.0
CONFIG6 = replace(CONFIG, variability=replace(CONFIG.variability, nsigma=CALIBRATED_NSIGMA))
METRICS: dict = {}


def _prepare(path: str):
    return prepare_image(read_chip(path, 1, config=CONFIG), config=CONFIG)


def _set_and_single(prim, others, art):
    return (
        reduce_reference_set(prim, others, config=CONFIG),
        reduce_reference(art, config=CONFIG),
    )


def _stacked(preps):
    t0 = time.perf_counter()
    stack = build_stacked_reference(preps, config=CONFIG)
    t1 = time.perf_counter()
    return reduce_reference(stack, config=CONFIG), t1 - t0


def _search(prep, catalog, config=CONFIG):
    return reduce_search(prep, catalog, config=config)


@dataclass
class Run:
    truth: SimTruth
    primary: int  # exposure index of the primary (clean) reference
    artefact: int  # exposure index of the artefact reference
    epochs: list[int]
    refs: dict[str, ReferenceResult]
    searches: dict[str, list[SearchResult]]
    prep_timings: list[dict]
    stack_seconds: float


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("sim")
    truth = simulate_survey(out, SIM)
    ep = truth.epochs
    refs = [int(i) for i in np.flatnonzero(ep["is_reference"])]
    art = int(refs[int(np.flatnonzero(ep["has_artefact"][refs])[0])])
    clean = [i for i in refs if i != art]
    epochs = [int(i) for i in np.flatnonzero(~np.asarray(ep["is_reference"]))]
    with ProcessPoolExecutor(2) as pool:
        preps = list(pool.map(_prepare, [str(p) for p in ep["path"]]))
        a = pool.submit(_set_and_single, preps[clean[0]], [preps[clean[1]], preps[art]], preps[art])
        b = pool.submit(_stacked, [preps[clean[0]], preps[clean[1]], preps[art]])
        (ref_set, ref_art), (ref_stack, stack_s) = a.result(), b.result()
        out_refs = {"set": ref_set, "art": ref_art, "stack": ref_stack}
        jobs = {
            k: [pool.submit(_search, preps[e], r.catalog) for e in epochs]
            for k, r in out_refs.items()
        }
        jobs["set6"] = [pool.submit(_search, preps[e], ref_set.catalog, CONFIG6) for e in epochs]
        out_refs["set6"] = ref_set
        searches = {k: [f.result() for f in v] for k, v in jobs.items()}
    if os.environ.get("PHOTDB_PIPELINE_DUMP"):
        with open(os.environ["PHOTDB_PIPELINE_DUMP"], "wb") as fh:
            pickle.dump(
                (
                    truth,
                    clean[0],
                    art,
                    epochs,
                    out_refs,
                    searches,
                    [p.timings_s for p in preps],
                    stack_s,
                ),
                fh,
            )
    return Run(truth, clean[0], art, epochs, out_refs, searches,
               [p.timings_s for p in preps], stack_s)  # fmt: skip


# ----------------------------------------------------------------------------- truth


def _obs(truth: SimTruth, exposure: int):
    o = truth.observations
    return o[(o["exposure"] == exposure) & (o["chip"] == 0)]


def _identify(run: Run, key: str) -> np.ndarray:
    """star_id of each reference row (brightest true star within 1 pix), or -1."""
    e_ref = run.artefact if key == "art" else run.primary
    o = _obs(run.truth, e_ref)
    o = o[np.isfinite(o["mag"])]
    tree = cKDTree(np.c_[o["x"], o["y"]])
    cat = run.refs[key].catalog
    sid = np.full(len(cat), -1)
    for k, near in enumerate(tree.query_ball_point(np.c_[cat["x"], cat["y"]], 1.0)):
        if near:
            sid[k] = o["star_id"][near[int(np.argmin(o["mag"][near]))]]
    return sid


def _epoch_matrix(run: Run, key: str, column: str) -> np.ndarray:
    """(n_epochs, n_ref) array of a search-catalogue column (NaN where not forced)."""
    n = len(run.refs[key].catalog)
    out = np.full((len(run.epochs), n), np.nan)
    for j, s in enumerate(run.searches[key]):
        out[j, np.asarray(s.catalog["ref_row"])] = np.asarray(s.catalog[column], float)
    return out


def _truth_matrix(run: Run, sid: np.ndarray, column: str) -> np.ndarray:
    out = np.full((len(run.epochs), len(sid)), np.nan)
    for j, e in enumerate(run.epochs):
        o = _obs(run.truth, e)
        idx = {v: i for i, v in enumerate(o["star_id"])}
        rows = np.array([idx.get(v, -1) for v in sid])
        ok = rows >= 0
        out[j, ok] = np.asarray(o[column][rows[ok]], float)
    return out


def _ref_truth(run: Run, sid: np.ndarray, exposure: int, column: str) -> np.ndarray:
    o = _obs(run.truth, exposure)
    idx = {v: i for i, v in enumerate(o["star_id"])}
    rows = np.array([idx.get(v, -1) for v in sid])
    return np.where(rows >= 0, np.asarray(o[column], float)[np.clip(rows, 0, None)], np.nan)


def _clean(run: Run, key: str, sid: np.ndarray) -> np.ndarray:
    stars = run.truth.stars
    pos = {v: i for i, v in enumerate(stars["star_id"])}
    st = stars[[pos.get(v, 0) for v in sid]]
    ok = (sid >= 0) & (st["kind"] == "constant") & (st["neighbour_dist_arcsec"] > 1.5)
    ok &= np.asarray(run.refs[key].catalog["flags"]) == 0
    bad = _truth_matrix(run, sid, "saturated").astype(bool)
    bad |= _truth_matrix(run, sid, "near_defect").astype(bool)
    ok &= ~bad.any(axis=0)
    # no variable, transient or artefact within 3"
    special = stars[stars["kind"] != "constant"]
    pts = np.c_[special["ra"], special["dec"]]
    art = run.truth.artefacts
    pts = np.r_[pts, np.c_[art["ra"], art["dec"]]]
    cat = run.refs[key].catalog
    d, _ = cKDTree(pts * [np.cos(np.radians(SIM.dec_center)), 1]).query(
        np.c_[st["ra"], st["dec"]] * [np.cos(np.radians(SIM.dec_center)), 1], k=2
    )
    own = st["kind"] != "constant"
    nearest_other = np.where(own, d[:, 1], d[:, 0]) * 3600
    ok &= nearest_other > 3.0
    ok &= np.isfinite(np.asarray(cat["mag"], float))
    return ok


def _true_mag_r(run: Run, sid: np.ndarray) -> np.ndarray:
    stars = run.truth.stars
    pos = {v: i for i, v in enumerate(stars["star_id"])}
    return np.array([stars["mag_r"][pos[v]] if v >= 0 else np.nan for v in sid])


# ----------------------------------------------------------------------------- tests


def test_interface(run: Run):
    ref = run.refs["set"]
    for c in ("x", "y", "ra", "dec", "flux", "dflux", "mag", "magerr", "mag_inst", "qf",
              "rchi2", "fracflux", "flags", "n_ref"):  # fmt: skip
        assert c in ref.catalog.colnames
    s = run.searches["set"][0]
    for c in ("ref_row", "x", "y", "ra", "dec", "flux", "dflux", "mag", "magerr", "magerr_raw",
              "qf", "rchi2", "fracflux", "flags", "significance", "is_variable"):  # fmt: skip
        assert c in s.catalog.colnames
    assert s.catalog["is_variable"].dtype == bool
    for k in ("mask", "sky", "detect", "astrometry", "forced", "calibration", "variability"):
        assert k in s.stats.timings_s
    for part in (s.stats.to_dict(), ref.stats.to_dict(), s.calibration.to_dict()):
        json.dumps(part)
    assert ref.stats.n_references == 3 and np.median(ref.catalog["n_ref"]) == 3
    pos = s.catalog["flux"] > 0
    assert np.all(np.isfinite(s.catalog["mag"][pos])) and np.all(np.isnan(s.catalog["mag"][~pos]))


def test_repeatability_of_bright_stars(run: Run):
    sid = _identify(run, "set")
    sel = _clean(run, "set", sid) & (_true_mag_r(run, sid) < 18.5)
    mag = _epoch_matrix(run, "set", "mag")[:, sel]
    resid = mag - np.nanmean(mag, axis=0)
    n = np.isfinite(resid).sum(axis=0)
    rms = float(np.sqrt(np.nansum(resid**2) / np.sum(n - 1)))
    METRICS["repeatability_rms_mag"] = rms
    METRICS["repeatability_n_stars"] = int(sel.sum())
    assert sel.sum() >= 20
    assert rms < 0.01


def _cell_p2p(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> float:
    """Peak-to-peak of the median of ``r - median(r)`` in 4 x 2 cells of the chip."""
    r = r - np.median(r)
    ix = np.clip((x / SIM.nx * 4).astype(int), 0, 3)
    iy = np.clip((y / SIM.ny * 2).astype(int), 0, 1)
    cells = [np.median(r[(ix == a) & (iy == b)]) for a in range(4) for b in range(2)]
    return float(np.ptp(cells))


def test_no_residual_structure_after_chebyshev(run: Run):
    """Corrected search minus reference: flat to < 0.5 % in 4 x 2 cells.

    Asserted on the constant stars of the calibration sample (``calib_used``: good
    qf/fracflux, unflagged, errors < 0.05 mag; ~200 per cell), pooled over epochs
    after removing each epoch's median.  Per-epoch values and the pooled value for
    all clean stars < 20 mag (~30 per cell, so noise-limited at ~0.5-1 %) are
    recorded.

    This is what the Chebyshev correction is for (the notebook's ~10 % chip-wide
    variations of search vs reference).  Corrected minus *truth* (in the primary
    reference's system) is recorded too but not asserted: it also carries the
    reference's own flux-scale errors, which no search-image correction can remove.
    """
    sid = _identify(run, "set")
    stars = run.truth.stars
    pos = {v: i for i, v in enumerate(stars["star_id"])}
    const = np.array([stars["kind"][pos[v]] == "constant" if v >= 0 else False for v in sid])
    ref = run.refs["set"].catalog
    sel = const & (_true_mag_r(run, sid) < 20.0) & (np.asarray(ref["flags"]) == 0)
    bad = _truth_matrix(run, sid, "saturated").astype(bool)
    bad |= _truth_matrix(run, sid, "near_defect").astype(bool)
    bad |= _epoch_matrix(run, "set", "flags") != 0
    resp = _ref_truth(run, sid, run.primary, "response")
    true_sys = _truth_matrix(run, sid, "mag") - 2.5 * np.log10(resp)
    mag = _epoch_matrix(run, "set", "mag")
    refmag = np.asarray(ref["mag"], float)
    x, y = _epoch_matrix(run, "set", "x"), _epoch_matrix(run, "set", "y")
    p2p, p2p_truth, p2p_raw = [], [], []
    raw = (
        mag
        - _epoch_matrix(run, "set", "dmag_corr")
        + np.array([s.calibration.zp for s in run.searches["set"]])[:, None]
    )
    for j in range(len(run.epochs)):
        ok = sel & np.isfinite(mag[j]) & ~bad[j]
        p2p.append(_cell_p2p(x[j, ok], y[j, ok], mag[j, ok] - refmag[ok]))
        p2p_truth.append(_cell_p2p(x[j, ok], y[j, ok], mag[j, ok] - true_sys[j, ok]))
        p2p_raw.append(_cell_p2p(x[j, ok], y[j, ok], raw[j, ok] - refmag[ok]))
    ok = sel & np.isfinite(refmag)
    fin = np.isfinite(mag) & const[None, :] & ~bad & (_epoch_matrix(run, "set", "calib_used") > 0)
    pooled = _cell_p2p(
        x[fin], y[fin], (mag - refmag[None, :] - np.nanmedian(mag - refmag, axis=1)[:, None])[fin]
    )
    METRICS["cell_p2p_corrected_minus_ref_pooled_fitstars"] = pooled
    fin = np.isfinite(mag) & sel[None, :] & ~bad
    METRICS["cell_p2p_corrected_minus_ref_pooled_lt20"] = _cell_p2p(
        x[fin], y[fin], (mag - refmag[None, :] - np.nanmedian(mag - refmag, axis=1)[:, None])[fin]
    )
    METRICS["cell_p2p_corrected_minus_ref"] = p2p
    METRICS["cell_p2p_uncorrected_minus_ref"] = p2p_raw
    METRICS["cell_p2p_corrected_minus_truth"] = p2p_truth
    METRICS["cell_p2p_ref_minus_truth"] = _cell_p2p(
        np.asarray(ref["x"])[ok], np.asarray(ref["y"])[ok], (refmag - true_sys[0])[ok]
    )
    assert max(p2p_raw) > 0.02  # there was structure to remove
    assert pooled < 0.005


def test_astrometry_of_bright_stars(run: Run):
    """Forced positions (reference sky -> refined WCS) vs true positions, stars < 18.5.

    The total (< 0.08 pix) is dominated by crowdsource's centroid errors on the
    reference (~0.05 pix for 16-18.5 mag stars in this crowding); the WCS transfer
    itself, the epoch-to-epoch scatter, must be < 0.04 pix.
    """
    sid = _identify(run, "set")
    mag = _true_mag_r(run, sid)
    dx = _epoch_matrix(run, "set", "x") - _truth_matrix(run, sid, "x")
    dy = _epoch_matrix(run, "set", "y") - _truth_matrix(run, sid, "y")
    for lim in (18.5, 20.0):
        sel = _clean(run, "set", sid) & (mag < lim)
        rms = float(np.sqrt(np.nanmean(dx[:, sel] ** 2 + dy[:, sel] ** 2)))
        METRICS[f"astrometric_rms_pix_lt{lim}"] = rms
        METRICS[f"astrometric_median_offset_pix_lt{lim}"] = [
            float(np.nanmedian(dx[:, sel])), float(np.nanmedian(dy[:, sel]))
        ]  # fmt: skip
    sel = _clean(run, "set", sid) & (mag < 18.5)
    rms = float(np.sqrt(np.nanmean(dx[:, sel] ** 2 + dy[:, sel] ** 2)))
    # split: the reference's own centroid error (the same on every epoch) and the
    # epoch-to-epoch scatter (the refined WCS transfer)
    mx, my = np.nanmean(dx[:, sel], axis=0), np.nanmean(dy[:, sel], axis=0)
    wcs_rms = float(np.sqrt(np.nanmean((dx[:, sel] - mx) ** 2 + (dy[:, sel] - my) ** 2)))
    METRICS["astrometric_wcs_transfer_rms_pix"] = wcs_rms
    METRICS["astrometric_ref_centroid_rms_pix"] = float(np.sqrt(np.nanmean(mx**2 + my**2)))
    assert wcs_rms < 0.04
    METRICS["astrom_fit_rms_arcsec"] = [s.stats.astrom_rms_arcsec for s in run.searches["set"]]
    assert rms < 0.08


def _detections(run: Run, key: str) -> np.ndarray:
    return np.nansum(_epoch_matrix(run, key, "is_variable"), axis=0).astype(int)


def test_variables_recovered(run: Run):
    """>= 95% of *recoverable* >= 0.3 mag variables detected on >= 2 epochs.

    Recoverable: on >= 2 epochs the true change against the reference (the true
    magnitude at the epoch minus the median of its true magnitudes on the three
    reference epochs, which is what the combined reference measures) exceeds
    ``RECOVERABLE_NSIGMA`` = 18 times the pipeline's combined error (search magerr
    and reference magerr), and the star's mean magnitude is < 20.5 (fainter, the
    forced flux of a star in this crowding carries a blending bias of 0.1-0.3 mag
    that differs between epochs of different seeing, so the true Δmag is not what
    any forced photometry measures).  With the notebook's 15σ cut a 0.3 mag variable is only
    detectable when it is at an extreme of its cycle on bright enough epochs, so
    the raw fraction is reported, not asserted.
    """
    sid = _identify(run, "set")
    stars = run.truth.stars
    pos = {v: i for i, v in enumerate(stars["star_id"])}
    amp = np.array([stars["amplitude"][pos[v]] if v >= 0 else 0 for v in sid])
    kind = np.array([stars["kind"][pos[v]] if v >= 0 else "" for v in sid])
    var = (kind == "periodic") & (amp >= 0.3)
    # the combined reference magnitude is the median over the reference epochs
    ref_exposures = np.flatnonzero(run.truth.epochs["is_reference"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # stars off some reference epochs
        ref_true = np.nanmedian([_ref_truth(run, sid, int(e), "mag") for e in ref_exposures], 0)
    dm_true = _truth_matrix(run, sid, "mag") - ref_true
    sig = np.hypot(_epoch_matrix(run, "set", "magerr"), _epoch_matrix(run, "set", "ref_magerr"))
    expected = (np.abs(dm_true) / sig >= RECOVERABLE_NSIGMA).sum(axis=0)
    ndet = _detections(run, "set")
    recoverable = var & (expected >= 2) & (_true_mag_r(run, sid) < 20.5)
    METRICS["n_variables_ge_0.3"] = int(var.sum())
    METRICS["raw_fraction_ge2_detections"] = float(np.mean(ndet[var] >= 2))
    METRICS["n_recoverable"] = int(recoverable.sum())
    METRICS["recovered_fraction"] = float(np.mean(ndet[recoverable] >= 2))
    assert var.sum() >= 10
    assert recoverable.sum() >= 2
    assert np.mean(ndet[recoverable] >= 2) >= 0.95


def _sampled_variables(run: Run, sid: np.ndarray, key: str) -> np.ndarray:
    """Periodic variables, amplitude >= 0.3 mag, true mean < 21 mag, that are >= 0.3 mag
    off their (median-of-references) true reference magnitude on >= 2 search epochs
    while away from the edge band (where nothing is reported, by design)."""
    stars = run.truth.stars
    pos = {v: i for i, v in enumerate(stars["star_id"])}
    amp = np.array([stars["amplitude"][pos[v]] if v >= 0 else 0 for v in sid])
    kind = np.array([stars["kind"][pos[v]] if v >= 0 else "" for v in sid])
    ref_exposures = np.flatnonzero(run.truth.epochs["is_reference"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref_true = np.nanmedian([_ref_truth(run, sid, int(e), "mag") for e in ref_exposures], 0)
    dm_true = np.abs(_truth_matrix(run, sid, "mag") - ref_true)
    x, y = _epoch_matrix(run, key, "x"), _epoch_matrix(run, key, "y")
    edge = CONFIG.selection.variability_edge_pix
    cat = run.refs[key].catalog
    rx, ry = np.asarray(cat["x"], float), np.asarray(cat["y"], float)
    inner = (x >= edge) & (y >= edge) & (x <= SIM.nx - 1 - edge) & (y <= SIM.ny - 1 - edge)
    inner &= ((rx >= edge) & (ry >= edge) & (rx <= rx.max() - edge) & (ry <= ry.max() - edge))[
        None, :
    ]
    seen = ((dm_true >= 0.3) & inner).sum(axis=0) >= 2
    return (kind == "periodic") & (amp >= 0.3) & seen & (_true_mag_r(run, sid) < 21.0)


def test_variables_recovered_at_calibrated_threshold(run: Run):
    """>= 95% of >= 0.3 mag variables that show it (>= 0.3 mag off on >= 2 epochs,
    brighter than 21 mag) are repeated detections at the 6σ cut the calibrated errors
    allow, while false detections stay below 0.1% per image
    (:func:`test_false_detection_rate` with ``key="set6"``)."""
    sid = _identify(run, "set6")
    sampled = _sampled_variables(run, sid, "set6")
    ndet = _detections(run, "set6")
    METRICS["calibrated_nsigma"] = CALIBRATED_NSIGMA
    METRICS["n_sampled_variables_lt21"] = int(sampled.sum())
    METRICS["recovered_fraction_calibrated"] = float(np.mean(ndet[sampled] >= 2))
    METRICS["recovered_fraction_15sigma_same_sample"] = float(
        np.mean(_detections(run, "set")[sampled] >= 2)
    )
    assert sampled.sum() >= 4
    assert np.mean(ndet[sampled] >= 2) >= 0.95


@pytest.mark.parametrize("key", ["set", "set6"])
def test_false_detection_rate(run: Run, key: str):
    """< 0.1% of the forced sources per image are false detections on clean constant
    stars, at the notebook's 15σ ("set") and at the calibrated 6σ ("set6")."""
    sid = _identify(run, key)
    sel = _clean(run, key, sid)
    isvar = _epoch_matrix(run, key, "is_variable") > 0
    nforced = np.array([len(s.catalog) for s in run.searches[key]])
    false = isvar[:, sel].sum(axis=1)
    suffix = "_calibrated" if key == "set6" else ""
    METRICS["false_per_image" + suffix] = false.tolist()
    METRICS["false_repeated" + suffix] = int(np.sum(isvar[:, sel].sum(axis=0) >= 2))
    METRICS["clean_per_image"] = int(sel.sum())
    METRICS["forced_per_image"] = nforced.tolist()
    assert np.all(false / nforced < 0.001)


def test_calibrated_cut_changes_only_the_flags(run: Run):
    """ "set6" differs from "set" by the cut alone: the same errors and magnitudes."""
    for a, b in zip(run.searches["set"], run.searches["set6"], strict=True):
        np.testing.assert_array_equal(a.catalog["magerr"], b.catalog["magerr"])
        np.testing.assert_array_equal(a.catalog["mag"], b.catalog["mag"])


def _artefact_rows(run: Run, key: str) -> np.ndarray:
    sid = _identify(run, key)
    art = run.truth.artefacts
    ids = {int(v) for s in art["star_ids"][art["kind"] == "blob"] for v in str(s).split(",") if v}
    rows = [k for k, v in enumerate(sid) if v in ids]
    # fakes: reference sources within 1 pix of a fake blob (on the artefact exposure frame)
    cat = run.refs[key].catalog
    true_wcs = run.truth.true_wcs(run.artefact if key == "art" else run.primary, 0)
    for a in art[art["kind"] == "fake"]:
        ref_xy = true_wcs.all_world2pix([[a["ra"], a["dec"]]], 0)[0]
        d = np.hypot(cat["x"] - ref_xy[0], cat["y"] - ref_xy[1])
        rows += [int(k) for k in np.flatnonzero(d < 1.5)]
    return np.array(sorted(set(rows)), dtype=int)


@pytest.mark.parametrize("key", ["set", "stack"])
def test_reference_artefacts_not_repeated(run: Run, key: str):
    rows_art = _artefact_rows(run, "art")
    ndet_art = _detections(run, "art")[rows_art]
    rows = _artefact_rows(run, key)
    ndet = _detections(run, key)[rows] if rows.size else np.zeros(0, int)
    METRICS["artefact_repeats_alone"] = ndet_art.tolist()
    METRICS[f"artefact_repeats_{key}"] = ndet.tolist()
    # with the artefact reference alone, the brightened stars repeat on most epochs ...
    assert np.sum(ndet_art >= 2) >= 2
    # ... with several references / the stack they do not
    assert np.all(ndet < 2)


def test_timings_recorded(run: Run):
    s = run.searches["set"][0]
    METRICS["prep_timings_s"] = run.prep_timings
    METRICS["search_timings_s"] = [x.stats.timings_s for x in run.searches["set"]]
    METRICS["stack_build_s"] = run.stack_seconds
    if os.environ.get("PHOTDB_PIPELINE_METRICS"):  # e.g. for benchmarks/ notes
        with open(os.environ["PHOTDB_PIPELINE_METRICS"], "w") as fh:
            json.dump(METRICS, fh, indent=1, default=float)
    assert all(v >= 0 for v in s.stats.timings_s.values())
