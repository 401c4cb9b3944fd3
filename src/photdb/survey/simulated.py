"""A simulated survey in the database: simulate, ingest, mark the references.

The one path from :mod:`photdb.sim` to a database that is ready for
:func:`photdb.survey.process.process`, shared by the demo, the science benchmark
and the tests.

Examples
--------
>>> survey = make_survey(Path("run/sim"), SimConfig(seed=1))  # doctest: +SKIP
>>> sets = load_survey(settings, survey)                       # doctest: +SKIP
>>> process(settings, config=PipelineConfig(astrometric_catalog=str(survey.catalog)))
... # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from photdb.archive.ingest import IngestReport, ingest_paths
from photdb.db.connection import connect
from photdb.errors import PhotdbError
from photdb.settings import Settings
from photdb.sim import SimConfig, SimTruth, simulate_survey
from photdb.survey.references import ReferenceSet, mark_references

__all__ = ["SimulatedSurvey", "load_survey", "make_survey"]


@dataclass(frozen=True)
class SimulatedSurvey:
    """Simulated exposures on disk and what is true about them.

    Attributes
    ----------
    simdir : Path
        The FITS files.
    truth : photdb.sim.SimTruth
        Stars, variables, epochs.
    catalog : Path
        The field's Gaia-like astrometric (and photometric) catalogue, ECSV: positions
        at 2016.0 with Gaia's proper-motion columns, plus survey-band magnitudes.
    gaia : Path
        The same stars as the Gaia archive delivers DR3 (``gaia_dr3.ecsv``; no
        survey-band photometry), see :meth:`photdb.sim.SimTruth.gaia_dr3`.
    reused : bool
        The files were already there (same configuration) and were not simulated again.
    """

    simdir: Path
    truth: SimTruth
    catalog: Path
    reused: bool = False
    gaia: Path | None = None

    @property
    def reference_files(self) -> list[str]:
        """Paths of the reference exposures."""
        ep = self.truth.epochs
        return [str(self.simdir / f) for f in ep["filename"][ep["is_reference"]]]


def make_survey(simdir: Path, config: SimConfig, *, reuse: bool = True) -> SimulatedSurvey:
    """Simulate ``config`` into ``simdir`` (or reuse a survey already simulated there).

    The truth tables go to ``simdir/truth``, the astrometric catalogue to
    ``simdir/astrometric_catalog.ecsv`` and its Gaia DR3 form to ``simdir/gaia_dr3.ecsv``.
    """
    simdir = Path(simdir).absolute()
    truth_dir = simdir / "truth"
    reused = reuse and (truth_dir / "config.json").is_file()
    if reused:
        truth = SimTruth.read(truth_dir)
    else:
        truth = simulate_survey(simdir, config)
        truth.write(truth_dir)
    catalog = simdir / "astrometric_catalog.ecsv"
    if not (reused and catalog.is_file()):
        truth.astrometric_catalog().write(catalog, overwrite=True)
    gaia = simdir / "gaia_dr3.ecsv"
    if not (reused and gaia.is_file()):
        truth.gaia_dr3().write(gaia, overwrite=True)
    return SimulatedSurvey(simdir, truth, catalog, reused, gaia)


def load_survey(
    settings: Settings, survey: SimulatedSurvey
) -> tuple[IngestReport, list[ReferenceSet]]:
    """Ingest the survey's files and mark its reference exposures (one set per filter).

    Raises
    ------
    photdb.errors.PhotdbError
        A file could not be ingested (the first messages).
    """
    report = ingest_paths(survey.simdir, settings=settings)
    if report.failed:
        raise PhotdbError("; ".join(report.messages[:3]))
    with connect("writer", settings) as conn:
        sets = mark_references(conn, survey.reference_files)
    return report, sets
