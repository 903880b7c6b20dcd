"""What every run over many images shares: the per-image step, its one-line failure, the counts.

:func:`explain_image` is the one step behind every output: the explanation
folder (:mod:`.folder`), the relevance store written serially or by the Dask
tasks (:mod:`.distributed`), so all of them produce the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2

from .._utils.validation import as_float_image, display_path, opencv_message
from ..exceptions import BowlrpError
from .inputs import ImageInput


class SettingsMismatch(BowlrpError, ValueError):
    """An output folder holds results made with another model or other settings."""


@dataclass(kw_only=True)
class RunCounts:
    """What a run over many images did: the ids explained, skipped and failed, its status."""

    run_key: dict
    total: int = 0
    explained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    status: str = "running"
    seconds: float = 0.0


def explain_image(model, item: ImageInput, explain_kwargs: dict | None = None):
    """The per-image step every output shares: read one image and explain it.

    Used by :func:`explain_to_folder`, by the relevance store
    (:func:`bowlrp.runs.distributed.explain_into_store`) and by the Dask tasks of
    :mod:`bowlrp.runs.distributed`, so all of them produce the same numbers.

    Parameters
    ----------
    model : fitted Pipeline
    item : ImageInput
    explain_kwargs : dict
        Passed to ``model.explain`` (``target``, ``rules``, ``tile``, ``stride``);
        ``target`` may be a list of labels (one forward pass, one explanation each).

    Returns
    -------
    image : ndarray (H, W) float
    explanations : list of Explanation, one per target (one when ``target`` is not a list)
    """
    image = as_float_image(item.path)
    result = model.explain([image], **(explain_kwargs or {}))[0]
    return image, list(result) if isinstance(result, list) else [result]


def failure_message(item: ImageInput, exc: BaseException) -> str:
    """One line naming the image and what went wrong (OpenCV's errors made short)."""
    if isinstance(exc, cv2.error):
        message = f"OpenCV could not process the image ({opencv_message(exc)})"
    else:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not message.startswith(str(item.path)) and str(item.path) not in message:
        message = f"{display_path(item.path)}: {message}"
    return message
