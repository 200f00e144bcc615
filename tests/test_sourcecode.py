"""Source checks as tests (in the style of uvloop's test_sourcecode.py):

* ruff over python/, tests/ and tools/ (configuration in pyproject.toml);
* ``python -m mypy.stubtest fastexec``: the stub against the built module
  (allowlist, each entry justified, in tests/stubtest_allowlist.txt);
* ``mypy --strict`` on tests/typing_usage.py (the public API as a user types
  it) for every Python version the installed mypy can target, a check that
  mypy rejects misuse through the stub, and a run of the usage file.

ruff and mypy are in the ``test`` extra; a missing tool is a failure, not a
skip.
"""

import os
import subprocess
import sys

import pytest

from support import HERE

ROOT = os.path.dirname(HERE)
USAGE = os.path.join(HERE, "typing_usage.py")
SUPPORTED = [(3, 9), (3, 10), (3, 11), (3, 12), (3, 13), (3, 14)]

pytestmark = pytest.mark.timeout(300)


def run(args, cwd=ROOT):
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=280)


def output(proc):
    return "rc=%s\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr)


def mypy_min_version():
    try:
        from mypy import defaults
    except ImportError:
        pytest.fail("mypy is not installed (pip install -e '.[test]')",
                    pytrace=False)
    return defaults.PYTHON3_VERSION_MIN


def targets():
    """The supported versions the installed mypy can target (mypy 2 no
    longer targets 3.9: the run on a 3.9 interpreter, with an older mypy,
    covers it)."""
    try:
        from mypy import defaults
    except ImportError:
        return SUPPORTED  # each then fails, saying mypy is missing
    return [v for v in SUPPORTED if v >= defaults.PYTHON3_VERSION_MIN]


def test_ruff():
    proc = run([sys.executable, "-m", "ruff", "check", "--no-cache",
                "python", "tests", "tools"])
    assert proc.returncode == 0, output(proc)


def test_stubtest(tmp_path):
    mypy_min_version()
    # From a directory outside the tree (mypy's cache goes there too), so
    # that the installed (built) package is what is imported, not a source
    # directory by accident.
    proc = run([sys.executable, "-m", "mypy.stubtest", "fastexec",
                "--mypy-config-file",
                os.path.join(HERE, "stubtest_mypy.ini"),
                # Unused entries fail the test: a stale excuse is removed.
                "--allowlist", os.path.join(HERE, "stubtest_allowlist.txt")],
               cwd=str(tmp_path))
    assert proc.returncode == 0, output(proc)
    assert "Success" in proc.stdout, output(proc)


@pytest.mark.parametrize("version", targets(),
                         ids=lambda v: "%d.%d" % v)
def test_mypy_strict_on_the_usage_file(version, tmp_path):
    mypy_min_version()
    proc = run([sys.executable, "-m", "mypy", "--strict",
                "--python-version", "%d.%d" % version,
                "--cache-dir", str(tmp_path / "cache"), USAGE])
    assert proc.returncode == 0, output(proc)


BAD_USAGE = """\
import fastexec

def add(a: int, b: int = 0) -> int:
    return a + b

pool = fastexec.ThreadPoolExecutor(2)
x: str = pool.submit(add, 1).result()
pool.submit(add, "one")
pool.run(add, 1, c=2)
fastexec.run_in_executor(None, add, "two")
fastexec.wrap_future(42)
pool.stats()["x"] + "y"
"""


def test_mypy_rejects_misuse(tmp_path):
    # The stub's generics carry the types: each line after the pool's
    # creation is one error.
    mypy_min_version()
    bad = tmp_path / "bad_usage.py"
    bad.write_text(BAD_USAGE)
    proc = run([sys.executable, "-m", "mypy", "--strict",
                "--cache-dir", str(tmp_path / "cache"), str(bad)])
    assert proc.returncode == 1, output(proc)
    lines = sorted({int(line.split(":")[1]) for line in
                    proc.stdout.splitlines() if ": error:" in line})
    assert lines == [7, 8, 9, 10, 11, 12], output(proc)


def test_the_usage_file_runs():
    proc = run([sys.executable, USAGE])
    assert proc.returncode == 0, output(proc)
    assert proc.stdout == "ok\n", output(proc)
