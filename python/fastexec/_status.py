"""``fastexec.status()``: which paths take the fast path now, and why not
where not; and the two policies of ``install()`` that live outside the loop
patch: ``install(pool=True)`` (``concurrent.futures.ThreadPoolExecutor`` made
ours) and the one warning for a default executor that isn't a fastexec pool.
"""

import asyncio
import asyncio.base_events as _base_events
import concurrent.futures
import platform
import warnings
import weakref

from . import _fastexec


class SlowPathWarning(RuntimeWarning):
    """A call that asked for fastexec's fast path took the stdlib's, because
    the loop's default executor is not a fastexec pool."""


# The stdlib's class, while install(pool=True) has replaced it.
_stdlib_pool_class = None
_warned = weakref.WeakSet()


def set_pool_replaced(replace):
    """Make ``concurrent.futures.ThreadPoolExecutor`` fastexec's pool (True)
    or the stdlib's again (False).  Only that public name is changed:
    ``concurrent.futures.thread.ThreadPoolExecutor`` stays the stdlib's, so
    the stdlib's own subclasses (InterpreterPoolExecutor) are untouched."""
    global _stdlib_pool_class
    if replace and _stdlib_pool_class is None:
        from . import ThreadPoolExecutor
        _stdlib_pool_class = concurrent.futures.ThreadPoolExecutor
        concurrent.futures.ThreadPoolExecutor = ThreadPoolExecutor
    elif not replace and _stdlib_pool_class is not None:
        concurrent.futures.ThreadPoolExecutor = _stdlib_pool_class
        _stdlib_pool_class = None


def pool_replaced():
    return _stdlib_pool_class is not None


def _foreign_default_reason(executor):
    return ("the loop's default executor is a %s.%s, not a fastexec pool "
            "(set by loop.set_default_executor): pass it a "
            "fastexec.ThreadPoolExecutor(), or call fastexec.install(pool=True) "
            "before the executor is created"
            % (type(executor).__module__, type(executor).__qualname__))


def warn_foreign_default(executor):
    """Once per executor: a SlowPathWarning saying why the default executor
    can't take the fast path."""
    try:
        if executor in _warned:
            return
        _warned.add(executor)
    except TypeError:  # not weakly referenceable: warn every time
        pass
    warnings.warn("fastexec: the stdlib path is taken: "
                  + _foreign_default_reason(executor),
                  SlowPathWarning, stacklevel=4)


class Status(dict):
    """What ``fastexec.status()`` returns: a dict, printed as lines."""

    def __str__(self):
        lines = ["fastexec %(version)s on CPython %(python)s" % self,
                 "install(): %s" % ("in effect" if self["installed"] else "not in effect"),
                 "concurrent.futures.ThreadPoolExecutor: %s" % (
                     "fastexec's pool (install(pool=True))" if self["pool_replaced"]
                     else "the stdlib's"),
                 "loop: %s%s" % (self["loop"], "" if self["loop_running"]
                                 else " (none running: a new_event_loop() was examined)")]
        width = max(len(k) for k in self["paths"])
        for path, verdict in self["paths"].items():
            lines.append("  %-*s  %s" % (width, path, verdict))
        return "\n".join(lines)


def _loop_paths(loop, installed):
    from . import _bridge
    fast = "fast"
    paths = {}
    if not isinstance(loop, _base_events.BaseEventLoop):
        own = ("stdlib: %s has its own run_in_executor, which install() can't "
               "change; use fastexec.run_in_executor, to_thread or pool.run"
               % type(loop).__name__)
        paths["loop.run_in_executor(None, ...)"] = own
        paths["loop.run_in_executor(fastexec pool, ...)"] = (
            "drop-in: the C pool through the loop's own bridge (pool.submit)")
        paths["asyncio.to_thread"] = (
            "stdlib: the default executor of %s can't be read" % type(loop).__name__
            if installed else "stdlib: install() is not in effect")
        paths["fastexec.run_in_executor(None, ...) / fastexec.to_thread"] = (
            "stdlib: the default executor of %s can't be read; pass a "
            "fastexec pool instead of None" % type(loop).__name__)
        paths["pool.run / fastexec.run_in_executor(pool, ...)"] = fast
        return paths
    patched = type(loop).run_in_executor is _bridge._run_in_executor_method
    executor = loop._default_executor
    if executor is None or _bridge._fast(executor):
        default = fast
    elif isinstance(executor, _fastexec.Pool):
        default = ("stdlib: the loop's default executor, a %s, overrides submit "
                   "(its submit is kept, through the stdlib path)"
                   % type(executor).__qualname__)
    else:
        default = "stdlib: " + _foreign_default_reason(executor)
    not_patched = ("stdlib: install() is not in effect (fastexec.install(), "
                   "or loop_factory=fastexec.new_event_loop)")
    paths["loop.run_in_executor(None, ...)"] = default if patched else not_patched
    paths["loop.run_in_executor(fastexec pool, ...)"] = fast if patched else (
        "drop-in: the C pool through the stdlib bridge; " + not_patched[len("stdlib: "):])
    paths["asyncio.to_thread"] = default if installed else (
        "stdlib: install() is not in effect")
    paths["fastexec.run_in_executor(None, ...) / fastexec.to_thread"] = default
    paths["pool.run / fastexec.run_in_executor(pool, ...)"] = fast
    return paths


def status(loop=None):
    """Which asyncio paths take fastexec's fast path now, and why not where not.

    *loop* defaults to the running loop; with none running, a loop from
    ``asyncio.new_event_loop()`` (then closed) is examined.  Returns a
    ``dict`` (printing it gives one line per path): ``version``, ``python``,
    ``installed``, ``pool_replaced``, ``loop`` (the loop's class),
    ``loop_running`` and
    ``paths`` (each path: ``"fast"``, or why it is the stdlib's).
    """
    from . import __version__, _bridge
    installed = _bridge.installed()
    owned = False
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            owned = True
    try:
        paths = _loop_paths(loop, installed)
        name = type(loop).__module__ + "." + type(loop).__qualname__
    finally:
        if owned:
            loop.close()
    return Status(version=__version__, python=platform.python_version(),
                  installed=installed, pool_replaced=pool_replaced(),
                  loop=name, loop_running=not owned, paths=paths)
