"""Behaviour of the thread pool, checked on the stdlib and on fastexec.

Every test that takes ``Pool`` / ``new_pool`` runs twice: against
``concurrent.futures.ThreadPoolExecutor`` (the reference) and against
``fastexec.ThreadPoolExecutor``.  Tests of fastexec-only features take
``FastPool`` / ``new_fast_pool`` and run once.

Conventions: blocking is done with ``threading.Event`` (a "gate" made by
``new_pool.gate()``, which is set at teardown whatever happens); every wait
is bounded by ``WAIT``; ``time.sleep`` only appears where elapsed time is the
thing tested (idle_timeout, map's timeout).
"""

import asyncio
import concurrent.futures
import concurrent.futures.thread
import gc
import itertools
import logging
import operator
import os
import random
import re
import sys
import threading
import time
import traceback
import warnings
import weakref

import pytest

from support import WAIT, wait_until

cf = concurrent.futures
BrokenThreadPool = concurrent.futures.thread.BrokenThreadPool

SHUTDOWN_MSG = "cannot schedule new futures after shutdown"
INIT_FAILED_MSG = ("A thread initializer failed, the thread pool is not "
                   "usable anymore")
DEFAULT_NAME_RE = re.compile(r"^ThreadPoolExecutor-(\d+)_(\d+)$")


def expected_default_max_workers():
    count_fn = getattr(os, "process_cpu_count", None)
    count = (count_fn() if count_fn is not None else None) or os.cpu_count()
    return min(32, (count or 1) + 4)


class Blocker:
    """Jobs that announce they started and then wait on a gate.

    ``started`` counts the jobs that are running; ``wait_started(n)`` waits
    (on a Condition, not a sleep) until n of them are.
    """

    def __init__(self, gate):
        self.gate = gate
        self.cond = threading.Condition()
        self.started = 0
        self.threads = []

    def __call__(self, value=None):
        with self.cond:
            self.started += 1
            self.threads.append(threading.current_thread())
            self.cond.notify_all()
        if not self.gate.wait(WAIT):
            raise AssertionError("gate never opened")
        return value

    def wait_started(self, n):
        with self.cond:
            return self.cond.wait_for(lambda: self.started >= n, WAIT)


class Recorder:
    """A job that records its argument (thread-safe) and returns it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []

    def __call__(self, value=None):
        with self.lock:
            self.calls.append(value)
        return value


def raiser(exc):
    raise exc


def current_thread_job():
    return threading.current_thread()


# ---------------------------------------------------------------------------
# It is a ThreadPoolExecutor; asyncio accepts it.
# ---------------------------------------------------------------------------

def test_is_a_threadpoolexecutor(Pool, new_pool):
    assert issubclass(Pool, cf.ThreadPoolExecutor)
    pool = new_pool(2)
    assert isinstance(pool, cf.ThreadPoolExecutor)
    assert isinstance(pool, cf.Executor)


def test_set_default_executor_no_warning(new_pool):
    pool = new_pool(2)
    loop = asyncio.new_event_loop()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loop.set_default_executor(pool)

        async def main():
            running_loop = asyncio.get_running_loop()
            t = await running_loop.run_in_executor(None, current_thread_job)
            r = await running_loop.run_in_executor(None, operator.add, 2, 3)
            return t, r

        thread, result = loop.run_until_complete(main())
        assert result == 5
        assert thread is not threading.current_thread()
        assert thread in pool._threads
    finally:
        loop.close()


def test_asyncio_to_thread_uses_default_executor(new_pool):
    if not hasattr(asyncio, "to_thread"):
        pytest.skip("asyncio.to_thread is 3.9+")
    pool = new_pool(2)
    loop = asyncio.new_event_loop()
    try:
        loop.set_default_executor(pool)

        async def main():
            return await asyncio.to_thread(
                lambda a, *, b: (threading.current_thread(), a + b), 1, b=2)

        thread, result = loop.run_until_complete(main())
        assert result == 3
        assert thread in pool._threads
    finally:
        loop.close()


def test_run_in_executor_explicit_pool(new_pool):
    pool = new_pool(2)

    async def main():
        loop = asyncio.get_running_loop()
        thread = await loop.run_in_executor(pool, current_thread_job)
        value = await loop.run_in_executor(pool, pow, 2, 10)
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(pool, operator.truediv, 1, 0)
        return thread, value

    thread, value = asyncio.run(main())
    assert value == 1024
    assert thread in pool._threads


def test_shutdown_default_executor(new_pool):
    # asyncio.run() / loop.shutdown_default_executor() shut our pool down.
    pool = new_pool(2)
    loop = asyncio.new_event_loop()
    try:
        loop.set_default_executor(pool)
        assert loop.run_until_complete(
            loop.run_in_executor(None, operator.mul, 6, 7)) == 42
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    with pytest.raises(RuntimeError, match="^%s$" % SHUTDOWN_MSG):
        pool.submit(id, None)
    assert all(not t.is_alive() for t in pool._threads)


# ---------------------------------------------------------------------------
# submit() and its futures
# ---------------------------------------------------------------------------

def test_submit_returns_concurrent_future(new_pool):
    pool = new_pool(2)
    f = pool.submit(pow, 2, 5)
    assert isinstance(f, cf.Future)
    assert f.result(WAIT) == 32


def test_submit_returns_a_concurrent_future(impl, new_pool):
    # The stdlib returns exactly concurrent.futures.Future; fastexec returns
    # its C subclass (a deliberate difference, see README): isinstance holds
    # and the type is the documented fastexec.Future.
    pool = new_pool(2)
    f = pool.submit(pow, 2, 5)
    assert isinstance(f, cf.Future)
    if impl == "stdlib":
        assert type(f) is cf.Future
    else:
        import fastexec
        assert type(f) is fastexec.Future
        assert issubclass(fastexec.Future, cf.Future)
    assert f.result(WAIT) == 32


def test_submit_args_and_kwargs(new_pool):
    pool = new_pool(2)

    def fn(*args, **kwargs):
        return args, kwargs

    assert pool.submit(fn).result(WAIT) == ((), {})
    assert pool.submit(fn, 1, 2).result(WAIT) == ((1, 2), {})
    assert pool.submit(fn, 1, b=2).result(WAIT) == ((1,), {"b": 2})
    # Keyword arguments with the names of submit()'s own parameters go to
    # the callable (fn is positional-only in submit).
    assert pool.submit(fn, fn=1, self=2, args=3, kwargs=4).result(WAIT) == (
        (), {"fn": 1, "self": 2, "args": 3, "kwargs": 4})


def test_submit_fn_is_positional_only(new_pool):
    pool = new_pool(2)
    with pytest.raises(TypeError):
        pool.submit()
    with pytest.raises(TypeError):
        pool.submit(fn=id)


def test_submit_many(new_pool):
    pool = new_pool(4)
    fs = [pool.submit(operator.mul, i, i) for i in range(2000)]
    assert [f.result(WAIT) for f in fs] == [i * i for i in range(2000)]


def test_submit_from_many_threads(new_pool):
    pool = new_pool(3)
    results = {}
    errors = []

    def submitter(k):
        try:
            fs = [pool.submit(operator.add, k * 1000, i) for i in range(300)]
            results[k] = [f.result(WAIT) for f in fs]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors
    assert all(not t.is_alive() for t in threads)
    for k in range(4):
        assert results[k] == [k * 1000 + i for i in range(300)]
    assert len(pool._threads) <= 3


def test_wait_all_completed(new_pool):
    pool = new_pool(3)
    fs = [pool.submit(operator.add, i, 1) for i in range(50)]
    done, not_done = cf.wait(fs, timeout=WAIT)
    assert done == set(fs)
    assert not not_done
    assert sorted(f.result() for f in done) == list(range(1, 51))


def test_wait_first_completed(new_pool):
    pool = new_pool(2)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    slow = pool.submit(blocker, "slow")
    assert blocker.wait_started(1)
    fast = pool.submit(operator.add, 1, 1)
    done, not_done = cf.wait([slow, fast], timeout=WAIT,
                             return_when=cf.FIRST_COMPLETED)
    assert done == {fast}
    assert not_done == {slow}
    gate.set()
    assert slow.result(WAIT) == "slow"


def test_wait_first_exception(new_pool):
    pool = new_pool(2)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    slow = pool.submit(blocker)
    assert blocker.wait_started(1)
    bad = pool.submit(raiser, ValueError("x"))
    done, not_done = cf.wait([slow, bad], timeout=WAIT,
                             return_when=cf.FIRST_EXCEPTION)
    assert done == {bad}
    assert not_done == {slow}


def test_as_completed(new_pool):
    pool = new_pool(3)
    fs = [pool.submit(operator.mul, i, 2) for i in range(30)]
    seen = list(cf.as_completed(fs, timeout=WAIT))
    assert sorted(seen, key=id) == sorted(fs, key=id)
    assert sorted(f.result() for f in seen) == [i * 2 for i in range(30)]


def test_as_completed_order_follows_completion(new_pool):
    pool = new_pool(2)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    slow = pool.submit(blocker, "slow")
    assert blocker.wait_started(1)
    fast = pool.submit(str, "fast")
    it = cf.as_completed([slow, fast], timeout=WAIT)
    assert next(it) is fast
    gate.set()
    assert next(it) is slow


def test_asyncio_wrap_future(new_pool):
    pool = new_pool(2)

    async def main():
        value = await asyncio.wrap_future(pool.submit(operator.add, 40, 2))
        with pytest.raises(KeyError):
            await asyncio.wrap_future(pool.submit(raiser, KeyError("k")))
        gathered = await asyncio.gather(
            *(asyncio.wrap_future(pool.submit(operator.neg, i))
              for i in range(20)))
        return value, gathered

    value, gathered = asyncio.run(main())
    assert value == 42
    assert gathered == [-i for i in range(20)]


def test_asyncio_wrap_future_cancel_propagates(new_pool):
    # Cancelling the asyncio wrapper cancels a still-pending pool future,
    # which then never runs.
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()

    async def main():
        running = pool.submit(blocker)
        assert blocker.wait_started(1)
        pending = pool.submit(rec, "must not run")
        wrapper = asyncio.wrap_future(pending)
        wrapper.cancel()
        for _ in range(20):
            if pending.cancelled():
                break
            await asyncio.sleep(0)
        gate.set()
        await asyncio.wrap_future(running)
        return pending

    pending = asyncio.run(main())
    assert pending.cancelled()
    pool.shutdown(wait=True)
    assert rec.calls == []


def test_exception_propagates_with_traceback(new_pool):
    pool = new_pool(2)

    def inner_raising_function():
        raise ValueError("boom")

    def outer_function():
        inner_raising_function()

    f = pool.submit(outer_function)
    with pytest.raises(ValueError, match="^boom$") as info:
        f.result(WAIT)
    names = [fr.name for fr in traceback.extract_tb(info.value.__traceback__)]
    assert "inner_raising_function" in names
    assert "outer_function" in names
    exc = f.exception(WAIT)
    assert isinstance(exc, ValueError)
    names = [fr.name for fr in traceback.extract_tb(exc.__traceback__)]
    assert names[-2:] == ["outer_function", "inner_raising_function"]


def test_exception_does_not_kill_worker(new_pool):
    pool = new_pool(1)
    t1 = pool.submit(current_thread_job).result(WAIT)
    for _ in range(5):
        assert isinstance(pool.submit(raiser, RuntimeError("x")).exception(WAIT),
                          RuntimeError)
    assert pool.submit(current_thread_job).result(WAIT) is t1
    assert pool._threads == {t1}


class CustomBaseException(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit,
                                      CustomBaseException])
def test_base_exception_lands_on_future(new_pool, exc_type):
    pool = new_pool(1)
    worker = pool.submit(current_thread_job).result(WAIT)
    f = pool.submit(raiser, exc_type("raised in job"))
    exc = f.exception(WAIT)
    assert type(exc) is exc_type
    assert exc.args == ("raised in job",)
    # The worker survived: the same thread runs later jobs.
    assert pool.submit(current_thread_job).result(WAIT) is worker
    assert pool.submit(operator.add, 1, 2).result(WAIT) == 3
    assert worker.is_alive()
    assert pool._threads == {worker}


def test_future_states(new_pool):
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()
    running = pool.submit(blocker, "r")
    assert blocker.wait_started(1)
    pending = pool.submit(rec, "p")
    assert running.running()
    assert not running.done()
    assert not running.cancel()          # a running future can't be cancelled
    assert not pending.running()
    assert pending.cancel()
    assert pending.cancelled() and pending.done()
    with pytest.raises(cf.CancelledError):
        pending.result(0)
    gate.set()
    assert running.result(WAIT) == "r"
    assert not running.cancelled()
    assert pool.submit(rec, "after").result(WAIT) == "after"
    assert rec.calls == ["after"]


def test_done_callback(new_pool):
    pool = new_pool(2)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    called = []
    fired = threading.Event()

    def callback(fut):
        called.append((fut, threading.current_thread()))
        fired.set()

    f = pool.submit(blocker, 7)
    assert blocker.wait_started(1)
    f.add_done_callback(callback)
    assert called == []
    gate.set()
    assert fired.wait(WAIT)
    assert f.result(WAIT) == 7
    assert len(called) == 1
    assert called[0][0] is f
    # Callbacks added before completion run in the thread that completed it.
    assert called[0][1] in pool._threads


def test_done_callback_may_wait_for_a_job_of_the_same_pool(new_pool):
    # A done callback (it runs in the worker that finished the job) submits
    # to the same pool and waits for that result: with two workers the
    # stdlib starts the second one for it, and so must we, although the
    # first one is about to head back to the queue.
    pool = new_pool(2)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    got = []
    fired = threading.Event()

    def callback(fut):
        try:
            got.append(pool.submit(operator.add, fut.result(), 1).result(WAIT))
        except BaseException as exc:
            got.append(exc)
        fired.set()

    f = pool.submit(blocker, 7)
    assert blocker.wait_started(1)
    f.add_done_callback(callback)
    gate.set()
    assert fired.wait(WAIT)
    assert got == [8]


def test_done_callback_exception_is_logged(new_pool, caplog):
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)

    def bad_callback(fut):
        raise ValueError("callback failed")

    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        f = pool.submit(blocker)
        assert blocker.wait_started(1)
        f.add_done_callback(bad_callback)
        gate.set()
        assert f.result(WAIT) is None
        # The worker survived the callback's exception.
        assert pool.submit(operator.add, 2, 2).result(WAIT) == 4
    records = [r for r in caplog.records
               if r.name == "concurrent.futures"
               and r.getMessage().startswith("exception calling callback for")]
    assert len(records) == 1
    assert records[0].exc_info[0] is ValueError


def test_result_may_be_an_exception_object(new_pool):
    # Returning an exception is not raising it.
    pool = new_pool(1)
    err = ValueError("returned, not raised")
    f = pool.submit(lambda: err)
    assert f.result(WAIT) is err
    assert f.exception(WAIT) is None


def test_submit_non_callable_fails_on_the_future(new_pool):
    # The stdlib doesn't check fn at submit(): calling it fails in the
    # worker, and the TypeError lands on the future.
    pool = new_pool(1)
    f = pool.submit(None)
    assert isinstance(f.exception(WAIT), TypeError)
    assert pool.submit(operator.add, 1, 1).result(WAIT) == 2


def test_unreferenced_futures_still_run(new_pool):
    pool = new_pool(2)
    rec = Recorder()
    for i in range(50):
        pool.submit(rec, i)
    gc.collect()
    pool.shutdown(wait=True)
    assert sorted(rec.calls) == list(range(50))


class Payload:
    pass


def test_job_arguments_and_results_are_released(new_pool):
    # The pool keeps no reference to a job's callable, arguments or result
    # once the job has run and the future is dropped.
    pool = new_pool(1)
    arg, kwarg, result = Payload(), Payload(), Payload()
    refs = [weakref.ref(o) for o in (arg, kwarg, result)]

    def job(a, k=None):
        return result  # noqa: F821 (deleted below, after the only call)

    fn_ref = weakref.ref(job)
    f = pool.submit(job, arg, k=kwarg)
    assert f.result(WAIT) is result
    del f, arg, kwarg, result, job
    # Let the worker go back to waiting (it may still be finishing).
    pool.submit(id, None).result(WAIT)
    assert wait_until(lambda: gc.collect() is not None
                      and all(r() is None for r in refs + [fn_ref])), \
        [r() for r in refs + [fn_ref]]


def test_nested_submit_from_a_job(new_pool):
    pool = new_pool(2)

    def outer(n):
        return pool.submit(operator.mul, n, 2).result(WAIT) + 1

    assert [pool.submit(outer, i).result(WAIT) for i in range(10)] == [
        i * 2 + 1 for i in range(10)]


def test_subclass_overriding_submit_is_used_by_map(Pool, new_pool):
    # Executor.map is written in terms of self.submit: a subclass that wraps
    # submit (to propagate context, count, trace...) sees every map call.
    calls = []

    class Counting(Pool):
        def submit(self, fn, /, *args, **kwargs):
            calls.append(args)
            return super().submit(fn, *args, **kwargs)

    pool = Counting(2)
    new_pool.pools.append(pool)
    assert list(pool.map(operator.neg, [1, 2, 3])) == [-1, -2, -3]
    assert calls == [(1,), (2,), (3,)]


def test_subclass_overriding_shutdown_is_used_by_exit(Pool):
    calls = []

    class Tracking(Pool):
        def shutdown(self, *args, **kwargs):
            calls.append((args, kwargs))
            return super().shutdown(*args, **kwargs)

    with Tracking(1) as pool:
        pool.submit(id, None).result(WAIT)
    assert calls == [((), {"wait": True})]


# ---------------------------------------------------------------------------
# The futures submit() returns behave as concurrent.futures.Future, also
# under concurrency (completion racing with waiters, cancel, callbacks).
# ---------------------------------------------------------------------------

def test_future_is_an_ordinary_future(new_pool):
    pool = new_pool(1)
    f = pool.submit(operator.add, 1, 2)
    assert f.result(WAIT) == 3
    assert not asyncio.isfuture(f)      # else wrap_future would return it
    f.custom_attribute = "user data"    # code tags futures with attributes
    assert f.custom_attribute == "user data"
    assert weakref.ref(f)() is f
    assert re.search(r"state=finished returned int", repr(f)), repr(f)
    g = pool.submit(raiser, KeyError("k"))
    g.exception(WAIT)
    assert re.search(r"state=finished raised KeyError", repr(g)), repr(g)
    # A finished future refuses a second outcome, like the stdlib's.
    with pytest.raises(cf.InvalidStateError):
        f.set_result(4)
    assert f.result() == 3
    # Callbacks added after completion run at once, in the caller's thread.
    seen = []
    f.add_done_callback(lambda fut: seen.append(threading.current_thread()))
    assert seen == [threading.current_thread()]


def test_future_in_a_reference_cycle_is_collected(new_pool):
    # A result that refers back to its future makes a cycle the garbage
    # collector must be able to free (with and without a Condition made).
    pool = new_pool(1)
    refs = []
    for make_condition in (False, True):
        holder = Payload()
        f = pool.submit(lambda h=holder: h)
        if make_condition:
            cf.wait([f], timeout=WAIT)
        assert f.result(WAIT) is holder
        holder.future = f
        f.holder = holder
        refs.append((weakref.ref(f), weakref.ref(holder)))
        del f, holder
    pool.submit(id, None).result(WAIT)      # the worker let go of its job
    assert wait_until(lambda: gc.collect() is not None
                      and all(r() is None for pair in refs for r in pair))


def test_future_result_timeout_while_pending(new_pool):
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    running = pool.submit(blocker, "r")
    assert blocker.wait_started(1)
    pending = pool.submit(operator.add, 1, 1)
    with pytest.raises(cf.TimeoutError):
        running.result(timeout=0)
    with pytest.raises(cf.TimeoutError):
        pending.exception(timeout=0.01)
    assert not pending.done()
    gate.set()
    assert running.result(WAIT) == "r"
    assert pending.result(WAIT) == 2


def test_many_threads_wait_on_one_future(new_pool):
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    f = pool.submit(blocker, "value")
    assert blocker.wait_started(1)
    got = []
    lock = threading.Lock()
    ready = threading.Barrier(5)

    def waiter():
        ready.wait(WAIT)
        r = f.result(WAIT)
        with lock:
            got.append(r)

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    ready.wait(WAIT)
    gate.set()
    for t in threads:
        t.join(WAIT)
    assert got == ["value"] * 4


@pytest.mark.parametrize("how", ["wait", "as_completed", "result",
                                 "exception", "callbacks"])
def test_waiting_races_with_completion(new_pool, how):
    # Waiters are installed while the workers are completing the same
    # futures: nobody may miss a completion.
    pool = new_pool(2)
    for _ in range(3):
        fs = [pool.submit(operator.add, i, 1) for i in range(400)]
        if how == "wait":
            done, not_done = cf.wait(fs, timeout=WAIT)
            assert not not_done
        elif how == "as_completed":
            assert len(list(cf.as_completed(fs, timeout=WAIT))) == len(fs)
        elif how == "result":
            assert [f.result(WAIT) for f in fs] == list(range(1, 401))
        elif how == "exception":
            assert all(f.exception(WAIT) is None for f in fs)
        else:
            counts = [0] * len(fs)
            lock = threading.Lock()
            all_called = threading.Event()
            remaining = [len(fs)]

            def make_cb(i):
                def cb(fut):
                    with lock:
                        counts[i] += 1
                        remaining[0] -= 1
                        if remaining[0] == 0:
                            all_called.set()
                return cb

            for i, f in enumerate(fs):
                f.add_done_callback(make_cb(i))
            assert all_called.wait(WAIT)
            assert counts == [1] * len(fs)
        assert [f.result(0) for f in fs] == list(range(1, 401))


def test_cancel_races_with_start(new_pool):
    # cancel() while the workers are taking the same futures: each one
    # either ran (and was not cancelled) or was cancelled (and never ran).
    pool = new_pool(2)
    rec = Recorder()
    fs = [pool.submit(rec, i) for i in range(1000)]
    cancelled = {i for i, f in enumerate(fs) if i % 2 and f.cancel()}
    pool.shutdown(wait=True)
    ran = set(rec.calls)
    assert len(rec.calls) == len(ran)           # nothing ran twice
    assert ran.isdisjoint(cancelled)
    assert ran | cancelled == set(range(1000))
    for i, f in enumerate(fs):
        assert f.done()
        assert f.cancelled() == (i in cancelled)


def in_condition_wait(thread):
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "wait" and code.co_filename == threading.__file__:
            return True
        frame = frame.f_back
    return False


def test_many_threads_start_waiting_at_once(new_pool):
    # Threads that start waiting on the same pending future at the same
    # moment: each one makes the future's Condition if there is none yet
    # (fastexec makes it on demand, and making it runs Python code, so the
    # threads interleave there).  All must be woken by the completion.
    pool = new_pool(2)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)         # switch threads as often as possible
    try:
        for _ in range(300):
            gate = new_pool.gate()
            f = pool.submit(gate.wait, WAIT)
            barrier = threading.Barrier(8)
            woken = []

            def waiter():
                barrier.wait(WAIT)
                # No timeout: a waiter on a Condition nobody notifies must
                # hang (a daemon, abandoned if the test fails), not time out.
                woken.append(f.result())

            threads = [threading.Thread(target=waiter, daemon=True)
                       for _ in range(8)]
            for t in threads:
                t.start()
            # Open the gate once all eight block in Condition.wait (seen
            # from their stacks: asking the future would make a Condition).
            assert wait_until(lambda: all(in_condition_wait(t)
                                          for t in threads))
            gate.set()
            for t in threads:
                t.join(WAIT)
            assert woken == [True] * 8
    finally:
        sys.setswitchinterval(old)


def test_map_result_in_a_reference_cycle_is_collected(new_pool):
    # A result not yet taken from map()'s iterator that refers back to the
    # iterator: a cycle the garbage collector must free.
    pool = new_pool(1)
    box = Payload()
    it = pool.map(lambda x: box, [1])  # noqa: F821 (box: deleted below)
    pool.submit(id, None).result(WAIT)  # one worker, FIFO: the call is done
    box.it = it
    ref = weakref.ref(box)
    del it, box
    assert wait_until(lambda: gc.collect() is not None and ref() is None)


# ---------------------------------------------------------------------------
# map()
# ---------------------------------------------------------------------------

def test_map_ordered_results(new_pool):
    # Jobs finish in reverse order (job i waits for job i+1); map still
    # yields in submission order.
    n = 4
    pool = new_pool(n)
    done = [threading.Event() for _ in range(n)]
    finished = []

    def job(i):
        if i + 1 < n:
            assert done[i + 1].wait(WAIT)
        finished.append(i)
        done[i].set()
        return i * 10

    assert list(pool.map(job, range(n), timeout=WAIT)) == [0, 10, 20, 30]
    assert finished == [3, 2, 1, 0]


def test_map_simple(new_pool):
    pool = new_pool(3)
    assert list(pool.map(operator.neg, range(100))) == [-i for i in range(100)]


def test_map_multiple_iterables_shortest_wins(new_pool):
    pool = new_pool(3)
    assert list(pool.map(pow, [2, 3, 4], [5, 2])) == [32, 9]
    assert list(pool.map(operator.add, [1, 2, 3], itertools.count())) == [
        1, 3, 5]
    assert list(pool.map(lambda a, b, c: a + b + c,
                         "abcd", "xyz", "1234")) == ["ax1", "by2", "cz3"]


def test_map_chunksize_accepted(new_pool):
    pool = new_pool(2)
    assert list(pool.map(operator.neg, range(10), chunksize=4)) == [
        -i for i in range(10)]
    assert list(pool.map(operator.neg, range(10), timeout=WAIT,
                         chunksize=1)) == [-i for i in range(10)]


def test_map_empty(new_pool):
    pool = new_pool(2)
    assert list(pool.map(operator.neg, [])) == []
    assert list(pool.map(operator.add, [1, 2], [])) == []
    assert list(pool.map(operator.neg)) == []


def test_map_submits_eagerly(new_pool):
    # All the calls are submitted by map() itself, before the first next():
    # the input is consumed and every job starts although the result
    # iterator was never advanced.
    n = 5
    pool = new_pool(n)
    consumed = []
    started = Recorder()
    all_started = threading.Event()

    def source():
        for i in range(n):
            consumed.append(i)
            yield i

    def job(i):
        started(i)
        with started.lock:
            if len(started.calls) == n:
                all_started.set()
        return i

    it = pool.map(job, source())
    assert consumed == list(range(n))
    assert all_started.wait(WAIT)
    assert sorted(started.calls) == list(range(n))
    assert list(it) == list(range(n))


def test_map_exception_raised_when_reached(new_pool):
    pool = new_pool(2)
    it = pool.map(lambda x: 10 // x, [5, 2, 0, 1])
    assert next(it) == 2
    assert next(it) == 5
    with pytest.raises(ZeroDivisionError) as info:
        next(it)
    names = [fr.name for fr in traceback.extract_tb(info.value.__traceback__)]
    assert "<lambda>" in names


def test_map_exception_does_not_stop_other_jobs_before_it(new_pool):
    pool = new_pool(1)
    rec = Recorder()

    def job(x):
        rec(x)
        return 1 // x

    it = pool.map(job, [1, 1, 0])
    assert next(it) == 1
    assert next(it) == 1
    with pytest.raises(ZeroDivisionError):
        next(it)
    assert rec.calls == [1, 1, 0]


def test_map_timeout_cancels_remaining(new_pool):
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()

    def job(i):
        if i == 0:
            return blocker(i)
        return rec(i)

    t0 = time.monotonic()
    it = pool.map(job, range(5), timeout=0.2)
    with pytest.raises(cf.TimeoutError):
        next(it)
    elapsed = time.monotonic() - t0
    assert 0.15 <= elapsed < WAIT
    assert blocker.started == 1
    # The calls that had not started were cancelled: they never run, even
    # once the worker is free again.
    gate.set()
    pool.shutdown(wait=True)
    assert rec.calls == []


def test_map_timeout_is_total_not_per_item(new_pool):
    # Like the stdlib: the timeout counts from the map() call, not from
    # each next(): time spent between two next() calls is used up.
    pool = new_pool(2)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    it = pool.map(lambda i: i if i == 0 else blocker(i), range(3), timeout=0.5)
    assert next(it) == 0
    time.sleep(0.5)             # the whole timeout elapses here
    t0 = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        next(it)
    # A per-next() timeout would wait another 0.5 s here.
    assert time.monotonic() - t0 < 0.25


def test_map_after_shutdown(new_pool):
    pool = new_pool(2)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="^%s$" % SHUTDOWN_MSG):
        pool.map(operator.neg, [1, 2, 3])


def test_map_iterator_close_cancels_pending(new_pool):
    # Closing the result iterator early cancels the calls not yet started.
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()

    def job(i):
        if i == 1:
            return blocker(i)
        return rec(i)

    it = pool.map(job, range(5))
    assert next(it) == 0
    assert blocker.wait_started(1)
    it.close()
    gate.set()
    pool.shutdown(wait=True)
    assert rec.calls == [0]


def test_map_stops_after_exception(new_pool):
    # The result iterator is finished once it raised: the next next() is
    # StopIteration, and the calls after the failing one are cancelled.
    # (The single worker is held by call 1 meanwhile, so calls 2.. are still
    # pending when the exception is raised.)
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()

    def job(i):
        if i == 0:
            raise ValueError("first fails")
        if i == 1:
            return blocker(i)
        return rec(i)

    it = pool.map(job, range(5))
    with pytest.raises(ValueError):
        next(it)
    with pytest.raises(StopIteration):
        next(it)
    gate.set()
    pool.shutdown(wait=True)
    assert rec.calls == []


def test_map_input_error_raised_by_map_call(new_pool):
    # map() consumes the input at once, so an error in the input is raised
    # by the map() call itself; what was submitted before it still runs.
    pool = new_pool(2)
    rec = Recorder()

    def source():
        yield 1
        yield 2
        raise LookupError("bad input")

    with pytest.raises(LookupError, match="bad input"):
        pool.map(rec, source())
    pool.shutdown(wait=True)
    assert sorted(rec.calls) == [1, 2]


def test_map_rejects_unknown_keyword(new_pool):
    pool = new_pool(1)
    with pytest.raises(TypeError):
        pool.map(operator.neg, [1], bogus=1)


def test_map_cancelled_by_shutdown(new_pool):
    # shutdown(cancel_futures=True) cancels map's pending calls too; the
    # iterator then raises CancelledError when it reaches one.
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()

    def job(i):
        if i == 0:
            return blocker(i)
        return rec(i)

    it = pool.map(job, range(4))
    assert blocker.wait_started(1)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert next(it) == 0
    with pytest.raises(cf.CancelledError):
        next(it)
    pool.shutdown(wait=True)
    assert rec.calls == []


def test_map_iterator_dropped_cancels_pending(new_pool):
    pool = new_pool(1)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()

    def job(i):
        if i == 1:
            return blocker(i)
        return rec(i)

    it = pool.map(job, range(5))
    assert next(it) == 0
    assert blocker.wait_started(1)
    del it
    gc.collect()
    gate.set()
    pool.shutdown(wait=True)
    assert rec.calls == [0]


# ---------------------------------------------------------------------------
# shutdown()
# ---------------------------------------------------------------------------

def _running_and_pending(new_pool, pool, n_pending=5):
    gate = new_pool.gate()
    blocker = Blocker(gate)
    rec = Recorder()
    running = pool.submit(blocker, "running")
    assert blocker.wait_started(1)
    pending = [pool.submit(rec, i) for i in range(n_pending)]
    return gate, running, pending, rec


def test_shutdown_cancel_futures(new_pool):
    pool = new_pool(1)
    gate, running, pending, rec = _running_and_pending(new_pool, pool)
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in pending)
    assert running.running()
    assert not running.cancelled()
    gate.set()
    assert running.result(WAIT) == "running"
    pool.shutdown(wait=True)
    assert rec.calls == []


def test_shutdown_cancel_futures_wait(new_pool):
    pool = new_pool(1)
    gate, running, pending, rec = _running_and_pending(new_pool, pool)
    t = threading.Thread(target=pool.shutdown,
                         kwargs=dict(wait=True, cancel_futures=True))
    t.start()
    # Pending futures are cancelled at once, while shutdown waits for the
    # running one.
    assert wait_until(lambda: all(f.cancelled() for f in pending))
    assert t.is_alive()
    gate.set()
    t.join(WAIT)
    assert not t.is_alive()
    assert running.done() and running.result() == "running"
    assert rec.calls == []


def test_shutdown_without_cancel_runs_pending(new_pool):
    pool = new_pool(1)
    gate, running, pending, rec = _running_and_pending(new_pool, pool)
    pool.shutdown(wait=False)
    assert not any(f.cancelled() for f in pending)
    gate.set()
    assert [f.result(WAIT) for f in pending] == list(range(5))
    assert running.result(WAIT) == "running"
    pool.shutdown(wait=True)
    assert rec.calls == list(range(5))


def test_shutdown_wait_true_waits_for_all_work(new_pool):
    pool = new_pool(2)
    gate, running, pending, rec = _running_and_pending(new_pool, pool)
    t = threading.Thread(target=pool.shutdown, kwargs=dict(wait=True))
    t.start()
    t.join(0.2)
    assert t.is_alive()             # still waiting for the blocked job
    gate.set()
    t.join(WAIT)
    assert not t.is_alive()
    assert running.done() and all(f.done() for f in pending)
    assert sorted(rec.calls) == list(range(5))
    assert all(not th.is_alive() for th in pool._threads)


def test_shutdown_wait_false_returns_at_once(new_pool):
    pool = new_pool(1)
    gate, running, pending, rec = _running_and_pending(new_pool, pool)
    t = threading.Thread(target=pool.shutdown, kwargs=dict(wait=False))
    t.start()
    t.join(WAIT)
    assert not t.is_alive()
    assert not running.done()
    gate.set()
    assert running.result(WAIT) == "running"


def test_submit_after_shutdown(new_pool):
    pool = new_pool(2)
    assert pool.submit(operator.add, 1, 1).result(WAIT) == 2
    pool.shutdown()
    with pytest.raises(RuntimeError) as info:
        pool.submit(operator.add, 1, 1)
    assert str(info.value) == SHUTDOWN_MSG
    assert type(info.value) is RuntimeError


def test_submit_after_shutdown_never_used(new_pool):
    pool = new_pool(2)
    pool.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="^%s$" % SHUTDOWN_MSG):
        pool.submit(id, None)
    assert len(pool._threads) == 0


def test_shutdown_racing_submitters_leaves_nothing_pending(new_pool):
    # Threads keep submitting while the pool is shut down with
    # cancel_futures: every future submit() returned ends up done (run or
    # cancelled), and every submit after that raises the shutdown error.
    pool = new_pool(2)
    cond = threading.Condition()
    futures = []
    errors = []

    def submitter():
        deadline = time.monotonic() + WAIT
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                f = pool.submit(operator.add, i, 1)
            except BaseException as exc:
                errors.append(str(exc) if type(exc) is RuntimeError
                              else repr(exc))
                return
            with cond:
                futures.append(f)
                cond.notify_all()
        errors.append("submitter never saw the shutdown")

    threads = [threading.Thread(target=submitter) for _ in range(3)]
    for t in threads:
        t.start()
    # Some of them have run before the shutdown (so both outcomes are
    # checked below): the submitters can outpace a worker still starting.
    with cond:
        assert cond.wait_for(
            lambda: len(futures) >= 300 and any(f.done() for f in futures),
            WAIT)
    pool.shutdown(wait=True, cancel_futures=True)
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert errors == [SHUTDOWN_MSG] * 3
    # (Not cf.wait: it counts a future cancelled by shutdown as not done,
    # since no worker ever calls set_running_or_notify_cancel on it.)
    assert wait_until(lambda: all(f.done() for f in futures))
    n_ran = 0
    for f in futures:
        if not f.cancelled():
            assert f.result(0) is not None
            n_ran += 1
    assert n_ran > 0


def test_shutdown_wait_while_a_worker_is_starting(Pool):
    # shutdown(wait=True) racing with submits from other threads, one of
    # which is starting the first worker: shutdown must join what was
    # started and raise nothing (a thread that is in _threads before its
    # start() has returned can't be joined: "cannot join thread before it
    # is started").  Many short rounds, since the window is narrow.
    failures = []
    for _ in range(40):
        pool = Pool(1)
        cond = threading.Condition()
        count = [0]
        barrier = threading.Barrier(3)

        def submitter():
            barrier.wait(WAIT)
            for _ in range(200):
                try:
                    pool.submit(operator.add, 1, 1)
                except RuntimeError:
                    return
                with cond:
                    count[0] += 1
                    cond.notify_all()

        threads = [threading.Thread(target=submitter) for _ in range(3)]
        for t in threads:
            t.start()
        with cond:
            assert cond.wait_for(lambda: count[0] >= 3, WAIT)
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        except Exception as exc:
            failures.append(repr(exc))
        for t in threads:
            t.join(WAIT)
            assert not t.is_alive()
        pool.shutdown(wait=True)
        for t in list(pool._threads):
            t.join(WAIT)
            assert not t.is_alive()
    assert failures == []


def test_shutdown_wait_covers_a_submit_starting_its_thread(Pool):
    # A submit that was accepted while shutdown(wait=True) ran in another
    # thread: when shutdown returns, its call has run (the stdlib starts the
    # thread under the executor's shutdown lock; fastexec waits until the
    # thread being started is listed, then joins it).  The window is the
    # thread start inside submit, so many rounds, each with a random
    # offset between the two threads (up to 0.5 ms).
    rng = random.Random(1234)
    early = 0
    for _ in range(300):
        pool = Pool(1)
        ran = threading.Event()
        accepted = []
        barrier = threading.Barrier(2)

        def submitter():
            barrier.wait(WAIT)
            try:
                accepted.append(pool.submit(ran.set))
            except RuntimeError:
                pass

        t = threading.Thread(target=submitter)
        t.start()
        barrier.wait(WAIT)
        # Jitter, not a wait for an event: it lets the submitter run (a busy
        # loop would hold the GIL) for a random part of its submit.
        time.sleep(rng.random() * 0.0005)
        pool.shutdown(wait=True)
        ran_when_shutdown_returned = ran.is_set()
        t.join(WAIT)
        if accepted:
            early += not ran_when_shutdown_returned
            assert accepted[0].result(WAIT) is None
    assert early == 0


def test_shutdown_twice(new_pool):
    pool = new_pool(2)
    pool.submit(id, None).result(WAIT)
    pool.shutdown()
    pool.shutdown()
    pool.shutdown(wait=False, cancel_futures=True)
    pool.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(RuntimeError, match="^%s$" % SHUTDOWN_MSG):
        pool.submit(id, None)


def test_shutdown_joins_threads(new_pool):
    pool = new_pool(3)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    fs = [pool.submit(blocker) for _ in range(3)]
    assert blocker.wait_started(3)
    threads = set(pool._threads)
    assert len(threads) == 3
    gate.set()
    pool.shutdown(wait=True)
    assert all(f.done() for f in fs)
    assert all(not t.is_alive() for t in threads)


def test_context_manager(Pool):
    gate = threading.Event()
    rec = Recorder()
    timer = None
    try:
        with Pool(2) as pool:
            assert isinstance(pool, Pool)
            f = pool.submit(gate.wait, WAIT)
            fs = [pool.submit(rec, i) for i in range(5)]
            # Opens the gate only while __exit__ is (should be) waiting.
            timer = threading.Timer(0.2, gate.set)
            timer.start()
        assert f.done()
        assert f.result() is True
        assert all(x.done() for x in fs)
        assert sorted(rec.calls) == list(range(5))
        assert all(not t.is_alive() for t in pool._threads)
        with pytest.raises(RuntimeError, match="^%s$" % SHUTDOWN_MSG):
            pool.submit(id, None)
    finally:
        gate.set()
        if timer is not None:
            timer.cancel()


def test_context_manager_does_not_swallow(Pool):
    with pytest.raises(ZeroDivisionError):
        with Pool(1) as pool:
            pool.submit(id, None).result(WAIT)
            1 / 0  # noqa: B018
    with pytest.raises(RuntimeError):
        pool.submit(id, None)


def test_pool_collected_after_shutdown(Pool):
    pool = Pool(2)
    assert pool.submit(operator.add, 1, 2).result(WAIT) == 3
    pool.shutdown(wait=True)
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None


def test_futures_do_not_keep_pool_alive(Pool):
    pool = Pool(2)
    fs = [pool.submit(operator.add, i, 1) for i in range(10)]
    assert [f.result(WAIT) for f in fs] == list(range(1, 11))
    threads = list(pool._threads)
    ref = weakref.ref(pool)
    del pool
    # A worker may hold the pool for a moment after setting a result.
    assert wait_until(lambda: gc.collect() is not None and ref() is None)
    # Without shutdown, the dropped pool's workers exit on their own.
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()


# ---------------------------------------------------------------------------
# max_workers and constructor validation
# ---------------------------------------------------------------------------

def test_default_max_workers(new_pool):
    pool = new_pool()
    assert pool._max_workers == expected_default_max_workers()


@pytest.mark.parametrize("count,expected", [(3, 7), (None, 5), (100, 32),
                                            (28, 32), (27, 31)])
def test_default_max_workers_formula(new_pool, monkeypatch, count, expected):
    # The default follows the CPU count seen at construction time:
    # os.process_cpu_count() on 3.13+, os.cpu_count() before.
    name = "process_cpu_count" if hasattr(os, "process_cpu_count") \
        else "cpu_count"
    monkeypatch.setattr(os, name, lambda: count)
    pool = new_pool()
    assert pool._max_workers == expected


def test_max_workers_attribute(new_pool):
    assert new_pool(3)._max_workers == 3
    assert new_pool(max_workers=1)._max_workers == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_max_workers_value(Pool, bad):
    with pytest.raises(ValueError) as info:
        Pool(bad)
    assert str(info.value) == "max_workers must be greater than 0"
    with pytest.raises(ValueError):
        Pool(max_workers=bad)


def test_bad_max_workers_type(Pool):
    with pytest.raises(TypeError):
        Pool("4")


def test_float_max_workers_accepted(new_pool):
    # The stdlib only compares max_workers with numbers, so a float such as
    # os.cpu_count() / 2 works as a bound.
    pool = new_pool(2.0)
    assert pool._max_workers == 2.0
    assert pool.submit(operator.add, 1, 1).result(WAIT) == 2


def test_initializer_not_callable(Pool):
    with pytest.raises(TypeError) as info:
        Pool(2, initializer=42)
    assert str(info.value) == "initializer must be a callable"


def test_thread_name_prefix_positional(new_pool):
    # Same positional order as the stdlib: max_workers, thread_name_prefix,
    # initializer, initargs.
    seen = []
    pool = new_pool(1, "posprefix", seen.append, ("init-arg",))
    assert pool.submit(lambda: threading.current_thread().name).result(
        WAIT) == "posprefix_0"
    assert seen == ["init-arg"]


# ---------------------------------------------------------------------------
# Threads: lazy start, bound, reuse, identity, names
# ---------------------------------------------------------------------------

def test_threads_start_lazily(new_pool):
    before = set(threading.enumerate())
    pool = new_pool(4)
    assert len(pool._threads) == 0
    assert set(threading.enumerate()) == before
    assert pool.submit(operator.add, 1, 1).result(WAIT) == 2
    assert 1 <= len(pool._threads) <= 4
    assert set(threading.enumerate()) - before == set(pool._threads)


def test_at_most_max_workers(new_pool):
    pool = new_pool(3)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def job(i):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            return blocker(i)
        finally:
            with lock:
                state["now"] -= 1

    fs = [pool.submit(job, i) for i in range(12)]
    assert blocker.wait_started(3)
    assert len(pool._threads) == 3
    # The fourth job is queued behind them: nothing more starts.
    assert not fs[3].running()
    gate.set()
    assert [f.result(WAIT) for f in fs] == list(range(12))
    assert state["peak"] == 3
    assert len(pool._threads) == 3
    assert len(set(blocker.threads)) == 3


def test_idle_thread_reused(new_pool):
    # submit, wait for the result, submit again: the idle worker takes the
    # next job, no second thread is started.
    pool = new_pool(4)
    threads = [pool.submit(current_thread_job).result(WAIT)
               for _ in range(20)]
    assert len(set(threads)) == 1
    assert len(pool._threads) == 1


def test_idle_threads_reused_with_several_idle(new_pool):
    # With two idle workers, sequential round trips still start no third.
    pool = new_pool(4)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    fs = [pool.submit(blocker) for _ in range(2)]
    assert blocker.wait_started(2)
    gate.set()
    for f in fs:
        f.result(WAIT)
    threads = set(pool._threads)
    assert len(threads) == 2
    for _ in range(30):
        assert pool.submit(current_thread_job).result(WAIT) in threads
    assert pool._threads == threads

def test_no_thread_started_for_a_job_a_starting_thread_will_take(new_fast_pool):
    # A thread started for a job whose place a returning worker took is
    # still on its way to the queue: the next job is its own, so no third
    # thread is started for two jobs in hand.  (fastexec started one in this
    # window, found by a Starlette test that counted 9 threads for 8
    # clients; the stdlib's 3.13 pool starts one here too, its 3.9 pool
    # does not.)  The second thread is held in its initializer, so the
    # window stays open.
    first_passed = threading.Event()
    hold_init = new_fast_pool.gate()

    def initializer():
        if first_passed.is_set():
            hold_init.wait(WAIT)
        first_passed.set()

    pool = new_fast_pool(8, initializer=initializer)
    gate1, gate2 = new_fast_pool.gate(), new_fast_pool.gate()
    started1, started2 = threading.Event(), threading.Event()

    def job(started, gate):
        started.set()
        gate.wait(WAIT)
        return threading.current_thread()

    f1 = pool.submit(job, started1, gate1)
    assert started1.wait(WAIT)
    f2 = pool.submit(job, started2, gate2)  # starts a second thread: held
    assert len(pool._threads) == 2
    gate1.set()                             # the first thread takes job 2
    first = f1.result(WAIT)
    assert started2.wait(WAIT)
    f3 = pool.submit(current_thread_job)    # the held thread's job
    assert len(pool._threads) == 2
    hold_init.set()
    third = f3.result(WAIT)
    gate2.set()
    assert f2.result(WAIT) is first
    assert third is not first
    assert pool._threads == {first, third}


def test_threads_are_threading_threads(new_pool):
    pool = new_pool(3)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    fs = [pool.submit(blocker) for _ in range(3)]
    assert blocker.wait_started(3)
    threads = set(pool._threads)
    assert len(threads) == 3
    enumerated = threading.enumerate()
    for t in threads:
        assert isinstance(t, threading.Thread)
        assert t in enumerated
        assert t.is_alive()
        assert t.ident is not None
    # The thread objects are the ones threading.current_thread() gives
    # inside the jobs.
    assert set(blocker.threads) == threads
    idents = pool.submit(threading.get_ident)
    gate.set()
    for f in fs:
        f.result(WAIT)
    assert idents.result(WAIT) in {t.ident for t in threads}


def test_default_thread_names(new_pool):
    pool = new_pool(3)
    gate = new_pool.gate()
    blocker = Blocker(gate)
    names = [pool.submit(lambda: (threading.current_thread().name,
                                  blocker()))
             for _ in range(3)]
    assert blocker.wait_started(3)
    gate.set()
    inside = [f.result(WAIT)[0] for f in names]
    matches = [DEFAULT_NAME_RE.match(n) for n in inside]
    assert all(matches), inside
    assert len({m.group(1) for m in matches}) == 1       # one pool number
    assert sorted(int(m.group(2)) for m in matches) == [0, 1, 2]
    assert sorted(t.name for t in pool._threads) == sorted(inside)


def test_default_thread_names_differ_between_pools(new_pool):
    a = new_pool(1)
    b = new_pool(1)
    na = a.submit(lambda: threading.current_thread().name).result(WAIT)
    nb = b.submit(lambda: threading.current_thread().name).result(WAIT)
    ma, mb = DEFAULT_NAME_RE.match(na), DEFAULT_NAME_RE.match(nb)
    assert ma and mb, (na, nb)
    assert int(mb.group(1)) > int(ma.group(1))
    assert ma.group(2) == mb.group(2) == "0"


def test_thread_name_prefix(new_pool):
    pool = new_pool(2, thread_name_prefix="myworker")
    gate = new_pool.gate()
    blocker = Blocker(gate)
    fs = [pool.submit(lambda: (threading.current_thread().name, blocker()))
          for _ in range(2)]
    assert blocker.wait_started(2)
    gate.set()
    inside = sorted(f.result(WAIT)[0] for f in fs)
    assert inside == ["myworker_0", "myworker_1"]
    assert sorted(t.name for t in pool._threads) == inside


# ---------------------------------------------------------------------------
# initializer
# ---------------------------------------------------------------------------

def test_initializer_runs_once_per_worker(new_pool):
    local = threading.local()
    calls = []
    lock = threading.Lock()

    def init(a, b):
        with lock:
            calls.append((threading.current_thread(), a, b))
        local.value = (a, b)

    pool = new_pool(3, initializer=init, initargs=("x", 1))
    gate = new_pool.gate()
    blocker = Blocker(gate)
    fs = [pool.submit(lambda: (getattr(local, "value", None), blocker()))
          for _ in range(3)]
    assert blocker.wait_started(3)
    gate.set()
    more = [pool.submit(lambda: getattr(local, "value", None))
            for _ in range(30)]
    assert [f.result(WAIT)[0] for f in fs] == [("x", 1)] * 3
    assert [f.result(WAIT) for f in more] == [("x", 1)] * 30
    assert len(calls) == 3
    assert {c[0] for c in calls} == set(pool._threads)
    assert all(c[1:] == ("x", 1) for c in calls)


def test_initargs_list_accepted(new_pool):
    seen = []
    pool = new_pool(1, initializer=lambda *a: seen.append(a),
                    initargs=[1, 2])
    pool.submit(id, None).result(WAIT)
    assert seen == [(1, 2)]


def test_initializer_failure_breaks_pool(new_pool, caplog):
    init_gate = new_pool.gate()
    rec = Recorder()

    def bad_init():
        assert init_gate.wait(WAIT)
        raise ValueError("init failed")

    with caplog.at_level(logging.DEBUG, logger="concurrent.futures"):
        pool = new_pool(1, initializer=bad_init)
        # All three are queued before the (only) worker's initializer fails.
        fs = [pool.submit(rec, i) for i in range(3)]
        init_gate.set()
        for f in fs:
            exc = f.exception(WAIT)
            assert isinstance(exc, BrokenThreadPool)
            assert isinstance(exc, cf.BrokenExecutor)
            assert str(exc) == INIT_FAILED_MSG
        with pytest.raises(BrokenThreadPool) as info:
            pool.submit(rec, "later")
        assert str(info.value) == INIT_FAILED_MSG
        # The worker whose initializer failed exits.
        pool.shutdown(wait=True)
        assert all(not t.is_alive() for t in pool._threads)
    assert rec.calls == []
    records = [r for r in caplog.records
               if r.name == "concurrent.futures"
               and r.getMessage() == "Exception in initializer:"]
    assert len(records) == 1
    assert records[0].levelno == logging.CRITICAL
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ValueError
    assert str(records[0].exc_info[1]) == "init failed"


def test_initializer_failure_fails_queued_map_calls(new_pool, caplog):
    init_gate = new_pool.gate()
    rec = Recorder()

    def bad_init():
        assert init_gate.wait(WAIT)
        raise ValueError("init failed")

    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        pool = new_pool(1, initializer=bad_init)
        it = pool.map(rec, range(3), timeout=WAIT)
        init_gate.set()
        with pytest.raises(BrokenThreadPool, match="^%s$"
                           % re.escape(INIT_FAILED_MSG)):
            next(it)
        pool.shutdown(wait=True)
    assert rec.calls == []


def test_initializer_failure_later_submit(new_pool, caplog):
    # The pool is broken by the time the first future fails; every later
    # submit (and map) raises BrokenThreadPool.
    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        pool = new_pool(2, initializer=raiser, initargs=(OSError("nope"),))
        f = pool.submit(id, None)
        assert isinstance(f.exception(WAIT), BrokenThreadPool)
        for _ in range(3):
            with pytest.raises(BrokenThreadPool, match="^%s$"
                               % re.escape(INIT_FAILED_MSG)):
                pool.submit(id, None)
        with pytest.raises(BrokenThreadPool):
            pool.map(id, [1, 2])
        pool.shutdown(wait=True)
    assert any(r.getMessage() == "Exception in initializer:"
               and r.exc_info and r.exc_info[0] is OSError
               for r in caplog.records)


# ---------------------------------------------------------------------------
# fastexec only: idle_timeout
# ---------------------------------------------------------------------------

def _spin_up(pool, gate, n):
    blocker = Blocker(gate)
    fs = [pool.submit(blocker) for _ in range(n)]
    assert blocker.wait_started(n)
    gate.set()
    for f in fs:
        f.result(WAIT)
    return set(blocker.threads)


def test_idle_timeout_shrinks_pool(new_fast_pool):
    pool = new_fast_pool(3, idle_timeout=0.3)
    threads = _spin_up(pool, new_fast_pool.gate(), 3)
    t_idle = time.monotonic()
    assert len(threads) == 3
    assert set(pool._threads) <= threads
    # Idle workers exit after idle_timeout, and leave _threads.
    assert wait_until(lambda: len(pool._threads) == 0, timeout=5)
    elapsed = time.monotonic() - t_idle
    assert elapsed >= 0.25, elapsed
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert pool.stats()["threads"] == 0
    assert pool.stats()["idle"] == 0
    # New work starts fresh threads.
    fresh = pool.submit(current_thread_job).result(WAIT)
    assert fresh not in threads
    assert fresh.is_alive()
    assert pool._threads == {fresh}
    assert pool.stats()["threads"] == 1


def test_idle_timeout_keeps_busy_workers(new_fast_pool):
    # A worker that keeps getting work within idle_timeout stays.
    pool = new_fast_pool(1, idle_timeout=0.5)
    first = pool.submit(current_thread_job).result(WAIT)
    for _ in range(6):
        time.sleep(0.1)
        assert pool.submit(current_thread_job).result(WAIT) is first


def test_idle_timeout_none_never_shrinks(new_fast_pool):
    keep = new_fast_pool(2)
    shrink = new_fast_pool(2, idle_timeout=0.1)
    kept = _spin_up(keep, new_fast_pool.gate(), 2)
    _spin_up(shrink, new_fast_pool.gate(), 2)
    time.sleep(0.8)          # elapsed time is the point: 8x the timeout
    assert wait_until(lambda: len(shrink._threads) == 0)
    assert keep._threads == kept
    assert all(t.is_alive() for t in kept)
    assert keep.stats()["threads"] == 2
    assert keep.stats()["idle"] == 2


def test_idle_timeout_churn(new_fast_pool):
    # Workers time out and are replaced all the time (idle_timeout of 1 ms,
    # bursty submitters): every job runs once, and the thread bookkeeping
    # (_threads, stats) stays right.
    pool = new_fast_pool(3, idle_timeout=0.001)
    results = {}
    errors = []
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def job(a, b):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            return a + b
        finally:
            with lock:
                state["now"] -= 1

    def submitter(k):
        try:
            out = []
            for burst in range(15):
                fs = [pool.submit(job, k * 1000, burst * 10 + i)
                      for i in range(5)]
                out.extend(f.result(WAIT) for f in fs)
                time.sleep(0.003)     # long enough for workers to time out
            results[k] = out
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors
    for k in range(3):
        assert results[k] == [k * 1000 + b * 10 + i
                              for b in range(15) for i in range(5)]
    # A worker counts a job when it comes back for the next one, just after
    # setting its result.
    assert wait_until(lambda: pool.stats()["running"] == 0), pool.stats()
    s = pool.stats()
    assert s["completed"] == 3 * 15 * 5, s
    assert s["queued"] == 0, s
    assert 1 <= state["peak"] <= 3
    assert wait_until(lambda: len(pool._threads) == 0
                      and pool.stats()["threads"] == 0), \
        (pool._threads, pool.stats())
    assert pool.submit(operator.add, 1, 1).result(WAIT) == 2


@pytest.mark.parametrize("bad", [0, -1, 0.0, -0.5])
def test_bad_idle_timeout(FastPool, bad):
    with pytest.raises(ValueError):
        FastPool(2, idle_timeout=bad)


def test_idle_timeout_is_keyword_only(FastPool):
    with pytest.raises(TypeError):
        FastPool(2, "", None, (), 1.0)


def test_idle_timeout_accepts_int_and_float(new_fast_pool):
    for value in (1, 2.5):
        pool = new_fast_pool(1, idle_timeout=value)
        assert pool.submit(operator.add, 1, 1).result(WAIT) == 2


# ---------------------------------------------------------------------------
# fastexec only: stats()
# ---------------------------------------------------------------------------

STATS_KEYS = {"max_workers", "threads", "idle", "queued", "running",
              "completed", "failed", "cancelled"}


def test_stats_keys_and_initial_values(new_fast_pool):
    pool = new_fast_pool(4)
    s = pool.stats()
    assert type(s) is dict
    assert set(s) == STATS_KEYS
    assert all(type(v) is int for v in s.values()), s
    assert s == dict(max_workers=4, threads=0, idle=0, queued=0, running=0,
                     completed=0, failed=0, cancelled=0)
    assert pool.stats() is not s        # a fresh snapshot each call


def test_stats_controlled_scenario(new_fast_pool):
    pool = new_fast_pool(2)
    gate = new_fast_pool.gate()
    blocker = Blocker(gate)
    running = [pool.submit(blocker, i) for i in range(2)]
    assert blocker.wait_started(2)
    ok = pool.submit(operator.add, 1, 1)
    bad = pool.submit(raiser, ValueError("x"))
    doomed = pool.submit(operator.add, 2, 2)
    s = pool.stats()
    assert s["max_workers"] == 2
    assert s["threads"] == 2
    assert s["running"] == 2
    assert s["idle"] == 0
    assert s["queued"] == 3
    assert (s["completed"], s["failed"], s["cancelled"]) == (0, 0, 0)

    assert doomed.cancel()
    gate.set()
    assert [f.result(WAIT) for f in running] == [0, 1]
    assert ok.result(WAIT) == 2
    assert isinstance(bad.exception(WAIT), ValueError)
    # Workers go back to idle after setting the results.
    assert wait_until(lambda: pool.stats()["idle"] == 2), pool.stats()
    s = pool.stats()
    assert s["threads"] == 2
    assert s["running"] == 0
    assert s["queued"] == 0
    assert s["failed"] == 1
    assert s["cancelled"] == 1
    # 'completed' counts jobs that returned (3), or every job that ran to an
    # outcome (4); either way a wrong count is caught.
    assert s["completed"] in (3, 4), s


def test_stats_completed_counts(new_fast_pool):
    pool = new_fast_pool(2)
    fs = [pool.submit(operator.add, i, 1) for i in range(10)]
    errs = [pool.submit(raiser, KeyError(i)) for i in range(3)]
    for f in fs:
        f.result(WAIT)
    for f in errs:
        f.exception(WAIT)
    assert wait_until(lambda: pool.stats()["running"] == 0)
    s = pool.stats()
    assert s["failed"] == 3
    assert s["completed"] in (10, 13), s
    assert s["cancelled"] == 0
    assert s["queued"] == 0


def test_stats_shutdown_cancel_futures_counts(new_fast_pool):
    pool = new_fast_pool(1)
    gate = new_fast_pool.gate()
    blocker = Blocker(gate)
    running = pool.submit(blocker)
    assert blocker.wait_started(1)
    pending = [pool.submit(id, i) for i in range(4)]
    assert pool.stats()["queued"] == 4
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in pending)
    s = pool.stats()
    assert s["queued"] == 0
    assert s["cancelled"] == 4
    assert s["running"] == 1
    gate.set()
    running.result(WAIT)
    pool.shutdown(wait=True)
    s = pool.stats()
    assert s["running"] == 0
    assert s["threads"] == 0


@pytest.mark.parametrize("how", ["dropped", "closed"])
def test_map_not_iterated_runs_every_call(new_pool, how):
    # An iterator dropped or closed before its first next() cancels nothing
    # (the stdlib's generator never started, so its finally never runs).
    pool = new_pool(1)
    gate = new_pool.gate()
    ran = []
    blocker = pool.submit(gate.wait, WAIT)
    it = pool.map(ran.append, range(5))
    if how == "closed":
        it.close()
    del it
    gate.set()
    assert blocker.result(WAIT)
    pool.shutdown(wait=True)
    assert ran == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------
# fastexec only: its Future type used directly, and thread start failures
# ---------------------------------------------------------------------------

def test_future_type_used_directly_never_crashes(FastPool):
    import fastexec

    class NoInit(fastexec.Future):
        def __init__(self):             # doesn't call Future.__init__
            pass

    f = NoInit()
    assert f._state == "PENDING" and not f.done()
    f.set_result(5)
    assert f.result(0) == 5

    g = fastexec.Future.__new__(fastexec.Future)
    with pytest.raises(cf.TimeoutError):
        g.result(timeout=0)

    h = fastexec.Future()
    for name in ("_result", "_exception"):
        with pytest.raises(AttributeError):
            delattr(h, name)
    with pytest.raises(TypeError):
        h._done_callbacks = 5
    h.set_exception(KeyError("k"))
    assert isinstance(h.exception(0), KeyError)
    assert h._result is None

    # The raw fields behind the properties take anything without a crash:
    # the future leaves its C fast paths and the stdlib's code reports.
    k = fastexec.Future()
    del k._fastexec_result
    assert k._result is None
    k._result = "set through the property"
    del k._fastexec_result
    k.set_result(None)
    assert k.result(0) is None
    m = fastexec.Future()
    m._fastexec_callbacks = 5
    with pytest.raises(TypeError):
        m.set_result(1)


@pytest.mark.parametrize("when", ["before the thread runs", "after it ran"])
def test_thread_start_raising_keeps_the_count(new_fast_pool, monkeypatch,
                                              when):
    # Thread.start() can raise after the thread really started (a Ctrl-C
    # while it waits for the thread to signal it began).  submit() raises
    # that exception, the call stays queued (as the stdlib), and the thread,
    # which runs, is counted and listed once: no pool above max_workers, no
    # thread that shutdown() would not join.
    initialized = threading.Event()
    pool = new_fast_pool(1, initializer=initialized.set)
    orig_start = threading.Thread.start

    def start(self):
        orig_start(self)
        if when == "after it ran":
            assert initialized.wait(WAIT)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start)
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        pool.submit(rec, "queued")
    monkeypatch.undo()
    assert initialized.wait(WAIT)
    assert pool.submit(rec, "next").result(WAIT) == "next"
    assert rec.calls == ["queued", "next"]
    assert wait_until(lambda: len(pool._threads) == 1)
    assert pool.stats()["threads"] == 1
    (thread,) = pool._threads
    pool.shutdown(wait=True)
    assert not thread.is_alive()
    assert pool.stats()["threads"] == 0


def test_thread_start_failing_gives_the_count_back(new_fast_pool, monkeypatch):
    # A thread that could not be started at all: the error reaches submit's
    # caller, the call stays queued, and the next submit starts a thread.
    pool = new_fast_pool(1)

    def start(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", start)
    rec = Recorder()
    with pytest.raises(RuntimeError, match="can't start new thread"):
        pool.submit(rec, "queued")
    assert pool.stats()["threads"] == 0
    monkeypatch.undo()
    assert pool.submit(rec, "next").result(WAIT) == "next"
    assert rec.calls == ["queued", "next"]
    assert pool.stats()["threads"] == 1
