"""Per-image work in parallel (joblib) with a progress bar (tqdm)."""

from __future__ import annotations

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
