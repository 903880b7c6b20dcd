"""A relevance store never follows a link out of itself nor reads a special file (issue 24, findings 2, 8).

- 4269499 followed a symbolic link inside a store: with ``images`` linked to a
  user's home, the record of an image whose id is ``Documents`` was created with
  ``create_group(overwrite=True)``, which ran ``rmtree`` on ``~/Documents`` and put
  a Zarr group in its place (exit 0); ``zarr.json`` was written into the home.
- A FIFO in place of a ``zarr.json``, a chunk or the lock file made readers and
  runs hang; a chunk linked to ``/dev/zero`` was read until ``MemoryError``.

Now a link anywhere inside a local store, or anything but a regular file or a
folder, is refused with one line naming it before anything is read, created,
overwritten or removed; a folder or Zarr store of something else is never
written into. Every user folder here is a sentinel under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bowlrp.runs.store
from bowlrp.runs.distributed import explain_to_store
from bowlrp.runs.inputs import ImageInput
from bowlrp.runs.store import RelevanceStore, StoreError, id_to_key, store_lock
from tests.test_store import _main, folder, model, model_file, write_png  # noqa: F401 - fixtures

LINK = r"is a symbolic link; a relevance store holds only its own files and folders: move it away"


class _Explanation:
    """The little of an explanation a store records."""

    def __init__(self, value: float = 1.0):
        self.heatmap = np.full((8, 8), value)
        self.score, self.bias_relevance, self.residual, self.absorbed = 64.0 * value, 0.0, 0.0, 0.0

    def summary(self) -> dict:
        return {"target": "a", "rules": {}}


def _item(image_id: str) -> ImageInput:
    return ImageInput(Path(f"{image_id}.png"), image_id)


def _store(path: Path, ids=("x",)) -> Path:
    """A normal store holding one finished record per id."""
    with store_lock(path, "test"):
        store = RelevanceStore.create(path, {"m": 1})
        for image_id in ids:
            store.write(_item(image_id), [_Explanation()], model_hash="h")
    return path


def _user_folder(tmp_path: Path) -> Path:
    """``home/Documents`` with a user's files (a stand-in, under tmp_path)."""
    docs = tmp_path / "home" / "Documents"
    (docs / "notes").mkdir(parents=True)
    (docs / "thesis.txt").write_bytes(b"my only copy\n")
    (docs / "notes" / "a.txt").write_bytes(b"\x00\x01 notes")
    return docs


def _snapshot(folder: Path) -> dict:
    """Every entry under ``folder``: kind, bytes of files, permission bits."""
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = p.lstat()
            out[p.relative_to(folder).as_posix()] = (
                "dir" if p.is_dir() else p.read_bytes(),
                st.st_mode,
            )
    return out


def _replace_with_link(path: Path, target: Path) -> None:
    """Put a symbolic link to ``target`` where ``path`` is (removing the store's own entry)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    os.symlink(target, path)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- a linked group: refused when the store is opened, the linked folder untouched ------------------
OPENINGS = {
    "open for writing (a Dask task)": lambda out: RelevanceStore.open(out, "r+"),
    "open for reading": lambda out: bowlrp.runs.store.open(out),
    "a run": lambda out: _run(out, {"m": 1}),
    "a run with overwrite": lambda out: _run(out, {"m": 2}, overwrite=True),
}


def _run(out: Path, key: dict, overwrite: bool = False) -> None:
    with store_lock(out, "test"):
        store = RelevanceStore.create(out, key, overwrite=overwrite)
        store.write(_item("y"), [_Explanation()], model_hash="h")


@pytest.mark.parametrize("opening", OPENINGS)
def test_a_linked_images_group_is_refused_and_the_linked_folder_kept(opening, tmp_path):
    docs = _user_folder(tmp_path)
    out = _store(tmp_path / "s.zarr")
    _replace_with_link(out / "images", docs)
    before, home = _snapshot(docs), sorted(os.listdir(docs.parent))
    with pytest.raises(StoreError, match=LINK) as exc:
        OPENINGS[opening](out)
    assert f"{out}/images is a symbolic link" in _one_line(exc)
    assert _snapshot(docs) == before and sorted(os.listdir(docs.parent)) == home


@pytest.mark.parametrize(
    "where",
    ["images", "failures", "images/{key}", "images/{key}/heatmap", "images/{key}/heatmap/c"],
    ids=["images group", "failures group", "record group", "array", "chunk directory"],
)
@pytest.mark.parametrize("overwrite", [False, True], ids=["run", "overwrite"])
def test_explain_to_store_refuses_a_linked_group_or_chunk_folder(where, overwrite, model, folder, tmp_path):
    docs = _user_folder(tmp_path)
    out = tmp_path / "s.zarr"
    explain_to_store([str(folder)], model, out, progress=False)
    link = out / where.format(key=id_to_key("im0"))
    assert link.exists()
    _replace_with_link(link, docs)
    before = _snapshot(docs)
    with pytest.raises(StoreError, match=LINK) as exc:
        explain_to_store([str(folder)], model, out, targets="stripes", overwrite=overwrite, progress=False)
    assert str(link) in _one_line(exc)
    assert _snapshot(docs) == before
    assert not (out / ".bowlrp.lock").exists()


def test_the_users_documents_are_not_replaced_by_a_record(model, stripes_blobs, tmp_path):
    """The reported loss: ``images`` linked to the home, an image whose id is ``Documents``."""
    docs = _user_folder(tmp_path)
    images = tmp_path / "in"
    write_png(images / "Documents.png", stripes_blobs[2][0])
    out = tmp_path / "s.zarr"
    explain_to_store([str(images)], model, out, progress=False)
    _replace_with_link(out / "images", docs.parent)
    before = _snapshot(docs.parent)
    for overwrite in (False, True):
        with pytest.raises(StoreError, match=LINK):
            explain_to_store([str(images)], model, out, overwrite=overwrite, progress=False)
    assert _snapshot(docs.parent) == before and (docs / "thesis.txt").read_bytes() == b"my only copy\n"


def test_the_command_refuses_a_linked_store_with_one_line(model_file, folder, tmp_path, capsys):
    docs = _user_folder(tmp_path)
    out = tmp_path / "s.zarr"
    explain_to_store([str(folder)], model_file, out, progress=False)
    _replace_with_link(out / "images", docs)
    before = _snapshot(docs)
    code, _, err = _main(
        capsys,
        "explain",
        "-i",
        folder,
        "-m",
        model_file,
        "--store",
        out,
        "-t",
        "stripes",
        "--overwrite",
        "-q",
    )
    assert code != 0 and err.count("\n") == 1 and "images is a symbolic link" in err
    assert _snapshot(docs) == before


def test_a_link_planted_after_opening_is_refused_at_the_write(tmp_path):
    docs = _user_folder(tmp_path)
    out = _store(tmp_path / "s.zarr", ids=("x", "Documents"))
    with store_lock(out, "test"):
        store = RelevanceStore.create(out, {"m": 1})
        task = RelevanceStore.open(out, "r+")  # as a Dask task opens it
        _replace_with_link(out / "images", docs.parent)
        before = _snapshot(docs.parent)
        for writer in (store, task):
            with pytest.raises(StoreError, match=LINK):
                writer.write(_item("Documents"), [_Explanation(2.0)], model_hash="h")
            with pytest.raises(StoreError, match=LINK):
                writer["Documents"]
        (out / "images").unlink()
        (out / "failures" / "x").mkdir()  # a failure record holding a link
        os.symlink(docs, out / "failures" / "x" / "heatmap")
        with pytest.raises(StoreError, match=LINK):
            task.write_failure(_item("x"), "boom")
        with pytest.raises(StoreError, match=LINK):
            task.clear_failure("x")
    assert _snapshot(docs.parent) == before


# -- nothing that is not the store's own is written into or removed ----------------------------------
def test_a_zarr_store_of_something_else_is_never_overwritten(tmp_path):
    import zarr  # only here: a Zarr store that is not a relevance store

    other = tmp_path / "theirs.zarr"
    root = zarr.open_group(str(other), mode="w")
    root.create_group("images").create_array("data", shape=(3,), dtype="int64")[...] = [1, 2, 3]
    before = _snapshot(other)
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="is a Zarr store but not a bowlrp relevance store") as exc:
            with store_lock(other, "test"):
                RelevanceStore.create(other, {"m": 1}, overwrite=overwrite)
        _one_line(exc)
    with pytest.raises(StoreError, match="not a bowlrp relevance store"):
        bowlrp.runs.store.open_for_evaluation(other, {"k": 1}, overwrite=True)
    assert _snapshot(other) == before


def test_a_folder_that_is_not_a_store_is_not_locked_nor_swept(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / ("draft." + "0123456789abcdef" * 2 + ".partial")).write_bytes(b"a user's file")
    before = _snapshot(plain)
    with pytest.raises(StoreError, match="is a folder but not a Zarr store"):
        with store_lock(plain, "test"):
            RelevanceStore.create(plain, {"m": 1})
    assert _snapshot(plain) == before


def test_a_store_is_opened_to_read_or_write_records_only(tmp_path):
    out = _store(tmp_path / "s.zarr")
    before = _snapshot(out)
    for mode in ("w", "a", "w-"):
        with pytest.raises(StoreError, match="mode 'r' or 'r\\+'"):
            RelevanceStore.open(out, mode)
    assert _snapshot(out) == before and len(bowlrp.runs.store.open(out)) == 1


def test_the_store_path_may_be_a_link_to_a_store_but_not_to_nothing(tmp_path):
    real = _store(tmp_path / "scratch" / "s.zarr")
    os.symlink(real, tmp_path / "s.zarr")
    _run(tmp_path / "s.zarr", {"m": 1})  # resolved once: the store is the folder it names
    assert sorted(bowlrp.runs.store.open(tmp_path / "s.zarr").ids()) == ["x", "y"]
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.zarr")
    with pytest.raises(StoreError, match="dangling.zarr is a symbolic link to nothing"):
        _run(tmp_path / "dangling.zarr", {"m": 1})
    assert not (tmp_path / "nowhere").exists()


# -- special files: refused at once (in a child process with a time limit, so nothing can hang) ------
CHILD = textwrap.dedent(
    """
    import json, os, resource, shutil, sys
    from pathlib import Path
    import numpy as np
    import bowlrp.runs.store
    from bowlrp.runs.inputs import ImageInput
    from bowlrp.runs.store import RelevanceStore, store_lock

    class E:
        heatmap = np.ones((8, 8))
        score, bias_relevance, residual, absorbed = 64.0, 0.0, 0.0, 0.0
        def summary(self):
            return {"target": "a", "rules": {}}

    def write(out):
        with store_lock(out, "test"):
            RelevanceStore.create(out, {"m": 1}).write(ImageInput(Path("x.png"), "x"), [E()], model_hash="h")

    ACTIONS = {
        "read": lambda out: bowlrp.runs.store.open(out)["x"].heatmap.sum(),
        "read in a task": lambda out: RelevanceStore.open(out, "r+")["x"].heatmap.sum(),
        "write": write,
    }
    # 1 GiB above what the imports use: reading /dev/zero fails fast instead of taking the machine's memory
    size = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), resource.RLIM_INFINITY))
    base = Path(sys.argv[1])
    for n, (where, special, action) in enumerate(json.loads(sys.argv[2])):
        out = base / f"s{n}.zarr"
        write(out)
        path = out / where
        if path.is_dir():
            path = next(p for p in sorted(path.rglob("*")) if p.is_file() and p.name != "zarr.json")
        path.unlink(missing_ok=True)  # the lock file: none is held after the write
        os.mkfifo(path) if special == "fifo" else os.symlink("/dev/zero", path)
        try:
            ACTIONS[action](out)
            result = None
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        print(json.dumps([where, special, action, result, str(path)]), flush=True)
    """
)

SPECIAL = [
    ("zarr.json", "fifo", "read"),
    ("zarr.json", "fifo", "write"),
    (".bowlrp.lock", "fifo", "write"),
    ("images/x/zarr.json", "fifo", "read"),
    ("images/x/zarr.json", "fifo", "write"),
    ("images/x/heatmap/c", "fifo", "read"),
    ("images/x/heatmap/c", "dev-zero", "read"),
    ("images/x/heatmap/c", "dev-zero", "read in a task"),
    ("images/x/heatmap/c", "dev-zero", "write"),
    ("images/x/zarr.json", "dev-zero", "read"),
]


@pytest.fixture(scope="module")
def special_outcomes(tmp_path_factory) -> dict:
    """Every case of SPECIAL, run in order by one child process; a hung case ends it after 120 s."""
    base = tmp_path_factory.mktemp("special")
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(base), json.dumps(SPECIAL)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        lines = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = "hung: stopped after 120 s"
    outcomes = {tuple(row[:3]): row[3:] for row in map(json.loads, lines.splitlines())}
    return {"outcomes": outcomes, "stderr": stderr}


@pytest.mark.parametrize("case", SPECIAL, ids=[" ".join(c) for c in SPECIAL])
def test_a_special_file_or_a_link_to_a_device_is_refused_at_once(case, special_outcomes):
    assert case in special_outcomes["outcomes"], f"not finished: {special_outcomes['stderr'][-500:]}"
    error, path = special_outcomes["outcomes"][case]
    kind = "is a FIFO (named pipe)" if case[1] == "fifo" else "is a symbolic link"
    assert error is not None and error.startswith("StoreError: ") and "\n" not in error, error
    assert f"{path} {kind}; a relevance store holds only its own files" in error
