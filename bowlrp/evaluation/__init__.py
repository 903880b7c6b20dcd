"""Measuring explanations: region perturbation with incremental re-encoding, AOPC,
descriptor replacement, occlusion, pixel flipping and the context ratio (docs/math.md §4)."""

from ..datasets.voc_annotations import AnnotationError, read_voc_annotation
from .context import context_ratio, context_ratios
from .descriptors import descriptor_replacement
from .incremental import IncrementalImage
from .perturbation import (
    aopc,
    block_grid,
    block_scores,
    occlusion_map,
    order_blocks,
    perturbation_curve,
    region_perturbation,
)
from .runner import EvaluationRun, EvaluationSettings, evaluate_images

__all__ = [
    "AnnotationError",
    "EvaluationRun",
    "EvaluationSettings",
    "IncrementalImage",
    "aopc",
    "block_grid",
    "block_scores",
    "context_ratio",
    "context_ratios",
    "descriptor_replacement",
    "evaluate_images",
    "occlusion_map",
    "order_blocks",
    "perturbation_curve",
    "read_voc_annotation",
    "region_perturbation",
]
