"""Configs (schema, shipped names, overrides), nested parameters, seeding, extractor forward/relevance."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import bowlrp
from bowlrp import ConfigError, DenseSIFT, KernelSVC, Pipeline, RankMapping
from bowlrp.config import load_config, shipped_configs
from bowlrp.rules import Flat, SIFTBins


def test_top_level_api_is_honest():
    for name in bowlrp.__all__:
        assert hasattr(bowlrp, name), name
    from bowlrp import KernelSVC, Pipeline, load, save  # noqa: F401 - the README's first line


def test_shipped_configs_load_from_any_directory(tmp_path):
    assert {"polygons_hik", "polygons_chi2", "voc_fisher", "voc2009_bow"} <= set(shipped_configs())
    code = (
        "from bowlrp import Pipeline; p = Pipeline.from_config('polygons_hik'); "
        "print(p.get_params()['classifier__C'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ},
        check=True,
    )
    assert out.stdout.strip() == "10.0"


@pytest.mark.parametrize("name", ["polygons_hik", "polygons_chi2", "voc_fisher", "voc2009_bow"])
def test_every_shipped_config_seeds_its_vocabularies(name):
    p = Pipeline.from_config(name)
    assert p.random_state == 0
    seeded = bowlrp.pipeline.seeded(clone(p.channels[0][2]), p.random_state)
    states = {k: v for k, v in seeded.get_params(deep=True).items() if k.endswith("random_state")}
    assert states and all(v == 0 for v in states.values()), states


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"channels": [{"extractor": "DenseSIFT", "encoder": "RankMapping", "kernal": "chi2"}]},
            "unknown key 'kernal' in channels\\[0\\]; did you mean 'kernel'",
        ),
        ({"chanels": []}, "unknown key 'chanels' in the top level; did you mean 'channels'"),
        (
            {"channels": [{"extractor": {"DenseSIFT": {"bin_sizes": [0.5]}}, "encoder": "RankMapping"}]},
            "bin_sizes must be a finite number >= 1",
        ),
        (
            {"channels": [{"extractor": "DenseSIFT", "encoder": {"RankMapping": {"base": 0.5}}}]},
            "base must be a finite number > 1",
        ),
        (
            {
                "channels": [
                    {
                        "extractor": "DenseSIFT",
                        "encoder": {"RankMapping": {"vocabulary": {"KMeansVocabulary": {"n_words": -3}}}},
                    }
                ]
            },
            "n_words must be an integer in \\[1, inf\\]",
        ),
        (
            {"channels": [{"extractor": "DenseSIFT", "encoder": "RankMapping", "kernel": "chi3"}]},
            "unknown key 'chi3'.*did you mean",
        ),
        (
            {"channels": [{"extractor": "DenseSIFT", "encoder": "RankMapping"}], "classifier": {"C": "big"}},
            "classifier.C must be a finite number",
        ),
        (
            {"channels": [{"extractor": "DenseSIFT", "encoder": "RankMapping"}], "random_state": 1.5},
            "'random_state' must be an integer",
        ),
        ({"channels": [{"extractor": "Nope", "encoder": "RankMapping"}]}, "channels\\[0\\].extractor"),
        (
            {"channels": [{"extractor": "DenseSIFT", "encoder": {"RankMapping": {"pyramid": [[0, 1]]}}}]},
            "pyramid must be a list of \\[rows, columns\\] pairs",
        ),
    ],
)
def test_config_mistakes_are_one_line_config_errors(config, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(config)
    assert "\n" not in str(info.value)


def test_yaml_files_are_bounded_and_errors_name_the_file(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"{bomb}.*aliases"):
        load_config(bomb)
    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 200 + "]" * 200 + "\n")
    with pytest.raises(ConfigError, match="nested deeper"):
        load_config(deep)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(latin)
    broken = tmp_path / "broken.yaml"
    broken.write_text("channels: [\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(broken)
    assert "\n" not in str(info.value)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (2 << 20))
    with pytest.raises(ConfigError, match="limited to"):
        load_config(big)
    with pytest.raises(ConfigError, match="did you mean 'polygons_hik'"):
        load_config("polygons_hi")


def test_overrides_dotted_double_underscore_and_bare_names():
    p = Pipeline.from_config(
        "polygons_hik", overrides={"sift-scale2.encoder.vocabulary.n_words": 16}, classifier__C=3.0
    )
    params = p.get_params()
    assert params["sift-scale2__encoder__vocabulary__n_words"] == 16
    assert params["sift-scale3__encoder__vocabulary__n_words"] == 128
    assert params["classifier__C"] == 3.0
    both = Pipeline.from_config("polygons_hik", n_words=8)
    assert {v for k, v in both.get_params().items() if k.endswith("n_words")} == {8}
    assert both.config["overrides"] == {"n_words": 8}
    with pytest.raises(ConfigError, match="did you mean 'n_words'"):
        Pipeline.from_config("polygons_hik", n_wrods=8)


def _small():
    return Pipeline(
        [("sift", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(16))],
        KernelSVC("hik"),
        random_state=0,
    )


def test_nested_get_set_params_and_clone():
    p = _small()
    params = p.get_params(deep=True)
    for key in (
        "sift__extractor",
        "sift__encoder",
        "sift__encoder__vocabulary",
        "sift__extractor__steps",
        "classifier__C",
        "classifier__kernel",
        "random_state",
    ):
        assert key in params
    p.set_params(sift__encoder__vocabulary=24, sift__extractor__steps=6, classifier__C=5.0)
    assert p.channels[0][2].vocabulary == 24 and p.channels[0][1].steps == 6 and p.classifier.C == 5.0
    p.set_params(sift__encoder=RankMapping(12, base=3.0))
    assert p.get_params()["sift__encoder__base"] == 3.0
    c = clone(p)
    assert c.get_params()["sift__encoder__vocabulary"] == 12 and c.channels[0][2] is not p.channels[0][2]
    with pytest.raises(ValueError, match="no channel or step named 'sfit'"):
        p.set_params(sfit__encoder__base=2)
    with pytest.raises(ValueError, match="invalid parameter 'colour'"):
        p.set_params(colour=1)


def test_grid_search_over_vocabulary_size_and_C(stripes_blobs):
    train, y, _, _ = stripes_blobs
    idx = np.r_[0:8, 20:28]
    search = GridSearchCV(
        _small(), {"sift__encoder__vocabulary": [8, 16], "classifier__C": [1, 10]}, cv=2, error_score="raise"
    )
    search.fit([train[i] for i in idx], y[idx])
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["sift__encoder__vocabulary"] in (8, 16)
    assert search.best_estimator_.channel_sizes_ == [search.best_params_["sift__encoder__vocabulary"]]


def _train_small_config(name, train, y):
    overrides = (
        {"n_words": 12}
        if name == "polygons_hik"
        else {"n_components": 4, "pca_components": 16, "pyramid": [[1, 1]]}
    )
    cfg = load_config(name)
    for ch in cfg["channels"]:  # small, fast descriptors for the test; the stochastic stages stay
        ((cls, params),) = ch["extractor"].items()
        params.update({"bin_sizes": [4], "steps": 4, "backend": "opencv", "rotate": False})
        params.pop("smooth", None)
    cfg["channels"] = cfg["channels"][:1]
    return Pipeline.from_config(cfg, **overrides).fit(train, y)


@pytest.mark.parametrize("name", ["polygons_hik", "voc_fisher"])
def test_two_fits_of_a_config_are_identical(stripes_blobs, name):
    train, y, test, _ = stripes_blobs
    idx = np.r_[0:10, 20:30]
    a = _train_small_config(name, [train[i] for i in idx], y[idx])
    b = _train_small_config(name, [train[i] for i in idx], y[idx])
    np.testing.assert_array_equal(a.decision_function(test[:6]), b.decision_function(test[:6]))
    ha = a.explain(test[:2])
    hb = b.explain(test[:2])
    for ea, eb in zip(ha, hb):
        np.testing.assert_array_equal(ea.heatmap, eb.heatmap)


def test_extractors_have_forward_and_relevance(stripes_blobs, fitted_small):
    _, _, test, _ = stripes_blobs
    model = fitted_small
    extractor = model.extractors_[0]
    descriptors, traces = extractor.forward(test[:2])
    assert len(descriptors) == len(traces) == 2 and traces[0] is descriptors[0]
    R = np.random.default_rng(0).normal(size=len(traces[0]))
    heat = extractor.relevance(R, traces[0], Flat())
    assert heat.shape == traces[0].image_shape
    assert abs(heat.sum() - R.sum()) < 1e-9
    per_dim = np.random.default_rng(1).normal(size=(len(traces[0]), 128))
    bins = extractor.relevance(per_dim, traces[0], SIFTBins())
    assert abs(bins.sum() - per_dim.sum()) < 1e-9
    from bowlrp import ColorQuantiles
    from bowlrp.exceptions import RuleError

    cq = ColorQuantiles(radius=4, step=8)
    d, t = cq.forward(np.stack([test[0]] * 3, axis=2))
    with pytest.raises(RuleError, match="does not implement"):
        cq.relevance(np.ones((len(t[0]), 54)), t[0], SIFTBins())
    assert abs(cq.relevance(np.ones(len(t[0])), t[0]).sum() - len(t[0])) < 1e-9


@pytest.fixture(scope="module")
def fitted_small(stripes_blobs):
    train, y, _, _ = stripes_blobs
    return _small().fit(train, y)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(
        ["DenseSIFT", "RankMapping", "hik", "KMeansVocabulary", "FisherVector", "auto", "l1", "max"]
    ),
)
_keys = st.sampled_from(
    [
        "name",
        "channels",
        "classifier",
        "extractor",
        "encoder",
        "kernel",
        "vocabulary",
        "DenseSIFT",
        "RankMapping",
        "n_words",
        "C",
        "bin_sizes",
        "steps",
        "random_state",
        "pyramid",
        "GMMVocabulary",
        "x",
    ]
)
_tree = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        _tree,
        st.fixed_dictionaries(
            {"channels": st.lists(st.dictionaries(_keys, _tree, max_size=4), min_size=1, max_size=2)},
            optional={"classifier": _tree, "random_state": _leaf},
        ),
    )
)
def test_any_config_is_either_valid_or_one_config_error(config):
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    Pipeline.from_config(cfg)  # a config that validates also builds
