"""bowlrp's localisation and complexity metrics and ROAD's imputation give Quantus 0.6's numbers.

Quantus runs these metrics without a deep-learning framework (``model=None``, the
explanations given as ``a_batch``). Quantus's defaults max-normalise the maps
(over the whole batch); the localisation metrics and the entropy do not notice,
the Gini index moves by Quantus's ``+1e-7``. Where bowlrp's default differs (the
relevance mass counts positive relevance only), the Quantus setting is passed
and the difference is shown. Quantus is the ``[quantus]`` extra (``make install``).
"""

import warnings

import numpy as np
import pytest
import quantus
from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

from bowlrp.evaluation import (
    complexity,
    localisation_auc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
)
from bowlrp.evaluation.road import linear_imputation


def batch(seed=0, n=8, shape=(16, 20)):
    """Maps with negative relevance, masks of rectangles and blobs, one map with a tie at its maximum."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(n, *shape))
    maps[1] = np.abs(maps[1])
    masks = np.zeros((n, *shape), dtype=bool)
    for i in range(n):
        r, c = rng.integers(0, shape[0] - 5), rng.integers(0, shape[1] - 6)
        masks[i, r : r + 5, c : c + 6] = True
        masks[i] |= rng.random(shape) < 0.05
    maps[2][masks[2]] += 2.0
    maps[3].flat[[5, 100]] = maps[3].max() + 1.0  # two maxima: one outside, one perhaps inside
    return maps, masks


def run_quantus(metric, maps, masks):
    x = np.random.default_rng(1).random((len(maps), 1, *maps.shape[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(
            metric(
                model=None,
                x_batch=x,
                y_batch=np.zeros(len(maps), dtype=int),
                a_batch=maps[:, None].copy(),
                s_batch=masks[:, None].astype(float),
            ),
            dtype=np.float64,
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_localisation_agrees_with_quantus(seed):
    maps, masks = batch(seed)
    kw = {"disable_warnings": True}
    pairs = [
        (quantus.RelevanceRankAccuracy(**kw), relevance_rank_accuracy(maps, masks)),
        (quantus.PointingGame(**kw), pointing_game(maps, masks)),
        (quantus.AUC(**kw), localisation_auc(maps, masks)),
        # Quantus sums signed relevance (abs=False): bowlrp's positive=False
        (quantus.RelevanceMassAccuracy(**kw), relevance_mass_accuracy(maps, masks, positive=False)),
    ]
    for q, ours in pairs:
        np.testing.assert_allclose(ours.values, run_quantus(q, maps, masks), rtol=1e-10, err_msg=ours.name)
    # bowlrp's default counts positive relevance only: a share in [0, 1], which Quantus's is not
    default = relevance_mass_accuracy(maps, masks).values
    signed = run_quantus(quantus.RelevanceMassAccuracy(**kw), maps, masks)
    assert ((default >= 0) & (default <= 1)).all()
    assert not np.allclose(default, signed)
    np.testing.assert_allclose(default[1], signed[1], rtol=1e-10)  # the same for a non-negative map


def test_complexity_agrees_with_quantus():
    maps, _ = batch(3)
    kw = {"disable_warnings": True}
    q_gini = run_quantus(quantus.Sparseness(**kw), maps, np.ones(maps.shape, bool))
    q_entropy = run_quantus(quantus.Complexity(**kw), maps, np.ones(maps.shape, bool))
    np.testing.assert_allclose(sparseness(maps).values, q_gini, atol=1e-6)  # Quantus adds 1e-7 to |R|
    np.testing.assert_allclose(complexity(maps).values, q_entropy, rtol=1e-9)
    assert np.ptp(q_gini) > 1e-3  # the maps differ enough for the comparison to mean something


@pytest.mark.parametrize("colour", [False, True])
def test_road_imputation_agrees_with_quantus(colour):
    rng = np.random.default_rng(2)
    shape = (14, 17, 3) if colour else (14, 17)
    image = rng.random(shape)
    mask = rng.random(shape[:2]) < 0.4
    mask[:4, :5] = True  # a removed block touching the corner
    ours = linear_imputation(image, mask)
    chw = image.reshape(*shape[:2], -1).transpose(2, 0, 1)
    theirs = quantus_imputation(chw, np.flatnonzero(mask), noise=0.0)
    expected = theirs.transpose(1, 2, 0)[mask]
    np.testing.assert_allclose(ours.reshape(expected.shape), expected, rtol=1e-10, atol=1e-12)
