"""The pool's faults, shutdown and bad input, compared with the stdlib.

Where fastexec must behave as the stdlib, the test runs the same scenario on
``concurrent.futures.ThreadPoolExecutor`` (and ``loop.run_in_executor`` for
the asyncio side) and compares.  The process-level cases (interpreter exit,
Ctrl-C, fork, subinterpreters) are in test_process.py.

Documented differences from the stdlib (asserted as such below):

* ``shutdown(wait=True)`` called from inside one of the pool's own jobs: the
  stdlib raises ``RuntimeError('cannot join current thread')`` in that job
  (after joining the other workers); fastexec skips the current thread, joins
  the others, and the job completes normally.  Neither deadlocks.
* ``pool.run(non_callable)`` never checks the callable up front: the
  ``TypeError`` reaches the awaiting code, as with ``loop.run_in_executor``
  on a loop in non-debug mode.  ``fastexec.run_in_executor`` follows the
  loop exactly: in debug mode it raises the ``TypeError`` at the call.
* ``max_workers=float('nan')``: the stdlib accepts it and then never starts
  a thread (its jobs hang); fastexec refuses it.  Not tested.
"""

import asyncio
import concurrent.futures
import logging
import threading
import time

import pytest

import fastexec
from conftest import IMPLEMENTATIONS, pool_class
from support import WAIT

pytestmark = pytest.mark.timeout(60)

@pytest.fixture
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()
    asyncio.set_event_loop(None)


def arun(coro):
    """Run a coroutine in a fresh loop, closed afterwards."""
    lp = asyncio.new_event_loop()
    try:
        return lp.run_until_complete(coro)
    finally:
        lp.close()
        asyncio.set_event_loop(None)


def run_in(pool, loop, fn, *args):
    """The asyncio entry of each implementation: pool.run for fastexec,
    loop.run_in_executor for the stdlib pool."""
    if isinstance(pool, fastexec.ThreadPoolExecutor):
        return pool.run(fn, *args)
    return loop.run_in_executor(pool, fn, *args)


# ===========================================================================
# 1. Faults in jobs
# ===========================================================================

FAULTS = [Exception, ValueError, KeyboardInterrupt, SystemExit, GeneratorExit]


def _raiser(exc):
    def job():
        raise exc
    return job


@pytest.mark.parametrize("exc_type", FAULTS, ids=lambda t: t.__name__)
def test_submit_fault_reaches_future_worker_survives(pools, impl, exc_type):
    pool = pools.of(impl, 1)
    first = pool.submit(threading.get_ident).result(WAIT)
    exc = exc_type("boom")
    fut = pool.submit(_raiser(exc))
    got = fut.exception(WAIT)
    assert type(got) is exc_type
    assert got is exc
    with pytest.raises(exc_type) as info:
        fut.result(WAIT)
    assert info.value is exc
    # The same worker thread runs the next jobs.
    for _ in range(3):
        assert pool.submit(threading.get_ident).result(WAIT) == first
    assert len(pool._threads) == 1


@pytest.mark.parametrize("exc_type", FAULTS, ids=lambda t: t.__name__)
def test_run_fault_reaches_awaiting_code_like_run_in_executor(pools, exc_type):
    # The awaiting coroutine catches it: same type, same object, for
    # pool.run and fastexec.run_in_executor as for loop.run_in_executor on
    # a stdlib pool; the worker survives.
    results = {}
    for impl in IMPLEMENTATIONS:
        pool = pools.of(impl, 1)
        exc = exc_type("boom")

        async def main():
            lp = asyncio.get_running_loop()
            ident = await run_in(pool, lp, threading.get_ident)
            seen = []
            for fut in (run_in(pool, lp, _raiser(exc)),
                        fastexec.run_in_executor(pool, _raiser(exc))):
                try:
                    await fut
                except BaseException as e:   # noqa: B902 - the point
                    seen.append(e)
            after = await run_in(pool, lp, threading.get_ident)
            return ident, seen, after

        ident, seen, after = arun(main())
        assert [type(e) for e in seen] == [exc_type, exc_type], impl
        assert all(e is exc for e in seen), impl
        assert after == ident, impl
        results[impl] = [type(e) for e in seen]
    assert results["fastexec"] == results["stdlib"]


@pytest.mark.parametrize("exc_type", FAULTS, ids=lambda t: t.__name__)
def test_run_fault_uncaught_leaves_the_loop_like_run_in_executor(pools, exc_type):
    # Nobody catches it: what run_until_complete raises is the same for the
    # fast path as for the stdlib (KeyboardInterrupt and SystemExit escape
    # the task machinery and the loop; the others end the task).
    outcome = {}
    for impl in IMPLEMENTATIONS:
        pool = pools.of(impl, 1)
        exc = exc_type("boom")

        async def main():
            await run_in(pool, asyncio.get_running_loop(), _raiser(exc))

        lp = asyncio.new_event_loop()
        try:
            with pytest.raises(exc_type) as info:
                lp.run_until_complete(main())
            assert info.value is exc
            # The loop and the pool still work afterwards.
            async def again():
                return await asyncio.wait_for(run_in(pool, lp, abs, -5), WAIT)
            assert lp.run_until_complete(again()) == 5
        finally:
            lp.close()
            asyncio.set_event_loop(None)
        outcome[impl] = type(info.value)
    assert outcome["fastexec"] is outcome["stdlib"] is exc_type


def test_initializer_failure_breaks_the_pool_like_stdlib(pools, impl, caplog):
    def bad_init():
        raise ValueError("init failed")

    caplog.set_level(logging.CRITICAL, logger="concurrent.futures")
    pool = pools.of(impl, 2, initializer=bad_init)
    fut = pool.submit(abs, -1)
    exc = fut.exception(WAIT)
    assert isinstance(exc, concurrent.futures.thread.BrokenThreadPool), exc
    # The pool is broken from now on (both mark it broken before they fail
    # the queued futures): submit raises at once, the asyncio side fails the
    # same way.
    assert pool._broken
    with pytest.raises(concurrent.futures.thread.BrokenThreadPool):
        pool.submit(abs, -1)

    async def via_loop():
        return await run_in(pool, asyncio.get_running_loop(), abs, -1)

    with pytest.raises(concurrent.futures.thread.BrokenThreadPool):
        arun(via_loop())
    assert any("Exception in initializer" in r.getMessage()
               for r in caplog.records), caplog.records


def test_initializer_failure_fails_queued_asyncio_jobs(pools):
    # fastexec: jobs queued on the fast path when the initializer fails get
    # BrokenThreadPool delivered to the awaiting code (as the stdlib's
    # wrap_future of a failed submit would).
    gate = pools.gate()

    def bad_init():
        gate.wait(WAIT)
        raise ValueError("init failed")

    pool = pools.of("fastexec", 1, initializer=bad_init)

    async def main():
        futs = [pool.run(abs, -i) for i in range(50)]
        gate.set()
        return await asyncio.gather(*futs, return_exceptions=True)

    res = arun(main())
    assert len(res) == 50
    assert all(isinstance(r, concurrent.futures.thread.BrokenThreadPool)
               for r in res), res[:3]


# ===========================================================================
# 2. shutdown under load, and from inside the pool
# ===========================================================================

def _count_calls(fut, counter, lock):
    with lock:
        counter[id(fut)] = counter.get(id(fut), 0) + 1


class DoneCounter:
    """Counts done-callback calls per future; ``wait()`` returns once every
    registered future has called back (an Event, no polling).

    Used instead of concurrent.futures.wait(): a future cancelled by
    ``shutdown(cancel_futures=True)`` is in state CANCELLED, which wait() and
    as_completed() don't count as done (only CANCELLED_AND_NOTIFIED), with
    the stdlib pool as with fastexec."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}
        self.expected = 0
        self.total = 0
        self.all_done = threading.Event()

    def watch(self, fut):
        with self.lock:
            self.expected += 1
        fut.add_done_callback(self._called)
        return fut

    def _called(self, fut):
        with self.lock:
            self.calls[id(fut)] = self.calls.get(id(fut), 0) + 1
            self.total += 1
            if self.total >= self.expected:
                self.all_done.set()

    def wait(self, timeout=WAIT):
        with self.lock:
            if self.total >= self.expected:
                return True
        return self.all_done.wait(timeout)


def test_shutdown_cancel_futures_under_load(pools, impl):
    # 10,000 queued jobs on 4 busy workers, shutdown(wait=False,
    # cancel_futures=True) while they run: every future ends exactly once
    # (one done-callback call each), pending ones are cancelled, running
    # ones finish, no job runs twice, every non-cancelled future's job ran.
    n = 10_000
    pool = pools.of(impl, 4)
    ran = []

    def job(i):
        x = 0
        for k in range(200):   # a little work, so the queue is still long
            x += k
        ran.append(i)
        return i

    # The 4 workers are held until all is queued (the stdlib's workers keep
    # up with its slower submit, and could otherwise run everything before
    # the shutdown: seen once on 3.9), then let go just before the shutdown,
    # so that it races with workers taking jobs.
    gate = threading.Event()
    held = threading.Barrier(5)

    def hold():
        held.wait(WAIT)
        gate.wait(WAIT)

    blockers = [pool.submit(hold) for _ in range(4)]
    held.wait(WAIT)
    dc = DoneCounter()
    futs = [dc.watch(pool.submit(job, i)) for i in range(n)]
    gate.set()
    pool.shutdown(wait=False, cancel_futures=True)
    assert dc.wait(), "not every future called back: %d/%d" % (dc.total, n)
    pool.shutdown(wait=True)
    assert all(b.result(0) is None for b in blockers)
    calls = dc.calls

    assert len(ran) == len(set(ran)), "a job ran twice"
    ran_set = set(ran)
    cancelled = 0
    for i, f in enumerate(futs):
        assert calls.get(id(f)) == 1, (i, calls.get(id(f)))
        if f.cancelled():
            cancelled += 1
            assert i not in ran_set, "cancelled job %d ran" % i
        else:
            assert f.result() == i
            assert i in ran_set
    assert cancelled + len(ran_set) == n
    assert cancelled > 0, "shutdown came too late to cancel anything"
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(job, -1)


def test_shutdown_cancel_futures_under_load_asyncio(pools):
    # The same on the asyncio side: a mix of pool.run, run_in_executor,
    # fastexec.wrap_future(submit) and asyncio.wrap_future(submit), shut
    # down (from the loop) while the workers run; the loop then awaits them
    # all.  Only shutdown cancels here, and it cancels queued jobs only: a
    # cancelled future's job never ran.
    n = 8_000
    pool = pools.of("fastexec", 4)
    ran = []
    calls = {}
    lock = threading.Lock()

    def job(i):
        x = 0
        for k in range(200):
            x += k
        ran.append(i)
        return i

    async def main():
        futs = []
        for i in range(n):
            kind = i % 4
            if kind == 0:
                f = pool.run(job, i)
            elif kind == 1:
                f = fastexec.run_in_executor(pool, job, i)
            elif kind == 2:
                f = fastexec.wrap_future(pool.submit(job, i))
            else:
                f = asyncio.wrap_future(pool.submit(job, i))
            f.add_done_callback(lambda f: _count_calls(f, calls, lock))
            futs.append(f)
        pool.shutdown(wait=False, cancel_futures=True)
        res = await asyncio.wait_for(
            asyncio.gather(*futs, return_exceptions=True), WAIT)
        await asyncio.sleep(0)   # the done callbacks of the last ones
        return futs, res

    futs, res = arun(main())
    pool.shutdown(wait=True)
    assert len(ran) == len(set(ran)), "a job ran twice"
    ran_set = set(ran)
    cancelled = 0
    for i, (f, r) in enumerate(zip(futs, res)):
        assert calls.get(id(f)) == 1, (i, calls.get(id(f)))
        if f.cancelled():
            cancelled += 1
            assert isinstance(r, asyncio.CancelledError)
            assert i not in ran_set, "cancelled job %d ran" % i
        else:
            assert r == i, (i, r)
            assert i in ran_set
    assert cancelled + len(ran_set) == n
    assert cancelled > 0


def test_shutdown_races_submitters(pools, impl):
    # Four threads submit while a fifth shuts the pool down: each submit
    # either raises RuntimeError or returns a future that ends exactly once.
    pool = pools.of(impl, 4)
    start = threading.Barrier(5)
    going = threading.Event()
    results = [[] for _ in range(4)]
    refused = [0] * 4

    def submitter(k):
        # Submit until refused (bounded, in case shutdown never lands).
        start.wait()
        for i in range(200_000):
            if i == 300:
                going.set()
            try:
                results[k].append(pool.submit(abs, -i))
            except RuntimeError as e:
                assert "after shutdown" in str(e)
                refused[k] += 1
                break

    ts = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    start.wait()
    assert going.wait(WAIT)
    pool.shutdown(wait=False, cancel_futures=True)
    for t in ts:
        t.join(WAIT)
    futs = [f for r in results for f in r]
    dc = DoneCounter()
    for f in futs:
        dc.watch(f)
    assert dc.wait()
    assert all(c == 1 for c in dc.calls.values())
    for f in futs:
        assert f.cancelled() or f.exception() is None
    assert refused == [1, 1, 1, 1], refused
    assert len(futs) >= 300, len(futs)


def test_shutdown_wait_true_from_inside_a_job(pools, impl):
    # stdlib: RuntimeError('cannot join current thread') in the job, after
    # joining the other workers.  fastexec: the job completes; the other
    # workers are joined.  Neither deadlocks; the queued work still runs.
    pool = pools.of(impl, 2)
    others = [pool.submit(time.sleep, 0.01) for _ in range(4)]

    def job():
        pool.shutdown(wait=True)
        return "returned"

    fut = pool.submit(job)
    more = [pool.submit(abs, -i) for i in range(10)]
    exc = fut.exception(WAIT)
    if impl == "stdlib":
        assert isinstance(exc, RuntimeError) and "join current thread" in str(exc)
    else:
        assert exc is None and fut.result() == "returned"
    assert [f.result(WAIT) for f in more] == list(range(10))
    for f in others:
        f.result(WAIT)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(abs, 1)
    for t in list(pool._threads):
        t.join(WAIT)
        assert not t.is_alive()


@pytest.mark.parametrize("cancel", [False, True])
def test_shutdown_wait_false_from_inside_a_job(pools, impl, cancel):
    pool = pools.of(impl, 1)
    gate = pools.gate()
    started = threading.Event()

    def job():
        pool.shutdown(wait=False, cancel_futures=cancel)
        started.set()
        gate.wait(WAIT)
        return "done"

    fut = pool.submit(job)
    assert started.wait(WAIT)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(abs, 1)
    gate.set()
    assert fut.result(WAIT) == "done"
    for t in list(pool._threads):
        t.join(WAIT)
        assert not t.is_alive()


@pytest.mark.parametrize("cancel", [False, True])
def test_shutdown_from_inside_a_job_with_queued_work(pools, impl, cancel):
    # Queued work behind the job that calls shutdown: cancelled with
    # cancel_futures=True, run otherwise; in either case each future ends
    # exactly once and the pool's threads exit.
    pool = pools.of(impl, 1)
    gate = pools.gate()

    def job():
        gate.wait(WAIT)
        pool.shutdown(wait=False, cancel_futures=cancel)
        return "done"

    fut = pool.submit(job)
    dc = DoneCounter()
    queued = [dc.watch(pool.submit(abs, -i)) for i in range(20)]
    gate.set()
    assert fut.result(WAIT) == "done"
    assert dc.wait()
    assert sorted(dc.calls.values()) == [1] * 20
    if cancel:
        assert all(f.cancelled() for f in queued)
    else:
        assert [f.result() for f in queued] == list(range(20))
    for t in list(pool._threads):
        t.join(WAIT)
        assert not t.is_alive()


def test_job_submits_to_its_own_pool_and_waits(pools, impl):
    # One outer job at a time on 2 workers (more outer jobs than workers-1
    # at once would deadlock any pool: every worker waiting on a job queued
    # behind the others); then a chain three deep on 3 workers.
    pool = pools.of(impl, 2)

    def inner(x):
        return x * 2

    def outer(x):
        return pool.submit(inner, x).result(WAIT) + 1

    for i in range(50):
        assert pool.submit(outer, i).result(WAIT) == 2 * i + 1

    deep = pools.of(impl, 3)

    def level(k):
        if k == 0:
            return threading.get_ident()
        mine = threading.get_ident()
        return [mine] + [deep.submit(level, k - 1).result(WAIT)]

    for _ in range(20):
        a, (b, c) = deep.submit(level, 2).result(WAIT)
        assert len({a, b, c}) == 3      # each level on its own worker


def test_fast_path_job_submits_to_its_own_pool(pools):
    pool = pools.of("fastexec", 2)

    def outer(x):
        return pool.submit(abs, -x).result(WAIT) + 1

    async def main():
        return [await pool.run(outer, i) for i in range(50)]

    assert arun(main()) == [i + 1 for i in range(50)]


# ===========================================================================
# 5. Bad input
# ===========================================================================

def test_submit_non_callable_fails_the_future_like_stdlib(pools, impl):
    pool = pools.of(impl, 2)
    fut = pool.submit(1)
    exc = fut.exception(WAIT)
    assert type(exc) is TypeError and "not callable" in str(exc)
    # The pool stays usable.
    assert pool.submit(abs, -4).result(WAIT) == 4
    with pytest.raises(TypeError):
        pool.submit()                       # no fn at all: raised at once
    assert pool.submit(abs, -5).result(WAIT) == 5
    # A keyword named like the positional-only parameter goes to fn.
    assert pool.submit(dict, fn=1).result(WAIT) == {"fn": 1}


def test_map_bad_input_like_stdlib(pools, impl):
    pool = pools.of(impl, 2)
    with pytest.raises(TypeError):
        pool.map(abs, 5)                    # not iterable
    with pytest.raises(TypeError):
        list(pool.map(abs, [1], timeout="x"))
    with pytest.raises(TypeError):
        list(pool.map(1, [1, 2]))           # TypeError from the call
    assert list(pool.map(abs, [-1, -2])) == [1, 2]


@pytest.mark.parametrize("debug", [False, True])
def test_run_non_callable(pools, debug):
    # pool.run(1): TypeError delivered to the awaiting code, like
    # loop.run_in_executor(stdlib_pool, 1) in non-debug mode.
    # fastexec.run_in_executor(pool, 1): the loop's behaviour in both modes
    # (debug mode: TypeError at the call).
    std = pools.of("stdlib", 1)
    fast = pools.of("fastexec", 1)

    async def outcome(make):
        try:
            fut = make()
        except TypeError as e:
            return ("at call", type(e))
        try:
            await fut
        except TypeError as e:
            return ("at await", type(e))
        return ("no error",)

    async def main():
        lp = asyncio.get_running_loop()
        lp.set_debug(debug)
        r = {
            "loop.run_in_executor": await outcome(
                lambda: lp.run_in_executor(std, 1)),
            "fastexec.run_in_executor": await outcome(
                lambda: fastexec.run_in_executor(fast, 1)),
            "pool.run": await outcome(lambda: fast.run(1)),
        }
        # Both pools still work.
        assert await lp.run_in_executor(std, abs, -1) == 1
        assert await fast.run(abs, -1) == 1
        return r

    r = arun(main())
    assert r["fastexec.run_in_executor"] == r["loop.run_in_executor"], r
    assert r["pool.run"] == ("at await", TypeError), r
    assert r["loop.run_in_executor"] == (
        ("at call", TypeError) if debug else ("at await", TypeError)), r


@pytest.mark.parametrize("bad", [0, -1, "4", -0.5, [4]], ids=repr)
def test_bad_max_workers_like_stdlib(impl, bad):
    def attempt(cls):
        try:
            p = cls(bad)
        except Exception as e:
            return type(e)
        p.shutdown()
        return None

    expected = attempt(pool_class("stdlib"))
    assert expected is not None
    assert attempt(pool_class(impl)) is expected


@pytest.mark.parametrize("mw", [2.5, None, 10 ** 30, True, float("inf")],
                         ids=repr)
def test_odd_but_valid_max_workers_like_stdlib(impl, mw):
    # Accepted by the stdlib, so by a drop-in: a float, None, a huge int,
    # True, infinity (an unbounded pool).  (NaN is accepted by the stdlib
    # too, but its pool then never starts a thread, so its jobs hang;
    # fastexec refusing it is no loss, and not tested.)
    p = pool_class(impl)(mw)
    try:
        assert p.submit(abs, -1).result(WAIT) == 1
    finally:
        p.shutdown()


@pytest.mark.parametrize("kwargs", [
    {"thread_name_prefix": 5},
    {"initargs": None},             # no initializer: never used
], ids=repr)
def test_odd_but_valid_constructor_args_like_stdlib(impl, kwargs):
    # The stdlib accepts these (a prefix is %-formatted into the thread
    # name; initargs are only used with an initializer).
    p = pool_class(impl)(2, **kwargs)
    try:
        name = p.submit(lambda: threading.current_thread().name).result(WAIT)
        if "thread_name_prefix" in kwargs:
            assert name == "%s_0" % (kwargs["thread_name_prefix"],)
    finally:
        p.shutdown()


def test_non_callable_initializer_like_stdlib(impl):
    with pytest.raises(TypeError):
        pool_class(impl)(2, initializer=1)
    # initargs that are not a tuple: accepted at construction by both
    # (the stdlib stores them as given).
    p = pool_class(impl)(1, initializer=lambda *a: None, initargs=[1, 2])
    try:
        assert p.submit(abs, -1).result(WAIT) == 1
    finally:
        p.shutdown()


@pytest.mark.parametrize("bad", [object(), "pool", 42], ids=repr)
def test_non_executor_to_run_in_executor_like_the_loop(bad):
    async def main():
        lp = asyncio.get_running_loop()
        got = []
        for call in (lambda: lp.run_in_executor(bad, abs, -1),
                     lambda: fastexec.run_in_executor(bad, abs, -1)):
            try:
                await call()
                got.append(None)
            except Exception as e:
                got.append(type(e))
        return got

    std, fast = arun(main())
    assert std is not None
    assert fast is std


@pytest.mark.parametrize("bad", [5, None, object(), "x"], ids=repr)
def test_non_future_to_wrap_future_like_asyncio(bad):
    async def main():
        got = []
        for wf in (asyncio.wrap_future, fastexec.wrap_future):
            try:
                wf(bad)
                got.append(None)
            except BaseException as e:
                got.append(type(e))
        return got

    std, fast = arun(main())
    assert std is AssertionError
    assert fast is std


def test_use_after_shutdown_like_stdlib(pools, impl):
    pool = pools.of(impl, 2)
    assert pool.submit(abs, -1).result(WAIT) == 1
    pool.shutdown()
    msg = "cannot schedule new futures after shutdown"
    with pytest.raises(RuntimeError, match=msg):
        pool.submit(abs, -1)
    with pytest.raises(RuntimeError, match=msg):
        pool.map(abs, [1, 2])
    assert list(pool.map(abs, [])) == []     # nothing to submit: no error

    async def main():
        lp = asyncio.get_running_loop()
        with pytest.raises(RuntimeError, match=msg):
            run_in(pool, lp, abs, -1)
        with pytest.raises(RuntimeError, match=msg):
            fastexec.run_in_executor(pool, abs, -1)
        with pytest.raises(RuntimeError, match=msg):
            await fastexec.wrap_future(pool.submit(abs, -1))

    arun(main())
    pool.shutdown()          # twice: fine for both


def test_run_outside_a_loop_and_without_fn(pools):
    pool = pools.of("fastexec", 1)
    with pytest.raises(RuntimeError, match="no running event loop"):
        pool.run(abs, -1)
    with pytest.raises(TypeError):
        pool.run()
    assert pool.submit(abs, -2).result(WAIT) == 2
