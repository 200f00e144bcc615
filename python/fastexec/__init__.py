"""fastexec: a C thread pool and a fast asyncio executor bridge.

The pool (queue, workers, idle accounting, completion of futures) is in the C
extension ``fastexec._fastexec``.  This module is the thin Python side: the
``ThreadPoolExecutor`` class glue (validation, thread bookkeeping the stdlib
exposes), interpreter-exit and fork hooks, and the asyncio conveniences.
"""

# The C module first: in an interpreter it can't be loaded into (one with its
# own GIL) the import is refused here, cleanly, before anything else is
# imported (on 3.12, importing asyncio in such an interpreter and exiting
# crashes CPython itself).
from . import _fastexec  # noqa: I001  (must stay first)

import asyncio
import concurrent.futures
import concurrent.futures.thread as _cf_thread
import contextvars
import functools
import math
import os
import threading
import weakref

__all__ = [
    "ThreadPoolExecutor",
    "run_in_executor",
    "to_thread",
    "wrap_future",
    "install",
    "uninstall",
    "installed",
    "new_event_loop",
]

__version__ = "0.1.0"

BrokenThreadPool = _cf_thread.BrokenThreadPool
Future = _fastexec.Future

# Every live pool core, so that interpreter exit and fork can reach them.
_live_cores = weakref.WeakSet()
_global_lock = threading.Lock()


def _call_star(fn, args):
    return fn(*args)


def _default_max_workers():
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (count or 1) + 4)


class ThreadPoolExecutor(_fastexec.Pool, concurrent.futures.ThreadPoolExecutor):
    """A drop-in ``concurrent.futures.ThreadPoolExecutor`` whose pool is in C.

    ``submit``, ``map`` and ``run`` are C methods (inherited from
    ``_fastexec.Pool``); only construction and ``shutdown``'s joins are here.
    """

    def __init__(self, max_workers=None, thread_name_prefix="",
                 initializer=None, initargs=(), *, idle_timeout=None):
        if max_workers is None:
            max_workers = _default_max_workers()
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
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
        self._setup(limit, prefix, initializer, args, idle_timeout, self._threads)
        _live_cores.add(self._core)

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


def _python_exit():
    # Like concurrent.futures.thread._python_exit: stop accepting work, let
    # the queued work run, then join every worker, before threading joins
    # the non-daemon threads.
    with _global_lock:
        _fastexec._set_interpreter_shutdown()
        cores = list(_live_cores)
    for core in cores:
        core.wake_all()
    for core in cores:
        core.wait_spawning()
        for t in core.thread_list():
            t.join()


threading._register_atexit(_python_exit)


# Fork: the C extension holds every pool's mutex across fork() itself
# (pthread_atfork) and resets the pools in the child; this hook then ends, in
# the child, the work inherited from the parent (see pool.c, "Fork").
def _after_fork_child():
    global _global_lock
    _global_lock = threading.Lock()
    for core in list(_live_cores):
        core._after_fork_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


from ._bridge import (  # noqa: E402
    install,
    installed,
    new_event_loop,
    run_in_executor,
    to_thread,
    uninstall,
    wrap_future,
)
