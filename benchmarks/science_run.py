"""Science numbers of a bigger simulated run through the database, against truth.

Simulates a survey (default: 2 filters, 2 chips of 1024 x 512, 3 references and
6 epochs per filter), ingests it into a scratch embedded database, marks the
three references per filter (a reference *set*: the artefact lives on one of
them), processes with ``-j``, then prints:

* repeatability: rms over epochs of corrected magnitudes of bright unsaturated
  constant isolated stars (median over stars), mag;
* residual structure: rms of the per-cell median of (mag - true mag - per-image
  offset) on a 4 x 4 grid of cells, per image (median), mag;
* astrometric rms of the refined WCS (galimages.astrom_rms_arcsec, median);
* recovery: periodic variables with amplitude >= 0.3 mag, >= 0.3 mag off their
  reference on >= 2 epochs, 15 < mag < 20, isolated: fraction with >= 2 detections;
* false detections: galvarobjs rows on constant stars (not near a defect)
  per image, as a fraction of saved sources;
* artefact: reference-artefact stars reported as repeated (>= 2) variables.

    python benchmarks/science_run.py [--nx 1024 --ny 512 --epochs 6 -j 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nx", type=int, default=1024)
    ap.add_argument("--ny", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--outdir", type=Path, default=None)
    args = ap.parse_args()
    out = args.outdir or Path(tempfile.mkdtemp(prefix="photdb-science-"))
    os.environ["PHOTDB_HOME"] = str(out / "home")
    os.environ.pop("DB_HOST", None)

    from astropy.coordinates import SkyCoord

    from photdb.archive.ingest import ingest_paths
    from photdb.config import load_settings
    from photdb.db import connect
    from photdb.db.connection import resolve
    from photdb.process import process
    from photdb.references import mark_references
    from photdb.sim import SimConfig, simulate_survey, star_magnitudes

    cfg = SimConfig(
        nx=args.nx,
        ny=args.ny,
        n_chips=2,
        filters=("g", "r"),
        n_epochs=args.epochs,
        n_references=3,
        seed=11,
    )
    t0 = time.perf_counter()
    truth = simulate_survey(out / "sim", cfg)
    settings = resolve(load_settings())
    ingest_paths(out / "sim", settings=settings)
    ep = truth.epochs
    with connect("writer", settings) as conn:
        mark_references(conn, [str(out / "sim" / f) for f in ep["filename"][ep["is_reference"]]])
    rep = process(settings, jobs=args.jobs)
    print(
        f"{len(rep.done)} chips processed, {len(rep.failed)} failed, "
        f"{time.perf_counter() - t0:.0f} s total"
    )
    for o in rep.failed:
        print("  failed:", o.galimage_id, o.message)

    stars = truth.stars
    tcoord = SkyCoord(np.asarray(stars["ra"]), np.asarray(stars["dec"]), unit="deg")
    kind = np.asarray(stars["kind"])
    isolated = np.asarray(stars["neighbour_dist_arcsec"]) > 2.0
    art_ids = set()
    for s in truth.artefacts["star_ids"]:
        art_ids |= {int(v) for v in str(s).split(",") if v.strip()}
    with connect("readonly", settings) as conn:
        ndet = dict(conn.execute("SELECT refsource_id, count(*) FROM galvarobjs GROUP BY 1"))
        rms_astro = [
            r[0]
            for r in conn.execute(
                "SELECT astrom_rms_arcsec FROM galimages WHERE astrom_rms_arcsec IS NOT NULL"
            )
        ]
        repeat, resid, recov, false_frac, art_rep = [], [], [0, 0], [], 0
        for band in cfg.filters:
            refs = np.array(
                conn.execute(
                    "SELECT s.id, s.ra, s.dec, s.mag, i.id FROM galsources s JOIN galimages i"
                    " ON s.galimage_id = i.id JOIN galexposures e ON i.galexposure_id = e.id"
                    " WHERE s.ref_id IS NULL AND e.filter LIKE %s",
                    [band + "%"],
                ).fetchall(),
                dtype=float,
            )
            rc = SkyCoord(refs[:, 1], refs[:, 2], unit="deg")
            i0, s0, _ = rc.match_to_catalog_sky(tcoord)
            # the reference catalogue is on the header WCS of its image (~1" off in the
            # simulation): remove the median offset to truth before matching at 0.3"
            near = (s0.arcsec < 2.0) & (refs[:, 3] < 19)
            off_ra = np.median(refs[near, 1] - np.asarray(stars["ra"])[i0[near]])
            off_dec = np.median(refs[near, 2] - np.asarray(stars["dec"])[i0[near]])
            print(
                f"{band}: reference catalogue offset to truth "
                f'{off_ra * 3600 * np.cos(np.radians(refs[0, 2])):.2f}" RA, '
                f'{off_dec * 3600:.2f}" Dec'
            )
            rc = SkyCoord(refs[:, 1] - off_ra, refs[:, 2] - off_dec, unit="deg")
            idx, sep, _ = rc.match_to_catalog_sky(tcoord)  # ref source -> true star
            sel = ep["filter"] == band
            ref_true = np.median(
                [star_magnitudes(stars, m, band) for m in ep["mjd"][sel & ep["is_reference"]]],
                axis=0,
            )
            good = (sep.arcsec < 0.3) & (kind[idx] == "constant") & isolated[idx]
            forced = conn.execute(
                "SELECT s.ref_id, s.mag, e.mjd, s.galimage_id, s.x, s.y, i.naxis1, i.naxis2"
                " FROM galsources s JOIN galimages i ON s.galimage_id = i.id"
                " JOIN galexposures e ON i.galexposure_id = e.id"
                " WHERE s.ref_id IS NOT NULL AND e.filter LIKE %s",
                [band + "%"],
            ).fetchall()
            f = np.array(forced, dtype=float)
            pos = {int(r): k for k, r in enumerate(refs[:, 0])}
            k = np.array([pos[int(r)] for r in f[:, 0]])
            star = idx[k]
            true_now = np.array(
                [
                    star_magnitudes(stars[[s]], m, band)[0]
                    for s, m in zip(star, f[:, 2], strict=True)
                ]
            )
            d = f[:, 1] - true_now
            ok = good[k] & (ref_true[star] > 15.5) & (ref_true[star] < 18.5)
            for r in np.unique(f[ok, 0]):
                m = f[ok & (f[:, 0] == r), 1]
                if m.size >= 3:
                    repeat.append(np.std(m, ddof=1))
            for img in np.unique(f[:, 3]):
                w = ok & (f[:, 3] == img) & np.isfinite(d)
                if w.sum() < 50:
                    continue
                dd = d[w] - np.median(d[w])
                cx = np.minimum((f[w, 4] / f[w, 6] * 4).astype(int), 3)
                cy = np.minimum((f[w, 5] / f[w, 7] * 4).astype(int), 3)
                cells = [
                    np.median(dd[(cx == a) & (cy == b)])
                    for a in range(4)
                    for b in range(4)
                    if ((cx == a) & (cy == b)).sum() >= 5
                ]
                resid.append(np.std(cells))
                const = np.unique(f[w, 0])
                nfalse = sum(
                    1
                    for r in const
                    if ndet.get(int(r), 0)
                    and conn.execute(
                        "SELECT 1 FROM galvarobjs WHERE refsource_id = %s AND galimage_id = %s",
                        [int(r), int(img)],
                    ).fetchone()
                )
                false_frac.append(nfalse / max(w.sum(), 1))
            srch_mjd = ep["mjd"][sel & ~ep["is_reference"]]
            dm = np.array([star_magnitudes(stars, m, band) for m in srch_mjd]) - ref_true
            big = (np.abs(dm) >= 0.3).sum(axis=0) >= 2
            cand = (
                (kind == "periodic")
                & (np.asarray(stars["amplitude"]) >= 0.3)
                & big
                & isolated
                & (ref_true > 15)
                & (ref_true < 20)
            )
            star_to_ref = {}
            for kk, (s, dist) in enumerate(zip(idx, sep.arcsec, strict=True)):
                if dist < 0.3:
                    star_to_ref[int(s)] = int(refs[kk, 0])
            for s in np.flatnonzero(cand):
                if s in star_to_ref:
                    recov[1] += 1
                    recov[0] += ndet.get(star_to_ref[s], 0) >= 2
            art_rep += sum(1 for s in art_ids if ndet.get(star_to_ref.get(s, -1), 0) >= 2)
    print(
        f"repeatability (15.5 < mag < 18.5 constant isolated): median rms "
        f"{np.median(repeat):.4f} mag over {len(repeat)} stars"
    )
    print(
        f"residual Δmag structure (4x4 cells): median rms {np.median(resid):.4f} mag "
        f"over {len(resid)} images"
    )
    print(
        f"astrometric rms: median {np.median(rms_astro):.4f} arcsec "
        f"({np.median(rms_astro) / cfg.pixscale_arcsec:.3f} pix)"
    )
    print(
        f"recovery of >= 0.3 mag variables: {recov[0]}/{recov[1]} = "
        f"{recov[0] / max(recov[1], 1):.1%} with >= 2 detections"
    )
    print(
        f"false detections on constant stars: median {np.median(false_frac):.4%} of sources "
        f"per image (max {np.max(false_frac):.4%})"
    )
    print(
        f"reference-artefact stars reported as repeated variables: {art_rep} "
        f"(of {len(art_ids)} affected)"
    )


if __name__ == "__main__":
    main()
