#!/usr/bin/env python3
"""Run CPython's own thread-pool tests against fastexec.ThreadPoolExecutor.

Usage:
    python tools/cpython_suite.py [options]

Uses the running interpreter, which must have fastexec installed, and the
standard library's ``test.test_concurrent_futures`` that it ships (a module on
3.9 and 3.10, a package from 3.13; the pyenv builds of 3.11 and 3.12 here do
not ship it).  On an interpreter that ships no such tests it prints
"skipped: ..." and exits 0.

What it does:
  * selects the thread-pool test classes -- every class with ThreadPoolMixin
    in its MRO or a name starting with ThreadPool (ThreadPoolExecutorTest,
    ThreadPoolShutdownTest, ThreadPoolWaitTests, ThreadPoolAsCompletedTest,
    ThreadPoolInitializerTest, ThreadPoolFailingInitializerTest) -- plus the
    pool-independent FutureTests.  The deadlock tests and every other class are
    ProcessPoolExecutor-only and are left out;
  * runs them twice, each in its own subprocess tree: with the stdlib pool
    (baseline), then with concurrent.futures.ThreadPoolExecutor and
    concurrent.futures.thread.ThreadPoolExecutor replaced by
    fastexec.ThreadPoolExecutor;
  * reports every test that passes with the stdlib pool but not with fastexec
    (failure, error, skip, hang, crash or not run), with its traceback and the
    output printed while it ran, and exits 1 if there is any.  The last line
    is "N passed, M failed": N tests passed with fastexec, M are regressions.

How the replacement reaches every process: the harness creates a throw-away
virtual environment over the running interpreter (bin/python symlinked to the
same base interpreter) whose site-packages holds a .pth that imports
tools/cpython_support/_fastexec_suite_hook.py.  The tests run with that
environment's python, so sys.executable -- and therefore every interpreter the
tests start (script_helper.assert_python_ok children, which use -I and would
ignore a sitecustomize.py on PYTHONPATH, and multiprocessing children) --
processes the .pth at start-up.  The hook adds the running interpreter's site
directories (so fastexec is importable) and, when FASTEXEC_CPYTHON_SUITE_PATCH=1
(the fastexec run only), patches concurrent.futures as soon as it is first
imported, before any test module binds ThreadPoolExecutor.  The baseline run
uses the same environment without the variable, so the pool is the only
difference.  The runner checks in-process that the tests' executor_type is the
expected class, and a preflight checks the same in an -I child.

Time bounds: each run is a subprocess with an overall time limit (--timeout,
default 600 s; on expiry its process group is killed and the test that was
running is reported as a hang, the rest as not run).  Each test also has a
``python -m test --timeout``-style guard: faulthandler dumps all threads'
tracebacks and exits if one test takes longer than --per-test-timeout (default
120 s); the harness then reports that test as a hang and restarts the runner
with the remaining tests.  A run whose process dies during a test is handled
the same way (reported as a crash).  Tests that fail with fastexec are re-run
once, alone, to tell "fails again" from "intermittent" (they count as failed
either way); tests that fail in both runs are re-run once with the stdlib pool, and
count as stdlib-passing if they pass then.

Options: --timeout S, --per-test-timeout S, --repeat N (run the fastexec side
N times; a test must pass every time -- the failures below are intermittent,
so use e.g. --repeat 3 to catch them reliably), --no-rerun, --only GLOB (run
only the tests whose id matches; repeatable), --list, --stdlib-only, --json
FILE (machine-readable results), --keep-tmp, -v (per-test progress).

Exit status: 0 no regression; 1 regressions; 2 the harness could not run the
comparison (e.g. the baseline run itself broke; no closing line then).

Tests that pass with the stdlib pool but fail with fastexec, with diagnoses
(found at commit f098d37 and still there at f9d3d09, on 3.9.18, 3.10.13 and
3.13.0; both are intermittent in the suite, so a single run may pass -- use
--repeat; a short version is in KNOWN_FASTEXEC_FAILURES below, printed next to
the failure when it recurs):

  * ThreadPoolExecutorTest.test_map_submits_without_iteration -- fails on all
    three (intermittently when run in the suite, it depends on how many items
    the workers have already taken).  The test calls executor.map(f,
    range(10)), drops the result unused, shuts down with wait=True and
    expects all 10 calls to have run.  In the stdlib, map() returns a
    generator that has not started, and dropping or close()-ing an unstarted
    generator does not run its ``finally`` (the one that cancels the
    remaining futures): nothing is cancelled.  fastexec's C map iterator
    cancels what is left in mapiter_dealloc() and mapiter_close() (src/pool.c,
    both call mapiter_abandon()) even when it was never iterated.  Fix (C):
    abandon in dealloc/close only once iteration has begun (it->next > 0);
    next() already abandons on timeout/error itself.  Deterministic check:
    with max_workers=1 and a blocked first call, ``ex.map(f, range(5))``
    dropped, then unblock + shutdown(wait=True): stdlib runs 5 calls,
    fastexec 1.

  * ThreadPoolExecutorTest.test_hang_global_shutdown_lock -- deadlock (seen
    on 3.9 in the suite; reproducible on 3.9, 3.10 and 3.13 with a small
    sys.setswitchinterval).  The test keeps a worker busy re-submitting to its
    own pool while the main thread forks (ProcessPoolExecutor, 'fork') 50
    times.  fastexec's before-fork hook (core._before_fork, src/pool.c) locks
    the core's pthread mutex `mu` and holds it until _after_fork_parent; in
    between, other Python at-fork hooks run (logging's _releaseLock, ...) and
    the GIL can switch to the worker, whose submit() -> core_enqueue() does a
    plain pthread_mutex_lock(&c->mu) *while holding the GIL*: the worker
    blocks on mu holding the GIL, the forking thread waits for the GIL to run
    _after_fork_parent and release mu.  (The stdlib holds a Python lock across
    fork, whose acquire releases the GIL.)  Fix (C): never block on mu with the
    GIL held -- e.g. pthread_mutex_trylock(), and if busy, wait for it inside
    Py_BEGIN/END_ALLOW_THREADS -- in core_enqueue and every other place that
    takes mu from a thread holding the GIL (worker loop entry, the
    _shutdown/_broken getters, stats, shutdown, ...).  Not fixable in
    python/fastexec/__init__.py.
"""

import argparse
import fnmatch
import importlib.util
import json
import os
import platform
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUPPORT = os.path.join(HERE, "cpython_support")
HOOK_MODULE = "_fastexec_suite_hook"
RUNNER = os.path.join(SUPPORT, "run_cpython_tests.py")
ENV_VAR = "FASTEXEC_CPYTHON_SUITE_PATCH"
PACKAGE = "test.test_concurrent_futures"

PASS = "pass"
NOT_PASSING_LABELS = {
    "fail": "FAIL",
    "error": "ERROR",
    "skip": "SKIPPED",
    "xfail": "XFAIL",
    "uxpass": "UNEXPECTED SUCCESS",
    "hang": "HANG (per-test timeout)",
    "timeout": "HANG (run timeout)",
    "exithang": "HANG at interpreter exit",
    "crash": "CRASH",
    "notrun": "NOT RUN",
}

# Diagnosed failures with fastexec (test id suffix -> diagnosis).  Purely
# informational: printed next to a regression when it occurs, never used to
# excuse one.
KNOWN_FASTEXEC_FAILURES = {
    "ThreadPoolExecutorTest.test_map_submits_without_iteration":
        "C map iterator cancels the calls not yet started when it is dropped "
        "or closed without ever being iterated (mapiter_dealloc/"
        "mapiter_close -> mapiter_abandon); the stdlib's unstarted map "
        "generator cancels nothing. See the top of this file.",
    "ThreadPoolExecutorTest.test_hang_global_shutdown_lock":
        "deadlock at fork: core._before_fork holds the pthread mutex across "
        "the other at-fork hooks; a worker's submit() blocks on that mutex "
        "while holding the GIL, and the forking thread needs the GIL to run "
        "_after_fork_parent. See the top of this file.",
}


def short_id(test_id):
    prefix = PACKAGE + "."
    return test_id[len(prefix):] if test_id.startswith(prefix) else test_id


def say(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------------------
# Shadow environment
# ---------------------------------------------------------------------------

def _read_pyvenv_home(prefix):
    try:
        with open(os.path.join(prefix, "pyvenv.cfg"), encoding="utf-8") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip().lower() == "home":
                    return value.strip()
    except OSError:
        pass
    return None


def base_executable():
    """The real interpreter binary behind sys.executable."""
    if sys.prefix != sys.base_prefix:
        home = _read_pyvenv_home(sys.prefix)
        if home:
            names = (os.path.basename(sys.executable),
                     "python%d.%d" % sys.version_info[:2], "python3", "python")
            for name in names:
                cand = os.path.join(home, name)
                if os.path.isfile(cand) and os.access(cand, os.X_OK):
                    return cand
    return os.path.realpath(sys.executable)


def parent_site_dirs():
    dirs = []
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:
        pass
    if site.ENABLE_USER_SITE:
        user = site.getusersitepackages()
        if user in sys.path:
            dirs.append(user)
    return [d for d in dirs if os.path.isdir(d)]


def fastexec_location():
    """Directory that holds the fastexec package, found without importing."""
    try:
        spec = importlib.util.find_spec("fastexec")
    except Exception:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(os.path.abspath(list(spec.submodule_search_locations)[0]))


class Shadow:
    def __init__(self, root):
        self.root = root
        self.python = os.path.join(root, "bin", "python")
        self.site_packages = None

    def create(self):
        base = base_executable()
        os.makedirs(os.path.join(self.root, "bin"))
        with open(os.path.join(self.root, "pyvenv.cfg"), "w",
                  encoding="utf-8") as f:
            f.write("home = %s\n" % os.path.dirname(base))
            f.write("include-system-site-packages = false\n")
            f.write("version = %s\n" % platform.python_version())
        for name in ("python", "python3", "python%d.%d" % sys.version_info[:2]):
            os.symlink(base, os.path.join(self.root, "bin", name))
        out = subprocess.run(
            [self.python, "-I", "-c",
             "import json, site, sys; "
             "print(json.dumps([sys.prefix, site.getsitepackages()]))"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
            universal_newlines=True, env=clean_env())
        if out.returncode != 0:
            raise RuntimeError("the shadow interpreter does not start:\n"
                               + out.stderr)
        prefix, sitepkgs = json.loads(out.stdout.strip().splitlines()[-1])
        if os.path.realpath(prefix) != os.path.realpath(self.root):
            raise RuntimeError("the shadow environment was not recognised "
                               "(sys.prefix=%r)" % prefix)
        self.site_packages = sitepkgs[0]
        os.makedirs(self.site_packages, exist_ok=True)
        shutil.copy(os.path.join(SUPPORT, HOOK_MODULE + ".py"),
                    self.site_packages)
        extra = []
        loc = fastexec_location()
        site_dirs = parent_site_dirs()
        if loc and loc not in site_dirs:
            extra.append(loc)
        with open(os.path.join(self.site_packages, HOOK_MODULE + ".json"),
                  "w", encoding="utf-8") as f:
            json.dump({"site_dirs": site_dirs, "extra_paths": extra}, f,
                      indent=1)
        with open(os.path.join(self.site_packages, HOOK_MODULE + ".pth"),
                  "w", encoding="utf-8") as f:
            f.write("import %s; %s.activate()\n" % (HOOK_MODULE, HOOK_MODULE))


def clean_env(mode=None):
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    env.pop("PYTHONHOME", None)
    if mode == "fastexec":
        env[ENV_VAR] = "1"
    elif mode == "install":  # tools/asyncio_suite.py: pool + install()
        env[ENV_VAR] = "install"
    return env


PREFLIGHT = r"""
import json, sys
info = {"hook": False}
try:
    import concurrent.futures as cf, concurrent.futures.thread as cft
    info["hook"] = "_fastexec_suite_hook" in sys.modules
    info["cf"] = "%s.%s" % (cf.ThreadPoolExecutor.__module__,
                            cf.ThreadPoolExecutor.__qualname__)
    info["cft"] = "%s.%s" % (cft.ThreadPoolExecutor.__module__,
                             cft.ThreadPoolExecutor.__qualname__)
    info["same"] = cf.ThreadPoolExecutor is cft.ThreadPoolExecutor
    if "fastexec" in sys.modules:
        import fastexec
        info["fastexec"] = [getattr(fastexec, "__version__", "?"),
                            fastexec.__file__,
                            getattr(fastexec._fastexec, "__file__", "?")]
        with cf.ThreadPoolExecutor(2) as ex:
            info["smoke"] = ex.submit(pow, 2, 10).result(timeout=30)
except BaseException:
    import traceback
    info["error"] = traceback.format_exc()
print(json.dumps(info))
"""


def run_preflight(shadow, code, env, workdir):
    """Run `code` in an isolated (-I) child like assert_python_ok's; it
    prints a JSON report as its last line.  Returns (info, error_text,
    child's stderr); info None when there is no report."""
    try:
        out = subprocess.run([shadow.python, "-I", "-X", "faulthandler",
                              "-c", code],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, env=env,
                             cwd=workdir, timeout=120)
    except subprocess.TimeoutExpired:
        return None, "the preflight child did not finish within 120 s", ""
    info = None
    for line in reversed(out.stdout.strip().splitlines()):
        try:
            info = json.loads(line)
            break
        except ValueError:
            continue
    if info is None:
        return None, ("the preflight child exited %s without a report; "
                      "stderr:\n%s" % (out.returncode, out.stderr)), out.stderr
    return info, info.get("error") or None, out.stderr


def preflight(shadow, mode, workdir):
    """Check, in an isolated (-I) child, that the pool is the one `mode`
    asks for.  Returns (info, error_text)."""
    info, error, stderr = run_preflight(shadow, PREFLIGHT, clean_env(mode),
                                        workdir)
    if error:
        return info, error
    if not info.get("hook"):
        return info, "the start-up hook did not run in an -I child"
    expected = ("fastexec.ThreadPoolExecutor" if mode == "fastexec"
                else "concurrent.futures.thread.ThreadPoolExecutor")
    if info.get("cf") != expected or info.get("cft") != expected \
            or not info.get("same"):
        return info, ("in an -I child, concurrent.futures.ThreadPoolExecutor "
                      "is %s and concurrent.futures.thread.ThreadPoolExecutor "
                      "is %s; expected %s" % (info.get("cf"), info.get("cft"),
                                              expected))
    if stderr.strip():
        # Not fatal (the tests that check a child's stderr will tell), but
        # worth showing.
        say("warning: in the %s preflight, an -I child that imports "
            "concurrent.futures wrote to stderr:\n%s"
            % (mode, indent(stderr)))
    return info, None


# ---------------------------------------------------------------------------
# Running one mode
# ---------------------------------------------------------------------------

def count_outcomes(records):
    """{outcome: how many} over a run's records (dicts with "outcome")."""
    c = {}
    for rec in records.values():
        c[rec["outcome"]] = c.get(rec["outcome"], 0) + 1
    return c


class RunResult:
    def __init__(self, mode):
        self.mode = mode
        self.selected = []          # ordered test ids
        self.classes = []
        self.records = {}           # id -> dict(outcome, tb, log, duration, ...)
        self.fixtures = {}          # pseudo id -> dict(outcome, tb, log)
        self.harness_error = None
        self.module_skip = None
        self.elapsed = 0.0
        self.attempts = 0

    def counts(self):
        return count_outcomes(self.records)

    def summary_line(self):
        c = self.counts()
        order = ["pass", "fail", "error", "skip", "hang", "timeout", "crash",
                 "notrun", "xfail", "uxpass"]
        parts = ["%d %s" % (c[k], {"pass": "passed", "fail": "failed",
                                   "error": "errors", "skip": "skipped",
                                   "hang": "hung", "timeout": "hung (run "
                                   "timeout)", "crash": "crashed",
                                   "notrun": "not run",
                                   "xfail": "expected failures",
                                   "uxpass": "unexpected successes"}[k])
                 for k in order if c.get(k)]
        env = sum(1 for r in self.records.values() if r.get("env_changed"))
        if env:
            parts.append("%d altered the environment" % env)
        if self.fixtures:
            parts.append("%d fixture/exit problems" % len(self.fixtures))
        return "%d tests in %.1fs: %s" % (len(self.records), self.elapsed,
                                           ", ".join(parts) or "nothing ran")


def _read_events(path):
    events = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass  # torn last line of a killed process
    except OSError:
        pass
    return events


def _read_log(path, start=None, end=None, limit=6000):
    try:
        with open(path, "rb") as f:
            if start:
                f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - (start or 0)))
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if len(text) > limit:
        text = "[... %d characters cut ...]\n" % (len(text) - limit) \
            + text[-limit:]
    return text


def _exited_unreaped(pid):
    """True once `pid` (our child) has exited; leaves it unreaped, so its
    pid -- and the process group id -- cannot be reused yet."""
    if not hasattr(os, "waitid"):
        return False
    try:
        return os.waitid(os.P_PID, pid,
                         os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exit(proc, timeout):
    """Wait up to `timeout` s for the runner to exit; True if it did.  Where
    possible it is left unreaped (see _exited_unreaped)."""
    if not hasattr(os, "waitid"):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    end = time.monotonic() + timeout
    while True:
        if _exited_unreaped(proc.pid):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def _exit_status(proc):
    """The exit status of an exited runner, without reaping it."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        info = os.waitid(os.P_PID, proc.pid,
                         os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (OSError, AttributeError):
        return None
    if info is None:
        return None
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status


def _abort_then_kill(proc, grace=5.0):
    """SIGABRT the runner first: faulthandler then dumps every thread's
    traceback into the log, which tells where it hung.  Then kill its whole
    process group (the tests' own children), then reap it."""
    try:
        os.kill(proc.pid, signal.SIGABRT)
    except OSError:
        pass
    end = time.monotonic() + grace
    while time.monotonic() < end and not _exited_unreaped(proc.pid):
        time.sleep(0.1)
    _kill_group(proc)


def _kill_group(proc):
    """SIGKILL the runner's process group.  Called only before the runner is
    reaped (the group id is the runner's pid, which stays ours until then)."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.kill()
    except OSError:
        pass


def run_mode(shadow, mode, workdir, budget, per_test_timeout, only_ids=None,
             verbose=False, tag=None, list_only=False):
    """Run the selected tests (or only_ids) in `mode` until done or `budget`
    seconds have passed, restarting the runner after a per-test hang or a
    crash.  Returns a RunResult."""
    res = RunResult(mode)
    tag = tag or mode
    t_start = time.monotonic()
    deadline = t_start + budget
    remaining = list(only_ids) if only_ids is not None else None
    while True:
        res.attempts += 1
        n = res.attempts
        events_path = os.path.join(workdir, "%s-%d.events" % (tag, n))
        log_path = os.path.join(workdir, "%s-%d.log" % (tag, n))
        cmd = [shadow.python, "-X", "faulthandler", RUNNER, "--mode", mode,
               "--events", events_path,
               "--per-test-timeout", str(per_test_timeout)]
        if list_only:
            cmd.append("--list")
        if remaining is not None:
            only_path = os.path.join(workdir, "%s-%d.only" % (tag, n))
            with open(only_path, "w", encoding="utf-8") as f:
                f.write("\n".join(remaining) + "\n")
            cmd += ["--only", only_path]
        cwd = os.path.join(workdir, "cwd-%s-%d" % (tag, n))
        os.makedirs(cwd)
        killed = None
        done_at = None
        seen = 0
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=cwd,
                                    env=clean_env(mode),
                                    start_new_session=True)
            try:
                while True:
                    if _wait_exit(proc, 0.5):
                        break
                    now = time.monotonic()
                    evs = _read_events(events_path)
                    for ev in evs[seen:]:
                        if ev.get("event") == "done" and done_at is None:
                            done_at = now
                        if verbose and ev.get("event") == "end":
                            say("  [%s] %-7s %6.2fs  %s"
                                % (tag, ev["outcome"], ev.get("duration", 0),
                                   short_id(ev["id"])))
                    seen = len(evs)
                    if now >= deadline:
                        killed = "run timeout (%gs)" % budget
                        break
                    if done_at is not None and now - done_at > 60:
                        killed = "interpreter exit did not finish within 60s"
                        break
            except BaseException:
                _kill_group(proc)
                proc.wait()
                raise
            if killed:
                _abort_then_kill(proc)
            elif _exit_status(proc) != 0:
                # A crash or a per-test timeout can orphan the tests' own
                # children (e.g. a hung assert_python_ok interpreter).
                _kill_group(proc)
            proc.wait()
        rc = proc.returncode
        if verbose:
            for ev in _read_events(events_path)[seen:]:
                if ev.get("event") == "end":
                    say("  [%s] %-7s %6.2fs  %s"
                        % (tag, ev["outcome"], ev.get("duration", 0),
                           short_id(ev["id"])))
            if killed or (rc != 0 and not list_only):
                say("  [%s] runner stopped: %s" % (
                    tag, killed or "exit status %s" % rc))

        events = _read_events(events_path)
        current = None       # id of the test that started but did not end
        progress = 0
        done = False
        for ev in events:
            kind = ev.get("event")
            if kind == "selected":
                if not res.selected:
                    res.selected = list(ev["ids"])
                    res.classes = list(ev.get("classes", []))
            elif kind == "start":
                current = ev
            elif kind == "end":
                start_off = current.get("log_offset") if current else None
                rec = {"outcome": ev["outcome"], "tb": ev.get("tb"),
                       "duration": ev.get("duration"),
                       "env_changed": ev.get("env_changed", False),
                       "log": None, "log_path": log_path,
                       "log_span": [start_off, ev.get("log_offset")]}
                if ev["outcome"] != PASS:
                    rec["log"] = _read_log(log_path, start_off,
                                           ev.get("log_offset"))
                res.records[ev["id"]] = rec
                current = None
                progress += 1
            elif kind == "fixture":
                pid = "[fixture] %s" % (ev.get("description") or ev.get("id"))
                res.fixtures[pid] = {"outcome": ev.get("outcome", "error"),
                                     "tb": ev.get("tb"), "log": None}
            elif kind == "harness_error":
                res.harness_error = "%s\n%s" % (ev.get("message"), ev.get("tb"))
            elif kind == "module_skip":
                res.module_skip = ev.get("reason")
            elif kind == "done":
                done = True

        if res.harness_error or res.module_skip or list_only:
            if res.harness_error and not res.records:
                res.harness_error += "\n--- runner output ---\n" + \
                    _read_log(log_path)
            break

        if current is not None:
            tid = current["id"]
            log_text = _read_log(log_path, current.get("log_offset"))
            if killed:
                outcome = "timeout"
                why = ("the run was killed: %s (the runner was first sent "
                       "SIGABRT: see the tracebacks in the output)" % killed)
            elif "Timeout (" in log_text:
                outcome = "hang"
                why = ("faulthandler's per-test timeout (%gs) fired; the "
                       "tracebacks of all threads are in the output below"
                       % per_test_timeout)
            else:
                outcome = "crash"
                why = "the runner process died during this test (%s)" % (
                    "exit status %s" % rc if rc is None or rc >= 0
                    else "signal %d" % -rc)
            res.records[tid] = {"outcome": outcome, "tb": why,
                                "log": log_text, "duration": None,
                                "env_changed": False, "log_path": log_path}
            progress += 1

        if done:
            if killed:
                res.fixtures["[interpreter exit]"] = {
                    "outcome": "exithang", "tb": killed + " (the runner was "
                    "sent SIGABRT: see the tracebacks in the output)",
                    "log": _read_log(log_path, limit=3000)}
            elif rc != 0:
                res.fixtures["[interpreter exit]"] = {
                    "outcome": "crash",
                    "tb": "the runner exited with status %s after all tests "
                          "ran" % rc,
                    "log": _read_log(log_path, limit=3000)}
            break

        # The runner stopped early: restart it on what is left, if anything
        # was learnt from this attempt and there is time.
        wanted = remaining if remaining is not None else res.selected
        left = [t for t in wanted if t not in res.records]
        if not left:
            if not events or not res.selected:
                res.harness_error = ("the runner exited with status %s "
                                     "without reporting; output:\n%s"
                                     % (rc, _read_log(log_path)))
            break
        if killed or progress == 0 or time.monotonic() >= deadline:
            reason = killed or ("the runner died outside a test (exit status "
                                "%s)" % rc if progress == 0 else "no time left")
            if progress == 0 and not killed:
                res.fixtures["[runner died outside a test, attempt %d]" % n] = {
                    "outcome": "crash", "tb": reason,
                    "log": _read_log(log_path, limit=3000)}
            for t in left:
                res.records[t] = {"outcome": "notrun", "tb": reason,
                                  "log": None, "duration": None,
                                  "env_changed": False}
            break
        remaining = left
    res.elapsed = time.monotonic() - t_start
    return res


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

def indent(text, prefix="      "):
    return "\n".join(prefix + line for line in (text or "").rstrip().splitlines())


def known_diagnosis(test_id):
    for suffix, why in KNOWN_FASTEXEC_FAILURES.items():
        if test_id.endswith(suffix):
            return why
    return None


def print_failure(tid, rec, note=None):
    label = NOT_PASSING_LABELS.get(rec["outcome"], rec["outcome"].upper())
    say("  %s: %s%s" % (label, short_id(tid), "  [%s]" % note if note else ""))
    why = known_diagnosis(tid)
    if why:
        say("    diagnosis: " + why)
    if rec.get("tb"):
        say(indent(rec["tb"]))
    if rec.get("log") and rec["log"].strip():
        say("    output while it ran:")
        say(indent(rec["log"]))
    say("")


def ships_tests():
    try:
        return importlib.util.find_spec(PACKAGE) is not None
    except ImportError:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Run CPython's thread-pool tests (test.test_concurrent_"
                    "futures) with the stdlib pool and with "
                    "fastexec.ThreadPoolExecutor, and report regressions.")
    p.add_argument("--timeout", type=float, default=600,
                   help="time limit of each run, in seconds (default 600)")
    p.add_argument("--per-test-timeout", type=float, default=120,
                   help="faulthandler time limit of one test (default 120)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the fastexec side N times (fresh processes); "
                        "a test passes only if it passes every time, which "
                        "catches intermittent failures (default 1)")
    p.add_argument("--no-rerun", action="store_true",
                   help="do not re-run failing tests once alone")
    p.add_argument("--only", action="append", metavar="GLOB",
                   help="run only tests whose id (or id without the "
                        "'%s.' prefix) matches GLOB; repeatable" % PACKAGE)
    p.add_argument("--list", action="store_true",
                   help="list the selected tests and exit")
    p.add_argument("--stdlib-only", action="store_true",
                   help="run only the baseline (stdlib pool)")
    p.add_argument("--json", metavar="FILE",
                   help="write the results of both runs to FILE")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temporary directory (logs, shadow env)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each test's outcome as it finishes")
    args = p.parse_args(argv)

    say("Python %s (%s)" % (platform.python_version(), sys.executable))
    if not ships_tests():
        say("skipped: this Python ships no %s, nothing to compare"
            % PACKAGE)
        return 0

    return run_in_tmp("fastexec-cpython-suite-", args.keep_tmp,
                      lambda tmp: _main(args, tmp))


def run_in_tmp(prefix, keep, body):
    """body(tmp) in a new temporary directory, removed after unless `keep`;
    its exit status (130 on Ctrl-C)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        return body(tmp)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if keep:
            say("temporary files kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _select(res_list, patterns):
    if not patterns:
        return None
    out = []
    for tid in res_list:
        if any(fnmatch.fnmatchcase(tid, pat) or
               fnmatch.fnmatchcase(short_id(tid), pat) for pat in patterns):
            out.append(tid)
    return out


def _main(args, tmp):
    shadow = Shadow(os.path.join(tmp, "env"))
    try:
        shadow.create()
    except Exception as exc:
        say("error: cannot create the shadow environment: %s" % exc)
        return 2
    work = os.path.join(tmp, "work")
    os.makedirs(work)

    info, err = preflight(shadow, "stdlib", work)
    if err:
        say("error: the stdlib (baseline) environment is broken:\n"
            + indent(err))
        return 2

    listing = run_mode(shadow, "stdlib", work, 300, 0, list_only=True,
                       tag="list")
    if listing.module_skip:
        say("skipped: %s is skipped on this Python (%s)"
            % (PACKAGE, listing.module_skip))
        return 0
    if listing.harness_error:
        say("error: cannot load the tests:\n" + indent(listing.harness_error))
        return 2
    selected = listing.selected
    only = _select(selected, args.only)
    if only is not None and not only:
        say("error: --only matches none of the %d selected tests"
            % len(selected))
        return 2
    wanted = only if only is not None else selected
    say("%s: %d thread-pool tests selected from %d classes:"
        % (PACKAGE, len(selected), len(listing.classes)))
    for c in listing.classes:
        n = sum(1 for t in selected if t.startswith(c + "."))
        say("    %-70s %3d" % (short_id(c), n))
    if only is not None:
        say("--only: running %d of them" % len(only))
    if args.list:
        for t in wanted:
            say(short_id(t))
        return 0

    # -- baseline ---------------------------------------------------------
    say("")
    say("[stdlib]   running with concurrent.futures.thread.ThreadPoolExecutor"
        " ...")
    base = run_mode(shadow, "stdlib", work, args.timeout,
                    args.per_test_timeout, only_ids=only, verbose=args.verbose)
    if base.harness_error:
        say("error: the baseline run failed:\n" + indent(base.harness_error))
        return 2
    say("[stdlib]   " + base.summary_line())
    if args.stdlib_only:
        bad = {t: r for t, r in base.records.items() if r["outcome"] != PASS}
        for tid in wanted:
            if tid in bad:
                print_failure(tid, bad[tid])
        for fid, rec in base.fixtures.items():
            print_failure(fid, rec)
        _write_json(args.json, base, None, [], {})
        say("stdlib only: %d passed, %d not passing (no comparison made)"
            % (sum(1 for r in base.records.values()
                   if r["outcome"] == PASS), len(bad)))
        return 0

    # -- fastexec ---------------------------------------------------------
    say("")
    finfo, ferr = preflight(shadow, "fastexec", work)
    if ferr:
        say("[fastexec] cannot use fastexec.ThreadPoolExecutor:")
        say(indent(ferr))
        fast = RunResult("fastexec")
        for tid in wanted:
            fast.records[tid] = {"outcome": "error",
                                 "tb": "fastexec is unusable here (see the "
                                       "preflight error above)",
                                 "log": None, "duration": None,
                                 "env_changed": False}
    else:
        say("[fastexec] running with fastexec.ThreadPoolExecutor "
            "(fastexec %s, %s) ..." % (finfo["fastexec"][0],
                                       finfo["fastexec"][2]))
        fast = run_mode(shadow, "fastexec", work, args.timeout,
                        args.per_test_timeout, only_ids=only,
                        verbose=args.verbose)
        for i in range(2, args.repeat + 1):
            if fast.harness_error:
                break
            if i == 2:
                say("[fastexec] run 1: " + fast.summary_line())
            more = run_mode(shadow, "fastexec", work, args.timeout,
                            args.per_test_timeout, only_ids=only,
                            verbose=args.verbose, tag="fastexec-%d" % i)
            say("[fastexec] run %d: %s" % (i, more.summary_line()))
            _merge_repeat(fast, more, i)
        if fast.harness_error:
            say("[fastexec] the run could not test fastexec:")
            say(indent(fast.harness_error))
            for tid in wanted:
                fast.records.setdefault(tid, {
                    "outcome": "error", "tb": "the fastexec run could not "
                    "run this test (see the error above)", "log": None,
                    "duration": None, "env_changed": False})
    say("[fastexec] %s%s" % ("all %d runs, worst result per test: "
                              % args.repeat if args.repeat > 1 else "",
                              fast.summary_line()))

    # -- compare ----------------------------------------------------------
    def passes(run, tid):
        rec = run.records.get(tid)
        return rec is not None and rec["outcome"] == PASS

    notes = {}
    if not args.no_rerun and not ferr and not fast.harness_error:
        # Tests failing in both runs: give the stdlib pool a second chance.
        both = [t for t in wanted if not passes(base, t) and
                not passes(fast, t) and t in base.records]
        if both:
            say("")
            say("[stdlib]   re-running %d test(s) that failed in both runs"
                % len(both))
            again = run_mode(shadow, "stdlib", work, args.timeout,
                             args.per_test_timeout, only_ids=both,
                             tag="stdlib-rerun")
            for t in both:
                if passes(again, t):
                    base.records[t] = dict(again.records[t],
                                           note="passed on re-run")
                    notes.setdefault(t, []).append(
                        "stdlib pool: failed, then passed when re-run")
    regressions = [t for t in wanted if passes(base, t) and not passes(fast, t)]
    if args.repeat > 1:
        for t in regressions:
            runs = fast.records.get(t, {}).get("failed_runs") or []
            notes.setdefault(t, []).append(
                "failed in %d of %d fastexec runs" % (len(runs), args.repeat))
    fixture_regressions = [f for f in fast.fixtures if f not in base.fixtures]
    if regressions and not args.no_rerun and not ferr \
            and not fast.harness_error:
        say("")
        say("[fastexec] re-running %d failing test(s) once, alone"
            % len(regressions))
        again = run_mode(shadow, "fastexec", work, args.timeout,
                         args.per_test_timeout, only_ids=regressions,
                         tag="fastexec-rerun")
        for t in regressions:
            if passes(again, t):
                notes.setdefault(t, []).append(
                    "intermittent: passed when re-run alone")
            else:
                rec = again.records.get(t)
                notes.setdefault(t, []).append(
                    "fails again when re-run alone (%s)"
                    % (rec["outcome"] if rec else "no result"))

    say("")
    say("=" * 78)
    say("Python %s, %s" % (platform.python_version(), PACKAGE))
    say("  stdlib pool:   " + base.summary_line())
    say("  fastexec pool: " + fast.summary_line())
    base_bad = [t for t in wanted if not passes(base, t)]
    if base_bad:
        say("")
        say("Not passing with the stdlib pool either (not compared):")
        for t in base_bad:
            rec = base.records.get(t, {"outcome": "notrun"})
            say("  %s: %s" % (NOT_PASSING_LABELS.get(rec["outcome"],
                                                      rec["outcome"]),
                              short_id(t)))
    improved = [t for t in wanted if not passes(base, t) and passes(fast, t)]
    if improved:
        say("")
        say("Passing with fastexec but not with the stdlib pool:")
        for t in improved:
            say("  " + short_id(t))
    env_only_fast = [t for t in wanted
                     if fast.records.get(t, {}).get("env_changed") and
                     not base.records.get(t, {}).get("env_changed")]
    if env_only_fast:
        say("")
        say("Warning: these tests altered the environment (e.g. left threads "
            "behind, per test.support.threading_cleanup) with fastexec only:")
        for t in env_only_fast:
            say("  " + short_id(t))
    say("")
    if regressions or fixture_regressions:
        say("REGRESSIONS: %d test(s) pass with the stdlib pool but not with "
            "fastexec:" % (len(regressions) + len(fixture_regressions)))
        say("")
        for t in regressions:
            print_failure(t, fast.records.get(
                t, {"outcome": "notrun", "tb": "no result"}),
                note="; ".join(notes.get(t, [])))
        for f in fixture_regressions:
            print_failure(f, fast.fixtures[f])
    else:
        say("No regression: every test that passes with the stdlib pool "
            "passes with fastexec.")
    _write_json(args.json, base, fast, regressions + fixture_regressions,
                notes)
    n_passed = sum(1 for t in wanted if passes(fast, t))
    n_failed = len(regressions) + len(fixture_regressions)
    say("%d passed, %d failed" % (n_passed, n_failed))
    return 1 if n_failed else 0


def _merge_repeat(fast, more, i):
    """Fold repeat `i` (2, 3, ...) of the fastexec run into `fast`.  A test
    keeps its first non-passing result: it passes only if it passed every
    time.  "failed_runs" lists the runs in which it did not pass."""
    fast.elapsed += more.elapsed
    if more.harness_error:
        fast.harness_error = more.harness_error
    for tid in list(fast.records) + [t for t in more.records
                                     if t not in fast.records]:
        old = fast.records.get(tid)
        new = more.records.get(tid)
        if old is not None and "failed_runs" not in old:
            old["failed_runs"] = [] if old["outcome"] == PASS else [1]
        runs = list(old["failed_runs"]) if old is not None else []
        if new is not None and new["outcome"] != PASS:
            runs.append(i)
        if old is None or (old["outcome"] == PASS and new is not None and
                           new["outcome"] != PASS):
            keep = dict(new)
        else:
            keep = old
        keep["failed_runs"] = runs
        fast.records[tid] = keep
    for fid, rec in more.fixtures.items():
        fast.fixtures.setdefault(fid, rec)


def _write_json(path, base, fast, regressions, notes):
    if not path:
        return

    def dump(run):
        if run is None:
            return None
        return {"elapsed": run.elapsed, "counts": run.counts(),
                "tests": {t: {k: v for k, v in r.items() if k != "log_path"}
                          for t, r in run.records.items()},
                "fixtures": run.fixtures}
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"python": platform.python_version(),
                   "executable": sys.executable,
                   "stdlib": dump(base), "fastexec": dump(fast),
                   "regressions": regressions, "notes": notes}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
