"""Science numbers of a bigger simulated run through the database, against truth.

Simulates a survey (default: 2 filters, 2 chips of 1024 x 512, 3 references and
6 epochs per filter), ingests it into a scratch embedded database, marks the
three references per filter (a reference *set*: the artefact lives on one of
them), processes with ``-j``, then prints:

* repeatability: rms over epochs of corrected magnitudes of bright unsaturated
  constant isolated stars (median over stars), mag;
* residual Δmag structure of search - reference, what the Chebyshev correction
  flattens: clean constant stars of 14-20 mag (not within 3" of a variable, not
  touched by the reference artefact, away from the edge band), each star's median
  over epochs, cell medians on 3 x 3 and 4 x 4 grids per chip; printed with the
  peak-to-peak that noise alone gives (the same values shuffled over the same
  positions) and the cells' χ²/ν; the reference against truth on the same cells;
* astrometry: bright reference stars against truth, and the refined WCS rms;
* false detections: stored galvarobjs rows on clean constant stars per image, and
  the per-point rate of |significance| >= N for N = 5 ... 15;
* recovery: periodic variables with amplitude >= 0.3 mag that are >= 0.3 mag off
  their reference on >= 2 epochs (away from the edge band), recovered when >= 2
  points are beyond N sigma, by reference magnitude; and the stored repeated
  detections of all amplitude >= 0.3 variables;
* artefact: reference-artefact stars reported as repeated (>= 2) variables;
* new sources: transients brighter than 21 mag on >= 2 epochs added to the reference
  catalogue (within 1"), and added sources that are no real changing source.

    python benchmarks/science_run.py [--nx 1024 --ny 512 --epochs 6 -j 2]
    python benchmarks/science_run.py --outdir DIR ...      # keep the run
    python benchmarks/science_run.py --outdir DIR --analyse-only
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import science_metrics as M


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nx", type=int, default=1024)
    ap.add_argument("--ny", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--outdir", type=Path, default=None, help="keep everything here")
    ap.add_argument(
        "--detector",
        choices=("fast", "crowdsource"),
        default=None,
        help="search images' calibration detector (default: the pipeline's); the numbers "
        "go to results/science_run_<detector>.json",
    )
    ap.add_argument(
        "--density",
        type=float,
        default=None,
        help="field stars per arcmin^2 (default: the simulator's, 800, ~0.015 per 0.263\" "
        "pixel; 1040 is 0.02 per pixel); the numbers go to results/science_run_density<N>.json",
    )
    ap.add_argument(
        "--analyse-only",
        action="store_true",
        help="only recompute the numbers of a run kept with --outdir",
    )
    args = ap.parse_args()
    out = args.outdir or Path(tempfile.mkdtemp(prefix="photdb-science-"))
    os.environ["PHOTDB_HOME"] = str(out / "home")
    os.environ.pop("DB_HOST", None)

    import json

    from photdb.db.connection import resolve
    from photdb.pipeline import PipelineConfig
    from photdb.settings import load_settings
    from photdb.sim import SimConfig, SimTruth
    from photdb.survey.process import process
    from photdb.survey.simulated import load_survey, make_survey

    edge = PipelineConfig().selection.variability_edge_pix
    if args.analyse_only:
        settings = resolve(load_settings())
        truth_dir = out / "sim" / "truth"
        truth = SimTruth.read(truth_dir if truth_dir.is_dir() else out / "truth")
        results = analyse(settings, truth, truth.config, edge)
        results["new_sources"] = analyse_new_sources(settings, truth)
        report(results)
        report_new_sources(results)
        dest = Path(__file__).parent / "results" / "science_run.json"
        if dest.exists():  # keep the run's own description (size, seconds)
            results["survey"] = json.loads(dest.read_text()).get("survey")
        dest.write_text(json.dumps(results, indent=2))
        print(f"written {dest}")
        return

    cfg = SimConfig(
        nx=args.nx,
        ny=args.ny,
        n_chips=2,
        filters=("g", "r"),
        n_epochs=args.epochs,
        n_references=3,
        seed=11,
        **({} if args.density is None else {"density_per_arcmin2": args.density}),
    )
    t0 = time.perf_counter()
    survey = make_survey(out / "sim", cfg, reuse=False)
    truth = survey.truth
    settings = resolve(load_settings())
    load_survey(settings, survey)
    config = PipelineConfig(astrometric_catalog=str(survey.catalog))
    if args.detector is not None:
        config = dataclasses.replace(
            config, detection=dataclasses.replace(config.detection, detector=args.detector)
        )
    rep = process(settings, jobs=args.jobs, config=config)
    print(
        f"{len(rep.done)} chips processed, {len(rep.failed)} failed, "
        f"{time.perf_counter() - t0:.0f} s total"
    )
    for o in rep.failed:
        print("  failed:", o.galimage_id, o.message)

    results = analyse(settings, truth, cfg, edge)
    results["survey"] = {
        "nx": cfg.nx,
        "ny": cfg.ny,
        "chips": cfg.n_chips,
        "filters": list(cfg.filters),
        "references": cfg.n_references,
        "epochs": cfg.n_epochs,
        "chips_processed": len(rep.done),
        "failed": len(rep.failed),
        "seconds": round(time.perf_counter() - t0, 1),
        "detector": config.detection.detector,
        "density_per_arcmin2": cfg.density_per_arcmin2,
    }
    results["new_sources"] = analyse_new_sources(settings, truth)
    report(results)
    report_new_sources(results)
    name = "science_run.json" if args.detector is None else f"science_run_{args.detector}.json"
    if args.density is not None:
        name = name.replace(".json", f"_density{args.density:.0f}.json")
    dest = Path(__file__).parent / "results" / name
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(results, indent=2))
    print(f"written {dest}")
    if args.outdir is None:  # a scratch cluster: remove it (keep it with --outdir)
        from photdb.db.server import EmbeddedServer

        EmbeddedServer(settings.home).destroy()


THRESHOLDS = (5.0, 6.0, 7.0, 8.0, 10.0, 15.0)
MAG_BINS = ((14.0, 19.0), (19.0, 20.0), (20.0, 21.0), (21.0, 22.0))


def _inner(xy_naxis: np.ndarray, edge: float) -> np.ndarray:
    """Rows ``(x, y, naxis1, naxis2)`` at least ``edge`` pixels inside their image."""
    x, y, nx, ny = (xy_naxis[:, j] for j in range(4))
    return (x >= edge) & (y >= edge) & (x <= nx - 1 - edge) & (y <= ny - 1 - edge)


def _fetch(conn, band):
    """Reference rows and forced rows of one filter as float arrays."""
    refs = np.array(
        conn.execute(
            "SELECT s.id, s.ra, s.dec, s.mag, s.magerr, i.id, s.x, s.y, i.naxis1, i.naxis2,"
            " s.flags FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
            " JOIN galexposures e ON i.galexposure_id = e.id"
            " WHERE s.ref_id IS NULL AND e.filter LIKE %s",
            [band + "%"],
        ).fetchall(),
        dtype=float,
    )
    forced = np.array(
        conn.execute(
            "SELECT s.ref_id, s.mag, s.magerr, s.galimage_id, s.x, s.y, i.naxis1, i.naxis2,"
            " e.mjd FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
            " JOIN galexposures e ON i.galexposure_id = e.id"
            " WHERE s.ref_id IS NOT NULL AND NOT e.is_reference AND e.filter LIKE %s",
            [band + "%"],
        ).fetchall(),
        dtype=float,
    )
    return refs, forced


def analyse(settings, truth, cfg, edge) -> dict:
    """All numbers of the run, from the database and the truth tables."""
    from astropy.coordinates import SkyCoord

    from photdb.db import connect
    from photdb.sim import star_magnitudes

    stars, ep = truth.stars, truth.epochs
    tcoord = SkyCoord(np.asarray(stars["ra"]), np.asarray(stars["dec"]), unit="deg")
    kind = np.asarray(stars["kind"])
    amp = np.asarray(stars["amplitude"])
    isolated = np.asarray(stars["neighbour_dist_arcsec"]) > 2.0
    variable = kind != "constant"
    _, dvar, _ = tcoord.match_to_catalog_sky(tcoord[variable])
    near_variable = (dvar.arcsec < 3.0) & ~variable  # light of a variable within 3"
    art_ids = set()
    for s in truth.artefacts["star_ids"]:
        art_ids |= {int(v) for v in str(s).split(",") if v.strip()}
    artefact = np.isin(np.arange(len(stars)), list(art_ids))
    r: dict = {"structure_vs_reference": [], "reference_vs_truth": []}
    repeat, astro_pix, false_default = [], [], []
    sig_const, rec_sets = [], {b: [] for b in MAG_BINS}
    per_image, star_sig = [], []
    rec_raw = {b: [0, 0] for b in MAG_BINS}
    art_rep = 0
    with connect("readonly", settings) as conn:
        rms_astro = [
            row[0]
            for row in conn.execute(
                "SELECT astrom_rms_arcsec FROM galimages WHERE astrom_rms_arcsec IS NOT NULL"
            )
        ]
        ndet = dict(conn.execute("SELECT refsource_id, count(*) FROM galvarobjs GROUP BY 1"))
        flagged = set(conn.execute("SELECT refsource_id, galimage_id FROM galvarobjs").fetchall())
        for band in cfg.filters:
            refs, f = _fetch(conn, band)
            rc = SkyCoord(refs[:, 1], refs[:, 2], unit="deg")
            idx, sep, _ = rc.match_to_catalog_sky(tcoord)  # ref source -> true star
            matched = sep.arcsec < 0.3
            bright = (refs[:, 3] < 18.5) & (sep.arcsec < 1.0) & isolated[idx]
            astro_pix.extend(sep.arcsec[bright] / cfg.pixscale_arcsec)
            sel = ep["filter"] == band
            ref_true = np.median(
                [star_magnitudes(stars, m, band) for m in ep["mjd"][sel & ep["is_reference"]]],
                axis=0,
            )
            pos = {int(v): k for k, v in enumerate(refs[:, 0])}
            k = np.array([pos[int(v)] for v in f[:, 0]])
            star = idx[k]
            inner = _inner_arr(f[:, 4], f[:, 5], f[:, 6], f[:, 7], edge)
            inner &= _inner_arr(refs[k, 6], refs[k, 7], refs[k, 8], refs[k, 9], edge)
            clean_ref = matched & ~variable[idx] & ~near_variable[idx] & ~artefact[idx]
            clean_ref &= refs[:, 4] < 0.05
            clean = clean_ref[k] & inner & np.isfinite(f[:, 1])
            d = f[:, 1] - refs[k, 3]  # search - reference, mag
            sig = d / np.hypot(f[:, 2], refs[k, 4])
            sig_const.append(sig[clean])
            for img in np.unique(f[clean, 3]):
                w = clean & (f[:, 3] == img)
                n_all = int(np.sum(f[:, 3] == img))  # every forced source of the image
                per_image.append(
                    {n: float(np.mean(np.abs(sig[w]) >= n)) for n in THRESHOLDS}
                    | {("all", n): float(np.sum(np.abs(sig[w]) >= n) / n_all) for n in THRESHOLDS}
                )
            for v in np.unique(f[clean, 0]):
                star_sig.append(sig[clean & (f[:, 0] == v)])
            # false detections as stored (galvarobjs), per image, clean constant stars
            for img in np.unique(f[:, 3]):
                w = clean & (f[:, 3] == img)
                n_false = sum((int(v), int(img)) in flagged for v in f[w, 0])
                false_default.append(n_false / max(w.sum(), 1))
            # repeatability (isolated bright constant stars)
            iso = clean & isolated[star] & (ref_true[star] > 15.5) & (ref_true[star] < 18.5)
            for v in np.unique(f[iso, 0]):
                m = f[iso & (f[:, 0] == v), 1]
                if m.size >= 3:
                    repeat.append(np.std(m, ddof=1))
            # structure of search - reference, pooled per chip over epochs: each star's
            # median over its epochs, after each image's offset (stars < 19 mag)
            base = clean & (refs[k, 3] < 19)
            dd = d.copy()
            for img in np.unique(f[:, 3]):
                w = f[:, 3] == img
                dd[w] -= np.median(d[w & base])
            for chip in np.unique(refs[:, 5]):
                rs = refs[:, 5] == chip
                nx, ny = refs[rs, 8][0], refs[rs, 9][0]
                w = clean & rs[k] & (refs[k, 3] > 14) & (refs[k, 3] < 20)
                ids, val, err = M.per_star_mean(f[w, 0], dd[w], f[w, 2], refs[k[w], 4])
                kk = np.array([pos[int(v)] for v in ids])
                for n in (3, 4):
                    st = M.structure(val, err, refs[kk, 6], refs[kk, 7], nx, ny, n)
                    if st:
                        r["structure_vs_reference"].append(
                            {"band": band, "chip": int(chip), "grid": n, **st}
                        )
                # the reference itself against truth, the same stars and cells
                rt = refs[kk, 3] - ref_true[idx[kk]]
                st = M.structure(
                    rt - np.median(rt),
                    np.hypot(refs[kk, 4], 0.01),
                    refs[kk, 6],
                    refs[kk, 7],
                    nx,
                    ny,
                    3,
                )
                if st:
                    r["reference_vs_truth"].append(
                        {
                            "band": band,
                            "chip": int(chip),
                            "grid": 3,
                            "offset": float(np.median(rt)),
                            **st,
                        }
                    )
            # recovery: periodic variables with amplitude >= 0.3 mag, by reference mag
            for kr in np.flatnonzero(matched & (kind[idx] == "periodic") & (amp[idx] >= 0.3)):
                s_ = idx[kr]
                w = (k == kr) & inner
                if not w.any():
                    continue
                mb = next((b for b in MAG_BINS if b[0] <= ref_true[s_] < b[1]), None)
                if mb is None:
                    continue
                rec_raw[mb][1] += 1
                rec_raw[mb][0] += ndet.get(int(refs[kr, 0]), 0) >= 2
                true_dm = star_magnitudes_at(stars, np.full(w.sum(), s_), f[w, 8], band)
                if np.sum(np.abs(true_dm - ref_true[s_]) >= 0.3) >= 2:  # sampled: visible
                    rec_sets[mb].append(sig[w])
            star_to_ref = {int(s_): int(refs[kk_, 0]) for kk_, s_ in enumerate(idx) if matched[kk_]}
            art_rep += sum(1 for s_ in art_ids if ndet.get(star_to_ref.get(s_, -1), 0) >= 2)
    sig_all = np.concatenate(sig_const)
    r["issue12"] = issue12_numbers(settings, truth, cfg, edge)
    r |= {
        "repeatability_rms_mag_median": float(np.median(repeat)),
        "repeatability_n_stars": len(repeat),
        "astrom_rms_all_matched_arcsec_median": float(np.median(rms_astro)),
        "astrom_bright_ref_vs_truth_pix_median": float(np.median(astro_pix)),
        "false_detection_fraction_median": float(np.median(false_default)),
        "false_detection_fraction_max": float(np.max(false_default)),
        "false_rate_per_point_vs_nsigma": M.false_rates(
            sig_all, np.ones(sig_all.size, bool), THRESHOLDS
        ),
        "n_clean_constant_points": int(sig_all.size),
        "false_fraction_per_image_vs_nsigma": {
            str(n): {
                "median": float(np.median([p[n] for p in per_image])),
                "max": float(np.max([p[n] for p in per_image])),
                "max_of_all_sources": float(np.max([p[("all", n)] for p in per_image])),
            }
            for n in THRESHOLDS
        },
        "false_repeated_stars_vs_nsigma": {
            str(n): v for n, v in M.recovery(star_sig, THRESHOLDS).items()
        },
        "recovery_sampled_vs_nsigma": {
            f"{lo}-{hi}": {str(n): v for n, v in M.recovery(rec_sets[(lo, hi)], THRESHOLDS).items()}
            for lo, hi in MAG_BINS
        },
        "recovery_raw_stored": {f"{lo}-{hi}": rec_raw[(lo, hi)] for lo, hi in MAG_BINS},
        "artefact_stars_repeated": art_rep,
        "artefact_stars": len(art_ids),
    }
    return r


CUTS = (6.0, 8.0, 10.0, 12.0, 15.0)
COMPLETENESS_BINS = ((16.0, 18.0), (18.0, 19.0), (19.0, 20.0), (20.0, 21.0), (21.0, 22.0))


def issue12_numbers(settings, truth, cfg, edge) -> dict:
    """The numbers issue 12 asks for, per filter: reference completeness per true-mag
    bin (true stars >= ``edge`` pix inside the first reference exposure's chips with a
    reference source within 0.4"), absolute astrometry of bright isolated constant
    reference stars (r < 18.5, outside the edge band, arcsec rms and 3σ-clipped rms,
    truth at the reference epoch), recall of clear variables (true change >= 20σ on >= 2
    reportable epochs, stored on >= 2), clean constant stars stored on >= 2 epochs, false
    detections per image, and the calibration orders used. The astrometry is given
    again without the stars the pipeline flags saturated or bleeding on the reference."""
    from astropy.coordinates import SkyCoord

    from photdb.db import connect
    from photdb.image import MaskBits
    from photdb.sim import star_magnitudes

    stars, ep, obs = truth.stars, truth.epochs, truth.observations
    kind = np.asarray(stars["kind"])
    iso = np.asarray(stars["neighbour_dist_arcsec"]) > 2.0
    tcoord = SkyCoord(np.asarray(stars["ra"]), np.asarray(stars["dec"]), unit="deg")
    out: dict = {}
    with connect("readonly", settings) as conn:
        ndet = dict(conn.execute("SELECT refsource_id, count(*) FROM galvarobjs GROUP BY 1"))
        orders = (
            conn.execute(
                "SELECT calib_order, count(*) FROM galimages"
                " WHERE calib_order IS NOT NULL GROUP BY 1"
            ).fetchall()
            if _has_column(conn, "galimages", "calib_order")
            else []
        )
        out["calib_orders"] = {str(o): n for o, n in orders}
        for band in cfg.filters:
            refs, f = _fetch(conn, band)
            rc = SkyCoord(refs[:, 1], refs[:, 2], unit="deg")
            # completeness: true stars on the first reference exposure of the band
            e0 = int(np.flatnonzero((ep["filter"] == band) & ep["is_reference"])[0])
            o = obs[obs["exposure"] == ep["exposure"][e0]]
            inside = (o["x"] >= edge) & (o["x"] <= cfg.nx - 1 - edge)
            inside &= (o["y"] >= edge) & (o["y"] <= cfg.ny - 1 - edge)
            o = o[inside & np.isfinite(np.asarray(o["mag"], float))]
            sid = np.asarray(o["star_id"])
            _, d, _ = tcoord[sid].match_to_catalog_sky(rc)
            mag0 = star_magnitudes(stars, float(ep["mjd"][e0]), band)
            comp = M.completeness(mag0[sid], d.arcsec < 0.4, COMPLETENESS_BINS)
            # astrometry of bright isolated constant reference stars, whole on the chip (at
            # the edge, x or y within the edge band, a star's PSF is cut and its centroid off)
            idx, sep, _ = rc.match_to_catalog_sky(tcoord)
            bright = (refs[:, 3] < 18.5) & (sep.arcsec < 1.0) & iso[idx] & (kind[idx] == "constant")
            bright &= _inner(refs[:, 6:10], edge)
            rms, rms_clip = M.clipped_rms(sep.arcsec[bright])
            # the same without stars flagged saturated or bleeding at their centre on the
            # reference (the pipeline's own flags; their cores are masked, so their
            # centroids come from the wings)
            sat = (refs[:, 10].astype(np.int64) & int(MaskBits.SATURATED | MaskBits.BLEED)) != 0
            rms_unsat, _ = M.clipped_rms(sep.arcsec[bright & ~sat])
            # recall of clear variables, constant stars stored on >= 2 epochs
            sel = ep["filter"] == band
            ref_true = np.median(
                [star_magnitudes(stars, m, band) for m in ep["mjd"][sel & ep["is_reference"]]],
                axis=0,
            )
            pos = {int(v): k for k, v in enumerate(refs[:, 0])}
            k = np.array([pos[int(v)] for v in f[:, 0]])
            matched = sep.arcsec < 0.3
            # points the pipeline reports at all: outside the variability edge band of the
            # search image and of the reference (nothing is reported there, by design)
            reportable = _inner(f[:, 4:8], edge) & _inner(refs[k][:, 6:10], edge)
            per_sig, per_det = [], []
            for kr in np.flatnonzero(matched & (kind[idx] == "periodic")):
                w = k == kr
                if not w.any():
                    continue
                s_ = idx[kr]
                true_dm = star_magnitudes_at(stars, np.full(w.sum(), s_), f[w, 8], band)
                true_sig = (true_dm - ref_true[s_]) / np.hypot(f[w, 2], refs[kr, 4])
                per_sig.append(np.where(reportable[w], true_sig, 0.0))
                per_det.append(ndet.get(int(refs[kr, 0]), 0))
            const = matched & (kind[idx] == "constant") & iso[idx]
            n_const2 = int(sum(ndet.get(int(v), 0) >= 2 for v in refs[const, 0]))
            # the cut: the same numbers at each threshold, from the points' significances
            sig = (f[:, 1] - refs[k, 3]) / np.hypot(f[:, 2], refs[k, 4])
            sig = np.where(reportable, sig, np.nan)
            per_obs = [sig[k == kr] for kr in np.flatnonzero(matched & (kind[idx] == "periodic"))
                       if (k == kr).any()]  # fmt: skip
            cmask = const[k] & np.isfinite(sig)
            cut = {}
            for n in CUTS:
                det = [int(np.sum(np.abs(v) >= n)) for v in per_obs]
                per_img = [np.mean(np.abs(sig[cmask & (f[:, 3] == g)]) >= n)
                           for g in np.unique(f[cmask, 3])]  # fmt: skip
                c2 = sum(np.sum(np.abs(sig[cmask & (k == kr)]) >= n) >= 2
                         for kr in np.unique(k[cmask]))  # fmt: skip
                cut[f"{n:g}"] = {
                    "recall": M.clear_recall(per_sig, det),
                    "false_per_image_max": float(np.max(per_img)),
                    "false_per_image_median": float(np.median(per_img)),
                    "constant_on_2_epochs": int(c2),
                }
            out[band] = {
                "completeness": comp,
                "astrometry_bright_rms_arcsec": rms,
                "astrometry_bright_rms_clipped_arcsec": rms_clip,
                "astrometry_n_stars": int(bright.sum()),
                "astrometry_bright_unsaturated_rms_arcsec": rms_unsat,
                "astrometry_n_saturated": int((bright & sat).sum()),
                "recall_clear_variables": M.clear_recall(per_sig, per_det),
                "constant_isolated_stored_on_2_epochs": [n_const2, int(const.sum())],
                "cut_vs_nsigma": cut,
            }
    return out


def _has_column(conn, table, column) -> bool:
    return bool(conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
        [table, column],
    ).fetchone())  # fmt: skip


def report_issue12(r: dict) -> None:
    """Print :func:`issue12_numbers`."""
    print("issue 12 numbers (per filter):")
    print(f"  calibration orders used (order: images): {r.get('calib_orders')}")
    for band, v in r.items():
        if band == "calib_orders":
            continue
        comp = ", ".join(
            f"{b} {a}/{t} ({a / max(t, 1):.1%})" for b, (a, t) in v["completeness"].items()
        )
        a, t = v["recall_clear_variables"]
        c2, ct = v["constant_isolated_stored_on_2_epochs"]
        print(f"  {band}: reference completeness {comp}")
        print(
            f"  {band}: bright-star absolute astrometry rms"
            f' {v["astrometry_bright_rms_arcsec"]:.4f}"'
            f' (3σ-clipped {v["astrometry_bright_rms_clipped_arcsec"]:.4f}",'
            f" {v['astrometry_n_stars']} stars; without the"
            f" {v.get('astrometry_n_saturated', 0)} flagged saturated"
            f' {v.get("astrometry_bright_unsaturated_rms_arcsec", float("nan")):.4f}");'
            " recall of >=20σ-on->=2-epoch variables"
            f" {a}/{t}; isolated constant stars stored on >=2 epochs {c2}/{ct}"
        )
        print(
            f"  {band}: cut vs nsigma (recall of clear variables, false per image median/max,"
            " isolated constant stars on >= 2 epochs): "
            + "; ".join(
                f"{n}σ {c['recall'][0]}/{c['recall'][1]}, {c['false_per_image_median']:.3%}"
                f"/{c['false_per_image_max']:.3%}, {c['constant_on_2_epochs']}"
                for n, c in v["cut_vs_nsigma"].items()
            )
        )


def star_magnitudes_at(stars, star_index, mjd, band):
    """True magnitude of star ``star_index[i]`` at ``mjd[i]``."""
    from photdb.sim import star_magnitudes

    out = np.empty(len(star_index))
    for m in np.unique(mjd):
        w = mjd == m
        out[w] = star_magnitudes(stars, m, band)[np.asarray(star_index)[w]]
    return out


def report(r: dict) -> None:
    """Print the numbers of :func:`analyse`."""
    print(
        f"repeatability (15.5 < mag < 18.5 constant isolated): median rms "
        f"{r['repeatability_rms_mag_median']:.4f} mag over {r['repeatability_n_stars']} stars"
    )
    print(
        "residual structure of search - reference (clean constant stars 14-20 mag, each"
        " star's weighted mean over epochs, per chip; p2p / noise-only p2p / chi2nu, mmag):"
    )
    for s in r["structure_vs_reference"]:
        print(
            f"  {s['band']} chip {s['chip']} {s['grid']}x{s['grid']}: {s['n_stars']} stars,"
            f" p2p {1e3 * s['p2p']:.1f} (noise alone {1e3 * s['p2p_noise_only']:.1f},"
            f" 95% {1e3 * s['p2p_noise_only_95']:.1f}), cell noise {1e3 * s['noise']:.1f},"
            f" chi2/nu {s['chi2nu']:.2f}"
        )
    print("the reference itself against truth (same stars; median offset, 3x3 cells):")
    for s in r["reference_vs_truth"]:
        print(
            f"  {s['band']} chip {s['chip']}: zero point {1e3 * s['offset']:+.0f} mmag,"
            f" p2p {1e3 * s['p2p']:.1f} mmag"
            f" (noise alone {1e3 * s['p2p_noise_only']:.1f}), chi2/nu {s['chi2nu']:.1f}"
        )
    print(
        f"astrometry: bright reference stars vs truth median "
        f"{r['astrom_bright_ref_vs_truth_pix_median']:.3f} pix; search-to-reference rms "
        f"(all matched) median {r['astrom_rms_all_matched_arcsec_median']:.3f} arcsec"
    )
    print(
        f"false detections stored (clean constant stars, default cut): median "
        f"{r['false_detection_fraction_median']:.4%} per image (max "
        f"{r['false_detection_fraction_max']:.4%})"
    )
    print(
        f"false rate per point vs threshold ({r['n_clean_constant_points']} clean constant"
        " points): "
        + ", ".join(f"{n:g} sigma {v:.2e}" for n, v in r["false_rate_per_point_vs_nsigma"].items())
    )
    print(
        "  per image (median / max): "
        + ", ".join(
            f"{float(n):g} sigma {v['median']:.2%} / {v['max']:.2%}"
            f" ({v['max_of_all_sources']:.2%} of all sources)"
            for n, v in r["false_fraction_per_image_vs_nsigma"].items()
        )
    )
    print(
        "  clean constant stars with >= 2 such points (false repeated variables): "
        + ", ".join(
            f"{float(n):g} sigma {a}/{t}"
            for n, (a, t) in r["false_repeated_stars_vs_nsigma"].items()
        )
    )
    print(
        "recovery of amplitude >= 0.3 mag variables seen >= 0.3 mag off on >= 2 epochs"
        " (>= 2 points beyond N sigma), by reference mag:"
    )
    for b, d in r["recovery_sampled_vs_nsigma"].items():
        print(f"  {b}: " + ", ".join(f"{float(n):g}σ {a}/{t}" for n, (a, t) in d.items()))
    print(
        "stored repeated detections (default cut) of all amplitude >= 0.3 variables: "
        + ", ".join(f"{b} {a}/{t}" for b, (a, t) in r["recovery_raw_stored"].items())
    )
    if "issue12" in r:
        report_issue12(r["issue12"])
    print(
        f"reference-artefact stars reported as repeated variables: "
        f"{r['artefact_stars_repeated']} (of {r['artefact_stars']} affected)"
    )


def analyse_new_sources(settings, truth) -> dict:
    """New-source (transient) recovery: the added reference sources against truth."""
    from photdb.db import connect

    with connect("readonly", settings) as conn:
        rows = conn.execute(
            "SELECT s.ra, s.dec FROM galnewsources n JOIN galsources s ON s.id = n.refsource_id"
        ).fetchall()
        refs = conn.execute(
            "SELECT s.ra, s.dec, (SELECT count(*) FROM galvarobjs v WHERE v.refsource_id = s.id)"
            " FROM galsources s WHERE s.ref_id IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM galnewsources n WHERE n.refsource_id = s.id)"
        ).fetchall()
    ra = np.array([r[0] for r in rows], float)
    dec = np.array([r[1] for r in rows], float)
    ref = np.array(refs, float).reshape(-1, 3)
    return M.new_source_recovery(truth, ra, dec, ref[:, 0], ref[:, 1], ref[:, 2] >= 2)


def report_new_sources(r: dict) -> None:
    """Print :func:`analyse_new_sources`."""
    if "new_sources" not in r:
        return
    n = r["new_sources"]
    print(
        f"new sources: {n['recovered']}/{n['eligible']} transients (< 21 mag on >= 2 epochs)"
        f" recovered: isolated {n['recovered_isolated']}/{n['isolated']} added as new sources,"
        f' blended with a reference source (< 1") {n["recovered_blended"]}/{n["blended"]}'
        f" as its repeated variable; {n['added']} added, {n['added_real']} real (transient"
        f" or variable), {n['added_false']} false; missed {n['missed']}"
    )


def _inner_arr(x, y, nx, ny, edge):
    """True where (x, y) is at least ``edge`` pix inside an nx x ny image."""
    return (x >= edge) & (y >= edge) & (x <= nx - 1 - edge) & (y <= ny - 1 - edge)


if __name__ == "__main__":
    main()
