"""fastexec with the rest of the asyncio world: uvloop (the
``new_uvloop_event_loop`` flavour), distributed executors (dask.distributed,
loky) through the bridge, and a real Starlette app served by uvicorn.

* uvloop: ``fastexec.new_uvloop_event_loop`` takes the fast path for the
  default executor and fastexec pools; the whole bridge suite also runs on it
  (``tests/test_bridge.py``'s ``loop`` fixture has the ``uvloop-fastexec``
  kind).
* dask / loky: their ``concurrent.futures`` executors through
  ``fastexec.run_in_executor`` and ``fastexec.wrap_future``, compared with
  what the stdlib's ``loop.run_in_executor`` / ``asyncio.wrap_future`` do
  with the same executor (results, exceptions, cancellation, many futures);
  dask's is a real ``LocalCluster`` of two worker processes on 127.0.0.1,
  started and stopped by the module.
* Starlette: a real uvicorn server on 127.0.0.1 (a port the kernel picks),
  started and stopped by the test, sync endpoints doing blocking work, real
  HTTP requests with httpx; with ``install()`` the endpoints run on
  fastexec's anyio pool.
"""

import asyncio
import concurrent.futures
import logging
import operator
import os
import socket
import sys
import threading
import time
import types

import pytest

import fastexec
from fastexec import _anyio

cf = concurrent.futures
WAIT = 30.0

pytestmark = pytest.mark.timeout(120)


def require(module):
    """Import a package of fastexec's `test` extra; missing, the test FAILS
    (it is not skipped: every one installs on every supported Python)."""
    try:
        return __import__(module)
    except ImportError as exc:
        pytest.fail("%s is missing (%s): it is in fastexec's `test` extra, "
                    "pip install -e '.[test]'" % (module, exc), pytrace=False)


def thread_name():
    return threading.current_thread().name


class Boom(Exception):
    pass


def boom(msg):
    raise Boom(msg)


# ------------------------------------------------------------------ uvloop

def test_uvloop_flavour_takes_the_fast_path(monkeypatch):
    uvloop = require("uvloop")
    counted = []
    orig_submit = fastexec.ThreadPoolExecutor.submit

    def counting_submit(self, *args, **kwargs):
        counted.append(1)
        return orig_submit(self, *args, **kwargs)

    pool = fastexec.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mine")
    monkeypatch.setattr(fastexec.ThreadPoolExecutor, "submit", counting_submit)
    # The instrument stands for our own submit (not a subclass's override).
    monkeypatch.setattr(fastexec._bridge, "_POOL_SUBMIT", counting_submit)
    lp = fastexec.new_uvloop_event_loop()
    try:
        assert isinstance(lp, uvloop.Loop)

        async def main():
            r = [await lp.run_in_executor(None, operator.add, 1, 2),
                 await asyncio.to_thread(thread_name),
                 await fastexec.run_in_executor(None, thread_name),
                 await lp.run_in_executor(pool, thread_name)]
            with pytest.raises(Boom):
                await lp.run_in_executor(None, boom, "x")
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                lp.run_in_executor(None, main)
            return r

        r = lp.run_until_complete(asyncio.wait_for(main(), WAIT))
        assert r[0] == 3
        assert r[1].startswith("uvloop") and r[2].startswith("uvloop")
        assert r[3].startswith("mine")
        assert counted == []                  # no submit: the fast path
        default = lp._fastexec_default
        assert type(default) is fastexec.ThreadPoolExecutor
        lp.run_until_complete(asyncio.wait_for(lp.shutdown_default_executor(), WAIT))
        assert default._shutdown
        with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
            lp.run_in_executor(None, int)
    finally:
        lp.close()
        pool.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="closed"):
        lp.run_in_executor(None, int)


def test_uvloop_flavour_keeps_other_executors_and_set_default():
    require("uvloop")
    stdlib_pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="std")
    lp = fastexec.new_uvloop_event_loop()
    try:
        lp.set_default_executor(stdlib_pool)

        async def main():
            return (await lp.run_in_executor(None, thread_name),
                    await lp.run_in_executor(stdlib_pool, thread_name))

        a, b = lp.run_until_complete(asyncio.wait_for(main(), WAIT))
        assert a.startswith("std") and b.startswith("std")
    finally:
        lp.run_until_complete(asyncio.wait_for(lp.shutdown_default_executor(), WAIT))
        lp.close()
    assert stdlib_pool._shutdown


async def _which_loop():
    lp = asyncio.get_running_loop()
    return type(lp).__name__, await asyncio.to_thread(thread_name)


def test_uvloop_flavour_with_uvloop_run():
    uvloop = require("uvloop")
    assert uvloop.run(_which_loop(), loop_factory=fastexec.new_uvloop_event_loop) \
        == ("FastexecUVLoop", "uvloop_0")


def test_uvloop_flavour_keeps_an_overridden_submit():
    require("uvloop")
    calls = []

    class Traced(fastexec.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            calls.append(fn)
            return super().submit(fn, *args, **kwargs)

    pool = Traced(max_workers=1)
    lp = fastexec.new_uvloop_event_loop()
    try:
        lp.set_default_executor(pool)

        async def main():
            return (await lp.run_in_executor(pool, operator.add, 1, 2),
                    await lp.run_in_executor(None, operator.add, 3, 4))

        assert lp.run_until_complete(asyncio.wait_for(main(), WAIT)) == (3, 7)
        assert calls == [operator.add, operator.add]
    finally:
        lp.run_until_complete(asyncio.wait_for(lp.shutdown_default_executor(), WAIT))
        lp.close()


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="asyncio.run(loop_factory=) and asyncio.Runner are 3.12+")
def test_uvloop_flavour_as_asyncio_loop_factory():
    require("uvloop")
    assert asyncio.run(_which_loop(), loop_factory=fastexec.new_uvloop_event_loop) \
        == ("FastexecUVLoop", "uvloop_0")
    with asyncio.Runner(loop_factory=fastexec.new_uvloop_event_loop) as runner:
        assert runner.run(_which_loop()) == ("FastexecUVLoop", "uvloop_0")


# ---------------------------------------------- distributed executors

def _compare_with_stdlib(executor, make_gate=None):
    """Run the same scenario through fastexec's bridge and through the
    stdlib's (loop.run_in_executor / asyncio.wrap_future) on *executor*; the
    outcomes must be the same."""

    async def scenario(run_in_executor, wrap_future):
        out = {}
        out["result"] = await run_in_executor(executor, operator.add, 2, 3)
        try:
            await run_in_executor(executor, divmod, 1, 0)
        except ZeroDivisionError as exc:
            out["exception"] = type(exc).__name__
        futs = [executor.submit(operator.mul, i, i) for i in range(200)]
        out["many"] = await asyncio.gather(*(wrap_future(f) for f in futs))
        return out

    async def main():
        loop = asyncio.get_running_loop()
        ours = await scenario(fastexec.run_in_executor, fastexec.wrap_future)
        ref = await scenario(loop.run_in_executor, asyncio.wrap_future)
        return ours, ref

    ours, ref = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert ours == ref
    assert ours["result"] == 5
    assert ours["exception"] == "ZeroDivisionError"
    assert ours["many"] == [i * i for i in range(200)]


def _cancel_queued(executor, n_blockers, wrap):
    """A future queued behind blockers (enough of them that the executor
    can't have handed it to a worker yet), its asyncio side cancelled: returns
    what the awaiting code got, whether the concurrent future ended up
    cancelled, and the blocker's result (compared with asyncio.wrap_future's
    by the callers: the same executor, the same outcome)."""

    async def main():
        loop = asyncio.get_running_loop()
        settled = asyncio.Event()
        blockers = [executor.submit(time.sleep, 0.2) for _ in range(n_blockers)]
        queued = executor.submit(operator.add, 1, 1)
        queued.add_done_callback(lambda _f: loop.call_soon_threadsafe(settled.set))
        requested = []
        orig_cancel = queued.cancel

        def cancel():
            # The bridge's request comes from the loop's thread (dask's own
            # machinery may call it again from its thread: not counted).
            if threading.current_thread() is threading.main_thread():
                requested.append(True)
            return orig_cancel()

        queued.cancel = cancel
        afut = wrap(queued)
        await asyncio.sleep(0)
        afut.cancel()
        try:
            await afut
            got = "result"
        except asyncio.CancelledError:
            got = "CancelledError"
        # Cancelled (if it could be) or run: it settles either way.
        await asyncio.wait_for(settled.wait(), WAIT)
        return (got, requested, queued.cancelled(),
                await asyncio.gather(*map(wrap, blockers)))

    return asyncio.run(asyncio.wait_for(main(), WAIT))


def _check_cancel_like_stdlib(executor, n_blockers, cancelled):
    """The awaiting code gets CancelledError, the cancellation is passed on
    to the concurrent future (once, from the loop's thread), the rest runs.
    *cancelled*: whether the executor is sure to accept that cancel() (None:
    it may or may not, by timing, with either bridge)."""
    ours = _cancel_queued(executor, n_blockers, fastexec.wrap_future)
    ref = _cancel_queued(executor, n_blockers, asyncio.wrap_future)
    if cancelled is None:
        ours, ref = ours[:2] + ours[3:], ref[:2] + ref[3:]
        expected = ("CancelledError", [True], [None] * n_blockers)
    else:
        expected = ("CancelledError", [True], cancelled, [None] * n_blockers)
    assert ours == ref
    assert ours == expected


# Worker processes (spawned: each imports dask) on a loaded machine: the
# cluster's start counts toward the first test's time.
DASK_TIMEOUT = pytest.mark.timeout(300)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def dask_cluster():
    """A real LocalCluster of two worker processes (one thread each) on
    127.0.0.1, started here and stopped at the end of the module, with its
    worker processes gone."""
    distributed = require("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
        host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
    pids = set()
    try:
        client = distributed.Client(cluster, timeout=120)
        try:
            client.wait_for_workers(2, timeout=120)
            by_worker = client.run(os.getpid)       # {address: its pid}
            pids = set(by_worker.values())
            assert len(pids) == 2 and os.getpid() not in pids, by_worker
            assert all(addr.startswith("tcp://127.0.0.1:")
                       for addr in by_worker), by_worker
            yield types.SimpleNamespace(client=client, pids=pids)
        finally:
            client.close(timeout=60)
    finally:
        cluster.close(timeout=60)
    # close() joined the worker processes: none is left behind.
    deadline = time.monotonic() + WAIT
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(map(_gone, pids)), "dask worker processes left running: %s" % pids


@pytest.fixture
def dask_client(dask_cluster):
    return dask_cluster.client


@DASK_TIMEOUT
def test_dask_cluster_runs_the_calls_in_its_worker_processes(dask_cluster):
    pids = dask_cluster.pids
    with dask_cluster.client.get_executor(pure=False) as executor:
        async def main():
            return await asyncio.gather(*(
                fastexec.run_in_executor(executor, os.getpid) for _ in range(40)))

        got = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert len(got) == 40 and set(got) <= pids, (set(got), pids)


@DASK_TIMEOUT
def test_dask_executor_through_the_bridge(dask_client):
    with dask_client.get_executor() as executor:
        _compare_with_stdlib(executor)


@DASK_TIMEOUT
def test_dask_futures_cancelled_through_the_bridge(dask_client):
    # Two blockers keep both workers busy while the cancelled call waits;
    # dask's concurrent futures stay pending until done, so cancel() is
    # always accepted (the same with asyncio.wrap_future).
    with dask_client.get_executor(pure=False) as executor:
        _check_cancel_like_stdlib(executor, 2, True)


@DASK_TIMEOUT
def test_dask_native_futures_via_wrap_future(dask_client):
    """dask's own futures (not concurrent ones) through the executor that
    the client hands out; client.submit futures are awaited natively by dask
    and are not the bridge's business: get_executor() is the way in."""
    executor = dask_client.get_executor()

    async def main():
        futs = [executor.submit(pow, 2, i) for i in range(50)]
        return await asyncio.gather(*(fastexec.wrap_future(f) for f in futs))

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == [2 ** i for i in range(50)]


@pytest.fixture(scope="module")
def loky_executor():
    loky = require("loky")
    executor = loky.get_reusable_executor(max_workers=1, timeout=60)
    yield executor
    executor.shutdown(wait=True)


def test_loky_executor_through_the_bridge(loky_executor):
    _compare_with_stdlib(loky_executor)


def test_loky_futures_cancelled_through_the_bridge(loky_executor):
    # loky marks queued calls running early, on a thread of its own: whether
    # cancel() still finds the call pending is timing (the same with
    # asyncio.wrap_future).
    _check_cancel_like_stdlib(loky_executor, 3, None)


# ----------------------------------------------- Starlette under uvicorn

def _make_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    def blocking(request):            # a sync endpoint: run in a thread
        time.sleep(0.005)             # the blocking work
        return JSONResponse({"thread": thread_name(),
                             "n": int(request.query_params.get("n", 0))})

    def fails(request):
        raise Boom("endpoint failed")

    async def native(request):
        return PlainTextResponse("async")

    async def on_boom(request, exc):
        # The endpoint's exception, raised in the worker thread, reached the
        # app (handled here: an unhandled one makes uvicorn drop the
        # connection, which races with the client reading the 500).
        return PlainTextResponse("boom: %s" % exc, status_code=500)

    return Starlette(routes=[Route("/blocking", blocking), Route("/fails", fails),
                             Route("/native", native)],
                     exception_handlers={Boom: on_boom})


class _Server:
    """uvicorn serving the app on 127.0.0.1, on a socket the test binds (so
    the port is known before the server starts, and requests wait in the
    backlog until it accepts), in a thread of its own."""

    def __init__(self, loop_kind):
        import uvicorn
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        config = uvicorn.Config(_make_app(), loop=loop_kind, lifespan="off",
                                log_level="critical", access_log=False)
        self.server = uvicorn.Server(config)
        self.errors = []
        self.thread = threading.Thread(target=self._run, name="uvicorn")

    def _run(self):
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(WAIT)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"
        assert self.errors == []


def _load(url, n_requests, concurrency):
    import httpx
    with httpx.Client(timeout=WAIT) as client:
        with cf.ThreadPoolExecutor(concurrency) as ex:
            return list(ex.map(lambda i: client.get(url, params={"n": i}),
                               range(n_requests)))


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize("hooked", [True, False], ids=["install", "no-install"])
def test_starlette_sync_endpoints_under_uvicorn(loop_kind, hooked):
    require("starlette")
    require("uvicorn")
    httpx = require("httpx")
    if loop_kind == "uvloop":
        require("uvloop")
    if hooked:
        fastexec.install()
    try:
        assert _anyio.installed() is hooked
        with _Server(loop_kind) as srv:
            responses = _load(srv.url + "/blocking", 60, 8)
            with httpx.Client(timeout=WAIT) as client:
                failed = client.get(srv.url + "/fails")
                native = client.get(srv.url + "/native")
    finally:
        if hooked:
            fastexec.uninstall()
    assert [r.status_code for r in responses] == [200] * 60
    assert sorted(r.json()["n"] for r in responses) == list(range(60))
    threads = {r.json()["thread"] for r in responses}
    if hooked:
        assert all(t.startswith(_anyio.THREAD_NAME_PREFIX) for t in threads), threads
    else:
        assert threads == {"AnyIO worker thread"}
    assert 1 <= len(threads) <= 8
    assert (failed.status_code, failed.text) == (500, "boom: endpoint failed")
    assert native.status_code == 200 and native.text == "async"
