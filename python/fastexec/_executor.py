"""The class glue of fastexec.ThreadPoolExecutor and its process hooks.

The pool itself (queue, workers, idle accounting, completion of futures) is
in C (``_fastexec.Pool``).  Here: construction and validation, the thread
bookkeeping the stdlib exposes (``_threads``, ``_shutdown``, ``_broken``),
``shutdown``'s joins, and the interpreter-exit and fork hooks, which reach
every live pool through the C registry (``_fastexec._live_pools()``).
"""

import collections
import concurrent.futures
import concurrent.futures.thread as _cf_thread
import functools
import itertools
import math
import os
import sys
import threading
import time
import weakref

from . import _fastexec

__all__ = ["ThreadPoolExecutor", "BrokenThreadPool", "Future"]

BrokenThreadPool = _cf_thread.BrokenThreadPool
Future = _fastexec.Future

# Held while interpreter exit takes the list of live pools (the C registry,
# _fastexec._live_pools(): every pool that was set up and is not freed).
_global_lock = threading.Lock()


def _call_star(fn, args):
    return fn(*args)


_PY314 = sys.version_info >= (3, 14)
_StdPool = concurrent.futures.ThreadPoolExecutor


def _result_or_cancel(fut, timeout=None):
    # concurrent.futures._base._result_or_cancel (3.12+), for every version.
    try:
        try:
            return fut.result(timeout)
        finally:
            fut.cancel()
    finally:
        del fut


def _map_buffered(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None):
    # Executor.map of 3.14 and 3.15 (the same code), for 3.9-3.13: through
    # self.submit, at most `buffersize` calls ahead of the consumer.
    if buffersize is not None and not isinstance(buffersize, int):
        raise TypeError("buffersize must be an integer or None")
    if buffersize is not None and buffersize < 1:
        raise ValueError("buffersize must be None or > 0")

    if timeout is not None:
        end_time = timeout + time.monotonic()

    zipped_iterables = zip(*iterables)
    if buffersize:
        fs = collections.deque(
            self.submit(fn, *args)
            for args in itertools.islice(zipped_iterables, buffersize))
    else:
        fs = [self.submit(fn, *args) for args in zipped_iterables]

    executor_weakref = weakref.ref(self)

    def result_iterator():
        try:
            fs.reverse()
            while fs:
                if (
                    buffersize
                    and (executor := executor_weakref())
                    and (args := next(zipped_iterables, None))
                ):
                    fs.appendleft(executor.submit(fn, *args))
                if timeout is None:
                    yield _result_or_cancel(fs.pop())
                else:
                    yield _result_or_cancel(fs.pop(), end_time - time.monotonic())
        finally:
            for future in fs:
                future.cancel()
    return result_iterator()


if _PY314:
    # The stdlib's own, exactly.
    _map_buffered = concurrent.futures.Executor.map  # noqa: F811


class _WorkQueueView:
    """A read-only ``_work_queue``: the stdlib's is a ``queue.SimpleQueue``
    of work items; ours is in C.  ``qsize()`` and ``empty()`` read it."""

    __slots__ = ("_core",)

    def __init__(self, core):
        self._core = core

    def qsize(self):
        return self._core.stats()["queued"]

    def empty(self):
        return self.qsize() == 0

    def __repr__(self):
        return "<fastexec work queue view, %d queued>" % self.qsize()


class _IdleView:
    """A read-only ``_idle_semaphore``: ``_value`` is the number of idle
    workers, as the stdlib's semaphore counts them."""

    __slots__ = ("_core",)

    def __init__(self, core):
        self._core = core

    @property
    def _value(self):
        return self._core.stats()["idle"]

    def __repr__(self):
        return "<fastexec idle view, value=%d>" % self._value


def _run_via_submit(self, fn, /, *args, **kwargs):
    # Pool.run for a pool that is the stdlib's (see __init_subclass__).
    from ._bridge import wrap_future
    return wrap_future(self.submit(fn, *args, **kwargs))


def _default_max_workers():
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (count or 1) + 4)


class ThreadPoolExecutor(_fastexec.Pool, concurrent.futures.ThreadPoolExecutor):
    """A drop-in ``concurrent.futures.ThreadPoolExecutor`` whose pool is in C.

    ``submit``, ``map`` and ``run`` are C methods (inherited from
    ``_fastexec.Pool``); only construction and ``shutdown``'s joins are here.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if _PY314 and cls.prepare_context.__func__ is not _StdPool.prepare_context.__func__:
            # A worker context of its own (3.14's protocol: per-worker
            # create/initialize/run/finalize, InterpreterPoolExecutor's is
            # one) can't run in our C workers: such a subclass is the
            # stdlib's pool, its code unchanged (plain attributes where ours
            # are views; submit/map/shutdown the stdlib's, so every fast path
            # takes the stdlib path too).
            cls._stdlib_mode = True
            for name in ("_shutdown", "_broken", "_work_queue", "_idle_semaphore"):
                setattr(cls, name, None)
            cls.submit = _StdPool.submit
            cls.map = concurrent.futures.Executor.map
            cls.shutdown = _StdPool.shutdown
            cls.run = _run_via_submit

    _stdlib_mode = False

    def __init__(self, max_workers=None, thread_name_prefix="",
                 initializer=None, initargs=(), *, idle_timeout=None, **ctxkwargs):
        if self._stdlib_mode:
            if idle_timeout is not None:
                raise TypeError("idle_timeout is not supported with a worker "
                                "context of its own (prepare_context)")
            _StdPool.__init__(self, max_workers, thread_name_prefix,
                              initializer, initargs, **ctxkwargs)
            return
        if ctxkwargs and not _PY314:
            raise TypeError("ThreadPoolExecutor.__init__() got an unexpected "
                            "keyword argument %r" % next(iter(ctxkwargs)))
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if _PY314:
            # The stdlib's checks and messages (initializer callable, no
            # unknown ctxkwargs); what it returns is what its pool keeps.
            (self._create_worker_context,
             self._resolve_work_item_task,
             ) = type(self).prepare_context(initializer, initargs, **ctxkwargs)
        elif initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if idle_timeout is not None:
            idle_timeout = float(idle_timeout)
            if not idle_timeout > 0:
                raise ValueError("idle_timeout must be greater than 0 or None")
        self._max_workers = max_workers
        self._thread_name_prefix = (thread_name_prefix or
                                    ("ThreadPoolExecutor-%d" % self._counter()))
        self._initializer = initializer
        self._initargs = initargs
        self._threads = set()
        self._shutdown_lock = threading.Lock()
        self._idle_timeout = idle_timeout
        # The stdlib starts threads while len(threads) < max_workers, so a
        # float such as 2.5 allows 3; a huge number (inf too) is capped.
        cap = 2 ** 31 - 1
        limit = cap if max_workers >= cap else math.ceil(max_workers)
        # The stdlib names threads '%s_%d' % (prefix, n) and calls
        # initializer(*initargs) in each worker, so any prefix and, with no
        # initializer, any initargs are accepted; initargs that can't be
        # unpacked fail in the worker, as an initializer failure.
        prefix = "%s" % (self._thread_name_prefix,)
        try:
            args = tuple(initargs)
        except TypeError:
            if initializer is not None:
                initializer = functools.partial(_call_star, initializer, initargs)
            args = ()
        # From here on the core is on the C registry (_fastexec._live_pools).
        self._setup(limit, prefix, initializer, args, idle_timeout, self._threads)

    # The stdlib keeps these as plain attributes; ours are read from the C
    # core so that they are always true.  The setters exist because code (and
    # the stdlib's own __init__ when a subclass calls it) assigns them.
    @property
    def _shutdown(self):
        return self._core.is_shutdown

    @_shutdown.setter
    def _shutdown(self, value):
        if value:
            self._core.shutdown(False)

    @property
    def _broken(self):
        return self._core.broken or False

    @_broken.setter
    def _broken(self, value):
        pass

    @property
    def _work_queue(self):
        return _WorkQueueView(self._core)

    @property
    def _idle_semaphore(self):
        return _IdleView(self._core)

    _map_buffered = _map_buffered

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._shutdown_lock:
            self._core.shutdown(cancel_futures)
        if wait:
            # A submit that was accepted may still be starting the thread
            # that will run it: wait until it is listed, then join.
            self._core.wait_spawning()
            for t in list(self._threads):
                if t is not threading.current_thread():
                    t.join()

    shutdown.__doc__ = concurrent.futures.Executor.shutdown.__doc__

    def stats(self):
        """A snapshot of the pool's counters, for metrics.

        Returns a dict with max_workers, threads, idle, queued, running,
        completed, failed and cancelled.  Reading it takes the pool's lock
        once and allocates the dict; it never waits for work.
        """
        return self._core.stats()


# Public as fastexec.ThreadPoolExecutor (its repr, pickling by name).
ThreadPoolExecutor.__module__ = "fastexec"


def _python_exit():
    # Like concurrent.futures.thread._python_exit: stop accepting work, let
    # the queued work run, then join every worker, before threading joins
    # the non-daemon threads.
    with _global_lock:
        _fastexec._set_interpreter_shutdown()
        cores = _fastexec._live_pools()
    for core in cores:
        core.wake_all()
    me = threading.current_thread()
    for core in cores:
        core.wait_spawning()
        for t in core.thread_list():
            # In a child forked by a worker, that worker is this thread.
            if t is not me:
                t.join()


threading._register_atexit(_python_exit)


# Fork: the C extension holds every pool's mutex across fork() itself
# (pthread_atfork) and resets the pools in the child; this hook then ends, in
# the child, the work inherited from the parent (see src/fork.c).
def _after_fork_child():
    global _global_lock
    _global_lock = threading.Lock()
    for core in _fastexec._live_pools():
        core._after_fork_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
