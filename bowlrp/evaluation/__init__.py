"""Measuring explanations: region perturbation with incremental re-encoding, AOPC,
descriptor replacement, occlusion, pixel flipping and the context ratio (docs/math.md §4);
the metrics of the evaluation suite (docs/evaluation.md): faithfulness (pixel flipping,
ROAD, IROF, faithfulness correlation, MoRF / LeRF), localisation, complexity and
robustness, each returning a :class:`MetricResult`; and the randomisation sanity checks
(:func:`randomisation_check`, a :class:`RandomisationResult`)."""

from ..datasets.voc_annotations import AnnotationError, read_voc_annotation
from .complexity import COMPLEXITY_METRICS, complexity, sparseness
from .context import context_ratio, context_ratios
from .descriptors import descriptor_replacement
from .explainers import METHOD_NAMES, explain_maps
from .faithfulness import area_between, faithfulness_correlation, irof, pixel_flipping, region_morf_lerf
from .incremental import IncrementalImage
from .localisation import (
    LOCALISATION_METRICS,
    as_masks,
    context_ratio_result,
    localisation_auc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from .perturbation import (
    aopc,
    block_grid,
    block_scores,
    occlusion_map,
    order_blocks,
    perturbation_curve,
    region_perturbation,
)
from .randomisation import (
    NAMED_EXPLAINERS,
    RandomisationResult,
    data_randomisation_check,
    model_layers,
    plot_randomisation,
    random_logit_check,
    randomisation_check,
    randomised_models,
)
from .results import MetricResult
from .road import noisy_linear_imputation, road
from .robustness import robustness
from .runner import EvaluationRun, EvaluationSettings, evaluate_images
from .scattered import set_pixels
from .similarity import SIMILARITY_NAMES, hog_similarity, similarity_function, spearman, spearman_signed, ssim
from .suite import FAMILIES, SuiteResult, SuiteSettings, evaluate_suite, read_masks
from .suite_report import write_suite_report

__all__ = [
    "FAMILIES",
    "SuiteResult",
    "SuiteSettings",
    "evaluate_suite",
    "read_masks",
    "write_suite_report",
    "COMPLEXITY_METRICS",
    "LOCALISATION_METRICS",
    "METHOD_NAMES",
    "NAMED_EXPLAINERS",
    "SIMILARITY_NAMES",
    "RandomisationResult",
    "data_randomisation_check",
    "hog_similarity",
    "model_layers",
    "plot_randomisation",
    "random_logit_check",
    "randomisation_check",
    "randomised_models",
    "similarity_function",
    "spearman",
    "spearman_signed",
    "ssim",
    "AnnotationError",
    "MetricResult",
    "area_between",
    "as_masks",
    "complexity",
    "context_ratio_result",
    "explain_maps",
    "faithfulness_correlation",
    "irof",
    "localisation_auc",
    "noisy_linear_imputation",
    "pixel_flipping",
    "pointing_game",
    "region_morf_lerf",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "robustness",
    "set_pixels",
    "sparseness",
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
