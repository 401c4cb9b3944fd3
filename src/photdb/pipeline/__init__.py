"""The crowded-field pipeline for one image: typed inputs and results, no database.

The package follows the pipeline notebook:

* :func:`read_chip` (:mod:`.io`, the only file I/O) reads one chip;
* :func:`prepare_image` (:mod:`.prepare`): mask, variance, Bijaoui sky in 20 x 10
  tiles + smooth surface, crowdsource detection;
* :func:`reduce_reference` (:mod:`.reference`): the full crowdsource catalogue of a
  reference image, optionally tied to an astrometric (and photometric) catalogue;
* :func:`reduce_search` (:mod:`.search`): forced photometry of a search image at
  the reference positions, pedestal, zero point + 4th-order Chebyshev Δmag(x, y),
  0.01 mag floor and χ²/ν factor, the 15σ cut;
* :func:`reduce_reference_set` and :func:`build_stacked_reference` (:mod:`.combine`):
  several references per filter, combined per source or stacked per pixel (the
  notebook's remedies for an artefact on its single reference).

Results are the typed dataclasses of :mod:`.results`; settings are
:class:`PipelineConfig` (:mod:`.config`). Nothing here reads or writes a database.
"""

from photdb.pipeline.combine import build_stacked_reference, reduce_reference_set
from photdb.pipeline.config import NOMINAL_ZP, PipelineConfig, SelectionConfig, load_config
from photdb.pipeline.io import STACK_CARD, read_chip, write_stack
from photdb.pipeline.prepare import PreparedImage, prepare_image
from photdb.pipeline.reference import reduce_reference
from photdb.pipeline.results import (
    ImageStats,
    ReferenceResult,
    ReferenceStats,
    SearchResult,
    SearchStats,
)
from photdb.pipeline.search import reduce_search

__all__ = [
    "NOMINAL_ZP",
    "STACK_CARD",
    "ImageStats",
    "PipelineConfig",
    "PreparedImage",
    "ReferenceResult",
    "ReferenceStats",
    "SearchResult",
    "SearchStats",
    "SelectionConfig",
    "build_stacked_reference",
    "load_config",
    "prepare_image",
    "read_chip",
    "reduce_reference",
    "reduce_reference_set",
    "reduce_search",
    "write_stack",
]
