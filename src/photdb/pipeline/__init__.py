"""The crowded-field pipeline for one image: typed inputs and results, no database."""

from photdb.pipeline.combine import build_stacked_reference, reduce_reference_set
from photdb.pipeline.config import NOMINAL_ZP, PipelineConfig, SelectionConfig
from photdb.pipeline.core import (
    STACK_CARD,
    PreparedImage,
    ReferenceResult,
    SearchResult,
    load_image,
    prepare_image,
    reduce_reference,
    reduce_search,
)

__all__ = [
    "NOMINAL_ZP",
    "STACK_CARD",
    "PipelineConfig",
    "PreparedImage",
    "ReferenceResult",
    "SearchResult",
    "SelectionConfig",
    "build_stacked_reference",
    "load_image",
    "prepare_image",
    "reduce_reference",
    "reduce_reference_set",
    "reduce_search",
]
