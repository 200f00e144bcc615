#!/usr/bin/env python3
"""Install the test dependencies and run every test, on every CPython here.

    python3 tools/run_all.py            # all of it (what CI runs)
    python3 tools/run_all.py --only 3.11 --no-sanitize   # a quicker local run

For each CPython 3.9-3.13 found (under `pyenv root`, else python3.X on PATH):
a fresh venv, `pip install .[test]` (which builds the extension), the pytest
suite, and CPython's own thread-pool tests run against fastexec
(tools/cpython_suite.py).  Then, on one Python, the whole pytest suite again
with the extension built with AddressSanitizer + UndefinedBehaviorSanitizer.
Ends with one line `N passed, M failed` and exits non-zero on any failure.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def find_pythons(only):
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.path.expanduser("~/.pyenv")
    found = {}
    for v in VERSIONS:
        if only and v not in only:
            continue
        cands = glob.glob(os.path.join(root, "versions", v + ".*", "bin", "python"))
        cands = [c for c in cands if re.search(r"/%s\.\d+/bin/python$" % re.escape(v), c)]
        cands.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/")[-3])])
        if cands:
            found[v] = cands[-1]
        elif shutil.which("python" + v):
            found[v] = shutil.which("python" + v)
    return found


def run(cmd, log, env=None, timeout=None, cwd=REPO):
    t = time.monotonic()
    print("$ " + " ".join(cmd), flush=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            p = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            f.write("\n*** timed out after %s s\n" % timeout)
            rc = -1
    print("  -> exit %s in %.0f s" % (rc, time.monotonic() - t), flush=True)
    return rc


def junit_counts(path):
    """(passed, failed) from a pytest junit XML file."""
    if not os.path.exists(path):
        return 0, 0
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = fails = skips = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        fails += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skips += int(s.get("skipped", 0))
    return tests - fails - skips, fails


def run_pytest(vpy, label, xml, log, env, timeout, extra, problems):
    """The pytest suite once; returns (passed, failed) and notes a problem."""
    rc = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
              "--junitxml", xml, "tests"] + extra, log, env, timeout)
    p, f = junit_counts(xml)
    if rc != 0:
        f += 0 if f else 1
        problems.append("%s: pytest exit %s:\n%s" % (label, rc, tail(log)))
    return p, f


def tail(path, n=60):
    with open(path, errors="replace") as f:
        lines = f.readlines()
    return "".join(lines[-n:])


def packaging_check(pythons, work, env):
    """An sdist and a wheel build; the sdist installs into a clean venv."""
    print("\n=== packaging: sdist + wheel, sdist into a clean venv ===", flush=True)
    v = "3.11" if "3.11" in pythons else list(pythons)[-1]
    venv = os.path.join(work, "venv-%s" % v)
    vpy = os.path.join(venv, "bin", "python")
    log = os.path.join(work, "packaging.txt")
    dist = os.path.join(work, "dist")
    shutil.rmtree(dist, ignore_errors=True)
    clean = os.path.join(work, "venv-clean")
    if run([vpy, "-m", "pip", "install", "-q", "build"], log, env, 600) != 0:
        return False
    if run([vpy, "-m", "build", "--sdist", "--wheel", "--outdir", dist, REPO], log, env, 900) != 0:
        return False
    sdists = glob.glob(os.path.join(dist, "*.tar.gz"))
    if not sdists or not glob.glob(os.path.join(dist, "*.whl")):
        return False
    if run([pythons[v], "-m", "venv", "--clear", clean], log, env) != 0:
        return False
    cpy = os.path.join(clean, "bin", "python")
    if run([cpy, "-m", "pip", "install", "-q", sdists[0]], log, env, 900) != 0:
        return False
    smoke = ("import fastexec, asyncio\n"
             "p = fastexec.ThreadPoolExecutor(2)\n"
             "assert p.submit(pow, 2, 8).result() == 256\n"
             "async def main():\n"
             "    return await asyncio.wait_for(p.run(abs, -3), 10)\n"
             "assert asyncio.run(main()) == 3\n"
             "p.shutdown()\n"
             "print('sdist install OK')\n")
    return run([cpy, "-c", smoke], log, env, 120, cwd=work) == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="a version such as 3.11 (repeatable)")
    ap.add_argument("--no-sanitize", action="store_true")
    ap.add_argument("--no-cpython-suite", action="store_true")
    ap.add_argument("--workdir", help="where the venvs go (default: a temp dir)")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = ap.parse_args()

    pythons = find_pythons(args.only)
    if not pythons:
        print("no CPython 3.9-3.13 found")
        print("0 passed, 1 failed")
        return 1
    work = args.workdir or tempfile.mkdtemp(prefix="fastexec-tests-")
    os.makedirs(work, exist_ok=True)
    print("CPythons: " + ", ".join("%s (%s)" % kv for kv in pythons.items()))
    print("work dir: " + work, flush=True)

    passed = failed = 0
    problems = []
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONFAULTHANDLER="1")
    env.pop("PYTHONPATH", None)
    sanitize_on = None if args.no_sanitize else ("3.12" if "3.12" in pythons else list(pythons)[-1])

    for v, py in pythons.items():
        venv = os.path.join(work, "venv-" + v)
        log = os.path.join(work, "log-%s.txt" % v)
        vpy = os.path.join(venv, "bin", "python")
        print("\n=== CPython %s ===" % v, flush=True)
        if run([py, "-m", "venv", "--clear", venv], log, env) != 0 or \
           run([vpy, "-m", "pip", "install", "-q", "--upgrade", "pip"], log, env, 600) != 0 or \
           run([vpy, "-m", "pip", "install", "-q", "--force-reinstall", ".[test]"], log, env, 1200) != 0:
            problems.append("%s: install failed:\n%s" % (v, tail(log)))
            failed += 1
            continue
        p, f = run_pytest(vpy, v, os.path.join(work, "junit-%s.xml" % v), log, env,
                          1800, args.pytest_args, problems)
        passed += p
        failed += f

        if not args.no_cpython_suite:
            clog = os.path.join(work, "cpython-%s.txt" % v)
            rc = run([vpy, os.path.join("tools", "cpython_suite.py")], clog, env, 1800)
            m = None
            with open(clog, errors="replace") as fh:
                for line in fh:
                    mm = re.match(r"^(\d+) passed, (\d+) failed\s*$", line.strip())
                    if mm:
                        m = mm
            if m:
                passed += int(m.group(1))
                failed += int(m.group(2))
            if rc != 0:
                failed += 0 if (m and int(m.group(2))) else 1
                problems.append("%s: CPython suite exit %s:\n%s" % (v, rc, tail(clog)))

        if v == sanitize_on:
            print("\n=== CPython %s, ASan + UBSan build ===" % v, flush=True)
            slog = os.path.join(work, "sanitize-%s.txt" % v)
            senv = dict(env, FASTEXEC_SANITIZE="1")
            if run([vpy, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", "."],
                   slog, senv, 1200) != 0:
                problems.append("%s: sanitizer build failed:\n%s" % (v, tail(slog)))
                failed += 1
                continue
            libasan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True,
                                     text=True).stdout.strip()
            renv = dict(env, LD_PRELOAD=libasan,
                        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                        FASTEXEC_SANITIZED="1")
            p, f = run_pytest(vpy, v + " sanitized",
                              os.path.join(work, "junit-sanitize-%s.xml" % v), slog, renv,
                              2400, args.pytest_args, problems)
            passed += p
            failed += f
            # Leave the venv with a normal build.
            run([vpy, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", "."],
                slog, env, 1200)

    if not args.only or len(args.only) > 1:
        ok = packaging_check(pythons, work, env)
        passed += ok
        failed += not ok
        if not ok:
            problems.append("packaging: see %s" % os.path.join(work, "packaging.txt"))

    for p in problems:
        print("\n--- problem: " + p)
    print("\n%d passed, %d failed" % (passed, failed))
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
