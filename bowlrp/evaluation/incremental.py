"""Incremental re-encoding: change a block of pixels (or some descriptors), update f(x).

Only the descriptors whose influence region overlaps a changed block are
recomputed (:meth:`describe_at`), and the pooled statistics are updated by
subtracting their old contributions and adding the new ones (sum and p-means
pooling are sums over descriptors); max pooling is re-pooled from the stored
codes of all descriptors, which is exact and needs no extraction. For a
linear classifier the score is ``b + w . x`` kept up to date from per-chunk
sums of the changed pooled dimensions (:class:`~bowlrp.encoding.pooling.LinearScore`),
other classifiers get the normalised vector. A step is small work and runs in
one thread. The result equals a full recomputation
(``IncrementalImage.full_score``) to rounding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
from numba import njit

from .._utils.threads import single_threaded
from .._utils.validation import as_float_image
from ..encoding.pooling import LinearScore


@njit(cache=True)
def touched(bounds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Indices of the descriptors whose influence box contains a pixel of ``mask``.

    Parameters
    ----------
    bounds : ndarray (4, N)
        ``lo_y, hi_y, lo_x, hi_x`` of each descriptor (inclusive, in pixels, may be
        fractional or outside the image), as :attr:`ChannelState.bounds`.
    mask : ndarray (H, W) bool

    Returns
    -------
    ndarray (k,) int64, ascending

    Notes
    -----
    Pixel ``(r, c)`` is inside the box when ``lo_y <= r <= hi_y`` and ``lo_x <= c <= hi_x``
    (the test of ``IncrementalImage.affected``), i.e. rows ``ceil(lo_y) .. floor(hi_y)``.
    The count of mask pixels in that range comes from the summed-area table ``S``:
    ``S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]`` (end-exclusive ``r1, c1``).
    """
    H, W = mask.shape
    S = np.zeros((H + 1, W + 1), dtype=np.int64)
    S[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    lo_y, hi_y, lo_x, hi_x = bounds
    r0 = np.clip(np.ceil(lo_y), 0, H).astype(np.int64)
    r1 = np.clip(np.floor(hi_y) + 1, 0, H).astype(np.int64)
    c0 = np.clip(np.ceil(lo_x), 0, W).astype(np.int64)
    c1 = np.clip(np.floor(hi_x) + 1, 0, W).astype(np.int64)
    r1, c1 = np.maximum(r1, r0), np.maximum(c1, c0)
    count = S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]
    return np.flatnonzero(count > 0).astype(np.int64)


def _meeting(lo_y, hi_y, lo_x, hi_x, top, bottom, left, right):
    """Indices ``l`` whose box ``[lo_y, hi_y] x [lo_x, hi_x]`` meets ``[top, bottom] x [left, right]``."""
    hit = np.empty(lo_y.shape[0], dtype=np.int64)
    n = 0
    for l in range(lo_y.shape[0]):
        if hi_y[l] >= top and lo_y[l] <= bottom and hi_x[l] >= left and lo_x[l] <= right:
            hit[n] = l
            n += 1
    return hit[:n].copy()


@dataclass
class ChannelState:
    """Current descriptors, codes and pooled statistics of one channel."""

    extractor: object
    encoder: object
    descriptors: object
    cell_ids: np.ndarray
    counts: np.ndarray
    codes: dict
    pooled: np.ndarray
    reach: np.ndarray  # (N,) influence radius of each descriptor
    support: np.ndarray  # contributing descriptors per (cell, word / component)
    bounds: np.ndarray = field(init=False, repr=False)  # (4, N) influence boxes

    def __post_init__(self):
        cy, cx = self.descriptors.centers[:, 0], self.descriptors.centers[:, 1]
        self.bounds = np.stack([cy - self.reach, cy + self.reach, cx - self.reach, cx + self.reach])

    def pooled_after(self, rows: np.ndarray, new_codes: dict):
        """(pooled statistics, support counts) if descriptors ``rows`` had ``new_codes``.

        Additive pooling: ``pooled + (new - old)`` (one pass, :meth:`pooled_delta`), and the groups whose last
        contribution was removed are set to exactly zero (no rounding residue,
        which a signed square root would amplify). Max pooling: re-pooled from
        the stored codes. The state itself is not changed.
        """
        enc = self.encoder
        if not enc.additive_pooling:
            codes = enc.put_codes(self.codes, rows, new_codes)
            return enc.pooled_sums(codes, self.cell_ids, self.counts), self.support
        old_codes = enc.take_codes(self.codes, rows)
        cells = self.cell_ids[rows]
        delta = enc.pooled_delta(old_codes, new_codes, cells, self.counts)
        support = self.support - enc.support_counts(old_codes, cells) + enc.support_counts(new_codes, cells)
        pooled = enc.clear_unsupported(self.pooled + delta, support)
        return pooled, support

    def copy(self) -> ChannelState:
        """A copy whose updates leave this state alone (geometry and cells are shared)."""
        descriptors = copy.copy(self.descriptors)
        descriptors.data = self.descriptors.data.copy()
        codes = {k: v.copy() for k, v in self.codes.items()}
        return replace(
            self, descriptors=descriptors, codes=codes, pooled=self.pooled.copy(), support=self.support.copy()
        )

    def commit(self, rows: np.ndarray, new_data: np.ndarray, new_codes: dict, pooled, support):
        self.codes = self.encoder.put_codes(self.codes, rows, new_codes, inplace=True)
        self.descriptors.data[rows] = new_data
        self.pooled = pooled
        self.support = support


class IncrementalImage:
    """An image under perturbation whose score is kept up to date incrementally.

    Parameters
    ----------
    pipeline : fitted Pipeline
    image : array or path
    target : class label or None (the predicted class)

    Attributes
    ----------
    image : ndarray, the current (perturbed) image, float64 in [0, 1]
    score : float, the current ``f(x)`` of the target (sign-adjusted for binary negatives)
    target : the class label explained; ``requested_target`` is the ``target`` given
    """

    def __init__(self, pipeline, image, target=None):
        self.pipeline = pipeline
        self.image = as_float_image(image).copy()
        trace = pipeline.forward_one(self.image)
        clf = pipeline.classifier_
        self.task, self.sign = clf.task_and_sign(trace.features, target)
        self.target = clf.target_label(self.task, self.sign)
        self.requested_target = target
        self.channels = []
        for u, ct in enumerate(trace.channels):
            ex = pipeline.extractors_[u]
            d = ct.descriptors
            scales, which = np.unique(d.scales, return_inverse=True)  # a few bin sizes
            reach = np.array([ex.influence_radius(s) for s in scales])[which.ravel()]
            codes = {k: v for k, v in ct.encoding.codes.items() if k != "reached"}
            enc = pipeline.encoders_[u]
            self.channels.append(
                ChannelState(
                    ex,
                    enc,
                    d,
                    ct.encoding.cell_ids,
                    ct.encoding.cell_counts,
                    codes,
                    ct.encoding.pooled.copy(),
                    reach,
                    enc.support_counts(codes, ct.encoding.cell_ids),
                )
            )
        self._linear = self._linear_scores()
        self.score = self._score_from([c.pooled for c in self.channels])[0]
        self.n_recomputed = 0

    def copy(self) -> IncrementalImage:
        """An independent copy of the current state, e.g. the start of several curves.

        Costs a copy of the descriptors and codes instead of a forward pass.
        """
        new = copy.copy(self)
        new.image = self.image.copy()
        new.channels = [c.copy() for c in self.channels]
        if self._linear is not None:
            b, scores = self._linear
            new._linear = (b, [ls.copy() for ls in scores])
        return new

    def _linear_scores(self):
        """(intercept, one LinearScore per channel) for a linear classifier, else None.

        Then a step's score is ``b + sum_u w_u . finish_u(z_u)`` from per-chunk sums
        of the changed dimensions (:class:`~bowlrp.encoding.pooling.LinearScore`)
        instead of normalising every dimension and evaluating the classifier.
        """
        linear_weights = getattr(self.pipeline.classifier_, "linear_weights", None)
        exponents = [c.encoder.finish_exponent() for c in self.channels]
        if linear_weights is None or any(e is None for e in exponents):
            return None
        found = linear_weights(self.task)
        if found is None:
            return None
        w, b = found
        scores, start = [], 0
        for c, e in zip(self.channels, exponents):
            enc = c.encoder
            stop = start + enc.n_features_out_
            scores.append(
                LinearScore(
                    w[start:stop],
                    c.pooled,
                    enc.normalization_steps_,
                    enc.n_cells_,
                    getattr(enc, "power", 0.5),
                    e,
                )
            )
            start = stop
        if start != w.size:  # pragma: no cover - the pipeline concatenates its channels
            return None
        return b, scores

    def _score_from(self, pooled: list[np.ndarray]) -> tuple[float, list]:
        """Score of the channels' pooled statistics ``pooled`` and what committing them needs."""
        if self._linear is not None:
            b, scores = self._linear
            total, pending = b, []
            for c, p, ls in zip(self.channels, pooled, scores):
                chunks, rows = (None, None) if p is c.pooled else ls.changed(c.pooled, p)
                total += ls.value(chunks, rows)
                pending.append((ls, chunks, rows))
            return float(self.sign * total), pending
        x = np.concatenate([c.encoder.finish(p) for c, p in zip(self.channels, pooled)])
        F = self.pipeline.classifier_.decision_function(x[None, :])
        return float(self.sign * (F[0, self.task] if F.ndim == 2 else F[0])), []

    @staticmethod
    def _commit_scores(pending: list) -> None:
        for ls, chunks, rows in pending:
            if chunks is not None:
                ls.commit(chunks, rows)

    def affected(self, channel: ChannelState, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Descriptors whose influence region meets the pixel block [r0, r1) x [c0, c1)."""
        lo_y, hi_y, lo_x, hi_x = channel.bounds
        return _meeting(lo_y, hi_y, lo_x, hi_x, float(r0), float(r1 - 1), float(c0), float(c1 - 1))

    def set_block(self, r0: int, r1: int, c0: int, c1: int, values: np.ndarray, commit: bool = True) -> float:
        """Replace pixels [r0:r1, c0:c1] by ``values``; return the new score.

        With ``commit=False`` the state is left as it was (occlusion analysis).
        The step runs in one thread (:func:`~bowlrp._utils.threads.single_threaded`).
        """
        with single_threaded():
            return self._set_block(r0, r1, c0, c1, values, commit)

    def _set_block(self, r0, r1, c0, c1, values, commit):
        old = self.image[r0:r1, c0:c1].copy()
        self.image[r0:r1, c0:c1] = values

        def restore():
            self.image[r0:r1, c0:c1] = old

        return self._recompute(lambda ch: self.affected(ch, r0, r1, c0, c1), restore, commit)

    def set_pixels(self, mask: np.ndarray, values: np.ndarray, commit: bool = True) -> float:
        """Replace the pixels of ``mask`` by ``values``; return the new score ``f(x)``.

        Only the descriptors whose influence box contains a changed pixel are
        recomputed (:func:`touched`), so scattered changes (pixel flipping, ROAD,
        a superpixel of IROF) cost what they touch, not their bounding box.

        Parameters
        ----------
        mask : ndarray (H, W) bool
            The pixels to change.
        values : ndarray
            The new values: ``(k,)`` / ``(k, C)`` for the ``k`` mask pixels in row-major
            order, or a whole image ``(H, W[, C])`` whose mask pixels are taken.
        commit : bool
            False leaves the state as it was (one evaluation of a perturbed image).
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.image.shape[:2]:
            raise ValueError(f"mask of shape {mask.shape} for an image of shape {self.image.shape[:2]}")
        values = np.asarray(values, dtype=np.float64)
        if values.shape[:2] == self.image.shape[:2] and values.ndim == self.image.ndim:
            values = values[mask]
        with single_threaded():
            old = self.image[mask].copy()
            self.image[mask] = values

            def restore():
                self.image[mask] = old

            return self._recompute(lambda ch: touched(ch.bounds, mask), restore, commit)

    def _recompute(self, rows_of, restore, commit: bool) -> float:
        """Recompute the descriptors ``rows_of(channel)`` of the changed image, score it, and
        commit the new statistics (``commit``) or put the old pixels back (``restore()``)."""
        updates = []
        for ch in self.channels:
            rows = rows_of(ch)
            if rows.size == 0:
                updates.append((rows, None, None, (ch.pooled, ch.support)))
                continue
            data = ch.extractor.describe_at(self.image, ch.descriptors, rows)
            codes = ch.encoder.compute_codes(data)
            updates.append((rows, data, codes, ch.pooled_after(rows, codes)))
            self.n_recomputed += rows.size
        score, pending = self._score_from([u[3][0] for u in updates])
        if commit:
            for ch, (rows, data, codes, after) in zip(self.channels, updates):
                if rows.size:
                    ch.commit(rows, data, codes, *after)
            self._commit_scores(pending)
            self.score = score
        else:
            restore()
        return score

    def set_descriptors(self, channel: int, rows, data: np.ndarray, commit: bool = True) -> float:
        """Replace the raw data of descriptors ``rows`` of one channel; return the new score."""
        with single_threaded():
            return self._set_descriptors(channel, rows, data, commit)

    def _set_descriptors(self, channel, rows, data, commit):
        ch = self.channels[channel]
        rows = np.asarray(rows, dtype=np.int64)
        data = np.asarray(data, dtype=np.float32)
        codes = ch.encoder.compute_codes(data)
        after = ch.pooled_after(rows, codes)
        score, pending = self._score_from([after[0] if c is ch else c.pooled for c in self.channels])
        if commit:
            ch.commit(rows, data, codes, *after)
            self._commit_scores(pending)
            self.score = score
        return score

    def full_score(self) -> float:
        """``f(x)`` of the current image recomputed from scratch (for checks)."""
        F = self.pipeline.decision_function([self.image])
        return float(self.sign * (F[0, self.task] if np.ndim(F) == 2 else F[0]))
