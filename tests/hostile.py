"""Hostile model files, built programmatically (skops states written by hand, zipfile).

Every code-running payload writes or touches ``sentinel`` when it runs, so a
test can prove that nothing ran by checking that the file does not exist.
``live_payloads`` lists the ones that do run when skops is told to trust every
type they contain (checked in a subprocess by the tests, so the corpus is real).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import skops.io as sio


def _json(value) -> dict:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _tuple(*items) -> dict:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(items)}


def _list(*items) -> dict:
    return {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": list(items)}


def _dict(**items) -> dict:
    return {
        "__class__": "dict",
        "__module__": "builtins",
        "__loader__": "DictNode",
        "content": items,
        "key_types": _list(*[_type("builtins", "str") for _ in items]),
    }


def _type(module: str, name: str) -> dict:
    return {"__class__": name, "__module__": module, "__loader__": "TypeNode"}


def _function(module: str, name: str) -> dict:
    return {"__class__": name, "__module__": module, "__loader__": "FunctionNode"}


def _call(module: str, name: str, *args) -> dict:
    """``module.name(*args)`` when constructed (skops ConstructorFromReduceNode)."""
    return {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": _tuple(*args),
    }


def _partial(func: dict, *args) -> dict:
    return {
        "__class__": "partial",
        "__module__": "functools",
        "__loader__": "PartialNode",
        "content": {"func": func, "args": _tuple(*args), "kwds": _dict(), "namespace": _dict()},
    }


def _operator(name: str, *attrs) -> dict:
    return {
        "__class__": name,
        "__module__": "operator",
        "__loader__": "OperatorFuncNode",
        "attrs": _tuple(*attrs),
    }


def _consume(func: dict, *items) -> dict:
    """``list(map(func, items))``: calls ``func`` on each item when constructed."""
    return _call("builtins", "list", _call("builtins", "map", func, _list(*items)))


def payloads(sentinel: Path, tmp: Path) -> dict[str, dict]:
    """Skops states that run code touching ``sentinel`` when built with full trust."""
    s = str(sentinel)
    code = f"open({s!r}, 'w').write('ran')"
    shell = f"touch '{s}'"
    evil_pickle = tmp / "evil_for_numpy_load.npy"
    evil_pickle.write_bytes(pickle.dumps(_Touch(s)))
    return {
        "builtins.exec": _call("builtins", "exec", _json(code)),
        "builtins.eval": _call("builtins", "eval", _json(f"exec({code!r})")),
        "builtins.open": _call("builtins", "open", _json(s), _json("w")),
        "posix.system": _call("posix", "system", _json(shell)),
        "os.system": _call("os", "system", _json(shell)),
        "numpy.savetxt": _call("numpy", "savetxt", _json(s), _list(_json(1.0))),
        "numpy.load": _call("numpy", "load", _json(str(evil_pickle)), _json(None), _json(True)),
        "functools.partial": _consume(_partial(_function("builtins", "exec"), _json(code)), _dict()),
        "operator.methodcaller": _consume(
            _operator("methodcaller", _json("__call__"), _json(shell)), _function("os", "system")
        ),
        "operator.attrgetter": _consume(
            _operator("methodcaller", _json("__call__"), _json(shell)),
            _call(
                "builtins",
                "next",
                _call(
                    "builtins",
                    "map",
                    _operator("attrgetter", _json("os.system")),
                    _list(_function("os", "path")),
                ),
            ),
        ),
        "getattr chain": _consume(
            _operator("methodcaller", _json("__call__"), _json(shell)),
            _call(
                "builtins",
                "getattr",
                _call("builtins", "getattr", _function("os", "path"), _json("os")),
                _json("system"),
            ),
        ),
        # an allowed type built by a loader bowlrp never writes (np.ndarray(shape) would allocate 8 TB)
        "numpy.ndarray via constructor": _call("numpy", "ndarray", _list(_json(1 << 20), _json(1 << 20))),
        # an allowed type with a method call
        "bowlrp method": {
            "__class__": "KernelSVC",
            "__module__": "bowlrp.svm",
            "__loader__": "MethodNode",
            "content": {
                "func": "fit",
                "obj": {"__class__": "KernelSVC", "__module__": "bowlrp.svm", "__loader__": "ObjectNode"},
            },
        },
    }


class _Touch:
    """Unpickling this runs ``open(path, 'w')`` (used inside a pickle for numpy.load)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


LIVE = (
    "builtins.exec",
    "builtins.eval",
    "builtins.open",
    "posix.system",
    "os.system",
    "numpy.savetxt",
    "numpy.load",
    "functools.partial",
    "operator.methodcaller",
    "operator.attrgetter",
    "getattr chain",
)


def _members(zf: zipfile.ZipFile) -> dict[str, str]:
    return {
        i.filename: hashlib.sha256(zf.read(i)).hexdigest()
        for i in zf.infolist()
        if i.filename != "bowlrp.json"
    }


def rewrite(
    valid: bytes,
    schema_edit=None,
    extra: dict[str, bytes] | None = None,
    fix_hashes: bool = True,
    meta_edit=None,
    compression: int = zipfile.ZIP_STORED,
) -> bytes:
    """A copy of a valid bowlrp model file with its schema edited and its metadata re-hashed.

    ``compression`` applies to ``schema.json`` and the ``extra`` members (deflate makes small files).
    """
    from bowlrp.model_files import _manifest_digest

    src = zipfile.ZipFile(io.BytesIO(valid))
    meta = json.loads(src.read("bowlrp.json"))
    schema = json.loads(src.read("schema.json"))
    if schema_edit is not None:
        schema_edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in ("bowlrp.json", "schema.json"):
                continue
            dst.writestr(info.filename, src.read(info))
        dst.writestr("schema.json", json.dumps(schema), compress_type=compression)
        for name, data in (extra or {}).items():
            dst.writestr(name, data, compress_type=compression)
    if fix_hashes:
        with zipfile.ZipFile(out) as z:
            meta["members"] = _members(z)
        meta["payload_sha256"] = _manifest_digest(meta["members"])
    if meta_edit is not None:
        meta_edit(meta)
    with zipfile.ZipFile(out, "a") as dst:
        dst.writestr("bowlrp.json", json.dumps(meta))
    return out.getvalue()


def inject(valid: bytes, node: dict) -> bytes:
    """The valid model with ``node`` as the value of its ``config`` entry (hashes fixed)."""

    def edit(schema):
        schema["content"]["config"] = node

    return rewrite(valid, edit)


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _array_reference(member: str, node_id: int) -> dict:
    """A skops node that reads ``member`` (a .npy file in the zip) into a new array when built."""
    return {
        "__class__": "ndarray",
        "__module__": "numpy",
        "__loader__": "NdArrayNode",
        "type": "numpy",
        "file": member,
        "__id__": node_id,
    }


def shared_references(valid: bytes, references: int = 3000, member_bytes: int = 300_000) -> bytes:
    """The valid model with ``references`` array nodes all reading one ``member_bytes`` .npy member.

    Issue 24, finding 6: every reference is read and built separately (about twice the member's
    size each), so 3,000 references to a 300 KB member of zeros -- a file of about 100 KB with
    deflate -- made loading take 2 GB; the zip budget only counted the member once.
    """
    member = "shared.npy"
    data = _npy(np.zeros(member_bytes // 8))
    refs = _list(*[_array_reference(member, 1_000_000 + i) for i in range(references)])
    return inject_many(valid, refs, extra={member: data})


def lying_npy(valid: bytes, shape: tuple[int, ...] = (1 << 37,)) -> bytes:
    """The valid model with one small .npy member whose header declares ``shape`` float64 (1 TiB)."""
    header = _npy(np.zeros(0))
    fake = header.replace(b"(0,)", repr(tuple(shape)).encode())
    fake = fake[:8] + struct.pack("<H", len(fake) - 10) + fake[10:]
    member = "liar.npy"
    return inject_many(valid, _list(_array_reference(member, 2_000_000)), extra={member: fake + bytes(64)})


def inject_many(valid: bytes, node: dict, extra: dict[str, bytes]) -> bytes:
    """Like :func:`inject` with extra members, schema and extras deflated (hashes fixed)."""

    def edit(schema):
        schema["content"]["config"] = node

    return rewrite(valid, edit, extra=extra, compression=zipfile.ZIP_DEFLATED)


def plain_skops(node: dict) -> bytes:
    """A bare skops file (no bowlrp metadata) holding ``node`` as its root object."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("schema.json", json.dumps({**node, "protocol": 2, "_skops_version": "0.16.0"}))
    return out.getvalue()


def zip_bomb(valid: bytes, mebibytes: int = 64) -> bytes:
    """The valid model plus a deflated member of ``mebibytes`` MiB of zeros (hashes fixed)."""
    from bowlrp.model_files import _manifest_digest

    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    deflated = b"".join(comp.compress(block) for _ in range(mebibytes)) + comp.flush()
    digest = hashlib.sha256()
    for _ in range(mebibytes):
        digest.update(block)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(block, crc)
    size = mebibytes << 20
    src = zipfile.ZipFile(io.BytesIO(valid))
    meta = json.loads(src.read("bowlrp.json"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename != "bowlrp.json":
                dst.writestr(info.filename, src.read(info))
    # append the bomb member by hand (zipfile would need to compress it again)
    data = out.getvalue()
    z = zipfile.ZipFile(io.BytesIO(data))
    cd_offset = z.start_dir
    entries = data[cd_offset : data.rfind(b"PK\x05\x06")]
    name = b"bomb.bin"
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated), size, len(name), 0)
    local_offset = cd_offset
    central = struct.pack(
        "<4s6H3I5H2I",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(deflated),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        local_offset,
    )
    n = len(z.infolist()) + 1
    body = data[:cd_offset] + local + name + deflated
    cd = entries + central + name
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(cd), len(body), 0)
    bomb = body + cd + end
    meta["members"] = {**{k: v for k, v in meta["members"].items()}, "bomb.bin": digest.hexdigest()}
    meta["payload_sha256"] = _manifest_digest(meta["members"])
    buf = io.BytesIO(bomb)
    with zipfile.ZipFile(buf, "a") as dst:
        dst.writestr("bowlrp.json", json.dumps(meta))
    return buf.getvalue()


def declared_huge(valid: bytes, declared: int = 4_300_000_000) -> bytes:
    """The valid model whose schema.json claims ``declared`` bytes in the zip directory."""
    data = bytearray(valid)
    z = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = z.getinfo("schema.json")
    # central directory entry: uncompressed size at offset 24 of the entry
    pos = z.start_dir
    while True:
        (sig,) = struct.unpack("<I", data[pos : pos + 4])
        assert sig == 0x02014B50
        name_len, extra_len, comment_len = struct.unpack("<3H", data[pos + 28 : pos + 34])
        name = bytes(data[pos + 46 : pos + 46 + name_len])
        if name == b"schema.json":
            struct.pack_into("<I", data, pos + 24, min(declared, 0xFFFFFFFE))
            break
        pos += 46 + name_len + extra_len + comment_len
    del info
    return bytes(data)


def corpus(valid: bytes, sentinel: Path, tmp: Path) -> dict[str, bytes]:
    """Name -> file content of every hostile model file."""
    files = {f"inject {k}": inject(valid, v) for k, v in payloads(sentinel, tmp).items()}
    files.update({f"plain {k}": plain_skops(v) for k, v in payloads(sentinel, tmp).items()})
    files["zip bomb (64 MiB of zeros)"] = zip_bomb(valid, 64)
    files["declared 4.3 GB member"] = declared_huge(valid)
    files["truncated zip"] = valid[: len(valid) // 2]
    files["truncated end"] = valid[:-10]
    wrong = bytearray(valid)
    pos = bytes(wrong).find(b"\x93NUMPY")  # flip a byte inside the first array
    wrong[pos + 200] ^= 0xFF
    files["wrong hash (bit flip)"] = bytes(wrong)

    def wrong_member_hash(meta):
        meta["members"]["schema.json"] = "0" * 64

    files["wrong stored member hash"] = rewrite(valid, meta_edit=wrong_member_hash)

    def wrong_payload_hash(meta):
        meta["payload_sha256"] = "0" * 64

    files["wrong stored payload hash"] = rewrite(valid, meta_edit=wrong_payload_hash)

    def not_json(meta):
        meta.clear()

    files["metadata without header"] = rewrite(valid, meta_edit=not_json)
    files["extra member"] = rewrite(valid, extra={"extra.bin": b"x" * 100}, fix_hashes=False)
    from sklearn.linear_model import LogisticRegression

    other = io.BytesIO()
    sio.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), other)
    files["sklearn estimator (other library)"] = other.getvalue()
    plain_dict = io.BytesIO()
    sio.dump({"format": "bowlrp-model", "bowlrp_version": "0.1.0", "kind": "dict", "model": {}}, plain_dict)
    files["skops dict posing as bowlrp"] = plain_dict.getvalue()
    files["pickle"] = pickle.dumps(_Touch(str(sentinel)))
    files["empty"] = b""
    files["text"] = b"hello"
    return files
