"""Slow plain-NumPy references of the encoders and the relevance rules (dense N x V)."""

import numpy as np


def dense_word_mapping(enc, data):
    """m_d(l) for all descriptors and words, (N, V), straight from the formulas of docs/math.md."""
    B = enc.vocabulary_.cluster_centers_
    L = enc.vocabulary_.project(data)
    d2 = ((L[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    N, V = d2.shape
    M = np.zeros((N, V))
    name = type(enc).__name__
    if name == "HardAssignment":
        M[np.arange(N), d2.argmin(1)] = 1.0
    elif name == "RankMapping":
        ranks = d2.argsort(1, kind="stable").argsort(1, kind="stable") + 1
        M = np.where(ranks <= enc.n_nearest, float(enc.base) ** (-ranks.astype(float)), 0.0)
    else:
        n = V if enc.n_nearest is None else enc.n_nearest
        keep = d2.argsort(1, kind="stable").argsort(1, kind="stable") < n
        e = np.where(keep, np.exp(-enc.beta * (d2 - d2.min(1, keepdims=True))), 0.0)
        M = e / e.sum(1, keepdims=True)
    return M


def dense_fisher_mapping(enc, data, gamma):
    """Per-descriptor Fisher mapping Psi(l), (N, block), formulas of docs/math.md, given posteriors."""
    mu, sigma, prior = enc.gmm_parameters()
    L = enc.vocabulary_.project(data)
    N, D = L.shape
    parts = []
    for part in enc.parts_:
        if part == "pi":
            parts.append((gamma - prior) / np.sqrt(prior))
        elif part == "mu":
            t = (L[:, None, :] - mu[None]) / sigma[None]
            parts.append((gamma[:, :, None] * t / np.sqrt(prior)[None, :, None]).reshape(N, -1))
        else:
            t = (L[:, None, :] - mu[None]) / sigma[None]
            parts.append((gamma[:, :, None] * (t**2 - 1) / np.sqrt(2 * prior)[None, :, None]).reshape(N, -1))
    return np.hstack(parts)


def dense_z(enc, descriptors, trace):
    """z_ld = m_d(l)^p / N_c placed in each pyramid cell's block: (N, C * block)."""
    if hasattr(enc, "gmm_parameters"):
        M = dense_fisher_mapping(enc, descriptors.data, trace.codes["posteriors"].toarray())
        p = 1.0
    else:
        M = dense_word_mapping(enc, descriptors.data)
        p = 1.0 if enc.pooling == "max" else float(enc.pooling)
    N, block = M.shape
    C = trace.cell_counts.size
    Z = np.zeros((N, C * block))
    for lev in range(trace.cell_ids.shape[1]):
        for l in range(N):
            c = trace.cell_ids[l, lev]
            Z[l, c * block : (c + 1) * block] += M[l] ** p / trace.cell_counts[c]
    return Z, M


def reference_relevance(Z, R, rule):
    """R_l from the dense z matrix for Epsilon / AlphaBeta / AbsZ (docs/math.md §2, step 2)."""
    N = Z.shape[0]
    out = np.zeros(N)
    for d in range(Z.shape[1]):
        z = Z[:, d]
        if not np.any(z != 0):
            out += R[d] / N
            continue
        name = type(rule).__name__
        if name == "Epsilon":
            zd = z.sum()
            denom = zd + rule.epsilon * (1.0 if zd >= 0 else -1.0)
            out += z / denom * R[d] if denom != 0 else R[d] / N
        elif name == "AlphaBeta":
            zp, zn = np.maximum(z, 0), np.minimum(z, 0)
            P, Q = zp.sum(), zn.sum()
            if P > 0 and Q < 0:
                out += (rule.alpha * zp / P - rule.beta * zn / Q) * R[d]
            elif P > 0:
                out += zp / P * R[d]
            else:
                out += zn / Q * R[d]
        elif name == "AbsZ":
            out += np.abs(z) / np.abs(z).sum() * R[d]
    return out


def reference_winner_take_all(M, trace, R, block):
    N = M.shape[0]
    C = trace.cell_counts.size
    out = np.zeros(N)
    for c in range(C):
        members = np.flatnonzero(np.any(trace.cell_ids == c, axis=1))
        for k in range(block):
            d = c * block + k
            vals = M[members, k] if members.size else np.zeros(0)
            if vals.size == 0 or vals.max() <= 0:
                out += R[d] / N
                continue
            winners = members[vals == vals.max()]
            out[winners] += R[d] / winners.size
    return out


def has_near_ties(enc, data, tol=1e-9):
    """Whether some descriptor is (nearly) equidistant to two words at a rank that matters."""
    if hasattr(enc, "gmm_parameters"):
        return False
    B = enc.vocabulary_.cluster_centers_
    L = enc.vocabulary_.project(data)
    d2 = np.sort(((L[:, None, :] - B[None, :, :]) ** 2).sum(-1), axis=1)
    return bool(np.any(np.diff(d2, axis=1) < tol))
