"""Numbers of `science_run.py`: plain functions on arrays, no database.

Every function takes the truth-matched measurements as numpy arrays so the
definitions can be read in one place.
"""

from __future__ import annotations

import numpy as np

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
