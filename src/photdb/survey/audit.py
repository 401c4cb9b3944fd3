"""The audit row (``galimages``) of a processed image, from its pipeline result.

Used by :mod:`photdb.survey.process` inside each image's transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from photdb.pipeline import ReferenceResult, SearchResult
from photdb.survey.plan import RefTask, SearchTask
from photdb.survey.store import ImageAudit

__all__ = ["reference_audit", "search_audit"]


def _wcs_text(wcs: Any) -> str | None:
    return None if wcs is None else wcs.to_header(relax=True).tostring(sep="\n", padding=False)


def reference_audit(res: ReferenceResult, task: RefTask, n_saved: int, timings: dict) -> ImageAudit:
    """The audit row of a reference chip (``galimages``)."""
    st = res.stats
    details = st.to_dict() | {"role": f"reference-{task.kind}", "timings_s": timings,
                              "members": [m[0] for m in task.members]}  # fmt: skip
    return ImageAudit(
        status="done", processed_at=datetime.now(UTC), provenance_id=st.provenance_id,
        code_version=st.version, zp=st.zp, seeing_fwhm_arcsec=st.seeing_fwhm_arcsec,
        sky_level=st.sky_level, n_detected=st.n_detected, n_saved=n_saved, n_forced=0,
        n_variables=0, wcs_header=_wcs_text(res.wcs), details=details,
    )  # fmt: skip


def search_audit(res: SearchResult, task: SearchTask, n_saved: int, n_var: int,
                  timings: dict) -> ImageAudit:  # fmt: skip
    """The audit row of a search chip (``galimages``)."""
    st, cal, ast = res.stats, res.calibration, res.astrometry
    details = st.to_dict() | {"role": "search", "timings_s": timings,
                              "calibration": cal.to_dict()}  # fmt: skip
    return ImageAudit(
        status="done", processed_at=datetime.now(UTC), provenance_id=st.provenance_id,
        code_version=st.version, reference=task.reference_id, zp=cal.zp,
        zp_scatter=cal.zp_scatter, cheb_coeffs=np.asarray(cal.cheb_coeffs, float).tolist(),
        calib_order=cal.order,
        chi2nu=cal.chi2nu_before, error_factor=cal.error_factor,
        astrom_rms_arcsec=ast.rms_arcsec, astrom_nmatch=int(ast.n_matched),
        seeing_fwhm_arcsec=st.seeing_fwhm_arcsec, sky_level=st.sky_level,
        n_detected=st.n_detected, n_forced=st.n_forced, n_saved=n_saved, n_variables=n_var,
        wcs_header=_wcs_text(res.wcs), details=details,
    )  # fmt: skip
