"""Process-level behaviour, each case in a fresh interpreter.

Interpreter exit with work pending (the pool's and the asyncio path's), a
pool dropped without shutdown, submit after interpreter shutdown has started,
Ctrl-C, os.fork() with a live pool (every fork test is here), subinterpreters
and free-threaded builds.  Each test runs ``sys.executable -c CODE`` through
``support.run_python``, with a faulthandler watchdog (an alarm for the tests
that fork), so a crash or a hang is a failure with every thread's stack,
never a dead pytest.  Where the stdlib shares the behaviour, the script runs
on both implementations (``Pool`` is the one under test).
"""

import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time

import pytest

from conftest import pool_class
from support import FORK_HELPERS, POOL_IMPORTS, assert_clean_exit, detail, needs_fork, run_python

pytestmark = pytest.mark.timeout(60)

# The watchdog of a script that arms its own (no prelude).
CHILD_WATCHDOG = 20


def run_pool_script(impl, code, fork=False):
    """Run ``code`` (dedented) in a fresh interpreter, after a line that
    imports implementation ``impl`` as ``Pool`` (and FORK_HELPERS if
    ``fork``, with the alarm watchdog such scripts need)."""
    pool_class(impl)    # fail early (in this process) if it can't import
    body = POOL_IMPORTS[impl] + (FORK_HELPERS if fork else "")
    return run_python(body + textwrap.dedent(code),
                      watchdog_kind="alarm" if fork else "thread")


# ---------------------------------------------------------------------------
# Interpreter exit
# ---------------------------------------------------------------------------

def test_exit_runs_pending_work(impl):
    # A pool never shut down, with a job running and five queued when the
    # main thread ends: the interpreter waits for all of them.  The gate is
    # opened by a threading-atexit hook registered after the pool's own, so
    # it runs before the pool's (they run last-registered first): the work is
    # still pending when exit begins.
    proc = run_pool_script(impl, """
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
    assert_clean_exit(proc)
    assert proc.stdout.split("\n") == [
        "main done", "first", "job 0", "job 1", "job 2", "job 3", "job 4", ""]


def test_exit_runs_many_pending_jobs(impl):
    proc = run_pool_script(impl, """
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
    assert_clean_exit(proc)
    assert proc.stdout == "all ran\n"


def test_exit_with_idle_pool(impl):
    proc = run_pool_script(impl, """
        pool = Pool(3)
        assert [f.result(5) for f in [pool.submit(abs, -i) for i in range(9)]] \\
            == list(range(9))
        print("ok", flush=True)
    """)
    assert_clean_exit(proc)
    assert proc.stdout == "ok\n"


def test_exit_from_pool_thread_job_submitting_more(impl):
    # Work that submits more work while the interpreter exits: the job
    # submitted before interpreter shutdown ran.
    proc = run_pool_script(impl, """
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
    proc = run_pool_script(impl, """
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
    assert_clean_exit(proc)
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
               import_pool=POOL_IMPORTS[impl].strip())
    pool_class(impl)
    proc = run_python(code, prelude=False)
    assert_clean_exit(proc)
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
    """.format(watchdog=CHILD_WATCHDOG, import_pool=POOL_IMPORTS[impl].strip())
    pool_class(impl)
    proc = run_python(code, prelude=False)
    assert_clean_exit(proc)
    assert proc.stdout == ("runtime-error: cannot schedule new futures after "
                           "interpreter shutdown\n")


# ---------------------------------------------------------------------------
# Exit with pools never shut down and the asyncio path in flight
# ---------------------------------------------------------------------------

def test_exit_with_pending_work_pool_never_shut_down(impl):
    # Two pools never shut down, 400 queued jobs when the main thread ends:
    # all run before the interpreter goes (the atexit hook runs after the
    # pools' threads are joined), exit code 0, clean stderr.
    proc = run_python(POOL_IMPORTS[impl] + """
import atexit
lock = threading.Lock()
ran = []
def job(i):
    time.sleep(0.0005)
    with lock:
        ran.append(i)
atexit.register(lambda: print("ran", len(ran), sorted(ran) == list(range(400)),
                              flush=True))
p1, p2 = Pool(2), Pool(3)
for i in range(400):
    (p1 if i % 2 else p2).submit(job, i)
print("main done", flush=True)
""")
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["main done", "ran 400 True"], detail(proc)


def test_exit_with_fast_path_in_flight():
    # asyncio.run() ends while pool.run jobs are queued and running on a
    # non-default pool that is never shut down:
    # * fire-and-forget futures (nobody awaits them) still run their jobs at
    #   exit;
    # * jobs that raise, held behind a gate that only a threading-atexit hook
    #   opens (it runs before the pool's, registered earlier), finish after
    #   the loop is closed: their outcomes are dropped quietly, no 'Event
    #   loop is closed', no 'exception was never retrieved';
    # * the futures awaited by tasks that asyncio.run cancels are cancelled,
    #   and their jobs (queued behind the gate) never run.
    # Exit code 0, clean stderr.
    proc = run_python("""
import asyncio, atexit, fastexec
pool = fastexec.ThreadPoolExecutor(2)
lock = threading.Lock()
ran = []
gate = threading.Event()
def job(i):
    time.sleep(0.001)
    with lock:
        ran.append(i)
    return i
def gated_failure():
    gate.wait(10)
    return int("x")
async def waiter(i):
    return await pool.run(job, i)
async def main():
    fire = [pool.run(job, i) for i in range(200)]
    raised = [pool.run(gated_failure) for _ in range(2)]   # never read
    tasks = [asyncio.ensure_future(waiter(1000 + i)) for i in range(100)]
    await fire[0]
    print("leaving", flush=True)
def report():
    fire = sorted(i for i in ran if i < 1000)
    print("fire-and-forget ran", fire == list(range(200)), flush=True)
    print("cancelled ran", [i for i in ran if i >= 1000], flush=True)
atexit.register(report)
threading._register_atexit(gate.set)
asyncio.run(main())
print("main done", flush=True)
""")
    assert_clean_exit(proc)
    assert "Event loop is closed" not in proc.stderr, detail(proc)
    assert "never retrieved" not in proc.stderr, detail(proc)
    assert proc.stdout.splitlines() == [
        "leaving", "main done", "fire-and-forget ran True",
        "cancelled ran []"], detail(proc)


def test_exit_with_fast_path_in_flight_loop_never_closed():
    # The same with a loop that is stopped but never closed (its outcomes
    # are scheduled with call_soon_threadsafe and never run).
    proc = run_python("""
import asyncio, atexit, fastexec
pool = fastexec.ThreadPoolExecutor(2)
lock = threading.Lock()
ran = []
def job(i):
    time.sleep(0.001)
    with lock:
        ran.append(i)
    return i
loop = asyncio.new_event_loop()
async def main():
    futs = [pool.run(job, i) for i in range(200)]
    await futs[0]
    return futs
futs = loop.run_until_complete(main())
atexit.register(lambda: print("ran", sorted(ran) == list(range(200)), flush=True))
print("main done", flush=True)
""")
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["main done", "ran True"], detail(proc)


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------

SIGINT_ASYNC = """
import asyncio
def ready():
    print("ready", flush=True)
pool = Pool(4)
async def main():
    loop = asyncio.get_running_loop()
    if hasattr(pool, "run"):
        futs = [pool.run(time.sleep, 0.05) for _ in range(2000)]
    else:
        futs = [loop.run_in_executor(pool, time.sleep, 0.05) for _ in range(2000)]
    loop.call_soon(ready)
    await asyncio.gather(*futs)
    print("all done?!", flush=True)
asyncio.run(main())
"""

# The map iterator is closed on the way out: an iterator left open holds its
# calls (the stdlib's generator too), so the exit would wait for all of them.
# 'ready' is printed once iteration has begun: an iterator closed before its
# first item cancels nothing (the stdlib's unstarted generator neither).
SIGINT_MAP = """
pool = Pool(4)
it = pool.map(time.sleep, [0.05] * 2000)
try:
    for k, _ in enumerate(it):
        if k == 0:
            print("ready", flush=True)
finally:
    it.close()
print("all done?!", flush=True)
"""

SIGINT_CAUGHT = """
import asyncio
def ready():
    print("ready", flush=True)
pool = Pool(4)
async def main():
    futs = [pool.run(time.sleep, 0.05) for _ in range(2000)]
    asyncio.get_running_loop().call_soon(ready)
    await asyncio.gather(*futs)
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("caught KeyboardInterrupt", flush=True)
"""


@pytest.mark.parametrize("script", ["async", "map", "caught"])
def test_ctrl_c(impl, script):
    # SIGINT after 'ready': KeyboardInterrupt reaches the user and the
    # process ends within a few seconds (2,000 jobs of 50 ms on 4 workers
    # would take 25 s: the queued ones are cancelled, not run).
    if script == "caught" and impl == "stdlib":
        code = SIGINT_CAUGHT.replace(
            "pool.run(time.sleep, 0.05)",
            "asyncio.get_running_loop().run_in_executor(pool, time.sleep, 0.05)")
    else:
        code = {"async": SIGINT_ASYNC, "map": SIGINT_MAP,
                "caught": SIGINT_CAUGHT}[script]
    # A shell's background job (CI, nohup) starts with SIGINT ignored, which
    # Python keeps: the child restores the default handler.
    body = ("import faulthandler, signal, sys, time\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "faulthandler.dump_traceback_later(30, exit=True)\n"
            + POOL_IMPORTS[impl] + code)
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.Popen([sys.executable, "-c", body],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line == "ready\n", (line, proc.stderr.read())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    d = "rc=%s elapsed=%.2f\n--- stdout\n%s\n--- stderr\n%s" % (
        proc.returncode, elapsed, out, err)
    assert elapsed < 5, d
    assert "Fatal Python error" not in err, d
    assert "Timeout (" not in err, d
    assert "all done?!" not in out, d
    if script == "caught":
        assert out == "caught KeyboardInterrupt\n", d
        assert proc.returncode == 0, d
    else:
        assert "KeyboardInterrupt" in err, d
        # Python exits with the SIGINT status (or 1 on old versions).
        assert proc.returncode in (-signal.SIGINT, 1, 130), d


# ---------------------------------------------------------------------------
# os.fork()
# ---------------------------------------------------------------------------

@needs_fork
def test_fork_with_unused_pool(impl):
    # A pool created but not used before the fork: the child can use it (the
    # stdlib handles this case too).
    proc = run_pool_script(impl, """
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
    """, fork=True)
    assert_clean_exit(proc)
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
    proc = run_pool_script(fast_impl, """
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
    """.replace("CHILD_END", child_end), fork=True)
    assert_clean_exit(proc)
    lines = proc.stdout.split("\n")
    assert "child ok" in lines, proc.stdout + proc.stderr
    assert "child 0" in lines, proc.stdout + proc.stderr
    assert "parent True" in lines, proc.stdout + proc.stderr


@needs_fork
def test_fork_while_job_running(fast_impl):
    # fastexec only: fork while a worker is busy in the parent.  The child
    # can still run work; the parent's running job completes.
    proc = run_pool_script(fast_impl, """
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
    """, fork=True)
    assert_clean_exit(proc)
    assert proc.stdout.split("\n") == [
        "child 0", "parent job done", "parent True", ""]


@needs_fork
def test_fork_right_after_a_job_completes(fast_impl):
    # fastexec only: fork at once after a result came back, when the worker
    # that produced it has not gone to sleep yet (it may be spinning for the
    # next job).  The child must still get fresh workers for its submits.
    # Several rounds, each in a new pool, because the window is short.
    proc = run_pool_script(fast_impl, """
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
    """, fork=True)
    assert_clean_exit(proc)
    assert proc.stdout.split("\n")[-2:] == ["bad []", ""], proc.stdout


@needs_fork
def test_fork_inherited_work_ends_in_the_child(fast_impl):
    # fastexec only: the work queued or running at fork time is the parent's.
    # The child never runs it; the child's copies of futures nothing was
    # waiting on are settled at once (queued: cancelled; running: fails with
    # RuntimeError naming fork), so nothing runs twice and the child's pool
    # serves new work.  The parent runs all of it.
    proc = run_pool_script(fast_impl, """
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
    """, fork=True)
    assert_clean_exit(proc)
    assert proc.stdout.split("\n") == [
        "child 0", "parent ran it", "parent True [1, 2] True", ""]


@needs_fork
def test_fork_from_inside_a_job(impl):
    # A job that calls os.fork(): in the child, the forking worker is the
    # one thread left, still running that job.  The job returns there, its
    # future is settled, and that worker keeps serving the child's pool (as
    # the stdlib's does).  The parent is unaffected.
    proc = run_pool_script(impl, """
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
    """, fork=True)
    assert_clean_exit(proc)
    assert proc.stdout.split("\n") == ["child 0", "parent 4", ""], proc.stdout


@needs_fork
def test_fork_from_a_finalizer_after_a_job(fast_impl):
    # fastexec only (stats): a job's argument whose __del__ forks, run on
    # the worker as the job is released, after its outcome was delivered
    # and before the worker came back for more.  In the child that worker
    # finishes, and the counts end right: nothing running, one idle thread.
    proc = run_pool_script(fast_impl, """
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
    """, fork=True)
    assert_clean_exit(proc)
    assert proc.stdout.split("\n") == ["child 0", ""], proc.stdout


@needs_fork
def test_fork_with_live_pool():
    # The parent has used the pool (submit and the asyncio path) and has
    # jobs running and queued at the fork.  The child submits and runs
    # pool.run jobs in a fresh asyncio.run, and exits normally (interpreter
    # finalization included) with 0.  The parent's pool is unaffected: its
    # jobs run once, in the parent, and its futures get the parent's
    # results.  fastexec only: the stdlib pool is not fork-safe (the same
    # script on it: the child's submit().result(10) times out, because the
    # child finds the dead parent workers' idle-semaphore counts and starts
    # no thread).
    impl = "fastexec"
    proc = run_python(POOL_IMPORTS[impl] + FORK_HELPERS + """
pool = Pool(2)
assert pool.submit(os.getpid).result(10) == os.getpid()
parent = os.getpid()
assert asyncio.run(gather_run(pool, 50, "p")) == [("p", parent, i) for i in range(50)]
gate = threading.Event()
r, w = os.pipe()
def marked(i):
    os.write(w, b"%d:%d\\n" % (os.getpid(), i))
    return os.getpid(), i
blockers = [pool.submit(gate.wait, 10) for _ in range(2)]
queued = [pool.submit(marked, i) for i in range(5)]
pid = fork(25)
if pid == 0:
    me = os.getpid()
    ok = pool.submit(os.getpid).result(10) == me
    res = asyncio.run(gather_run(pool, 100, "c"))
    ok = ok and res == [("c", me, i) for i in range(100)]
    print("child ok" if ok else "child BAD %r" % (res[:3],), flush=True)
    sys.exit(0 if ok else 3)
gate.set()
assert all(b.result(10) is True for b in blockers)
assert [f.result(10) for f in queued] == [(parent, i) for i in range(5)]
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
assert pool.submit(os.getpid).result(10) == parent
assert asyncio.run(gather_run(pool, 50, "p")) == [("p", parent, i) for i in range(50)]
os.close(w)
marks = [l.split(":") for l in os.read(r, 65536).decode().split()]
mine = sorted(int(i) for p, i in marks if int(p) == parent)
print("parent marks", mine, flush=True)
print("parent ok", flush=True)
""", watchdog_kind="alarm")
    assert_clean_exit(proc)
    lines = proc.stdout.splitlines()
    assert "child ok" in lines, detail(proc)
    assert "child exit 0" in lines, detail(proc)
    assert "parent marks [0, 1, 2, 3, 4]" in lines, detail(proc)
    assert lines[-1] == "parent ok", detail(proc)


@needs_fork
def test_fork_from_a_running_loop_with_fast_path_in_flight():
    # fork() from a coroutine while pool.run jobs are running and queued for
    # the parent's loop.  The child (sync work only, then os._exit) must not
    # disturb the parent: every parent future resolves exactly once with the
    # parent's result, every job runs once and in the parent, and the
    # parent loop's exception handler records nothing.
    proc = run_python(POOL_IMPORTS["fastexec"] + FORK_HELPERS + """
pool = Pool(2)
parent = os.getpid()
gate = threading.Event()
r, w = os.pipe()
def marked(i):
    os.write(w, b"%d:%d\\n" % (os.getpid(), i))
    return os.getpid(), i
async def main():
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    calls = {}
    def count(f):
        calls[id(f)] = calls.get(id(f), 0) + 1
    blockers = [pool.run(gate.wait, 10) for _ in range(2)]
    futs = [pool.run(marked, i) for i in range(30)]
    for f in blockers + futs:
        f.add_done_callback(count)
    pid = fork(25)
    if pid == 0:
        ok = pool.submit(os.getpid).result(10) == os.getpid()
        os._exit(0 if ok else 3)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*blockers), 10) == [True, True]
    res = await asyncio.wait_for(asyncio.gather(*futs), 10)
    for _ in range(3):
        await asyncio.sleep(0)
    assert res == [(parent, i) for i in range(30)], res
    assert sorted(calls.values()) == [1] * 32, calls
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    more = await asyncio.gather(*[pool.run(abs, -i) for i in range(20)])
    assert more == list(range(20))
    assert not errors, errors
asyncio.run(main())
os.close(w)
marks = [l.split(":") for l in os.read(r, 65536).decode().split()]
print("marks", sorted(int(i) for p, i in marks if int(p) == parent)
      == list(range(30)), len(marks), flush=True)
""", watchdog_kind="alarm")
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["child exit 0", "marks True 30"], \
        detail(proc)


@needs_fork
@pytest.mark.skipif(
    bool(os.environ.get("FASTEXEC_SANITIZED")),
    reason="GCC's AddressSanitizer allocator is not fork-safe in a "
           "multithreaded process: the child can hang in malloc whatever the "
           "pool does (seen in this test's child creating an RLock); the "
           "normal builds run it on every Python")
def test_fork_while_workers_are_busy(impl):
    # fork() from the main thread, 300 times, while the workers of two pools
    # run Python code without pause, fed by submit, by map and (fastexec) by
    # pool.run from an event loop in another thread: the parent must not
    # hang, the children must exit 0 (fastexec's children first use a pool:
    # submit and map; the stdlib's pool is not fork-safe, so its children
    # only exit) and the pools must keep working.  The switch interval is
    # made short so that the GIL changes hands often, as on a loaded
    # machine: this is what exposed the two fork deadlocks fixed earlier.
    proc = run_python(POOL_IMPORTS[impl] + """
import asyncio
sys.setswitchinterval(1e-5)
FAST = hasattr(Pool, "run")
pools = [Pool(2) for _ in range(2)]
stop = False
def spin(n=2000):
    s = 0
    for i in range(n):
        s += i
    return s
def feeder(pool):
    while not stop:
        for f in [pool.submit(spin) for _ in range(200)]:
            assert f.result(20) == 1999000
def mapper(pool):
    while not stop:
        assert list(pool.map(spin, [100] * 200)) == [4950] * 200
def looper(pool):
    async def main():
        while not stop:
            rs = await asyncio.gather(*[pool.run(spin) for _ in range(200)])
            assert rs == [1999000] * 200
    asyncio.run(main())
ts = [threading.Thread(target=feeder, args=(pools[0],)),
      threading.Thread(target=mapper, args=(pools[1],))]
if FAST:
    ts.append(threading.Thread(target=looper, args=(pools[0],)))
for t in ts:
    t.start()
bad = 0
for i in range(300):
    signal.alarm(25)
    pid = os.fork()
    if pid == 0:
        signal.alarm(25)
        if FAST:
            ok = (pools[0].submit(spin, 10).result(5) == 45 and
                  list(pools[1].map(spin, [10, 20])) == [45, 190])
            os._exit(0 if ok else 3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    bad += os.waitstatus_to_exitcode(status) != 0
stop = True
for t in ts:
    t.join(20)
print("forks done, bad children:", bad, flush=True)
print([p.submit(abs, -3).result(10) for p in pools], flush=True)
""", timeout=40, watchdog=35, watchdog_kind="alarm")
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == ["forks done, bad children: 0",
                                        "[3, 3]"], detail(proc)


# ---------------------------------------------------------------------------
# Subinterpreters and free-threaded builds
# ---------------------------------------------------------------------------

SUBINTERP_API = """
import sys
if sys.version_info >= (3, 13):
    import _interpreters as I
    def create(isolated):
        return I.create("isolated" if isolated else "legacy")
    def run(interp, code):
        # 3.13: run_string returns None or an exception snapshot.
        r = I.run_string(interp, code)
        return None if r is None else r.formatted
else:
    import _xxsubinterpreters as I
    def create(isolated):
        return I.create(isolated=isolated)
    def run(interp, code):
        # 3.12: run_string raises RunFailedError.
        try:
            I.run_string(interp, code)
        except Exception as e:
            return "%s: %s" % (type(e).__name__, e)
        return None
"""

needs_subinterpreters = pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="per-interpreter GIL subinterpreters need Python 3.12+")

SUB_IMPORT = """
import sys
try:
    import fastexec._fastexec
    print("RESULT imported", flush=True)
except ImportError as e:
    print("RESULT ImportError:", e, flush=True)
"""


def _isolated_import_script(guard, main_imports=True):
    # guard: block _asyncio and ssl inside the subinterpreter.  CPython
    # 3.12.1 aborts at process exit ('free(): invalid pointer', or 'double
    # free' for ssl) when an isolated interpreter imported _asyncio (or ssl)
    # before the main interpreter did, with or without fastexec (see
    # test_isolated_subinterpreter_plain_import).  Blocking them isolates
    # fastexec's own behaviour.
    pre = ("sys.modules['_asyncio'] = None\nsys.modules['ssl'] = None\n"
           if guard else "")
    if main_imports:
        main_before = """
import fastexec, threading
pool = fastexec.ThreadPoolExecutor(2)
assert pool.submit(abs, -2).result(10) == 2
"""
        main_after = """
# The main interpreter is unharmed and its pool still works.
assert pool.submit(abs, -3).result(10) == 3
pool.shutdown()
"""
    else:
        main_before = main_after = ""
    return SUBINTERP_API + main_before + """
interp = create(isolated=True)
err = run(interp, %r)
print("run ->", err, flush=True)
I.destroy(interp)
""" % ("import sys\n" + pre + SUB_IMPORT) + main_after + """
print("main alive", flush=True)
"""


@needs_subinterpreters
@pytest.mark.parametrize("main_imports", [True, False],
                         ids=["main-uses-fastexec", "main-never-imported-it"])
def test_isolated_subinterpreter_refuses_import(main_imports):
    proc = run_python(_isolated_import_script(guard=True,
                                              main_imports=main_imports))
    assert_clean_exit(proc)
    lines = proc.stdout.splitlines()
    assert ("RESULT ImportError: module fastexec._fastexec does not support "
            "loading in subinterpreters") in lines, detail(proc)
    assert "run -> None" in lines and lines[-1] == "main alive", detail(proc)


@needs_subinterpreters
@pytest.mark.parametrize("main_imports", [True, False],
                         ids=["main-uses-fastexec", "main-never-imported-it"])
def test_isolated_subinterpreter_plain_import(main_imports):
    # What a user does: `import fastexec._fastexec` in an isolated
    # interpreter, nothing blocked.  The package imports asyncio before its C
    # module, so when the main interpreter has not imported asyncio yet,
    # CPython 3.12.1 then aborts at exit (a CPython bug with _asyncio first
    # imported in an isolated interpreter); the control run (`import
    # _asyncio` alone) tells that apart from a fastexec crash.
    proc = run_python(_isolated_import_script(guard=False,
                                              main_imports=main_imports))
    lines = proc.stdout.splitlines()
    assert ("RESULT ImportError: module fastexec._fastexec does not support "
            "loading in subinterpreters") in lines, detail(proc)
    assert "main alive" in lines, detail(proc)
    if proc.returncode != 0:
        control = run_python(SUBINTERP_API + """
interp = create(isolated=True)
run(interp, "import _asyncio")
I.destroy(interp)
print("control alive", flush=True)
""")
        pytest.fail(
            "the process died at exit after the refused import (rc=%s).  "
            "Control `import _asyncio` alone in an isolated interpreter: "
            "rc=%s, stderr=%r.  If the control dies too, this is the CPython "
            "bug; fastexec can avoid it by importing its C module before "
            "asyncio in fastexec/__init__.py (the refusal then happens "
            "before asyncio is loaded).\n%s"
            % (proc.returncode, control.returncode, control.stderr[-200:],
               detail(proc)))
    assert_clean_exit(proc)


@needs_subinterpreters
@pytest.mark.parametrize("shutdown", [True, False])
def test_legacy_subinterpreter_imports_and_works(shutdown):
    # A subinterpreter that shares the main GIL ('legacy'): the import works,
    # a pool runs submit and fast-path jobs there, and destroying the
    # interpreter (with the pool shut down or not, work still queued) is
    # clean; the main interpreter's own pool is unaffected.
    code = """
import asyncio, fastexec, threading
pool = fastexec.ThreadPoolExecutor(2)
assert pool.submit(pow, 2, 10).result(10) == 1024
async def main():
    return await asyncio.gather(*[pool.run(pow, 2, i) for i in range(50)])
assert asyncio.run(main()) == [2 ** i for i in range(50)]
for i in range(20):
    pool.submit(time_sleep, 0.002)
if SHUTDOWN:
    pool.shutdown()
print("RESULT sub ok", flush=True)
""".replace("SHUTDOWN", str(shutdown)).replace(
        "import asyncio", "from time import sleep as time_sleep\nimport asyncio")
    proc = run_python(SUBINTERP_API + """
import fastexec
main_pool = fastexec.ThreadPoolExecutor(2)
assert main_pool.submit(abs, -1).result(10) == 1
interp = create(isolated=False)
err = run(interp, %r)
print("run ->", err, flush=True)
I.destroy(interp)
assert main_pool.submit(abs, -2).result(10) == 2
print("main alive", flush=True)
""" % code)
    assert_clean_exit(proc)
    assert proc.stdout.splitlines() == [
        "RESULT sub ok", "run -> None", "main alive"], detail(proc)


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"),
                    reason="not a free-threaded (Py_GIL_DISABLED) build")
def test_free_threaded_build_imports_and_turns_the_gil_on():
    # The module declares Py_MOD_GIL_USED (see the README's "What still
    # reasons from the GIL"): the interpreter turns the GIL on at import.
    proc = run_python("""
import warnings
warnings.simplefilter("ignore", RuntimeWarning)
import fastexec, asyncio
p = fastexec.ThreadPoolExecutor(4)
assert [f.result(10) for f in [p.submit(abs, -i) for i in range(100)]] == list(range(100))
async def main():
    return await asyncio.gather(*[p.run(abs, -i) for i in range(100)])
assert asyncio.run(main()) == list(range(100))
print("gil", sys._is_gil_enabled(), flush=True)
""")
    assert_clean_exit(proc)
    assert proc.stdout.strip() == "gil True", detail(proc)
