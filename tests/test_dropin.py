"""Drop-in semantics per CPython version (issue 9).

Each behaviour is checked on the stdlib pool and on ours where both must
agree (the ``impl`` parameter), with the version differences spelled out:

* ``map(..., buffersize=)``: 3.14's semantics (validation, messages,
  laziness), offered on every version by fastexec;
* the fast paths convert a job's concurrent.futures CancelledError /
  InvalidStateError (and TimeoutError before 3.11) as asyncio does;
* install() and the other fast entry points keep a subclass's ``submit``;
* a child forked from a worker exits cleanly;
* the private surface real code reads (``_threads``, ``_max_workers``,
  ``_work_queue``, ``_idle_semaphore``, 3.14's ``BROKEN``/``prepare_context``,
  ``**ctxkwargs`` subclasses), Home Assistant's shutdown pattern;
* InterpreterPoolExecutor (3.14+) with fastexec's bridge;
* no warning under ``-W error`` on 3.14+.
"""

import asyncio
import concurrent.futures
import contextvars
import itertools
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import fastexec

WAIT = 10.0
PY311 = sys.version_info >= (3, 11)
PY314 = sys.version_info >= (3, 14)


def make_pool(impl, *args, **kwargs):
    cls = (concurrent.futures.ThreadPoolExecutor if impl == "stdlib"
           else fastexec.ThreadPoolExecutor)
    return cls(*args, **kwargs)


@pytest.fixture(params=["stdlib", "fastexec"])
def impl(request):
    return request.param


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- buffersize

def _buffersize_supported(impl):
    return impl == "fastexec" or PY314


# The implementations that have buffersize here (the stdlib's from 3.14).
@pytest.fixture(params=["stdlib", "fastexec"] if PY314 else ["fastexec"])
def bimpl(request):
    return request.param


@pytest.mark.parametrize("bad,exc,msg", [
    ("2", TypeError, "buffersize must be an integer or None"),
    (2.0, TypeError, "buffersize must be an integer or None"),
    (0, ValueError, "buffersize must be None or > 0"),
    (-1, ValueError, "buffersize must be None or > 0"),
])
def test_map_buffersize_validation(impl, bad, exc, msg):
    with make_pool(impl, 2) as pool:
        if not _buffersize_supported(impl):
            with pytest.raises(TypeError, match="unexpected keyword argument 'buffersize'"):
                pool.map(str, range(3), buffersize=bad)
            return
        with pytest.raises(exc) as info:
            pool.map(str, range(3), buffersize=bad)
        assert str(info.value) == msg


def test_map_buffersize_none_is_eager(impl):
    with make_pool(impl, 2) as pool:
        if not _buffersize_supported(impl):
            with pytest.raises(TypeError):
                pool.map(str, range(3), buffersize=None)
            return
        consumed = []

        def gen():
            for i in range(5):
                consumed.append(i)
                yield i
        it = pool.map(lambda x: x * 2, gen(), buffersize=None)
        assert consumed == [0, 1, 2, 3, 4]  # all collected at map() time
        assert list(it) == [0, 2, 4, 6, 8]


def test_map_buffersize_lazy_and_infinite(bimpl):
    impl = bimpl
    with make_pool(impl, 2) as pool:
        consumed = []

        def gen():
            for i in itertools.count():
                consumed.append(i)
                yield i
        it = pool.map(lambda x: x + 1, gen(), buffersize=3)
        # map() submits the first `buffersize` calls, nothing more.
        assert consumed == [0, 1, 2]
        out = [next(it) for _ in range(10)]
        assert out == list(range(1, 11))
        # Each item yielded lets one more in: never more than 3 ahead.
        assert len(consumed) == 13
        it.close()


def test_map_buffersize_bool_and_multiple_iterables(bimpl):
    impl = bimpl
    with make_pool(impl, 2) as pool:
        # bool is an int: accepted (the stdlib's isinstance check).
        assert list(pool.map(pow, [2, 3, 4], [2, 2, 2], buffersize=True)) == [4, 9, 16]
        assert list(pool.map(pow, [2, 3], [1, 2, 3], buffersize=10)) == [2, 9]


def test_map_buffersize_error_cancels_the_rest(bimpl):
    impl = bimpl
    gate = threading.Event()
    started = []

    def fn(x):
        started.append(x)
        if x == 0:
            raise ZeroDivisionError
        gate.wait(WAIT)
        return x
    with make_pool(impl, 1) as pool:
        it = pool.map(fn, range(100), buffersize=4)
        with pytest.raises(ZeroDivisionError):
            next(it)
        gate.set()
    # Only the buffered few were ever submitted; the queued ones cancelled.
    assert len(started) <= 5


def test_map_buffersize_timeout(bimpl):
    impl = bimpl
    gate = threading.Event()
    with make_pool(impl, 1) as pool:
        it = pool.map(gate.wait, [WAIT] * 3, timeout=0.05, buffersize=2)
        with pytest.raises(concurrent.futures.TimeoutError):
            next(it)
        gate.set()


def test_map_buffersize_through_overridden_submit(bimpl):
    impl = bimpl
    base = type(make_pool(impl, 1))
    calls = []

    class Counting(base):
        def submit(self, fn, /, *args, **kwargs):
            calls.append(args)
            return super().submit(fn, *args, **kwargs)

    with Counting(2) as pool:
        assert list(pool.map(abs, [-1, -2, -3], buffersize=2)) == [1, 2, 3]
        assert list(pool.map(abs, [-4], buffersize=None)) == [4]
    assert calls == [(-1,), (-2,), (-3,), (-4,)]


def test_map_buffersize_after_shutdown(bimpl):
    impl = bimpl
    pool = make_pool(impl, 1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.map(abs, [1], buffersize=1)


# ------------------------------------------------- exception conversion

def _cf_exceptions():
    return [
        concurrent.futures.CancelledError("x"),
        concurrent.futures.InvalidStateError("y"),
        concurrent.futures.TimeoutError("z"),
    ]


def _expected(exc):
    """What asyncio's own bridge hands the awaiting coroutine."""
    return asyncio.futures._convert_future_exc(exc)


def _raiser(exc):
    def fn():
        raise exc
    return fn


@pytest.mark.parametrize("entry", ["installed", "run_in_executor", "to_thread",
                                   "wrap_future", "pool_run", "stdlib"])
@pytest.mark.parametrize("kind", [0, 1, 2])
def test_fast_paths_convert_future_exceptions(entry, kind):
    exc = _cf_exceptions()[kind]
    expected = _expected(exc)

    async def main():
        loop = asyncio.get_running_loop()
        pool = fastexec.ThreadPoolExecutor(1)
        try:
            if entry == "installed":
                fastexec.install()
                try:
                    aw = loop.run_in_executor(pool, _raiser(exc))
                finally:
                    fastexec.uninstall()
            elif entry == "run_in_executor":
                aw = fastexec.run_in_executor(pool, _raiser(exc))
            elif entry == "to_thread":
                loop.set_default_executor(pool)
                aw = fastexec.to_thread(_raiser(exc))
            elif entry == "wrap_future":
                aw = fastexec.wrap_future(pool.submit(_raiser(exc)))
            elif entry == "pool_run":
                aw = pool.run(_raiser(exc))
            else:  # the stdlib's own bridge: the reference
                aw = loop.run_in_executor(pool, _raiser(exc))
            try:
                await aw
            except BaseException as got:
                return got
            return None
        finally:
            pool.shutdown()

    got = run(main())
    assert type(got) is type(expected)
    assert got.args == exc.args
    if type(expected) is not type(exc):
        assert got is not exc
    if sys.version_info >= (3, 12) and type(expected) is not type(exc):
        # 3.12+ keeps the traceback.
        assert got.__traceback__ is not None


def test_cancelled_error_in_job_cancels_the_awaiting_task():
    """CPython's test_run_coroutine_threadsafe_task_cancelled, reduced: the
    task awaiting a job that raises concurrent.futures.CancelledError is
    cancelled (asyncio.CancelledError), under install()."""
    async def main():
        pool = fastexec.ThreadPoolExecutor(1)
        loop = asyncio.get_running_loop()
        fastexec.install()
        try:
            async def waiter():
                return await loop.run_in_executor(
                    pool, _raiser(concurrent.futures.CancelledError()))
            task = loop.create_task(waiter())
            try:
                await task
            except asyncio.CancelledError:
                return task.cancelled()
            return "not cancelled"
        finally:
            fastexec.uninstall()
            pool.shutdown()
    assert run(main()) is True


def test_timeout_error_conversion_is_per_version():
    exc = concurrent.futures.TimeoutError("late")
    conv = _expected(exc)
    if PY311:
        # One class since 3.11 (some versions still copy the exception,
        # 3.12 does, 3.13 doesn't: either way the same class and args).
        assert type(conv) is TimeoutError is asyncio.TimeoutError
        assert conv.args == ("late",)
    else:
        assert type(conv) is asyncio.TimeoutError


# ------------------------------------------ subclass overriding submit

class Tracing(fastexec.ThreadPoolExecutor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def submit(self, fn, /, *args, **kwargs):
        self.seen.append(fn)
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)


@pytest.mark.parametrize("entry", ["installed", "installed_default", "run_in_executor",
                                   "run_in_executor_default", "to_thread",
                                   "new_event_loop"])
def test_fast_entry_points_keep_overridden_submit(entry):
    def job(x=1):
        return x * 10

    async def main():
        loop = asyncio.get_running_loop()
        pool = Tracing(1)
        try:
            if entry == "installed":
                fastexec.install()
                try:
                    r = await loop.run_in_executor(pool, job, 2)
                finally:
                    fastexec.uninstall()
            elif entry == "installed_default":
                loop.set_default_executor(pool)
                fastexec.install()
                try:
                    r = await loop.run_in_executor(None, job, 2)
                finally:
                    fastexec.uninstall()
            elif entry == "run_in_executor":
                r = await fastexec.run_in_executor(pool, job, x=2)
            elif entry == "run_in_executor_default":
                loop.set_default_executor(pool)
                r = await fastexec.run_in_executor(None, job, 2)
            elif entry == "to_thread":
                loop.set_default_executor(pool)
                r = await fastexec.to_thread(job, 2)
            else:
                r = await loop.run_in_executor(pool, job, 2)
            return r, len(pool.seen)
        finally:
            pool.shutdown()

    if entry == "new_event_loop":
        loop = fastexec.new_event_loop()
        try:
            assert loop.run_until_complete(main()) == (20, 1)
        finally:
            loop.close()
    else:
        assert run(main()) == (20, 1)


def test_plain_pool_still_takes_the_fast_path():
    """The override check does not push an unchanged pool off the fast
    path: no concurrent.futures.Future is made (submit is never called)."""
    async def main():
        loop = asyncio.get_running_loop()
        pool = fastexec.ThreadPoolExecutor(1)
        pool.submit = None  # an instance attribute is not the class's submit
        fastexec.install()
        try:
            return await loop.run_in_executor(pool, lambda: 3)
        finally:
            fastexec.uninstall()
            pool.shutdown()
    assert run(main()) == 3


# ------------------------------------------------------------------ fork

@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_fork_from_a_worker_child_exits_zero():
    """CPython's test_process_fork_from_a_threadpool: the child forked by a
    worker runs threading._shutdown (our exit hook) and exits 0."""
    code = textwrap.dedent("""
        import multiprocessing as mp, warnings, fastexec
        warnings.simplefilter("ignore", DeprecationWarning)
        def fork_and_exitcode():
            p = mp.get_context("fork").Process(target=lambda: 1)
            p.start()
            p.join()
            return p.exitcode
        with fastexec.ThreadPoolExecutor(1) as pool:
            print(pool.submit(fork_and_exitcode).result(timeout=30))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0", out.stderr


# ------------------------------------------------------- private surface

def test_private_surface(impl):
    gate = threading.Event()
    pool = make_pool(impl, 3, thread_name_prefix="px")
    try:
        assert pool._max_workers == 3
        assert pool._thread_name_prefix == "px"
        assert pool._shutdown is False
        assert pool._broken is False
        with pool._shutdown_lock:
            pass
        assert pool._work_queue.qsize() == 0
        assert pool._work_queue.empty()
        futs = [pool.submit(gate.wait, WAIT) for _ in range(5)]
        assert len(pool._threads) == 3
        for t in pool._threads:
            assert isinstance(t, threading.Thread)
            assert t.is_alive() and t.ident
        # 3 running, 2 queued (the stdlib's queue also holds them).
        assert pool._work_queue.qsize() == 2
        assert not pool._work_queue.empty()
        assert pool._idle_semaphore._value == 0
        gate.set()
        for f in futs:
            assert f.result(WAIT) is True
        if PY314:
            assert pool.BROKEN is concurrent.futures.thread.BrokenThreadPool
            create, resolve = pool._create_worker_context, pool._resolve_work_item_task
            assert resolve(abs, (1,), {}) == (abs, (1,), {})
            assert callable(create)
            assert callable(type(pool).prepare_context)
    finally:
        gate.set()
        pool.shutdown()
    assert pool._shutdown is True


def test_home_assistant_shutdown_pattern(impl):
    gate = threading.Event()
    pool = make_pool(impl, 2)
    running = [pool.submit(gate.wait, WAIT) for _ in range(2)]
    queued = [pool.submit(gate.wait, WAIT) for _ in range(3)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    gate.set()
    for t in list(pool._threads):
        t.join(WAIT)
        assert not t.is_alive()
    assert all(f.result(WAIT) is True for f in running)


@pytest.mark.skipif(not PY314, reason="ctxkwargs / prepare_context are 3.14's")
def test_ctxkwargs_subclass_constructs(impl):
    base = type(make_pool(impl, 1))

    class WithKw(base):
        def __init__(self, max_workers=None, thread_name_prefix="",
                     initializer=None, initargs=(), **ctxkwargs):
            super().__init__(max_workers, thread_name_prefix, initializer,
                             initargs, **ctxkwargs)

    with WithKw(2) as pool:
        assert pool.submit(abs, -5).result(WAIT) == 5
    # Unknown ctxkwargs: the stdlib's prepare_context refuses them, same error.
    with pytest.raises(TypeError) as info:
        WithKw(2, bogus=1)
    with pytest.raises(TypeError) as ref:
        concurrent.futures.ThreadPoolExecutor(2, bogus=1)
    assert str(info.value) == str(ref.value)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        WithKw(2, initializer=3)


@pytest.mark.skipif(PY314, reason="before 3.14 the stdlib takes no ctxkwargs")
def test_ctxkwargs_refused_before_314(impl):
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        make_pool(impl, 2, bogus=1)


@pytest.mark.skipif(not PY314, reason="3.14's worker-context protocol")
def test_own_worker_context_subclass_is_the_stdlib_pool():
    log = []

    class Ctx(concurrent.futures.thread.WorkerContext):
        def initialize(self):
            log.append("init")
            super().initialize()

        def run(self, task):
            fn, args, kwargs = task
            return ("ctx", fn(*args, **kwargs))

        def finalize(self):
            log.append("fini")

    class CtxPool(fastexec.ThreadPoolExecutor):
        @classmethod
        def prepare_context(cls, initializer, initargs):
            return Ctx.prepare(initializer, initargs)

    pool = CtxPool(1)
    assert pool.submit(abs, -2).result(WAIT) == ("ctx", 2)
    assert list(pool.map(abs, [-1, -3])) == [("ctx", 1), ("ctx", 3)]

    async def main():
        fastexec.install()
        try:
            a = await asyncio.get_running_loop().run_in_executor(pool, abs, -4)
        finally:
            fastexec.uninstall()
        b = await fastexec.run_in_executor(pool, abs, -5)
        c = await pool.run(abs, -6)
        return a, b, c
    assert run(main()) == (("ctx", 4), ("ctx", 5), ("ctx", 6))
    pool.shutdown()
    assert log == ["init", "fini"]


# ---------------------------------------------- InterpreterPoolExecutor

@pytest.mark.skipif(not hasattr(concurrent.futures, "InterpreterPoolExecutor"),
                    reason="InterpreterPoolExecutor is 3.14's")
def test_interpreter_pool_with_the_bridge():
    IPE = concurrent.futures.InterpreterPoolExecutor

    async def main():
        pool = IPE(1)
        try:
            loop = asyncio.get_running_loop()
            a = await fastexec.run_in_executor(pool, pow, 2, 5)
            b = await fastexec.wrap_future(pool.submit(pow, 3, 2))
            fastexec.install()
            try:
                c = await loop.run_in_executor(pool, pow, 2, 3)
            finally:
                fastexec.uninstall()
            with pytest.raises(ZeroDivisionError):
                await fastexec.run_in_executor(pool, divmod, 1, 0)
            return a, b, c
        finally:
            pool.shutdown()
    assert run(main()) == (32, 9, 8)


@pytest.mark.skipif(not PY314, reason="InterpreterPoolExecutor is 3.14's")
def test_interpreter_pool_built_on_our_pool():
    """With concurrent.futures.thread.ThreadPoolExecutor replaced by ours
    before concurrent.futures.interpreter is imported (how the CPython suite
    is run with our pool), InterpreterPoolExecutor subclasses ours: it runs
    in subinterpreters, as the stdlib's."""
    code = textwrap.dedent("""
        import concurrent.futures, concurrent.futures.thread as t, sys
        import fastexec
        t.ThreadPoolExecutor = fastexec.ThreadPoolExecutor
        from concurrent.futures.interpreter import InterpreterPoolExecutor as IPE
        assert issubclass(IPE, fastexec.ThreadPoolExecutor)
        import _interpreters
        with IPE(2) as pool:
            where = pool.submit(_interpreters.get_current).result(30)
            assert where[0] != 0, where
            assert list(pool.map(abs, [-1, -2])) == [1, 2]
            assert pool.submit(pow, 2, 10).result(30) == 1024
        import _interpreters
        assert len(_interpreters.list_all()) == 1, _interpreters.list_all()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-W", "error", "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------ -W error

def test_no_warnings_under_w_error():
    code = textwrap.dedent("""
        import asyncio, fastexec
        async def coro():
            pass
        async def main():
            loop = asyncio.get_running_loop()
            # -X dev logs a callback slower than 0.1 s: on a loaded machine
            # that is the scheduler, not a warning this test is about.
            loop.slow_callback_duration = 3600
            pool = fastexec.ThreadPoolExecutor(2)
            assert await fastexec.run_in_executor(pool, abs, -1) == 1
            assert await fastexec.to_thread(abs, -2) == 2
            assert await fastexec.wrap_future(pool.submit(abs, -3)) == 3
            assert list(pool.map(abs, [-4], buffersize=1)) == [4]
            fastexec.install()
            try:
                assert await loop.run_in_executor(None, abs, -5) == 5
                assert await asyncio.to_thread(abs, -6) == 6
            finally:
                fastexec.uninstall()
            pool.shutdown()
        asyncio.run(main())
        loop = fastexec.new_event_loop()
        loop.run_until_complete(main())
        loop.close()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-W", "error", "-X", "dev", "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert out.stderr == ""


def test_check_callback_refuses_coroutine_functions_without_warning():
    """The non-stdlib-loop check (uvloop's rule) with no deprecated call."""
    from fastexec import _bridge

    async def coro():
        pass

    class NotBase:
        pass
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            _bridge._check_callback(NotBase(), coro)
        _bridge._check_callback(NotBase(), abs)


# ------------------------------- the stdlib bridge on our futures (3.15)

@pytest.mark.parametrize("outcome", ["result", "exception", "cancelled",
                                     "cf_cancelled_error"])
def test_stdlib_wrap_future_on_our_future(outcome):
    """asyncio.wrap_future's _copy_future_state (3.15: source._get_snapshot())
    reads our C future as the stdlib's."""
    gate = threading.Event()

    async def main():
        pool = fastexec.ThreadPoolExecutor(1)
        try:
            if outcome == "cancelled":
                blocker = pool.submit(gate.wait, WAIT)
                fut = pool.submit(abs, -1)
                assert fut.cancel()
                gate.set()
                blocker.result(WAIT)
            elif outcome == "result":
                fut = pool.submit(abs, -1)
            elif outcome == "exception":
                fut = pool.submit(divmod, 1, 0)
            else:
                fut = pool.submit(_raiser(concurrent.futures.CancelledError("c")))
            if sys.version_info >= (3, 15):
                fut.exception(WAIT) if not fut.cancelled() else None
                snap = fut._get_snapshot()
                assert snap[0] is True
                assert snap[1] is (outcome == "cancelled")
            try:
                return ("ok", await asyncio.wrap_future(fut))
            except BaseException as exc:
                return ("raised", type(exc))
        finally:
            gate.set()
            pool.shutdown()

    got = run(main())
    expected = {
        "result": ("ok", 1),
        "exception": ("raised", ZeroDivisionError),
        "cancelled": ("raised", asyncio.CancelledError),
        "cf_cancelled_error": ("raised", asyncio.CancelledError),
    }[outcome]
    assert got == expected
