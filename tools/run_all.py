#!/usr/bin/env python3
"""Install the test dependencies and run every test, on every CPython here.

    python3 tools/run_all.py                      # all of it (what CI runs)
    python3 tools/run_all.py --only 3.13 --no-sanitize    # a quicker run
    python3 tools/run_all.py --only 3.14d --stage refcount  # one stage

Interpreters: every CPython 3.9 or newer found as
  * the paths in $FASTEXEC_PYTHONS (separated by ':' or spaces; first),
  * pyenv's (``$(pyenv root)/versions/*/bin/python``, the newest patch
    release of each), then
  * ``python3.X`` / ``python3.Xd`` on PATH;
one per label ("3.13"; "3.14d" for a debug build, Py_DEBUG; "3.14t" for a
free-threaded one).  Supported: 3.9 to 3.15.

Stages, per interpreter (after a fresh venv and ``pip install .[test]``):
  pytest            the pytest suite (with ``-W error`` on 3.14 and newer);
  refcount          debug builds only: tests/refcount_check.py
                    (``sys.gettotalrefcount()`` flat over every path);
  threadpool-suite  CPython's test.test_concurrent_futures thread-pool tests,
                    stdlib pool vs ours (tools/cpython_suite.py);
  asyncio-suite     CPython's whole test_asyncio, stdlib vs install() + our
                    pool, -j2 (tools/asyncio_suite.py), on 3.9, 3.13, 3.14
                    and 3.15 (--asyncio-on; each version costs CI 2-5 min);
  sanitize          on one Python (3.12 if here): the pytest suite again with
                    the extension built with ASan + UBSan;
and once:
  gil-disabled      the C compiled with -DPy_GIL_DISABLED=1 -Werror against
                    the headers of each CPython 3.13+ here (no free-threaded
                    build is at hand, so a compile check only);
  packaging         an sdist and a wheel; the sdist installs into a clean venv.
The CPython suites do not run on debug builds (their release twin runs them),
and there the pytest suite leaves out tests/test_*leak*.py (200,000 calls per
path are minutes at Py_DEBUG speed; the refcount stage checks leaks there).

Ends with a summary (each interpreter; each stage with its wall time, or why
it did not run; the total) and one line ``N passed, M failed``; exits
non-zero on any failure.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, "tools")
MIN_VERSION = (3, 9)
SUPPORTED = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
# test_asyncio twice takes 2-5 minutes per version on the 2-core CI machine.
ASYNCIO_ON = ["3.9", "3.13", "3.14", "3.15"]
PER_PYTHON_STAGES = ["pytest", "refcount", "threadpool-suite",
                     "asyncio-suite", "sanitize"]
GLOBAL_STAGES = ["gil-disabled", "packaging"]
STAGES = PER_PYTHON_STAGES + GLOBAL_STAGES
# The C flags of setup.py, plus -Werror, for the free-threaded compile check.
CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-Wno-cast-function-type",
          "-O2", "-fPIC", "-Werror"]

PROBE = r"""
import importlib.util, json, sys, sysconfig
def has(m):
    try:
        return importlib.util.find_spec(m) is not None
    except ImportError:
        return False
print(json.dumps({
    "version": list(sys.version_info[:3]),
    "full": sys.version.split()[0],
    "impl": sys.implementation.name,
    "debug": hasattr(sys, "gettotalrefcount"),
    "ft": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "include": sysconfig.get_paths().get("include"),
    "futures_tests": has("test.test_concurrent_futures"),
    "asyncio_tests": has("test.test_asyncio"),
}))
"""


class Interp:
    def __init__(self, path, source, info):
        self.path = path
        self.source = source
        self.version = tuple(info["version"])
        self.full = info["full"]
        self.debug = info["debug"]
        self.ft = info["ft"]
        self.include = info["include"]
        self.futures_tests = info["futures_tests"]
        self.asyncio_tests = info["asyncio_tests"]
        self.minor = "%d.%d" % self.version[:2]
        self.label = self.minor + ("t" if self.ft else "") + \
            ("d" if self.debug else "")

    def sort_key(self):
        return (self.version[:2], self.ft, self.debug)


def probe(path):
    try:
        out = subprocess.run([path, "-c", PROBE], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        info = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None
    if info.get("impl") != "cpython":
        return None
    return info


def candidates():
    """(path, source) in order of preference."""
    for p in re.split(r"[:\s]+", os.environ.get("FASTEXEC_PYTHONS", "")):
        if p:
            yield p, "FASTEXEC_PYTHONS"
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.path.expanduser("~/.pyenv")

    def patch_key(p):
        return [int(x) for x in re.findall(r"\d+", p.split("/")[-3])]
    found = glob.glob(os.path.join(root, "versions", "3.*", "bin", "python"))
    for p in sorted(found, key=patch_key, reverse=True):
        yield p, "pyenv"
    for minor in range(MIN_VERSION[1], 30):
        for suffix in ("", "d", "t"):
            p = shutil.which("python3.%d%s" % (minor, suffix))
            if p:
                yield p, "PATH"


def find_pythons(only):
    found = {}
    notes = []
    for path, source in candidates():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            if source == "FASTEXEC_PYTHONS":
                notes.append("%s (from %s): not an executable file"
                             % (path, source))
            continue
        info = probe(path)
        if info is None:
            if source == "FASTEXEC_PYTHONS":
                notes.append("%s (from %s): does not run as CPython"
                             % (path, source))
            continue
        it = Interp(path, source, info)
        if it.version[:2] < MIN_VERSION:
            continue
        if it.label in found:
            continue
        if only and it.label not in only:
            continue
        found[it.label] = it
    pythons = sorted(found.values(), key=Interp.sort_key)
    return pythons, notes


# ---------------------------------------------------------------------------
# Running commands, recording stages
# ---------------------------------------------------------------------------

def run(cmd, log, env=None, timeout=None, cwd=REPO):
    t = time.monotonic()
    print("$ " + " ".join(cmd), flush=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            p = subprocess.run(cmd, cwd=cwd, env=env, stdout=f,
                               stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            f.write("\n*** timed out after %s s\n" % timeout)
            rc = -1
    print("  -> exit %s in %.0f s" % (rc, time.monotonic() - t), flush=True)
    return rc


def tail(path, n=60):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return "(no log)"
    return "".join(lines[-n:])


class Stage:
    def __init__(self, python, name):
        self.python = python       # a label, or "" for a global stage
        self.name = name
        self.seconds = None
        self.status = "not run"    # "ok", "FAILED", "not run"
        self.detail = ""
        self.passed = 0
        self.failed = 0


class Report:
    def __init__(self):
        self.stages = []
        self.problems = []
        self.t0 = time.monotonic()

    def skip(self, python, name, why):
        s = Stage(python, name)
        s.detail = why
        self.stages.append(s)
        print("--- %s %s: not run: %s" % (python or "all", name, why),
              flush=True)
        return s

    def start(self, python, name):
        s = Stage(python, name)
        s._t = time.monotonic()
        self.stages.append(s)
        print("\n=== %s %s ===" % (python or "all", name), flush=True)
        return s

    def finish(self, s, passed, failed, detail="", problem=None):
        s.seconds = time.monotonic() - s._t
        s.passed, s.failed = passed, failed
        s.status = "FAILED" if failed or problem else "ok"
        if problem and not failed:
            s.failed = 1
        s.detail = detail
        if problem:
            self.problems.append("%s %s: %s" % (s.python or "all", s.name,
                                                problem))
        print("--- %s %s: %s in %.0f s %s" % (s.python or "all", s.name,
                                              s.status, s.seconds, detail),
              flush=True)


def fmt_time(sec):
    if sec is None:
        return "-"
    sec = int(round(sec))
    return "%dm%02ds" % divmod(sec, 60) if sec >= 60 else "%ds" % sec


# ---------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------

def junit_counts(path):
    """(passed, failed) from a pytest junit XML file."""
    if not os.path.exists(path):
        return 0, 0
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return 0, 0
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = fails = skips = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        fails += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skips += int(s.get("skipped", 0))
    return tests - fails - skips, fails


def stage_pytest(rep, it, name, vpy, xml, log, env, timeout, args, note=""):
    s = rep.start(it.label, name)
    rc = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
              "--junitxml", xml] + args, log, env, timeout)
    p, f = junit_counts(xml)
    problem = None
    if rc != 0:
        problem = "pytest exit %s; log %s:\n%s" % (rc, log, tail(log))
    rep.finish(s, p, f, "%d passed, %d failed%s%s" % (
        p, f, " (-W error)" if "error" in args[:2] else "", note), problem)


def last_counts(log):
    m = None
    try:
        with open(log, errors="replace") as fh:
            for line in fh:
                mm = re.match(r"^(\d+) passed, (\d+) failed\s*$", line.strip())
                if mm:
                    m = mm
    except OSError:
        pass
    return (int(m.group(1)), int(m.group(2))) if m else None


def skipped_line(log):
    try:
        with open(log, errors="replace") as fh:
            for line in fh:
                if line.startswith("skipped: "):
                    return line[len("skipped: "):].strip()
    except OSError:
        pass
    return None


def stage_cpython(rep, it, name, script, vpy, log, env, timeout, extra=()):
    s = rep.start(it.label, name)
    rc = run([vpy, os.path.join(TOOLS, script)] + list(extra), log, env,
             timeout)
    counts = last_counts(log)
    p, f = counts or (0, 0)
    problem = None
    if rc != 0:
        problem = "%s exit %s; log %s:\n%s" % (script, rc, log, tail(log, 80))
    elif counts is None:
        why = skipped_line(log)
        if why:
            # The driver checks what the interpreter ships before it starts
            # this stage, so this is a surprise: say so, as a failure.
            problem = "the suite skipped itself: %s" % why
    rep.finish(s, p, f, "%d passed, %d regressions" % (p, f), problem)


def stage_sanitize(rep, it, vpy, work, env, timeout, pytest_args):
    s = rep.start(it.label, "sanitize")
    slog = os.path.join(work, "sanitize-%s.txt" % it.label)
    senv = dict(env, FASTEXEC_SANITIZE="1")
    if run([vpy, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
            "."], slog, senv, 1200) != 0:
        rep.finish(s, 0, 1, "build failed",
                   "sanitizer build failed:\n" + tail(slog))
        return
    libasan = subprocess.run(["cc", "-print-file-name=libasan.so"],
                             capture_output=True, text=True).stdout.strip()
    renv = dict(env, LD_PRELOAD=libasan,
                ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                FASTEXEC_SANITIZED="1")
    xml = os.path.join(work, "junit-sanitize-%s.xml" % it.label)
    rc = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
              "--junitxml", xml, "tests"] + pytest_args, slog, renv, timeout)
    p, f = junit_counts(xml)
    # Leave the venv with a normal build.
    run([vpy, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
         "."], slog, env, 1200)
    rep.finish(s, p, f, "%d passed, %d failed" % (p, f),
               "pytest exit %s:\n%s" % (rc, tail(slog)) if rc else None)


GIL_PROBE = r"""
#include <Python.h>
#include <stddef.h>
#ifndef Py_GIL_DISABLED
#error "Py_GIL_DISABLED is not in effect"
#endif
/* The free-threaded object header (ob_tid first) is what is compiled. */
_Static_assert(offsetof(PyObject, ob_tid) == 0, "free-threaded layout");
"""


def c_sources():
    src = os.path.join(REPO, "src")
    files = []
    for dirpath, _dirs, names in os.walk(src):
        files += [os.path.join(dirpath, n) for n in names if n.endswith(".c")]
    incs = sorted(set(os.path.dirname(f) for f in glob.glob(
        os.path.join(src, "**", "*.h"), recursive=True))) or [src]
    return sorted(files), incs


def stage_gil_disabled(rep, pythons, work):
    targets = [it for it in pythons
               if it.version[:2] >= (3, 13) and not it.debug]
    if not targets:
        rep.skip("", "gil-disabled", "no CPython 3.13 or newer here")
        return
    cc = os.environ.get("CC", "cc")
    for it in targets:
        s = rep.start(it.label, "gil-disabled")
        log = os.path.join(work, "gil-disabled-%s.txt" % it.label)
        if not it.include or not os.path.exists(
                os.path.join(it.include, "Python.h")):
            rep.finish(s, 0, 1, "no headers", "no Python.h in %s"
                       % it.include)
            continue
        files, incs = c_sources()
        probe_c = os.path.join(work, "gil-probe.c")
        with open(probe_c, "w") as f:
            f.write(GIL_PROBE)
        base = [cc] + CFLAGS + ["-DPy_GIL_DISABLED=1", "-I" + it.include] + \
            ["-I" + d for d in incs]
        bad = []
        for c in [probe_c] + files:
            if run(base + ["-c", c, "-o", os.devnull], log, None, 300) != 0:
                bad.append(os.path.relpath(c, REPO) if c != probe_c
                           else "the Py_GIL_DISABLED probe")
        rep.finish(s, len(files) + 1 - len(bad), len(bad),
                   "%d C files%s, -DPy_GIL_DISABLED=1 -Werror, %s headers"
                   % (len(files), (": %s failed" % ", ".join(bad)) if bad
                      else " compile", it.full),
                   ("compile errors; log %s:\n%s" % (log, tail(log)))
                   if bad else None)


def stage_packaging(rep, pythons, venvs, work, env):
    """An sdist and a wheel build; the sdist installs into a clean venv."""
    usable = [it for it in pythons if it.label in venvs and not it.debug]
    if not usable:
        rep.skip("", "packaging", "no interpreter with a working venv")
        return
    it = next((i for i in usable if i.label == "3.11"), usable[-1])
    s = rep.start(it.label, "packaging")
    vpy = venvs[it.label]
    log = os.path.join(work, "packaging.txt")
    dist = os.path.join(work, "dist")
    shutil.rmtree(dist, ignore_errors=True)
    clean = os.path.join(work, "venv-clean")

    def fail(what):
        rep.finish(s, 0, 1, what, "%s; log %s:\n%s" % (what, log, tail(log)))

    if run([vpy, "-m", "pip", "install", "-q", "build"], log, env, 600) != 0:
        return fail("pip install build failed")
    if run([vpy, "-m", "build", "--sdist", "--wheel", "--outdir", dist, REPO],
           log, env, 900) != 0:
        return fail("python -m build failed")
    sdists = glob.glob(os.path.join(dist, "*.tar.gz"))
    if not sdists or not glob.glob(os.path.join(dist, "*.whl")):
        return fail("no sdist or no wheel")
    with open(log, errors="replace") as f:
        # setuptools' deprecations, and its "would be ignored" warning about
        # a directory it takes for a package missing from `packages`.
        warned = [ln.strip() for ln in f if "SetuptoolsDeprecationWarning" in ln
                  or "License classifiers are deprecated" in ln
                  or "is absent from the `packages` configuration" in ln]
    if warned:
        return fail("the build warns: " + warned[0])
    if run([it.path, "-m", "venv", "--clear", clean], log, env) != 0:
        return fail("venv failed")
    cpy = os.path.join(clean, "bin", "python")
    if run([cpy, "-m", "pip", "install", "-q", sdists[0]], log, env, 900) != 0:
        return fail("the sdist does not install")
    smoke = ("import fastexec, asyncio\n"
             "p = fastexec.ThreadPoolExecutor(2)\n"
             "assert p.submit(pow, 2, 8).result() == 256\n"
             "async def main():\n"
             "    return await asyncio.wait_for(p.run(abs, -3), 10)\n"
             "assert asyncio.run(main()) == 3\n"
             "p.shutdown()\n"
             "print('sdist install OK')\n")
    if run([cpy, "-c", smoke], log, env, 120, cwd=work) != 0:
        return fail("the installed sdist does not work")
    rep.finish(s, 1, 0, "sdist + wheel; the sdist installs and runs")


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append",
                    help="an interpreter label such as 3.13 or 3.14d "
                         "(repeatable)")
    ap.add_argument("--stage", action="append", choices=STAGES,
                    help="run only this stage (repeatable; the venv is "
                         "made as needed)")
    ap.add_argument("--no-sanitize", action="store_true")
    ap.add_argument("--no-cpython-suite", action="store_true",
                    help="skip both CPython suites")
    ap.add_argument("--asyncio-jobs", type=int, default=2,
                    help="regrtest -j for the asyncio suite (default 2)")
    ap.add_argument("--asyncio-on", default=",".join(ASYNCIO_ON),
                    help="the versions whose test_asyncio runs, comma-"
                         "separated, or 'all' (default %(default)s: the "
                         "oldest, the two newest and 3.13, to keep CI "
                         "under an hour)")
    ap.add_argument("--workdir", help="where the venvs go (default: a temp dir)")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = ap.parse_args()
    stages = set(args.stage or STAGES)
    if args.no_sanitize:
        stages.discard("sanitize")
    if args.no_cpython_suite:
        stages -= {"threadpool-suite", "asyncio-suite"}

    asyncio_on = [x.strip() for x in args.asyncio_on.split(",") if x.strip()]
    rep = Report()
    pythons, notes = find_pythons(args.only)
    for n in notes:
        print("note: " + n)
    if not pythons:
        print("no CPython 3.9 or newer found")
        print("0 passed, 1 failed")
        return 1
    work = os.path.abspath(args.workdir or
                           tempfile.mkdtemp(prefix="fastexec-tests-"))
    os.makedirs(work, exist_ok=True)
    print("CPythons:")
    for it in pythons:
        print("  %-6s %-8s %s (%s)" % (it.label, it.full, it.path, it.source))
    print("work dir: " + work, flush=True)

    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONFAULTHANDLER="1")
    env.pop("PYTHONPATH", None)
    release = [it for it in pythons if not it.debug]
    sanitize_on = None
    if "sanitize" in stages and release:
        sanitize_on = next((it.label for it in release if it.label == "3.12"),
                           release[-1].label)
    venvs = {}
    need_venv = stages & set(PER_PYTHON_STAGES + ["packaging"])

    for it in pythons if need_venv else []:
        v = it.label
        venv = os.path.join(work, "venv-" + v)
        log = os.path.join(work, "log-%s.txt" % v)
        vpy = os.path.join(venv, "bin", "python")
        s = rep.start(v, "install")
        if run([it.path, "-m", "venv", "--clear", venv], log, env) != 0 or \
           run([vpy, "-m", "pip", "install", "-q", "--upgrade", "pip"], log,
               env, 600) != 0 or \
           run([vpy, "-m", "pip", "install", "-q", "--force-reinstall",
                ".[test]"], log, env, 1800) != 0:
            rep.finish(s, 0, 1, "venv + pip install .[test] failed",
                       "install failed:\n" + tail(log))
            continue
        rep.finish(s, 0, 0, "venv + pip install .[test]")
        venvs[v] = vpy

        if "pytest" in stages:
            extra = list(args.pytest_args)
            if it.version[:2] >= (3, 14):
                extra = ["-W", "error"] + extra
            note = ""
            if it.debug:
                # 200,000 calls per path take minutes at Py_DEBUG speed and
                # hit the tests' time limits; the refcount stage checks
                # leaks there instead.
                # And the wheel tests: manylinux wheels (and the sdist
                # check that goes with them) are built by release CPythons;
                # tools/build_wheels.sh refuses a debug build.
                leaks = sorted(glob.glob(os.path.join(
                    REPO, "tests", "**", "test_*leak*.py"), recursive=True)
                    + [os.path.join(REPO, "tests", "test_wheels.py")])
                extra += ["--ignore=" + os.path.relpath(p, REPO)
                          for p in leaks]
                note = ", without %s (debug build)" % ", ".join(
                    os.path.basename(p) for p in leaks)
            stage_pytest(rep, it, "pytest", vpy,
                         os.path.join(work, "junit-%s.xml" % v), log, env,
                         3600 if it.debug else 1800, extra + ["tests"], note)

        if "refcount" in stages:
            if it.debug:
                stage_pytest(rep, it, "refcount", vpy,
                             os.path.join(work, "junit-refcount-%s.xml" % v),
                             log, env, 1800,
                             [os.path.join("tests", "refcount_check.py")])
            else:
                rep.skip(v, "refcount", "a release build (no "
                         "sys.gettotalrefcount); runs on debug builds")

        for name, script, has, extra in (
                ("threadpool-suite", "cpython_suite.py", it.futures_tests,
                 ()),
                ("asyncio-suite", "asyncio_suite.py", it.asyncio_tests,
                 ("-j%d" % args.asyncio_jobs,))):
            if name not in stages:
                continue
            pkg = ("test.test_concurrent_futures" if name.startswith("thread")
                   else "test.test_asyncio")
            if it.debug:
                rep.skip(v, name, "a debug build: the CPython suites run on "
                         "the release builds")
            elif not has:
                rep.skip(v, name, "this Python ships no %s" % pkg)
            elif name == "asyncio-suite" and asyncio_on != ["all"] and \
                    it.minor not in asyncio_on:
                rep.skip(v, name, "only on %s (--asyncio-on; CI time)"
                         % ", ".join(asyncio_on))
            else:
                stage_cpython(rep, it, name, script, vpy,
                              os.path.join(work, "%s-%s.txt" % (name, v)),
                              env, 2400, extra)

        if "sanitize" in stages and v == sanitize_on:
            stage_sanitize(rep, it, vpy, work, env, 2400,
                           list(args.pytest_args))

    if "gil-disabled" in stages:
        stage_gil_disabled(rep, pythons, work)
    if "packaging" in stages:
        if not args.only or len(args.only) > 1 or args.stage:
            stage_packaging(rep, pythons, venvs, work, env)
        else:
            rep.skip("", "packaging", "--only with one interpreter")

    return summary(rep, pythons, stages, work)


def summary(rep, pythons, stages, work):
    total = time.monotonic() - rep.t0
    for p in rep.problems:
        print("\n--- problem: " + p)
    print("\n" + "=" * 78)
    print("Interpreters:")
    for it in pythons:
        print("  %-6s %-8s %s (%s)" % (it.label, it.full, it.path, it.source))
    missing = [v for v in SUPPORTED if not any(it.minor == v for it in pythons)]
    if missing:
        print("  supported but not here: " + ", ".join(missing))
    print("Stages (wall time; the machine may be shared):")
    for s in rep.stages:
        print("  %-6s %-17s %7s  %-7s %s" % (s.python or "all", s.name,
                                             fmt_time(s.seconds), s.status,
                                             s.detail))
    print("Total: %s (work dir %s)" % (fmt_time(total), work))
    passed = sum(s.passed for s in rep.stages)
    failed = sum(s.failed for s in rep.stages)
    print("\n%d passed, %d failed" % (passed, failed))
    return 1 if failed or rep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
