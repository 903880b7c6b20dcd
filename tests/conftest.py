import os
import signal

import numpy as np
import pytest
from hypothesis import settings

from bowlrp.descriptors import vlfeat_available

# CI runs the property tests on a fixed sequence of examples so that a CI result can be
# reproduced; locally hypothesis explores new examples on every run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# A suite started with SIGINT ignored (nohup, some CI runners, `cmd &` in a
# non-interactive shell) would pass that on: Ctrl-C tests in this process and the
# programs they start would never see the signal. Tests of interrupts need the
# default: Python's KeyboardInterrupt here, SIG_DFL in children (a handler is reset
# on exec, an ignored signal is not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

needs_vlfeat = pytest.mark.skipif(not vlfeat_available(), reason="cyvlfeat not installed ([vlfeat] extra)")


def stripes(rng, n=64):
    period = rng.integers(3, 6)
    img = ((np.arange(n) // period % 2)[None, :] * 0.8) * np.ones((n, 1))
    if rng.random() < 0.5:
        img = img.T
    return np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)


def blobs(rng, n=64):
    yy, xx = np.mgrid[:n, :n]
    img = np.zeros((n, n))
    for _ in range(max(1, n * n // 800)):
        cy, cx = rng.integers(4, n - 4, 2)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3**2))
    return np.clip(img / img.max() * 0.8 + rng.normal(0, 0.05, img.shape), 0, 1)


def random_descriptors(rng, n=300, dim=8, shape=(50, 60), shapes=(0,)):
    from bowlrp import Descriptors

    return Descriptors(
        data=rng.normal(size=(n, dim)).astype(np.float32),
        centers=np.column_stack([rng.uniform(0, shape[0] - 1, n), rng.uniform(0, shape[1] - 1, n)]),
        half_widths=rng.uniform(1, 9, n),
        orientations=rng.uniform(0, 2 * np.pi, n),
        shapes=rng.choice(shapes, n),
        scales=np.full(n, 2.0),
        image_shape=shape,
    )


def small_hik_model(rng):
    """A small fitted stripes-vs-blobs model (8 + 8 images of 40 x 40 drawn from ``rng``):
    dense SIFT (OpenCV, 4 px bins, step 3, unrotated), 8 hard-assigned words, HIK SVM."""
    from bowlrp import DenseSIFT, HardAssignment, KernelSVC, Pipeline

    train = [stripes(rng, 40) for _ in range(8)] + [blobs(rng, 40) for _ in range(8)]
    sift = DenseSIFT(bin_sizes=[4], steps=3, backend="opencv", rotate=False)
    model = Pipeline([("s", sift, HardAssignment(8, random_state=0))], KernelSVC("hik"), random_state=0)
    return model.fit(train, [1] * 8 + [0] * 8)


@pytest.fixture(scope="session")
def stripes_blobs():
    rng = np.random.default_rng(0)
    train = [stripes(rng) for _ in range(20)] + [blobs(rng) for _ in range(20)]
    y = np.array([1] * 20 + [0] * 20)
    test = [stripes(rng) for _ in range(15)] + [blobs(rng) for _ in range(15)]
    yt = np.array([1] * 15 + [0] * 15)
    return train, y, test, yt


@pytest.fixture(scope="module")
def threads():
    """A Dask client of two workers of one thread each, in this process (no start-up cost);
    one cluster per test module."""
    import warnings

    from distributed import Client, LocalCluster  # dask.distributed: only for the Dask tests

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
