"""Explain (and evaluate) whole data sets on Dask (``dask.distributed``) into a relevance store.

One task per image (or per small batch of images) runs on a worker; the
task loads the model once per worker process (a cache keyed by the model's
hash), explains its images with :func:`explain_into_store` —
the same per-image function the serial loop (``workers=None``) and
:func:`bowlrp.runs.folder.explain_to_folder` use — writes each record into the
store itself and returns a small status. Workers write the store at once
(each image its own Zarr group); the driver only submits, counts and
shows progress.

Fault tolerance: a finished image has its ``done`` marker, so a rerun
(after ``kill -9`` of the driver) skips it and recomputes everything else,
rewriting half-written groups. A worker that dies mid-task loses nothing:
the scheduler reruns its tasks elsewhere (``retries`` covers exceptions of
the task machinery; a failing *image* is recorded in the store as failed
and does not raise).

Use ``workers=N`` for a ``LocalCluster`` of N processes with one thread
each, ``scheduler="tcp://host:8786"`` for a running cluster (its workers
must reach the model file and the store, e.g. on shared storage), or
``client=`` for a ``distributed.Client`` you already hold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
from tqdm.auto import tqdm

from .._utils.parallel import bound_n_jobs, usable_cores
from .._utils.validation import display_path
from ..model_files import file_hash, load
from .inputs import ImageInput, InputError, collect_inputs
from .step import RunCounts, explain_image, failure_message
from .store import DEFAULT_GRID, RelevanceStore, is_local, store_lock

_MODELS: dict[tuple, object] = {}  # per worker process: model hash + trust -> Pipeline


@dataclass(kw_only=True)
class StoreRunSummary(RunCounts):
    """What a run into a store did."""

    store: str
    workers: int = 0

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "total": self.total,
            "explained": len(self.explained),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
        }


@dataclass(frozen=True)
class ModelFile:
    """A model file a worker loads itself (once per process), with the CLI's trust rules."""

    path: str
    sha256: str
    trusted: bool = False
    trust: tuple[str, ...] = ()

    def load(self):
        key = (self.sha256, self.trusted, self.trust)
        model = _MODELS.get(key)
        if model is None:
            if file_hash(self.path) != self.sha256:
                raise RuntimeError(f"model file {display_path(self.path)} changed during the run")
            model = (
                load(self.path, trusted=True)
                if self.trusted
                else load(self.path, trusted=list(self.trust) or False)
            )
            if not hasattr(model, "explain"):
                raise TypeError(
                    f"{display_path(self.path)} holds a {type(model).__name__}, not a bowlrp Pipeline"
                )
            bound_n_jobs(model, 1)  # a worker is one process with one thread: no nested parallelism
            _MODELS.clear()  # one model per worker at a time
            _MODELS[key] = model
        return model


def model_hash_of(model) -> str:
    """SHA-256 of a model file, or a content hash (joblib) of an in-memory Pipeline."""
    if isinstance(model, (str, os.PathLike)):
        return file_hash(model)
    if isinstance(model, ModelFile):
        return model.sha256
    return "joblib:" + joblib.hash(model)


def _resolve(model_ref):
    return model_ref.load() if isinstance(model_ref, ModelFile) else model_ref


def _explain_task(
    model_ref, items: list[ImageInput], location: str, explain_kwargs: dict, model_hash: str
) -> list[dict]:
    """A Dask task: explain ``items`` into the store at ``location``; one status per image."""
    store = RelevanceStore.open(location, "r+")
    model = _resolve(model_ref)
    return [explain_into_store(model, item, store, explain_kwargs, model_hash) for item in items]


def start_client(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    memory_limit: str | None = "auto",
    silence_logs: int | None = None,
):
    """A ``distributed.Client`` on a new LocalCluster (``workers`` processes, 1 thread each)
    or connected to ``scheduler``; returns ``(client, cluster_or_None)``.

    A local cluster takes at most one worker per usable core (:func:`check_local_workers`).
    """
    if not scheduler:
        check_local_workers(workers)
    from distributed import Client, LocalCluster  # dask.distributed: ~0.6 s to import, only for clusters

    if scheduler:
        return connect_scheduler(scheduler, Client), None
    with warnings.catch_warnings():  # the scheduler's HTTP port moves on if 8787 is taken: fine
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=memory_limit,
            silence_logs=silence_logs if silence_logs is not None else logging.ERROR,
        )
    return Client(cluster), cluster


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, client=None):
    """The client a run uses, started (and closed after) only when the run owns it.

    Yields ``client`` as given, None for a serial run (no ``workers``, no
    ``scheduler``), or a client of :func:`start_client`, closed with its local
    cluster on leaving. A run enters this *before* it creates its output, so a
    scheduler that cannot be reached is a one-line error that leaves nothing behind.
    """
    if client is not None or (scheduler is None and not workers):
        yield client
        return
    own, cluster = start_client(workers, scheduler)
    try:
        yield own
    finally:
        own.close()
        if cluster is not None:
            cluster.close()


class SchedulerError(ConnectionError):
    """The ``--scheduler`` address is unreachable or is not a Dask scheduler (one line)."""


#: Seconds a scheduler has to answer: to accept the connection and to send its handshake.
SCHEDULER_TIMEOUT = 10.0
#: A Dask handshake frame is a few kB; a first message claiming more is not from Dask.
_MAX_HANDSHAKE_BYTES = 1 << 26


def _probe_tcp(address: str, host: str, port: int, timeout: float) -> None:
    """Refuse a TCP address that does not greet like a Dask scheduler (raw socket, bounded time).

    A scheduler writes its handshake frame as soon as a connection is accepted, starting
    with the frame lengths' total as a little-endian uint64. An HTTP server sends nothing
    until asked, and its reply (``HTTP/1.0 400 ...``) read as that length is 3.07 EiB,
    which Dask then tries to allocate; here it is a one-line error instead.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        raise SchedulerError(
            f"{address} is not a Dask scheduler: it accepted the connection but sent no Dask "
            f"handshake within {timeout:g} s (an HTTP server? the dashboard port?); give the "
            "scheduler's own address, usually tcp://host:8786"
        ) from None
    except OSError as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address}: {exc.strerror or exc}") from None
    if len(head) < 8:
        raise SchedulerError(
            f"{address} is not a Dask scheduler: it closed the connection without a Dask handshake"
        )
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= _MAX_HANDSHAKE_BYTES:
        shown = head.decode("ascii", "replace")
        hint = " (an HTTP server?)" if head.startswith(b"HTTP/") else ""
        raise SchedulerError(
            f"{address} is not a Dask scheduler: it answered {shown!r}...{hint}; give the "
            "scheduler's own address, usually tcp://host:8786"
        )


def connect_scheduler(address: str, client_class=None, timeout: float | None = None):
    """A ``distributed.Client`` connected to the scheduler at ``address``, in bounded time.

    Raises
    ------
    SchedulerError
        One line naming the address: nothing listens there, it is not a Dask scheduler
        (e.g. an HTTP server), or it did not answer within ``timeout`` seconds.
    """
    if client_class is None:
        from distributed import Client as client_class  # dask.distributed: ~0.6 s, only for clusters
    timeout = SCHEDULER_TIMEOUT if timeout is None else float(timeout)
    shown = display_path(address)
    try:
        from distributed.comm.addressing import parse_address, parse_host_port  # as above

        scheme, location = parse_address(address)
        host, port = parse_host_port(location) if scheme == "tcp" else (None, None)
    except (ValueError, TypeError) as exc:
        raise SchedulerError(f"not a Dask scheduler address: {shown} ({str(exc).splitlines()[0]})") from None
    if scheme == "tcp" and port:
        _probe_tcp(shown, host, int(port), timeout)
    try:
        return client_class(address, timeout=timeout)
    except (MemoryError, OSError, TimeoutError, ValueError, AssertionError, KeyError, TypeError) as exc:
        # Dask reading a foreign reply: "Unable to allocate 3.07 EiB", a failed assert, ...
        detail = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, MemoryError) or not isinstance(exc, (OSError, TimeoutError)):
            raise SchedulerError(
                f"{shown} is not a Dask scheduler (its reply is not Dask's protocol: {detail[:120]})"
            ) from None
        raise SchedulerError(f"cannot connect to the Dask scheduler at {shown}: {detail[:160]}") from None


def check_local_workers(workers) -> int:
    """The number of local worker processes, refused (one-line ValueError) above the usable cores.

    Each worker is one process with one thread that holds the model: more workers than
    cores only add memory and start-up time (1,000 asked for 47 processes and 2.9 GB in
    45 s before anything was refused). More machines are reached with a scheduler.
    """
    cores = usable_cores()
    try:
        n = int(workers)
    except (TypeError, ValueError):
        raise ValueError(f"the number of workers must be a whole number, got {workers!r}") from None
    if n < 1 or n > cores:
        raise ValueError(
            f"{n} local workers asked for, but this machine runs {cores} at a time: use 1 to {cores} "
            "(--workers), or a Dask scheduler for more machines (--scheduler)"
        )
    return n


def as_inputs(images, exclude=None) -> list[ImageInput]:
    """``ImageInput`` list from inputs or file/folder/glob names; ids must be unique."""
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    images = list(images)
    if images and not all(isinstance(i, ImageInput) for i in images):
        images = collect_inputs([str(i) for i in images], exclude=exclude)
    seen: set[str] = set()
    for item in images:
        if item.id in seen:
            raise InputError(f"image id {item.id!r} occurs twice; ids name records and must be unique")
        seen.add(item.id)
    return images


def run_on_store(
    todo: Sequence[ImageInput],
    task: Callable,
    task_args: tuple,
    one: Callable,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    batch_size: int = 1,
    retries: int = 3,
    progress: bool = True,
    desc: str = "images",
    on_status: Callable[[dict], None] | None = None,
    on_lost=None,
) -> int:
    """Run ``todo`` serially (``one(item)``) or as Dask tasks ``task(*task_args[:1], batch,
    *task_args[1:])``; call ``on_status`` with each image's status. Returns the worker count (0: serial).

    ``on_lost(item, message)`` is called for the images of a task that could
    not be completed at all (e.g. its worker was killed more often than the
    scheduler allows).
    """
    say = on_status or (lambda status: None)
    serial = client is None and scheduler is None and not workers
    own = client is None and not serial
    cluster = None
    if own:  # before the bar: a scheduler that cannot be reached is one line, not a line after a bar
        client, cluster = start_client(workers, scheduler)
    try:
        bar = tqdm(total=len(todo), desc=desc, unit="image", disable=not progress, file=sys.stderr)
        try:
            if serial:
                for item in todo:
                    say(one(item))
                    bar.update(1)
                return 0
            from distributed import as_completed  # only with a cluster (see start_client)

            batches = [list(todo[i : i + batch_size]) for i in range(0, len(todo), max(1, batch_size))]
            head, *rest = task_args
            if not isinstance(head, ModelFile) and not isinstance(head, (str, bytes)):
                head = client.scatter(head, broadcast=True, hash=False)
            run_id = uuid.uuid4().hex[:8]
            futures = {
                client.submit(
                    task, head, batch, *rest, key=f"bowlrp-{desc}-{run_id}-{i}", retries=retries, pure=False
                ): batch
                for i, batch in enumerate(batches)
            }
            # asked of the scheduler now: when its fresh query fails (an OSError under
            # load), scheduler_info() silently answers from the client's periodic cache,
            # which lists no worker (distributed 2026.8), and the run reported 0 workers
            n_workers = len(client.nthreads())
            for future in as_completed(futures):
                batch = futures.pop(future)
                try:
                    statuses = future.result()
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - the task itself could not be completed
                    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    statuses = []
                    for item in batch:
                        line = f"{display_path(item.path)}: task failed: {message}"
                        if on_lost is not None:
                            on_lost(item, line)
                        statuses.append({"id": item.id, "status": "failed", "error": line})
                for status in statuses:
                    say(status)
                bar.update(len(batch))
                future.release()
            return n_workers
        finally:
            bar.close()
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def explain_to_store(
    images,
    model,
    store,
    *,
    targets=None,
    rules=None,
    tile: int | None = None,
    stride: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    progress: bool = True,
    overwrite: bool = False,
    grid: int = DEFAULT_GRID,
    trusted: bool = False,
    trust: Sequence[str] = (),
    model_hash: str | None = None,
    batch_size: int = 1,
    retries: int = 3,
    extra_key: dict | None = None,
    report: Callable[[str], None] | None = None,
) -> StoreRunSummary:
    """Explain ``images`` into the relevance store ``store``, serially or on Dask.

    Parameters
    ----------
    images : list of ImageInput, or file / folder / glob names (:func:`bowlrp.runs.inputs.collect_inputs`)
    model : model file path (workers load it themselves, with ``trusted`` / ``trust`` as
        :func:`bowlrp.model_files.load`) or a fitted Pipeline (sent to each worker once)
    store : path or fsspec URL of the Zarr store (created; locked for the run when local)
    targets : label, list of labels or None
        None explains each image's predicted class; a list explains every
        label from one forward pass (one heatmap each).
    rules, tile, stride : as :meth:`bowlrp.Pipeline.explain`
    workers : int or None
        None or 0: serial, in this process. N: a LocalCluster of N processes, 1 thread each.
    scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``) instead.
    client : distributed.Client or None
        Use this client (not closed here).
    overwrite : bool
        Replace the results of a run with another model or other settings.
    grid : int
        Side of the pooled maps kept for SpRAy.
    batch_size : int
        Images per task (1: one task per image).
    retries : int
        Dask retries of a task whose worker raised (a killed worker is
        rescheduled by the scheduler in any case).

    Returns
    -------
    StoreRunSummary

    Raises
    ------
    StoreMismatch, LockedError, InputError
    """
    started = time.perf_counter()
    target_list = (
        None if targets is None else (list(targets) if isinstance(targets, (list, tuple)) else [targets])
    )
    local_model = not isinstance(model, (str, os.PathLike))
    digest = model_hash or model_hash_of(model)
    run_key = {**store_run_key(digest, target_list, rules, tile, stride), **(extra_key or {})}
    location = str(os.fspath(store)) if not isinstance(store, RelevanceStore) else store.location
    inputs = as_inputs(images, exclude=location if is_local(location) else None)
    explain_kwargs = {"target": target_list, "rules": rules, "tile": tile, "stride": stride}
    say = report or (lambda line: None)
    summary = StoreRunSummary(store=location, run_key=run_key, total=len(inputs))
    with (
        dask_client(workers, scheduler, client) as client,  # before the store: see dask_client
        store_lock(location, "bowlrp-explain"),
    ):
        st = RelevanceStore.create(location, run_key, grid=grid, overwrite=overwrite)
        todo = []
        for item in inputs:
            if st.is_done(item.id):
                summary.skipped.append(item.id)
            else:
                todo.append(item)
        if summary.skipped:
            say(f"{len(summary.skipped)} of {len(inputs)} images done before, skipped")
        if local_model:
            model_ref = model
            serial_model = model
        else:
            model_ref = ModelFile(str(Path(model).resolve()), digest, bool(trusted), tuple(trust))
            serial_model = None

        def one(item):
            nonlocal serial_model
            if serial_model is None:
                serial_model = model_ref.load()
            return explain_into_store(serial_model, item, st, explain_kwargs, digest)

        def on_status(status):
            if status["status"] == "explained":
                summary.explained.append(status["id"])
            else:
                summary.failed.append({k: status.get(k) for k in ("id", "error")})
                say(f"error: {status['error']}")

        by_id = {item.id: item for item in todo}

        def on_lost(item, message):
            st.write_failure(by_id[item.id], message)

        try:
            summary.workers = run_on_store(
                todo,
                _explain_task,
                (model_ref, location, explain_kwargs, digest),
                one,
                workers=workers,
                scheduler=scheduler,
                client=client,
                batch_size=batch_size,
                retries=retries,
                progress=progress,
                desc="explaining",
                on_status=on_status,
                on_lost=on_lost,
            )
            summary.status = "failed" if summary.failed else "complete"
        except KeyboardInterrupt:
            summary.status = "interrupted"
            raise
        finally:
            summary.seconds = time.perf_counter() - started
            st.set_run(summary.as_dict())
    return summary


def store_run_key(model_hash: str, targets, rules=None, tile=None, stride=None) -> dict:
    """The settings a store's records depend on (compared on resume)."""
    if targets is not None and not isinstance(targets, (list, tuple)):
        targets = [targets]
    return {
        "model_sha256": model_hash,
        "targets": None if targets is None else [str(t) for t in targets],
        "rules": [repr(r) for r in _rule_list(rules)],
        "tile": tile,
        "stride": stride,
    }


def _rule_list(rules) -> list:
    if rules is None:
        return []
    if isinstance(rules, dict):
        return [f"{k}={v!r}" for k, v in sorted(rules.items())]
    return list(rules) if isinstance(rules, (list, tuple)) else [rules]


def explain_into_store(
    model, item: ImageInput, store: RelevanceStore, explain_kwargs: dict | None, model_hash: str
) -> dict:
    """Explain one image and write its record, or record its failure; never raises for the image.

    The same function runs in the serial loop and in every Dask task
    (:func:`explain_to_store`), so both write identical records.

    Returns
    -------
    dict
        ``{"id", "status": "explained" | "failed", "error"?, "seconds"}``.
    """
    started = time.perf_counter()
    try:
        _, explanations = explain_image(model, item, explain_kwargs)
        store.write(item, explanations, model_hash=model_hash)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - a bad image is recorded and the run goes on
        message = failure_message(item, exc)
        store.write_failure(item, message)
        return {"id": item.id, "status": "failed", "error": message, "seconds": time.perf_counter() - started}
    return {"id": item.id, "status": "explained", "seconds": time.perf_counter() - started}
