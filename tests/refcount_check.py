"""Reference counts stay flat on a debug CPython (``sys.gettotalrefcount()``).

Not collected by ``pytest tests`` (the name does not match ``test_*.py``):
tools/run_all.py runs it, on the debug builds only (``3.14d``):

    python -m pytest tests/refcount_check.py

and it *errors* on an interpreter without ``sys.gettotalrefcount()`` (a
release build), so that it can never pass by checking nothing.

Each test drives one path of the pool or the asyncio bridge in rounds of
``N`` calls on the same pool and loop, and reads the interpreter's total
reference count after each round (after ``gc.collect()``, with the pool idle).
The first rounds fill caches (type caches, free lists, interned names); a
leak of even one reference per call then shows in *every* later round as a
growth of at least ``N``.  A test fails when each of the ``ROUNDS`` measured
rounds grew the total by ``N // 2`` or more; the message lists every
round's growth.  ``test_the_check_catches_a_leak`` runs the same check on a
function that keeps one reference per call, and requires it to fail.
"""

import asyncio
import concurrent.futures
import gc
import sys
import threading

import pytest

import fastexec

if not hasattr(sys, "gettotalrefcount"):
    raise RuntimeError(
        "tests/refcount_check.py needs a debug CPython (Py_DEBUG, "
        "sys.gettotalrefcount()); this is %s. tools/run_all.py runs it on "
        "the debug builds only." % sys.version.split()[0])

N = 500           # calls per round
WARM = 3          # rounds not measured
ROUNDS = 4        # rounds measured
WAIT = 30.0

pytestmark = pytest.mark.timeout(600)


class LeakFound(AssertionError):
    pass


class Arg:
    pass


class Boom(Exception):
    pass


ARG = Arg()


def fn(a, k=None):
    return a


def fn_raise(a, k=None):
    raise Boom(a)


def idle(pool):
    """Wait until every worker of `pool` has finished its job and dropped
    its references (a worker settles a future before it releases fn and
    args): one more job per worker, all running at once."""
    n = pool._max_workers
    barrier = threading.Barrier(n + 1)
    futs = [pool.submit(barrier.wait, WAIT) for _ in range(n)]
    barrier.wait(WAIT)
    for f in futs:
        f.result(WAIT)
    del futs


def total_after(round_fn):
    round_fn()
    gc.collect()
    gc.collect()
    return sys.gettotalrefcount()


def check_flat(name, run_round, calls=N):
    """Run `run_round` (`calls` calls) WARM + ROUNDS times; fail if every
    measured round grew the total reference count by calls // 2 or more."""
    for _ in range(WARM):
        run_round()
    gc.collect()
    before = sys.gettotalrefcount()
    growth = []
    for _ in range(ROUNDS):
        after = total_after(run_round)
        growth.append(after - before)
        before = after
    print("%s: total reference count growth per round of %d calls: %s"
          % (name, calls, growth))
    if min(growth) >= calls // 2:
        raise LeakFound("%s: the total reference count grew in every round "
                        "of %d calls: %s" % (name, calls, growth))
    return growth


@pytest.fixture
def pool():
    p = fastexec.ThreadPoolExecutor(max_workers=4)
    yield p
    p.shutdown(wait=True)


@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.run_until_complete(lp.shutdown_default_executor())
    lp.close()


def test_submit_result(pool):
    def one_round():
        for _ in range(N):
            assert pool.submit(fn, ARG, k=ARG).result(WAIT) is ARG
        idle(pool)
    check_flat("submit+result", one_round)


def test_submit_raising(pool):
    def one_round():
        for _ in range(N):
            f = pool.submit(fn_raise, ARG)
            with pytest.raises(Boom):
                f.result(WAIT)
            assert isinstance(f.exception(WAIT), Boom)
        idle(pool)
    check_flat("submit raising", one_round)


def test_map(pool):
    def one_round():
        assert list(pool.map(fn, [ARG] * N, timeout=WAIT)) == [ARG] * N
        with pytest.raises(Boom):
            list(pool.map(fn_raise, [ARG] * 10))
        idle(pool)
    check_flat("map", one_round)


def test_future_callbacks_and_cancel(pool):
    def one_round():
        # Every worker blocked, so that the jobs behind them stay queued.
        gate = threading.Event()
        started = threading.Semaphore(0)

        def block():
            started.release()
            gate.wait(WAIT)
        blockers = [pool.submit(block) for _ in range(pool._max_workers)]
        for _ in blockers:
            assert started.acquire(timeout=WAIT)
        futs = [pool.submit(fn, ARG) for _ in range(N)]
        seen = []
        for f in futs:
            f.add_done_callback(seen.append)
        cancelled = sum(f.cancel() for f in futs[N // 2:])
        gate.set()
        for b in blockers:
            b.result(WAIT)
        concurrent.futures.wait(futs, WAIT)
        assert cancelled == N - N // 2 and len(seen) == N
        assert all(f.result() is ARG for f in futs[:N // 2])
        del futs, seen, blockers
        idle(pool)
    check_flat("callbacks + cancel", one_round)


def test_pool_run_and_run_in_executor(pool, loop):
    async def calls():
        for _ in range(N // 2):
            assert await pool.run(fn, ARG) is ARG
            assert await fastexec.run_in_executor(pool, fn, ARG, k=ARG) is ARG
        with pytest.raises(Boom):
            await pool.run(fn_raise, ARG)

    def one_round():
        loop.run_until_complete(calls())
        idle(pool)
    check_flat("pool.run + fastexec.run_in_executor", one_round)


def test_gather_batches(pool, loop):
    async def calls():
        res = await asyncio.gather(*[pool.run(fn, ARG) for _ in range(N)])
        assert res == [ARG] * N

    def one_round():
        loop.run_until_complete(calls())
        idle(pool)
    check_flat("gather of pool.run", one_round)


def test_install_run_in_executor_and_to_thread(pool, loop):
    async def calls():
        for _ in range(N // 2):
            assert await loop.run_in_executor(pool, fn, ARG) is ARG
            assert await asyncio.to_thread(fn, ARG, k=ARG) is ARG

    def one_round():
        loop.run_until_complete(calls())
        idle(pool)
        idle(loop._default_executor)

    fastexec.install()
    try:
        check_flat("install(): run_in_executor + to_thread", one_round)
    finally:
        fastexec.uninstall()


def test_cancel_awaiting_task(pool, loop):
    async def one_cancel(gate):
        task = asyncio.ensure_future(pool.run(gate.wait, WAIT))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def calls():
        gate = threading.Event()
        for _ in range(N):
            await one_cancel(gate)
        gate.set()

    def one_round():
        loop.run_until_complete(calls())
        idle(pool)
    check_flat("cancelled awaiting task", one_round)


def test_wrap_future(pool, loop):
    std = concurrent.futures.ThreadPoolExecutor(max_workers=2)

    async def calls():
        for _ in range(N // 2):
            assert await fastexec.wrap_future(pool.submit(fn, ARG)) is ARG
            assert await fastexec.wrap_future(std.submit(fn, ARG)) is ARG
        with pytest.raises(Boom):
            await fastexec.wrap_future(pool.submit(fn_raise, ARG))

    def one_round():
        loop.run_until_complete(calls())
        idle(pool)
        idle(std)
    try:
        check_flat("wrap_future", one_round)
    finally:
        std.shutdown(wait=True)


def test_pool_lifecycle():
    # Fewer calls: each pool starts threads.  A reference kept per pool still
    # shows as >= POOLS // 2 per round.
    pools = 40

    def one_round():
        for _ in range(pools):
            p = fastexec.ThreadPoolExecutor(max_workers=2)
            assert p.submit(fn, ARG).result(WAIT) is ARG
            assert list(p.map(fn, [ARG] * 3)) == [ARG] * 3
            p.shutdown(wait=True)
    check_flat("pool lifecycle", one_round, calls=pools)


def test_the_check_catches_a_leak(pool):
    kept = []

    def leaky(a):
        kept.append(a)  # one reference kept per call
        return a

    def one_round():
        for _ in range(N):
            pool.submit(leaky, ARG).result(WAIT)
        idle(pool)
    with pytest.raises(LeakFound):
        check_flat("deliberate leak", one_round)
