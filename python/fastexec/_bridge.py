"""The asyncio side of fastexec: run_in_executor, to_thread, wrap_future, install.

The fast path is in C (``Pool.run`` / ``Pool._run_on``, ``_fastexec.wrap_future``):
a job's outcome is posted to a per-loop channel and a whole batch of outcomes
costs the loop one ``call_soon_threadsafe``.  This module only picks the path:
a fastexec pool takes the fast path, any other executor gets the stdlib's.
"""

import asyncio
import asyncio.base_events as _base_events
import asyncio.threads as _threads
import concurrent.futures
import contextvars
import functools
import inspect
import sys

from . import _fastexec, _status
from ._executor import ThreadPoolExecutor

_POOL_SUBMIT = _fastexec.Pool.submit
# asyncio.iscoroutinefunction is deprecated from 3.14 (removed in 3.16);
# before, it also knows the legacy @asyncio.coroutine marker.
_iscoroutinefunction = (inspect.iscoroutinefunction if sys.version_info >= (3, 14)
                        else asyncio.iscoroutinefunction)

_orig_run_in_executor = _base_events.BaseEventLoop.run_in_executor
_orig_to_thread = _threads.to_thread
_installed = False


def _default_executor(loop):
    """The loop's default executor, made a fastexec pool if it has none.

    Returns None for loops whose default executor can't be read (uvloop):
    those keep their own ``run_in_executor`` for ``executor=None``.
    """
    if not isinstance(loop, _base_events.BaseEventLoop):
        return None
    executor = loop._default_executor
    # Only check when the default executor is being used (as the stdlib).
    loop._check_default_executor()
    if executor is None:
        executor = ThreadPoolExecutor(thread_name_prefix="asyncio")
        loop._default_executor = executor
    elif not isinstance(executor, _fastexec.Pool):
        _status.warn_foreign_default(executor)
    return executor


def _fast(executor):
    """True where the stdlib path would call our own submit: a fastexec
    pool whose class does not override submit (a subclass's submit --
    context propagation, tracing, admission control -- is kept)."""
    return (isinstance(executor, _fastexec.Pool)
            and type(executor).submit is _POOL_SUBMIT)


def _check_callback(loop, func):
    # What the loop's own run_in_executor would refuse: the stdlib loops check
    # in debug mode only; uvloop refuses coroutines always.
    if isinstance(loop, _base_events.BaseEventLoop):
        if loop.get_debug():
            loop._check_callback(func, "run_in_executor")
    elif asyncio.iscoroutine(func) or _iscoroutinefunction(func):
        raise TypeError("coroutines cannot be used with run_in_executor()")


def _stdlib_path(loop, executor, func, args, kwargs):
    if kwargs:
        func = functools.partial(func, *args, **kwargs)
        args = ()
    return loop.run_in_executor(executor, func, *args)


def run_in_executor(executor, func, /, *args, **kwargs):
    """Like ``loop.run_in_executor`` on the running loop, with kwargs.

    ``executor=None`` means the loop's default executor; a loop with none gets
    a fastexec pool as its default.  A fastexec pool takes the fast path (no
    ``concurrent.futures.Future``); any other executor gets the stdlib path.
    """
    loop = asyncio.get_running_loop()
    _check_callback(loop, func)
    if executor is None:
        executor = _default_executor(loop)
        if executor is None:  # a loop whose default we can't see (uvloop)
            return _stdlib_path(loop, None, func, args, kwargs)
    if _fast(executor):
        return executor._run_on(loop, None, func, args, kwargs)
    return _stdlib_path(loop, executor, func, args, kwargs)


async def to_thread(func, /, *args, **kwargs):
    """Like ``asyncio.to_thread``: run *func* in the loop's default executor
    with a copy of the current context; kwargs go straight through."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    executor = _default_executor(loop)
    if _fast(executor):
        return await executor._run_on(loop, ctx, func, args, kwargs)
    func_call = functools.partial(ctx.run, func, *args, **kwargs)
    return await loop.run_in_executor(executor, func_call)


def wrap_future(future, *, loop=None):
    """Like ``asyncio.wrap_future`` for any ``concurrent.futures.Future``,
    with the outcome delivered through fastexec's coalesced path."""
    if asyncio.isfuture(future):
        return future
    if not isinstance(future, concurrent.futures.Future):
        raise AssertionError(
            f"concurrent.futures.Future is expected, got {future!r}")
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop()
    return _fastexec.wrap_future(future, loop)


def _run_in_executor_method(self, executor, func, *args):
    # Installed as BaseEventLoop.run_in_executor: the stdlib's checks, in the
    # stdlib's order, then the fast path for fastexec pools.
    if executor is None or _fast(executor):
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            executor = _default_executor(self)
        if _fast(executor):
            return executor._run_on(self, None, func, args, None)
    return _orig_run_in_executor(self, executor, func, *args)


_run_in_executor_method.__doc__ = _orig_run_in_executor.__doc__


def install(*, anyio=True, pool=False):
    """Make unchanged asyncio code take the fast path on the stdlib loops.

    Patches ``BaseEventLoop.run_in_executor`` (so ``run_in_executor(None |
    fastexec pool)``, ``getaddrinfo`` and friends take the fast path, and a
    loop with no default executor gets a fastexec pool) and
    ``asyncio.to_thread``; with ``anyio=True`` (the default) and anyio 4.x
    installed, also ``anyio.to_thread.run_sync`` on anyio's asyncio backend
    (see ``fastexec._anyio``).  ``uninstall()`` restores them exactly.
    ``pool=True`` also makes ``concurrent.futures.ThreadPoolExecutor``
    fastexec's pool, for the pools created from then on.  Calling it again
    changes nothing but the ``anyio`` and ``pool`` choices.  A default
    executor that is not a fastexec pool is kept, and the first call that it
    puts on the stdlib path warns (``fastexec.SlowPathWarning``).  See
    ``fastexec.status()``.
    """
    global _installed
    from . import _anyio
    _status.set_pool_replaced(pool)
    if anyio:
        _anyio.install()
    else:
        _anyio.uninstall()
    _base_events.BaseEventLoop.run_in_executor = _run_in_executor_method
    _threads.to_thread = to_thread
    asyncio.to_thread = to_thread
    _installed = True


def uninstall():
    """Undo ``install()``: the stdlib's functions are put back."""
    global _installed
    from . import _anyio
    _status.set_pool_replaced(False)
    _anyio.uninstall()
    _base_events.BaseEventLoop.run_in_executor = _orig_run_in_executor
    _threads.to_thread = _orig_to_thread
    asyncio.to_thread = _orig_to_thread
    _installed = False


def installed():
    """True while ``install()`` is in effect."""
    return _installed


def _fast_loop_class(base):
    return type("Fastexec" + base.__name__, (base,), {
        "run_in_executor": _run_in_executor_method,
        "__module__": __name__,
    })


_loop_classes = {}


def new_event_loop():
    """A new event loop of the current policy's kind that takes the fast path
    without ``install()``: ``asyncio.run(main(), loop_factory=fastexec.new_event_loop)``
    or ``asyncio.Runner(loop_factory=...)`` (3.12+)."""
    loop = asyncio.new_event_loop()
    base = type(loop)
    if not isinstance(loop, _base_events.BaseEventLoop):
        return loop  # not a stdlib loop: nothing to change
    loop.close()
    cls = _loop_classes.get(base)
    if cls is None:
        cls = _loop_classes[base] = _fast_loop_class(base)
    return cls()
