"""Per-image work in parallel (joblib) with a progress bar (tqdm), bounded by the machine."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from joblib import Parallel, delayed
from tqdm.auto import tqdm


def map_images(func: Callable, items: Sequence, n_jobs: int | None, desc: str, verbose: bool) -> list:
    """``[func(x) for x in items]``, in parallel when ``n_jobs`` asks, with progress."""
    show = verbose and len(items) > 1
    if n_jobs in (None, 1) or len(items) < 2:
        return [func(x) for x in tqdm(items, desc=desc, disable=not show, leave=False)]
    results = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(func)(x) for x in items)
    return list(tqdm(results, total=len(items), desc=desc, disable=not show, leave=False))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def bound_n_jobs(estimator, limit: int | None = None) -> dict[str, object]:
    """Cap every nested ``n_jobs`` parameter of ``estimator`` at ``limit`` (default: the usable cores).

    A model file records the ``n_jobs`` of the machine it was trained on; on another
    machine it must not decide how many processes a run starts. ``-1`` (all cores) and
    values above the limit become the limit; ``None`` and smaller values stay. Changes the
    estimator in place (``set_params``) and returns the parameters it changed, old values.
    """
    limit = usable_cores() if limit is None else max(1, int(limit))
    changed = {}
    for name, value in estimator.get_params(deep=True).items():
        if (name == "n_jobs" or name.endswith("__n_jobs")) and isinstance(value, int) and value is not True:
            if value < 0 or value > limit:
                changed[name] = value
    if changed:
        estimator.set_params(**{name: limit for name in changed})
    return changed
