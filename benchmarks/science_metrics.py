"""Numbers of `science_run.py`: plain functions on arrays, no database.

Every function takes the truth-matched measurements as numpy arrays so the
definitions can be read in one place.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

MAD = 1.482602218505602


def cell_index(x, y, nx, ny, n):
    """Cell number (0 .. n*n-1) of pixel positions on an n x n grid."""
    cx = np.minimum((np.asarray(x) / nx * n).astype(int), n - 1)
    cy = np.minimum((np.asarray(y) / ny * n).astype(int), n - 1)
    return cx * n + cy


def cell_means(values, errors, cell, n_cells, min_stars=8, clip=3.0):
    """Clipped inverse-variance mean per populated cell, and its uncertainty.

    The uncertainty is ``1 / sqrt(sum w)`` times ``sqrt(χ²/ν)`` of the cell's
    members when that exceeds 1 (errors that understate the scatter).
    """
    mean, noise = [], []
    for c in range(n_cells):
        w = cell == c
        v, e = values[w], errors[w]
        if v.size < min_stars:
            continue
        keep = np.ones(v.size, bool)
        for _ in range(10):
            wt = 1.0 / e[keep] ** 2
            m = np.sum(wt * v[keep]) / np.sum(wt)
            z = (v - m) / e
            new = np.abs(z) <= clip * max(1.0, MAD * np.median(np.abs(z[keep])))
            if np.array_equal(new, keep):
                break
            keep = new
        chi2 = np.sum(z[keep] ** 2) / max(keep.sum() - 1, 1)
        mean.append(m)
        noise.append(np.sqrt(max(chi2, 1.0) / np.sum(1.0 / e[keep] ** 2)))
    return np.array(mean), np.array(noise)


def structure(values, errors, x, y, nx, ny, n, *, permutations=200, seed=0):
    """Peak-to-peak of cell means, what noise alone gives, and χ²/ν of the cells.

    ``values`` holds one number per star (its residual) and ``errors`` its
    uncertainty. The noise-only peak-to-peak is the median over ``permutations``
    random reassignments of the same (value, error) pairs to the same positions:
    structure in the observed map shows as a peak-to-peak above it and a χ²/ν
    above 1.
    """
    cell = cell_index(x, y, nx, ny, n)
    mean, noise = cell_means(values, errors, cell, n * n)
    if mean.size < 4:
        return None
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(permutations):
        p = rng.permutation(values.size)
        null.append(np.ptp(cell_means(values[p], errors[p], cell, n * n)[0]))
    null = null or [np.nan]
    centred = mean - np.average(mean, weights=noise**-2)
    return {
        "cells": int(mean.size),
        "n_stars": int(values.size),
        "p2p": float(np.ptp(mean)),
        "p2p_noise_only": float(np.median(null)),
        "p2p_noise_only_95": float(np.percentile(null, 95)),
        "rms": float(np.std(mean)),
        "noise": float(np.sqrt(np.mean(noise**2))),
        "chi2nu": float(np.sum((centred / noise) ** 2) / (mean.size - 1)),
    }


def per_star_mean(ids, values, errors, ref_errors):
    """Unique ids, each star's weighted mean of ``values`` over its epochs, and its error.

    The error adds the star's reference error (the same on every epoch) to the
    error of the mean of its search points.
    """
    u, inv = np.unique(ids, return_inverse=True)
    w = 1.0 / errors**2
    sw = np.bincount(inv, w)
    mean = np.bincount(inv, w * values) / sw
    ref = np.zeros(u.size)
    ref[inv] = ref_errors
    return u, mean, np.sqrt(1.0 / sw + ref**2)


def false_rates(significance, clean, thresholds):
    """Fraction of clean constant-star points with |significance| >= N, per N."""
    s = np.abs(significance[clean & np.isfinite(significance)])
    return {float(n): float(np.mean(s >= n)) if s.size else float("nan") for n in thresholds}


def recovery(significance_per_star, thresholds, min_detections=2):
    """Recovered fraction (>= min_detections points with |significance| >= N) per N."""
    out = {}
    for n in thresholds:
        hits = [int(np.sum(np.abs(s) >= n) >= min_detections) for s in significance_per_star]
        out[float(n)] = (sum(hits), len(hits))
    return out


# --------------------------------------------------------------- issue 12 numbers


def completeness(true_mag, found, bins):
    """Fraction of true stars with a reference source, per true-magnitude bin:
    ``{"lo-hi": [found, total]}``."""
    out = {}
    for lo, hi in bins:
        w = (true_mag >= lo) & (true_mag < hi)
        out[f"{lo:g}-{hi:g}"] = [int(np.sum(found[w])), int(w.sum())]
    return out


def clipped_rms(values, clip=3.0):
    """rms of ``values`` (e.g. separations) and their rms after ``clip``-sigma clipping
    about the median (1.4826 MAD), as a pair."""
    v = np.asarray(values, float)
    if v.size == 0:
        return float("nan"), float("nan")
    keep = np.abs(v - np.median(v)) <= clip * MAD * np.median(np.abs(v - np.median(v)))
    return float(np.sqrt(np.mean(v**2))), float(np.sqrt(np.mean(v[keep] ** 2)))


def clear_recall(true_sig_per_star, detections_per_star, min_sigma=20.0, min_epochs=2):
    """Recall of clearly variable stars: those whose true change is >= ``min_sigma``
    (true Δmag over the point's combined error) on >= ``min_epochs`` epochs, reported
    (stored detections) on >= ``min_epochs`` epochs: ``[reported, eligible]``."""
    eligible = [np.sum(np.abs(s) >= min_sigma) >= min_epochs for s in true_sig_per_star]
    hit = [e and d >= min_epochs for e, d in zip(eligible, detections_per_star, strict=True)]
    return [int(np.sum(hit)), int(np.sum(eligible))]


def new_source_recovery(truth, added_ra, added_dec, ref_ra, ref_dec, ref_repeated, *,
                        mag_limit=21.0, min_epochs=2, match_arcsec=1.0,
                        edge_pix=12.0):  # fmt: skip
    """New sources (transients) against truth.

    A transient is *eligible* when it is brighter than ``mag_limit`` on at least
    ``min_epochs`` search epochs, on the chip, ``edge_pix`` from its edges and not
    within 3 pix of a defect. It is *blended* when a reference source lies within
    ``match_arcsec`` (its light then goes to that source's forced fit). It is
    *recovered* when an added source lies within ``match_arcsec``, or, blended, when
    the reference source it falls on is a repeated variable (``ref_repeated``: at
    least two variable detections). An added source is *real* when within
    ``match_arcsec`` of a transient or a variable star, else *false* (a cosmic ray,
    a trail, noise).

    Returns
    -------
    dict
        ``eligible, isolated, recovered_isolated, blended, recovered_blended,
        recovery`` (all eligible), ``added, added_real, added_false`` and the
        ``missed`` star ids.
    """
    ep, obs, stars = truth.epochs, truth.observations, truth.stars
    cfg = truth.config
    search = np.asarray(ep["exposure"])[~np.asarray(ep["is_reference"])]
    kind = np.asarray(stars["kind"])[np.asarray(obs["star_id"])]
    x, y = np.asarray(obs["x"], float), np.asarray(obs["y"], float)
    ok = (kind == "transient") & np.isin(obs["exposure"], search) & np.asarray(obs["on_chip"])
    ok &= ~np.asarray(obs["near_defect"]) & (np.asarray(obs["mag"], float) < mag_limit)
    ok &= (x > edge_pix) & (x < cfg.nx - 1 - edge_pix) & (y > edge_pix)
    ok &= y < cfg.ny - 1 - edge_pix
    ids, n = np.unique(np.asarray(obs["star_id"])[ok], return_counts=True)
    want = ids[n >= min_epochs]
    dec0 = float(np.median(stars["dec"]))

    def plane(ra, dec):
        return np.c_[np.asarray(ra, float) * np.cos(np.radians(dec0)), np.asarray(dec, float)]

    added = plane(added_ra, added_dec) * 3600.0
    pos = {int(s): k for k, s in enumerate(stars["star_id"])}
    rows = [pos[int(s)] for s in want]
    true = plane(stars["ra"][rows], stars["dec"][rows]) * 3600.0
    if len(added) and len(true):
        d, _ = cKDTree(added).query(true)
    else:
        d = np.full(len(true), np.inf)
    real = stars[np.asarray(stars["kind"]) != "constant"]
    if len(added) and len(real):
        da, _ = cKDTree(plane(real["ra"], real["dec"]) * 3600.0).query(added)
    else:
        da = np.full(len(added), np.inf)
    blended = np.zeros(len(true), bool)
    via_ref = np.zeros(len(true), bool)
    if len(ref_ra) and len(true):
        dr, k = cKDTree(plane(ref_ra, ref_dec) * 3600.0).query(true)
        blended = dr <= match_arcsec
        via_ref = blended & np.asarray(ref_repeated, bool)[k]
    found = (d <= match_arcsec) | via_ref
    rec = int(np.count_nonzero(found))
    return {
        "eligible": int(len(want)),
        "isolated": int(np.count_nonzero(~blended)),
        "recovered_isolated": int(np.count_nonzero(found & ~blended)),
        "blended": int(np.count_nonzero(blended)),
        "recovered_blended": int(np.count_nonzero(found & blended)),
        "recovered": rec,
        "recovery": rec / len(want) if len(want) else float("nan"),
        "added": int(len(added)),
        "added_real": int(np.count_nonzero(da <= match_arcsec)),
        "added_false": int(np.count_nonzero(da > match_arcsec)),
        "missed": [int(s) for s, f in zip(want, found, strict=True) if not f],
    }
