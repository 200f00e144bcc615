"""Helpers shared by the test modules (not a test module itself).

* ``WAIT``: how long a test waits for something that should happen at once.
* ``wait_until(predicate)``: poll for state no event announces.
* ``rss_bytes()``: the resident set size, from /proc/self/statm.
* ``LeakProbe``: warm-up, then N calls, then compare RSS, tracemalloc's
  current traced memory and the refcounts of the objects involved.
* ``quiesce(pool)``: return once every worker is done with its last job.
* ``run_python(code)``: run ``sys.executable -c code`` with a faulthandler
  watchdog (a hang in the child dumps every thread's stack and exits instead
  of stalling the suite) and return the CompletedProcess;
  ``assert_clean_exit(proc)`` checks it; ``POOL_IMPORTS`` and
  ``FORK_HELPERS`` are code for such scripts; ``needs_fork`` marks the tests
  that fork.
"""

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

# How long a test waits for something that should happen at once.  Generous
# (the machine may be shared and loaded), but bounded, so that a bug shows as
# a failure and not as a hang.
WAIT = 30.0


def wait_until(predicate, timeout=WAIT, interval=0.005):
    """Poll ``predicate`` (for state no Event announces, such as a pool's
    counters, updated when a worker comes back for more work just after the
    outcome was delivered); True if it held within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)

# Tolerances for the leak tests (see test_leaks.py's docstring for the
# figures they were calibrated against).
RSS_TOLERANCE = 2 * 1024 * 1024
TRACEMALLOC_TOLERANCE = 256 * 1024


def quiesce(pool, timeout=WAIT):
    """Return once every worker of `pool` has finished with the jobs it ran
    before: one job per worker waits on a Barrier, so each worker must have
    taken a new job, i.e. released the previous one (a worker completes a
    job's future *before* it drops its references to fn and args, as the
    stdlib does, so a refcount read right after result() could race)."""
    n = len(pool._threads)
    if n == 0:
        return
    barrier = threading.Barrier(n + 1, timeout=timeout)
    futs = [pool.submit(barrier.wait) for _ in range(n)]
    barrier.wait()
    for f in futs:
        f.result(timeout)


# Set by tools/run_all.py for its AddressSanitizer + UBSan run.
SANITIZED = bool(os.environ.get("FASTEXEC_SANITIZED"))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LeakProbe:
    """Measure one call path for leaks.

    ``drive(n)`` must make n calls through the path and wait for all of
    them.  ``watch`` are the objects whose refcounts must come back (the
    function, its arguments, its result...).  ``run()`` does:

    1. RSS phase, tracemalloc off (tracemalloc's own tables move RSS by
       several MB): drive(warm); collect; note RSS and refcounts;
       drive(n); collect; note RSS and refcounts again.
    2. tracemalloc phase: start tracemalloc; drive(warm); collect; note the
       traced memory; drive(n); collect; note again; stop.

    and returns a dict of figures; ``check()`` asserts them.
    """

    def __init__(self, name, drive, n, warm, watch=()):
        self.name = name
        self.drive = drive
        self.n = n
        self.warm = warm
        self.watch = list(watch)

    def _refs(self):
        return [sys.getrefcount(o) for o in self.watch]

    def run(self, tracemalloc_n=None, tracemalloc_warm=None):
        was_tracing = tracemalloc.is_tracing()
        if was_tracing:
            tracemalloc.stop()
        self.drive(self.warm)
        gc.collect()
        refs0 = self._refs()
        rss0 = rss_bytes()
        # Four blocks, RSS noted after each, so that a failure shows whether
        # the growth is a trend (a leak) or a step (the allocator).
        steps = []
        done = 0
        for i in range(4):
            k = (self.n - done) // (4 - i)
            self.drive(k)
            done += k
            gc.collect()
            steps.append(rss_bytes() - rss0)
        rss1 = rss0 + steps[-1]
        refs1 = self._refs()

        tn = self.n if tracemalloc_n is None else tracemalloc_n
        tw = self.warm if tracemalloc_warm is None else tracemalloc_warm
        tracemalloc.start(1)
        try:
            self.drive(tw)
            gc.collect()
            tm0 = tracemalloc.get_traced_memory()[0]
            self.drive(tn)
            gc.collect()
            tm1 = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            if was_tracing:
                tracemalloc.start()
        refs2 = self._refs()
        self.figures = dict(name=self.name, n=self.n, tracemalloc_n=tn,
                            rss_delta=rss1 - rss0, tm_delta=tm1 - tm0,
                            rss_steps=[s // 1024 for s in steps],
                            refs_before=refs0, refs_after=refs1,
                            refs_end=refs2)
        return self.figures

    def describe(self):
        f = self.figures
        return ("%(name)s: %(n)d calls: RSS %(rss_delta)+d bytes; "
                "(KB after each quarter: %(rss_steps)s); "
                "%(tracemalloc_n)d calls under tracemalloc: traced memory "
                "%(tm_delta)+d bytes; refcounts %(refs_before)s -> "
                "%(refs_after)s -> %(refs_end)s" % f)

    def check(self, rss_tol=RSS_TOLERANCE, tm_tol=TRACEMALLOC_TOLERANCE,
              reference=""):
        f = self.figures
        msg = self.describe() + (" [" + reference + "]" if reference else "")
        assert f["refs_after"] == f["refs_before"], "refcounts moved: " + msg
        assert f["refs_end"] == f["refs_before"], "refcounts moved: " + msg
        # Under AddressSanitizer freed memory goes to its quarantine (256 MB)
        # instead of being reused, so RSS measures the quarantine there, not
        # leaks: the RSS bound holds for normal builds only (tools/run_all.py
        # runs every Python with one).  Refcounts and tracemalloc still count.
        if not SANITIZED:
            assert f["rss_delta"] < rss_tol, "RSS grew: " + msg
        assert f["tm_delta"] < tm_tol, "traced memory grew: " + msg


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")

# The first line of a script that uses ``Pool`` (run_python's code).
POOL_IMPORTS = {
    "stdlib": "from concurrent.futures import ThreadPoolExecutor as Pool\n",
    "fastexec": "from fastexec import ThreadPoolExecutor as Pool\n",
}

# A forked child's watchdog, and how long its parent waits for it.
FORK_CHILD_WATCHDOG = 9
WAIT_CHILD = 12

# Code for scripts that fork, run with run_python(..., watchdog_kind="alarm").
# fork() arms the child's own alarm (an alarm is not inherited), by default
# shorter than wait_child's deadline, so that a hung child prints its stacks
# (to the captured stderr) before the parent kills it.  gather_run(pool, n,
# tag) runs n jobs through the pool's asyncio entry (pool.run for fastexec,
# run_in_executor for the stdlib pool).
FORK_HELPERS = """
import asyncio, signal, traceback
def fork(alarm=%d):
    pid = os.fork()
    if pid == 0:
        signal.alarm(alarm)
    return pid
def wait_child(pid, timeout=%d):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"
async def gather_run(pool, n, tag):
    loop = asyncio.get_running_loop()
    if hasattr(pool, "run"):
        futs = [pool.run(lambda i=i: (tag, os.getpid(), i)) for i in range(n)]
    else:
        futs = [loop.run_in_executor(pool, lambda i=i: (tag, os.getpid(), i))
                for i in range(n)]
    return await asyncio.gather(*futs)
""" % (FORK_CHILD_WATCHDOG, WAIT_CHILD)

PRELUDE = """\
import faulthandler, os, sys, threading, time
faulthandler.enable()
{watchdog}
"""

# The watchdogs: faulthandler's own (a thread), or, for code that forks, an
# alarm, which needs no thread.  A thread exiting while another forks
# (faulthandler's, once cancelled around the fork) can leave the child with
# a lock of the C allocator held, and an armed faulthandler watchdog is
# inherited without its thread (the child's finalization then waits for it
# forever).  An alarm is not inherited: a child calls signal.alarm() itself.
WATCHDOGS = {
    "thread": "faulthandler.dump_traceback_later({seconds}, exit=True)",
    "alarm": ("import signal\n"
              "faulthandler.register(signal.SIGALRM, all_threads=True, "
              "chain=True)\n"
              "signal.alarm({seconds})"),
}


def run_python(code, timeout=40, watchdog=25, python=None, env=None,
               prelude=True, watchdog_kind="thread"):
    """Run code in a fresh interpreter; returns a CompletedProcess.

    If the child outlives `timeout`, it gets SIGABRT, which faulthandler
    (enabled by the prelude) turns into a dump of every thread's stack; the
    result then has ``timed_out = True``.
    """
    body = textwrap.dedent(code)
    if prelude:
        body = PRELUDE.format(watchdog=WATCHDOGS[watchdog_kind].format(
            seconds=watchdog)) + body
    full_env = dict(os.environ)
    full_env.pop("PYTHONWARNINGS", None)
    full_env.update(env or {})
    args = [python or sys.executable, "-c", body]
    # A session of its own, so that on a hang the whole process group
    # (forked children included, which would keep the pipes open) is hit.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env,
                            cwd=HERE, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _killpg(proc.pid, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
        err = ("[test harness: no exit after %ss: sent SIGABRT to the "
               "process group]\n" % timeout + err)
    finally:
        # Forked children left behind by a failed test.
        _killpg(proc.pid, signal.SIGKILL)
    result = subprocess.CompletedProcess(args, proc.returncode, out, err)
    result.timed_out = timed_out
    return result


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def detail(proc):
    return "rc=%s\n--- stdout\n%s\n--- stderr\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)


def assert_clean_exit(proc, rc=0):
    d = detail(proc)
    assert not getattr(proc, "timed_out", False), d
    assert proc.returncode == rc, d
    assert "Fatal Python error" not in proc.stderr, d
    assert "Traceback" not in proc.stderr, d
    assert "Timeout (" not in proc.stderr, d        # faulthandler watchdog
    assert "Exception ignored" not in proc.stderr, d
