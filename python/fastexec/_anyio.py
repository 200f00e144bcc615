"""The anyio hook: ``anyio.to_thread.run_sync`` on the asyncio backend runs on
a fastexec pool through the fast path.

anyio (and with it Starlette and FastAPI, whose ``run_in_threadpool`` is
``anyio.to_thread.run_sync``) runs blocking calls on worker threads of its own,
with one ``call_soon_threadsafe`` per call.  ``install()`` replaces the one
method of anyio's asyncio backend that does this,
``AsyncIOBackend.run_sync_in_worker_thread``, by the function below: the same
steps in the same order (checkpoint, the ``CapacityLimiter``, the shielded or
unshielded ``CancelScope``, the copied context with no async library set),
except that the call is queued on a fastexec pool of the event loop's run and
its outcome comes back through the coalesced fast path.  In the worker the
call sees what anyio's own worker threads give it: the thread is claimed as an
anyio worker thread of that loop (``anyio.from_thread.run`` / ``run_sync``
work) and ``threadlocals.current_cancel_scope`` is the scope anyio would give
(``anyio.from_thread.check_cancelled`` works).

The pool's lifetime is that of anyio's workers: one pool per run (kept in a
``RunVar``), shut down when the run's root task ends, with threads that end
after 10 s idle (anyio's ``WorkerThread.MAX_IDLE_TIME``) and no worker limit
of its own (the limiter is the limit, as with anyio).

The trio backend is not touched.  An anyio whose hook point is not the one
known here (not 4.x, or a method of another shape) is left alone, with a
warning saying why.
"""

import asyncio
import contextvars
import inspect
import sys
import warnings

_state = {"orig": None, "backend": None}

# anyio's WorkerThread.MAX_IDLE_TIME (seconds), the same in every 4.x.
_IDLE_TIMEOUT = 10.0
# No limit of the pool's own: anyio starts a thread whenever none is idle and
# the limiter lets the call in.
_MAX_WORKERS = 2 ** 31 - 1
THREAD_NAME_PREFIX = "AnyIO worker thread (fastexec)"


def _anyio_version():
    try:
        from importlib.metadata import version
        return version("anyio")
    except Exception:  # not installed as a distribution (vendored, ...)
        import anyio
        return getattr(anyio, "__version__", "unknown")


def _refuse(why):
    warnings.warn("fastexec.install(): anyio left alone: %s; "
                  "anyio.to_thread keeps its own worker threads" % (why,),
                  RuntimeWarning, stacklevel=4)
    return False


def _make_hook(backend_mod, eventloop_mod, lowlevel_mod, orig_func, cancel_kw):
    """The replacement for ``AsyncIOBackend.run_sync_in_worker_thread``,
    following the installed anyio's own code (read from the original)."""
    from . import ThreadPoolExecutor

    AsyncIOBackend = backend_mod.AsyncIOBackend
    CancelScope = backend_mod.CancelScope
    find_root_task = backend_mod.find_root_task
    get_running_loop = asyncio.get_running_loop
    claim_worker_thread = eventloop_mod.claim_worker_thread
    threadlocals = eventloop_mod.threadlocals
    names = orig_func.__code__.co_names
    # 4.x versions differ in two details; do what the installed one does.
    set_library = (eventloop_mod.set_current_async_library
                   if "set_current_async_library" in names else None)
    parent_scope_rule = "_parent_scope" in names
    copy_context = contextvars.copy_context
    Context = contextvars.Context
    pools = lowlevel_mod.RunVar("_fastexec_anyio_pool")

    def call_in_worker(func, args, scope, loop):
        # In a fastexec worker, inside the copied context: what anyio's
        # WorkerThread.run does around the call.
        with claim_worker_thread(AsyncIOBackend, loop):
            threadlocals.current_cancel_scope = scope
            try:
                return func(*args)
            except StopIteration as exc:
                # As anyio's WorkerThread._report_result (an asyncio future
                # refuses StopIteration).
                raise RuntimeError("coroutine raised StopIteration") from exc
            finally:
                del threadlocals.current_cancel_scope

    def pool_of_this_run():
        try:
            pool = pools.get()
        except LookupError:
            pool = None
        if pool is None or pool._shutdown:
            pool = ThreadPoolExecutor(max_workers=_MAX_WORKERS,
                                      thread_name_prefix=THREAD_NAME_PREFIX,
                                      idle_timeout=_IDLE_TIMEOUT)
            pools.set(pool)
            # anyio stops its workers when the root task ends.
            root_task = find_root_task()
            root_task.add_done_callback(
                lambda _task: pool.shutdown(wait=False), context=Context())
        return pool

    async def run_sync_in_worker_thread(cls, func, args, *posargs, **kwargs):
        abandon_on_cancel, limiter = _bind(posargs, kwargs)
        await cls.checkpoint()
        async with limiter or cls.current_default_thread_limiter():
            with CancelScope(shield=not abandon_on_cancel) as scope:
                pool = pool_of_this_run()
                context = copy_context()
                if set_library is not None:
                    context.run(set_library, None)
                if (not parent_scope_rule or abandon_on_cancel
                        or scope._parent_scope is None):
                    worker_scope = scope
                else:
                    worker_scope = scope._parent_scope
                loop = get_running_loop()
                return await pool._run_on(loop, context, call_in_worker,
                                          (func, args, worker_scope, loop), None)

    def _bind(posargs, kwargs):
        # The original's parameters after (func, args): (abandon_on_cancel or
        # cancellable, limiter), by position or keyword.
        if len(posargs) > 2:
            raise TypeError("run_sync_in_worker_thread() takes at most 4 "
                            "positional arguments")
        values = dict(zip((cancel_kw, "limiter"), posargs))
        for key, value in kwargs.items():
            if key not in (cancel_kw, "limiter") or key in values:
                raise TypeError("run_sync_in_worker_thread() got an "
                                "unexpected or repeated argument %r" % (key,))
            values[key] = value
        return values.get(cancel_kw, False), values.get("limiter")

    run_sync_in_worker_thread.__doc__ = orig_func.__doc__
    run_sync_in_worker_thread.__qualname__ = "AsyncIOBackend.run_sync_in_worker_thread"
    run_sync_in_worker_thread._fastexec_hook = True
    return classmethod(run_sync_in_worker_thread)


def install():
    """Hook anyio's asyncio backend if anyio is there and its hook point is
    the known one.  Returns True when hooked (or already hooked)."""
    if _state["orig"] is not None:
        return True
    try:
        import importlib.util
        if importlib.util.find_spec("anyio") is None:
            return False
    except (ImportError, ValueError):
        return False
    version = _anyio_version()
    if not version.split(".")[0] == "4":
        return _refuse("anyio %s is not 4.x, the versions whose hook point "
                       "(AsyncIOBackend.run_sync_in_worker_thread) fastexec knows"
                       % (version,))
    try:
        import anyio._backends._asyncio as backend_mod
        import anyio._core._eventloop as eventloop_mod
        import anyio.lowlevel as lowlevel_mod
    except Exception as exc:
        return _refuse("importing anyio's asyncio backend failed (%s: %s)"
                       % (type(exc).__name__, exc))
    backend = getattr(backend_mod, "AsyncIOBackend", None)
    orig = backend.__dict__.get("run_sync_in_worker_thread") if backend else None
    missing = [name for name, where in (
        ("CancelScope", backend_mod), ("find_root_task", backend_mod),
        ("claim_worker_thread", eventloop_mod), ("threadlocals", eventloop_mod),
        ("RunVar", lowlevel_mod)) if not hasattr(where, name)]
    if not isinstance(orig, classmethod) or missing:
        return _refuse("anyio %s's asyncio backend is not of the known shape "
                       "(missing: %s)" % (version, ", ".join(
                           missing or ["AsyncIOBackend.run_sync_in_worker_thread"])))
    if getattr(orig.__func__, "_fastexec_hook", False):
        return True
    params = list(inspect.signature(orig.__func__).parameters)
    cancel_kw = next((p for p in ("abandon_on_cancel", "cancellable")
                      if p in params), None)
    if params[:3] != ["cls", "func", "args"] or cancel_kw is None \
            or "limiter" not in params or len(params) != 5:
        return _refuse("anyio %s's run_sync_in_worker_thread%s is not of the "
                       "known signature" % (version, inspect.signature(orig.__func__)))
    backend.run_sync_in_worker_thread = _make_hook(
        backend_mod, eventloop_mod, lowlevel_mod, orig.__func__, cancel_kw)
    _state["orig"] = orig
    _state["backend"] = backend
    return True


def uninstall():
    """Put anyio's own method back (calls in flight finish on the pool)."""
    orig, backend = _state["orig"], _state["backend"]
    if orig is not None:
        backend.run_sync_in_worker_thread = orig
        _state["orig"] = _state["backend"] = None


def installed():
    """True while anyio's asyncio backend is hooked."""
    return _state["orig"] is not None and "anyio._backends._asyncio" in sys.modules
