#!/usr/bin/env python3
"""Run CPython's whole test_asyncio suite without and with fastexec.

Usage:
    python tools/asyncio_suite.py [options]

Uses the running interpreter, which must have fastexec installed, and the
``test.test_asyncio`` package that it ships.  On an interpreter that ships
none it prints "skipped: ..." and exits 0.

Two runs of every test module of the package, each with CPython's own runner
(``python -m test -jN --junit-xml ...``), in the same throw-away "shadow"
environment that tools/cpython_suite.py uses (see there: a .pth in it runs
tools/cpython_support/_fastexec_suite_hook.py at the start of every
interpreter, the regrtest workers and the tests' own children included):

  * baseline: the stdlib, untouched;
  * fastexec: ``concurrent.futures.ThreadPoolExecutor`` (and
    ``concurrent.futures.thread.ThreadPoolExecutor``) replaced by
    ``fastexec.ThreadPoolExecutor`` *and* ``fastexec.install()`` in effect,
    both from before the suite imports anything (so every loop's default
    executor is a fastexec pool and ``run_in_executor`` / ``to_thread`` take
    fastexec's fast path).  A preflight checks, in an ``-I`` child, that this
    is so.

The results are compared per test id (from the JUnit XML): a test that does
not pass in the baseline is not compared (not fastexec's); a test that passes
in the baseline but fails, errors, is skipped or does not run with fastexec
is a regression.  Each regression is re-run once, alone (``-j0``,
``--matchfile``), with fastexec: if it passes then, it is reported as
"intermittent" and, like regrtest's own re-run, not counted as failed (the
machine is shared and the suite is timing-sensitive); if it fails again it
counts.  Test modules whose interpreter died or hung (no results in the XML)
count as a regression for each of their tests that passed in the baseline.

The last line is "N passed, M failed": N tests passed with fastexec, M are
regressions.  Exit status 0 no regression, 1 regressions, 2 the comparison
could not be made (the baseline itself broke).

Options: -j N (default 2), --timeout S (per test module, default 300),
--run-timeout S (each whole run, default 1200), --module NAME (only these
test modules, e.g. test_tasks; repeatable), --json FILE, --keep-tmp.
"""

import argparse
import json
import os
import pkgutil
import platform
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cpython_suite as _cs  # noqa: E402  (the shadow environment, helpers)

PACKAGE = "test.test_asyncio"
SHORT = "test_asyncio"

PREFLIGHT = r"""
import json, sys
info = {}
try:
    import asyncio, concurrent.futures as cf, concurrent.futures.thread as cft
    import fastexec
    info["hook"] = "_fastexec_suite_hook" in sys.modules
    info["installed"] = fastexec.installed()
    info["pool"] = (cf.ThreadPoolExecutor is fastexec.ThreadPoolExecutor and
                    cft.ThreadPoolExecutor is fastexec.ThreadPoolExecutor)
    loop = asyncio.new_event_loop()
    try:
        info["result"] = loop.run_until_complete(
            asyncio.wait_for(loop.run_in_executor(None, pow, 2, 10), 60))
        ex = loop._default_executor
        info["default"] = "%s.%s" % (type(ex).__module__, type(ex).__qualname__)
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    info["version"] = getattr(fastexec, "__version__", "?")
except BaseException:
    import traceback
    info["error"] = traceback.format_exc()
print(json.dumps(info))
"""


say = _cs.say


def preflight(shadow, workdir):
    """Check in an -I child that fastexec is what the fastexec run tests."""
    info, error, _ = _cs.run_preflight(shadow, PREFLIGHT,
                                       _cs.clean_env("install"), workdir)
    if error:
        return info, error
    problems = []
    if not info.get("hook"):
        problems.append("the start-up hook did not run")
    if not info.get("installed"):
        problems.append("fastexec.installed() is false")
    if not info.get("pool"):
        problems.append("concurrent.futures.ThreadPoolExecutor is not "
                        "fastexec's")
    if info.get("default") != "fastexec.ThreadPoolExecutor":
        problems.append("the loop's default executor is %s"
                        % info.get("default"))
    if info.get("result") != 1024:
        problems.append("run_in_executor returned %r" % info.get("result"))
    return info, "; ".join(problems) or None


def test_modules(only):
    import importlib
    pkg = importlib.import_module(PACKAGE)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                   if m.name.startswith("test_"))
    if only:
        wanted = set(n if n.startswith("test_") else "test_" + n
                     for n in only)
        names = [n for n in names if n in wanted]
    return ["%s.%s" % (SHORT, n) for n in names]


class Run:
    def __init__(self, mode):
        self.mode = mode
        self.records = {}      # test id -> {"outcome", "message", "text"}
        self.modules = set()   # modules with at least one result
        self.elapsed = 0.0
        self.killed = None
        self.rc = None
        self.log = None

    def counts(self):
        return _cs.count_outcomes(self.records)

    def summary(self):
        c = self.counts()
        return "%d tests in %.0fs: %s%s" % (
            len(self.records), self.elapsed,
            ", ".join("%d %s" % (c[k], k) for k in ("pass", "fail", "skip")
                      if c.get(k)) or "nothing ran",
            "; run killed: %s" % self.killed if self.killed else "")


_RANK = {"pass": 0, "skip": 1, "fail": 2}


def parse_junit(path, run):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        return "cannot read %s: %s" % (path, exc)
    for tc in root.iter("testcase"):
        name = tc.get("name") or ""
        # A subtest's result is reported as "<test id> (<params>)".
        tid = name.split(" ", 1)[0]
        outcome, message, text = "pass", None, None
        for child in tc:
            if child.tag in ("failure", "error"):
                outcome = "fail"
                message = child.get("message")
                text = child.text
                break
            if child.tag == "skipped":
                outcome = "skip"
                message = child.text or child.get("message")
        if tc.get("status") == "notrun" and outcome == "pass":
            outcome = "skip"
        old = run.records.get(tid)
        if old is None or _RANK[outcome] > _RANK[old["outcome"]]:
            run.records[tid] = {"outcome": outcome, "message": message,
                                "text": text}
        parts = tid.split(".")
        if len(parts) > 3:
            run.modules.add(".".join(parts[1:3]))
    return None


def run_regrtest(shadow, mode, modules, workdir, tag, jobs, timeout,
                 run_timeout, matchfile=None):
    run = Run(mode)
    xml = os.path.join(workdir, tag + ".xml")
    run.log = os.path.join(workdir, tag + ".log")
    tmp = os.path.join(workdir, tag + "-tmp")
    os.makedirs(tmp, exist_ok=True)
    cmd = [shadow.python, "-X", "faulthandler", "-m", "test",
           "-j%d" % jobs, "--timeout", str(timeout), "--junit-xml", xml,
           "--tempdir", tmp]
    if matchfile:
        cmd += ["--matchfile", matchfile]
    cmd += modules
    t0 = time.monotonic()
    with open(run.log, "wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=workdir,
                                env=_cs.clean_env(mode),
                                start_new_session=True)
        try:
            run.rc = proc.wait(timeout=run_timeout)
        except subprocess.TimeoutExpired:
            run.killed = "the run took longer than %gs" % run_timeout
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            run.rc = proc.wait()
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            raise
    run.elapsed = time.monotonic() - t0
    err = parse_junit(xml, run)
    if err and not run.killed:
        run.killed = err
    return run


def module_of(tid):
    parts = tid.split(".")
    return ".".join(parts[1:3]) if len(parts) > 3 else tid


def log_lines_about(run, module, limit=40):
    """The runner's lines that name `module` (crash, timeout, env changed)."""
    out = []
    try:
        with open(run.log, errors="replace") as f:
            for line in f:
                if module in line:
                    out.append(line.rstrip())
    except OSError:
        pass
    return out[-limit:]


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-j", "--jobs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=300,
                   help="per test module (regrtest --timeout), seconds")
    p.add_argument("--run-timeout", type=float, default=1200,
                   help="each whole run, seconds")
    p.add_argument("--module", action="append",
                   help="only this test module (e.g. test_tasks); repeatable")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args(argv)

    say("Python %s (%s)" % (platform.python_version(), sys.executable))
    try:
        import importlib.util
        ships = importlib.util.find_spec(PACKAGE) is not None
    except ImportError:
        ships = False
    if not ships:
        say("skipped: this Python ships no %s, nothing to compare" % PACKAGE)
        return 0
    return _cs.run_in_tmp("fastexec-asyncio-suite-", args.keep_tmp,
                          lambda tmp: _main(args, tmp))


def _main(args, tmp):
    shadow = _cs.Shadow(os.path.join(tmp, "env"))
    try:
        shadow.create()
    except Exception as exc:
        say("error: cannot create the shadow environment: %s" % exc)
        return 2
    work = os.path.join(tmp, "work")
    os.makedirs(work)
    modules = test_modules(args.module)
    if not modules:
        say("error: no test module selected")
        return 2
    info, err = preflight(shadow, work)
    if err:
        say("error: fastexec is not in effect in the fastexec run's "
            "interpreters:\n" + _cs.indent(err))
        say("0 passed, 1 failed")
        return 1
    say("%s: %d test modules, -j%d; fastexec %s: install() + pool replaced"
        % (PACKAGE, len(modules), args.jobs, info.get("version")))

    say("[stdlib]   running ...")
    base = run_regrtest(shadow, "stdlib", modules, work, "stdlib", args.jobs,
                        args.timeout, args.run_timeout)
    say("[stdlib]   " + base.summary())
    if not base.records:
        say("error: the baseline run produced no results:\n"
            + _cs.indent(tail(base.log)))
        return 2
    say("[fastexec] running ...")
    fast = run_regrtest(shadow, "install", modules, work, "fastexec",
                        args.jobs, args.timeout, args.run_timeout)
    say("[fastexec] " + fast.summary())

    def passes(run, tid):
        rec = run.records.get(tid)
        return rec is not None and rec["outcome"] == "pass"

    regressions = sorted(t for t in base.records
                         if passes(base, t) and not passes(fast, t))
    notes = {}
    flaky = []
    if regressions:
        say("[fastexec] re-running %d failing test(s) once, alone"
            % len(regressions))
        matchfile = os.path.join(work, "rerun.match")
        with open(matchfile, "w") as f:
            f.write("\n".join(regressions) + "\n")
        mods = sorted(set(module_of(t) for t in regressions))
        again = run_regrtest(shadow, "install", mods, work, "fastexec-rerun",
                             0, args.timeout, args.run_timeout,
                             matchfile=matchfile)
        for t in regressions:
            if passes(again, t):
                flaky.append(t)
                notes[t] = "intermittent: passed when re-run alone"
            else:
                rec = again.records.get(t)
                notes[t] = "fails again when re-run alone (%s)" % (
                    rec["outcome"] if rec else "no result")
    failed = [t for t in regressions if t not in flaky]

    say("")
    say("=" * 78)
    say("Python %s, %s (-j%d)" % (platform.python_version(), PACKAGE,
                                   args.jobs))
    say("  stdlib:   " + base.summary())
    say("  fastexec: " + fast.summary())
    base_bad = sorted(t for t, r in base.records.items()
                      if r["outcome"] == "fail")
    if base_bad:
        say("Failing without fastexec too (not compared): %d" % len(base_bad))
        for t in base_bad:
            say("  " + t)
    no_base = sorted(set(module_of(t) for t in fast.records) -
                     set(module_of(t) for t in base.records))
    if no_base:
        say("Test modules with no result without fastexec (not compared): "
            + ", ".join(no_base))
        for m in no_base:
            say(_cs.indent("\n".join(log_lines_about(base, m))))
    if flaky:
        say("")
        say("Intermittent with fastexec (failed in the suite, passed alone; "
            "not counted):")
        for t in flaky:
            rec = fast.records.get(t)
            say("  %s: %s" % (t, (rec or {}).get("message") or "not run"))
    lost_modules = sorted(set(module_of(t) for t in failed
                              if t not in fast.records))
    say("")
    if failed:
        say("REGRESSIONS: %d test(s) pass without fastexec but not with it:"
            % len(failed))
        for t in failed:
            rec = fast.records.get(t)
            if rec is None:
                say("  NOT RUN: %s  [%s]" % (t, notes.get(t, "")))
                continue
            say("  %s: %s  [%s]" % (rec["outcome"].upper(), t,
                                    notes.get(t, "")))
            if rec.get("text"):
                say(_cs.indent(rec["text"].rstrip()[-3000:]))
        for m in lost_modules:
            say("  module %s has results missing with fastexec; the "
                "runner said:" % m)
            say(_cs.indent("\n".join(log_lines_about(fast, m)) or
                           tail(fast.log)))
    else:
        say("No regression: every test of %s that passes without fastexec "
            "passes with it." % PACKAGE)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(),
                       "stdlib": base.records, "fastexec": fast.records,
                       "regressions": failed, "intermittent": flaky,
                       "notes": notes, "elapsed": [base.elapsed,
                                                   fast.elapsed]}, f,
                      indent=1)
    n_passed = sum(1 for t in fast.records if passes(fast, t))
    say("%d passed, %d failed" % (n_passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
