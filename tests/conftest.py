"""Fixtures shared by the pool tests.

One suite, more than one implementation (in the style of MagicStack
``immutables``): the ``Pool`` fixture is parametrized over

* ``stdlib``   -- ``concurrent.futures.ThreadPoolExecutor``
* ``fastexec`` -- ``fastexec.ThreadPoolExecutor``

so that every behaviour the two must share is checked on both.  Tests of
fastexec-only features (``idle_timeout``, ``stats()``, fork-safety) use the
``FastPool`` fixture, whose only parameter is ``fastexec``; select either half
with ``-k stdlib`` / ``-k fastexec``.

``new_pool``, ``new_fast_pool`` and ``pools`` (fastexec, or any
implementation with ``pools.of(impl, ...)``) are one tracker: whatever the
test did, its pools are shut down and their threads joined at teardown.
Helpers that are not fixtures (``WAIT``, ``wait_until``, ``run_python``...)
are in ``support.py``.

If ``import fastexec`` fails, the fastexec-parametrized tests *fail* (they are
not skipped: a broken build must not look like a green suite).
"""

import concurrent.futures
import threading

import pytest

from support import WAIT

IMPLEMENTATIONS = ["stdlib", "fastexec"]


def _import_fastexec():
    try:
        import fastexec
    except Exception as exc:  # pragma: no cover - only while the C is broken
        pytest.fail("import fastexec failed: %s: %s"
                    % (type(exc).__name__, exc), pytrace=False)
    return fastexec


def pool_class(impl):
    if impl == "stdlib":
        return concurrent.futures.ThreadPoolExecutor
    if impl == "fastexec":
        return _import_fastexec().ThreadPoolExecutor
    raise ValueError(impl)


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    """The implementation's name: 'stdlib' or 'fastexec'."""
    return request.param


@pytest.fixture
def Pool(impl):
    """The ThreadPoolExecutor class under test (both implementations)."""
    return pool_class(impl)


@pytest.fixture(params=["fastexec"])
def fast_impl(request):
    return request.param


@pytest.fixture
def FastPool(fast_impl):
    """fastexec.ThreadPoolExecutor only (fastexec-only features)."""
    return pool_class(fast_impl)


class PoolTracker:
    """Make pools and gates that are cleaned up whatever the test did.

    ``tracker(*args, **kwargs)`` makes a pool of the tracker's class;
    ``tracker.of(impl, *args, **kwargs)`` one of implementation ``impl``
    ('stdlib' or 'fastexec'); ``tracker.gate()`` an Event.

    Teardown sets every gate first (so no worker stays blocked), then shuts
    every pool down with cancel_futures=True and joins its threads with a
    bounded wait; a worker still alive after that is reported as an error.
    """

    def __init__(self, cls):
        self.cls = cls
        self.pools = []
        self.gates = []

    def __call__(self, *args, **kwargs):
        return self._track(self.cls(*args, **kwargs))

    def of(self, impl, *args, **kwargs):
        return self._track(pool_class(impl)(*args, **kwargs))

    def _track(self, pool):
        self.pools.append(pool)
        return pool

    def gate(self):
        ev = threading.Event()
        self.gates.append(ev)
        return ev

    def close(self):
        for ev in self.gates:
            ev.set()
        stuck = []
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)
            for t in list(pool._threads):
                if t is threading.current_thread():
                    continue
                t.join(WAIT)
                if t.is_alive():
                    stuck.append(t)
        self.pools.clear()
        if stuck:
            pytest.fail("pool threads still alive after shutdown: %r" % stuck,
                        pytrace=False)


@pytest.fixture
def new_pool(Pool):
    """Factory: ``new_pool(*args, **kwargs)`` makes a ``Pool`` that is shut
    down at teardown; ``new_pool.gate()`` makes an Event set at teardown."""
    tracker = PoolTracker(Pool)
    yield tracker
    tracker.close()


@pytest.fixture
def new_fast_pool(FastPool):
    """Like ``new_pool``, for fastexec only."""
    tracker = PoolTracker(FastPool)
    yield tracker
    tracker.close()


@pytest.fixture
def pools():
    """Like ``new_fast_pool`` without the ``fast_impl`` parameter (for the
    fastexec-only modules); ``pools.of(impl, ...)`` makes either kind."""
    tracker = PoolTracker(pool_class("fastexec"))
    yield tracker
    tracker.close()


def pytest_report_header(config):
    # find_spec, not import: a stdlib-only run must not load the extension.
    import importlib.util
    spec = importlib.util.find_spec("fastexec")
    return "fastexec: %s" % (spec.origin if spec else "NOT INSTALLED")
