"""Safe model files: skops format, an exact type allowlist, metadata readable without loading.

``save(model, "voc_horse.pkl")`` writes the skops (zip) format under the name
the user chose, plus a small JSON member ``bowlrp.json`` (format, bowlrp
version, kind, config, classes and the SHA-256 of every other member).
``model_info`` reads only that member and constructs no object.

``load`` reads a file in this order, refusing with one
:class:`~bowlrp.exceptions.ModelFileError` line naming the file at the first
problem:

1. the file size (``max_bytes``, default :data:`MAX_MODEL_BYTES`);
2. the zip directory: number of members, every member's *declared*
   decompressed size, their sum against ``max_bytes`` and against
   :data:`MAX_EXPANSION` times the file size (zip bombs);
3. the metadata member (its ``format_version`` must be one this bowlrp
   reads) and, reading every member as a stream that stops at its declared
   size and at the limit (*actual* sizes), the stored hashes;
4. the skops object tree (``schema.json``), without importing or calling
   anything: every ``(loader, type)`` pair must be in the exact allowlist
   :data:`ALLOWED_TYPES` or be named in ``trusted``;
5. what building the tree will allocate: every array node reads its ``.npy``
   member into memory and builds an array from it, so each *reference* costs
   the member's size plus the array's (``shape × itemsize`` from the member's
   header, which must match the member's size); the sum must stay under the
   limit and under twice the zip budget (members referenced thousands of times);
6. only then skops builds the objects, with ``trusted=`` the list of the type
   names just checked (never ``trusted=True``), and the metadata (kind,
   classes, config, version) is compared with the object built.

A real pickle file is loaded only with ``trusted=True`` (and a warning).
Limits can be raised per call (``max_bytes=``) or for the process with the
environment variable ``BOWLRP_MAX_MODEL_BYTES`` (bytes); an unreadable value is
refused, in one line, by the first ``load`` or ``model_info`` that needs the
default limit (never at import). See ``docs/security.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import skops.io as sio

from ._moved import Unpickler, alias_quietly, current_type_name
from ._utils.atomic import atomic_write_bytes
from ._utils.validation import display_path
from ._version import __version__
from .exceptions import ModelFileError

# -- the exact types a model file may contain, and how skops may build each -----------------
#
# Derived by saving every kind of model bowlrp builds (k-means and GMM
# vocabularies with and without PCA, every encoder, every kernel, KernelSVC
# with MKL and class weights, Pipelines from every file in ``configs/``) and
# listing the ``(skops loader, type)`` pairs their files hold;
# ``tests/test_model_files.py`` saves each again and checks that this list
# covers it. Nothing is matched by prefix: a type not listed here (or listed
# with another loader) is refused unless the caller trusts it by name.
#
# Every entry is data: an estimator built with ``__new__`` and its attribute
# dict (``ObjectNode``), a container, an array read with ``allow_pickle=False``
# or a scalar type. No function, no type whose constructor is called with
# arguments from the file (``ConstructorFromReduceNode``, ``ReduceNode``) and
# nothing from ``builtins``/``numpy`` beyond plain data types.
#
# When you add a class that is stored in fitted models, add it here (the test
# ``test_every_registered_class_is_allowed`` reminds you).

_OBJECT = frozenset({"ObjectNode"})

#: type name -> skops loaders allowed to build it
ALLOWED_TYPES: dict[str, frozenset[str]] = {
    # bowlrp's own estimators (ObjectNode: cls.__new__ + __dict__ update)
    "bowlrp.pipeline.Pipeline": _OBJECT,
    "bowlrp.classifier.svm.KernelSVC": _OBJECT,
    "bowlrp.classifier.anomaly.OneClassKernelSVM": _OBJECT,
    "bowlrp.classifier.anomaly.KernelSVDD": _OBJECT,
    "bowlrp.descriptors.sift.DenseSIFT": _OBJECT,
    "bowlrp.descriptors.quantiles.ColorQuantiles": _OBJECT,
    "bowlrp.encoding.vocabulary.KMeansVocabulary": _OBJECT,
    "bowlrp.encoding.vocabulary.GMMVocabulary": _OBJECT,
    "bowlrp.encoding.words.HardAssignment": _OBJECT,
    "bowlrp.encoding.words.RankMapping": _OBJECT,
    "bowlrp.encoding.words.SoftAssignment": _OBJECT,
    "bowlrp.encoding.fisher.FisherVector": _OBJECT,
    "bowlrp.encoding.local_pooling.TailFisherVector": _OBJECT,
    "bowlrp.classifier.kernels.Linear": _OBJECT,
    "bowlrp.classifier.kernels.HistogramIntersection": _OBJECT,
    "bowlrp.classifier.kernels.AdditiveChi2": _OBJECT,
    "bowlrp.classifier.kernels.Hellinger": _OBJECT,
    "bowlrp.classifier.kernels.ExponentialChi2": _OBJECT,
    "bowlrp.classifier.kernels.RBF": _OBJECT,
    # scikit-learn: the PCA of a vocabulary with pca_components
    "sklearn.decomposition._pca.PCA": _OBJECT,
    # containers and primitives
    "builtins.dict": frozenset({"DictNode"}),
    "builtins.list": frozenset({"ListNode"}),
    "builtins.tuple": frozenset({"TupleNode"}),
    "builtins.slice": frozenset({"SliceNode"}),
    "builtins.str": frozenset({"JsonNode", "TypeNode"}),
    "builtins.int": frozenset({"TypeNode"}),  # dict key types (class_weight={0: ...})
    "builtins.float": frozenset({"TypeNode"}),
    # NumPy arrays (np.load(allow_pickle=False)) and scalars read from them
    "numpy.ndarray": frozenset({"NdArrayNode"}),
    "numpy.float64": frozenset({"NdArrayNode"}),
    "numpy.float32": frozenset({"NdArrayNode"}),
    "numpy.int64": frozenset({"NdArrayNode"}),
    "numpy.int32": frozenset({"NdArrayNode"}),
    "numpy.bool": frozenset({"NdArrayNode"}),
    # random_state=np.random.RandomState(...) (state arrays, no constructor arguments)
    "numpy.random.mtrand.RandomState": frozenset({"RandomStateNode"}),
}

__all__ = [
    "FORMAT",
    "MAX_EXPANSION",
    "MAX_MODEL_BYTES",
    "META_NAME",
    "file_hash",
    "load",
    "model_info",
    "save",
]

FORMAT = "bowlrp-model"
#: Name of the JSON metadata member inside the zip.
META_NAME = "bowlrp.json"
META_FORMAT_VERSION = 1


_ENV_LIMIT = "BOWLRP_MAX_MODEL_BYTES"
_DEFAULT_MAX_MODEL_BYTES = 4 << 30


def _env_bytes(name: str, default: int) -> int:
    """A positive number of bytes from environment variable ``name`` (``default`` if unset)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    expected = "expected a positive whole number of bytes such as 8589934592 or 8e9, or unset it"
    try:
        value = int(float(text))
    except (ValueError, OverflowError):  # OverflowError: "inf", "1e400"
        raise ModelFileError(
            f"environment variable {name}={text[:40]!r} is not readable ({expected})"
        ) from None
    if value <= 0:
        raise ModelFileError(f"environment variable {name}={text[:40]!r} is not positive ({expected})")
    return value


def _env_default() -> tuple[int, str | None]:
    """The default limit and, if ``BOWLRP_MAX_MODEL_BYTES`` is unreadable, why (refused when used)."""
    try:
        return _env_bytes(_ENV_LIMIT, _DEFAULT_MAX_MODEL_BYTES), None
    except ModelFileError as exc:
        return _DEFAULT_MAX_MODEL_BYTES, str(exc)


#: Default limit on a model file's size, on the sum of its decompressed members and on what
#: loading it allocates (4 GiB, or ``BOWLRP_MAX_MODEL_BYTES``). An unreadable environment value
#: does not fail the import: the first ``load``/``model_info`` relying on this default refuses.
MAX_MODEL_BYTES, _ENV_PROBLEM = _env_default()
#: Decompressed members may total at most this many times the file size (plus 1 MiB), and
#: loading may allocate at most twice that (every array is read, then built).
#: bowlrp writes uncompressed members (ratio about 1); a zip bomb has ratios of 1000s.
MAX_EXPANSION = 20
#: Limits on the parts read before anything else.
MAX_MEMBERS = 65_536
MAX_META_BYTES = 16 << 20
MAX_SCHEMA_BYTES = 256 << 20
_CHUNK = 1 << 20


# -- helpers ------------------------------------------------------------------------------------
def _limit(max_bytes: int | None, path: Path) -> int:
    """``max_bytes`` or the default limit; refuses if the default comes from an unreadable variable."""
    if max_bytes is not None:
        return int(max_bytes)
    if _ENV_PROBLEM is not None:
        raise ModelFileError(f"cannot check {display_path(path)}: {_ENV_PROBLEM} (or pass max_bytes=)")
    return MAX_MODEL_BYTES


def _canonical(value) -> str:
    """``value`` as sorted JSON text (what ``save`` records; NaN compares equal to itself)."""
    return json.dumps(_jsonable(value), sort_keys=True)


def _major_minor(version: str) -> tuple[int, int]:
    parts = str(version).split(".")
    return int(parts[0]), int(parts[1])


def _clean(text, limit: int = 120) -> str:
    """A name read from a file, safe to show in one line."""
    text = str(text)
    shown = text.encode("unicode_escape", "backslashreplace").decode("ascii", "replace")
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return _clean(line, 200)


def _jsonable(value):
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def _classes_of(model):
    classes = getattr(model, "classes_", None)
    if classes is None:
        return None
    try:
        return _jsonable(list(getattr(classes, "tolist", lambda: list(classes))()))
    except Exception:  # pragma: no cover - exotic classes_
        return None


def _manifest_digest(members: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(members):
        h.update(name.encode("utf-8", "surrogatepass") + b"\t" + members[name].encode("ascii") + b"\n")
    return h.hexdigest()


def _trusted_names(trusted) -> tuple[bool, frozenset[str]]:
    """``trusted`` as (trust everything?, set of exact type names)."""
    if trusted is True:
        return True, frozenset()
    if trusted is False or trusted is None:
        return False, frozenset()
    if isinstance(trusted, (str, type)):
        trusted = [trusted]
    if not isinstance(trusted, Sequence) and not isinstance(trusted, (set, frozenset)):
        raise TypeError(f"trusted must be a bool or a list of type names, got {type(trusted).__name__}")
    names = []
    for t in trusted:
        if isinstance(t, type):
            names.append(f"{t.__module__}.{t.__qualname__}")
        elif isinstance(t, str):
            names.append(t)
        else:
            raise TypeError(f"trusted must list type names (str), got {type(t).__name__}")
    return False, frozenset(names)


# -- writing ------------------------------------------------------------------------------------
#: At most this many class labels are listed in a model file's metadata (``save`` refuses more).
MAX_LISTED_CLASSES = 1 << 20


def _check_savable(model, path: Path) -> None:
    """Refuse, before serializing anything, a model ``load`` would refuse or ``save`` cannot list.

    ``check_fitted`` (bowlrp's estimators) is O(size of the fitted attributes); the
    ``classes_`` bound covers other objects, whose labels the metadata lists one by one.
    """
    where = f"not saving {display_path(path)}"
    check = getattr(model, "check_fitted", None)
    if callable(check):
        check(where=where)
    classes = getattr(model, "classes_", None)
    if classes is None:
        return
    owner = type(model).__name__
    if isinstance(classes, np.ndarray):
        if classes.size and classes.dtype.itemsize == 0:
            raise ModelFileError(
                f"{where}: {owner}.classes_ has dtype {classes.dtype.str!r} (zero bytes per label), "
                "not class labels"
            )
        count = classes.size
    else:
        try:
            count = len(classes)
        except TypeError:  # a scalar: listed as it is
            return
    if count > MAX_LISTED_CLASSES:
        raise ModelFileError(
            f"{where}: {owner}.classes_ holds {count:,} labels, more than the {MAX_LISTED_CLASSES:,} "
            "a model file lists"
        )


def save(model, path) -> Path:
    """Write ``model`` (fitted Pipeline or estimator) to ``path`` atomically, skops format.

    The file is a skops zip with one more member, ``bowlrp.json``: format,
    bowlrp version, kind, config, classes and the SHA-256 of every skops member
    (``members``) and of that list (``payload_sha256``). It is created with mode
    ``0o666 & ~umask`` (see :mod:`bowlrp._utils.atomic`).

    Before anything is serialized, the model's ``check_fitted`` (if it has one)
    checks its fitted attributes as :func:`load` will, and ``classes_`` must be
    listable in the metadata (at most :data:`MAX_LISTED_CLASSES` labels, none of
    zero bytes): a model ``load`` would refuse, or whose crafted arrays cost
    nothing in memory but take forever to write (``np.empty(10**15, "V0")``), is
    refused in one line and no file (or temporary file) is created.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ModelFileError
        ``"not saving <path>: <Class>.<attribute> ..."``, naming the attribute.
    """
    path = Path(os.fsdecode(path))
    _check_savable(model, path)
    config = getattr(model, "config", None)
    payload = {
        "format": FORMAT,
        "bowlrp_version": __version__,
        "kind": type(model).__name__,
        "config": config,
        "model": model,
    }
    buffer = io.BytesIO()
    sio.dump(payload, buffer)
    with zipfile.ZipFile(buffer) as zf:
        members = {}
        for info in zf.infolist():
            h = hashlib.sha256()
            with zf.open(info) as fh:
                for block in iter(lambda fh=fh: fh.read(_CHUNK), b""):
                    h.update(block)
            members[info.filename] = h.hexdigest()
    meta = {
        "format": FORMAT,
        "format_version": META_FORMAT_VERSION,
        "bowlrp_version": __version__,
        "kind": type(model).__name__,
        "config": _jsonable(config),
        "classes": _classes_of(model),
        "members": members,
        "payload_sha256": _manifest_digest(members),
    }
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(META_NAME, json.dumps(meta, indent=1, sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getbuffer())
    return path


def file_hash(path) -> str:
    """SHA-256 of a file (identifies the model an explanation came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# -- reading: checks that construct nothing -------------------------------------------------------
def _open_checked(path: Path, max_bytes: int | None):
    """Open ``path`` after the existence and size checks; return (file object, size, kind)."""
    shown = display_path(path)
    try:
        if not path.is_file():
            raise ModelFileError(f"model file not found: {shown}")
        fh = open(path, "rb")
    except OSError as exc:
        raise ModelFileError(f"cannot open model file {shown}: {exc.strerror or exc}") from None
    try:
        size = os.fstat(fh.fileno()).st_size
        limit = _limit(max_bytes, path)
        if size > limit:
            raise ModelFileError(
                f"{shown} is {size:,} bytes, above the model file limit of {limit:,}; "
                "pass max_bytes= or set BOWLRP_MAX_MODEL_BYTES if you expect a model this large"
            )
        head = fh.read(4)
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    kind = "zip" if head[:2] == b"PK" else "pickle" if head[:1] == b"\x80" else "other"
    return fh, size, kind


def _read_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    limit: int,
    shown: str,
    digest: hashlib._Hash | None = None,
    keep: bool = True,
) -> bytes:
    """Stream one member, stopping at its declared size and at ``limit`` (actual-size check)."""
    chunks, n = [], 0
    with zf.open(info) as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            n += len(block)
            if n > info.file_size or n > limit:
                raise ModelFileError(
                    f"{shown}: member {_clean(info.filename)} decompresses to more than its declared "
                    f"{info.file_size:,} bytes or the limit of {limit:,} (zip bomb?)"
                )
            if digest is not None:
                digest.update(block)
            if keep:
                chunks.append(block)
    if n != info.file_size:
        raise ModelFileError(
            f"{shown}: member {_clean(info.filename)} is shorter than declared (truncated or corrupt file)"
        )
    return b"".join(chunks)


def _check_zip(fh, size: int, path: Path, max_bytes: int | None, verify: bool = True, legacy: bool = False):
    """Zip directory and size limits, metadata, hashes. Returns (zipfile, metadata dict)."""
    shown = display_path(path)
    limit = _limit(max_bytes, path)
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(
            f"{shown} is not a readable model file (corrupt or truncated zip: {_first_line(exc)})"
        ) from None
    try:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ModelFileError(f"{shown} has {len(infos):,} zip members (limit {MAX_MEMBERS:,})")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ModelFileError(f"{shown} has duplicate zip members (corrupt or crafted file)")
        total = sum(i.file_size for i in infos)
        budget = min(limit, MAX_EXPANSION * size + (1 << 20))
        big = max(infos, key=lambda i: i.file_size, default=None)
        if big is not None and big.file_size > limit:
            raise ModelFileError(
                f"{shown}: member {_clean(big.filename)} declares {big.file_size:,} "
                f"bytes, above the limit of {limit:,} (zip bomb?)"
            )
        if total > budget:
            raise ModelFileError(
                f"{shown} would expand to {total:,} bytes from {size:,} (limit {budget:,}; zip bomb?)"
            )
        by_name = {i.filename: i for i in infos}
        if META_NAME not in by_name and legacy:
            return zf, None  # trusted=True: a file from bowlrp 0.1.0 (no metadata), sizes checked
        if META_NAME not in by_name:
            raise ModelFileError(
                f"{shown} is not a bowlrp model file (no {META_NAME} metadata; "
                "files are written by bowlrp.save)"
            )
        raw = _read_member(zf, by_name[META_NAME], min(limit, MAX_META_BYTES), shown)
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ModelFileError(f"{shown}: {META_NAME} is not valid JSON (corrupt file)") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelFileError(f"{shown} is not a bowlrp model file (no bowlrp header)")
        version = meta.get("format_version")
        if type(version) is not int or version != META_FORMAT_VERSION:
            raise ModelFileError(
                f"{shown} uses model file format version {_clean(version, 20)}; this bowlrp "
                f"{__version__} reads version {META_FORMAT_VERSION} only: install the bowlrp that wrote "
                f"it (it says {_clean(meta.get('bowlrp_version'), 20)}) or retrain the model"
            )
        members = meta.get("members")
        if not isinstance(members, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in members.items()
        ):
            raise ModelFileError(f"{shown}: {META_NAME} lists no member hashes (corrupt file)")
        if verify:
            present = set(names) - {META_NAME}
            if present != set(members):
                odd = sorted(present ^ set(members))[0]
                raise ModelFileError(
                    f"{shown}: zip member {_clean(odd)} is missing or not listed "
                    "in the metadata (corrupt or modified file)"
                )
            if meta.get("payload_sha256") != _manifest_digest(members):
                raise ModelFileError(
                    f"{shown}: stored payload hash does not match its member list (corrupt or modified file)"
                )
            for name in sorted(present):
                digest = hashlib.sha256()
                _read_member(zf, by_name[name], limit, shown, digest, keep=False)
                if digest.hexdigest() != members[name]:
                    raise ModelFileError(
                        f"{shown}: member {_clean(name)} does not match its stored "
                        "SHA-256 (corrupt or modified file)"
                    )
    except ModelFileError:
        zf.close()
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        zf.close()
        raise ModelFileError(f"{shown} is not a readable model file ({_first_line(exc)})") from None
    return zf, meta


def _schema_types(zf: zipfile.ZipFile, path: Path, limit: int) -> tuple[set[tuple[str, str]], Counter[str]]:
    """Every ``(loader, type name)`` in the skops object tree, read as JSON (nothing imported).

    Returns
    -------
    found : set of (str, str)
        The ``(loader, type name)`` pairs.
    references : Counter
        Zip member name -> number of array nodes that read it (each one is read and built
        separately, shared ``__id__`` or not).
    """
    shown = display_path(path)
    try:
        info = zf.getinfo("schema.json")
    except KeyError:
        raise ModelFileError(f"{shown} is not a bowlrp model file (no skops schema)") from None
    raw = _read_member(zf, info, min(limit, MAX_SCHEMA_BYTES), shown)
    try:
        schema = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ModelFileError(f"{shown}: schema.json is not valid JSON (corrupt file)") from None
    found: set[tuple[str, str]] = set()
    references: Counter[str] = Counter()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
                if not all(isinstance(s, str) for s in (loader, module, cls)):
                    raise ModelFileError(f"{shown}: malformed skops node (corrupt or crafted file)")
                found.add((loader, f"{module}.{cls}"))
                if loader == "NdArrayNode" and node.get("type") == "numpy":
                    member = node.get("file")
                    if not isinstance(member, str):
                        raise ModelFileError(f"{shown}: malformed skops array node (corrupt or crafted file)")
                    references[member] += 1
                if loader == "MethodNode":
                    content = node.get("content")
                    func = content.get("func") if isinstance(content, dict) else None
                    found.add((loader, f"{module}.{cls}.{func}"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found, references


def _npy_nbytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str) -> int:
    """Bytes of the array a ``.npy`` member declares (shape x itemsize), from its header only.

    The header must account for the member exactly (header + data = member size), so a
    small member cannot declare a huge array.
    """
    name = _clean(info.filename)
    try:
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f".npy format version {version} (bowlrp writes 1.0 and 2.0)")
            header = fh.tell()
    except (ValueError, TypeError, SyntaxError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(
            f"{shown}: array member {name} has no readable .npy header ({_first_line(exc)}; "
            "corrupt or crafted file)"
        ) from None
    nbytes = math.prod(shape) * dtype.itemsize
    if header + nbytes != info.file_size:
        raise ModelFileError(
            f"{shown}: array member {name} declares shape {_clean(shape, 60)} of {dtype.str} "
            f"({nbytes:,} bytes) but holds {info.file_size - header:,} (corrupt or crafted file)"
        )
    return nbytes


def _check_allocation(
    zf: zipfile.ZipFile, references: Counter[str], size: int, limit: int, path: Path
) -> int:
    """Refuse a file whose array nodes would allocate more than the budget; return the estimate.

    skops reads a member into memory for every array node that names it and builds a new
    array from each read, so loading allocates, per reference, the member's size plus the
    array's ``shape x itemsize``. The sum may be at most ``limit`` and at most twice the zip
    budget (``2 * (MAX_EXPANSION * size + 1 MiB)``): a file written by :func:`save`
    allocates about twice its size.
    """
    shown = display_path(path)
    estimate = 0
    for name, count in references.items():
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise ModelFileError(
                f"{shown}: an array node reads member {_clean(name)}, which is not in the file "
                "(corrupt or crafted file)"
            ) from None
        estimate += count * (info.file_size + _npy_nbytes(zf, info, shown))
    n = sum(references.values())
    what = f"about {estimate:,} bytes ({n:,} array reads of {len(references):,} members)"
    if estimate > limit:
        raise ModelFileError(
            f"{shown}: loading it would allocate {what}, above the model file limit of {limit:,}; "
            "pass max_bytes= or set BOWLRP_MAX_MODEL_BYTES if you expect a model this large"
        )
    budget = 2 * (MAX_EXPANSION * size + (1 << 20))
    if estimate > budget:
        raise ModelFileError(
            f"{shown}: loading it would allocate {what} from a {size:,}-byte file, more than "
            f"{2 * MAX_EXPANSION} times its size (members read many times: crafted file?); raise "
            "bowlrp.model_files.MAX_EXPANSION only if you trust its source"
        )
    return estimate


def _audit(found: set[tuple[str, str]], trusted_names: frozenset[str], path: Path) -> list[str]:
    """Refuse any (loader, type) not allowed; return the type names to hand to skops."""
    unknown, misbuilt = set(), set()
    for loader, name in found:
        if name in trusted_names or current_type_name(name) in trusted_names:
            continue
        allowed = ALLOWED_TYPES.get(current_type_name(name))  # a 0.1 file names the old module paths
        if allowed is None:
            unknown.add(name)
        elif loader not in allowed and loader != "CachedNode":
            misbuilt.add(f"{name} (built by {loader})")
    if unknown or misbuilt:
        bad = sorted(unknown) + sorted(misbuilt)
        first = _clean(sorted(unknown)[0] if unknown else sorted(misbuilt)[0].split(" ")[0])
        shown = ", ".join(_clean(b, 80) for b in bad[:3]) + (
            f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        )
        raise ModelFileError(
            f"{display_path(path)} contains types bowlrp model files do not contain: {shown}; refusing "
            f"to load it (pass trusted=[{first!r}] or --trust {first} only if you trust the file's "
            "source)"
        )
    return sorted({name for _, name in found})


#: (major, minor) versions whose files this bowlrp reads besides its own: 0.2 moved modules
#: but changed no estimator, so a 0.1 file's types are read under their new names
READABLE_VERSIONS = frozenset({(0, 1)})


def _check_version(meta_version, path: Path) -> None:
    try:
        written = _major_minor(meta_version)
        compatible = written == _major_minor(__version__) or written in READABLE_VERSIONS
    except (ValueError, IndexError, TypeError):
        compatible = False
    if not compatible:
        shown_version = _clean(meta_version, 40)
        raise ModelFileError(
            f"{display_path(path)} was written by bowlrp {shown_version}; this is bowlrp {__version__}: "
            f"retrain the model or install bowlrp=={shown_version}"
        )


# -- reading: public ------------------------------------------------------------------------------
def model_info(
    path, trusted: bool | Sequence[str] = False, *, verify: bool = True, max_bytes: int | None = None
) -> dict:
    """Metadata of a model file, read from its JSON member; no object is constructed.

    With ``verify`` (default) the file is checked exactly as :func:`load`
    checks it -- sizes, hashes, and the object tree's types against the
    allowlist (read as JSON) -- so a file ``model_info`` accepts is one
    ``load`` will build without running anything outside the allowlist.

    Parameters
    ----------
    path : str or Path
    trusted : bool or sequence of str
        Extra type names to accept, as for :func:`load`.
    verify : bool
        Check every member against its stored SHA-256 (reads the whole file
        as a stream; memory stays at a few MB) and audit the types.
    max_bytes : int or None
        File-size and decompressed-size limit (default :data:`MAX_MODEL_BYTES`).

    Returns
    -------
    dict
        ``format``, ``format_version``, ``bowlrp_version``, ``kind``, ``config``,
        ``classes`` (list or None) and ``sha256`` (the stored payload hash).

    Raises
    ------
    ModelFileError
        Missing, oversized, corrupt or non-bowlrp file (one line naming it).
    """
    path = Path(os.fsdecode(path))
    fh, size, kind = _open_checked(path, max_bytes)
    with fh:
        if kind == "pickle":
            raise ModelFileError(
                f"{display_path(path)} is a pickle file, which has no readable "
                "metadata; re-save it with bowlrp.save"
            )
        if kind != "zip":
            raise ModelFileError(f"{display_path(path)} is not a bowlrp model file")
        zf, meta = _check_zip(fh, size, path, max_bytes, verify=verify)
        with zf:
            if verify:
                trust_all, trusted_names = _trusted_names(trusted)
                limit = _limit(max_bytes, path)
                found, references = _schema_types(zf, path, limit)
                if not trust_all:
                    _audit(found, trusted_names, path)
                _check_allocation(zf, references, size, limit, path)
    return {
        "format": meta.get("format"),
        "format_version": meta.get("format_version"),
        "bowlrp_version": meta.get("bowlrp_version"),
        "kind": meta.get("kind"),
        "config": meta.get("config"),
        "classes": meta.get("classes"),
        "sha256": meta.get("payload_sha256"),
    }


def load(path, trusted: bool | Sequence[str] = False, *, max_bytes: int | None = None):
    """Load a model written by :func:`save`, constructing only allowed types.

    Parameters
    ----------
    path : str or Path
    trusted : bool or sequence of str
        ``False`` (default): only the exact types in
        :data:`ALLOWED_TYPES`. A list of type names
        (skops semantics, e.g. ``["sklearn.preprocessing._data.StandardScaler"]``)
        additionally allows those exact types. ``True`` trusts every type in
        the file and is the only way to load a real pickle file or a file
        written by bowlrp 0.1.0 without metadata (re-save it with :func:`save`);
        both can run arbitrary code, and a warning is issued.
    max_bytes : int or None
        File-size and decompressed-size limit (default :data:`MAX_MODEL_BYTES`,
        environment variable ``BOWLRP_MAX_MODEL_BYTES``).

    Raises
    ------
    ModelFileError
        Missing or oversized file, zip bomb, corrupt or truncated file, hash
        mismatch, not a bowlrp model, a type that is neither allowed nor
        trusted, a pickle without ``trusted=True``, or a file written by an
        incompatible bowlrp version. Always one line naming the file.
    """
    path = Path(os.fsdecode(path))
    shown = display_path(path)
    trust_all, trusted_names = _trusted_names(trusted)
    fh, size, kind = _open_checked(path, max_bytes)
    with fh:
        if kind == "pickle":
            if not trust_all:
                raise ModelFileError(
                    f"{shown} is a pickle file, which can run arbitrary code when loaded; "
                    "re-save it with bowlrp.save, or load(..., trusted=True) if you trust its source"
                )
            warnings.warn(f"unpickling {shown}: only do this for files you trust", stacklevel=2)
            try:
                payload = Unpickler(fh).load()  # noqa: S301 - explicit trusted=True; 0.1 paths mapped
            except Exception as exc:
                raise ModelFileError(f"{shown} could not be unpickled ({_first_line(exc)})") from None
            if not isinstance(payload, dict) or payload.get("format") != FORMAT:
                return payload
            _check_version(payload.get("bowlrp_version", "?"), path)
            return _checked(payload["model"], shown)
        if kind != "zip":
            raise ModelFileError(f"{shown} is not a bowlrp model file")
        limit = _limit(max_bytes, path)
        zf, meta = _check_zip(fh, size, path, max_bytes, legacy=trust_all)
        with zf:
            if meta is not None:
                _check_version(meta.get("bowlrp_version", "?"), path)
            found, references = _schema_types(zf, path, limit)
            if trust_all:
                warnings.warn(
                    f"trusting every type in {shown}: only do this for files you trust", stacklevel=2
                )
                names = sorted({name for _, name in found})
            else:
                names = _audit(found, trusted_names, path)
            _check_allocation(zf, references, size, limit, path)
        fh.seek(0)
        try:
            alias_quietly(names)  # a 0.1 file names the old module paths: no warning for them
            payload = sio.load(fh, trusted=names)
        except MemoryError:
            raise ModelFileError(f"{shown}: out of memory while loading the model") from None
        except Exception as exc:
            raise ModelFileError(
                f"{shown} could not be read as a bowlrp model ({_first_line(exc)})"
            ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "model" not in payload:
        raise ModelFileError(f"{shown} is not a bowlrp model file (no bowlrp header)")
    model = payload["model"]
    if meta is None:
        _check_version(payload.get("bowlrp_version", "?"), path)
    else:
        _cross_check(meta, payload, model, path)
    return _checked(model, shown)


def _checked(model, shown: str):
    """The loaded model after its stages checked their fitted attributes (dtype, shape, finite,
    in range, consistent with each other); one line naming the file and the attribute."""
    check = getattr(model, "check_fitted", None)
    if check is not None:
        check(where=shown)
    return model


def _cross_check(meta: dict, payload: dict, model, path: Path) -> None:
    """Refuse metadata that does not describe the object built (``model_info`` would report it).

    :func:`save` records kind, config and classes of the model in ``bowlrp.json``, and kind
    and version both there and in the skops payload: the metadata must agree with the model
    and with the payload. (The payload's own ``config`` entry is a copy nothing reads.)
    """
    shown = display_path(path)
    kind = type(model).__name__
    recorded = {
        "kind": (meta.get("kind"), kind),
        "payload kind": (meta.get("kind"), payload.get("kind")),
        "bowlrp_version": (meta.get("bowlrp_version"), payload.get("bowlrp_version")),
        "classes": (meta.get("classes"), _classes_of(model)),
        "config": (meta.get("config"), getattr(model, "config", None)),
    }
    for field, (said, held) in recorded.items():
        if _canonical(said) != _canonical(held):
            where = (
                "the file holds"
                if field.startswith("payload") or field == "bowlrp_version"
                else "the model has"
            )
            raise ModelFileError(
                f"{shown}: metadata says {field.removeprefix('payload ')} {_clean(_canonical(said), 60)} "
                f"but {where} {_clean(_canonical(held), 60)} (corrupt or modified file; get a fresh copy "
                "from its source)"
            )
