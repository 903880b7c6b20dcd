import pickle
import unittest.mock

import numpy as np
import pytest
from sklearn.base import clone

import bowlrp
from bowlrp import DenseSIFT, FisherVector, GMMVocabulary, HardAssignment, RankMapping
from bowlrp.classifier.svm import KernelSVC
from bowlrp.exceptions import ModelFileError
from bowlrp.model_files import load, save
from bowlrp.pipeline import Pipeline


def _rank_pipeline(kernel="hik", **kw):
    return Pipeline(
        [
            (
                "sift",
                DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"),
                RankMapping(32, random_state=0, **kw),
            )
        ],
        KernelSVC(kernel),
        random_state=0,
    )


@pytest.fixture(scope="module")
def fitted_hik(stripes_blobs):
    train, y, _, _ = stripes_blobs
    return _rank_pipeline().fit(train, y)


def test_end_to_end_stripes_versus_blobs(fitted_hik, stripes_blobs):
    _, _, test, yt = stripes_blobs
    assert fitted_hik.score(test, yt) >= 0.9


def test_two_channels_with_mkl(stripes_blobs):
    train, y, test, yt = stripes_blobs
    p = Pipeline(
        [
            ("s4", DenseSIFT(bin_sizes=[4], steps=4, backend="opencv"), RankMapping(24, random_state=0)),
            ("s6", DenseSIFT(bin_sizes=[6], steps=6, backend="opencv"), HardAssignment(16, random_state=0)),
        ],
        KernelSVC(["hik", "chi2"], mkl_norm=2),
        random_state=0,
    ).fit(train, y)
    assert p.channel_sizes_ == [24, 16]
    assert p.score(test, yt) >= 0.9
    assert p.classifier_.kernel_weights_.shape == (1, 2)


def test_save_load_round_trip_and_pkl_name(fitted_hik, stripes_blobs, tmp_path):
    _, _, test, _ = stripes_blobs
    path = save(fitted_hik, tmp_path / "model.pkl")
    assert path.read_bytes()[:2] == b"PK"  # skops zip under the name the user typed
    back = load(path)
    np.testing.assert_array_equal(back.decision_function(test), fitted_hik.decision_function(test))
    e1 = fitted_hik.explain(test[:1])[0]
    e2 = back.explain(test[:1])[0]
    np.testing.assert_array_equal(e1.heatmap, e2.heatmap)


def test_model_file_errors(fitted_hik, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load(tmp_path / "missing.pkl")
    junk = tmp_path / "junk.pkl"
    junk.write_text("hello")
    with pytest.raises(ModelFileError, match="not a bowlrp model"):
        load(junk)
    pkl = tmp_path / "real.pkl"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="pickle file"):
        load(pkl)
    with pytest.warns(UserWarning, match="unpickling"):
        assert load(pkl, trusted=True) == {"a": 1}
    import skops.io as sio

    other = tmp_path / "other.skops"
    sio.dump({"format": "something-else"}, other)
    with pytest.raises(ModelFileError, match="not a bowlrp model"):
        load(other)
    old = tmp_path / "old.skops"
    with unittest.mock.patch("bowlrp.model_files.__version__", "0.0.1"):
        save(fitted_hik, old)
    with pytest.raises(ModelFileError, match="written by bowlrp 0.0.1"):
        load(old)


def test_clone_and_set_params_round_trip(fitted_hik):
    twin = clone(fitted_hik)
    assert not hasattr(twin, "classifier_")
    twin.set_params(n_jobs=2, verbose=False)
    assert twin.get_params()["n_jobs"] == 2
    assert twin.get_params()["channels"][0][0] == "sift"


def test_parallel_transform_equals_serial(fitted_hik, stripes_blobs):
    _, _, test, _ = stripes_blobs
    serial = fitted_hik.transform(test[:6])
    fitted_hik.set_params(n_jobs=2)
    try:
        parallel = fitted_hik.transform(test[:6])
    finally:
        fitted_hik.set_params(n_jobs=None)
    np.testing.assert_array_equal(serial, parallel)


def test_config_builds_and_is_stored(tmp_path, stripes_blobs):
    train, y, test, yt = stripes_blobs
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "random_state: 0\n"
        "channels:\n"
        "  - name: sift\n"
        "    extractor: {DenseSIFT: {bin_sizes: [4], steps: 4, backend: opencv}}\n"
        "    encoder: {RankMapping: {vocabulary: 32, base: 2, n_nearest: 4}}\n"
        "    kernel: hik\n"
        "classifier: {C: 1.0}\n"
    )
    p = Pipeline.from_config(cfg).fit(train, y)
    assert p.config["name"] == "tiny"
    assert p.score(test, yt) >= 0.9
    save(p, tmp_path / "m.skops")
    assert bowlrp.model_files.model_info(tmp_path / "m.skops")["config"]["name"] == "tiny"


def test_bad_configs(tmp_path):
    from bowlrp.config import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        Pipeline.from_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels:\n  - extractor: {DenseSIFT: {nonsense: 1}}\n    encoder: {RankMapping: {}}\n")
    with pytest.raises(ConfigError, match=r"unknown key .nonsense. in channels\[0\].extractor.DenseSIFT"):
        Pipeline.from_config(bad)


@pytest.mark.parametrize(
    "path", ["polygons_hik", "configs/polygons_chi2.yaml", "voc_fisher.yaml", "voc2009_bow"]
)
def test_shipped_configs_build(path):
    p = Pipeline.from_config(path)  # by name, from any directory
    assert p.channels and p.classifier is not None


def test_fisher_pipeline_explains_with_all_rules(stripes_blobs):
    from bowlrp.rules import AbsZ, AlphaBeta, Epsilon, SIFTBins

    train, y, test, _ = stripes_blobs
    p = Pipeline(
        [
            (
                "fv",
                DenseSIFT(bin_sizes=[4], steps=3, backend="opencv"),
                FisherVector(GMMVocabulary(4, pca_components=16, random_state=0), pyramid=((1, 1), (2, 2))),
            )
        ],
        KernelSVC("linear"),
        random_state=0,
    ).fit(train, y)
    for rules in [None, Epsilon(1.0), AlphaBeta(2, 1), AbsZ(), SIFTBins(), [Epsilon(0.0), SIFTBins()]]:
        e = p.explain(test[:1], rules=rules)[0]
        total = e.heatmap.sum() + e.bias_relevance + e.absorbed + e.residual
        assert np.isclose(total, e.score, rtol=1e-9, atol=1e-12)
        if rules is None or isinstance(rules, (AlphaBeta, AbsZ, SIFTBins)):
            assert abs(e.absorbed) <= 1e-9 * abs(e.score) + 1e-12


def _counted_pipeline(cap, max_descriptors=10**9):
    vocabulary = GMMVocabulary(4, max_descriptors=max_descriptors, random_state=0)
    return Pipeline(
        [("sift", DenseSIFT(bin_sizes=[4], steps=8, backend="opencv"), FisherVector(vocabulary))],
        KernelSVC("linear"),
        random_state=0,
        vocabulary_images=cap,
    )


def test_vocabulary_images_describes_a_seeded_subset(stripes_blobs):
    train = stripes_blobs[0][:12]  # images of one size: each gives the same number of descriptors
    per_image = len(DenseSIFT(bin_sizes=[4], steps=8, backend="opencv").fit().describe(train[0]))
    capped = _counted_pipeline(5).fit_vocabularies(train)
    # every descriptor of exactly 5 images (the budget exceeds them all)
    assert capped.n_descriptors_sampled_ == [5 * per_image]
    again = _counted_pipeline(5).fit_vocabularies(train)
    np.testing.assert_array_equal(
        capped.encoders_[0].vocabulary_.means_, again.encoders_[0].vocabulary_.means_
    )
    other = Pipeline(**{**_counted_pipeline(5).get_params(deep=False), "random_state": 1}).fit_vocabularies(
        train
    )
    assert not np.array_equal(other.encoders_[0].vocabulary_.means_, capped.encoders_[0].vocabulary_.means_)
    # a cap at or above the number of images samples exactly as no cap (budget smaller than the data)
    for cap in (12, 50):
        a = _counted_pipeline(cap, max_descriptors=300).fit_vocabularies(train)
        b = _counted_pipeline(None, max_descriptors=300).fit_vocabularies(train)
        assert a.n_descriptors_sampled_ == b.n_descriptors_sampled_
        np.testing.assert_array_equal(a.encoders_[0].vocabulary_.means_, b.encoders_[0].vocabulary_.means_)
    uncapped = _counted_pipeline(None).fit_vocabularies(train)
    assert uncapped.n_descriptors_sampled_ == [12 * per_image]
    with pytest.raises(ValueError, match="vocabulary_images must be an integer >= 2"):
        _counted_pipeline(1).fit_vocabularies(train)


def test_vocabulary_images_in_configs(tmp_path):
    cfg = bowlrp.config.load_config("voc_fisher")
    assert Pipeline.from_config({**cfg, "vocabulary_images": 7}).vocabulary_images == 7
    assert Pipeline.from_config("polygons_hik").vocabulary_images is None
    for bad in (1, "many", 2.5, True):
        with pytest.raises(bowlrp.config.ConfigError, match="vocabulary_images"):
            Pipeline.from_config({**cfg, "vocabulary_images": bad})


def test_a_model_saved_before_vocabulary_images_still_works(fitted_hik, stripes_blobs, tmp_path):
    old = clone(fitted_hik)
    for name, value in vars(fitted_hik).items():
        setattr(old, name, value)
    del old.__dict__["vocabulary_images"]  # as a pipeline pickled before the parameter existed
    path = save(old, tmp_path / "old.skops")
    back = load(path)
    assert "vocabulary_images" not in vars(back)
    assert back.get_params(deep=False)["vocabulary_images"] is None
    back.set_params(n_jobs=1)
    test = stripes_blobs[2][:3]
    np.testing.assert_array_equal(back.decision_function(test), fitted_hik.decision_function(test))
    assert clone(back).vocabulary_images is None
