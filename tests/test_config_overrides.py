"""Overrides (from_config keywords and a file's ``overrides:``) go through the config's schema when read."""

import time

import pytest
import yaml

from bowlrp import ConfigError, Pipeline
from bowlrp.config import _parameter_owners, load_config, shipped_configs


@pytest.fixture(autouse=True)
def no_fitting(monkeypatch):
    """Every refusal here must come before any fitting: fitting fails the test."""

    def fit(self, *args, **kwargs):
        raise AssertionError("a bad override reached fitting")

    for method in ("fit", "fit_vocabularies", "fit_classifier"):
        monkeypatch.setattr(Pipeline, method, fit)


def _refused(match, build, *args, **kwargs):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as info:
        build(*args, **kwargs)
    assert time.perf_counter() - start < 5
    assert "\n" not in str(info.value)
    return str(info.value)


NOT_A_WORD_COUNT = r"override 'n_words' \(sift-scale2__encoder__vocabulary__n_words\) must be an integer"


def _write(tmp_path, cfg, name="custom.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"n_words": "many"}, NOT_A_WORD_COUNT),
        ({"n_words": 1e100}, r"override 'n_words' .* must be an integer in \[1, inf\], got 1e\+100"),
        ({"n_words": float("inf")}, r"override 'n_words' .* must be an integer"),
        ({"classifier__C": -1}, r"override 'classifier__C' must be a finite number > 0, got -1"),
        ({"C": float("nan")}, r"override 'C' \(classifier__C\) must be a finite number > 0, got nan"),
        ({"classifier.mkl_norm": 0.5}, r"override 'classifier.mkl_norm' \(classifier__mkl_norm\) must be"),
        ({"random_state": 2**64}, r"override 'random_state' must be an integer in \[0, 4294967295\] or null"),
        ({"random_state": -1}, r"override 'random_state' must be an integer in \[0, 4294967295\]"),
        ({"random_state": 1.5}, r"override 'random_state' must be an integer"),
        (
            {"sift-scale2.encoder.vocabulary.random_state": 2**32},
            r"override 'sift-scale2.encoder.vocabulary.random_state' "
            r"\(sift-scale2__encoder__vocabulary__random_state\) must be an integer in \[0, 4294967295\]",
        ),
        ({"class_weight": {0: float("nan"), 1: 1.0}}, r"class_weight\) must map classes to finite numbers"),
        ({"class_weight": {0: 0, 1: 1.0}}, r"class_weight\) must map classes to finite numbers > 0, got 0"),
        ({"verbose": "yes"}, r"override 'verbose' must be true or false"),
        ({"sift-scale2__encoder__base": 1}, r"override 'sift-scale2__encoder__base' must be a finite number"),
        ({"pyramid": [[0, 1]]}, r"override 'pyramid' \(sift-scale2__encoder__pyramid\) must be a list of"),
        (
            {"vocabulary": {"KMeansVocabulary": {"n_words": 0}}},
            r"override 'vocabulary' \(sift-scale2__encoder__vocabulary\).KMeansVocabulary.n_words must be",
        ),
        (
            {"sift-scale3__extractor": {"RankMapping": {}}},
            r"unknown key 'RankMapping' in override 'sift-scale3__extractor'; valid keys: \['ColorQuantiles'",
        ),
        ({"kernel": "chi2"}, r"override 'kernel' \(classifier__kernel\) is set by the pipeline"),
        ({"channels": []}, r"override 'channels' is set by the pipeline"),
    ],
)
def test_bad_keyword_overrides_are_config_errors_before_fitting(overrides, match):
    _refused(match, Pipeline.from_config, "polygons_hik", **overrides)
    _refused(match, Pipeline.from_config, "polygons_hik", overrides)
    message = _refused(match, load_config, "polygons_hik", overrides)  # the same check, no Pipeline
    assert "polygons_hik" in message  # names the config


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"n_words": "many"}, NOT_A_WORD_COUNT),
        ({"n_words": "1e100"}, r"override 'n_words' .* must be an integer in \[1, inf\], got '1e100'"),
        ({"classifier__C": -1}, r"override 'classifier__C' must be a finite number > 0"),
        ({"random_state": 2**64}, r"override 'random_state' must be an integer in \[0, 4294967295\]"),
        ({"class_weight": {"a": float("nan")}}, r"class_weight\) must map classes to finite numbers > 0"),
        ({"n_wrods": 8}, r"override 'n_wrods' names no parameter of the pipeline; did you mean 'n_words'"),
    ],
)
def test_a_files_overrides_are_checked_when_it_is_read(tmp_path, overrides, match):
    cfg = load_config("polygons_hik")
    cfg["overrides"] = overrides
    path = _write(tmp_path, cfg)
    message = _refused(match, load_config, path)
    assert str(path) in message
    _refused(match, Pipeline.from_config, path)
    _refused(match, Pipeline.from_config, cfg)  # a dict config: the same


def test_unknown_override_names_list_the_valid_ones():
    message = _refused(
        r"override 'zzz_nothing' names no parameter", Pipeline.from_config, "polygons_hik", zzz_nothing=1
    )
    valid = message.split("valid names: ", 1)[1]
    for name in ("'n_words'", "'C'", "'random_state'", "'n_nearest'", "classifier__C", "sift-scale2"):
        assert name in valid, name
    assert "'kernel'" not in valid and "'channels'" not in valid  # names an override may not set
    _refused(r"did you mean 'n_words'.*valid names: \[", Pipeline.from_config, "polygons_hik", n_wrods=8)
    _refused(
        r"override 'sift-scale4.encoder.base' names no parameter",
        Pipeline.from_config,
        "polygons_hik",
        {"sift-scale4.encoder.base": 3},
    )


def test_overrides_that_are_not_a_mapping_are_refused():
    _refused(r"override 'config' is set by", Pipeline.from_config, "polygons_hik", {"config": {}})
    _refused("overrides must be a mapping", Pipeline.from_config, "polygons_hik", [("n_words", 8)])
    cfg = load_config("polygons_hik")
    cfg["overrides"] = [["n_words", 8]]
    _refused("'overrides' must be a mapping", load_config, cfg)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"random_state": 2**64}, r"'random_state' must be an integer in \[0, 4294967295\] or null"),
        ({"random_state": 2**32}, r"'random_state' must be an integer in \[0, 4294967295\]"),
        ({"classifier": {"C": 1.0, "class_weight": {0: float("nan")}}}, r"classifier.class_weight must map"),
        ({"classifier": {"class_weight": {1: float("inf")}}}, r"classifier.class_weight must map classes"),
        ({"classifier": {"class_weight": {1: -2.0}}}, r"classifier.class_weight must map classes"),
        ({"classifier": {"C": float("nan")}}, r"classifier.C must be a finite number > 0"),
    ],
)
def test_file_values_random_state_and_class_weights(tmp_path, change, match):
    cfg = {**load_config("polygons_hik"), **change}
    message = _refused(match, load_config, _write(tmp_path, cfg))
    assert "custom.yaml" in message


def test_the_largest_seed_and_positive_class_weights_are_accepted():
    p = Pipeline.from_config("polygons_hik", random_state=2**32 - 1, class_weight={0: 0.5, 1: 2})
    assert p.random_state == 2**32 - 1 and p.classifier.class_weight == {0: 0.5, 1: 2}


@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("classifier: {C: 1.0}\nclassifier: {C: 2.0}\n", "classifier", "5 and 6"),
        ("classifier:\n  C: 1.0\n  mkl_norm: 2\n  C: -1\n", "C", "6 and 8"),
        ("random_state: 0\nrandom_state: 1\n", "random_state", "5 and 6"),
    ],
)
def test_duplicate_yaml_keys_are_refused(tmp_path, text, key, lines):
    path = tmp_path / "dup.yaml"
    path.write_text("name: dup\nchannels:\n  - extractor: DenseSIFT\n    encoder: RankMapping\n" + text)
    message = _refused(f"config {path}: duplicate key '{key}' \\(lines {lines}\\)", load_config, path)
    assert "dup.yaml" in message
    _refused("duplicate key", Pipeline.from_config, path)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        "name: merge\nchannels:\n  - extractor: DenseSIFT\n    encoder: RankMapping\n"
        "classifier:\n  <<: {C: 1.0, mkl_norm: 2}\n  C: 3.0\n"
    )
    assert load_config(path)["classifier"] == {"C": 3.0, "mkl_norm": 2}


def _same(a: Pipeline, b: Pipeline) -> None:
    pa = {k: repr(v) for k, v in a.get_params(deep=True).items() if k != "config"}
    pb = {k: repr(v) for k, v in b.get_params(deep=True).items() if k != "config"}
    assert pa == pb


def test_a_valid_override_is_the_same_as_writing_it_in_the_file(tmp_path):
    overrides = {"n_words": 16, "classifier__C": 3.0, "random_state": 7, "sift-scale3.encoder.base": 3.0}
    by_keyword = Pipeline.from_config("polygons_hik", **overrides)
    params = by_keyword.get_params(deep=True)
    assert params["sift-scale2__encoder__vocabulary__n_words"] == 16
    assert params["sift-scale3__encoder__vocabulary__n_words"] == 16
    assert params["classifier__C"] == 3.0 and params["random_state"] == 7
    assert params["sift-scale3__encoder__base"] == 3.0 and params["sift-scale2__encoder__base"] == 2.0
    assert by_keyword.config["overrides"] == overrides

    cfg = load_config("polygons_hik")  # the same values written into the file
    for ch in cfg["channels"]:
        ch["encoder"]["RankMapping"]["vocabulary"]["KMeansVocabulary"]["n_words"] = 16
    cfg["channels"][1]["encoder"]["RankMapping"]["base"] = 3.0
    cfg["classifier"]["C"] = 3.0
    cfg["random_state"] = 7
    _same(by_keyword, Pipeline.from_config(_write(tmp_path, cfg, "written.yaml")))

    in_file = {**load_config("polygons_hik"), "overrides": overrides}  # an overrides: mapping in a file
    _same(by_keyword, Pipeline.from_config(_write(tmp_path, in_file, "overridden.yaml")))


def test_keyword_overrides_replace_the_files_overrides_name_by_name(tmp_path):
    cfg = {**load_config("polygons_hik"), "overrides": {"n_words": 16, "classifier__C": 3.0}}
    p = Pipeline.from_config(_write(tmp_path, cfg), n_words=8)
    assert {v for k, v in p.get_params().items() if k.endswith("n_words")} == {8}
    assert p.get_params()["classifier__C"] == 3.0
    assert p.config["overrides"] == {"n_words": 8, "classifier__C": 3.0}


def test_a_stage_override_written_as_in_the_file_is_built():
    p = Pipeline.from_config("polygons_hik", vocabulary={"KMeansVocabulary": {"n_words": 7}})
    vocabularies = [p.get_params()[f"{c}__encoder__vocabulary"] for c in ("sift-scale2", "sift-scale3")]
    assert [type(v).__name__ for v in vocabularies] == ["KMeansVocabulary"] * 2
    assert [v.n_words for v in vocabularies] == [7, 7] and vocabularies[0] is not vocabularies[1]


@pytest.mark.parametrize("name", shipped_configs())
def test_override_names_are_the_pipelines_parameter_names(name):
    assert set(_parameter_owners(load_config(name))) == set(Pipeline.from_config(name).get_params(deep=True))
