"""Child-process runner for tools/cpython_suite.py (not a test module).

Run by the harness with the shadow environment's interpreter:

    python run_cpython_tests.py --mode {stdlib,fastexec} --events FILE
        [--only IDS_FILE] [--per-test-timeout SECONDS] [--list]

It imports CPython's test.test_concurrent_futures (the 3.9/3.10 module or the
3.13+ package), checks that the pool under test is the one the mode asks for,
selects the thread-pool-related test classes, and runs them with unittest,
writing one JSON object per line to FILE as it goes (flushed and fsynced, so
that the harness knows which test was running if this process hangs or
dies).  Each test is guarded like ``python -m test --timeout``: faulthandler
dumps every thread's traceback and exits the process if a single test runs
longer than --per-test-timeout.
"""

import argparse
import faulthandler
import importlib
import inspect
import json
import os
import pkgutil
import sys
import time
import traceback
import unittest

PACKAGE = "test.test_concurrent_futures"

# Pool-independent test classes that are included as well (they exercise
# concurrent.futures.Future and must pass either way).
POOL_INDEPENDENT_CLASSES = ("FutureTests",)


class Events:
    def __init__(self, path):
        self._f = open(path, "a", encoding="utf-8")

    def write(self, **event):
        event.setdefault("time", time.time())
        self._f.write(json.dumps(event) + "\n")
        self._f.flush()
        try:
            os.fsync(self._f.fileno())
        except OSError:
            pass


def _log_offset():
    """Current size of the log file that our stdout and stderr go to."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        return os.fstat(2).st_size
    except OSError:
        return None


def import_test_modules():
    pkg = importlib.import_module(PACKAGE)
    modules = [pkg]
    if hasattr(pkg, "__path__"):
        for info in sorted(pkgutil.iter_modules(pkg.__path__),
                           key=lambda m: m.name):
            if not info.name.startswith("test_"):
                continue
            modules.append(importlib.import_module(PACKAGE + "." + info.name))
    return modules


def is_thread_pool_class(cls):
    names = [c.__name__ for c in cls.__mro__]
    return "ThreadPoolMixin" in names or cls.__name__.startswith("ThreadPool")


def select_classes(modules):
    selected = []
    for mod in modules:
        for name, obj in list(vars(mod).items()):
            if not (inspect.isclass(obj) and issubclass(obj, unittest.TestCase)):
                continue
            if obj.__module__ != mod.__name__:
                continue  # imported from elsewhere, e.g. util.BaseTestCase
            if is_thread_pool_class(obj) or name in POOL_INDEPENDENT_CLASSES:
                selected.append(obj)
    return selected


def check_pool(mode, classes):
    """Return a list of problems: the pool under test is not the expected."""
    import concurrent.futures as cf
    import concurrent.futures.thread as cft
    problems = []
    if mode == "fastexec":
        import fastexec
        expected = fastexec.ThreadPoolExecutor
    else:
        expected = cft.__dict__["ThreadPoolExecutor"]
        if expected.__module__ != "concurrent.futures.thread":
            problems.append("stdlib run: concurrent.futures.thread."
                            "ThreadPoolExecutor is %r" % (expected,))
    for where, obj in (("concurrent.futures.ThreadPoolExecutor",
                        cf.ThreadPoolExecutor),
                       ("concurrent.futures.thread.ThreadPoolExecutor",
                        cft.ThreadPoolExecutor)):
        if obj is not expected:
            problems.append("%s is %r, expected %r" % (where, obj, expected))
    for cls in classes:
        et = getattr(cls, "executor_type", None)
        if et is not None and et is not expected:
            problems.append("%s.executor_type is %r, expected %r"
                            % (cls.__name__, et, expected))
    return problems


class StreamingResult(unittest.TestResult):
    def __init__(self, events, per_test_timeout):
        super().__init__()
        self.events = events
        self.per_test_timeout = per_test_timeout
        self._outcomes = []
        self._t0 = None
        self._support = None
        try:
            from test import support
            self._support = support
        except ImportError:
            pass

    # -- bookkeeping ------------------------------------------------------
    def _is_real_test(self, test):
        return isinstance(test, unittest.TestCase) and \
            hasattr(test, "_testMethodName")

    def _note(self, test, outcome, err=None, detail=None):
        text = None
        if err is not None:
            text = self._exc_info_to_string(err, test)
        elif detail is not None:
            text = detail
        if self._is_real_test(test) and self._t0 is not None:
            self._outcomes.append((outcome, text))
        else:
            # Errors in setUpModule/setUpClass/tearDownClass/module cleanups
            # are reported against an _ErrorHolder, outside start/stopTest.
            self.events.write(event="fixture", id=str(test.id()),
                              outcome=outcome, tb=text,
                              description=str(test))

    def startTest(self, test):
        super().startTest(test)
        self._outcomes = []
        if self._support is not None:
            self._support.environment_altered = False
        self.events.write(event="start", id=test.id(),
                          log_offset=_log_offset())
        self._t0 = time.monotonic()
        if self.per_test_timeout:
            faulthandler.dump_traceback_later(self.per_test_timeout,
                                              exit=True, file=sys.__stderr__)

    def stopTest(self, test):
        if self.per_test_timeout:
            faulthandler.cancel_dump_traceback_later()
        duration = time.monotonic() - self._t0
        self._t0 = None
        kinds = [o for o, _ in self._outcomes]
        tbs = [t for _, t in self._outcomes if t]
        if "error" in kinds:
            outcome = "error"
        elif "fail" in kinds:
            outcome = "fail"
        elif "skip" in kinds:
            outcome = "skip"
        elif "xfail" in kinds:
            outcome = "xfail"
        elif "uxpass" in kinds:
            outcome = "uxpass"
        elif "pass" in kinds:
            outcome = "pass"
        else:
            outcome = "error"
            tbs.append("no outcome was reported for this test")
        env_changed = bool(self._support is not None and
                           getattr(self._support, "environment_altered", False))
        self.events.write(event="end", id=test.id(), outcome=outcome,
                          tb="\n".join(tbs) or None, duration=duration,
                          env_changed=env_changed, log_offset=_log_offset())
        super().stopTest(test)

    # -- outcomes -----------------------------------------------------------
    def addSuccess(self, test):
        super().addSuccess(test)
        self._note(test, "pass")

    def addError(self, test, err):
        super().addError(test, err)
        self._note(test, "error", err=err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._note(test, "fail", err=err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) \
                else "error"
            self._note(test, kind, err=err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._note(test, "skip", detail="skipped: %s" % (reason,))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._note(test, "xfail", err=err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._note(test, "uxpass")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("stdlib", "fastexec"), required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--only", help="file with the test ids to run, one a line")
    p.add_argument("--per-test-timeout", type=float, default=0)
    p.add_argument("--list", action="store_true")
    args = p.parse_args()

    events = Events(args.events)
    faulthandler.enable(file=sys.__stderr__, all_threads=True)

    try:
        from test import support
        # Like ``python -m test`` without -v: quiet tests.  All resources
        # stay enabled (use_resources is None), so 'cpu' and 'walltime'
        # tests run.
        support.verbose = 0
    except ImportError:
        pass

    try:
        modules = import_test_modules()
    except unittest.SkipTest as exc:
        events.write(event="module_skip", reason=str(exc))
        return 0
    except Exception:
        events.write(event="harness_error",
                     message="cannot import %s" % PACKAGE,
                     tb=traceback.format_exc())
        return 3

    classes = select_classes(modules)
    try:
        problems = check_pool(args.mode, classes)
    except Exception:
        problems = ["checking the pool under test failed:\n"
                    + traceback.format_exc()]
    if problems:
        events.write(event="harness_error",
                     message="the pool under test is not the %s one"
                     % args.mode, tb="\n".join(problems))
        return 3

    loader = unittest.TestLoader()
    tests = []
    for cls in classes:
        tests.extend(loader.loadTestsFromTestCase(cls))
    if args.only:
        with open(args.only, encoding="utf-8") as f:
            wanted = set(line.strip() for line in f if line.strip())
        tests = [t for t in tests if t.id() in wanted]

    events.write(event="selected", ids=[t.id() for t in tests],
                 classes=["%s.%s" % (c.__module__, c.__name__)
                          for c in classes])
    if args.list:
        return 0

    suite = unittest.TestSuite(tests)
    result = StreamingResult(events, args.per_test_timeout)
    result.startTestRun()
    try:
        suite.run(result)
    finally:
        result.stopTestRun()
    events.write(event="done", testsRun=result.testsRun)
    # Flush our output before the interpreter-exit hooks (the pool's atexit
    # joins) run; a hang there is reported by the harness's run timeout.
    _log_offset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
