"""The asyncio bridge: ``Pool.run``, ``fastexec.run_in_executor``,
``to_thread``, ``wrap_future``, ``install()`` and ``new_event_loop()``.

Every behaviour is checked on the stdlib event loop *and* on uvloop (the
``loop_factory`` / ``loop`` fixtures are parametrized over both).  Loops are
run explicitly (``run_until_complete``, then ``shutdown_default_executor`` and
``close``) because ``asyncio.run`` has no ``loop_factory`` before 3.12.

Where fastexec must behave "like the stdlib", the test asks the loop itself
(``loop.run_in_executor``, ``asyncio.wrap_future``, ``asyncio.to_thread``) for
the reference behaviour and compares, so that the same test is right on
every Python version and on both loops.

Conventions: a worker is blocked on a ``threading.Event`` (a "gate", set at
teardown whatever happened); every wait is bounded by ``WAIT``; nothing
sleeps for time (``asyncio.sleep(0)`` only yields to the loop).
"""

import asyncio
import asyncio.base_events
import asyncio.threads
import concurrent.futures
import contextvars
import functools
import gc
import logging
import multiprocessing
import operator
import os
import sys
import threading
import traceback
import warnings
import weakref

import pytest

# Captured before anything in this module can call fastexec.install(): the
# stdlib's own objects, which uninstall() must put back.
ORIG_RUN_IN_EXECUTOR = asyncio.base_events.BaseEventLoop.__dict__["run_in_executor"]
ORIG_TO_THREAD = asyncio.to_thread
ORIG_THREADS_TO_THREAD = asyncio.threads.to_thread

import fastexec  # noqa: E402
from support import WAIT, wait_until  # noqa: E402

cf = concurrent.futures

# Several tests give the loop a stdlib default executor on purpose: the
# SlowPathWarning that install() gives then is expected here (tests/
# test_status.py tests it), not a failure under -W error.
pytestmark = [pytest.mark.timeout(30),
              pytest.mark.filterwarnings("ignore::fastexec.SlowPathWarning")]

# How long anything that should happen at once may take (shared machine).
COROUTINE_MSG = "coroutines cannot be used with run_in_executor()"
EXECUTOR_SHUTDOWN_MSG = "Executor shutdown has been called"


# --------------------------------------------------------------- helpers

def _uvloop_factory():
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop


# "uvloop-fastexec": fastexec.new_uvloop_event_loop (tests/test_ecosystem.py).
LOOP_KINDS = ["asyncio", "uvloop", "uvloop-fastexec"]


def factory_for(kind):
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "uvloop-fastexec":
        _uvloop_factory()
        return fastexec.new_uvloop_event_loop
    return _uvloop_factory()


def is_stdlib_loop(loop):
    return isinstance(loop, asyncio.base_events.BaseEventLoop)


def close_loop(loop):
    """Shut the default executor down and close, as asyncio.run does."""
    try:
        if not loop.is_closed():
            loop.run_until_complete(
                asyncio.wait_for(loop.shutdown_default_executor(), WAIT))
    finally:
        loop.close()


def run(loop, coro, timeout=WAIT):
    """Run *coro* to completion on *loop*, bounded by *timeout*."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def logged(caplog):
    """What was logged at INFO or above (the loops log their selector at
    DEBUG when created)."""
    return ["%s %s: %s" % (r.name, r.levelname, r.getMessage())
            for r in caplog.records if r.levelno >= logging.INFO]


def thread_name():
    return threading.current_thread().name


def thread_ident():
    return threading.get_ident()


def identity(x):
    return x


def echo(*args, **kwargs):
    return args, kwargs


def raising_function(exc):
    raise exc


class Boom(Exception):
    """An exception class whose instances can be weakly referenced."""


class Payload:
    """A result object that can be weakly referenced."""


async def awaiter(fut):
    return await fut


async def acall(call, *args, **kwargs):
    """Make the call inside the running loop (pool.run needs one)."""
    return await call(*args, **kwargs)


async def coroutine_function():
    return None


# Module level so that a process pool can pickle them.
def process_power(base, exp=2):
    return base ** exp


def process_raise(msg):
    raise ValueError(msg)


# --------------------------------------------------------------- fixtures

@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request):
    return request.param


@pytest.fixture
def loop_factory(loop_kind):
    """``asyncio.new_event_loop`` or ``uvloop.new_event_loop``."""
    return factory_for(loop_kind)


@pytest.fixture
def loop_errors():
    """Every call of the ``loop`` fixture's exception handler."""
    return []


@pytest.fixture
def loop(loop_factory, loop_errors):
    """A new loop of each kind; its exception handler records into
    ``loop_errors`` (which must be empty at teardown)."""
    lp = loop_factory()
    lp.set_exception_handler(lambda _lp, ctx: loop_errors.append(ctx))
    try:
        yield lp
    finally:
        close_loop(lp)
        gc.collect()   # a future never retrieved is reported when collected
    if loop_errors:
        pytest.fail("the loop's exception handler was called: %r"
                    % (loop_errors,), pytrace=False)


@pytest.fixture
def pool(pools):
    return pools(max_workers=4)


class _Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.inits = 0      # concurrent.futures.Future.__init__ calls
        self.submits = 0    # fastexec pools' submit() calls

    @property
    def count(self):
        return self.inits + self.submits


@pytest.fixture
def cf_futures(monkeypatch):
    """Counts the ``concurrent.futures.Future`` objects made, in any thread.

    Two ways, because a fastexec pool's ``submit`` makes its futures in C
    (a ``concurrent.futures.Future`` subclass, allocated without calling
    ``__init__``): the stdlib's futures are counted by patching
    ``Future.__init__`` on the class, fastexec's by wrapping
    ``ThreadPoolExecutor.submit``.  The fast path must do neither; the tests
    check that the counter sees a ``submit``.  (``
    test_no_concurrent_future_objects_while_jobs_queued`` also counts live
    objects, which sees any future however it was made.)"""
    counter = _Counter()
    orig_init = cf.Future.__init__
    orig_submit = fastexec.ThreadPoolExecutor.submit

    def counting_init(self, *args, **kwargs):
        with counter.lock:
            counter.inits += 1
        orig_init(self, *args, **kwargs)

    def counting_submit(self, fn, /, *args, **kwargs):
        with counter.lock:
            counter.submits += 1
        return orig_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(cf.Future, "__init__", counting_init)
    monkeypatch.setattr(fastexec.ThreadPoolExecutor, "submit", counting_submit)
    # The fast paths are taken only for a pool whose submit is our own (a
    # subclass's override is kept, issue 9): this instrument stands for it.
    monkeypatch.setattr(fastexec._bridge, "_POOL_SUBMIT", counting_submit)
    return counter


@pytest.fixture
def unraisables(monkeypatch):
    """Reports passed to sys.unraisablehook (as strings: keeping the objects
    would keep them alive)."""
    seen = []

    def hook(unraisable):
        seen.append("%s: %r (object %r)" % (
            getattr(unraisable.exc_type, "__name__", unraisable.exc_type),
            unraisable.exc_value, unraisable.object))

    monkeypatch.setattr(sys, "unraisablehook", hook)
    return seen


@pytest.fixture
def fastexec_installed():
    fastexec.install()
    try:
        yield
    finally:
        fastexec.uninstall()


@pytest.fixture(scope="module")
def process_pool():
    # spawn: no fork() of a process with live pool threads.
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pp:
        yield pp


@pytest.fixture
def stdlib_pool():
    pool = cf.ThreadPoolExecutor(max_workers=2, thread_name_prefix="stdlibpool")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


# The ways into the fast path.  "default" and "to_thread" take the fast path
# on the stdlib loop (a fastexec pool becomes its default executor); on uvloop
# they use uvloop's own default executor, and must still behave.
ENTRIES = ["pool.run", "run_in_executor", "run_in_executor(None)", "to_thread"]
POOL_ENTRIES = ["pool.run", "run_in_executor"]


def caller(entry, pool):
    if entry == "pool.run":
        return pool.run
    if entry == "run_in_executor":
        return functools.partial(fastexec.run_in_executor, pool)
    if entry == "run_in_executor(None)":
        return functools.partial(fastexec.run_in_executor, None)
    if entry == "to_thread":
        return fastexec.to_thread
    raise ValueError(entry)


def fast_entries(loop):
    """The entries that take the fast path on *loop*."""
    return ENTRIES if is_stdlib_loop(loop) else POOL_ENTRIES


def block_worker(pool, gate):
    """Occupy one worker of *pool* until *gate* is set; returns the
    concurrent future of the blocking job once it is running."""
    started = threading.Event()

    def blocker():
        started.set()
        return gate.wait(WAIT)

    fut = pool.submit(blocker)
    assert started.wait(WAIT), "the blocking job never started"
    return fut


# ------------------------------------------------- results and exceptions

STAT_RESULT = os.stat(__file__)
RETURNED_EXC = ValueError("returned, not raised")
RESULT_VALUES = {
    "tuple": (1, "two", 3.0),
    "empty-tuple": (),
    "nested-tuple": ((1, 2), (3,)),
    "stat_result": STAT_RESULT,
    "None": None,
    "exception-instance": RETURNED_EXC,
    "dict": {"a": 1},
    "exception-class": KeyError,
}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("shape", sorted(RESULT_VALUES))
def test_result_shapes_come_back_as_values(loop, pool, entry, shape):
    value = RESULT_VALUES[shape]
    call = caller(entry, pool)

    async def main():
        return await call(identity, value)

    result = run(loop, main())
    assert result is value


@pytest.mark.parametrize("entry", ENTRIES)
def test_stat_result_from_the_worker(loop, pool, entry):
    call = caller(entry, pool)
    result = run(loop, acall(call, os.stat, __file__))
    assert type(result) is os.stat_result
    assert result == os.stat(__file__)


@pytest.mark.parametrize("entry", ENTRIES)
def test_large_list_result_identity(loop, pool, entry):
    big = list(range(10 ** 6))
    call = caller(entry, pool)

    async def main():
        return await call(identity, big)

    result = run(loop, main())
    assert result is big
    assert len(result) == 10 ** 6 and result[-1] == 10 ** 6 - 1


@pytest.mark.parametrize("entry", ENTRIES)
def test_exception_keeps_original_traceback(loop, pool, entry):
    exc = Boom("boom")
    call = caller(entry, pool)

    async def main():
        with pytest.raises(Boom) as info:
            await call(raising_function, exc)
        return info.value

    raised = run(loop, main())
    assert raised is exc
    names = [frame.name for frame in traceback.extract_tb(raised.__traceback__)]
    assert "raising_function" in names, names


@pytest.mark.parametrize("entry", ENTRIES)
def test_exception_matches_stdlib(loop, pool, entry):
    """Type, args and the raising frame as loop.run_in_executor gives them."""
    call = caller(entry, pool)

    async def outcome(coro):
        try:
            await coro
        except Exception as e:
            return (type(e), e.args,
                    traceback.extract_tb(e.__traceback__)[-1].name)
        return None

    async def main():
        ref = await outcome(loop.run_in_executor(
            None, operator.truediv, 1, 0))
        got = await outcome(call(operator.truediv, 1, 0))
        ref2 = await outcome(loop.run_in_executor(
            None, raising_function, KeyError("k")))
        got2 = await outcome(call(raising_function, KeyError("k")))
        return ref, got, ref2, got2

    ref, got, ref2, got2 = run(loop, main())
    assert ref[0] is ZeroDivisionError
    assert got[:2] == ref[:2]
    assert ref2 == (KeyError, ("k",), "raising_function")
    assert got2 == ref2


@pytest.mark.parametrize("entry", ENTRIES)
def test_args_and_kwargs_pass_through(loop, pool, entry):
    call = caller(entry, pool)

    async def main():
        # Names of the callers' own parameters must reach fn as kwargs.
        return (await call(echo, 1, 2, c=3),
                await call(echo, func=1, fn=2, executor=3, loop=4),
                await call(echo))

    a, b, c = run(loop, main())
    assert a == ((1, 2), {"c": 3})
    assert b == ((), {"func": 1, "fn": 2, "executor": 3, "loop": 4})
    assert c == ((), {})


def test_pool_run_needs_a_running_loop(pool):
    with pytest.raises(RuntimeError):
        pool.run(int)
    with pytest.raises(TypeError):
        pool.run()


def test_pool_run_returns_a_future_of_the_running_loop(loop, pool):
    async def main():
        fut = pool.run(int, "7")
        assert asyncio.isfuture(fut)
        assert fut.get_loop() is asyncio.get_running_loop()
        return await fut

    assert run(loop, main()) == 7


def test_many_results_resolve_in_order_values(loop, pool):
    async def main():
        futs = [pool.run(operator.mul, i, 3) for i in range(2000)]
        return await asyncio.gather(*futs)

    assert run(loop, main()) == [i * 3 for i in range(2000)]


def test_run_after_pool_shutdown_raises_like_submit(loop, pools):
    pool = pools(max_workers=1)
    pool.shutdown()
    with pytest.raises(RuntimeError) as ref:
        pool.submit(int)

    async def main():
        with pytest.raises(RuntimeError) as got:
            pool.run(int)
        return got.value

    assert str(run(loop, main())) == str(ref.value)


def test_a_burst_of_outcomes_costs_one_wakeup(loop, pools):
    """Outcomes that pile up while the loop is busy reach it with a single
    call_soon_threadsafe, and one pass of the loop resolves them all."""
    pool = pools(max_workers=1)
    gate = pools.gate()
    wakeups = []
    orig = loop.call_soon_threadsafe

    def counting(*args, **kwargs):
        wakeups.append(args[0])
        return orig(*args, **kwargs)

    loop.call_soon_threadsafe = counting

    async def main():
        blocker = block_worker(pool, gate)
        futs = [pool.run(operator.neg, i) for i in range(100)]
        gate.set()
        # The loop thread is blocked here: one worker, in order, so once
        # this returns every outcome above has been posted.
        assert pool.submit(int, "0").result(WAIT) == 0
        assert blocker.result(WAIT) is True
        assert not any(f.done() for f in futs)
        posted = len(wakeups)
        await asyncio.sleep(0)          # one pass of the loop
        done = sum(f.done() for f in futs)
        return posted, done, [f.result() for f in futs if f.done()]

    posted, done, values = run(loop, main())
    assert posted == 1
    assert done == 100
    assert values == [-i for i in range(100)]


# --------------------------------------------------------------- cancel

@pytest.mark.parametrize("how", ["task", "future"])
@pytest.mark.parametrize("entry", POOL_ENTRIES)
def test_cancel_before_start_removes_the_job(loop, pools, entry, how):
    pool = pools(max_workers=1)
    gate = pools.gate()
    call = caller(entry, pool)
    ran = []

    async def main():
        blocker = block_worker(pool, gate)
        fut = call(ran.append, "cancelled job")
        task = asyncio.ensure_future(awaiter(fut))
        await asyncio.sleep(0)          # the task now awaits fut
        assert not task.done()
        if how == "task":
            task.cancel()
        else:
            assert fut.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut.cancelled()
        gate.set()
        assert blocker.result(WAIT) is True
        # The single worker runs jobs in order: once this one is done, the
        # cancelled one has had its turn.
        await call(ran.append, "later job")

    run(loop, main())
    assert ran == ["later job"]
    assert pool.stats()["cancelled"] >= 1


@pytest.mark.parametrize("logging_via", ["handler", "default-handler"])
@pytest.mark.parametrize("outcome", ["raise", "return"])
@pytest.mark.parametrize("entry", POOL_ENTRIES)
def test_cancel_while_running_discards_the_outcome_quietly(
        loop, pools, loop_errors, unraisables, caplog, entry, outcome,
        logging_via):
    caplog.set_level(logging.DEBUG, logger="asyncio")
    if logging_via == "default-handler":
        loop.set_exception_handler(None)   # the stdlib's: logs to 'asyncio'
    pool = pools(max_workers=1)
    started = threading.Event()
    release = pools.gate()
    refs = []
    call = caller(entry, pool)

    def job():
        started.set()
        release.wait(WAIT)
        obj = Boom("raised after the cancel") if outcome == "raise" else Payload()
        refs.append(weakref.ref(obj))
        if outcome == "raise":
            raise obj
        return obj

    async def main():
        fut = call(job)
        task = asyncio.ensure_future(awaiter(fut))
        assert started.wait(WAIT)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut.cancelled()
        release.set()
        # Same worker, same loop channel: resolved after the cancelled one.
        assert await call(operator.add, 1, 2) == 3
        return weakref.ref(fut)

    fut_ref = run(loop, main())
    gc.collect()
    assert len(refs) == 1
    assert refs[0]() is None, "the discarded outcome was not freed"
    assert fut_ref() is None, "the cancelled future was not freed"
    assert loop_errors == []
    assert logged(caplog) == []
    assert unraisables == []


def test_cancel_many_queued_only_those_are_skipped(loop, pools):
    pool = pools(max_workers=1)
    gate = pools.gate()
    ran = []

    async def main():
        blocker = block_worker(pool, gate)
        futs = [pool.run(ran.append, i) for i in range(200)]
        for f in futs[::2]:
            assert f.cancel()
        gate.set()
        assert blocker.result(WAIT) is True
        kept = await asyncio.gather(*futs[1::2])
        return kept, [f.cancelled() for f in futs]

    kept, cancelled = run(loop, main())
    assert kept == [None] * 100
    assert ran == list(range(1, 200, 2))
    assert cancelled == [i % 2 == 0 for i in range(200)]


def test_shutdown_cancel_futures_cancels_queued_jobs(loop, pools):
    """pool.shutdown(cancel_futures=True): a queued job's future is
    cancelled (as the stdlib's, through wrap_future), the running one ends."""
    pool = pools(max_workers=1)
    gate = pools.gate()
    ran = []

    async def main():
        started = threading.Event()

        def first():
            started.set()
            gate.wait(WAIT)
            return "first"

        running = pool.run(first)
        assert started.wait(WAIT)
        queued = [pool.run(ran.append, i) for i in range(5)]
        pool.shutdown(wait=False, cancel_futures=True)
        gate.set()
        out = await asyncio.gather(running, *queued, return_exceptions=True)
        return out, [f.cancelled() for f in queued]

    out, cancelled = run(loop, main())
    assert out[0] == "first"
    assert all(isinstance(o, asyncio.CancelledError) for o in out[1:]), out
    assert cancelled == [True] * 5
    assert ran == []


def failing_initializer():
    raise Boom("initializer")


@pytest.mark.parametrize("entry", POOL_ENTRIES)
def test_broken_pool_fails_the_job_like_submit(loop, pools, entry):
    pool = pools(max_workers=1, initializer=failing_initializer)
    call = caller(entry, pool)
    ran = []

    async def main():
        with pytest.raises(fastexec.BrokenThreadPool) as first:
            await call(ran.append, 1)
        with pytest.raises(fastexec.BrokenThreadPool) as ref:
            pool.submit(ran.append, 2)
        with pytest.raises(fastexec.BrokenThreadPool) as later:
            await call(ran.append, 3)
        return first.value, ref.value, later.value

    first, ref, later = run(loop, main())
    assert str(later) == str(ref)
    assert ran == []


@pytest.mark.parametrize("debug", [False, True])
def test_non_callable_like_the_loop(loop, pool, debug):
    loop.set_debug(debug)

    async def outcome(make):
        try:
            await make()
        except Exception as e:
            return type(e)
        return None

    async def main():
        return (await outcome(lambda: loop.run_in_executor(pool, 42)),
                await outcome(lambda: fastexec.run_in_executor(pool, 42)))

    ref, got = run(loop, main())
    assert ref is TypeError
    assert got is ref


# ------------------------------------------------------- closed loops

@pytest.mark.parametrize("stage", ["running", "finished-before-close"])
def test_loop_closed_with_jobs_in_flight(loop_factory, pools, unraisables,
                                        caplog, stage):
    """Outcomes for a closed loop are dropped: no error, nothing kept alive,
    and the pool goes on serving other loops.

    running: the loop is closed while one job runs and one is queued (their
    outcomes arrive at a closed loop).  finished-before-close: both finish
    while the loop is not running, so the wakeup is queued in the loop when
    it is closed, and never runs."""
    caplog.set_level(logging.DEBUG, logger="asyncio")
    pool = pools(max_workers=1)
    started = threading.Event()
    release = pools.gate()
    refs = []

    def job(kind):
        started.set()
        release.wait(WAIT)
        obj = Boom("for a closed loop") if kind == "raise" else Payload()
        refs.append(weakref.ref(obj))
        if kind == "raise":
            raise obj
        return obj

    errors = []
    lp = loop_factory()
    lp.set_exception_handler(lambda _lp, ctx: errors.append(ctx))

    async def start():
        return [pool.run(job, "return"), pool.run(job, "raise")]

    try:
        futs = lp.run_until_complete(start())
        fut_refs = [weakref.ref(f) for f in futs]
        assert started.wait(WAIT)
        if stage == "running":
            lp.close()
            release.set()
        else:
            release.set()
            # One worker, FIFO: when this is done both jobs were posted.
            assert pool.submit(int, "1").result(WAIT) == 1
            lp.close()
    finally:
        release.set()
        lp.close()
    loop_ref = weakref.ref(lp)

    # The pool keeps serving other loops (and, one worker in order, both
    # jobs for the closed loop are finished once this returns).
    other = loop_factory()
    try:
        async def use():
            return await pool.run(operator.add, 20, 22)
        assert run(other, use()) == 42
    finally:
        close_loop(other)

    del futs, lp
    gc.collect()
    assert len(refs) == 2
    assert [r() for r in refs] == [None, None], "outcomes kept alive"
    assert [r() for r in fut_refs] == [None, None], "futures kept alive"
    assert loop_ref() is None, "the closed loop was kept alive"
    assert errors == []
    assert unraisables == []
    assert logged(caplog) == []
    # Counters are updated when a worker comes back for more work.
    assert wait_until(lambda: pool.stats()["running"] == 0), pool.stats()
    assert pool.stats()["completed"] >= 3


def test_loop_closed_and_dropped_while_job_queued(loop_factory, pools, unraisables):
    """A loop closed *and dropped* before its queued job even starts."""
    pool = pools(max_workers=1)
    gate = pools.gate()
    blocker = block_worker(pool, gate)
    lp = loop_factory()

    async def start():
        return pool.run(Payload)

    fut_ref = weakref.ref(lp.run_until_complete(start()))
    lp.close()
    del lp
    gc.collect()
    gate.set()
    assert blocker.result(WAIT) is True
    assert pool.submit(int, "3").result(WAIT) == 3
    gc.collect()
    assert fut_ref() is None
    assert unraisables == []


def _fastexec_internal_objects():
    gc.collect()
    return sorted(type(o).__name__ for o in gc.get_objects()
                  if type(o).__module__ == "fastexec._fastexec"
                  and type(o).__name__.startswith("_"))


def test_loop_dropped_unclosed_with_outcomes_in_flight_is_collected(pools):
    """A loop dropped without close() while its jobs' outcomes are on their
    way: the loop, its selector's file descriptors and the outcomes are
    freed by the garbage collector, as with the stdlib bridge.  (The stdlib
    loop only: an unclosed uvloop loop is never freed, even idle.)"""
    pool = pools(max_workers=1)
    gate = pools.gate()
    refs = []
    lp = asyncio.new_event_loop()

    def job():
        gate.wait(WAIT)
        obj = Payload()
        refs.append(weakref.ref(obj))
        return obj

    async def start():
        pool.run(job)                   # fire and forget
        fastexec.wrap_future(pool.submit(job))

    lp.run_until_complete(start())
    loop_ref = weakref.ref(lp)
    del lp
    gate.set()
    # One worker, FIFO: once this is done both outcomes were posted.
    assert pool.submit(int, "1").result(WAIT) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)   # unclosed loop
        assert wait_until(lambda: gc.collect() is not None
                          and loop_ref() is None), "the loop was kept alive"
    assert len(refs) == 2 and [r() for r in refs] == [None, None]


def test_refused_calls_release_their_arguments(loop, pools):
    """Calls refused by a shut-down pool keep no reference to what they
    were given."""
    pool = pools(max_workers=1)
    pool.shutdown()
    arg, kwarg = Payload(), Payload()
    before = sys.getrefcount(arg), sys.getrefcount(kwarg)

    async def refused():
        for _ in range(100):
            with pytest.raises(RuntimeError):
                pool.run(identity, arg, key=kwarg)
            with pytest.raises(RuntimeError):
                fastexec.run_in_executor(pool, identity, arg, key=kwarg)
            with pytest.raises(RuntimeError):    # to_thread's way in
                pool._run_on(asyncio.get_running_loop(),
                             contextvars.copy_context(), identity, (arg,),
                             {"key": kwarg})

    run(loop, refused())
    assert (sys.getrefcount(arg), sys.getrefcount(kwarg)) == before


def test_a_wakeup_the_loop_refused_is_tried_again(pools, unraisables):
    """call_soon_threadsafe failing on a loop that is not closed (say a
    MemoryError): reported, and the outcomes wait for the next one, which
    schedules the wakeup again; nothing is lost."""
    failures = [1]

    class Loop(asyncio.SelectorEventLoop):
        def call_soon_threadsafe(self, callback, *args, **kwargs):
            if failures and type(callback).__name__ == "_Wakeup":
                failures.pop()
                raise MemoryError("refused once")
            return super().call_soon_threadsafe(callback, *args, **kwargs)

    pool = pools(max_workers=1)
    gate = pools.gate()
    lp = Loop()
    try:
        async def main():
            first = pool.run(operator.add, 1, 1)
            # The first outcome's wakeup is refused; wait for that (on the
            # pool: one worker, FIFO), then post a second outcome.
            blocker = pool.submit(gate.wait, WAIT)
            gate.set()
            await asyncio.wrap_future(blocker)
            assert not first.done()
            second = pool.run(operator.add, 2, 2)
            return await asyncio.wait_for(asyncio.gather(first, second), WAIT)

        assert lp.run_until_complete(main()) == [2, 4]
    finally:
        close_loop(lp)
    assert len(unraisables) == 1 and "refused once" in unraisables[0]


def test_loops_come_and_go_without_leaking(loop_factory, pools):
    """Per-loop bookkeeping (channel, wakeups, relays) goes with the loop."""
    pool = pools(max_workers=2)

    def one_loop():
        lp = loop_factory()
        try:
            async def main():
                r = await pool.run(operator.add, 1, 2)
                w = await fastexec.wrap_future(pool.submit(operator.neg, 3))
                return r, w
            assert run(lp, main()) == (3, -3)
        finally:
            close_loop(lp)
        return weakref.ref(lp)

    one_loop()                      # warm up whatever is made once
    before = _fastexec_internal_objects()
    refs = [one_loop() for _ in range(20)]
    assert wait_until(lambda: pool.stats()["running"] == 0)
    after = _fastexec_internal_objects()
    assert [r() for r in refs] == [None] * 20
    assert after == before


# -------------------------------------------------- many loops, threads

def _many_loops(factories, pool, n_calls):
    n = len(factories)
    barrier = threading.Barrier(n)
    results = {}
    failures = []

    def token(t, i):
        return (t, i)

    def thread_main(t, factory):
        try:
            lp = factory()
            ident = threading.get_ident()
            wrong = []

            def check(fut):
                if threading.get_ident() != ident:
                    wrong.append(threading.get_ident())
                if fut.get_loop() is not lp:
                    wrong.append("other loop")

            async def main():
                futs = []
                for i in range(n_calls):
                    f = pool.run(token, t, i)
                    f.add_done_callback(check)
                    futs.append(f)
                    if i % 250 == 0:
                        await asyncio.sleep(0)
                return await asyncio.gather(*futs)

            try:
                barrier.wait(WAIT)
                res = run(lp, main(), timeout=25)
            finally:
                close_loop(lp)
            results[t] = (res, wrong)
        except BaseException as e:  # reported by the main thread
            failures.append((t, repr(e)))

    threads = [threading.Thread(target=thread_main, args=(t, f),
                                name="loop-thread-%d" % t)
               for t, f in enumerate(factories)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(28)
    assert not any(th.is_alive() for th in threads), "a loop thread hung"
    assert failures == []
    for t in range(n):
        res, wrong = results[t]
        assert res == [(t, i) for i in range(n_calls)], "thread %d" % t
        assert wrong == [], "thread %d resolved off its loop thread" % t


def test_one_pool_many_loops_many_threads(loop_factory, pools):
    _many_loops([loop_factory] * 8, pools(max_workers=4), 2000)


def test_one_pool_stdlib_and_uvloop_loops_mixed(pools):
    factories = [factory_for(LOOP_KINDS[i % 2]) for i in range(8)]
    _many_loops(factories, pools(max_workers=4), 1000)


# --------------------------------------------------------------- debug

def test_debug_mode_keeps_working(loop, pool, loop_errors):
    loop.set_debug(True)

    async def main():
        out = [await pool.run(operator.add, 1, 2),
               await fastexec.run_in_executor(pool, echo, 1, k=2),
               await fastexec.run_in_executor(None, operator.neg, 5),
               await fastexec.to_thread(operator.pos, 6),
               await fastexec.wrap_future(pool.submit(operator.mul, 2, 4))]
        with pytest.raises(Boom):
            await pool.run(raising_function, Boom("x"))
        out.append(await asyncio.gather(*(pool.run(identity, i)
                                          for i in range(100))))
        return out

    out = run(loop, main())
    assert out == [3, ((1,), {"k": 2}), -5, 6, 8, list(range(100))]
    assert loop.get_debug()


async def _submit_outcome(submit, target):
    """What submitting a coroutine (function) does: refused at once, or run
    (then the outcome is collected and any coroutine closed, so that nothing
    is left unretrieved or unawaited)."""
    t = target()
    try:
        try:
            fut = submit(t)
        except TypeError as e:
            return ("refused", type(e), str(e))
        (r,) = await asyncio.gather(fut, return_exceptions=True)
        if asyncio.iscoroutine(r):
            r.close()
            return ("ran", "returned a coroutine")
        return ("ran", repr(r))
    finally:
        if asyncio.iscoroutine(t):
            t.close()


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
@pytest.mark.parametrize("executor", ["None", "fastexec-pool"])
@pytest.mark.parametrize("what", ["coroutine-function", "coroutine"])
def test_coroutines_refused_like_the_loop(loop, pool, executor, what, debug):
    """fastexec.run_in_executor refuses a coroutine (function) exactly when,
    and as, the loop's own run_in_executor does: the stdlib loop in debug
    mode only, uvloop always."""
    loop.set_debug(debug)
    ex = None if executor == "None" else pool

    async def coro_fn():
        return None

    def target():
        return coro_fn if what == "coroutine-function" else coro_fn()

    async def main():
        ref = await _submit_outcome(
            functools.partial(loop.run_in_executor, ex), target)
        got = await _submit_outcome(
            functools.partial(fastexec.run_in_executor, ex), target)
        return ref, got

    ref, got = run(loop, main())
    if debug or not is_stdlib_loop(loop):
        assert ref == ("refused", TypeError, COROUTINE_MSG)
    else:
        assert ref[0] == "ran"
    assert got == ref


def test_run_in_executor_after_shutdown_default_executor(loop, pool):
    async def main():
        # The default executor exists (on the stdlib loop: a fastexec pool).
        assert await fastexec.run_in_executor(None, int, "1") == 1
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError) as ref:
            loop.run_in_executor(None, int)
        with pytest.raises(RuntimeError) as got:
            fastexec.run_in_executor(None, int)
        with pytest.raises(RuntimeError) as ref_tt:
            await asyncio.to_thread(int)
        with pytest.raises(RuntimeError) as got_tt:
            await fastexec.to_thread(int)
        # An explicit executor is not the default: still served.
        explicit = await fastexec.run_in_executor(pool, int, "5")
        return ref.value, got.value, ref_tt.value, got_tt.value, explicit

    ref, got, ref_tt, got_tt, explicit = run(loop, main())
    assert str(ref) == EXECUTOR_SHUTDOWN_MSG
    assert str(got) == str(ref)
    assert str(ref_tt) == EXECUTOR_SHUTDOWN_MSG
    assert str(got_tt) == str(ref_tt)
    assert explicit == 5


def test_wrap_future_for_a_loop_closed_before_the_outcome(
        loop_factory, pools, unraisables, caplog):
    """wrap_future's outcome arriving at a closed loop is dropped quietly."""
    caplog.set_level(logging.DEBUG)
    pool = pools(max_workers=1)
    gate = pools.gate()
    lp = loop_factory()
    src = pool.submit(lambda: (gate.wait(WAIT), Payload())[1])
    afut_ref = weakref.ref(fastexec.wrap_future(src, loop=lp))
    lp.close()
    gate.set()
    payload_ref = weakref.ref(src.result(WAIT))
    assert pool.submit(int, "1").result(WAIT) == 1
    del src, lp
    gc.collect()
    assert afut_ref() is None
    assert payload_ref() is None
    assert unraisables == []
    assert logged(caplog) == []


# -------------------------------------------------------------- uvloop

def test_uvloop_loop_run_in_executor_through_submit(pools, cf_futures):
    uvloop = pytest.importorskip("uvloop")
    pool = pools(max_workers=2)
    lp = uvloop.new_event_loop()
    try:
        async def main():
            before = cf_futures.submits
            a = await lp.run_in_executor(pool, operator.add, 2, 3)
            b = await lp.run_in_executor(pool, thread_name)
            with pytest.raises(Boom) as info:
                await lp.run_in_executor(pool, raising_function, Boom("u"))
            names = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
            return a, b, names, cf_futures.submits - before

        a, name, names, made = run(lp, main())
        assert a == 5
        assert name.startswith(pool._thread_name_prefix)
        assert "raising_function" in names
        assert made == 3   # uvloop goes through pool.submit
    finally:
        close_loop(lp)


def test_uvloop_all_entries(pools):
    uvloop = pytest.importorskip("uvloop")
    pool = pools(max_workers=2)
    lp = uvloop.new_event_loop()
    try:
        async def main():
            return (await pool.run(operator.add, 1, 1),
                    await fastexec.run_in_executor(pool, echo, a=1),
                    await fastexec.run_in_executor(None, echo, b=2),
                    await fastexec.to_thread(echo, c=3),
                    await fastexec.wrap_future(pool.submit(operator.neg, 4)))
        assert run(lp, main()) == (2, ((), {"a": 1}), ((), {"b": 2}),
                                   ((), {"c": 3}), -4)
    finally:
        close_loop(lp)


# ------------------------------------------ no concurrent.futures.Future

def test_fast_path_creates_no_concurrent_future(loop, pool, cf_futures):
    entries = fast_entries(loop)

    async def main():
        made = {}
        for entry in entries:
            call = caller(entry, pool)
            before = cf_futures.count
            values = await asyncio.gather(*(call(operator.add, i, 1)
                                            for i in range(50)))
            assert values == list(range(1, 51))
            with pytest.raises(Boom):
                await call(raising_function, Boom("x"))
            made[entry] = cf_futures.count - before
        # The counter does see the C code's futures:
        before = cf_futures.count
        assert await asyncio.wrap_future(pool.submit(int, "2")) == 2
        made["submit (control)"] = cf_futures.count - before
        return made

    made = run(loop, main())
    expected = {entry: 0 for entry in entries}
    expected["submit (control)"] = 1
    assert made == expected


def _live_cf_futures():
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, cf.Future))


def test_no_concurrent_future_objects_while_jobs_queued(loop, pools):
    """Counted as live objects (whoever made them, Python or C): jobs queued
    through every fast-path entry hold no concurrent future."""
    pool = pools(max_workers=1)
    gate = pools.gate()
    entries = fast_entries(loop)
    if is_stdlib_loop(loop):
        # The default executor is this pool, so that it can be blocked.
        loop.set_default_executor(pool)
    blocker = block_worker(pool, gate)

    async def main():
        base = _live_cf_futures()
        futs = []
        for entry in entries:
            call = caller(entry, pool)
            futs += [asyncio.ensure_future(call(operator.neg, i))
                     for i in range(10)]
        await asyncio.sleep(0)          # to_thread's coroutines start
        during = _live_cf_futures()
        control = pool.submit(operator.neg, 0)   # the census sees these
        with_control = _live_cf_futures()
        queued = pool.stats()["queued"]
        gate.set()
        values = await asyncio.gather(*futs)
        assert control.result(WAIT) == 0
        return base, during, with_control, queued, values

    base, during, with_control, queued, values = run(loop, main())
    assert blocker.result(WAIT) is True
    assert queued == 10 * len(entries) + 1
    assert with_control == base + 1
    assert during == base
    assert values == [-i for i in range(10)] * len(entries)


# ------------------------------------------------------ run_in_executor

def test_default_executor_becomes_a_fastexec_pool(loop, cf_futures):
    async def main():
        name = await fastexec.run_in_executor(None, thread_name)
        ref_name = await loop.run_in_executor(None, thread_name)
        return name, ref_name

    name, ref_name = run(loop, main())
    # Same default executor as the loop's own run_in_executor(None) uses.
    assert name.split("_")[0] == ref_name.split("_")[0]
    if is_stdlib_loop(loop):
        default = loop._default_executor
        assert type(default) is fastexec.ThreadPoolExecutor
        assert name.startswith("asyncio_")
        threads = list(default._threads)
        assert threads
        loop.run_until_complete(
            asyncio.wait_for(loop.shutdown_default_executor(), WAIT))
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
        assert default._shutdown
    else:
        assert name.startswith("uvloop")


def test_existing_default_executor_is_used(loop, pools, stdlib_pool):
    async def main():
        return (await fastexec.run_in_executor(None, thread_name),
                await fastexec.to_thread(thread_name))

    loop.set_default_executor(stdlib_pool)
    a, b = run(loop, main())
    assert a.startswith("stdlibpool")
    assert b.startswith("stdlibpool")

    mine = pools(max_workers=1, thread_name_prefix="minefast")
    loop.set_default_executor(mine)
    a, b = run(loop, main())
    assert a.startswith("minefast")
    assert b.startswith("minefast")


def test_set_default_fastexec_pool_takes_fast_path(pools, cf_futures):
    lp = asyncio.new_event_loop()
    try:
        lp.set_default_executor(pools(max_workers=2))

        async def main():
            before = cf_futures.count
            r = (await fastexec.run_in_executor(None, operator.add, 1, 2),
                 await fastexec.to_thread(operator.add, 3, 4))
            return r, cf_futures.count - before

        assert run(lp, main()) == ((3, 7), 0)
    finally:
        close_loop(lp)


def test_stdlib_thread_pool_gets_stdlib_behaviour(loop, stdlib_pool, cf_futures):
    async def main():
        before = cf_futures.count
        r = await fastexec.run_in_executor(stdlib_pool, echo, 1, k=2)
        name = await fastexec.run_in_executor(stdlib_pool, thread_name)
        with pytest.raises(Boom) as info:
            await fastexec.run_in_executor(stdlib_pool, raising_function,
                                           Boom("s"))
        return r, name, info.value, cf_futures.count - before

    r, name, exc, made = run(loop, main())
    assert r == ((1,), {"k": 2})
    assert name.startswith("stdlibpool")
    assert "raising_function" in [
        f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert made == 3   # one concurrent future per call: the stdlib's path


def test_process_pool_gets_stdlib_behaviour(loop, process_pool):
    async def main():
        a = await fastexec.run_in_executor(process_pool, process_power, 3)
        b = await fastexec.run_in_executor(process_pool, process_power, 2, exp=10)
        with pytest.raises(ValueError) as info:
            await fastexec.run_in_executor(process_pool, process_raise, "pp")
        ref = await loop.run_in_executor(process_pool, process_power, 4)
        return a, b, info.value.args, ref

    assert run(loop, main()) == (9, 1024, ("pp",), 16)


@pytest.mark.parametrize("bad", ["not an executor", 42, object()])
def test_non_executor_fails_like_the_loop(loop, bad):
    async def main():
        with pytest.raises(Exception) as ref:
            loop.run_in_executor(bad, int)
        with pytest.raises(Exception) as got:
            fastexec.run_in_executor(bad, int)
        return ref.value, got.value

    ref, got = run(loop, main())
    assert type(got) is type(ref)


def test_run_in_executor_needs_a_running_loop(pool):
    with pytest.raises(RuntimeError):
        fastexec.run_in_executor(pool, int)


# ------------------------------------------------------------ to_thread

VAR = contextvars.ContextVar("fastexec_test_var", default="unset")


def read_and_change_var(suffix):
    seen = VAR.get()
    VAR.set("changed in fn")
    return seen + suffix


def test_to_thread_copies_the_context(loop):
    async def main():
        VAR.set("set in task")
        got = await fastexec.to_thread(read_and_change_var, "!")
        after = VAR.get()
        ref = await asyncio.to_thread(read_and_change_var, "!")
        ref_after = VAR.get()
        return got, after, ref, ref_after

    got, after, ref, ref_after = run(loop, main())
    assert (ref, ref_after) == ("set in task!", "set in task")
    assert got == "set in task!"
    assert after == "set in task"
    assert VAR.get() == "unset"


def test_to_thread_kwargs_and_is_a_coroutine(loop):
    async def main():
        coro = fastexec.to_thread(echo, 1, key="v", func="f")
        assert asyncio.iscoroutine(coro)
        task = asyncio.create_task(coro)
        r = await task
        with pytest.raises(Boom):
            await asyncio.create_task(fastexec.to_thread(raising_function,
                                                         Boom("t")))
        return r

    assert run(loop, main()) == ((1,), {"key": "v", "func": "f"})


def test_to_thread_runs_in_another_thread(loop):
    async def main():
        return await fastexec.to_thread(thread_ident)

    assert run(loop, main()) != threading.get_ident()


# ----------------------------------------------------------- wrap_future

def _source(kind, pools, stdlib_pool, process_pool):
    if kind == "fastexec":
        return pools(max_workers=2)
    if kind == "stdlib":
        return stdlib_pool
    if kind == "process":
        return process_pool
    raise ValueError(kind)


@pytest.mark.parametrize("source", ["fastexec", "stdlib", "process"])
def test_wrap_future_result_and_exception(loop, pools, request, source):
    stdlib_pool = request.getfixturevalue("stdlib_pool")
    pp = request.getfixturevalue("process_pool") if source == "process" else None
    ex = _source(source, pools, stdlib_pool, pp)

    async def main():
        a = fastexec.wrap_future(ex.submit(process_power, 5))
        assert asyncio.isfuture(a)
        assert a.get_loop() is asyncio.get_running_loop()
        r = await a
        with pytest.raises(ValueError) as info:
            await fastexec.wrap_future(ex.submit(process_raise, "w"))
        many = await asyncio.gather(*(fastexec.wrap_future(
            ex.submit(process_power, i)) for i in range(20)))
        return r, info.value, many

    r, exc, many = run(loop, main())
    assert r == 25
    assert exc.args == ("w",)
    if source != "process":   # the traceback of a process job is rebuilt
        assert "process_raise" in [
            f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert many == [i * i for i in range(20)]


def _outcome_of(afut):
    """(state, exception type, args) of a done asyncio future."""
    if afut.cancelled():
        return ("cancelled", None, None)
    exc = afut.exception()
    if exc is None:
        return ("result", afut.result(), None)
    return ("exception", type(exc), exc.args)


CF_OUTCOMES = {
    "result": lambda f: f.set_result("r"),
    "value-error": lambda f: f.set_exception(ValueError("v")),
    "cf-cancelled-error": lambda f: f.set_exception(cf.CancelledError("c")),
    "cf-timeout-error": lambda f: f.set_exception(cf.TimeoutError("t")),
    "cancelled": lambda f: f.cancel(),
}


@pytest.mark.parametrize("when", ["already-done", "done-later"])
@pytest.mark.parametrize("outcome", sorted(CF_OUTCOMES))
def test_wrap_future_outcome_like_asyncio(loop, outcome, when):
    """Exceptions are converted (CancelledError, TimeoutError) exactly as
    asyncio.wrap_future does; cancelled stays cancelled."""
    settle = CF_OUTCOMES[outcome]

    async def wrapped(wrap):
        src = cf.Future()
        if when == "already-done":
            settle(src)
        afut = wrap(src)
        if when == "done-later":
            th = threading.Thread(target=settle, args=(src,))
            th.start()
            th.join(WAIT)
        try:
            await asyncio.wait_for(asyncio.shield(afut), WAIT)
        except BaseException:
            pass
        assert afut.done()
        return _outcome_of(afut)

    async def main():
        return (await wrapped(asyncio.wrap_future),
                await wrapped(fastexec.wrap_future))

    ref, got = run(loop, main())
    assert got == ref


POOL_JOB_OUTCOMES = {
    "result": (identity, "r"),
    "value-error": (raising_function, ValueError("v")),
    "cf-cancelled-error": (raising_function, cf.CancelledError("c")),
    "cf-timeout-error": (raising_function, cf.TimeoutError("t")),
    "stop-iteration": (raising_function, StopIteration("s")),
    "cancelled": None,
}


@pytest.mark.parametrize("when", ["already-done", "done-later"])
@pytest.mark.parametrize("outcome", sorted(POOL_JOB_OUTCOMES))
def test_wrap_future_of_pool_futures_like_asyncio(loop, pools, outcome, when):
    """The same, for futures made by fastexec's submit (its own Future
    subclass) and by the stdlib pool's: fastexec.wrap_future gives what
    asyncio.wrap_future gives (except StopIteration: a RuntimeError where
    asyncio's future can't take it at all)."""
    job = POOL_JOB_OUTCOMES[outcome]

    async def wrapped(ex, wrap):
        gate = pools.gate()
        blocker = None
        if when == "done-later" or job is None:
            blocker = block_worker(ex, gate)
        src = ex.submit(int) if job is None else ex.submit(*job)
        if when == "already-done":
            if job is None:
                assert src.cancel()
            else:
                cf.wait([src], WAIT)
            assert src.done()
        afut = wrap(src)
        if when == "done-later":
            if job is None:
                th = threading.Thread(target=src.cancel)
                th.start()
                th.join(WAIT)
            gate.set()
        try:
            await asyncio.wait_for(asyncio.shield(afut), WAIT)
        except BaseException:
            pass
        gate.set()
        if blocker is not None:
            assert blocker.result(WAIT) is True
        assert afut.done()
        return _outcome_of(afut)

    async def main():
        out = {}
        for name in ("fastexec", "stdlib"):
            ex = (pools(max_workers=1) if name == "fastexec"
                  else cf.ThreadPoolExecutor(max_workers=1))
            try:
                if outcome != "stop-iteration":
                    out[name, "asyncio"] = await wrapped(ex, asyncio.wrap_future)
                out[name, "fastexec"] = await wrapped(ex, fastexec.wrap_future)
            finally:
                if name == "stdlib":
                    ex.shutdown(wait=True)
        return out

    out = run(loop, main())
    if outcome == "stop-iteration":
        assert out["fastexec", "fastexec"][:2] == ("exception", RuntimeError)
        assert out["stdlib", "fastexec"][:2] == ("exception", RuntimeError)
        return
    ref = out["stdlib", "asyncio"]
    assert out["fastexec", "asyncio"] == ref
    assert out["stdlib", "fastexec"] == ref
    assert out["fastexec", "fastexec"] == ref


def test_wrap_future_converted_exception_types(loop):
    async def main():
        out = []
        for exc in (cf.CancelledError("c"), cf.TimeoutError("t")):
            src = cf.Future()
            src.set_exception(exc)
            try:
                await fastexec.wrap_future(src)
            except BaseException as e:
                out.append(type(e))
        return out

    assert run(loop, main()) == [asyncio.CancelledError, asyncio.TimeoutError]


@pytest.mark.parametrize("source", ["fastexec", "stdlib"])
def test_wrap_future_cancel_asyncio_side_cancels_pending(loop, pools, source):
    ex = pools(max_workers=1) if source == "fastexec" else cf.ThreadPoolExecutor(1)
    gate = pools.gate()
    ran = []
    try:
        async def main():
            blocker = block_worker(ex, gate)
            src = ex.submit(ran.append, "cancelled")
            afut = fastexec.wrap_future(src)
            relayed = asyncio.Event()
            afut.add_done_callback(lambda _f: relayed.set())
            assert afut.cancel()
            await asyncio.wait_for(relayed.wait(), WAIT)
            gate.set()
            assert blocker.result(WAIT) is True
            await fastexec.wrap_future(ex.submit(ran.append, "later"))
            return src, afut

        src, afut = run(loop, main())
        assert afut.cancelled()
        assert src.cancelled()
        assert ran == ["later"]
    finally:
        if source == "stdlib":
            gate.set()
            ex.shutdown(wait=True)


@pytest.mark.parametrize("source", ["fastexec", "stdlib"])
def test_wrap_future_cancel_asyncio_side_while_running(
        loop, pools, loop_errors, unraisables, source):
    ex = pools(max_workers=1) if source == "fastexec" else cf.ThreadPoolExecutor(1)
    started = threading.Event()
    release = pools.gate()

    def job():
        started.set()
        release.wait(WAIT)
        raise Boom("after cancel")

    try:
        async def main():
            src = ex.submit(job)
            afut = fastexec.wrap_future(src)
            assert started.wait(WAIT)
            assert afut.cancel()
            release.set()
            await fastexec.wrap_future(ex.submit(int))
            return src, afut

        src, afut = run(loop, main())
        assert afut.cancelled()
        assert not src.cancelled()          # it was running: can't cancel
        assert isinstance(src.exception(WAIT), Boom)
        del src, afut
        gc.collect()
        assert loop_errors == []
        assert unraisables == []
    finally:
        release.set()
        if source == "stdlib":
            ex.shutdown(wait=True)


@pytest.mark.parametrize("source", ["fastexec", "stdlib", "bare"])
def test_wrap_future_cancel_concurrent_side(loop, pools, source):
    gate = pools.gate()
    ex = None
    if source == "fastexec":
        ex = pools(max_workers=1)
    elif source == "stdlib":
        ex = cf.ThreadPoolExecutor(1)
    try:
        async def main():
            if ex is not None:
                block_worker(ex, gate)
                src = ex.submit(int)
            else:
                src = cf.Future()
            afut = fastexec.wrap_future(src)
            assert src.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(afut, WAIT)
            return afut

        afut = run(loop, main())
        assert afut.cancelled()
    finally:
        gate.set()
        if source == "stdlib":
            ex.shutdown(wait=True)


def test_wrap_future_twice_and_from_many_threads(loop, pools):
    pool = pools(max_workers=4)

    async def main():
        src = pool.submit(operator.add, 1, 1)
        a, b = fastexec.wrap_future(src), fastexec.wrap_future(src)
        assert a is not b
        many = [fastexec.wrap_future(pool.submit(operator.neg, i))
                for i in range(500)]
        return await a, await b, await asyncio.gather(*many)

    a, b, many = run(loop, main())
    assert (a, b) == (2, 2)
    assert many == [-i for i in range(500)]


def test_wrap_future_asyncio_future_returned_as_is(loop):
    async def main():
        afut = loop.create_future()
        assert fastexec.wrap_future(afut) is afut
        assert asyncio.wrap_future(afut) is afut
        task = asyncio.ensure_future(coroutine_function())
        assert fastexec.wrap_future(task) is task
        await task

    run(loop, main())


@pytest.mark.parametrize("bad", ["a string", 42, None])
def test_wrap_future_non_future_like_asyncio(loop, bad):
    async def main():
        with pytest.raises(AssertionError) as ref:
            asyncio.wrap_future(bad)
        with pytest.raises(AssertionError) as got:
            fastexec.wrap_future(bad)
        return str(ref.value), str(got.value)

    ref, got = run(loop, main())
    assert got == ref


def test_wrap_future_explicit_loop_outside_running_loop(loop, pools):
    pool = pools(max_workers=1)
    src = pool.submit(operator.add, 2, 2)
    afut = fastexec.wrap_future(src, loop=loop)
    assert afut.get_loop() is loop
    assert loop.run_until_complete(asyncio.wait_for(afut, WAIT)) == 4
    done = cf.Future()
    done.set_result("already")
    afut = fastexec.wrap_future(done, loop=loop)
    assert loop.run_until_complete(asyncio.wait_for(afut, WAIT)) == "already"


def test_wrap_future_stop_iteration_becomes_runtime_error(loop, pools):
    pool = pools(max_workers=1)

    async def main():
        with pytest.raises(RuntimeError) as info:
            await fastexec.wrap_future(pool.submit(raising_function,
                                                   StopIteration("s")))
        return info.value

    exc = run(loop, main())
    assert isinstance(exc.__cause__, StopIteration)


# ------------------------------------------------------------ install()

def test_install_run_in_executor_fast_path(fastexec_installed, cf_futures):
    lp = asyncio.new_event_loop()
    try:
        async def main():
            before = cf_futures.count
            r = [await lp.run_in_executor(None, operator.add, 1, 2),
                 await asyncio.gather(*(lp.run_in_executor(None, operator.neg, i)
                                        for i in range(30)))]
            with pytest.raises(Boom):
                await lp.run_in_executor(None, raising_function, Boom("i"))
            name = await lp.run_in_executor(None, thread_name)
            return r, name, cf_futures.count - before

        r, name, made = run(lp, main())
        assert r == [3, [-i for i in range(30)]]
        assert made == 0
        assert type(lp._default_executor) is fastexec.ThreadPoolExecutor
        assert name.startswith("asyncio_")
    finally:
        close_loop(lp)


def test_install_explicit_executors(fastexec_installed, pools, stdlib_pool,
                                    cf_futures):
    lp = asyncio.new_event_loop()
    pool = pools(max_workers=2)
    try:
        async def main():
            before = cf_futures.count
            a = await lp.run_in_executor(pool, operator.add, 2, 2)
            fast_made = cf_futures.count - before
            before = cf_futures.count
            b = await lp.run_in_executor(stdlib_pool, operator.add, 3, 3)
            slow_made = cf_futures.count - before
            return a, fast_made, b, slow_made

        assert run(lp, main()) == (4, 0, 6, 1)
    finally:
        close_loop(lp)


def test_install_to_thread(fastexec_installed, cf_futures):
    assert asyncio.to_thread is fastexec.to_thread
    lp = asyncio.new_event_loop()
    try:
        async def main():
            VAR.set("install")
            before = cf_futures.count
            r = await asyncio.to_thread(read_and_change_var, "?")
            return r, VAR.get(), cf_futures.count - before

        assert run(lp, main()) == ("install?", "install", 0)
    finally:
        close_loop(lp)


def _getaddrinfo(lp):
    async def main():
        return await lp.getaddrinfo("localhost", 80)
    return run(lp, main())


def test_install_getaddrinfo_same_result(cf_futures):
    lp = asyncio.new_event_loop()
    try:
        ref = _getaddrinfo(lp)
    finally:
        close_loop(lp)
    fastexec.install()
    try:
        lp = asyncio.new_event_loop()
        try:
            before = cf_futures.count
            got = _getaddrinfo(lp)
            made = cf_futures.count - before
            assert type(lp._default_executor) is fastexec.ThreadPoolExecutor
        finally:
            close_loop(lp)
    finally:
        fastexec.uninstall()
    assert got == ref
    assert ref
    assert made == 0


def test_install_keeps_the_stdlib_checks(fastexec_installed):
    lp = asyncio.new_event_loop()
    try:
        lp.set_debug(True)

        async def main():
            with pytest.raises(TypeError) as coro_err:
                lp.run_in_executor(None, coroutine_function)
            await lp.shutdown_default_executor()
            with pytest.raises(RuntimeError) as shut_err:
                lp.run_in_executor(None, int)
            return str(coro_err.value), str(shut_err.value)

        assert run(lp, main()) == (COROUTINE_MSG, EXECUTOR_SHUTDOWN_MSG)
    finally:
        close_loop(lp)
    with pytest.raises(RuntimeError) as closed:
        lp.run_in_executor(None, int)
    assert "closed" in str(closed.value)


def test_install_leaves_uvloop_working(fastexec_installed):
    uvloop = pytest.importorskip("uvloop")
    lp = uvloop.new_event_loop()
    try:
        async def main():
            VAR.set("uv")
            return (await lp.run_in_executor(None, operator.add, 1, 1),
                    await asyncio.to_thread(read_and_change_var, "."),
                    VAR.get(),
                    await lp.getaddrinfo("localhost", 80) != [])
        assert run(lp, main()) == (2, "uv.", "uv", True)
    finally:
        close_loop(lp)


def test_uninstall_restores_the_stdlib_exactly():
    assert not fastexec.installed()
    fastexec.install()
    try:
        assert fastexec.installed()
        assert asyncio.base_events.BaseEventLoop.run_in_executor \
            is not ORIG_RUN_IN_EXECUTOR
        assert asyncio.to_thread is not ORIG_TO_THREAD
        fastexec.install()              # twice: still one uninstall away
    finally:
        fastexec.uninstall()
    assert not fastexec.installed()
    assert asyncio.base_events.BaseEventLoop.__dict__["run_in_executor"] \
        is ORIG_RUN_IN_EXECUTOR
    assert asyncio.to_thread is ORIG_TO_THREAD
    assert asyncio.threads.to_thread is ORIG_THREADS_TO_THREAD
    lp = asyncio.new_event_loop()
    try:
        async def main():
            return await lp.run_in_executor(None, int, "9")
        assert run(lp, main()) == 9
        assert type(lp._default_executor) is cf.ThreadPoolExecutor
    finally:
        close_loop(lp)


# ------------------------------------------------------ new_event_loop()

@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="asyncio.Runner(loop_factory=) and "
                           "asyncio.run(loop_factory=) are 3.12+")
def test_new_event_loop_with_runner(cf_futures):
    async def main():
        lp = asyncio.get_running_loop()
        before = cf_futures.count
        r = await lp.run_in_executor(None, operator.add, 20, 22)
        return r, cf_futures.count - before, type(lp._default_executor)

    with asyncio.Runner(loop_factory=fastexec.new_event_loop) as runner:
        assert runner.run(main()) == (42, 0, fastexec.ThreadPoolExecutor)
    assert asyncio.run(main(), loop_factory=fastexec.new_event_loop) == \
        (42, 0, fastexec.ThreadPoolExecutor)
    assert not fastexec.installed()


def test_new_event_loop_takes_fast_path(cf_futures):
    lp = fastexec.new_event_loop()
    try:
        assert isinstance(lp, asyncio.AbstractEventLoop)
        assert is_stdlib_loop(lp)
        lp.set_debug(True)

        async def main():
            before = cf_futures.count
            r = [await lp.run_in_executor(None, operator.add, 1, 2),
                 await lp.getaddrinfo("localhost", 80) != []]
            with pytest.raises(Boom):
                await lp.run_in_executor(None, raising_function, Boom("n"))
            with pytest.raises(TypeError) as info:
                lp.run_in_executor(None, coroutine_function)
            r.append(str(info.value))
            return r, cf_futures.count - before

        assert run(lp, main()) == ([3, True, COROUTINE_MSG], 0)
        assert type(lp._default_executor) is fastexec.ThreadPoolExecutor
    finally:
        close_loop(lp)
    # Only that loop: the stdlib is not patched.
    assert not fastexec.installed()
    assert asyncio.base_events.BaseEventLoop.__dict__["run_in_executor"] \
        is ORIG_RUN_IN_EXECUTOR


def test_new_event_loop_under_the_uvloop_policy():
    """A policy whose loops are not stdlib loops: new_event_loop() gives that
    loop as it is, and the fast path still works with a fastexec pool."""
    uvloop = pytest.importorskip("uvloop")
    # The policy functions are deprecated from 3.14 (removed in 3.16); the
    # private ones asyncio itself uses are not.  uvloop's EventLoopPolicy
    # reads asyncio.AbstractEventLoopPolicy, which warns there: uvloop's.
    get_policy = getattr(asyncio.events, "_get_event_loop_policy",
                         asyncio.get_event_loop_policy)
    set_policy = getattr(asyncio.events, "_set_event_loop_policy",
                         asyncio.set_event_loop_policy)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*AbstractEventLoopPolicy")
        policy = uvloop.EventLoopPolicy()
    old_policy = get_policy()
    set_policy(policy)
    try:
        lp = fastexec.new_event_loop()
    finally:
        set_policy(old_policy)
    pool = fastexec.ThreadPoolExecutor(max_workers=1)
    try:
        assert isinstance(lp, uvloop.Loop)

        async def main():
            return (await lp.run_in_executor(None, operator.add, 1, 2),
                    await fastexec.run_in_executor(pool, operator.add, 3, 4))

        assert run(lp, main()) == (3, 7)
    finally:
        close_loop(lp)
        pool.shutdown(wait=True)


# ---------------------------------------------------------- StopIteration

def _check_stop_iteration(lp, call):
    stop = StopIteration("stopped")

    async def main():
        with pytest.raises(RuntimeError) as info:
            await call(raising_function, stop)
        # The pool is fine afterwards.
        return info.value, await call(operator.add, 1, 1)

    exc, after = run(lp, main())
    assert exc.__cause__ is stop
    assert after == 2


@pytest.mark.parametrize("entry", POOL_ENTRIES)
def test_stop_iteration_becomes_runtime_error(loop, pool, entry):
    _check_stop_iteration(loop, caller(entry, pool))


@pytest.mark.parametrize("entry", ["run_in_executor(None)", "to_thread"])
def test_stop_iteration_default_executor_stdlib_loop(pool, entry):
    # Only the stdlib loop: on uvloop these take uvloop's own path, where
    # (as with the stdlib path) the awaiting task never wakes up.
    lp = asyncio.new_event_loop()
    try:
        _check_stop_iteration(lp, caller(entry, pool))
    finally:
        close_loop(lp)


# ----------------------------------------- KeyboardInterrupt, SystemExit

@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("entry", ENTRIES)
def test_base_exceptions_reach_the_awaiting_code(loop_factory, pools, entry,
                                                  exc_type):
    pool = pools(max_workers=2)

    def check(lp, make_call):
        # Uncaught: run_until_complete raises it, as with the stdlib.
        async def uncaught():
            await make_call()(raising_function, exc_type("uncaught"))

        with pytest.raises(exc_type) as info:
            lp.run_until_complete(uncaught())
        assert info.value.args == ("uncaught",)

    def check_caught(lp, make_call):
        async def caught():
            try:
                await make_call()(raising_function, exc_type("caught"))
            except exc_type as e:
                return ("caught", e.args)
        return lp.run_until_complete(asyncio.wait_for(caught(), WAIT))

    # The reference: the loop's own run_in_executor on a stdlib pool.
    ref_pool = cf.ThreadPoolExecutor(1)
    try:
        lp = loop_factory()
        try:
            check(lp, lambda: functools.partial(asyncio.get_running_loop()
                                                .run_in_executor, ref_pool))
        finally:
            lp.close()
    finally:
        ref_pool.shutdown(wait=True)

    lp = loop_factory()
    try:
        check(lp, lambda: caller(entry, pool))
    finally:
        lp.close()
    lp = loop_factory()
    try:
        assert check_caught(lp, lambda: caller(entry, pool)) == \
            ("caught", ("caught",))
    finally:
        close_loop(lp)
    # The pool still serves.
    assert pool.submit(operator.add, 1, 1).result(WAIT) == 2
