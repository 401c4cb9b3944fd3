"""The science numbers of the search images' calibration detectors, side by side.

Reads ``results/science_run_<detector>.json`` written by
``science_run.py --detector <detector>`` (same simulated survey: the simulator is
seeded) and prints one table: repeatability, astrometric rms, false rates, variable
recovery, artefact stars.  ``--run`` runs the missing ones first.

    python benchmarks/science_run.py --nx 768 --ny 384 --epochs 5 -j 1 --detector fast
    python benchmarks/science_run.py --nx 768 --ny 384 --epochs 5 -j 1 --detector crowdsource
    python benchmarks/science_compare.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
DETECTORS = ("fast", "crowdsource")


def _rows(r: dict) -> list[tuple[str, str]]:
    out = [
        ("chips processed / failed", f"{r['survey']['chips_processed']} / {r['survey']['failed']}"),
        ("wall seconds (whole run, references included)", f"{r['survey']['seconds']:.0f}"),
        ("repeatability, median rms (mag)", f"{r['repeatability_rms_mag_median']:.4f}"),
        ("astrometry, search-to-reference rms (arcsec)",
         f"{r['astrom_rms_all_matched_arcsec_median']:.4f}"),
        ("astrometry, bright reference vs truth (pix)",
         f"{r['astrom_bright_ref_vs_truth_pix_median']:.3f}"),
    ]  # fmt: skip
    for n in ("6.0", "8.0", "15.0"):
        out.append((f"false rate per point at {n[:-2]} sigma",
                    f"{r['false_rate_per_point_vs_nsigma'][n]:.2e}"))  # fmt: skip
        k, tot = r["false_repeated_stars_vs_nsigma"][n]
        out.append((f"false repeated variables at {n[:-2]} sigma", f"{k}/{tot}"))
    for mags, by_n in r["recovery_sampled_vs_nsigma"].items():
        cells = ", ".join(f"{float(n):g}σ {a}/{b}" for n, (a, b) in by_n.items())
        out.append((f"recovery {mags} mag", cells))
    out.append(("artefact stars as repeated variables",
                f"{r['artefact_stars_repeated']}/{r['artefact_stars']}"))  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run science_run.py where results miss")
    ap.add_argument("science_run_args", nargs="*", help="passed to science_run.py with --run")
    args = ap.parse_args()
    results = {}
    for det in DETECTORS:
        path = HERE / "results" / f"science_run_{det}.json"
        if not path.exists() and args.run:
            cmd = [sys.executable, str(HERE / "science_run.py"), "--detector", det]
            subprocess.run(cmd + args.science_run_args, check=True)
        if not path.exists():
            sys.exit(f"{path}: missing; run science_run.py --detector {det} (or --run)")
        results[det] = json.loads(path.read_text())
    sizes = {json.dumps(r["survey"] | {"seconds": 0, "detector": ""}) for r in results.values()}
    if len(sizes) > 1:
        print("warning: the runs simulated different surveys", file=sys.stderr)
    table = {det: dict(_rows(r)) for det, r in results.items()}
    names = list(table[DETECTORS[0]])
    width = max(len(n) for n in names)
    cols = [max(len(det), *(len(table[det][n]) for n in names)) for det in DETECTORS]
    pairs = list(zip(DETECTORS, cols, strict=True))
    print(f"{'':{width}s}  " + "  ".join(f"{d:{c}s}" for d, c in pairs))
    for n in names:
        print(f"{n:{width}s}  " + "  ".join(f"{table[d][n]:{c}s}" for d, c in pairs))


if __name__ == "__main__":
    main()
