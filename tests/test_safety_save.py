"""Issue 24: ``bowlrp.save`` refuses, fast and without leaving a file, a model it cannot write.

A crafted ``classes_`` of 10^15 zero-byte labels (``np.empty(10**15, "V0")``) takes no
memory, but serializing or listing it takes forever: ``save`` checks the model first
(``check_fitted``, and a bound on the labels it lists) and raises one ``ModelFileError``
naming the attribute. Each save of a crafted model runs in a subprocess with a timeout,
so a regression fails the test instead of hanging the suite.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bowlrp import HardAssignment
from bowlrp.classifier.svm import KernelSVC
from bowlrp.exceptions import ModelFileError
from bowlrp.model_files import MAX_LISTED_CLASSES, load, model_info, save
from bowlrp.pipeline import Pipeline

from .test_model_files import _data, _sift

ROOT = Path(__file__).resolve().parents[1]

CASES = {  # where the crafted classes go -> the attribute the error must name
    "pipeline": "Pipeline.classes_",
    "classifier": "KernelSVC.classes_",
    "both": "KernelSVC.classes_",
    "bare": "Bare.classes_",
}

# Fits a small pipeline once, then for each case gives a copy the crafted classes and
# saves it into the folder <argv[1]>/<case>; prints "<case> <error type> <message>".
SCRIPT = textwrap.dedent(
    """
    import copy
    import sys
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, {root!r})
    from tests.test_model_files import _data, _sift
    from bowlrp import HardAssignment
    from bowlrp.classifier.svm import KernelSVC
    from bowlrp.model_files import save
    from bowlrp.pipeline import Pipeline

    class Bare:  # an object without check_fitted: only the bound on listed labels applies
        pass

    images, y = _data()
    fitted = Pipeline(
        [("s", _sift(), HardAssignment(8, random_state=0))], KernelSVC("hik"), random_state=0
    ).fit(images, y)
    huge = np.empty((10**15,), dtype="V0")
    for where in sys.argv[2:]:
        model = copy.deepcopy(fitted)
        if where in ("pipeline", "both"):
            model.classes_ = huge
        if where in ("classifier", "both"):
            model.classifier_.classes_ = huge
        if where == "bare":
            model = Bare()
            model.classes_ = huge
        try:
            save(model, Path(sys.argv[1]) / where / "model.pkl")
        except Exception as exc:
            print(where, type(exc).__name__, exc, flush=True)
        else:
            print(where, "saved", flush=True)
    """
)


def test_a_crafted_huge_void_classes_is_refused_fast_leaving_no_file(tmp_path):
    out = tmp_path / "out"
    for where in CASES:
        (out / where).mkdir(parents=True)
    script = tmp_path / "crafted_save.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    try:
        r = subprocess.run(
            [sys.executable, str(script), str(out), *CASES],
            capture_output=True,
            text=True,
            timeout=120,  # importing and fitting take seconds; the old save never returned
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as exc:
        done = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"a save of classes_ = np.empty(10**15, 'V0') did not return; finished: {done!r}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [line.split(" ")[0] for line in lines] == list(CASES), r.stdout
    for line, (where, attribute) in zip(lines, CASES.items()):
        assert line.startswith(f"{where} ModelFileError not saving "), line
        assert f"{where}/model.pkl" in line and attribute in line, line
        assert list((out / where).iterdir()) == [], where  # neither the file nor a temporary file


class Labelled:
    """A bare object whose labels ``save`` lists in the metadata."""

    def __init__(self, classes):
        self.classes_ = classes


def test_the_labels_listed_are_bounded_in_memory(tmp_path):
    # the bound is checked before anything is built: a broadcast view costs 8 bytes (zero-byte
    # labels, which would hang an in-process save, are the "bare" case of the subprocess above)
    many = np.broadcast_to(np.int64(3), (MAX_LISTED_CLASSES + 1,))
    with pytest.raises(ModelFileError, match=r"^not saving .*m\.pkl: Labelled\.classes_ holds 1,048,577 "):
        save(Labelled(many), tmp_path / "m.pkl")
    assert list(tmp_path.iterdir()) == []


def test_a_model_load_would_refuse_is_not_written(tmp_path):
    images, y = _data()
    model = Pipeline(
        [("s", _sift(), HardAssignment(8, random_state=0))], KernelSVC("hik"), random_state=0
    ).fit(images, y)
    good = load(save(model, tmp_path / "good.pkl"))
    np.testing.assert_array_equal(good.classes_, model.classes_)
    np.testing.assert_array_equal(good.decision_function(images), model.decision_function(images))
    assert model_info(tmp_path / "good.pkl")["classes"] == ["blobs", "stripes"]
    model.classifier_.intercept_ = np.full_like(model.classifier_.intercept_, np.nan)
    with pytest.raises(ModelFileError, match=r"not saving .*bad\.pkl: .*KernelSVC\.intercept_ holds NaN"):
        save(model, tmp_path / "bad.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pkl"]
