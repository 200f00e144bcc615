"""fastexec's anyio hook (``fastexec._anyio``): ``anyio.to_thread.run_sync``
on the asyncio backend runs on a fastexec pool, with anyio's semantics.

Two kinds of proof:

* anyio's OWN test suite for threads (``test_to_thread.py``,
  ``test_from_thread.py``, and the suites whose code runs on worker threads:
  ``test_fileio.py``, ``test_synchronization.py``), from the sdist of the
  installed anyio version, run twice in subprocesses, without and with the
  hook: every test that passes without it passes with it.  If the sdist can't
  be fetched, that test FAILS (it is never skipped).
* focused tests here of each semantic the hook must keep: the limiter, the
  two cancellation modes, contextvars, ``from_thread`` inside the job, the
  worker-thread state, the pool's lifetime, install/uninstall, refusal.
"""

import asyncio
import contextvars
import gc
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import xml.etree.ElementTree as ET

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
from anyio._backends._asyncio import AsyncIOBackend

import fastexec
from fastexec import _anyio

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
HERE = os.path.dirname(os.path.abspath(__file__))
ORIG_METHOD = AsyncIOBackend.__dict__["run_sync_in_worker_thread"]
PREFIX = _anyio.THREAD_NAME_PREFIX


@pytest.fixture
def hooked():
    assert not _anyio.installed()
    fastexec.install()
    try:
        assert _anyio.installed()
        yield
    finally:
        fastexec.uninstall()
    assert AsyncIOBackend.__dict__["run_sync_in_worker_thread"] is ORIG_METHOD


def run(main, *args, uvloop=False):
    options = {"use_uvloop": True} if uvloop else {}
    return anyio.run(main, *args, backend="asyncio", backend_options=options)


LOOPS = [False, True]
LOOP_IDS = ["asyncio", "uvloop"]


def thread_name():
    return threading.current_thread().name


# ------------------------------------------------------------ the basics

@pytest.mark.parametrize("uvloop", LOOPS, ids=LOOP_IDS)
def test_calls_run_on_a_fastexec_pool(hooked, uvloop):
    var = contextvars.ContextVar("var")

    def job(x):
        var.set("changed in the thread")       # in the copied context only
        return x * 2, thread_name(), anyio.from_thread.run_sync(thread_name)

    async def main():
        var.set("caller")
        value, name, loop_thread = await anyio.to_thread.run_sync(job, 21)
        with pytest.raises(ZeroDivisionError):
            await anyio.to_thread.run_sync(divmod, 1, 0)
        return value, name, loop_thread, var.get(), threading.current_thread().name

    value, name, loop_thread, after, main_name = run(main, uvloop=uvloop)
    assert value == 42
    assert name.startswith(PREFIX)
    assert loop_thread == main_name          # from_thread ran on the loop
    assert after == "caller"


def test_contextvars_are_copied_into_the_thread(hooked):
    var = contextvars.ContextVar("var", default="unset")

    async def main():
        var.set("set in the task")
        return await anyio.to_thread.run_sync(var.get)

    assert run(main) == "set in the task"


def test_no_async_library_in_the_thread_and_claimed_as_worker(hooked):
    from anyio._core._eventloop import current_async_library, threadlocals

    def job():
        # anyio's worker-thread state: claimed for this loop, no library.
        return (current_async_library(),
                getattr(threadlocals, "current_token", None) is not None,
                hasattr(threadlocals, "current_cancel_scope"))

    async def main():
        return await anyio.to_thread.run_sync(job)

    assert run(main) == (None, True, True)


def test_from_thread_run_inside_the_job(hooked):
    async def double(x):
        await anyio.sleep(0)
        return 2 * x

    def job():
        return anyio.from_thread.run(double, 5), anyio.from_thread.run_sync(int, "7")

    async def main():
        return await anyio.to_thread.run_sync(job)

    assert run(main) == (10, 7)


def test_stop_iteration_becomes_runtime_error_as_anyio(hooked):
    def raise_stop():
        raise StopIteration("x")

    async def main():
        with pytest.raises(RuntimeError, match="coroutine raised StopIteration") as info:
            await anyio.to_thread.run_sync(raise_stop)
        return info.value

    exc = run(main)
    assert isinstance(exc.__cause__, StopIteration)


# ------------------------------------------------------------ the limiter

@pytest.mark.parametrize("tokens", [None, 3])
def test_limiter_bounds_concurrency(hooked, tokens):
    """The default limiter (40 tokens) or a caller's own: never more calls
    in threads at once than tokens."""
    n_calls = 50
    limit = 40 if tokens is None else tokens
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    release = threading.Event()
    reached = threading.Event()

    def job():
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            if state["now"] == limit:
                reached.set()
        assert release.wait(WAIT)
        with lock:
            state["now"] -= 1

    async def main():
        limiter = None if tokens is None else anyio.CapacityLimiter(tokens)
        default = anyio.to_thread.current_default_thread_limiter()
        assert default.total_tokens == 40
        async with anyio.create_task_group() as tg:
            for _ in range(n_calls):
                tg.start_soon(lambda: anyio.to_thread.run_sync(job, limiter=limiter))
            await anyio.to_thread.run_sync(reached.wait, WAIT,
                                           limiter=anyio.CapacityLimiter(1))
            used = (limiter or default).borrowed_tokens
            waiting = (limiter or default).statistics().tasks_waiting
            release.set()
        return used, waiting

    try:
        used, waiting = run(main)
    finally:
        release.set()
    assert used == limit
    assert waiting == n_calls - limit
    assert state["peak"] == limit


def test_default_limiter_is_per_run_and_adjustable(hooked):
    async def main():
        lim = anyio.to_thread.current_default_thread_limiter()
        lim.total_tokens = 2
        names = await asyncio.gather(*(anyio.to_thread.run_sync(thread_name)
                                       for _ in range(10)))
        return lim.total_tokens, len(set(names))

    total, threads = run(main)
    assert total == 2
    assert threads <= 2


# ------------------------------------------------------------ cancellation

@pytest.mark.parametrize("abandon", [False, True], ids=["shielded", "abandon"])
def test_cancel_while_running(hooked, abandon):
    """Not abandoning: the cancellation waits for the call to end.
    Abandoning: the task is cancelled at once, the call runs on."""
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    order = []

    def job():
        started.set()
        assert release.wait(WAIT)
        order.append("thread")
        finished.set()

    async def task():
        try:
            await anyio.to_thread.run_sync(job, abandon_on_cancel=abandon)
        finally:
            order.append("task")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(task)
            await anyio.to_thread.run_sync(started.wait, WAIT,
                                           limiter=anyio.CapacityLimiter(1))
            tg.cancel_scope.cancel()
            if not abandon:
                release.set()   # the task group waits for the thread
        # Abandoning: the task group ended with the call still blocked.
        blocked = not finished.is_set()
        release.set()
        await anyio.to_thread.run_sync(finished.wait, WAIT)
        return blocked

    try:
        blocked = run(main)
    finally:
        release.set()
    assert blocked is abandon
    assert order == (["task", "thread"] if abandon else ["thread", "task"])


def test_deprecated_cancellable_still_works(hooked):
    async def main():
        with pytest.warns(DeprecationWarning):
            return await anyio.to_thread.run_sync(int, "3", cancellable=True)

    assert run(main) == 3


def test_cancelled_while_waiting_for_the_limiter_never_runs(hooked):
    ran = []
    gate = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        assert gate.wait(WAIT)

    async def main():
        limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: anyio.to_thread.run_sync(blocker, limiter=limiter))
            await anyio.to_thread.run_sync(started.wait, WAIT,
                                           limiter=anyio.CapacityLimiter(1))
            with anyio.CancelScope() as scope:
                scope.cancel()
                await anyio.to_thread.run_sync(ran.append, 1, limiter=limiter)
            gate.set()
        return scope.cancelled_caught

    try:
        assert run(main) is True
    finally:
        gate.set()
    assert ran == []


def test_check_cancelled_in_the_thread(hooked):
    """anyio.from_thread.check_cancelled sees the cancel scope anyio gives
    the call (the caller's, when not abandoning)."""
    started = threading.Event()
    seen = []

    def job():
        started.set()
        for _ in range(int(WAIT / 0.001)):
            try:
                anyio.from_thread.check_cancelled()
            except asyncio.CancelledError:     # the asyncio backend's class
                seen.append("cancelled")
                return
            threading.Event().wait(0.001)
        seen.append("never cancelled")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: anyio.to_thread.run_sync(job))
            await anyio.to_thread.run_sync(started.wait, WAIT,
                                           limiter=anyio.CapacityLimiter(1))
            tg.cancel_scope.cancel()

    run(main)
    assert seen == ["cancelled"]


def test_cancelled_call_leaves_the_worker_free(hooked):
    """Our counterpart of anyio's test_asyncio_worker_reused_after_cancelled_call
    (which reads anyio's own WorkerThread.queue): a call abandoned while it
    runs keeps its thread only while it runs; later calls reuse the run's
    threads and start none."""
    started = threading.Event()
    release = threading.Event()
    seen = set()

    def job():
        seen.add(thread_name())
        started.set()
        assert release.wait(WAIT)

    def named(fn, *args):
        seen.add(thread_name())
        return fn(*args)

    async def main():
        seen.add(await anyio.to_thread.run_sync(thread_name))
        with anyio.move_on_after(WAIT) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: anyio.to_thread.run_sync(
                    job, abandon_on_cancel=True))
                await anyio.to_thread.run_sync(named, started.wait, WAIT,
                                               limiter=anyio.CapacityLimiter(1))
                tg.cancel_scope.cancel()
        release.set()
        names = [await anyio.to_thread.run_sync(thread_name) for _ in range(20)]
        return scope.cancelled_caught, names

    try:
        timed_out, names = run(main)
    finally:
        release.set()
    assert not timed_out
    assert all(n.startswith(PREFIX) for n in seen)
    assert len(seen) <= 3
    assert set(names) <= seen


# --------------------------------------------------------- the pool's life

def test_threads_end_with_the_run(hooked):
    """As anyio's workers: the run's pool is shut down when its root task
    ends, so its threads exit."""
    threads = []

    async def main():
        threads.extend(await asyncio.gather(*(
            anyio.to_thread.run_sync(threading.current_thread)
            for _ in range(4))))

    run(main)
    assert threads
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()


def test_a_run_does_not_keep_its_loop_alive():
    """The hook keeps no loop alive that anyio itself would not keep (some
    anyio 4.x versions keep the last run's loop, anyio issue #1203)."""
    import weakref

    async def main():
        await anyio.to_thread.run_sync(int)
        return weakref.ref(asyncio.get_running_loop())

    def loop_kept():
        ref = run(main)
        gc.collect()
        return ref() is not None

    anyio_keeps_it = loop_kept()
    fastexec.install()
    try:
        assert _anyio.installed()
        assert loop_kept() is anyio_keeps_it
    finally:
        fastexec.uninstall()
    assert loop_kept() is anyio_keeps_it


def test_sequential_round_trips_keep_one_thread():
    """The pool starts no thread for a job that a worker on its way back will
    take: a sequential round trip through the fast path keeps one thread.
    (Not through submit() + asyncio.wrap_future: there a worker is on its way
    back only once the future's done callbacks ran -- one may submit to the
    pool and wait, test_pool's test_done_callback_may_wait_for_a_job_of_the_
    same_pool -- and asyncio's callback lets the GIL go in its socket send,
    so a quick loop may get another thread, as with the stdlib's pool.
    Sequential submit().result() from a thread: test_pool's
    test_idle_thread_reused.)"""
    pool = fastexec.ThreadPoolExecutor(max_workers=8)
    try:
        async def main():
            return [await pool.run(thread_name) for _ in range(40)]

        names = asyncio.run(main())
        assert len(set(names)) == 1
        assert len(pool._threads) == 1
    finally:
        pool.shutdown(wait=True)



# ---------------------------------------------- install, opt out, refusal

def test_install_anyio_false_leaves_anyio_alone():
    fastexec.install(anyio=False)
    try:
        assert not _anyio.installed()
        assert AsyncIOBackend.__dict__["run_sync_in_worker_thread"] is ORIG_METHOD

        async def main():
            return await anyio.to_thread.run_sync(thread_name)

        assert run(main) == "AnyIO worker thread"
    finally:
        fastexec.uninstall()


def test_uninstall_restores_anyio(hooked):
    async def main():
        return await anyio.to_thread.run_sync(thread_name)

    assert run(main).startswith(PREFIX)
    fastexec.install()        # twice: still one uninstall away
    fastexec.uninstall()
    assert AsyncIOBackend.__dict__["run_sync_in_worker_thread"] is ORIG_METHOD
    assert run(main) == "AnyIO worker thread"
    fastexec.install()        # the fixture's uninstall ends it


def test_unknown_anyio_version_is_refused_with_a_warning(monkeypatch):
    monkeypatch.setattr(_anyio, "_anyio_version", lambda: "5.0.0")
    with pytest.warns(RuntimeWarning, match="anyio left alone: anyio 5.0.0"):
        fastexec.install()
    try:
        assert fastexec.installed()          # the rest of install() happened
        assert not _anyio.installed()
        assert AsyncIOBackend.__dict__["run_sync_in_worker_thread"] is ORIG_METHOD
    finally:
        fastexec.uninstall()


def test_unknown_hook_shape_is_refused_with_a_warning(monkeypatch):
    async def other(cls, func, args, something_else=None):
        pass

    monkeypatch.setattr(AsyncIOBackend, "run_sync_in_worker_thread", classmethod(other))
    with pytest.warns(RuntimeWarning, match="not of the known signature"):
        fastexec.install()
    try:
        assert not _anyio.installed()
        assert AsyncIOBackend.__dict__["run_sync_in_worker_thread"].__func__ is other
    finally:
        fastexec.uninstall()


# ---------------------------------------------- anyio's own test suite

# anyio's tests that read the internals of the code the hook replaces (not a
# behaviour a caller sees); each has a counterpart above.
ANYIO_DESELECTED = {
    "tests/test_to_thread.py::test_asyncio_worker_reused_after_cancelled_call":
        "reads anyio's WorkerThread.queue; see test_cancelled_call_leaves_the_worker_free",
}
ANYIO_SUITE_FILES = ["tests/test_to_thread.py", "tests/test_from_thread.py",
                     "tests/test_fileio.py", "tests/test_synchronization.py"]


def _anyio_version():
    from importlib.metadata import version
    return version("anyio")


def _fetch_anyio_sdist(version):
    """The sdist of the installed anyio (PyPI, through pip), cached."""
    cache = os.path.join(tempfile.gettempdir(), "fastexec-anyio-sdist", version)
    os.makedirs(cache, exist_ok=True)
    found = [f for f in os.listdir(cache) if f.endswith(".tar.gz")]
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--no-binary", ":all:", "anyio==%s" % version, "-d", cache]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=300)
        found = [f for f in os.listdir(cache) if f.endswith(".tar.gz")]
        if proc.returncode != 0 or not found:
            pytest.fail("could not fetch anyio %s's sdist from PyPI (needed to run "
                        "anyio's own test suite with fastexec's hook):\n$ %s\n%s"
                        % (version, " ".join(cmd), proc.stdout[-3000:]), pytrace=False)
    return os.path.join(cache, found[0])


def _extract(sdist, dest):
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Pythons without extraction filters
            tar.extractall(dest)
    (root,) = os.listdir(dest)
    return os.path.join(dest, root)


def _nodeid(junit_name):
    """'tests.test_x.Class::test_y[p]' (junit's classname::name) -> the
    pytest node id 'tests/test_x.py::Class::test_y[p]'."""
    classname, name = junit_name.split("::", 1)
    parts = classname.split(".")
    for i, part in enumerate(parts):
        if part.startswith("test_"):
            return "::".join(["/".join(parts[:i + 1]) + ".py"] + parts[i + 1:] + [name])
    raise ValueError(junit_name)


def _run_anyio_suite(root, hook, workdir, tests=None, tag=""):
    report = os.path.join(workdir, "report-%d%s.json" % (hook, tag))
    junit = os.path.join(workdir, "junit-%d%s.xml" % (hook, tag))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in [env.get("PYTHONPATH")] if p])
    env["FASTEXEC_ANYIO_HOOK"] = "1" if hook else "0"
    env["FASTEXEC_ANYIO_REPORT"] = report
    cmd = [sys.executable, "-m", "pytest", "-p", "anyio_suite_plugin",
           "-p", "no:cacheprovider", "-q", "-k", "not trio",
           "--junitxml", junit] + (tests or ANYIO_SUITE_FILES)
    for nodeid in ANYIO_DESELECTED:
        cmd += ["--deselect", nodeid]
    proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=900)
    outcomes = {}
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = "%s::%s" % (case.get("classname"), case.get("name"))
            kinds = {child.tag for child in case}
            outcomes[name] = ("failed" if kinds & {"failure", "error"} else
                              "skipped" if "skipped" in kinds else "passed")
    info = {}
    if os.path.exists(report):
        with open(report) as f:
            info = json.load(f)
    return proc, outcomes, info


@pytest.mark.timeout(1800)
def test_anyio_own_test_suite(tmp_path):
    """anyio's own tests for threads pass with the hook as they do without."""
    for mod in ("trustme", "pytest_mock", "pytest_timeout"):
        try:
            __import__(mod)
        except ImportError:
            pytest.fail("anyio's test suite needs %s (in fastexec's `test` extra)"
                        % mod, pytrace=False)
    version = _anyio_version()
    root = _extract(_fetch_anyio_sdist(version), str(tmp_path / "src"))
    base_proc, base, base_info = _run_anyio_suite(root, False, str(tmp_path))
    hook_proc, hooked_, hook_info = _run_anyio_suite(root, True, str(tmp_path))
    tail = "\n--- with the hook:\n" + hook_proc.stdout[-6000:]
    assert base, "the baseline run reported no test:\n" + base_proc.stdout[-6000:]
    assert base_info == {"hooked": False, "installed": False, "calls": 0}, base_info
    assert hook_info.get("hooked") and hook_info.get("installed"), hook_info
    lost = sorted(t for t, o in base.items()
                  if o == "passed" and hooked_.get(t) != "passed")
    failed = sorted(t for t, o in hooked_.items() if o == "failed")
    if lost or failed:
        # A few of anyio's tests count the process's threads, which is timing:
        # a worker thread of the run before (anyio's own as well as ours)
        # exits asynchronously after its run ends.  Such a test is re-run once,
        # alone, with the hook; it must pass then.
        again = sorted(set(lost) | set(failed))
        proc2, rerun, _ = _run_anyio_suite(root, True, str(tmp_path),
                                           [_nodeid(t) for t in again], "-rerun")
        still = [t for t in again if rerun.get(t) != "passed"]
        print("anyio tests re-run once with the hook: %s; still failing: %s"
              % (again, still))
        assert not still, "anyio %s: with the hook, fail twice: %s%s\n--- re-run:\n%s" % (
            version, still, tail, proc2.stdout[-6000:])
    else:
        assert hook_proc.returncode == 0, tail
    passed = sum(1 for o in hooked_.values() if o == "passed")
    # The suite did go through the hook, many times.
    assert hook_info["calls"] > 100, hook_info
    assert passed >= 0.9 * sum(1 for o in base.values() if o == "passed")
    assert passed > 200, (passed, tail)
