"""Rich tables for the terminal: how the CLI shows the library's astropy Tables."""

from __future__ import annotations

import json
import math
import re
import sys

import numpy as np
from rich.table import Table as RichTable

from photdb.bands import band_family
from photdb.cli.app import console
from photdb.lightcurve import band_label

__all__ = [
    "candidates_table",
    "is_empty",
    "outliers_table",
    "print_json",
    "repeat_table",
    "show_table",
]


def repeat_table(counts) -> RichTable:
    """The notebook's "Repeated Detections / Number of Objects" table."""
    t = RichTable(title="variable detections per reference source")
    t.add_column("Repeated Detections", justify="right")
    t.add_column("Number of Objects", justify="right")
    for num, count in zip(counts["num"], counts["count"], strict=True):
        t.add_row(str(num), str(count))
    return t


def _epoch_span(epochs) -> str:
    """'59301.34-59340.21' for the epochs of a candidate's detections."""
    values = sorted(float(v) for v in re.findall(r"\d+(?:\.\d*)?", str(epochs)))
    if not values:
        return "-"
    return f"{values[0]:.2f}" if len(values) == 1 else f"{values[0]:.2f}-{values[-1]:.2f}"


def candidates_table(cands, matches=None) -> RichTable:
    """Variable candidates, worst first."""
    t = RichTable(title="variable candidates (worst first)")
    for name in ("refid", "filter", "ra", "dec", "ref mag", "#dets", "χ²/ν", "ampl",
                 "detected (MJD)"):  # fmt: skip
        t.add_column(name, justify="left" if name in ("filter",) else "right", no_wrap=True)
    if matches is not None:
        t.add_column("other filters", min_width=12)
    for r in cands:
        new = "added" in cands.colnames and bool(r["added"])  # a new source (transient)
        ref_mag = f"{r['ref_mag']:.2f}" if np.isfinite(r["ref_mag"]) else "-"
        row = [str(r["refsource_id"]) + (" new" if new else ""), band_label(str(r["filter"])),
               f"{r['ra']:.5f}", f"{r['dec']:.5f}",
               ref_mag, str(r["ndet"]), f"{r['chi2nu']:.1f}",
               f"{r['amplitude']:.2f}", _epoch_span(r["epochs"])]  # fmt: skip
        if matches is not None:
            sel = matches[matches["refsource_id"] == r["refsource_id"]]
            row.append(" ".join(f"{band_family(str(m['match_filter']))}:{m['match_id']}"
                                f"({m['match_ndet']})"
                                for m in sel) or "-")  # fmt: skip
        t.add_row(*row)
    return t


def outliers_table(outliers) -> RichTable:
    """Reference outliers: the reference is off, not the star (never variable candidates)."""
    t = RichTable(title="reference outliers (search epochs agree, the reference differs)")
    for name in ("refid", "filter", "ra", "dec", "ref mag", "search mean", "offset", "σ",
                 "epochs", "#dets", "offset vs other refs"):  # fmt: skip
        t.add_column(name, justify="left" if name == "filter" else "right", no_wrap=True)
    for r in outliers:
        others = (f"{r['remeasured_offset']:+.3f} ({r['n_members']})"
                  if r["n_members"] > 0 else "-")  # fmt: skip
        t.add_row(str(r["refsource_id"]), band_label(str(r["filter"])), f"{r['ra']:.5f}",
                  f"{r['dec']:.5f}", f"{r['ref_mag']:.3f}", f"{r['mean_mag']:.3f}",
                  f"{r['ref_offset']:+.3f}", f"{r['ref_offset_sigma']:.1f}",
                  str(r["n_epochs"]), str(r["n_det"]), others)  # fmt: skip
    return t


def is_empty(column) -> bool:
    """True when every value of a (masked) column is missing."""
    return len(column) > 0 and bool(np.all(np.ma.getmaskarray(column)))


def show_table(table, title: str, *, digits: dict[str, int] | None = None) -> None:
    """Print an astropy Table as a rich table; masked and NaN cells are blank."""
    digits = digits or {}
    out = RichTable(title=title, title_justify="left")
    for name in table.colnames:
        out.add_column(name, justify="right" if table[name].dtype.kind in "fiub" else "left")
    for row in table:
        cells = []
        for name in table.colnames:
            value = row[name]
            if value is np.ma.masked or (isinstance(value, float) and np.isnan(value)):
                cells.append("")
            elif name in digits:
                cells.append(f"{float(value):.{digits[name]}f}")
            else:
                cells.append(str(value))
        out.add_row(*cells)
    console.print(out)


def _jsonable(value):
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value if isinstance(value, str | int | float | bool) else str(value)


def print_json(table, *, meta=None) -> None:
    """Print ``{"meta": ..., "columns": {name: unit}, "rows": [{...}, ...]}`` on stdout;
    masked, NaN and infinite values are null."""
    rows = [{n: _jsonable(row[n]) for n in table.colnames} for row in table]
    units = {n: (str(table[n].unit) if getattr(table[n], "unit", None) is not None else None)
             for n in table.colnames}  # fmt: skip
    doc = {"meta": _jsonable(dict(meta or {})), "columns": units, "rows": rows}
    sys.stdout.write(json.dumps(doc, indent=1, allow_nan=False) + "\n")
