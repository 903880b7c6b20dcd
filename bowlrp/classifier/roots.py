"""Roots of a decision function for Taylor-type explanations (docs/taylor.md).

Two searches for a point ``x~`` with ``g(x~) = 0`` near ``x`` (``g = sign f_task``):

* :func:`segment_roots` - on the segments from ``x`` to reference points of
  opposite sign (false position, all segments at once);
* :func:`boundary_root` - the constrained nearest root
  ``argmin ||z - x||  s.t.  g(z) = 0,  z in C`` over the valid feature domain
  ``C`` (:class:`FeatureDomain`), by a bracketed SQP walk on the decision
  boundary started from segment roots.

Every root returned lies on the opposite side of the boundary from ``x``
(``g(x~) g(x) <= 0``) with ``|g(x~)| <= tol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..exceptions import RuleError

DOMAIN_KINDS = ("free", "nonnegative", "simplex")


@dataclass(frozen=True)
class FeatureDomain:
    """A product over channels of convex sets, one per channel slice.

    ``kinds[u]``: ``free`` (R^V_u), ``nonnegative`` (z >= 0) or ``simplex``
    (z >= 0, sum z = ``totals[u]``). BoW histograms normalised to unit
    l1 norm live on the simplex; Fisher vectors are free.
    """

    slices: tuple
    kinds: tuple
    totals: tuple

    def project(self, v: np.ndarray) -> np.ndarray:
        """Euclidean projection of ``v`` (V,) onto the domain."""
        out = v.copy()
        for s, kind, total in zip(self.slices, self.kinds, self.totals):
            if kind == "nonnegative":
                out[s] = np.maximum(v[s], 0.0)
            elif kind == "simplex":
                out[s] = project_simplex(v[s], total)
        return out

    def contains(self, z: np.ndarray, atol: float = 1e-6) -> bool:
        """Whether ``z`` satisfies every channel's constraints (to ``atol``)."""
        for s, kind, total in zip(self.slices, self.kinds, self.totals):
            if kind in ("nonnegative", "simplex") and z[s].min(initial=0.0) < -atol:
                return False
            if kind == "simplex" and abs(z[s].sum() - total) > atol * max(1.0, abs(total)):
                return False
        return True

    @property
    def is_free(self) -> bool:
        return all(k == "free" for k in self.kinds)


def project_simplex(v: np.ndarray, total: float = 1.0) -> np.ndarray:
    """``argmin ||z - v||`` over ``{z >= 0, sum z = total}`` (sort-based, Held et al. 1974).

    ``z = max(v - theta, 0)`` with ``theta`` such that the sum is ``total``.
    """
    if total <= 0:
        return np.zeros_like(v)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - total
    k = np.arange(1, v.size + 1)
    rho = np.flatnonzero(u - css / k > 0)[-1]
    theta = css[rho] / (rho + 1)
    return np.maximum(v - theta, 0.0)


def infer_domain(
    slices, x: np.ndarray, candidates: np.ndarray, spec: str = "auto", rtol: float = 1e-6
) -> FeatureDomain:
    """The feature domain of each channel.

    ``auto``: ``simplex`` where ``x`` and every candidate point are non-negative
    with the same channel sum (to ``rtol``), ``nonnegative`` where they are
    non-negative only, ``free`` otherwise. A fixed ``spec`` applies to every
    channel (``simplex`` keeps the channel sum of ``x``).
    """
    if spec != "auto" and spec not in DOMAIN_KINDS:
        raise RuleError(f"domain must be 'auto' or one of {DOMAIN_KINDS}, got {spec!r}")
    kinds, totals = [], []
    for s in slices:
        xs, cs = x[s], candidates[:, s]
        total = float(xs.sum())
        if spec != "auto":
            kind = spec
        elif xs.min(initial=0.0) < 0 or cs.min(initial=0.0) < 0:
            kind = "free"
        elif np.all(np.abs(cs.sum(axis=1) - total) <= rtol * max(1.0, abs(total))):
            kind = "simplex"
        else:
            kind = "nonnegative"
        kinds.append(kind)
        totals.append(total)
    return FeatureDomain(tuple(slices), tuple(kinds), tuple(totals))


def bracket_roots(
    g,
    A: np.ndarray,
    B: np.ndarray,
    gA: np.ndarray,
    gB: np.ndarray,
    tol: float,
    max_iter: int,
    keep: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roots on the segments ``A_j -> B_j`` where ``g(A_j)`` and ``g(B_j)`` differ in sign.

    Illinois false position on ``p(t) = A + t (B - A)``, all segments per call
    of ``g``, until the end on ``B``'s side has ``|g| <= tol``; that end is
    returned, so each root keeps ``B``'s sign (or is 0).

    With ``keep = k`` only the ``k`` roots nearest ``A`` are wanted: a segment
    whose bracket starts farther from ``A`` (``t_a |B - A|``) than the ``k``-th
    nearest bracket ends (``t_b |B - A|``) cannot hold one of them and is
    dropped. The brackets of the others evolve exactly as without pruning, so
    the ``k`` nearest roots are the same (unless ``max_iter`` runs out on one).

    Returns
    -------
    t : (m,) parameter of the roots, g_root : (m,) ``g`` there (``|g| > tol``
    only if ``max_iter`` ran out), active : (m,) bool, False for pruned segments.
    """
    m = len(A)
    t_a, t_b = np.zeros(m), np.ones(m)
    f_a, f_b = gA.astype(float).copy(), gB.astype(float).copy()  # Illinois-weighted values
    g_b = gB.astype(float).copy()  # true values at t_b
    side = np.zeros(m, dtype=np.int8)
    sign_a = np.sign(gA)
    active = np.ones(m, dtype=bool)
    lengths = np.linalg.norm(B - A, axis=1) if keep is not None else None
    for _ in range(max_iter):
        if keep is not None and active.sum() > keep:
            upper = np.where(active, t_b * lengths, np.inf)
            kth = np.partition(upper, keep - 1)[keep - 1]
            active &= t_a * lengths <= kth
        idx = np.flatnonzero((np.abs(g_b) > tol) & active)
        if idx.size == 0:
            break
        width = t_b[idx] - t_a[idx]
        denom = f_b[idx] - f_a[idx]
        safe = np.where(denom != 0, denom, 1.0)
        t_new = np.where(denom != 0, t_a[idx] - f_a[idx] * width / safe, t_a[idx] + 0.5 * width)
        t_new = np.clip(t_new, t_a[idx] + 1e-3 * width, t_b[idx] - 1e-3 * width)
        g_new = g(A[idx] + t_new[:, None] * (B[idx] - A[idx]))
        on_a = np.sign(g_new) == sign_a[idx]
        ia, ib = idx[on_a], idx[~on_a]
        t_a[ia], f_a[ia] = t_new[on_a], g_new[on_a]
        f_b[ia[side[ia] == 1]] *= 0.5
        side[ia] = 1
        t_b[ib], f_b[ib], g_b[ib] = t_new[~on_a], g_new[~on_a], g_new[~on_a]
        f_a[ib[side[ib] == -1]] *= 0.5
        side[ib] = -1
    return t_b, g_b, active


def segment_roots(
    g,
    x: np.ndarray,
    candidates: np.ndarray,
    n_candidates: int,
    tol: float,
    max_iter: int,
    g_candidates=None,
    gx: float | None = None,
    keep: int | None = None,
):
    """Roots on the segments from ``x`` to its ``n_candidates`` nearest opposite-sign candidates.

    ``keep = k``: only the ``k`` roots nearest ``x`` are needed, and segments
    that cannot hold one stop being refined (:func:`bracket_roots`); the ``k``
    nearest roots are the same as without it.

    Returns
    -------
    roots : (k, V) sorted by distance to ``x``, distances (k,), ``g(roots)`` (k,).
    Roots with ``|g| > tol`` (``max_iter`` exhausted) are dropped unless none is left.
    """
    gx = float(g(x[None, :])[0]) if gx is None else gx
    if gx == 0:
        return x[None, :].copy(), np.zeros(1), np.zeros(1)
    gc = g(candidates) if g_candidates is None else np.asarray(g_candidates, dtype=np.float64)
    opposite = (np.sign(gc) == -np.sign(gx)) | (gc == 0)
    if not opposite.any():
        raise RuleError(
            "no reference point is predicted with the opposite sign, so no root for the Taylor "
            "expansion can be found; pass Taylor(reference_points=...) with such points"
        )
    far, g_far = candidates[opposite], gc[opposite]
    order = np.argsort(np.linalg.norm(far - x, axis=1), kind="stable")[:n_candidates]
    far, g_far = far[order], g_far[order]
    A = np.broadcast_to(x, far.shape)
    t, g_root, active = bracket_roots(g, A, far, np.full(len(far), gx), g_far, tol, max_iter, keep)
    t, g_root, far = t[active], g_root[active], far[active]
    roots = x[None, :] + t[:, None] * (far - x[None, :])
    ok = np.abs(g_root) <= tol
    keep = np.flatnonzero(ok) if ok.any() else np.array([int(np.argmin(np.abs(g_root)))])
    roots, g_root = roots[keep], g_root[keep]
    dist = np.linalg.norm(roots - x, axis=1)
    order = np.argsort(dist, kind="stable")
    return roots[order], dist[order], g_root[order]


def project_on_hyperplane(
    domain: FeatureDomain, x: np.ndarray, n: np.ndarray, b: float, max_iter: int = 100
) -> np.ndarray | None:
    """``argmin ||z - x||  s.t.  n . z = b,  z in C``.

    The minimiser is ``z(lam) = P_C(x - lam n)`` for the ``lam`` where
    ``h(lam) = n . z(lam) - b`` vanishes; ``h`` is non-increasing (``P_C`` is a
    monotone operator), so ``lam`` is found by bracketing and bisection
    (Brent). None if no bracket is found (the hyperplane misses ``C``).
    """
    nn = float(n @ n)
    if nn == 0:
        return None
    lam0 = (float(n @ x) - b) / nn
    z0 = x - lam0 * n
    if domain.is_free:
        return z0

    def h(lam):
        return float(n @ domain.project(x - lam * n)) - b

    h0 = h(lam0)
    if h0 == 0:
        return domain.project(z0)
    step = max(abs(lam0), 1e-12)
    lo = hi = lam0
    direction = 1.0 if h0 > 0 else -1.0  # h decreases with lam
    for _ in range(60):
        lo, hi = (hi, hi + direction * step) if direction > 0 else (lo + direction * step, lo)
        edge = hi if direction > 0 else lo
        if np.sign(h(edge)) != np.sign(h0):
            break
        step *= 2.0
    else:
        return None

    lam = brentq(h, lo, hi, xtol=1e-15 * max(1.0, abs(lo), abs(hi)), rtol=1e-12, maxiter=max_iter)
    return domain.project(x - lam * n)


def _ray_limit(domain: FeatureDomain, x: np.ndarray, v: np.ndarray) -> float:
    """Largest ``s`` with ``x + s v`` in the domain (inf if unbounded); ``x`` in the domain."""
    s_max = np.inf
    for sl, kind in zip(domain.slices, domain.kinds):
        if kind == "free":
            continue
        neg = v[sl] < 0
        if neg.any():
            s_max = min(s_max, float(np.min(np.maximum(x[sl][neg], 0.0) / -v[sl][neg])))
    return s_max


def _root_on_ray(g, x, gx, p, d, domain, tol, max_iter):
    """A root across from ``x`` on the ray ``x + s (p - x)`` within distance ``d`` of ``x``.

    ``[x, p]`` if ``p`` is across; otherwise ``[p, e]`` with ``e`` the farthest point of
    the ray within distance ``d`` and the domain, if ``e`` is across. None if neither.
    """
    v = p - x
    length = float(np.linalg.norm(v))
    if length == 0:
        return None
    gp = float(g(p[None, :])[0])
    if np.sign(gp) != np.sign(gx):
        a, b, ga, gb = x, p, gx, gp
    else:
        s_max = min(d / length, _ray_limit(domain, x, v))
        if s_max <= 1:
            return None
        e = domain.project(x + s_max * v)
        ge = float(g(e[None, :])[0])
        if np.sign(ge) == np.sign(gx):
            return None
        a, b, ga, gb = p, e, gp, ge
    t, gr, _ = bracket_roots(g, a[None, :], b[None, :], np.array([ga]), np.array([gb]), tol, max_iter)
    return a + t[0] * (b - a), float(gr[0])


@dataclass
class BoundaryRoot:
    """Result of :func:`boundary_root`."""

    root: np.ndarray
    distance: float
    value: float
    start_distance: float  # distance of the nearest segment root (today's root)
    n_steps: int  # accepted SQP steps (all starts)
    stationarity: float  # relative shrink one more linearised step would promise (0: KKT point)


def boundary_root(
    g,
    grad,
    x: np.ndarray,
    starts: np.ndarray,
    g_starts: np.ndarray,
    domain: FeatureDomain,
    tol: float,
    max_iter: int,
    walk_iter: int,
    rtol: float = 1e-4,
    gx: float | None = None,
) -> BoundaryRoot:
    """Constrained nearest root by a bracketed SQP walk from each of ``starts``.

    At a root ``z_k`` with normal ``n = grad g(z_k)``, the linearised problem
    ``min ||z - x||  s.t.  n . (z - z_k) = 0,  z in C`` is solved exactly
    (:func:`project_on_hyperplane`); its solution ``p`` is no farther from ``x``
    than ``z_k`` (which is feasible for it). The next root is sought on the
    ray from ``x`` through ``p``: on ``[x, p]`` if ``g`` changes sign there,
    else beyond ``p`` up to distance ``||z_k - x||`` (and the border of ``C``).
    Every point searched is in ``C`` and within ``||z_k - x||`` of ``x``, so the
    distance never grows. The walk stops when a step gains less than ``rtol``
    (relative) or after ``walk_iter`` steps (a step that gains less is retried
    through ``z_k + alpha (p - z_k)``, ``alpha = 1/2 ... 1/16``: points still in
    ``C`` and on the linearised boundary); the nearest root over all starts is
    returned.

    Parameters
    ----------
    g : callable (m, V) -> (m,)
    grad : callable (V,) -> (V,), the gradient of ``g``
    starts : (k, V) roots across the boundary from ``x``, in ``C``; g_starts (k,)
    """
    gx = float(g(x[None, :])[0]) if gx is None else gx
    start_distance = float(np.linalg.norm(starts[0] - x))
    best_z, best_d, best_g = starts[0].copy(), start_distance, float(g_starts[0])
    steps = 0
    for z, gz in zip(starts, g_starts):
        z = z.copy()
        d = float(np.linalg.norm(z - x))
        if not domain.contains(z):
            continue
        for _ in range(walk_iter):
            n = grad(z)
            p = project_on_hyperplane(domain, x, n, float(n @ z))
            if p is None:
                break
            for alpha in (1.0, 0.5, 0.25, 0.125, 0.0625):  # backtracking along z -> p
                found = _root_on_ray(g, x, gx, z + alpha * (p - z), d, domain, tol, max_iter)
                if found is None:
                    continue
                r, gr = found
                dr = float(np.linalg.norm(r - x))
                if abs(gr) <= tol and dr < d * (1 - rtol):
                    break
            else:
                break
            z, gz, d = r, gr, dr
            steps += 1
        if d < best_d:
            best_z, best_d, best_g = z, d, gz
    n = grad(best_z)
    p = project_on_hyperplane(domain, x, n, float(n @ best_z))
    stationarity = (
        0.0 if p is None or best_d == 0 else max(0.0, (best_d - float(np.linalg.norm(p - x))) / best_d)
    )
    return BoundaryRoot(best_z, best_d, best_g, start_distance, steps, stationarity)
