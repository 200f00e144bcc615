"""Process-level behaviour of the pool, each case in a fresh interpreter.

Interpreter exit with work pending, a pool dropped without shutdown, submit
after interpreter shutdown has started, and os.fork() with a live pool.  Each
test runs ``sys.executable -c CODE`` with a timeout; CODE starts with a
prelude that imports the implementation under test as ``Pool`` and arms
faulthandler, so a hang in the child prints every thread's stack and exits
instead of stalling the suite.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import pool_class

# Seconds a child may run before faulthandler dumps its stacks and kills it,
# and the (larger) limit subprocess.run enforces on top of that.
CHILD_WATCHDOG = 20
RUN_TIMEOUT = 40
# A forked child's watchdog, and how long its parent waits for it.
FORK_CHILD_WATCHDOG = 9
WAIT_CHILD = 12

IMPORTS = {
    "stdlib": "from concurrent.futures import ThreadPoolExecutor as Pool",
    "fastexec": "from fastexec import ThreadPoolExecutor as Pool",
}

PRELUDE = """\
import faulthandler, os, sys, threading, time
{watchdog}
{import_pool}
"""

# The watchdogs.  faulthandler's own (a thread) for most tests.  Tests that
# fork use SIGALRM instead, which needs no thread: a thread that is exiting
# while another forks (faulthandler's, after cancel_dump_traceback_later())
# can leave the child with a lock of the C allocator held, and the child
# hangs on it (seen with AddressSanitizer's allocator); and an armed
# faulthandler watchdog is inherited by the child without its thread, so the
# child's finalization waits for that thread forever.  Alarms are not
# inherited: the child arms its own.
THREAD_WATCHDOG = "faulthandler.dump_traceback_later({seconds}, exit=True)"
ALARM_WATCHDOG = """\
import signal
faulthandler.register(signal.SIGALRM, all_threads=True, chain=True)
signal.alarm({seconds})"""

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def run_python(impl, code, prelude=True, helpers="", timeout=RUN_TIMEOUT):
    pool_class(impl)    # fail early (in this process) if it can't import
    body = helpers + textwrap.dedent(code)
    if prelude:
        watchdog = ALARM_WATCHDOG if helpers is FORK_HELPERS else THREAD_WATCHDOG
        body = PRELUDE.format(watchdog=watchdog.format(seconds=CHILD_WATCHDOG),
                              import_pool=IMPORTS[impl]) + body
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-c", body],
                          capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=os.path.dirname(os.path.abspath(__file__)))
    return proc


def assert_clean(proc, rc=0):
    detail = "rc=%s\n--- stdout\n%s\n--- stderr\n%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == rc, detail
    assert "Fatal Python error" not in proc.stderr, detail
    assert "Traceback" not in proc.stderr, detail
    assert "Timeout (" not in proc.stderr, detail        # faulthandler


# ---------------------------------------------------------------------------
# Interpreter exit
# ---------------------------------------------------------------------------

def test_exit_runs_pending_work(impl):
    # A pool never shut down, with a job running and five queued when the
    # main thread ends: the interpreter waits for all of them.  The gate is
    # opened by a threading-atexit hook registered after the pool's own, so
    # it runs before the pool's (they run last-registered first): the work is
    # still pending when exit begins.
    proc = run_python(impl, """
        pool = Pool(1)
        gate = threading.Event()
        def first():
            gate.wait()
            print("first", flush=True)
        pool.submit(first)
        for i in range(5):
            pool.submit(print, "job", i, flush=True)
        threading._register_atexit(gate.set)
        print("main done", flush=True)
    """)
    assert_clean(proc)
    assert proc.stdout.split("\n") == [
        "main done", "first", "job 0", "job 1", "job 2", "job 3", "job 4", ""]


def test_exit_runs_many_pending_jobs(impl):
    proc = run_python(impl, """
        pool = Pool(4)
        lock = threading.Lock()
        count = [0]
        def job(i):
            with lock:
                count[0] += 1
                if count[0] == 300:
                    print("all ran", flush=True)
        for i in range(300):
            pool.submit(job, i)
    """)
    assert_clean(proc)
    assert proc.stdout == "all ran\n"


def test_exit_with_idle_pool(impl):
    proc = run_python(impl, """
        pool = Pool(3)
        assert [f.result(5) for f in [pool.submit(abs, -i) for i in range(9)]] \\
            == list(range(9))
        print("ok", flush=True)
    """)
    assert_clean(proc)
    assert proc.stdout == "ok\n"


def test_exit_from_pool_thread_job_submitting_more(impl):
    # Work that submits more work while the interpreter exits: the job
    # submitted before interpreter shutdown ran.
    proc = run_python(impl, """
        pool = Pool(2)
        def chain(n):
            print("step", n, flush=True)
            if n < 3:
                pool.submit(chain, n + 1)
        pool.submit(chain, 0).result(5)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "Fatal Python error" not in proc.stderr
    assert proc.stdout.startswith("step 0\n")


# ---------------------------------------------------------------------------
# A pool dropped without shutdown
# ---------------------------------------------------------------------------

def test_dropped_pool_threads_exit(impl):
    proc = run_python(impl, """
        import gc, weakref
        pool = Pool(4)
        gate = threading.Event()
        started = threading.Semaphore(0)
        def block():
            started.release()
            gate.wait(10)
        fs = [pool.submit(block) for _ in range(4)]
        for _ in range(4):
            assert started.acquire(timeout=10)
        gate.set()
        for f in fs:
            f.result(10)
        print("threads", threading.active_count(), flush=True)
        ref = weakref.ref(pool)
        del pool, fs, f
        deadline = time.monotonic() + 10
        while threading.active_count() > 1 and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        print("after", threading.active_count(), flush=True)
        print("collected", ref() is None, flush=True)
    """)
    assert_clean(proc)
    assert proc.stdout.split("\n") == [
        "threads 5", "after 1", "collected True", ""]


# ---------------------------------------------------------------------------
# Submit after interpreter shutdown has started
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hook", ["threading_atexit", "atexit"])
def test_submit_after_interpreter_shutdown(impl, hook):
    # Like CPython's test_submit_after_interpreter_shutdown.  The hook is
    # registered *before* the pool module is imported: threading's atexit
    # hooks run last-registered first, so ours runs after the pool's; plain
    # atexit hooks run after all of threading's.
    register = ("threading._register_atexit" if hook == "threading_atexit"
                else "atexit.register")
    code = """\
        import atexit, faulthandler, sys, threading
        faulthandler.dump_traceback_later({watchdog}, exit=True)
        def run_last():
            try:
                t.submit(id, None)
            except RuntimeError as exc:
                print("runtime-error:", exc, flush=True)
            else:
                print("no error", flush=True)
        {register}(run_last)
        {import_pool}
        t = Pool(5)
        assert t.submit(id, 42).result(5) == id(42)
    """.format(watchdog=CHILD_WATCHDOG, register=register,
               import_pool=IMPORTS[impl])
    proc = run_python(impl, code, prelude=False)
    assert_clean(proc)
    if impl == "stdlib":
        # The stdlib's exit hook wakes the workers, and a worker that sees
        # the interpreter exiting also marks its executor shut down, so a
        # pool that has threads reports the plain shutdown message (CPython's
        # own test only matches the common prefix).
        assert proc.stdout == ("runtime-error: cannot schedule new futures "
                               "after shutdown\n")
    else:
        assert proc.stdout == ("runtime-error: cannot schedule new futures "
                               "after interpreter shutdown\n")


def test_submit_after_interpreter_shutdown_unused_pool(impl):
    code = """\
        import faulthandler, threading
        faulthandler.dump_traceback_later({watchdog}, exit=True)
        def run_last():
            try:
                t.submit(print, "must not run")
            except RuntimeError as exc:
                print("runtime-error:", exc, flush=True)
        threading._register_atexit(run_last)
        {import_pool}
        t = Pool(2)
    """.format(watchdog=CHILD_WATCHDOG, import_pool=IMPORTS[impl])
    proc = run_python(impl, code, prelude=False)
    assert_clean(proc)
    assert proc.stdout == ("runtime-error: cannot schedule new futures after "
                           "interpreter shutdown\n")


# ---------------------------------------------------------------------------
# os.fork()
# ---------------------------------------------------------------------------

# The process's watchdog is an alarm (see ALARM_WATCHDOG); fork() arms the
# child's own, shorter than wait_child's deadline, so that a hung child
# prints its stacks (to the captured stderr) before the parent kills it.
FORK_HELPERS = """
import signal, traceback
def fork():
    pid = os.fork()
    if pid == 0:
        signal.alarm(%d)
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
""" % (FORK_CHILD_WATCHDOG, WAIT_CHILD)


@needs_fork
def test_fork_with_unused_pool(impl):
    # A pool created but not used before the fork: the child can use it (the
    # stdlib handles this case too).
    proc = run_python(impl, """
        pool = Pool(2)
        pid = fork()
        if pid == 0:
            try:
                ok = pool.submit(os.getpid).result(5) == os.getpid()
                ok = ok and list(pool.map(abs, [-1, -2], timeout=5)) == [1, 2]
                pool.shutdown(wait=True)
                os._exit(0 if ok else 3)
            except BaseException:
                traceback.print_exc()
                os._exit(4)
        print("child", wait_child(pid), flush=True)
        print("parent", pool.submit(os.getpid).result(5) == os.getpid(),
              flush=True)
    """, helpers=FORK_HELPERS)
    assert_clean(proc)
    assert proc.stdout.split("\n") == ["child 0", "parent True", ""]


@needs_fork
@pytest.mark.parametrize("child_exit", ["os._exit", "normal exit"])
def test_fork_after_pool_used(fast_impl, child_exit):
    # fastexec only: the stdlib's idle workers don't exist in the child and
    # it never starts new ones (its submit hangs there).  The child gets
    # fresh workers; the parent's pool is unaffected.
    if child_exit == "os._exit":
        child_end = "os._exit(0 if ok else 3)"
    else:
        child_end = "sys.exit(0 if ok else 3)"
    proc = run_python(fast_impl, """
        pool = Pool(3)
        fs = [pool.submit(os.getpid) for _ in range(6)]
        assert all(f.result(5) == os.getpid() for f in fs)
        parent_threads = set(pool._threads)
        n_parent = len(parent_threads)
        pid = fork()
        if pid == 0:
            try:
                me = os.getpid()
                ok = pool.submit(os.getpid).result(5) == me
                ok = ok and [f.result(5) for f in
                             [pool.submit(abs, -i) for i in range(20)]] \\
                    == list(range(20))
                ok = ok and list(pool.map(abs, [-1, -2, -3], timeout=5)) \\
                    == [1, 2, 3]
                thread = pool.submit(threading.current_thread).result(5)
                ok = ok and thread.is_alive() and thread in pool._threads
                ok = ok and thread not in parent_threads
                ok = ok and 1 <= len(pool._threads) <= 3
                print("child ok" if ok else "child BAD", flush=True)
            except BaseException:
                traceback.print_exc()
                os._exit(4)
            CHILD_END
        else:
            print("child", wait_child(pid), flush=True)
            ok = pool.submit(os.getpid).result(5) == os.getpid()
            ok = ok and set(pool._threads) == parent_threads
            ok = ok and all(t.is_alive() for t in parent_threads)
            ok = ok and [f.result(5) for f in
                         [pool.submit(abs, -i) for i in range(20)]] \\
                == list(range(20))
            print("parent", ok, flush=True)
            pool.shutdown(wait=True)
    """.replace("CHILD_END", child_end), helpers=FORK_HELPERS)
    assert_clean(proc)
    lines = proc.stdout.split("\n")
    assert "child ok" in lines, proc.stdout + proc.stderr
    assert "child 0" in lines, proc.stdout + proc.stderr
    assert "parent True" in lines, proc.stdout + proc.stderr


@needs_fork
def test_fork_while_job_running(fast_impl):
    # fastexec only: fork while a worker is busy in the parent.  The child
    # can still run work; the parent's running job completes.
    proc = run_python(fast_impl, """
        pool = Pool(2)
        gate = threading.Event()
        started = threading.Event()
        def block():
            started.set()
            gate.wait(10)
            return "parent job done"
        running = pool.submit(block)
        assert started.wait(10)
        pid = fork()
        if pid == 0:
            try:
                ok = pool.submit(os.getpid).result(5) == os.getpid()
                ok = ok and list(pool.map(abs, [-4, -5], timeout=5)) == [4, 5]
                os._exit(0 if ok else 3)
            except BaseException:
                traceback.print_exc()
                os._exit(4)
        print("child", wait_child(pid), flush=True)
        gate.set()
        print(running.result(10), flush=True)
        print("parent", pool.submit(os.getpid).result(5) == os.getpid(),
              flush=True)
        pool.shutdown(wait=True)
    """, helpers=FORK_HELPERS)
    assert_clean(proc)
    assert proc.stdout.split("\n") == [
        "child 0", "parent job done", "parent True", ""]


@needs_fork
def test_fork_right_after_a_job_completes(fast_impl):
    # fastexec only: fork at once after a result came back, when the worker
    # that produced it has not gone to sleep yet (it may be spinning for the
    # next job).  The child must still get fresh workers for its submits.
    # Several rounds, each in a new pool, because the window is short.
    proc = run_python(fast_impl, """
        import concurrent.futures as cf
        bad = []
        for trial in range(10):
            pool = Pool(2)
            for _ in range(50):
                pool.submit(id, 1).result(5)
            pool.submit(id, 1).result(5)
            pid = fork()
            if pid == 0:
                try:
                    ok = pool.submit(os.getpid).result(2) == os.getpid()
                    os._exit(0 if ok else 3)
                except cf.TimeoutError:
                    print("child hung, stats:", pool.stats(), flush=True)
                    os._exit(7)
                except BaseException:
                    traceback.print_exc()
                    os._exit(4)
            rc = wait_child(pid)
            pool.shutdown(wait=True)
            if rc != 0:
                bad.append(rc)
                if len(bad) == 2:
                    break       # enough to show it; keep the test short
        print("bad", bad, flush=True)
    """, helpers=FORK_HELPERS)
    assert_clean(proc)
    assert proc.stdout.split("\n")[-2:] == ["bad []", ""], proc.stdout


@needs_fork
def test_fork_inherited_work_ends_in_the_child(fast_impl):
    # fastexec only: the work queued or running at fork time is the parent's.
    # The child never runs it; the child's copies of futures nothing was
    # waiting on are settled at once (queued: cancelled; running: fails with
    # RuntimeError naming fork), so nothing runs twice and the child's pool
    # serves new work.  The parent runs all of it.
    proc = run_python(fast_impl, """
        pool = Pool(1)
        gate = threading.Event()
        started = threading.Event()
        ran_in = []
        def block():
            started.set()
            gate.wait(10)
            return "parent ran it"
        def record():
            ran_in.append(os.getpid())
            return os.getpid()
        running = pool.submit(block)
        assert started.wait(10)
        queued = pool.submit(record)
        mapped = pool.map(abs, [-1, -2])
        pid = fork()
        if pid == 0:
            try:
                ok = queued.cancelled()
                try:
                    running.result(5)
                    ok = False
                except RuntimeError as e:
                    ok = ok and "fork" in str(e)
                ok = ok and pool.submit(record).result(5) == os.getpid()
                ok = ok and ran_in == [os.getpid()]
                os._exit(0 if ok else 3)
            except BaseException:
                traceback.print_exc()
                os._exit(4)
        print("child", wait_child(pid), flush=True)
        gate.set()
        print(running.result(10), flush=True)
        print("parent", queued.result(10) == os.getpid(), list(mapped),
              ran_in == [os.getpid()], flush=True)
        pool.shutdown(wait=True)
    """, helpers=FORK_HELPERS)
    assert_clean(proc)
    assert proc.stdout.split("\n") == [
        "child 0", "parent ran it", "parent True [1, 2] True", ""]


@needs_fork
def test_fork_from_inside_a_job(impl):
    # A job that calls os.fork(): in the child, the forking worker is the
    # one thread left, still running that job.  The job returns there, its
    # future is settled, and that worker keeps serving the child's pool (as
    # the stdlib's does).  The parent is unaffected.
    proc = run_python(impl, """
        pool = Pool(1)
        box = {}
        ready = threading.Event()
        def job():
            ready.wait(5)
            pid = fork()
            if pid == 0:
                me = threading.current_thread()
                def check():
                    try:
                        ok = box["f"].result(5) == "child"
                        ok = ok and pool.submit(threading.current_thread
                                                ).result(5) is me
                        ok = ok and pool.submit(abs, -3).result(5) == 3
                        ok = ok and me in pool._threads
                        os._exit(0 if ok else 3)
                    except BaseException:
                        traceback.print_exc()
                        os._exit(4)
                threading.Thread(target=check).start()
                return "child"
            return pid
        box["f"] = pool.submit(job)
        ready.set()
        pid = box["f"].result(5)
        print("child", wait_child(pid), flush=True)
        print("parent", pool.submit(abs, -4).result(5), flush=True)
        pool.shutdown(wait=True)
    """, helpers=FORK_HELPERS)
    assert_clean(proc)
    assert proc.stdout.split("\n") == ["child 0", "parent 4", ""], proc.stdout


@needs_fork
def test_fork_from_a_finalizer_after_a_job(fast_impl):
    # fastexec only (stats): a job's argument whose __del__ forks, run on
    # the worker as the job is released, after its outcome was delivered
    # and before the worker came back for more.  In the child that worker
    # finishes, and the counts end right: nothing running, one idle thread.
    proc = run_python(fast_impl, """
        pool = Pool(2)
        reported = threading.Event()
        codes = []
        class ForkOnDel:
            def __del__(self):
                pid = fork()
                if pid == 0:
                    def check():
                        deadline = time.monotonic() + 5
                        while pool.stats()["idle"] != 1:
                            if time.monotonic() > deadline:
                                break
                            time.sleep(0.005)
                        s = pool.stats()
                        ok = s["running"] == 0 and s["threads"] == 1
                        if not ok:
                            print("child stats", s, flush=True)
                        os._exit(0 if ok else 3)
                    threading.Thread(target=check).start()
                    return
                codes.append(wait_child(pid))
                reported.set()
        gate = threading.Event()
        # The job holds the last reference once the caller let go (gate).
        f = pool.submit(lambda arg: gate.wait(5), ForkOnDel())
        gate.set()
        assert f.result(5)
        assert reported.wait(15)
        print("child", codes[0], flush=True)
        pool.shutdown(wait=True)
    """, helpers=FORK_HELPERS)
    assert_clean(proc)
    assert proc.stdout.split("\n") == ["child 0", ""], proc.stdout
