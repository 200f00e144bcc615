"""uvloop flavour of ``fastexec.new_event_loop()``.

``fastexec.new_uvloop_event_loop()`` makes a uvloop loop (a subclass of
``uvloop.Loop``) whose ``run_in_executor(None | fastexec pool, ...)`` takes
fastexec's fast path, and whose default executor is a fastexec pool; so do
``asyncio.to_thread`` and ``fastexec.run_in_executor(None, ...)`` on it.  Use
it wherever uvloop takes a loop factory::

    asyncio.run(main(), loop_factory=fastexec.new_uvloop_event_loop)    # 3.12+
    with asyncio.Runner(loop_factory=fastexec.new_uvloop_event_loop) as r: ...
    uvloop.run(main(), loop_factory=fastexec.new_uvloop_event_loop)

uvloop resolves names itself (libuv's ``getaddrinfo``, not an executor), so
``getaddrinfo`` is not an executor call there and stays as uvloop does it.
Any other executor keeps uvloop's own path (``submit`` + ``wrap_future``).
"""

EXECUTOR_SHUTDOWN_MSG = "Executor shutdown has been called"

_classes = {}


def _loop_class():
    cls = _classes.get("uvloop")
    if cls is not None:
        return cls
    import uvloop

    from ._bridge import _check_callback, _fast

    class FastexecUVLoop(uvloop.Loop):
        """A uvloop loop whose default executor and fastexec pools take
        fastexec's fast path in ``run_in_executor``."""

        _fastexec_default = None
        _fastexec_default_shut = False

        def run_in_executor(self, executor, func, *args):
            # The fast path only where uvloop would call our own submit (a
            # subclass's own submit is kept, as on the stdlib loops).
            if executor is None or _fast(executor):
                # uvloop's own checks, in its order.
                _check_callback(self, func)
                if self.is_closed():
                    raise RuntimeError("Event loop is closed")
                if executor is None:
                    if self._fastexec_default_shut:
                        raise RuntimeError(EXECUTOR_SHUTDOWN_MSG)
                    executor = self._fastexec_default
                    if executor is None:
                        from . import ThreadPoolExecutor
                        executor = ThreadPoolExecutor(thread_name_prefix="uvloop")
                        self.set_default_executor(executor)
                if _fast(executor):
                    return executor._run_on(self, None, func, args, None)
            return super().run_in_executor(executor, func, *args)

        def set_default_executor(self, executor):
            super().set_default_executor(executor)
            self._fastexec_default = executor

        async def shutdown_default_executor(self, *args, **kwargs):
            self._fastexec_default_shut = True
            return await super().shutdown_default_executor(*args, **kwargs)

    FastexecUVLoop.__module__ = "fastexec"
    _classes["uvloop"] = FastexecUVLoop
    return FastexecUVLoop


def new_uvloop_event_loop():
    """A new uvloop loop that takes fastexec's fast path without
    ``install()``; usable as a ``loop_factory``."""
    return _loop_class()()
